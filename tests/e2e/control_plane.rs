//! The control plane's admin API on a real Postgres database per test: CRUD with audit,
//! validation, idempotency, RBAC, and tenant isolation checked over the whole route table
//! (taken from the OpenAPI document, so a new endpoint cannot skip it).

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::{ControlPlane, cli, token_in};
use tollgate_tests::env::TestDb;

use crate::http;

async fn send(method: Method, url: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = tollgate_tests::control::authorize(http().request(method, url), token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn created(cp: &ControlPlane, path: &str, body: Value) -> Value {
    let response = send(Method::POST, &cp.api(path), &cp.admin_token, Some(body)).await;
    assert_eq!(response.status(), 201, "{path}");
    response.json().await.unwrap()
}

async fn post_as(cp: &ControlPlane, token: &str, path: &str, body: Value) -> reqwest::Response {
    send(Method::POST, &cp.api(path), token, Some(body)).await
}

async fn patch_as(cp: &ControlPlane, token: &str, path: &str, body: Value) -> reqwest::Response {
    send(Method::PATCH, &cp.api(path), token, Some(body)).await
}

/// `{"scope_kind", "scope_id"}` plus `rest`.
fn scoped(kind: &str, scope_id: &str, rest: Value) -> Value {
    let mut body = json!({"scope_kind": kind, "scope_id": scope_id});
    body.as_object_mut()
        .unwrap()
        .extend(rest.as_object().unwrap().clone());
    body
}

/// A model in the catalog, so allow-lists may name it.
async fn catalog_model(cp: &ControlPlane, name: &str, aliases: &[&str]) -> Value {
    created(cp, "/models", json!({"name": name, "aliases": aliases})).await
}

fn id(object: &Value) -> String {
    object["id"].as_str().unwrap().to_owned()
}

/// `(status, problem+json fields at fault)` of a refused request.
async fn refused(response: reqwest::Response) -> (u16, Vec<String>) {
    let status = response.status().as_u16();
    let problem: Value = response.json().await.unwrap();
    let fields = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, fields)
}

/// `(action, object_type)` of the audit entries a query finds, newest first.
async fn audit_trail(cp: &ControlPlane, token: &str, query: &str) -> Vec<(String, String)> {
    let entries: Value = send(
        Method::GET,
        &cp.api(&format!("/audit?{query}")),
        token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The ids of a page's items.
async fn item_ids(url: String, token: &str) -> Vec<String> {
    let page: Value = send(Method::GET, &url, token, None)
        .await
        .json()
        .await
        .unwrap();
    page["items"].as_array().unwrap().iter().map(id).collect()
}

fn trail(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(a, o)| ((*a).to_owned(), (*o).to_owned()))
        .collect()
}

#[tokio::test]
async fn bootstrap_shows_a_token_once_and_refuses_a_second_admin() {
    let db = TestDb::create().await.unwrap();
    let out = cli(&db, &["bootstrap", "--email", "root@example.com"])
        .await
        .unwrap();
    let token = token_in(&out).unwrap();
    assert_eq!(token.len(), 4 + 64);
    let again = cli(&db, &["bootstrap", "--email", "other@example.com"])
        .await
        .unwrap_err();
    assert!(again.to_string().contains("--force"), "{again}");
    assert!(
        cli(
            &db,
            &["bootstrap", "--email", "other@example.com", "--force"]
        )
        .await
        .is_ok()
    );
    // Only the token's SHA-256 and a short display prefix are stored.
    let pool = db.pool().await.unwrap();
    let (hashed, prefix_len): (i64, Option<i32>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE token_sha256 = sha256(convert_to($1, 'UTF8'))), max(length(prefix)) FROM admin_tokens",
    )
    .bind(&token)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(hashed, 1);
    assert_eq!(prefix_len, Some(10));
}

#[tokio::test]
async fn orgs_and_teams_crud_is_validated_and_audited() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let org = created(&cp, "/orgs", json!({"slug": "acme", "name": "Acme"})).await;
    let org_id = org["id"].as_str().unwrap().to_owned();

    // Every bad field at once, in problem+json.
    let bad = send(
        Method::POST,
        &cp.api("/orgs"),
        &cp.admin_token,
        Some(json!({"slug": "Not A Slug", "name": ""})),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem: Value = bad.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["slug", "name"]);

    let duplicate = send(
        Method::POST,
        &cp.api("/orgs"),
        &cp.admin_token,
        Some(json!({"slug": "acme", "name": "Again"})),
    )
    .await;
    assert_eq!(duplicate.status(), 409);
    let unknown_field = send(
        Method::POST,
        &cp.api("/orgs"),
        &cp.admin_token,
        Some(json!({"slug": "x", "name": "X", "owner": 1})),
    )
    .await;
    assert_eq!(unknown_field.status(), 422);

    let no_token = http().get(cp.api("/orgs")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let bad_token = send(Method::GET, &cp.api("/orgs"), "tga_0000", None).await;
    assert_eq!(bad_token.status(), 401);

    let team = created(
        &cp,
        &format!("/orgs/{org_id}/teams"),
        json!({"slug": "search", "name": "Search"}),
    )
    .await;
    let team_path = format!("/orgs/{org_id}/teams/{}", team["id"].as_str().unwrap());
    catalog_model(&cp, "gpt-4o", &[]).await;
    let renamed = send(
        Method::PATCH,
        &cp.api(&team_path),
        &cp.admin_token,
        Some(json!({"name": "Search & Ranking", "allowed_models": ["gpt-4o"]})),
    )
    .await;
    assert_eq!(renamed.status(), 200);
    let list: Value = send(
        Method::GET,
        &cp.api(&format!("/orgs/{org_id}/teams?limit=1")),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(list["items"][0]["name"], "Search & Ranking");
    assert_eq!(
        send(Method::DELETE, &cp.api(&team_path), &cp.admin_token, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        send(Method::GET, &cp.api(&team_path), &cp.admin_token, None)
            .await
            .status(),
        404
    );

    let audit: Value = send(
        Method::GET,
        &cp.api(&format!("/audit?org_id={org_id}")),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object_type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("delete", "team"),
            ("update", "team"),
            ("create", "team"),
            ("create", "org")
        ]
        .map(|(a, o)| (a.to_owned(), o.to_owned()))
    );
    let update = &audit[1];
    assert_eq!(update["before"]["name"], "Search");
    assert_eq!(update["after"]["name"], "Search & Ranking");
    assert_eq!(update["actor"], "admin@example.com");

    // Append-only, enforced by the database itself.
    let pool = db.pool().await.unwrap();
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("UPDATE audit_log SET actor = 'x'")
            .execute(&pool)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_idempotency_key_makes_retried_creates_safe() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let post = |body: Value| {
        http()
            .post(cp.api("/orgs"))
            .bearer_auth(&cp.admin_token)
            .header("idempotency-key", "retry-1")
            .json(&body)
            .send()
    };
    let first: Value = post(json!({"slug": "acme", "name": "Acme"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let retry = post(json!({"slug": "acme", "name": "Acme"})).await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.json::<Value>().await.unwrap()["id"], first["id"]);
    let list: Value = send(Method::GET, &cp.api("/orgs"), &cp.admin_token, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "created once");
    let reused = post(json!({"slug": "other", "name": "Other"}))
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
}

/// Two orgs with a team each; Alice is org admin of A, Vic a viewer of A.
struct Tenants {
    cp: ControlPlane,
    a: String,
    b: String,
    b_team: String,
    b_key: String,
    b_budget: String,
    b_project: String,
    b_rate_limit: String,
    b_webhook: String,
    b_membership: String,
    alice: String,
    vic: String,
}

async fn tenants() -> (TestDb, Tenants) {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let a = created(&cp, "/orgs", json!({"slug": "a", "name": "A"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = created(&cp, "/orgs", json!({"slug": "b", "name": "B"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    created(
        &cp,
        &format!("/orgs/{a}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await;
    let b_team = created(
        &cp,
        &format!("/orgs/{b}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    created(
        &cp,
        &format!("/orgs/{a}/members"),
        json!({"email": "alice@a.com", "role": "org_admin"}),
    )
    .await;
    created(
        &cp,
        &format!("/orgs/{a}/members"),
        json!({"email": "vic@a.com", "role": "viewer"}),
    )
    .await;
    let b_key = created(&cp, &format!("/orgs/{b}/keys"), json!({"team_id": b_team})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_budget = created(
        &cp,
        &format!("/orgs/{b}/budgets"),
        json!({"scope_kind": "org", "scope_id": b, "amount_micros": 1_000_000, "period": "month"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_project = created(
        &cp,
        &format!("/orgs/{b}/projects"),
        json!({"team_id": b_team, "slug": "p", "name": "P"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_rate_limit = created(
        &cp,
        &format!("/orgs/{b}/rate-limits"),
        json!({"scope_kind": "team", "scope_id": b_team, "rpm": 60}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_webhook = created(
        &cp,
        &format!("/orgs/{b}/webhooks"),
        json!({"url": "https://hooks.b.example/tollgate"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_membership = created(
        &cp,
        &format!("/orgs/{b}/members"),
        json!({"email": "bob@b.com", "role": "viewer"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = token_in(
        &cli(&db, &["tokens", "create", "--email", "alice@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    let vic = token_in(
        &cli(&db, &["tokens", "create", "--email", "vic@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    (
        db,
        Tenants {
            cp,
            a,
            b,
            b_team,
            b_key,
            b_budget,
            b_project,
            b_rate_limit,
            b_webhook,
            b_membership,
            alice,
            vic,
        },
    )
}

/// The id of the team `tenants()` made in org A.
async fn team_in_a(t: &Tenants) -> String {
    let teams: Value = send(
        Method::GET,
        &t.cp.api(&format!("/orgs/{}/teams", t.a)),
        &t.alice,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    teams["items"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_hides_other_orgs_objects_behind_404() {
    every_route_hides_other_orgs(false).await;
}

/// The same with a browser session (cookie and CSRF token) instead of a bearer token.
#[tokio::test]
async fn every_route_hides_other_orgs_objects_behind_404_with_a_session() {
    every_route_hides_other_orgs(true).await;
}

async fn every_route_hides_other_orgs(with_session: bool) {
    let (db, mut t) = tenants().await;
    if with_session {
        t.alice = tollgate_tests::control::session_caller(&db, "alice@a.com")
            .await
            .unwrap();
    }
    let doc: Value = http()
        .get(format!("{}/api/openapi.json", t.cp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.contains("{org_id}") {
            continue;
        }
        let concrete = path
            .replace("{org_id}", &t.b)
            .replace("{team_id}", &t.b_team)
            .replace("{key_id}", &t.b_key)
            .replace("{budget_id}", &t.b_budget)
            .replace("{project_id}", &t.b_project)
            .replace("{rate_limit_id}", &t.b_rate_limit)
            .replace("{webhook_id}", &t.b_webhook)
            .replace("{membership_id}", &t.b_membership)
            // Objects of sign-in need not exist: org b is hidden before any lookup.
            .replace("{mapping_id}", "01900000-0000-7000-8000-000000000000")
            .replace("{session_id}", "01900000-0000-7000-8000-000000000000")
            .replace("{freeze_id}", "01900000-0000-7000-8000-000000000000")
            .replace("{domain}", "b.example");
        assert!(
            !concrete.contains('{'),
            "{path}: teach this test the new path parameter"
        );
        let url = format!("{}{concrete}", t.cp.url);
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = matches!(method, Method::POST | Method::PATCH | Method::PUT)
                .then(|| json!({"slug": "x", "name": "X", "email": "x@x.com", "role": "viewer"}));
            let response = send(method.clone(), &url, &t.alice, body).await;
            assert_eq!(
                response.status(),
                404,
                "{method} {path} as another org's admin"
            );
            let text = response.text().await.unwrap();
            assert!(!text.contains(&t.b), "{method} {path} leaked an id: {text}");
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "only {checked} org routes found in the OpenAPI document"
    );

    // Routes without an org in the path only show the caller's orgs.
    let orgs: Value = send(Method::GET, &t.cp.api("/orgs"), &t.alice, None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = orgs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [t.a.as_str()]);
    let audit: Value = send(Method::GET, &t.cp.api("/audit"), &t.alice, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["org_id"] == t.a.as_str()),
        "{audit}"
    );
    assert!(!audit.as_array().unwrap().is_empty());
    // Routes naming the org in the query hide it the same way.
    for path in ["/usage", "/alerts"] {
        let response = send(
            Method::GET,
            &t.cp.api(&format!("{path}?org_id={}", t.b)),
            &t.alice,
            None,
        )
        .await;
        assert_eq!(response.status(), 404, "GET {path}?org_id=<other org>");
    }
}

#[tokio::test]
async fn roles_decide_writes_within_an_org() {
    let (_db, t) = tenants().await;
    let teams = t.cp.api(&format!("/orgs/{}/teams", t.a));
    assert_eq!(
        send(Method::GET, &teams, &t.vic, None).await.status(),
        200,
        "a viewer reads"
    );
    let denied = send(
        Method::POST,
        &teams,
        &t.vic,
        Some(json!({"slug": "v", "name": "V"})),
    )
    .await;
    assert_eq!(denied.status(), 403, "a viewer may not write");
    assert_eq!(
        send(
            Method::POST,
            &teams,
            &t.alice,
            Some(json!({"slug": "al", "name": "Al"}))
        )
        .await
        .status(),
        201
    );
    let org = send(
        Method::POST,
        &t.cp.api("/orgs"),
        &t.alice,
        Some(json!({"slug": "mine", "name": "Mine"})),
    )
    .await;
    assert_eq!(org.status(), 403, "only platform admins create orgs");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let doc: Value = http()
        .get(format!("{}/api/openapi.json", cp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/orgs",
        "/api/v1/orgs/{org_id}/teams/{team_id}",
        "/api/v1/audit",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("Org").is_some());
}

#[tokio::test]
async fn key_lifecycle_secret_once_rotate_with_grace_revoke() {
    let (db, t) = tenants().await;
    let team = team_in_a(&t).await;
    let keys = t.cp.api(&format!("/orgs/{}/keys", t.a));

    let created = send(
        Method::POST,
        &keys,
        &t.alice,
        Some(json!({"team_id": team, "name": "ci"})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let full = created["key"].as_str().unwrap().to_owned();
    let parsed = tollgate_keys::parse(&full).unwrap();
    assert_eq!(parsed.public_id, created["public_id"]);
    assert!(full.starts_with(created["display_prefix"].as_str().unwrap()));
    let key_path = format!("/orgs/{}/keys/{}", t.a, created["id"].as_str().unwrap());

    // Shown once: reads never carry the secret or its HMAC.
    let shown = send(Method::GET, &t.cp.api(&key_path), &t.alice, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !shown.contains(parsed.secret)
            && !shown.contains("secret_hmac")
            && !shown.contains("\"key\""),
        "{shown}"
    );
    let audit = send(
        Method::GET,
        &t.cp.api("/audit?object_type=key"),
        &t.alice,
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        !audit.contains(parsed.secret),
        "the audit log must not hold the secret"
    );

    // The stored HMAC verifies the secret with the shared pepper.
    let pool = db.pool().await.unwrap();
    let hmac: Vec<u8> = sqlx::query_scalar("SELECT secret_hmac FROM api_keys WHERE public_id = $1")
        .bind(parsed.public_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(tollgate_keys::verify(
        tollgate_tests::gateway::PEPPER.as_bytes(),
        parsed.secret,
        &hmac
    ));

    // Rotation: a new key now, the old one valid until the grace deadline.
    let rotated = send(
        Method::POST,
        &t.cp.api(&format!("{key_path}/rotate")),
        &t.alice,
        Some(json!({"grace_seconds": 3600})),
    )
    .await;
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    assert_ne!(rotated["key"], created["key"]);
    assert_eq!(rotated["rotated_from"], created["id"]);
    let old: Value = send(Method::GET, &t.cp.api(&key_path), &t.alice, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        old["status"], "active",
        "still valid during the grace period"
    );
    let grace_until = time::OffsetDateTime::parse(
        old["grace_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = grace_until - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::minutes(59) && left <= time::Duration::hours(1),
        "{left}"
    );
    assert_eq!(old["expires_at"], old["grace_until"]);

    // Revocation is immediate in the store.
    let revoked = send(
        Method::POST,
        &t.cp.api(&format!("{key_path}/revoke")),
        &t.alice,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let status: String = sqlx::query_scalar("SELECT status FROM api_keys WHERE public_id = $1")
        .bind(parsed.public_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "revoked");
    let bad = send(
        Method::POST,
        &t.cp.api(&format!("{key_path}/rotate")),
        &t.alice,
        Some(json!({"grace_seconds": -1})),
    )
    .await;
    assert_eq!(bad.status(), 422);
}

#[tokio::test]
async fn members_manage_only_their_own_keys() {
    let (db, t) = tenants().await;
    let team = team_in_a(&t).await;
    created(
        &t.cp,
        &format!("/orgs/{}/members", t.a),
        json!({"email": "mia@a.com", "role": "member", "team_id": team}),
    )
    .await;
    let mia = token_in(
        &cli(&db, &["tokens", "create", "--email", "mia@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    let keys = t.cp.api(&format!("/orgs/{}/keys", t.a));

    let team_key: Value = send(
        Method::POST,
        &keys,
        &t.alice,
        Some(json!({"team_id": team})),
    )
    .await
    .json()
    .await
    .unwrap();
    let own = send(
        Method::POST,
        &keys,
        &mia,
        Some(json!({"team_id": team, "name": "mine"})),
    )
    .await;
    assert_eq!(own.status(), 201);
    let own: Value = own.json().await.unwrap();
    assert!(
        own["owner_user_id"].is_string(),
        "a member's key is its own"
    );

    let listed: Value = send(Method::GET, &keys, &mia, None)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["id"])
        .collect();
    assert_eq!(ids, [&own["id"]], "a member lists only its own keys");
    let other = format!("/orgs/{}/keys/{}", t.a, team_key["id"].as_str().unwrap());
    assert_eq!(
        send(
            Method::POST,
            &t.cp.api(&format!("{other}/revoke")),
            &mia,
            None
        )
        .await
        .status(),
        403
    );
    let mine = format!("/orgs/{}/keys/{}", t.a, own["id"].as_str().unwrap());
    assert_eq!(
        send(
            Method::POST,
            &t.cp.api(&format!("{mine}/revoke")),
            &mia,
            None
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn a_key_minted_by_the_control_plane_works_on_a_gateway() {
    let (db, t) = tenants().await;
    let team = team_in_a(&t).await;
    let created: Value = send(
        Method::POST,
        &t.cp.api(&format!("/orgs/{}/keys", t.a)),
        &t.alice,
        Some(json!({"team_id": team})),
    )
    .await
    .json()
    .await
    .unwrap();
    let pool = db.pool().await.unwrap();
    let hmac: Vec<u8> = sqlx::query_scalar("SELECT secret_hmac FROM api_keys WHERE id = $1::uuid")
        .bind(created["id"].as_str().unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    // Until config push exists, carry the key's public parts over by hand.
    let mock = tollgate_tests::mock::MockUpstream::start().await.unwrap();
    let config = format!(
        "[[orgs]]\nid = \"{a}\"\n[[teams]]\nid = \"{team}\"\norg = \"{a}\"\n[[models]]\nname = \"m\"\n\
         [[deployments]]\nid = \"d\"\nmodel = \"m\"\nprovider = \"openai\"\nbase_url = \"{base}\"\nprices = {{ input = 1, output = 1 }}\n\
         [[keys]]\npublic_id = \"{public}\"\nsecret_hmac = \"{hmac}\"\nteam = \"{team}\"\n",
        a = t.a,
        base = mock.openai_base_url(),
        public = created["public_id"].as_str().unwrap(),
        hmac = hex::encode(hmac),
    );
    let gateway = tollgate_tests::gateway::GatewayProcess::start(&config, &[])
        .await
        .unwrap();
    let response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(created["key"].as_str().unwrap())
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn budgets_respect_the_hierarchy_per_period() {
    let (_db, t) = tenants().await;
    let team = team_in_a(&t).await;
    let key: Value = send(
        Method::POST,
        &t.cp.api(&format!("/orgs/{}/keys", t.a)),
        &t.alice,
        Some(json!({"team_id": team})),
    )
    .await
    .json()
    .await
    .unwrap();
    let budgets = t.cp.api(&format!("/orgs/{}/budgets", t.a));
    let post = |scope_kind: &str, scope_id: &str, amount: i64, period: &str| {
        send(
            Method::POST,
            &budgets,
            &t.alice,
            Some(
                json!({"scope_kind": scope_kind, "scope_id": scope_id, "amount_micros": amount, "period": period}),
            ),
        )
    };
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(post("org", &t.a, 100_000_000, "month").await.status(), 201);
    let too_big = post("team", &team, 150_000_000, "month").await;
    assert_eq!(
        too_big.status(),
        422,
        "a team cannot have more than its org"
    );
    assert_eq!(
        too_big.json::<Value>().await.unwrap()["errors"][0]["field"],
        "amount_micros"
    );
    assert_eq!(post("team", &team, 50_000_000, "month").await.status(), 201);
    assert_eq!(
        post("team", &team, 500_000_000, "day").await.status(),
        201,
        "no org budget for days"
    );
    assert_eq!(
        post("key", key_id, 60_000_000, "month").await.status(),
        422,
        "a key cannot have more than its team"
    );
    assert_eq!(post("key", key_id, 10_000_000, "month").await.status(), 201);
    assert_eq!(
        post("team", &team, 40_000_000, "month").await.status(),
        409,
        "one budget per scope and period"
    );
    assert_eq!(
        post("org", &t.a, 100, "day").await.status(),
        422,
        "an org cannot be set below its team"
    );
    let viewer = send(
        Method::POST,
        &budgets,
        &t.vic,
        Some(json!({"scope_kind": "team", "scope_id": team, "amount_micros": 1, "period": "week"})),
    )
    .await;
    assert_eq!(viewer.status(), 403);
    let list: Value = send(Method::GET, &budgets, &t.vic, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn operator_commands_share_the_store_and_the_audit_log() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let org = cli(&db, &["orgs", "create", "--slug", "ops", "--name", "Ops"])
        .await
        .unwrap()
        .trim()
        .to_owned();
    let team = cli(
        &db,
        &[
            "teams", "create", "--org", &org, "--slug", "infra", "--name", "Infra",
        ],
    )
    .await
    .unwrap()
    .trim()
    .to_owned();
    let key = cli(
        &db,
        &[
            "keys",
            "create",
            "--org",
            &org,
            "--team",
            &team,
            "--name",
            "deploy bot",
        ],
    )
    .await
    .unwrap();
    let parsed = tollgate_keys::parse(key.trim()).expect("a full key is printed");
    let listed: Value = send(
        Method::GET,
        &cp.api(&format!("/orgs/{org}/keys")),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["items"][0]["public_id"], parsed.public_id);
    let audit: Value = send(
        Method::GET,
        &cp.api(&format!("/audit?org_id={org}")),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "cli")
    );
    assert_eq!(audit.as_array().unwrap().len(), 3);
    let taken = cli(&db, &["orgs", "create", "--slug", "ops", "--name", "Again"])
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("conflicts"), "{taken}");
}

#[tokio::test]
async fn a_warn_policy_creates_an_oversized_budget_with_a_warning() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start_with(&db, &[("TOLLGATE_BUDGETS__HIERARCHY", "warn")])
        .await
        .unwrap();
    let org = created(&cp, "/orgs", json!({"slug": "w", "name": "W"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team = created(
        &cp,
        &format!("/orgs/{org}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let budgets = cp.api(&format!("/orgs/{org}/budgets"));
    created(
        &cp,
        &format!("/orgs/{org}/budgets"),
        json!({"scope_kind": "org", "scope_id": org, "amount_micros": 100, "period": "month"}),
    )
    .await;
    let over = send(
        Method::POST,
        &budgets,
        &cp.admin_token,
        Some(json!({"scope_kind": "team", "scope_id": team, "amount_micros": 150, "period": "month"})),
    )
    .await;
    assert_eq!(over.status(), 201);
    let warning = over.headers()["warning"].to_str().unwrap().to_owned();
    assert!(
        warning.contains("exceeds the enclosing budget"),
        "{warning}"
    );
}

#[tokio::test]
async fn projects_live_in_a_team_and_keys_must_match_it() {
    let (_db, t) = tenants().await;
    let team = team_in_a(&t).await;
    let other_team = created(
        &t.cp,
        &format!("/orgs/{}/teams", t.a),
        json!({"slug": "other", "name": "Other"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let projects = t.cp.api(&format!("/orgs/{}/projects", t.a));
    let project = send(
        Method::POST,
        &projects,
        &t.alice,
        Some(json!({"team_id": team, "slug": "ranker", "name": "Ranker"})),
    )
    .await;
    assert_eq!(project.status(), 201);
    let project: Value = project.json().await.unwrap();
    let dup = send(
        Method::POST,
        &projects,
        &t.alice,
        Some(json!({"team_id": team, "slug": "ranker", "name": "Again"})),
    )
    .await;
    assert_eq!(dup.status(), 409);
    let listed: Value = send(
        Method::GET,
        &format!("{projects}?team_id={team}"),
        &t.vic,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let keys = t.cp.api(&format!("/orgs/{}/keys", t.a));
    let mismatched = send(
        Method::POST,
        &keys,
        &t.alice,
        Some(json!({"team_id": other_team, "project_id": project["id"]})),
    )
    .await;
    assert_eq!(mismatched.status(), 422);
    let key = send(
        Method::POST,
        &keys,
        &t.alice,
        Some(json!({"team_id": team, "project_id": project["id"]})),
    )
    .await;
    assert_eq!(key.status(), 201);
    assert_eq!(
        key.json::<Value>().await.unwrap()["project_id"],
        project["id"]
    );
}

/// Every path of the OpenAPI document with its parameters filled in (ids of nothing).
fn concrete_routes(doc: &Value) -> Vec<(Method, String, String)> {
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut concrete = String::new();
        for (i, part) in path.split(['{', '}']).enumerate() {
            // Odd parts are parameter names.
            concrete.push_str(match (i % 2, part) {
                (0, literal) => literal,
                (_, "region_id") => "eu-west",
                _ => "01900000-0000-7000-8000-000000000000",
            });
        }
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            routes.push((method, path.clone(), concrete.clone()));
        }
    }
    routes
}

async fn openapi(cp: &ControlPlane) -> Value {
    http()
        .get(format!("{}/api/openapi.json", cp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_route_needs_a_token_and_the_catalog_is_written_by_platform_admins_only() {
    let (_db, t) = tenants().await;
    let doc = openapi(&t.cp).await;
    let mut catalog_writes = 0;
    for (method, path, concrete) in concrete_routes(&doc) {
        let url = format!("{}{concrete}", t.cp.url);
        let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
        let mut anonymous = http().request(method.clone(), &url);
        if let Some(body) = &body {
            anonymous = anonymous.json(body);
        }
        assert_eq!(
            anonymous.send().await.unwrap().status(),
            401,
            "{method} {path} without a token"
        );
        let platform = ["/regions", "/providers", "/models", "/deployments"]
            .iter()
            .any(|p| path.starts_with(&format!("/api/v1{p}")));
        if !platform {
            continue;
        }
        let status = send(method.clone(), &url, &t.alice, body).await.status();
        if method == Method::GET && path.starts_with("/api/v1/models") {
            assert_ne!(
                status, 403,
                "{method} {path}: anyone reads the model catalog"
            );
        } else {
            assert_eq!(status, 403, "{method} {path} as an org admin");
            catalog_writes += 1;
        }
    }
    assert!(catalog_writes >= 16, "only {catalog_writes} catalog routes");
    let models = send(Method::GET, &t.cp.api("/models"), &t.vic, None).await;
    assert_eq!(models.status(), 200, "a viewer reads the model catalog");
}

#[tokio::test]
async fn regions_and_providers_crud_is_validated_and_audited() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();

    // Regions: a slug id, a name; 409 for a taken id.
    let region = created(&cp, "/regions", json!({"id": "eu-west", "name": "EU West"})).await;
    assert_eq!(region["id"], "eu-west");
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/regions",
                json!({"id": "EU West!", "name": " "})
            )
            .await
        )
        .await,
        (422, vec!["id".into(), "name".into()])
    );
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/regions",
                json!({"id": "eu-west", "name": "Again"})
            )
            .await
        )
        .await,
        (409, vec!["id".into()])
    );
    created(&cp, "/regions", json!({"id": "us-east", "name": "US East"})).await;
    let page: Value = send(
        Method::GET,
        &cp.api("/regions?limit=1"),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(page["items"][0]["id"], "eu-west");
    assert_eq!(page["next_cursor"], "eu-west");
    let next: Value = send(
        Method::GET,
        &cp.api("/regions?limit=1&cursor=eu-west"),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(next["items"][0]["id"], "us-east");
    let renamed = send(
        Method::PATCH,
        &cp.api("/regions/us-east"),
        &cp.admin_token,
        Some(json!({"name": "US East (Virginia)"})),
    )
    .await;
    assert_eq!(renamed.status(), 200);
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api("/regions/us-east"),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        send(
            Method::GET,
            &cp.api("/regions/us-east"),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        404
    );

    // Providers: only a reference to the secret, never the secret.
    let provider = created(
        &cp,
        "/providers",
        json!({"kind": "openai", "name": "openai-main", "base_url": "https://api.openai.com/v1",
               "credential_ref": "env:OPENAI_API_KEY"}),
    )
    .await;
    assert_eq!(provider["credential_ref"], "env:OPENAI_API_KEY");
    assert!(provider.get("credential_ciphertext").is_none());
    let secret = post_as(
        &cp,
        &cp.admin_token,
        "/providers",
        json!({"kind": "openai", "name": "leaky", "base_url": "https://api.openai.com/v1",
               "credential_ref": "sk-proj-abcdef0123456789"}),
    )
    .await;
    assert_eq!(secret.status(), 422);
    let problem: Value = secret.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "credential_ref");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("referenced, not stored"), "{message}");
    assert!(!problem.to_string().contains("sk-proj"), "{problem}");
    for bad_ref in ["env:lower", "env:", "env:1ABC", "ENV:KEY", "env:A B"] {
        let (status, fields) = refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/providers",
                json!({"kind": "openai", "name": "x", "base_url": "https://x.example", "credential_ref": bad_ref}),
            )
            .await,
        )
        .await;
        assert_eq!(
            (status, fields),
            (422, vec!["credential_ref".into()]),
            "{bad_ref}"
        );
    }
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/providers",
                json!({"kind": "watsonx", "name": "", "base_url": "ftp://x.example"}),
            )
            .await
        )
        .await,
        (422, vec!["kind".into(), "name".into(), "base_url".into()])
    );
    for bad_url in [
        "https://",
        "http:/x",
        "https://a b.example",
        "api.openai.com",
    ] {
        assert_eq!(
            refused(
                post_as(
                    &cp,
                    &cp.admin_token,
                    "/providers",
                    json!({"kind": "openai", "name": "x", "base_url": bad_url}),
                )
                .await
            )
            .await,
            (422, vec!["base_url".into()]),
            "{bad_url}"
        );
    }
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/providers",
                json!({"kind": "anthropic", "name": "openai-main", "base_url": "https://api.anthropic.com"}),
            )
            .await
        )
        .await,
        (409, vec!["name".into()])
    );
    // A local server without a credential.
    let local = created(
        &cp,
        "/providers",
        json!({"kind": "openai_compatible", "name": "vllm", "base_url": "http://10.0.0.5:8000/v1"}),
    )
    .await;
    assert!(local["credential_ref"].is_null());
    let provider_path = format!("/providers/{}", id(&provider));
    let patched = send(
        Method::PATCH,
        &cp.api(&provider_path),
        &cp.admin_token,
        Some(json!({"credential_ref": "env:OPENAI_KEY_2", "base_url": "https://eu.api.openai.com/v1"})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["credential_ref"], "env:OPENAI_KEY_2");
    assert_eq!(patched["name"], "openai-main", "absent fields are kept");
    let leaky_patch = send(
        Method::PATCH,
        &cp.api(&provider_path),
        &cp.admin_token,
        Some(json!({"credential_ref": "sk-live-123"})),
    )
    .await;
    assert_eq!(
        refused(leaky_patch).await,
        (422, vec!["credential_ref".into()])
    );
    let kind_change = send(
        Method::PATCH,
        &cp.api(&provider_path),
        &cp.admin_token,
        Some(json!({"kind": "azure"})),
    )
    .await;
    assert_eq!(kind_change.status(), 422, "a provider's kind never changes");
    let listed: Value = send(
        Method::GET,
        &cp.api("/providers?kind=openai_compatible"),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["name"], "vllm");
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api(&format!("/providers/{}", id(&local))),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        204
    );

    // Secrets never reach the database either.
    let pool = db.pool().await.unwrap();
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM providers WHERE credential_ref LIKE 'sk-%' OR credential_ciphertext IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0);

    // Platform writes are audited without an org.
    let entries: Value = send(Method::GET, &cp.api("/audit"), &cp.admin_token, None)
        .await
        .json()
        .await
        .unwrap();
    let entries = entries.as_array().unwrap();
    let platform: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["org_id"].is_null() && e["actor"] == "admin@example.com")
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["object_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        platform,
        [
            ("delete", "provider"),
            ("update", "provider"),
            ("create", "provider"),
            ("create", "provider"),
            ("delete", "region"),
            ("update", "region"),
            ("create", "region"),
            ("create", "region"),
        ]
    );
}

#[tokio::test]
async fn models_and_deployments_crud_is_validated_and_audited() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    created(&cp, "/regions", json!({"id": "eu-west", "name": "EU West"})).await;
    let openai = created(
        &cp,
        "/providers",
        json!({"kind": "openai", "name": "openai", "base_url": "https://api.openai.com/v1", "credential_ref": "env:OPENAI_API_KEY"}),
    )
    .await;
    let azure = created(
        &cp,
        "/providers",
        json!({"kind": "azure", "name": "azure-eu", "base_url": "https://eu.openai.azure.com", "credential_ref": "env:AZURE_OPENAI_KEY"}),
    )
    .await;

    // Models: names and aliases are unique across the whole catalog.
    let gpt = created(
        &cp,
        "/models",
        json!({"name": "gpt-4o", "aliases": ["gpt4o", "4o"], "default_max_output_tokens": 2048, "owned_by": "openai"}),
    )
    .await;
    assert_eq!(gpt["tokenizer"], "o200k_base");
    assert_eq!(gpt["default_max_output_tokens"], 2048);
    let (status, fields) = refused(
        post_as(
            &cp,
            &cp.admin_token,
            "/models",
            json!({"name": "4o", "aliases": ["gpt-4o", "fresh"]}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, fields),
        (409, vec!["name".into(), "aliases".into()]),
        "a name or alias of another model"
    );
    let clash = post_as(
        &cp,
        &cp.admin_token,
        "/models",
        json!({"name": "mini", "aliases": ["fresh", "gpt4o"]}),
    )
    .await;
    let problem: Value = clash.json().await.unwrap();
    assert_eq!(problem["status"], 409);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .ends_with(": gpt4o"),
        "{problem}"
    );
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/models",
                json!({"name": "has space", "aliases": ["a", "a", ""], "default_max_output_tokens": 0,
                       "tokenizer": "gpt2"}),
            )
            .await
        )
        .await
        .1,
        [
            "name",
            "default_max_output_tokens",
            "tokenizer",
            "aliases",
            "aliases"
        ]
    );
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/models",
                json!({"name": "self", "aliases": ["self"]})
            )
            .await
        )
        .await,
        (422, vec!["aliases".into()])
    );
    let mini = catalog_model(&cp, "gpt-4o-mini", &["mini"]).await;
    let model_path = format!("/models/{}", id(&mini));
    let renamed = send(
        Method::PATCH,
        &cp.api(&model_path),
        &cp.admin_token,
        Some(json!({"aliases": ["4o"]})),
    )
    .await;
    assert_eq!(
        refused(renamed).await,
        (409, vec!["aliases".into()]),
        "an alias of another model"
    );
    let patched: Value = send(
        Method::PATCH,
        &cp.api(&model_path),
        &cp.admin_token,
        Some(json!({"aliases": ["mini", "small"], "tokenizer": "cl100k_base"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(patched["aliases"], json!(["mini", "small"]));
    assert_eq!(patched["tokenizer"], "cl100k_base");
    let rename = send(
        Method::PATCH,
        &cp.api(&model_path),
        &cp.admin_token,
        Some(json!({"name": "other"})),
    )
    .await;
    assert_eq!(rename.status(), 422, "a model's name never changes");
    let by_alias: Value = send(
        Method::GET,
        &cp.api("/models?name=small"),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(by_alias["items"][0]["id"], mini["id"]);

    // Deployments: unknown references name their field; Azure needs an api_version.
    let deployment = |model: &Value, provider: &Value, extra: Value| {
        let mut body = json!({"model_id": model["id"], "region_id": "eu-west", "provider_id": provider["id"],
                              "upstream_model": "gpt-4o-2024-08-06"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let ours = created(
        &cp,
        "/deployments",
        deployment(
            &gpt,
            &openai,
            json!({"input_price": 2_500_000, "output_price": 10_000_000}),
        ),
    )
    .await;
    assert_eq!(ours["weight"], 1);
    assert_eq!(ours["total_ms"], 600_000);
    assert!(ours["cached_input_price"].is_null());
    let nowhere = json!({"model_id": "01900000-0000-7000-8000-000000000000", "region_id": "mars",
                         "provider_id": "01900000-0000-7000-8000-000000000001", "upstream_model": "x"});
    assert_eq!(
        refused(post_as(&cp, &cp.admin_token, "/deployments", nowhere).await).await,
        (
            422,
            vec!["model_id".into(), "region_id".into(), "provider_id".into()]
        )
    );
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/deployments",
                deployment(&gpt, &azure, json!({}))
            )
            .await
        )
        .await,
        (422, vec!["api_version".into()]),
        "azure needs an api_version"
    );
    let az = created(
        &cp,
        "/deployments",
        deployment(
            &mini,
            &azure,
            json!({"api_version": "2024-10-21", "weight": 3}),
        ),
    )
    .await;
    assert_eq!(
        refused(
            post_as(
                &cp,
                &cp.admin_token,
                "/deployments",
                deployment(
                    &gpt,
                    &openai,
                    json!({"upstream_model": " ", "input_price": -1, "output_price": -1, "cached_input_price": -1,
                           "cache_write_price": -1, "weight": 0, "connect_ms": 0, "first_byte_ms": 0,
                           "total_ms": 0, "max_staleness_ms": -1}),
                ),
            )
            .await
        )
        .await
        .1,
        [
            "upstream_model",
            "input_price",
            "output_price",
            "cached_input_price",
            "cache_write_price",
            "weight",
            "connect_ms",
            "first_byte_ms",
            "total_ms",
            "max_staleness_ms"
        ]
    );
    let filtered: Value = send(
        Method::GET,
        &cp.api("/deployments?model=mini&region=eu-west"),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let ids: Vec<&Value> = filtered["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["id"])
        .collect();
    assert_eq!(ids, [&az["id"]]);
    let az_path = format!("/deployments/{}", id(&az));
    let patched: Value = send(
        Method::PATCH,
        &cp.api(&az_path),
        &cp.admin_token,
        Some(json!({"input_price": 150_000, "weight": 5})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(patched["input_price"], 150_000);
    assert_eq!(patched["api_version"], "2024-10-21");
    let cleared: Value = send(
        Method::PATCH,
        &cp.api(&az_path),
        &cp.admin_token,
        Some(json!({"input_price": null})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(
        cleared["input_price"].is_null(),
        "null = the gateway's prices"
    );
    assert_eq!(cleared["weight"], 5);
    let no_version = send(
        Method::PATCH,
        &cp.api(&az_path),
        &cp.admin_token,
        Some(json!({"api_version": ""})),
    )
    .await;
    assert_eq!(refused(no_version).await, (422, vec!["api_version".into()]));

    // What deployments use cannot go; a model takes its deployments with it.
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api("/regions/eu-west"),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api(&format!("/providers/{}", id(&azure))),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        send(Method::DELETE, &cp.api(&model_path), &cp.admin_token, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        send(Method::GET, &cp.api(&az_path), &cp.admin_token, None)
            .await
            .status(),
        404
    );
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api(&format!("/deployments/{}", id(&ours))),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        send(
            Method::DELETE,
            &cp.api("/regions/eu-west"),
            &cp.admin_token,
            None
        )
        .await
        .status(),
        204,
        "free once no deployment uses it"
    );
    assert_eq!(
        audit_trail(&cp, &cp.admin_token, "object_type=deployment").await,
        trail(&[
            ("delete", "deployment"),
            ("delete", "deployment"),
            ("update", "deployment"),
            ("update", "deployment"),
            ("create", "deployment"),
            ("create", "deployment"),
        ])
    );
    assert_eq!(
        audit_trail(&cp, &cp.admin_token, "object_type=model").await,
        trail(&[
            ("delete", "model"),
            ("update", "model"),
            ("create", "model"),
            ("create", "model"),
        ])
    );
}

#[tokio::test]
async fn allow_lists_name_only_catalog_models() {
    let (_db, t) = tenants().await;
    catalog_model(&t.cp, "gpt-4o", &["4o"]).await;
    let team = team_in_a(&t).await;
    let unknown = |problem: Value| {
        assert_eq!(problem["status"], 422, "{problem}");
        assert_eq!(problem["errors"][0]["field"], "allowed_models");
        problem["errors"][0]["message"].as_str().unwrap().to_owned()
    };
    let teams = format!("/orgs/{}/teams", t.a);
    let message = unknown(
        post_as(
            &t.cp,
            &t.alice,
            &teams,
            json!({"slug": "x", "name": "X", "allowed_models": ["4o", "gpt-5", "o9"]}),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    assert!(message.ends_with(": gpt-5, o9"), "{message}");
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &teams,
            json!({"slug": "x", "name": "X", "allowed_models": ["4o", "gpt-4o"]})
        )
        .await
        .status(),
        201,
        "names and aliases both count"
    );
    let team_path = t.cp.api(&format!("/orgs/{}/teams/{team}", t.a));
    unknown(
        send(
            Method::PATCH,
            &team_path,
            &t.alice,
            Some(json!({"name": "T", "allowed_models": ["nope"]})),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let projects = format!("/orgs/{}/projects", t.a);
    unknown(
        post_as(
            &t.cp,
            &t.alice,
            &projects,
            json!({"team_id": team, "slug": "p", "name": "P", "allowed_models": ["nope"]}),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let project: Value = post_as(
        &t.cp,
        &t.alice,
        &projects,
        json!({"team_id": team, "slug": "p", "name": "P", "allowed_models": ["4o"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    unknown(
        send(
            Method::PATCH,
            &t.cp
                .api(&format!("/orgs/{}/projects/{}", t.a, id(&project))),
            &t.alice,
            Some(json!({"allowed_models": ["nope"]})),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let keys = format!("/orgs/{}/keys", t.a);
    unknown(
        post_as(
            &t.cp,
            &t.alice,
            &keys,
            json!({"team_id": team, "allowed_models": ["nope"]}),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
    let key: Value = post_as(
        &t.cp,
        &t.alice,
        &keys,
        json!({"team_id": team, "allowed_models": ["gpt-4o"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    unknown(
        send(
            Method::PATCH,
            &t.cp.api(&format!("/orgs/{}/keys/{}", t.a, id(&key))),
            &t.alice,
            Some(json!({"allowed_models": ["nope"]})),
        )
        .await
        .json()
        .await
        .unwrap(),
    );
}

#[tokio::test]
async fn rate_limits_follow_the_scope_rules() {
    let (db, t) = tenants().await;
    let team = team_in_a(&t).await;
    // Tess is team admin of the team, and of nothing else.
    created(
        &t.cp,
        &format!("/orgs/{}/members", t.a),
        json!({"email": "tess@a.com", "role": "team_admin", "team_id": team}),
    )
    .await;
    let tess = token_in(
        &cli(&db, &["tokens", "create", "--email", "tess@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    let project = created(
        &t.cp,
        &format!("/orgs/{}/projects", t.a),
        json!({"team_id": team, "slug": "p", "name": "P"}),
    )
    .await;
    let key = created(
        &t.cp,
        &format!("/orgs/{}/keys", t.a),
        json!({"team_id": team, "project_id": project["id"]}),
    )
    .await;
    let limits = t.cp.api(&format!("/orgs/{}/rate-limits", t.a));
    let path = format!("/orgs/{}/rate-limits", t.a);

    let org_limit = post_as(
        &t.cp,
        &t.alice,
        &path,
        scoped("org", &t.a, json!({"rpm": 6000, "tpm": 2_000_000})),
    )
    .await;
    assert_eq!(org_limit.status(), 201);
    let org_limit: Value = org_limit.json().await.unwrap();
    assert_eq!(org_limit["max_concurrent"], Value::Null);
    assert_eq!(
        post_as(
            &t.cp,
            &t.vic,
            &path,
            scoped("team", &team, json!({"rpm": 1}))
        )
        .await
        .status(),
        403,
        "a viewer sets no limits"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &path,
            scoped("team", &team, json!({"rpm": 1}))
        )
        .await
        .status(),
        403,
        "a team's own limit is the org admins'"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &path,
            scoped("team", &team, json!({"rpm": 600}))
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &path,
            scoped("project", &id(&project), json!({"max_concurrent": 4}))
        )
        .await
        .status(),
        201,
        "a team admin limits the team's projects"
    );
    let key_limit = post_as(
        &t.cp,
        &tess,
        &path,
        scoped("key", &id(&key), json!({"rpm": 0})),
    )
    .await;
    assert_eq!(key_limit.status(), 201, "and its keys (0 = blocked)");
    let key_limit: Value = key_limit.json().await.unwrap();
    assert_eq!(
        refused(
            post_as(
                &t.cp,
                &t.alice,
                &path,
                scoped("key", &id(&key), json!({"rpm": 5}))
            )
            .await
        )
        .await,
        (409, vec!["scope_id".into()]),
        "one per scope"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &path,
            scoped("key", &t.b_key, json!({"rpm": 5}))
        )
        .await
        .status(),
        404,
        "another org's key is not in this org"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &path,
            scoped("project", &team, json!({"rpm": 5}))
        )
        .await
        .status(),
        404,
        "a team id is not a project"
    );
    assert_eq!(
        refused(
            post_as(
                &t.cp,
                &t.alice,
                &path,
                scoped("org", &team, json!({"rpm": 5}))
            )
            .await
        )
        .await,
        (422, vec!["scope_id".into()])
    );
    assert_eq!(
        refused(post_as(&t.cp, &t.alice, &path, scoped("user", &team, json!({}))).await).await,
        (422, vec!["scope_kind".into(), "body".into()])
    );
    assert_eq!(
        refused(
            post_as(
                &t.cp,
                &t.alice,
                &path,
                scoped(
                    "team",
                    &team,
                    json!({"rpm": -1, "tpm": -1, "max_concurrent": -1})
                )
            )
            .await
        )
        .await,
        (
            422,
            vec!["rpm".into(), "tpm".into(), "max_concurrent".into()]
        )
    );

    let key_limit_path = format!("{limits}/{}", id(&key_limit));
    let fetched: Value = send(Method::GET, &key_limit_path, &t.vic, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["rpm"], 0);
    let patched = send(
        Method::PATCH,
        &key_limit_path,
        &tess,
        Some(json!({"rpm": null, "tpm": 10_000})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(
        (patched["rpm"].clone(), patched["tpm"].clone()),
        (Value::Null, json!(10_000))
    );
    assert_eq!(
        refused(
            send(
                Method::PATCH,
                &key_limit_path,
                &tess,
                Some(json!({"tpm": null}))
            )
            .await
        )
        .await,
        (422, vec!["body".into()]),
        "one limit must remain"
    );
    let org_limit_path = format!("{limits}/{}", id(&org_limit));
    assert_eq!(
        send(
            Method::PATCH,
            &org_limit_path,
            &tess,
            Some(json!({"rpm": 1}))
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        send(Method::DELETE, &org_limit_path, &t.vic, None)
            .await
            .status(),
        403
    );
    let keys_only: Value = send(
        Method::GET,
        &format!("{limits}?scope_kind=key"),
        &t.vic,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(keys_only["items"].as_array().unwrap().len(), 1);
    let all: Value = send(Method::GET, &format!("{limits}?limit=2"), &t.vic, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert!(all["next_cursor"].is_string());
    assert_eq!(
        send(Method::DELETE, &key_limit_path, &tess, None)
            .await
            .status(),
        204
    );
    assert_eq!(
        audit_trail(
            &t.cp,
            &t.alice,
            &format!("org_id={}&object_type=rate_limit", t.a)
        )
        .await,
        trail(&[
            ("delete", "rate_limit"),
            ("update", "rate_limit"),
            ("create", "rate_limit"),
            ("create", "rate_limit"),
            ("create", "rate_limit"),
            ("create", "rate_limit"),
        ])
    );
}

#[tokio::test]
async fn budgets_hold_the_hierarchy_through_projects_and_changes() {
    let (db, t) = tenants().await;
    let team = team_in_a(&t).await;
    created(
        &t.cp,
        &format!("/orgs/{}/members", t.a),
        json!({"email": "tess@a.com", "role": "team_admin", "team_id": team}),
    )
    .await;
    let tess = token_in(
        &cli(&db, &["tokens", "create", "--email", "tess@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    let project = id(&created(
        &t.cp,
        &format!("/orgs/{}/projects", t.a),
        json!({"team_id": team, "slug": "p", "name": "P"}),
    )
    .await);
    let in_project = id(&created(
        &t.cp,
        &format!("/orgs/{}/keys", t.a),
        json!({"team_id": team, "project_id": project}),
    )
    .await);
    let loose_key = id(&created(
        &t.cp,
        &format!("/orgs/{}/keys", t.a),
        json!({"team_id": team}),
    )
    .await);
    let budgets = t.cp.api(&format!("/orgs/{}/budgets", t.a));
    let budgets_path = format!("/orgs/{}/budgets", t.a);

    // With no team budget, a key is still held to its org's.
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &budgets_path,
            scoped(
                "org",
                &t.a,
                json!({"amount_micros": 100, "period": "month"})
            )
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &budgets_path,
            scoped(
                "key",
                &loose_key,
                json!({"amount_micros": 150, "period": "month"})
            )
        )
        .await
        .status(),
        422,
        "above the org, two levels up"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &budgets_path,
            scoped(
                "team",
                &team,
                json!({"amount_micros": 50, "period": "month"})
            )
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        refused(
            post_as(
                &t.cp,
                &tess,
                &budgets_path,
                scoped(
                    "project",
                    &project,
                    json!({"amount_micros": 60, "period": "month"})
                )
            )
            .await
        )
        .await,
        (422, vec!["amount_micros".into()]),
        "a project cannot exceed its team"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.vic,
            &budgets_path,
            scoped(
                "project",
                &project,
                json!({"amount_micros": 30, "period": "month"})
            )
        )
        .await
        .status(),
        403,
        "a viewer sets no budgets"
    );
    let project_budget = post_as(
        &t.cp,
        &tess,
        &budgets_path,
        scoped(
            "project",
            &project,
            json!({"amount_micros": 30, "period": "month"}),
        ),
    )
    .await;
    assert_eq!(
        project_budget.status(),
        201,
        "a team admin budgets its projects"
    );
    let project_budget: Value = project_budget.json().await.unwrap();
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &budgets_path,
            scoped(
                "key",
                &in_project,
                json!({"amount_micros": 40, "period": "month"})
            )
        )
        .await
        .status(),
        422,
        "a key cannot exceed its project"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &budgets_path,
            scoped(
                "key",
                &loose_key,
                json!({"amount_micros": 40, "period": "month"})
            )
        )
        .await
        .status(),
        201,
        "a key outside the project sits under the team"
    );
    assert_eq!(
        post_as(
            &t.cp,
            &tess,
            &budgets_path,
            scoped(
                "key",
                &in_project,
                json!({"amount_micros": 20, "period": "month"})
            )
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        post_as(
            &t.cp,
            &t.alice,
            &budgets_path,
            scoped(
                "project",
                &t.b_project,
                json!({"amount_micros": 1, "period": "month"})
            )
        )
        .await
        .status(),
        404,
        "another org's project"
    );

    // Changes are checked like creates.
    let path = format!("{budgets}/{}", id(&project_budget));
    let budget_path = format!("{budgets_path}/{}", id(&project_budget));
    assert_eq!(
        refused(patch_as(&t.cp, &tess, &budget_path, json!({"amount_micros": 10})).await).await,
        (422, vec!["amount_micros".into()]),
        "below the key it contains"
    );
    assert_eq!(
        patch_as(&t.cp, &tess, &budget_path, json!({"amount_micros": 51}))
            .await
            .status(),
        422,
        "above its team"
    );
    assert_eq!(
        refused(
            patch_as(
                &t.cp,
                &tess,
                &budget_path,
                json!({"amount_micros": -1, "alert_thresholds_pct": [0, 101]})
            )
            .await
        )
        .await,
        (
            422,
            vec!["amount_micros".into(), "alert_thresholds_pct".into()]
        )
    );
    assert_eq!(
        patch_as(&t.cp, &t.vic, &budget_path, json!({"clamp": true}))
            .await
            .status(),
        403
    );
    let changed = patch_as(
        &t.cp,
        &tess,
        &budget_path,
        json!({"amount_micros": 25, "clamp": true}),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["amount_micros"], 25);
    assert_eq!(changed["clamp"], true);
    assert_eq!(
        changed["alert_thresholds_pct"],
        json!([50, 80, 100]),
        "kept"
    );
    let fetched: Value = send(Method::GET, &path, &t.vic, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, changed);
    let projects_only: Value = send(
        Method::GET,
        &format!("{budgets}?scope_kind=project"),
        &t.vic,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(projects_only.as_array().unwrap().len(), 1);
    assert_eq!(
        send(
            Method::GET,
            &format!("{budgets}?scope_kind=galaxy"),
            &t.vic,
            None
        )
        .await
        .status(),
        422
    );
    let updates: Value = send(
        Method::GET,
        &t.cp.api(&format!(
            "/audit?org_id={}&object_type=budget&action=update",
            t.a
        )),
        &t.alice,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(updates.as_array().unwrap().len(), 1);
    assert_eq!(updates[0]["before"]["amount_micros"], 30);
    assert_eq!(updates[0]["after"]["amount_micros"], 25);
}

#[tokio::test]
async fn projects_and_keys_are_patched_never_their_secret() {
    let (db, t) = tenants().await;
    catalog_model(&t.cp, "gpt-4o", &["4o"]).await;
    let team = team_in_a(&t).await;
    created(
        &t.cp,
        &format!("/orgs/{}/members", t.a),
        json!({"email": "mia@a.com", "role": "member", "team_id": team}),
    )
    .await;
    let mia = token_in(
        &cli(&db, &["tokens", "create", "--email", "mia@a.com"])
            .await
            .unwrap(),
    )
    .unwrap();
    let project = created(
        &t.cp,
        &format!("/orgs/{}/projects", t.a),
        json!({"team_id": team, "slug": "p", "name": "P"}),
    )
    .await;
    let project_path =
        t.cp.api(&format!("/orgs/{}/projects/{}", t.a, id(&project)));
    assert_eq!(
        send(
            Method::PATCH,
            &project_path,
            &mia,
            Some(json!({"name": "Mine"}))
        )
        .await
        .status(),
        403,
        "members do not manage projects"
    );
    let renamed: Value = send(
        Method::PATCH,
        &project_path,
        &t.alice,
        Some(json!({"name": "Ranking", "allowed_models": ["4o"]})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(renamed["name"], "Ranking");
    assert_eq!(renamed["slug"], "p");
    assert_eq!(
        refused(
            send(
                Method::PATCH,
                &project_path,
                &t.alice,
                Some(json!({"name": " "}))
            )
            .await
        )
        .await,
        (422, vec!["name".into()])
    );

    let keys = t.cp.api(&format!("/orgs/{}/keys", t.a));
    let own: Value = send(
        Method::POST,
        &keys,
        &mia,
        Some(json!({"team_id": team, "project_id": project["id"], "name": "mine"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let team_key: Value = send(
        Method::POST,
        &keys,
        &t.alice,
        Some(json!({"team_id": team})),
    )
    .await
    .json()
    .await
    .unwrap();
    let own_path = format!("{keys}/{}", id(&own));
    let patched = send(
        Method::PATCH,
        &own_path,
        &mia,
        Some(json!({"name": "laptop", "allowed_models": ["gpt-4o"], "expires_at": "2099-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(patched.status(), 200, "a member changes its own key");
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["name"], "laptop");
    assert_eq!(patched["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(patched["public_id"], own["public_id"]);
    assert_eq!(patched["display_prefix"], own["display_prefix"]);
    assert!(patched.get("key").is_none());
    let never: Value = send(
        Method::PATCH,
        &own_path,
        &mia,
        Some(json!({"expires_at": null})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(never["expires_at"].is_null(), "null = never expires");
    assert_eq!(never["name"], "laptop", "absent fields are kept");
    assert_eq!(
        send(
            Method::PATCH,
            &format!("{keys}/{}", id(&team_key)),
            &mia,
            Some(json!({"name": "stolen"}))
        )
        .await
        .status(),
        403,
        "but no one else's"
    );
    for body in [
        json!({"key": "tg_x_y"}),
        json!({"secret": "y"}),
        json!({"team_id": team}),
    ] {
        assert_eq!(
            send(Method::PATCH, &own_path, &mia, Some(body.clone()))
                .await
                .status(),
            422,
            "{body}"
        );
    }
    assert_eq!(
        refused(
            send(
                Method::PATCH,
                &own_path,
                &mia,
                Some(json!({"expires_at": "2001-01-01T00:00:00Z", "name": "x".repeat(201)}))
            )
            .await
        )
        .await,
        (422, vec!["name".into(), "expires_at".into()])
    );
    let pool = db.pool().await.unwrap();
    let hmacs: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT secret_hmac FROM api_keys WHERE id = $1::uuid")
            .bind(id(&own))
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(hmacs.len(), 1);

    // A rotated key's expiry is its grace deadline.
    let successor: Value = send(
        Method::POST,
        &format!("{own_path}/rotate"),
        &mia,
        Some(json!({"grace_seconds": 60})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        refused(
            send(
                Method::PATCH,
                &own_path,
                &mia,
                Some(json!({"expires_at": null}))
            )
            .await
        )
        .await,
        (422, vec!["expires_at".into()])
    );
    send(Method::POST, &format!("{own_path}/revoke"), &mia, None).await;

    // Filters.
    let list = |query: String| item_ids(format!("{keys}?{query}"), &t.alice);
    assert_eq!(
        list(format!("project_id={}", id(&project))).await,
        [id(&own), id(&successor)],
        "a rotated-in key stays in its project"
    );
    assert_eq!(list("status=revoked".into()).await, [id(&own)]);
    assert_eq!(
        list(format!("team_id={team}&status=active")).await.len(),
        2,
        "the team key and the rotated-in one"
    );
    assert_eq!(
        send(Method::GET, &format!("{keys}?status=lost"), &t.alice, None)
            .await
            .status(),
        422
    );
    assert_eq!(
        audit_trail(
            &t.cp,
            &t.alice,
            &format!("org_id={}&object_type=project&action=update", t.a)
        )
        .await
        .len(),
        1
    );
}

#[tokio::test]
async fn operator_commands_build_the_catalog() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let run = |args: &'static [&'static str]| cli(&db, args);
    assert_eq!(
        run(&["regions", "create", "--id", "eu-west", "--name", "EU West"])
            .await
            .unwrap()
            .trim(),
        "eu-west"
    );
    let secret = run(&[
        "providers",
        "create",
        "--kind",
        "openai",
        "--name",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--credential-ref",
        "sk-live-0123",
    ])
    .await
    .unwrap_err()
    .to_string();
    assert!(
        secret.contains("credential_ref") && secret.contains("referenced, not stored"),
        "{secret}"
    );
    run(&[
        "providers",
        "create",
        "--kind",
        "openai",
        "--name",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--credential-ref",
        "env:OPENAI_API_KEY",
    ])
    .await
    .unwrap();
    let model = run(&[
        "models", "create", "--name", "gpt-4o", "--alias", "4o", "--alias", "gpt4o",
    ])
    .await
    .unwrap();
    let clash = run(&["models", "create", "--name", "4o"])
        .await
        .unwrap_err()
        .to_string();
    assert!(clash.contains("409"), "{clash}");
    let deployment = run(&[
        "deployments",
        "create",
        "--model",
        "4o",
        "--region",
        "eu-west",
        "--provider",
        "openai",
        "--upstream-model",
        "gpt-4o-2024-08-06",
        "--output-price",
        "10000000",
    ])
    .await
    .unwrap();
    let shown: Value = send(
        Method::GET,
        &cp.api(&format!("/deployments/{}", deployment.trim())),
        &cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(shown["model_id"], model.trim());
    assert_eq!(shown["output_price"], 10_000_000);
    let unknown = run(&[
        "deployments",
        "create",
        "--model",
        "gpt-4o",
        "--region",
        "mars",
        "--provider",
        "openai",
        "--upstream-model",
        "x",
    ])
    .await
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("region_id"), "{unknown}");
    let entries: Value = send(Method::GET, &cp.api("/audit"), &cp.admin_token, None)
        .await
        .json()
        .await
        .unwrap();
    let by_cli: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "cli" && e["org_id"].is_null())
        .map(|e| e["object_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        by_cli,
        [
            "deployment",
            "model",
            "provider",
            "region",
            "platform_admin"
        ]
    );
    let help = run(&["--help"]).await.unwrap();
    for command in ["regions", "providers", "models", "deployments"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}
