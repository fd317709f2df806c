//! Issue #13 in a real browser: the dashboard against the real control plane, the real
//! OpenID provider and a real gateway. A platform admin runs an org end to end from the
//! pages; other roles see only what they may do, and forged posts are refused by the
//! server. Every page visited passes axe (no serious or critical violation) and is
//! screenshotted into the test output (`target/ui-screenshots/`).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::browser::{Browser, eventually};
use tollgate_tests::oidc::{self, Provider};

use crate::config_push::{Plane, call, send, until_ready};

async fn plane(idp: &'static Provider) -> Plane {
    Plane::start_with(move |_| {
        oidc::platform_env(idp)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    })
    .await
}

/// A new user at the provider: (username, email).
async fn user(idp: &Provider, prefix: &str, groups: &[&str]) -> (String, String) {
    let name = format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
    let email = format!("{name}@acme.example");
    idp.add_user(&name, &email, groups).await;
    (name, email)
}

async fn check_page(browser: &Browser, name: &str) {
    browser.screenshot(name).await.unwrap();
    browser.assert_accessible(name).await;
}

/// `window.confirm` answers yes, so destructive buttons go through (the prompt is the
/// script's; the server needs no confirmation).
async fn confirm_everything(browser: &Browser) {
    browser
        .execute("window.confirm = () => true; return true;", vec![])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_platform_admin_runs_an_org_from_the_dashboard_through_to_a_revoked_key() {
    let idp = oidc::shared();
    let plane = plane(idp).await;
    let token = plane.enrollment_token("eu").await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let gateway = plane.gateway("eu", "gw-ui", &grpc, &token, "lkg-ui").await;
    until_ready(&gateway).await;
    let (name, email) = user(idp, "ui-admin", &[oidc::ADMIN_GROUP]).await;
    let browser = Browser::start().await.unwrap();
    browser
        .sign_in(&plane.cp.url, idp, &name, &format!("pw-{name}"))
        .await
        .unwrap();
    browser.wait_for_text(&email).await.unwrap();
    check_page(&browser, "overview").await;

    // An org, refused first with the error beside the field, then created.
    browser.goto("/orgs").await.unwrap();
    browser.fill("Slug", "Not A Slug").await.unwrap();
    browser.fill("Name", "Globex").await.unwrap();
    browser.submit("Create org").await.unwrap();
    let error = browser
        .find("#new-org-slug-error")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!error.is_empty(), "the slug's error is shown beside it");
    assert_eq!(
        browser
            .find("#new-org-name")
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("Globex"),
        "what was typed comes back"
    );
    check_page(&browser, "orgs-refused").await;
    browser.fill("Slug", "globex").await.unwrap();
    browser.submit("Create org").await.unwrap();
    browser.wait_for_text("Org created.").await.unwrap();
    let org_url = browser.url().await.unwrap();
    let org = org_url.path().trim_start_matches("/orgs/").to_owned();

    browser.fill("new-team-slug", "search").await.unwrap();
    browser.fill("new-team-name", "Search").await.unwrap();
    browser.submit("Create team").await.unwrap();
    browser.wait_for_text("Team created.").await.unwrap();
    browser
        .fill("new-budget-scope", "team Search")
        .await
        .unwrap();
    browser.fill("new-budget-amount_usd", "5").await.unwrap();
    browser.submit("Create budget").await.unwrap();
    let page = browser.wait_for_text("Budget created.").await.unwrap();
    assert!(page.contains("$5.00"), "{page}");
    check_page(&browser, "teams").await;

    // A key, minted on the team's page; its secret is on the page once.
    browser.click("Search").await.unwrap();
    browser.wait_for_text("New key").await.unwrap();
    browser.fill("new-key-name", "search-prod").await.unwrap();
    browser.submit("Create key").await.unwrap();
    let secret = browser
        .wait_for_css("#new-key")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(secret.starts_with("tg_"), "{secret}");
    let page = browser.text().await.unwrap();
    assert!(page.contains("only time it is shown"), "{page}");
    check_page(&browser, "key-created").await;
    browser.click("Key details").await.unwrap();
    browser.wait_for_text("Rotate").await.unwrap();
    let key_page = browser.url().await.unwrap();
    assert!(
        !browser.html().await.unwrap().contains(&secret),
        "the secret is never shown again"
    );

    // The gateway gets the key from the control plane and serves it.
    let served = eventually("the new key works on the gateway", async || {
        Ok((call(&gateway, &secret, "m").await.status() == 200).then_some(()))
    })
    .await;
    served.unwrap();

    // The call shows in the overview and the usage page (telemetry → rollups).
    browser.goto(&format!("/?org={org}")).await.unwrap();
    eventually("the call in the overview", async || {
        browser.goto(&format!("/?org={org}")).await?;
        let text = browser.text().await?;
        Ok(text.contains("1\ncalls this month").then_some(()))
    })
    .await
    .unwrap();
    let overview = browser.text().await.unwrap();
    assert!(
        overview.contains("search-prod"),
        "top keys name it: {overview}"
    );
    assert!(
        browser.find("svg.chart rect.bar").await.is_ok(),
        "a chart bar"
    );
    check_page(&browser, "overview-with-usage").await;
    browser
        .goto(&format!("/orgs/{org}/usage?group=key"))
        .await
        .unwrap();
    let usage = browser.find("#usage").await.unwrap().text().await.unwrap();
    assert!(usage.contains('1'), "{usage}");
    check_page(&browser, "usage").await;

    // Revoked from its page: the gateway refuses it soon after.
    browser.goto(key_page.as_str()).await.unwrap();
    confirm_everything(&browser).await;
    browser.submit("Revoke key").await.unwrap();
    browser.wait_for_text("Key revoked.").await.unwrap();
    let revoked = Instant::now();
    eventually("the revoked key is refused", async || {
        Ok((call(&gateway, &secret, "m").await.status() == 401).then_some(()))
    })
    .await
    .unwrap();
    eprintln!(
        "revocation from the dashboard reached the gateway in {:?}",
        revoked.elapsed()
    );

    // The audit log shows each step.
    browser.goto(&format!("/orgs/{org}/audit")).await.unwrap();
    let audit = browser.find("#audit").await.unwrap().text().await.unwrap();
    for step in [
        "create org",
        "create team",
        "create budget",
        "create key",
        "status: active → revoked",
    ] {
        let (action, object) = step.split_once(' ').unwrap();
        let found = audit.contains(step)
            || audit
                .lines()
                .any(|l| l.contains(action) && l.contains(object));
        assert!(found, "the audit log shows {step}: {audit}");
    }
    assert!(!audit.contains(&secret), "no secret in the audit log");
    check_page(&browser, "audit").await;
    browser.goto("/account").await.unwrap();
    check_page(&browser, "account").await;
    browser.goto(&format!("/orgs/{org}/keys")).await.unwrap();
    check_page(&browser, "keys").await;
}

#[tokio::test]
async fn each_role_sees_only_what_it_may_do_and_forged_posts_are_refused() {
    let idp = oidc::shared();
    let plane = plane(idp).await;
    let (viewer, viewer_email) = user(idp, "ui-viewer", &[]).await;
    let (member, member_email) = user(idp, "ui-member", &[]).await;
    for (email, role) in [(&viewer_email, "viewer"), (&member_email, "member")] {
        let response = send(
            Method::POST,
            &plane.cp.api(&format!("/orgs/{}/members", plane.org)),
            &plane.cp.admin_token,
            Some(json!({"email": email, "role": role, "team_id": plane.team})),
        )
        .await;
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
    let (admin_key_id, _) = plane.create_key().await;

    // The viewer: keys listed, no way to write.
    let browser = Browser::start().await.unwrap();
    browser
        .sign_in(&plane.cp.url, idp, &viewer, &format!("pw-{viewer}"))
        .await
        .unwrap();
    browser
        .goto(&format!("/orgs/{}/keys", plane.org))
        .await
        .unwrap();
    let html = browser.html().await.unwrap();
    assert!(!html.contains("Create key"), "a viewer gets no create form");
    assert!(!html.contains(">Revoke<"), "nor revoke buttons");
    check_page(&browser, "keys-as-viewer").await;
    // Its own session's CSRF token, on a forged form: the server still refuses.
    browser.goto("/account").await.unwrap();
    let csrf = browser.find("#csrf").await.unwrap().text().await.unwrap();
    let forged = format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/orgs/{org}/keys';
         for (const [n, v] of [['csrf_token', '{csrf}'], ['team_id', '{team}'], ['name', 'forged']]) {{
           const i = document.createElement('input'); i.name = n; i.value = v; f.appendChild(i); }}
         document.body.appendChild(f); f.submit(); return true;",
        org = plane.org,
        team = plane.team
    );
    browser.execute(&forged, vec![]).await.unwrap();
    let text = browser.wait_for_text("Not allowed").await.unwrap();
    assert!(text.contains("role does not allow"), "{text}");
    // Without the token: refused before any rule is looked at.
    let no_token = forged.replace(&csrf, "not-the-token");
    browser.goto("/account").await.unwrap();
    browser.execute(&no_token, vec![]).await.unwrap();
    browser.wait_for_text("Form expired").await.unwrap();
    let keys: Value = send(
        Method::GET,
        &plane.cp.api(&format!("/orgs/{}/keys", plane.org)),
        &plane.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["name"] != "forged"),
        "no forged key exists: {keys}"
    );

    // A member: mints its own key, cannot see or revoke the team's key by its URL.
    let browser = Browser::start().await.unwrap();
    browser
        .sign_in(&plane.cp.url, idp, &member, &format!("pw-{member}"))
        .await
        .unwrap();
    browser
        .goto(&format!("/orgs/{}/keys", plane.org))
        .await
        .unwrap();
    browser.fill("new-key-name", "mine").await.unwrap();
    browser.submit("Create key").await.unwrap();
    browser.wait_for_css("#new-key").await.unwrap();
    browser
        .goto(&format!("/orgs/{}/keys/{admin_key_id}", plane.org))
        .await
        .unwrap();
    let text = browser.wait_for_text("Not found").await.unwrap();
    assert!(!text.contains("Rotate"), "{text}");
    browser
        .goto(&format!("/orgs/{}/keys", plane.org))
        .await
        .unwrap();
    let listed = browser.find("#keys").await.unwrap().text().await.unwrap();
    assert!(listed.contains("mine"), "{listed}");
    assert_eq!(
        listed.matches("tg_").count(),
        1,
        "only its own key: {listed}"
    );
    check_page(&browser, "keys-as-member").await;

    // Another org's page is not found for it.
    let other: Value = send(
        Method::POST,
        &plane.cp.api("/orgs"),
        &plane.cp.admin_token,
        Some(json!({"slug": "initech", "name": "Initech"})),
    )
    .await
    .json()
    .await
    .unwrap();
    browser
        .goto(&format!("/orgs/{}/keys", other["id"].as_str().unwrap()))
        .await
        .unwrap();
    browser.wait_for_text("Not found").await.unwrap();
    let _ = Duration::ZERO;
}
