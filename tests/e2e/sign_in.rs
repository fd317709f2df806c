//! Issue #12 against a real OpenID provider (npm `oidc-provider`, `tollgate_tests::oidc`)
//! and the real control plane: sign-in with PKCE, state and nonce, roles from group
//! mappings synced on every sign-in, and each way a sign-in must fail. Bad tokens come
//! from the real provider through the test proxy (wrong verifier, tampered, `alg: none`,
//! HMAC, another audience, another issuer, expired), never from a fake.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::ControlPlane;
use tollgate_tests::env::TestDb;
use tollgate_tests::oidc::{self, Browser, Provider, Rewrite, query_param};

pub struct Setup {
    pub db: TestDb,
    pub cp: ControlPlane,
    pub org: String,
    pub team: String,
    pub idp: &'static Provider,
}

/// A unique username at the shared providers (tests never share users).
pub fn username(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

pub async fn admin(cp: &ControlPlane, method: Method, path: &str, body: Value) -> Value {
    let response = oidc::client()
        .request(method.clone(), cp.api(path))
        .bearer_auth(&cp.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A control plane whose platform IdP is `idp`, with org `acme` and its team `search`.
pub async fn setup_with(idp: &'static Provider, extra: &[(&str, &str)]) -> Setup {
    let db = TestDb::create().await.unwrap();
    let mut env: Vec<(&str, String)> = oidc::platform_env(idp);
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cp = ControlPlane::start_with(&db, &env).await.unwrap();
    let org = admin(
        &cp,
        Method::POST,
        "/orgs",
        json!({"slug": "acme", "name": "Acme"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team = admin(
        &cp,
        Method::POST,
        &format!("/orgs/{org}/teams"),
        json!({"slug": "search", "name": "Search"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Setup {
        db,
        cp,
        org,
        team,
        idp,
    }
}

pub async fn setup() -> Setup {
    setup_with(oidc::shared(), &[]).await
}

impl Setup {
    /// Maps platform IdP group `group` to `role` in org acme (in team search if `team`).
    pub async fn map(&self, group: &str, role: &str, team: bool) -> Value {
        let mut body = json!({"value": group, "role": role});
        if team {
            body["team_id"] = json!(self.team);
        }
        admin(
            &self.cp,
            Method::POST,
            &format!("/orgs/{}/group-mappings", self.org),
            body,
        )
        .await
    }

    /// A provider user in `groups`, signed in; its browser.
    pub async fn signed_in(&self, prefix: &str, groups: &[&str]) -> (Browser, String) {
        let name = username(prefix);
        self.idp
            .add_user(&name, &format!("{name}@acme.example"), groups)
            .await;
        let mut browser = Browser::new();
        let done = browser.sign_in(&self.cp.url, "", &name).await.unwrap();
        assert_eq!(done.status, 303, "sign-in of {name}: {}", done.body);
        assert_eq!(done.location.as_deref(), Some("/"));
        (browser, name)
    }

    pub async fn get(&self, browser: &mut Browser, path: &str) -> (u16, Value) {
        let response = browser
            .api(Method::GET, &self.cp.api(path), None, None)
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Roles the signed-in person holds in acme, as `role[@team]`, sorted.
    pub async fn roles(&self, browser: &mut Browser, email: &str) -> Vec<String> {
        let members = oidc::client()
            .get(self.cp.api(&format!("/orgs/{}/members", self.org)))
            .bearer_auth(&self.cp.admin_token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let user = self.user_id(email).await;
        let _ = browser;
        let mut roles: Vec<String> = members
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["user_id"] == json!(user))
            .map(|m| match m["team_id"].as_str() {
                Some(_) => format!("{}@team", m["role"].as_str().unwrap()),
                None => m["role"].as_str().unwrap().to_owned(),
            })
            .collect();
        roles.sort();
        roles
    }

    pub async fn user_id(&self, email: &str) -> String {
        let pool = self.db.pool().await.unwrap();
        let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_one(&pool)
            .await
            .unwrap();
        id.to_string()
    }

    /// Audit entries with `action`, newest first.
    pub async fn audit(&self, action: &str) -> Vec<Value> {
        let pool = self.db.pool().await.unwrap();
        let rows: Vec<(String, Option<Value>)> =
            sqlx::query_as("SELECT actor, after FROM audit_log WHERE action = $1 ORDER BY id DESC")
                .bind(action)
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.into_iter()
            .map(|(actor, after)| json!({"actor": actor, "after": after}))
            .collect()
    }
}

/// Starts a sign-in and brings back the provider's redirect to the callback, unfollowed.
async fn to_callback(s: &Setup, browser: &mut Browser, name: &str) -> String {
    let auth = browser.begin(&s.cp.url, "").await.unwrap();
    browser.authorize(&auth, &s.cp.url, name).await.unwrap()
}

/// A user with a role (so only the thing under test can refuse it).
async fn member(s: &Setup) -> String {
    s.map("eng", "member", true).await;
    let name = username("m");
    s.idp
        .add_user(&name, &format!("{name}@acme.example"), &["eng"])
        .await;
    name
}

/// Asserts the callback refused the sign-in, created no session, and logged why.
async fn assert_refused(s: &Setup, browser: &mut Browser, callback: &oidc::Callback, reason: &str) {
    assert_refused_among(s, browser, callback, reason, 0).await;
}

/// As [`assert_refused`], where `sessions` sessions of others exist.
async fn assert_refused_among(
    s: &Setup,
    browser: &mut Browser,
    callback: &oidc::Callback,
    reason: &str,
    sessions_before: i64,
) {
    assert!(
        (400..500).contains(&callback.status),
        "refused with a 4xx page: {callback:?}"
    );
    assert!(callback.body.contains("id=\"error\""), "{}", callback.body);
    assert!(browser.cookie(&s.cp.url, "tollgate_session").is_none());
    let pool = s.db.pool().await.unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        sessions, sessions_before,
        "no session for a refused sign-in"
    );
    let failures = s.audit("sign_in_failed").await;
    let logged = failures.iter().any(|f| {
        f["after"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(reason)
    });
    assert!(logged, "audited with {reason:?}: {failures:?}");
}

#[tokio::test]
async fn each_role_comes_from_its_group_and_works_with_the_session() {
    let s = setup().await;
    s.map("acme-admins", "org_admin", false).await;
    s.map("acme-viewers", "viewer", false).await;
    s.map("search-leads", "team_admin", true).await;
    s.map("search-eng", "member", true).await;
    let org = s.org.clone();
    for (group, expected, can_create_team, can_read_team) in [
        ("acme-admins", "org_admin", true, true),
        ("acme-viewers", "viewer", false, true),
        ("search-leads", "team_admin@team", false, true),
        ("search-eng", "member@team", false, true),
    ] {
        let (mut browser, name) = s.signed_in("r", &[group]).await;
        let email = format!("{name}@acme.example");
        assert_eq!(s.roles(&mut browser, &email).await, vec![expected]);
        let (status, body) = s.get(&mut browser, &format!("/orgs/{org}")).await;
        assert_eq!(status, 200, "{group} reads its org: {body}");
        let (status, _) = s
            .get(&mut browser, &format!("/orgs/{org}/teams/{}", s.team))
            .await;
        assert_eq!(status == 200, can_read_team, "{group} reads team search");
        let csrf = browser.csrf(&s.cp.url).await.unwrap();
        let created = browser
            .api(
                Method::POST,
                &s.cp.api(&format!("/orgs/{org}/teams")),
                Some(json!({"slug": format!("t-{}", &name[2..10]), "name": "T"})),
                Some(&csrf),
            )
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(
            created == 201,
            can_create_team,
            "{group} creates a team: {created}"
        );
        let page = browser
            .request(Method::GET, &format!("{}/", s.cp.url), None)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains(&email), "signed in as {email}: {page}");
    }

    // The platform admin role comes from the platform IdP's admin group.
    let (mut browser, _) = s.signed_in("pa", &[oidc::ADMIN_GROUP]).await;
    let (status, _) = s.get(&mut browser, "/gateways").await;
    assert_eq!(status, 200, "platform admins see the fleet");
    let (mut plain, _) = s.signed_in("np", &["acme-viewers"]).await;
    let (status, _) = s.get(&mut plain, "/gateways").await;
    assert_eq!(status, 403, "a viewer does not");
    assert!(!s.audit("sign_in").await.is_empty());
}

#[tokio::test]
async fn a_later_sign_in_syncs_groups_and_keeps_roles_granted_by_hand() {
    let s = setup().await;
    s.map("acme-admins", "org_admin", false).await;
    s.map("search-eng", "member", true).await;
    let (mut browser, name) = s.signed_in("sync", &["acme-admins"]).await;
    let email = format!("{name}@acme.example");
    assert_eq!(s.roles(&mut browser, &email).await, vec!["org_admin"]);

    // The group is gone at the IdP and another one came: the next sign-in follows.
    s.idp.add_user(&name, &email, &["search-eng"]).await;
    let again = browser.sign_in(&s.cp.url, "", &name).await.unwrap();
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(s.roles(&mut browser, &email).await, vec!["member@team"]);
    let (status, _) = s
        .get(&mut browser, &format!("/orgs/{}/sessions", s.org))
        .await;
    assert_eq!(
        status, 403,
        "the org_admin role is gone from the next request on"
    );

    // A viewer role given by hand in another org stays through sign-ins.
    let other = admin(
        &s.cp,
        Method::POST,
        "/orgs",
        json!({"slug": "other", "name": "O"}),
    )
    .await;
    let other = other["id"].as_str().unwrap();
    admin(
        &s.cp,
        Method::POST,
        &format!("/orgs/{other}/members"),
        json!({"email": email, "role": "viewer"}),
    )
    .await;
    s.idp.add_user(&name, &email, &[]).await;
    let last = browser.sign_in(&s.cp.url, "", &name).await.unwrap();
    assert_eq!(
        last.status, 303,
        "the hand-made role still lets it in: {}",
        last.body
    );
    assert_eq!(s.roles(&mut browser, &email).await, Vec::<String>::new());
    let (status, _) = s.get(&mut browser, &format!("/orgs/{other}")).await;
    assert_eq!(status, 200, "the role granted by hand stays");
}

#[tokio::test]
async fn a_person_without_any_role_is_told_plainly() {
    let s = setup().await;
    let name = username("norole");
    s.idp
        .add_user(
            &name,
            &format!("{name}@acme.example"),
            &["nobody-maps-this"],
        )
        .await;
    let mut browser = Browser::new();
    let done = browser.sign_in(&s.cp.url, "", &name).await.unwrap();
    assert_eq!(done.status, 403);
    assert!(
        done.body.contains("no role in any org yet — ask an admin"),
        "{}",
        done.body
    );
}

#[tokio::test]
async fn a_wrong_state_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    let state = query_param(&callback, "state").unwrap();
    let forged = callback.replace(&format!("state={state}"), "state=forged-state");
    let done = browser.callback(&forged).await.unwrap();
    assert_refused(&s, &mut browser, &done, "state").await;

    // The right state from another browser (no login cookie) is refused too.
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    let done = Browser::new().callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "state").await;
}

#[tokio::test]
async fn a_reused_code_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    let code = query_param(&callback, "code").unwrap();
    let first = browser.callback(&callback).await.unwrap();
    assert_eq!(first.status, 303, "{}", first.body);
    let session = browser.cookie(&s.cp.url, "tollgate_session").unwrap();

    // A new sign-in in a fresh browser, answered with the old code.
    let mut thief = Browser::new();
    let fresh = to_callback(&s, &mut thief, &name).await;
    let fresh_code = query_param(&fresh, "code").unwrap();
    let replay = fresh.replace(&format!("code={fresh_code}"), &format!("code={code}"));
    let done = thief.callback(&replay).await.unwrap();
    assert!((400..500).contains(&done.status), "{done:?}");
    assert!(thief.cookie(&s.cp.url, "tollgate_session").is_none());
    let failures = s.audit("sign_in_failed").await;
    assert!(
        failures[0]["after"]["reason"]
            .as_str()
            .unwrap()
            .contains("code exchange refused"),
        "{failures:?}"
    );
    assert!(!session.is_empty());
}

#[tokio::test]
async fn a_missing_pkce_verifier_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    s.idp.rewrite(
        &query_param(&callback, "code").unwrap(),
        Rewrite::DropVerifier,
    );
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "code exchange refused").await;
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    s.idp.rewrite(
        &query_param(&callback, "code").unwrap(),
        Rewrite::WrongVerifier,
    );
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "code exchange refused").await;
}

#[tokio::test]
async fn a_wrong_nonce_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let auth = browser.begin(&s.cp.url, "").await.unwrap();
    // The provider signs whatever nonce the browser leg carries: change it on the way.
    let nonce = query_param(&auth, "nonce").unwrap();
    let auth = auth.replace(&format!("nonce={nonce}"), "nonce=another-nonce");
    let callback = browser.authorize(&auth, &s.cp.url, &name).await.unwrap();
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "nonce").await;
}

async fn refused_with(rewrite: impl FnOnce(&Setup, &str) -> Rewrite, reason: &str) {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    let rule = rewrite(&s, &callback);
    s.idp
        .rewrite(&query_param(&callback, "code").unwrap(), rule);
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, reason).await;
}

#[tokio::test]
async fn a_tampered_id_token_is_refused() {
    refused_with(|_, _| Rewrite::TamperIdToken, "ID token refused").await;
}

#[tokio::test]
async fn an_unsigned_id_token_is_refused() {
    refused_with(|_, _| Rewrite::AlgNone, "ID token refused").await;
}

#[tokio::test]
async fn an_hmac_signed_id_token_is_refused() {
    refused_with(
        |_, _| Rewrite::Hmac(oidc::CLIENT_SECRET.to_owned()),
        "ID token refused",
    )
    .await;
}

/// The nonce Tollgate sent for the flow that ended at `callback` is in its login_flows
/// row no more; the test reads it from the authorization URL instead.
async fn nonce_and_callback(s: &Setup, browser: &mut Browser, name: &str) -> (String, String) {
    let auth = browser.begin(&s.cp.url, "").await.unwrap();
    let nonce = query_param(&auth, "nonce").unwrap();
    let callback = browser.authorize(&auth, &s.cp.url, name).await.unwrap();
    (nonce, callback)
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let (nonce, callback) = nonce_and_callback(&s, &mut browser, &name).await;
    // A real token of the same provider, same person and nonce, minted for another client.
    let foreign = s
        .idp
        .id_token_for(
            oidc::OTHER_CLIENT_ID,
            oidc::OTHER_CLIENT_SECRET,
            &name,
            &nonce,
        )
        .await
        .unwrap();
    s.idp.rewrite(
        &query_param(&callback, "code").unwrap(),
        Rewrite::ReplaceIdToken(foreign),
    );
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "audience").await;
}

#[tokio::test]
async fn an_id_token_from_an_unknown_issuer_is_refused() {
    let s = setup().await;
    let name = member(&s).await;
    let stranger = oidc::second();
    stranger
        .add_user(&name, &format!("{name}@acme.example"), &["eng"])
        .await;
    let mut browser = Browser::new();
    let (nonce, callback) = nonce_and_callback(&s, &mut browser, &name).await;
    let foreign = stranger
        .id_token_for(oidc::CLIENT_ID, oidc::CLIENT_SECRET, &name, &nonce)
        .await
        .unwrap();
    s.idp.rewrite(
        &query_param(&callback, "code").unwrap(),
        Rewrite::ReplaceIdToken(foreign),
    );
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "ID token refused").await;
}

#[tokio::test]
async fn an_expired_id_token_is_refused() {
    let s = setup_with(oidc::short_lived(), &[]).await;
    let name = member(&s).await;
    let mut browser = Browser::new();
    let callback = to_callback(&s, &mut browser, &name).await;
    // Its ID tokens live 2 s: hold the answer back until this one is past its exp.
    s.idp.rewrite(
        &query_param(&callback, "code").unwrap(),
        Rewrite::Delay(std::time::Duration::from_secs(4)),
    );
    let done = browser.callback(&callback).await.unwrap();
    assert_refused(&s, &mut browser, &done, "expired").await;
}

#[tokio::test]
async fn an_org_idp_gives_roles_in_its_org_only_and_its_domain_is_its_own() {
    let s = setup().await;
    let org_idp = oidc::second();
    let beta = admin(
        &s.cp,
        Method::POST,
        "/orgs",
        json!({"slug": "beta", "name": "Beta"}),
    )
    .await;
    let beta = beta["id"].as_str().unwrap().to_owned();
    let connection = admin(
        &s.cp,
        Method::PUT,
        &format!("/orgs/{beta}/idp-connection"),
        json!({"issuer": org_idp.issuer, "client_id": oidc::CLIENT_ID, "client_secret": oidc::CLIENT_SECRET}),
    )
    .await;
    assert!(connection.get("client_secret").is_none(), "{connection}");
    let pool = s.db.pool().await.unwrap();
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT client_secret_ciphertext FROM idp_connections")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        !sealed
            .windows(oidc::CLIENT_SECRET.len())
            .any(|w| w == oidc::CLIENT_SECRET.as_bytes()),
        "the client secret is sealed at rest"
    );
    admin(
        &s.cp,
        Method::POST,
        &format!("/orgs/{beta}/domains"),
        json!({"domain": "beta.example"}),
    )
    .await;
    admin(
        &s.cp,
        Method::POST,
        &format!("/orgs/{beta}/group-mappings"),
        json!({"value": "beta-admins", "role": "org_admin"}),
    )
    .await;
    // Beta's IdP cannot be made to speak for acme.
    let refused = oidc::client()
        .post(s.cp.api(&format!("/orgs/{}/group-mappings", s.org)))
        .bearer_auth(&s.cp.admin_token)
        .json(&json!({"issuer": org_idp.issuer, "value": "beta-admins", "role": "org_admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    s.map("beta-admins", "org_admin", false).await;

    // Home-realm discovery: a beta.example address goes to beta's IdP.
    let name = username("beta");
    let email = format!("{name}@beta.example");
    org_idp.add_user(&name, &email, &["beta-admins"]).await;
    let mut browser = Browser::new();
    let auth = browser
        .begin(&s.cp.url, &format!("?email={email}"))
        .await
        .unwrap();
    assert!(
        auth.starts_with(&org_idp.issuer),
        "{auth} should go to {} (platform {})",
        org_idp.issuer,
        s.idp.issuer
    );
    let callback = browser.authorize(&auth, &s.cp.url, &name).await.unwrap();
    let done = browser.callback(&callback).await.unwrap();
    assert_eq!(done.status, 303, "{}", done.body);
    let (status, _) = s.get(&mut browser, &format!("/orgs/{beta}")).await;
    assert_eq!(status, 200, "org admin of beta");
    let (status, _) = s.get(&mut browser, &format!("/orgs/{}", s.org)).await;
    assert_eq!(
        status, 404,
        "the platform mapping of the same group name gives nothing through beta's IdP"
    );

    // An address in beta's domain cannot come in through the platform IdP.
    let intruder = username("intruder");
    s.idp
        .add_user(
            &intruder,
            &format!("{intruder}@beta.example"),
            &["beta-admins"],
        )
        .await;
    let mut browser = Browser::new();
    let done = browser.sign_in(&s.cp.url, "", &intruder).await.unwrap();
    assert_refused_among(&s, &mut browser, &done, "belongs to another org", 1).await;
}

#[tokio::test]
async fn a_session_ends_when_idle_for_longer_than_the_idle_timeout() {
    let s = setup_with(oidc::shared(), &[("TOLLGATE_SIGN_IN__SESSION_IDLE_S", "2")]).await;
    s.map("eng", "member", true).await;
    let (mut browser, _) = s.signed_in("idle", &["eng"]).await;
    let (status, _) = s.get(&mut browser, "/sessions").await;
    assert_eq!(status, 200);
    // Idle past the (2 s) timeout: the next request finds the session over.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (status, _) = s.get(&mut browser, "/sessions").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn sign_out_makes_the_old_cookie_useless_and_uses_the_idp_logout() {
    let s = setup().await;
    s.map("eng", "member", true).await;
    let (mut browser, _) = s.signed_in("out", &["eng"]).await;
    let cookie = browser.cookie(&s.cp.url, "tollgate_session").unwrap();
    let csrf = browser.csrf(&s.cp.url).await.unwrap();
    // Without the CSRF field sign-out is refused (a cross-site form cannot sign out).
    let refused = browser
        .request(
            Method::POST,
            &format!("{}/auth/logout", s.cp.url),
            Some(&[]),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let out = browser
        .request(
            Method::POST,
            &format!("{}/auth/logout", s.cp.url),
            Some(&[("csrf_token", csrf.as_str())]),
        )
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let location = out.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/session/end", s.idp.issuer)),
        "RP-initiated logout at the IdP {}: {location}",
        s.idp.issuer
    );
    assert!(browser.cookie(&s.cp.url, "tollgate_session").is_none());
    // The old cookie, replayed, is worthless server-side.
    let mut replay = Browser::new();
    replay.set_cookie(&s.cp.url, "tollgate_session", &cookie);
    let (status, _) = s.get(&mut replay, "/sessions").await;
    assert_eq!(status, 401);
    assert!(!s.audit("sign_out").await.is_empty());
}

#[tokio::test]
async fn writes_with_a_session_need_its_csrf_token_and_bearer_calls_do_not() {
    let s = setup().await;
    s.map("acme-admins", "org_admin", false).await;
    let (mut browser, _) = s.signed_in("csrf", &["acme-admins"]).await;
    let url = s.cp.api(&format!("/orgs/{}/teams", s.org));
    for csrf in [None, Some("0000")] {
        let response = browser
            .api(
                Method::POST,
                &url,
                Some(json!({"slug": "x", "name": "X"})),
                csrf,
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "CSRF token {csrf:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["title"].as_str().unwrap().contains("CSRF"), "{body}");
    }
    // Another session's token is not this one's.
    let (mut other, _) = s.signed_in("csrf2", &["acme-admins"]).await;
    let other_csrf = other.csrf(&s.cp.url).await.unwrap();
    let response = browser
        .api(
            Method::POST,
            &url,
            Some(json!({"slug": "x", "name": "X"})),
            Some(&other_csrf),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let csrf = browser.csrf(&s.cp.url).await.unwrap();
    let response = browser
        .api(
            Method::POST,
            &url,
            Some(json!({"slug": "x", "name": "X"})),
            Some(&csrf),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    admin(
        &s.cp,
        Method::POST,
        &format!("/orgs/{}/teams", s.org),
        json!({"slug": "y", "name": "Y"}),
    )
    .await;
}

#[tokio::test]
async fn a_personal_token_loses_a_removed_membership_at_once() {
    let s = setup().await;
    s.map("acme-admins", "org_admin", false).await;
    let (mut browser, name) = s.signed_in("pt", &["acme-admins"]).await;
    let csrf = browser.csrf(&s.cp.url).await.unwrap();
    let minted = browser
        .api(
            Method::POST,
            &s.cp.api("/tokens"),
            Some(json!({"name": "ci", "expires_in_days": 7})),
            Some(&csrf),
        )
        .await
        .unwrap();
    assert_eq!(minted.status(), 201);
    let minted: Value = minted.json().await.unwrap();
    let token = minted["secret"].as_str().unwrap().to_owned();
    let org_url = s.cp.api(&format!("/orgs/{}", s.org));
    let with_token = |url: String| {
        let token = token.clone();
        async move {
            oidc::client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(with_token(org_url.clone()).await, 200);
    // A token cannot mint another.
    let again = oidc::client()
        .post(s.cp.api("/tokens"))
        .bearer_auth(&token)
        .json(&json!({"name": "next"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 403);

    let user = s.user_id(&format!("{name}@acme.example")).await;
    let members = admin(
        &s.cp,
        Method::GET,
        &format!("/orgs/{}/members", s.org),
        Value::Null,
    )
    .await;
    let membership = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == json!(user))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let removed = oidc::client()
        .delete(s.cp.api(&format!("/orgs/{}/members/{membership}", s.org)))
        .bearer_auth(&s.cp.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(
        with_token(org_url).await,
        404,
        "no role in the org any more: the token sees nothing of it"
    );
}

#[tokio::test]
async fn deactivation_ends_sessions_revokes_tokens_and_hands_keys_to_the_team() {
    let s = setup().await;
    s.map("search-eng", "member", true).await;
    let (mut browser, name) = s.signed_in("gone", &["search-eng"]).await;
    let csrf = browser.csrf(&s.cp.url).await.unwrap();
    let key = browser
        .api(
            Method::POST,
            &s.cp.api(&format!("/orgs/{}/keys", s.org)),
            Some(json!({"team_id": s.team})),
            Some(&csrf),
        )
        .await
        .unwrap();
    assert_eq!(key.status(), 201);
    let key: Value = key.json().await.unwrap();
    let minted: Value = browser
        .api(
            Method::POST,
            &s.cp.api("/tokens"),
            Some(json!({"name": "ci"})),
            Some(&csrf),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["secret"].as_str().unwrap().to_owned();
    let user = s.user_id(&format!("{name}@acme.example")).await;
    let done = admin(
        &s.cp,
        Method::POST,
        &format!("/users/{user}/deactivate"),
        json!({"keys": "hand_to_team"}),
    )
    .await;
    assert_eq!(done["sessions_ended"], 1, "{done}");
    assert_eq!(done["tokens_revoked"], 1);
    assert_eq!(done["keys_handed_to_team"], 1);
    let (status, _) = s.get(&mut browser, "/sessions").await;
    assert_eq!(status, 401, "the session ended");
    let status = oidc::client()
        .get(s.cp.api("/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401, "the token is revoked");
    let pool = s.db.pool().await.unwrap();
    let owner: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT owner_user_id FROM api_keys WHERE id = $1")
            .bind(uuid::Uuid::parse_str(key["id"].as_str().unwrap()).unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(owner, None, "the key now belongs to the team");
    // And it cannot sign in again.
    let again = browser.sign_in(&s.cp.url, "", &name).await.unwrap();
    assert_eq!(again.status, 403);
    assert!(again.body.contains("deactivated"), "{}", again.body);
}

#[tokio::test]
async fn people_list_and_end_their_sessions_and_org_admins_end_members_sessions() {
    let s = setup().await;
    s.map("acme-admins", "org_admin", false).await;
    s.map("search-eng", "member", true).await;
    let (mut member, _) = s.signed_in("ls", &["search-eng"]).await;
    let (mut boss, _) = s.signed_in("boss", &["acme-admins"]).await;
    let (status, mine) = s.get(&mut member, "/sessions").await;
    assert_eq!(status, 200);
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 1);
    let id = mine[0]["id"].as_str().unwrap().to_owned();
    let (status, listed) = s.get(&mut boss, &format!("/orgs/{}/sessions", s.org)).await;
    assert_eq!(status, 200);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == json!(id))
    );
    // The member cannot end the boss's session; the boss can end the member's.
    let (_, boss_sessions) = s.get(&mut boss, "/sessions").await;
    let boss_id = boss_sessions[0]["id"].as_str().unwrap().to_owned();
    let csrf = member.csrf(&s.cp.url).await.unwrap();
    let refused = member
        .api(
            Method::POST,
            &s.cp.api(&format!("/sessions/{boss_id}/end")),
            None,
            Some(&csrf),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let csrf = boss.csrf(&s.cp.url).await.unwrap();
    let ended = boss
        .api(
            Method::POST,
            &s.cp.api(&format!("/orgs/{}/sessions/{id}/end", s.org)),
            None,
            Some(&csrf),
        )
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let (status, _) = s.get(&mut member, "/sessions").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn help_documents_every_sign_in_setting() {
    let bin = tollgate_tests::gateway::binary("tollgate-control", "TOLLGATE_CONTROL_BIN").unwrap();
    let out = tokio::process::Command::new(bin)
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for field in [
        "[sign_in]",
        "public_url",
        "issuer",
        "client_id",
        "client_secret",
        "scopes",
        "groups_claim",
        "admin_groups",
        "master_key",
        "session_idle_s",
        "session_absolute_s",
        "membership_max_age_s",
        "attempts_per_ip_per_minute",
        "attempts_per_connection_per_minute",
    ] {
        assert!(help.contains(field), "{field} missing from --help");
    }
}
