//! The control plane's admin API on a real Postgres database per test: CRUD with audit,
//! validation, idempotency, RBAC, and tenant isolation checked over the whole route table
//! (taken from the OpenAPI document, so a new endpoint cannot skip it).

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::{ControlPlane, cli, token_in};
use tollgate_tests::env::TestDb;

use crate::http;

async fn send(method: Method, url: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = http().request(method, url).bearer_auth(token);
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
    let (_db, t) = tenants().await;
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
            .replace("{project_id}", &t.b_project);
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
        checked >= 8,
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
