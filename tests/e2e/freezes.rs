//! Emergency stop (issue #13) end to end: a freeze made through the admin API reaches a
//! real gateway over the config stream and refuses the frozen scope's calls with code
//! `frozen` before anything is reserved in the Redis ledger; lifting it restores service.
//! Who may freeze follows the scope; other orgs see nothing. Also the region's public URL.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::{ControlPlane, cli, token_in};
use tollgate_tests::env::{TestDb, TestRedis};
use tollgate_tests::gateway::GatewayProcess;

use crate::config_push::{Plane, call, send, until_ready};

/// A safety net for polling on a loaded machine, not a measurement.
const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `m` with `key` until the gateway answers `status`; the time it took and the body.
async fn until_answer(gateway: &GatewayProcess, key: &str, status: u16) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let response = call(gateway, key, "m").await;
        let got = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        if got == status {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "still {got} ({body}), not {status}, after {DEADLINE:?}:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// (spent, reserved) of a lifetime budget in the gateway's Redis ledger.
async fn counter(redis: &TestRedis, org: &str, budget: &str) -> (i64, i64) {
    let mut con = redis.connection().await.unwrap();
    let key = format!("{}{{org:{org}}}:budget:{budget}:0", redis.prefix);
    let (spent, reserved): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(key)
        .arg("spent")
        .arg("reserved")
        .query_async(&mut con)
        .await
        .unwrap();
    (spent.unwrap_or(0), reserved.unwrap_or(0))
}

/// The budget's counter once nothing is reserved and something was spent.
async fn settled(redis: &TestRedis, org: &str, budget: &str) -> (i64, i64) {
    let started = Instant::now();
    loop {
        let (spent, reserved) = counter(redis, org, budget).await;
        if spent > 0 && reserved == 0 {
            return (spent, reserved);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never settled: {spent}/{reserved}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn created(cp: &ControlPlane, token: &str, path: &str, body: Value) -> Value {
    let response = send(Method::POST, &cp.api(path), token, Some(body)).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "POST {path}: {body}");
    body
}

#[tokio::test]
async fn a_frozen_team_s_key_is_refused_with_nothing_reserved_until_the_freeze_is_lifted() {
    let redis = TestRedis::new().await.unwrap();
    let plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let ledger = format!(
        "[ledger]\nkind = \"redis\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\n",
        redis.url, redis.prefix
    );
    let gateway = plane
        .gateway_full(
            "eu",
            "gw-eu",
            &format!("http://{grpc}"),
            &token,
            "eu.lkg",
            "",
            &ledger,
        )
        .await;
    until_ready(&gateway).await;
    let (cp, admin, org, team) = (&plane.cp, &plane.cp.admin_token, &plane.org, &plane.team);
    let budget = created(
        cp,
        admin,
        &format!("/orgs/{org}/budgets"),
        json!({"scope_kind": "team", "scope_id": team, "amount_micros": 1_000_000, "period": "total"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, key) = plane.create_key().await;
    until_answer(&gateway, &key, 200).await;
    settled(&redis, org, &budget).await;

    let reason = "incident 42: runaway agent";
    let freeze = created(
        cp,
        admin,
        &format!("/orgs/{org}/freezes"),
        json!({"scope_kind": "team", "scope_id": team, "reason": reason}),
    )
    .await;
    let frozen_at = Instant::now();
    let (_, refusal) = until_answer(&gateway, &key, 403).await;
    let propagation = frozen_at.elapsed();
    println!("propagation: freeze refused calls after {propagation:?}");
    assert_eq!(refusal["error"]["code"], "frozen", "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("team `ML`")
            && message.contains(team.as_str())
            && message.contains(reason),
        "the refusal names the frozen scope and the reason: {message}"
    );
    // Calls answered before the freeze arrived have settled; from here on every call is
    // refused, and none touches the ledger or the upstream.
    let before = settled(&redis, org, &budget).await;
    let upstream_calls = plane.mock.api_requests().len();
    for _ in 0..3 {
        let response = call(&gateway, &key, "m").await;
        assert_eq!(response.status(), 403);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "frozen", "{body}");
    }
    assert_eq!(
        counter(&redis, org, &budget).await,
        before,
        "a refused call reserves nothing"
    );
    assert_eq!(plane.mock.api_requests().len(), upstream_calls);
    let events = gateway.usage_events(5).await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["error_code"] == "frozen")
        .collect();
    assert!(!refused.is_empty(), "{events:?}");
    for e in &refused {
        assert_eq!(e["status"], "CALL_STATUS_REJECTED", "{e}");
        assert_eq!(e["http_status"], 403, "{e}");
        assert_eq!(e["reserved_micros"].as_i64().unwrap_or(0), 0, "{e}");
    }

    let active: Value = send(
        Method::GET,
        &cp.api(&format!("/orgs/{org}/freezes")),
        admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active[0]["id"], freeze["id"]);
    let lift_path = format!(
        "/orgs/{org}/freezes/{}/lift",
        freeze["id"].as_str().unwrap()
    );
    let lifted = send(Method::POST, &cp.api(&lift_path), admin, None).await;
    assert_eq!(lifted.status(), 200);
    let lifted: Value = lifted.json().await.unwrap();
    assert!(lifted["lifted_at"].is_string(), "{lifted}");
    assert_eq!(lifted["lifted_by"], "admin@example.com");
    let lifted_at = Instant::now();
    until_answer(&gateway, &key, 200).await;
    println!(
        "propagation: lift restored calls after {:?}",
        lifted_at.elapsed()
    );
    let again = send(Method::POST, &cp.api(&lift_path), admin, None).await;
    assert_eq!(again.status(), 409, "a lifted freeze is lifted once");
    let active: Value = send(
        Method::GET,
        &cp.api(&format!("/orgs/{org}/freezes")),
        admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(active, json!([]));

    // Both acts are audited, the lift with its before and after.
    let audit: Value = send(
        Method::GET,
        &cp.api(&format!("/audit?org_id={org}&object_type=freeze")),
        admin,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let entries = audit.as_array().unwrap();
    let create = entries.iter().find(|e| e["action"] == "create");
    let create = create.unwrap_or_else(|| panic!("no create entry: {audit}"));
    assert_eq!(create["object_id"], freeze["id"]);
    assert_eq!(create["after"]["reason"], reason);
    let update = entries.iter().find(|e| e["action"] == "update");
    let update = update.unwrap_or_else(|| panic!("no update entry: {audit}"));
    assert!(update["before"]["lifted_at"].is_null(), "{update}");
    assert!(update["after"]["lifted_at"].is_string(), "{update}");
}

/// A user with `role` in `org` (in `team`, if given) and a token for it.
async fn person(
    db: &TestDb,
    cp: &ControlPlane,
    org: &str,
    email: &str,
    role: &str,
    team: Option<&str>,
) -> String {
    let mut body = json!({"email": email, "role": role});
    if let Some(team) = team {
        body["team_id"] = json!(team);
    }
    created(cp, &cp.admin_token, &format!("/orgs/{org}/members"), body).await;
    token_in(
        &cli(db, &["tokens", "create", "--email", email])
            .await
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn only_admins_of_the_scope_freeze_it_and_other_orgs_see_nothing() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let admin = cp.admin_token.clone();
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let a = id(created(&cp, &admin, "/orgs", json!({"slug": "a", "name": "A"})).await);
    let b = id(created(&cp, &admin, "/orgs", json!({"slug": "b", "name": "B"})).await);
    let team = id(created(
        &cp,
        &admin,
        &format!("/orgs/{a}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await);
    let project = id(created(
        &cp,
        &admin,
        &format!("/orgs/{a}/projects"),
        json!({"team_id": team, "slug": "p", "name": "P"}),
    )
    .await);
    let b_team = id(created(
        &cp,
        &admin,
        &format!("/orgs/{b}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await);
    let member = person(&db, &cp, &a, "tm@a.com", "member", Some(&team)).await;
    let team_admin = person(&db, &cp, &a, "ta@a.com", "team_admin", Some(&team)).await;
    let b_admin = person(&db, &cp, &b, "oa@b.com", "org_admin", None).await;
    let freezes = cp.api(&format!("/orgs/{a}/freezes"));
    let post = |token: &str, body: Value| {
        let (url, token) = (freezes.clone(), token.to_owned());
        async move { send(Method::POST, &url, &token, Some(body)).await }
    };
    let on =
        |kind: &str, scope: &str| json!({"scope_kind": kind, "scope_id": scope, "reason": "r"});

    // A team member freezes nothing, not even its own team's project.
    assert_eq!(post(&member, on("team", &team)).await.status(), 403);
    assert_eq!(post(&member, on("project", &project)).await.status(), 403);
    // A team admin freezes its team's projects, not the team (that is the org's call).
    assert_eq!(post(&team_admin, on("team", &team)).await.status(), 403);
    let frozen = post(&team_admin, on("project", &project)).await;
    assert_eq!(frozen.status(), 201);
    let frozen: Value = frozen.json().await.unwrap();
    assert_eq!(frozen["created_by"], "ta@a.com");
    assert_eq!(
        post(&admin, on("project", &project)).await.status(),
        409,
        "one active freeze per scope"
    );
    let lift = cp.api(&format!(
        "/orgs/{a}/freezes/{}/lift",
        frozen["id"].as_str().unwrap()
    ));
    assert_eq!(send(Method::POST, &lift, &member, None).await.status(), 403);

    // Another org's admin learns nothing: not the list, not the freeze, not the route.
    for (method, url) in [
        (Method::GET, freezes.clone()),
        (Method::POST, freezes.clone()),
        (Method::POST, lift.clone()),
    ] {
        let body = (method == Method::POST).then(|| on("team", &team));
        let response = send(method.clone(), &url, &b_admin, body).await;
        assert_eq!(response.status(), 404, "{method} {url} as org b's admin");
        let text = response.text().await.unwrap();
        assert!(!text.contains(&a), "{text}");
    }
    // A scope of another org is not found in this one, even for the platform admin.
    assert_eq!(post(&admin, on("team", &b_team)).await.status(), 404);

    // Bad input: every field named at once, in problem+json.
    let bad = post(
        &admin,
        json!({"scope_kind": "region", "scope_id": team, "reason": "  "}),
    )
    .await;
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");
    let problem: Value = bad.json().await.unwrap();
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["reason", "scope_kind"], "{problem}");
    let org_scope = post(
        &admin,
        json!({"scope_kind": "org", "scope_id": team, "reason": "r"}),
    )
    .await;
    assert_eq!(org_scope.status(), 422, "an org scope names the org itself");

    assert_eq!(
        send(Method::POST, &lift, &team_admin, None).await.status(),
        200
    );
}

#[tokio::test]
async fn a_region_s_public_url_round_trips_and_bad_urls_are_422() {
    let db = TestDb::create().await.unwrap();
    let cp = ControlPlane::start(&db).await.unwrap();
    let admin = cp.admin_token.clone();
    let region = created(
        &cp,
        &admin,
        "/regions",
        json!({"id": "eu-west", "name": "EU West", "public_url": "https://llm.eu.example.com/v1"}),
    )
    .await;
    assert_eq!(region["public_url"], "https://llm.eu.example.com/v1");
    let url = cp.api("/regions/eu-west");
    let got: Value = send(Method::GET, &url, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["public_url"], "https://llm.eu.example.com/v1");

    // PATCH changes only what it names; null unpublishes.
    let patched = send(
        Method::PATCH,
        &url,
        &admin,
        Some(json!({"public_url": "http://10.0.0.5:8080"})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let patched: Value = patched.json().await.unwrap();
    assert_eq!(patched["public_url"], "http://10.0.0.5:8080");
    assert_eq!(patched["name"], "EU West");
    let renamed: Value = send(Method::PATCH, &url, &admin, Some(json!({"name": "Europe"})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["public_url"], "http://10.0.0.5:8080");
    let cleared: Value = send(
        Method::PATCH,
        &url,
        &admin,
        Some(json!({"public_url": null})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(cleared["public_url"].is_null(), "{cleared}");
    let none = created(&cp, &admin, "/regions", json!({"id": "us", "name": "US"})).await;
    assert!(none["public_url"].is_null(), "{none}");

    for bad in [
        "ftp://llm.example.com",
        "https://user:secret@llm.example.com",
        "https://llm.example.com/v1?key=1",
        "https://llm.example.com/#top",
        "llm.example.com",
        "https://",
        "https://llm example.com",
    ] {
        for (method, path, body) in [
            (Method::PATCH, url.clone(), json!({"public_url": bad})),
            (
                Method::POST,
                cp.api("/regions"),
                json!({"id": "bad", "name": "Bad", "public_url": bad}),
            ),
        ] {
            let response = send(method.clone(), &path, &admin, Some(body)).await;
            assert_eq!(response.status(), 422, "{method} public_url {bad:?}");
            let problem: Value = response.json().await.unwrap();
            assert_eq!(problem["errors"][0]["field"], "public_url", "{problem}");
        }
    }
    let kept: Value = send(Method::GET, &url, &admin, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        kept["public_url"].is_null(),
        "refused changes change nothing"
    );
}
