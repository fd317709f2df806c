//! The real-browser harness (`tollgate_tests::browser`): headless Chromium through
//! chromedriver against the real control plane and the real OpenID provider, and the
//! harness's own helpers against fixture pages served here under a strict CSP (the web
//! UI's own policy has no `unsafe-inline`, so the harness must work under one).

use axum::response::{Html, IntoResponse};
use tollgate_tests::browser::{self, Browser};
use tollgate_tests::control::ControlPlane;
use tollgate_tests::env::TestDb;
use tollgate_tests::oidc;

#[tokio::test]
async fn a_platform_admin_signs_in_in_chromium_through_the_provider_sees_its_email_and_signs_out() {
    let db = TestDb::create().await.unwrap();
    let idp = oidc::shared();
    let env = oidc::platform_env(idp);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cp = ControlPlane::start_with(&db, &env).await.unwrap();
    let name = format!("ui-admin-{}", uuid::Uuid::now_v7().simple());
    let email = format!("{name}@acme.example");
    idp.add_user(&name, &email, &[oidc::ADMIN_GROUP]).await;

    let browser = Browser::start().await.unwrap();
    let refused = browser
        .sign_in(&cp.url, idp, &name, "not-the-password")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("wrong username or password"),
        "a wrong password fails the sign-in with the provider's word: {refused}"
    );
    browser
        .sign_in(&cp.url, idp, &name, &format!("pw-{name}"))
        .await
        .unwrap();
    let landed = browser.url().await.unwrap();
    assert_eq!(landed.path(), "/", "lands on the home page: {landed}");
    let text = browser.wait_for_text(&email).await.unwrap();
    assert!(text.contains("platform admin"), "{text}");
    assert_eq!(
        browser.find("#email").await.unwrap().text().await.unwrap(),
        email
    );

    let shot = browser.screenshot("home-signed-in").await.unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is a PNG of the page",
        shot.display()
    );
    // Checked now, asserted at the end: a finding must not hide whether sign-out works.
    let violations = browser.accessibility().await.unwrap();

    browser.submit("Sign out").await.unwrap();
    // Tollgate ends its session, then hands over to the provider's logout (RP-initiated).
    let at = browser.url().await.unwrap();
    assert!(
        at.as_str()
            .starts_with(&format!("{}/session/end", idp.issuer)),
        "sign-out goes on to the provider's logout: {at}"
    );
    browser.goto(&format!("{}/", cp.url)).await.unwrap();
    let text = browser
        .wait_for_text("You are not signed in")
        .await
        .unwrap();
    assert!(!text.contains(&email), "{text}");
    browser.find("a[href='/auth/login']").await.unwrap();

    if let Some(report) = browser::serious_report("the signed-in home page", &violations) {
        panic!("{report}");
    }
}

/// A page that passes axe, with a form of every kind of field the helpers fill.
const FORM: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>New team</title></head><body><main><h1>New team</h1>
<form method="post" action="/echo">
<p><label for="team">Team name</label> <input id="team" name="team_name" value="old"></p>
<p><label>Budget (USD) <input name="budget" type="number"></label></p>
<p><label for="owner">Owner email</label> <input id="owner" name="owner" type="email"></p>
<p><label for="period">Period</label> <select id="period" name="period">
<option value="day">Daily</option><option value="month">Monthly</option></select></p>
<p><label for="until">Expires</label> <input id="until" name="until" type="date"></p>
<p><input id="alerts" name="alerts" type="checkbox" value="on">
<label for="alerts">Send alerts</label></p>
<p><button type="submit">Create team</button> <a href="/form">Cancel</a></p>
</form></main></body></html>"#;

/// A page axe must flag: no language, an image without a text alternative, an unlabelled
/// field; and an inline script the CSP must block.
const BAD: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>Bad</title></head>
<body><main><h1>Bad</h1><img src="/pixel.png"><input name="q">
<script>document.title = 'the inline script ran';</script></main></body></html>"#;

/// The web UI's kind of policy: nothing inline, nothing from elsewhere.
const CSP: &str = "default-src 'none'; img-src 'self'; form-action 'self'; frame-ancestors 'none'";

fn strict(html: String) -> axum::response::Response {
    let mut response = Html(html).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(CSP),
    );
    response
}

/// Serves the fixture pages on a free port of 127.0.0.1; the base URL.
async fn fixtures() -> String {
    let app = axum::Router::new()
        .route(
            "/form",
            axum::routing::get(|| async { strict(FORM.to_owned()) }),
        )
        .route("/bad", axum::routing::get(|| async { strict(BAD.to_owned()) }))
        .route(
            "/echo",
            axum::routing::post(|body: String| async move {
                let fields: Vec<String> =
                    reqwest::Url::parse(&format!("http://x/?{body}"))
                        .map(|u| {
                            u.query_pairs()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect()
                        })
                        .unwrap_or_default();
                strict(format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Created</title></head>\
                     <body><main><h1>Created</h1><pre id=\"echo\">{}</pre></main></body></html>",
                    fields.join("\n").replace('&', "&amp;").replace('<', "&lt;")
                ))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

#[tokio::test]
async fn the_harness_fills_fields_by_label_or_name_and_submits_the_form() {
    let base = fixtures().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("{base}/form")).await.unwrap();
    browser.fill("Team name", "search").await.unwrap();
    browser.fill("budget (usd)", "250").await.unwrap();
    browser.fill("owner", "lead@acme.example").await.unwrap();
    browser.fill("Period", "Monthly").await.unwrap();
    browser.fill("Expires", "2027-01-31").await.unwrap();
    browser.check("Send alerts", true).await.unwrap();

    let missing = browser
        .fill("Team size", "3")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("nothing matches \"Team size\"") && missing.contains("Team name"),
        "a missing field names the ones there are: {missing}"
    );
    let checkbox = browser
        .fill("Send alerts", "x")
        .await
        .unwrap_err()
        .to_string();
    assert!(checkbox.contains("use check()"), "{checkbox}");
    let vague = browser.click("Create").await.unwrap_err().to_string();
    assert!(vague.contains("nothing matches"), "{vague}");

    browser.submit("Create team").await.unwrap();
    assert_eq!(browser.url().await.unwrap().path(), "/echo");
    let echo = browser.find("#echo").await.unwrap().text().await.unwrap();
    let fields: Vec<&str> = echo.lines().collect();
    for field in [
        "team_name=search",
        "budget=250",
        "owner=lead@acme.example",
        "period=month",
        "until=2027-01-31",
        "alerts=on",
    ] {
        assert!(fields.contains(&field), "{field} was posted: {echo}");
    }
    // A path goes to the current origin; a link is followed like a button.
    browser.goto("/form").await.unwrap();
    browser.submit("Cancel").await.unwrap();
    browser.wait_for_css("#team").await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "New team");
}

#[tokio::test]
async fn axe_reports_every_serious_violation_with_its_nodes_even_under_a_strict_csp() {
    let base = fixtures().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&format!("{base}/bad")).await.unwrap();
    assert_eq!(
        browser.title().await.unwrap(),
        "Bad",
        "the CSP blocked the page's inline script"
    );
    let violations = browser.accessibility().await.unwrap();
    let ids: Vec<&str> = violations.iter().map(|v| v.id.as_str()).collect();
    for rule in ["html-has-lang", "image-alt", "label"] {
        assert!(ids.contains(&rule), "axe flags {rule}: {ids:?}");
    }
    let report = browser::serious_report("the bad page", &violations).unwrap();
    assert!(report.contains("image-alt (critical)"), "{report}");
    assert!(report.contains("<img src=\"/pixel.png\">"), "{report}");
    assert!(report.contains("<input name=\"q\">"), "{report}");

    browser.goto(&format!("{base}/form")).await.unwrap();
    browser.assert_accessible("the form fixture").await;
}
