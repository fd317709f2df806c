//! Deletes and bad data never freeze config (issue #11, point 7), and webhooks cannot
//! reach inside (point 9): a real control plane on its own database, a real gateway of
//! region `eu` taking config over the stream, the mock upstream.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::ControlPlane;
use tollgate_tests::env::TestDb;
use tollgate_tests::gateway::GatewayProcess;

use crate::config_push::{Plane, call, send, until_ready, until_status};
use crate::http;

/// The bound issue #11 sets: a new key works on a gateway within 2 s of a delete.
const BOUND: Duration = Duration::from_secs(2);

async fn created(plane: &Plane, path: &str, body: Value) -> Value {
    let response = send(
        Method::POST,
        &plane.cp.api(path),
        &plane.cp.admin_token,
        Some(body),
    )
    .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "POST {path}: {body}");
    body
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// A new key of `team` in `org` (all models).
async fn mint(plane: &Plane, org: &str, team: &str) -> String {
    created(
        plane,
        &format!("/orgs/{org}/keys"),
        json!({"team_id": team}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Region `eu`'s gateway, connected and serving.
async fn eu_gateway(plane: &Plane) -> GatewayProcess {
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane.gateway("eu", "gw-eu", &grpc, &token, "eu.lkg").await;
    until_ready(&gateway).await;
    gateway
}

async fn fleet(plane: &Plane) -> Value {
    send(
        Method::GET,
        &plane.cp.api("/gateways?region=eu"),
        &plane.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap()
}

async fn count(pool: &sqlx::PgPool, sql: &str, ids: &[&str]) -> i64 {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(ids)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn allowed(pool: &sqlx::PgPool, table: &str, id: &str) -> Option<Vec<String>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT allowed_models FROM {table} WHERE id = $1"
    )))
    .bind(id.parse::<uuid::Uuid>().unwrap())
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn deleting_what_others_name_never_freezes_config() {
    let plane = Plane::start().await;
    let gateway = eu_gateway(&plane).await;
    let pool = plane.db.pool().await.unwrap();
    let acme = plane.org.clone();
    let other = id(&created(&plane, "/orgs", json!({"slug": "other", "name": "Other"})).await);
    let other_team = id(&created(
        &plane,
        &format!("/orgs/{other}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await);

    // A team with a budget and a rate limit, and a key with a budget of its own.
    let doomed = id(&created(
        &plane,
        &format!("/orgs/{acme}/teams"),
        json!({"slug": "doomed", "name": "Doomed"}),
    )
    .await);
    let doomed_key = id(&created(
        &plane,
        &format!("/orgs/{acme}/keys"),
        json!({"team_id": doomed}),
    )
    .await);
    // A project with a budget and a rate limit, and a key in it.
    let project = id(&created(
        &plane,
        &format!("/orgs/{acme}/projects"),
        json!({"team_id": plane.team, "slug": "p", "name": "P"}),
    )
    .await);
    let project_key = id(&created(
        &plane,
        &format!("/orgs/{acme}/keys"),
        json!({"team_id": plane.team, "project_id": project}),
    )
    .await);
    for (kind, scope) in [
        ("team", &doomed),
        ("key", &doomed_key),
        ("project", &project),
        ("key", &project_key),
    ] {
        created(
            &plane,
            &format!("/orgs/{acme}/budgets"),
            json!({"scope_kind": kind, "scope_id": scope, "amount_micros": 1_000_000, "period": "month"}),
        )
        .await;
        created(
            &plane,
            &format!("/orgs/{acme}/rate-limits"),
            json!({"scope_kind": kind, "scope_id": scope, "rpm": 100}),
        )
        .await;
    }
    // A model deployed in eu, named in a team's and a key's allow-list.
    let extra = id(&created(&plane, "/models", json!({"name": "extra"})).await);
    sqlx::query(
        "INSERT INTO deployments (id, model_id, region_id, provider_id, upstream_model, input_price, output_price)
         VALUES ('00000000-0000-7000-8000-0000000000e1', $1, 'eu', '00000000-0000-7000-8000-000000000001', 'm', 1, 1)",
    )
    .bind(extra.parse::<uuid::Uuid>().unwrap())
    .execute(&pool)
    .await
    .unwrap();
    let picky = id(&created(
        &plane,
        &format!("/orgs/{acme}/teams"),
        json!({"slug": "picky", "name": "Picky", "allowed_models": ["m", "extra"]}),
    )
    .await);
    let picky_key = id(&created(
        &plane,
        &format!("/orgs/{acme}/keys"),
        json!({"team_id": picky, "allowed_models": ["extra"]}),
    )
    .await);
    // An alias of `m`, named in a project's and a key's allow-list.
    let m = "00000000-0000-7000-8000-000000000002";
    let patched = send(
        Method::PATCH,
        &plane.cp.api(&format!("/models/{m}")),
        &plane.cp.admin_token,
        Some(json!({"aliases": ["m-alias"]})),
    )
    .await;
    assert_eq!(patched.status(), 200, "{}", patched.text().await.unwrap());
    let aliased = id(&created(
        &plane,
        &format!("/orgs/{acme}/projects"),
        json!({"team_id": plane.team, "slug": "aliased", "name": "A", "allowed_models": ["m-alias", "m"]}),
    )
    .await);
    let aliased_key = id(&created(
        &plane,
        &format!("/orgs/{acme}/keys"),
        json!({"team_id": plane.team, "project_id": aliased, "allowed_models": ["m-alias"]}),
    )
    .await);
    // Everything above is live.
    until_status(&gateway, &mint(&plane, &acme, &plane.team).await, "m", 200).await;

    let deletes = [
        (
            "a team with budgets and limits",
            Method::DELETE,
            format!("/orgs/{acme}/teams/{doomed}"),
            None,
        ),
        (
            "a project with budgets and limits",
            Method::DELETE,
            format!("/orgs/{acme}/projects/{project}"),
            None,
        ),
        (
            "a model named in allow-lists",
            Method::DELETE,
            format!("/models/{extra}"),
            None,
        ),
        (
            "an alias named in allow-lists",
            Method::PATCH,
            format!("/models/{m}"),
            Some(json!({"aliases": []})),
        ),
    ];
    for (what, method, path, body) in deletes {
        let started = Instant::now();
        let response = send(method, &plane.cp.api(&path), &plane.cp.admin_token, body).await;
        assert!(
            response.status().is_success(),
            "{what}: {}",
            response.text().await.unwrap()
        );
        // A new key in another org, and one in the org that owned what was deleted.
        let elsewhere = mint(&plane, &other, &other_team).await;
        let same_org = mint(&plane, &acme, &plane.team).await;
        tokio::join!(
            until_status(&gateway, &elsewhere, "m", 200),
            until_status(&gateway, &same_org, "m", 200),
        );
        let took = started.elapsed();
        println!("after deleting {what}: new keys work after {took:?}");
        assert!(
            took < BOUND,
            "after deleting {what}, new keys took {took:?}"
        );
    }

    // Nothing names what was deleted any more.
    let scopes = [
        doomed.as_str(),
        doomed_key.as_str(),
        project.as_str(),
        project_key.as_str(),
    ];
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM budgets WHERE scope_id = ANY($1)",
            &scopes
        )
        .await,
        0,
        "budgets go with their scope"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM rate_limits WHERE scope_id = ANY($1)",
            &scopes
        )
        .await,
        0,
        "rate limits go with their scope"
    );
    assert_eq!(
        allowed(&pool, "teams", &picky).await,
        Some(vec!["m".to_owned()])
    );
    assert_eq!(
        allowed(&pool, "api_keys", &picky_key).await,
        Some(vec![]),
        "a list left empty stays a list (no model), never NULL (every model)"
    );
    assert_eq!(
        allowed(&pool, "projects", &aliased).await,
        Some(vec!["m".to_owned()])
    );
    assert_eq!(allowed(&pool, "api_keys", &aliased_key).await, Some(vec![]));

    let fleet = fleet(&plane).await;
    assert_eq!(fleet["config_errors"], json!([]), "{fleet}");
    let gw = &fleet["items"][0];
    assert_eq!(gw["applied_version"], gw["latest_version"], "{fleet}");
}

#[tokio::test]
async fn one_orgs_bad_data_sets_only_that_org_aside() {
    let plane = Plane::start().await;
    let gateway = eu_gateway(&plane).await;
    let pool = plane.db.pool().await.unwrap();
    let acme = plane.org.clone();
    let other = id(&created(&plane, "/orgs", json!({"slug": "other", "name": "Other"})).await);
    let other_team = id(&created(
        &plane,
        &format!("/orgs/{other}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await);
    let (acme_key_id, acme_key) = plane.create_key().await;
    until_status(&gateway, &acme_key, "m", 200).await;

    // Data no API write makes: a budget on a team that does not exist.
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO budgets (id, org_id, scope_kind, scope_id, amount_micros, period)
         VALUES ('00000000-0000-7000-8000-0000000000b1', $1, 'team', '00000000-0000-7000-8000-0000000000b2', 1000, 'day')",
    )
    .bind(acme.parse::<uuid::Uuid>().unwrap())
    .execute(&pool)
    .await
    .unwrap();
    let elsewhere = mint(&plane, &other, &other_team).await;
    until_status(&gateway, &elsewhere, "m", 200).await;
    let took = started.elapsed();
    println!("with one org's data invalid, another org's new key works after {took:?}");
    assert!(took < BOUND, "another org's new key took {took:?}");

    // The fleet view names the org, what it serves, and why.
    let fleet = fleet(&plane).await;
    let errors = fleet["config_errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{fleet}");
    assert_eq!(errors[0]["region_id"], "eu");
    assert_eq!(errors[0]["org_id"], acme.as_str());
    assert_eq!(errors[0]["action"], "previous");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains("unknown team")
            && message.contains("00000000-0000-7000-8000-0000000000b2"),
        "{message}"
    );
    let metrics = http()
        .get(format!("{}/metrics", plane.cp.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tollgate_config_isolated_orgs{region=\"eu\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_config_org_errors_total{"),
        "{metrics}"
    );

    // The bad org serves its previous config: its keys work, a key minted since is not
    // there yet, and a revocation still reaches the gateway.
    assert_eq!(call(&gateway, &acme_key, "m").await.status(), 200);
    let acme_new = mint(&plane, &acme, &plane.team).await;
    let later = mint(&plane, &other, &other_team).await;
    until_status(&gateway, &later, "m", 200).await;
    assert_eq!(call(&gateway, &acme_new, "m").await.status(), 401);
    let started = Instant::now();
    plane.revoke_key(&acme_key_id).await;
    until_status(&gateway, &acme_key, "m", 401).await;
    assert!(
        started.elapsed() < BOUND,
        "revocation took {:?}",
        started.elapsed()
    );

    // Fixed: the org's config is live again and the error is gone.
    sqlx::query("DELETE FROM budgets WHERE id = '00000000-0000-7000-8000-0000000000b1'")
        .execute(&pool)
        .await
        .unwrap();
    until_status(&gateway, &acme_new, "m", 200).await;
    let fleet = self::fleet(&plane).await;
    assert_eq!(fleet["config_errors"], json!([]), "{fleet}");
}

/// `(status, body)` of creating a webhook to `url` in `org`.
async fn create_webhook(cp: &ControlPlane, org: &str, url: &str) -> (u16, Value) {
    let response = send(
        Method::POST,
        &cp.api(&format!("/orgs/{org}/webhooks")),
        &cp.admin_token,
        Some(json!({"url": url})),
    )
    .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn webhooks_cannot_reach_inside_and_their_urls_stay_secret() {
    let db = TestDb::create().await.unwrap();
    // No allow-list: the harness's default lets test receivers on 127.0.0.1 through.
    let cp = ControlPlane::start_with(&db, &[("TOLLGATE_TELEMETRY__WEBHOOK_ALLOW_HOSTS", "[]")])
        .await
        .unwrap();
    let org: Value = send(
        Method::POST,
        &cp.api("/orgs"),
        &cp.admin_token,
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let org = org["id"].as_str().unwrap().to_owned();
    // A receiver that must never hear from the control plane.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = receiver.local_addr().unwrap().port();

    for (url, range) in [
        (format!("http://127.0.0.1:{port}/hook"), "loopback"),
        (format!("http://localhost:{port}/hook"), "loopback"),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "metadata",
        ),
        ("http://[fd00:ec2::254]/".to_owned(), "metadata"),
        ("http://10.0.0.7/hook".to_owned(), "private"),
        ("http://100.64.1.1/hook".to_owned(), "CGNAT"),
    ] {
        let (status, body) = create_webhook(&cp, &org, &url).await;
        assert_eq!(status, 422, "{url}: {body}");
        assert_eq!(body["errors"][0]["field"], "url", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(range), "{url}: {message}");
    }

    // A public destination: whole in the create answer only.
    let secret_url = "https://hooks.example.com/services/T0/s3cr3t-path?token=s3cr3t-query";
    let (status, created) = create_webhook(&cp, &org, secret_url).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["url"], secret_url);
    let hook = created["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/orgs/{org}/webhooks"),
        format!("/orgs/{org}/webhooks/{hook}"),
        format!("/audit?org_id={org}"),
    ] {
        let answer = send(Method::GET, &cp.api(&path), &cp.admin_token, None)
            .await
            .text()
            .await
            .unwrap();
        assert!(!answer.contains("s3cr3t"), "{path} shows the URL: {answer}");
        if path.contains("webhooks") {
            assert!(
                answer.contains("https://hooks.example.com/…"),
                "{path}: {answer}"
            );
        }
    }

    // At delivery the destination is checked again, whatever was stored: a name that
    // resolves to loopback (DNS re-pointed since creation) and a literal are refused,
    // and the receiver hears nothing.
    let pool = db.pool().await.unwrap();
    for (hook_id, url) in [
        (
            "00000000-0000-7000-8000-0000000000c1",
            format!("http://localhost:{port}/a"),
        ),
        (
            "00000000-0000-7000-8000-0000000000c2",
            format!("http://127.0.0.1:{port}/b"),
        ),
    ] {
        sqlx::query("INSERT INTO webhooks (id, org_id, url) VALUES ($1, $2, $3)")
            .bind(hook_id.parse::<uuid::Uuid>().unwrap())
            .bind(org.parse::<uuid::Uuid>().unwrap())
            .bind(&url)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO budget_alerts (id, org_id, budget_id, scope_kind, scope_id, period, period_start, threshold_pct, spent_micros, amount_micros)
         VALUES ('00000000-0000-7000-8000-0000000000d1', '{org}', '00000000-0000-7000-8000-0000000000d2', 'org', '{org}', 'total', now(), 50, 1, 2);
         INSERT INTO alert_notifications (alert_id, webhook_id, org_id) VALUES
           ('00000000-0000-7000-8000-0000000000d1', '00000000-0000-7000-8000-0000000000c1', '{org}'),
           ('00000000-0000-7000-8000-0000000000d1', '00000000-0000-7000-8000-0000000000c2', '{org}');"
    )))
    .execute(&pool)
    .await
    .unwrap();
    for hook_id in [
        "00000000-0000-7000-8000-0000000000c1",
        "00000000-0000-7000-8000-0000000000c2",
    ] {
        let deadline = Instant::now() + Duration::from_secs(10);
        let log = loop {
            let log: Value = send(
                Method::GET,
                &cp.api(&format!("/orgs/{org}/webhooks/{hook_id}/deliveries")),
                &cp.admin_token,
                None,
            )
            .await
            .json()
            .await
            .unwrap();
            if !log.as_array().unwrap().is_empty() || Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let attempt = &log[0];
        assert_eq!(attempt["outcome"], "failed", "{log}");
        assert!(attempt["status_code"].is_null(), "{log}");
        let error = attempt["error"].as_str().unwrap();
        assert!(error.contains("loopback"), "{hook_id}: {error}");
    }
    let accepted = tokio::time::timeout(Duration::from_millis(200), receiver.accept()).await;
    assert!(accepted.is_err(), "the receiver was reached");
}

/// What seeded API fuzzing (deploy/local/api-tests) found once it reached past the 404s.
#[tokio::test]
async fn fuzzing_findings_answer_as_documented() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    // A NUL in a text filter cannot reach Postgres: 422, not 500.
    let audit = send(
        Method::GET,
        &cp.api("/audit?object_type=a%00b"),
        &cp.admin_token,
        None,
    )
    .await;
    assert_eq!(audit.status(), 422, "{}", audit.text().await.unwrap());

    // A retried key create answers the key without its secret, as documented.
    let org: Value = send(
        Method::POST,
        &cp.api("/orgs"),
        &cp.admin_token,
        Some(json!({"slug": "acme", "name": "Acme"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let org = org["id"].as_str().unwrap();
    let team: Value = send(
        Method::POST,
        &cp.api(&format!("/orgs/{org}/teams")),
        &cp.admin_token,
        Some(json!({"slug": "t", "name": "T"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let create = || {
        http()
            .post(cp.api(&format!("/orgs/{org}/keys")))
            .bearer_auth(&cp.admin_token)
            .header("idempotency-key", "k-1")
            .json(&json!({"team_id": team["id"]}))
            .send()
    };
    let first: Value = create().await.unwrap().json().await.unwrap();
    assert!(first["key"].as_str().unwrap().starts_with("tg_"));
    let retry = create().await.unwrap();
    assert_eq!(retry.status(), 201);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], first["id"]);
    assert!(retry.get("key").is_none(), "{retry}");
    let doc: Value = http()
        .get(format!("{}/api/openapi.json", cp.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schema = doc["components"]["schemas"]["CreatedKey"].to_string();
    assert!(!schema.contains(r#""required":["key"]"#), "{schema}");
}
