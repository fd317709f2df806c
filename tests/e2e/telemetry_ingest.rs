//! Telemetry into the control plane, end to end: a real `tollgate-control` with its gRPC
//! port on its own database, usage batches sent over `TelemetryService.Report` by a tonic
//! client (as a gateway sends them), and what comes out checked against what went in:
//! the request log and rollups, the usage API per caller, `Spent`, and budget alerts
//! delivered to a webhook receiver in this test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use tollgate_data_plane::pipeline::reserve::period_start;
use tollgate_data_plane::snapshot::Period;
use tollgate_proto::telemetry as proto;
use tollgate_proto::telemetry::telemetry_service_client::TelemetryServiceClient;
use tollgate_tests::control::{ControlPlane, cli, enroll, token_in};
use tollgate_tests::env::TestDb;
use tonic::Code;
use uuid::Uuid;

use crate::http;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

async fn send(method: Method, url: &str, token: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = http().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Polls `done` every 50 ms until it holds or `within` passes.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A control plane with its gRPC port, region `eu` with an enrollment token and the
/// credential of gateway `gw-1` enrolled with it, and org `acme` with team `ml`.
struct Plane {
    db: TestDb,
    cp: ControlPlane,
    grpc: String,
    /// The credential of gateway `gw-1` (what a gateway reports with).
    token: String,
    org: String,
    team: String,
    _dir: tempfile::TempDir,
}

impl Plane {
    async fn start(extra: &[(&str, &str)]) -> Self {
        let db = TestDb::create().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("signing.pem").display().to_string();
        cli(&db, &["signing-key", "new", "--out", &key_file])
            .await
            .unwrap();
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut env = vec![
            ("TOLLGATE_SIGNING__KEY_FILE", key_file.as_str()),
            ("TOLLGATE_GRPC__LISTEN", grpc.as_str()),
            ("TOLLGATE_TELEMETRY__WEBHOOK_BACKOFF_MS", "100"),
        ];
        env.extend_from_slice(extra);
        let cp = ControlPlane::start_with(&db, &env).await.unwrap();
        let mut plane = Self {
            db,
            cp,
            grpc,
            token: String::new(),
            org: String::new(),
            team: String::new(),
            _dir: dir,
        };
        plane
            .created("/regions", json!({"id": "eu", "name": "EU"}))
            .await;
        let enrollment = plane
            .created("/regions/eu/enrollment-tokens", json!({"name": "gw"}))
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        plane.token = enroll(&plane.grpc, &enrollment, "gw-1", "eu")
            .await
            .unwrap()
            .credential;
        plane.org = plane.org("acme").await;
        plane.team = plane.team(&plane.org.clone(), "ml").await;
        plane
    }

    /// POSTs as the platform admin and expects 201.
    async fn created(&self, path: &str, body: Value) -> Value {
        let response = send(
            Method::POST,
            &self.cp.api(path),
            &self.cp.admin_token,
            Some(body),
        )
        .await;
        assert_eq!(
            response.status(),
            201,
            "{path}: {}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    async fn org(&self, slug: &str) -> String {
        let org = self
            .created("/orgs", json!({"slug": slug, "name": slug}))
            .await;
        org["id"].as_str().unwrap().to_owned()
    }

    async fn team(&self, org: &str, slug: &str) -> String {
        let team = self
            .created(
                &format!("/orgs/{org}/teams"),
                json!({"slug": slug, "name": slug}),
            )
            .await;
        team["id"].as_str().unwrap().to_owned()
    }

    /// `(id, public id)` of a new key, created with `token` (its owner unless an admin).
    async fn key_as(&self, token: &str, org: &str, body: Value) -> (String, String) {
        let response = send(
            Method::POST,
            &self.cp.api(&format!("/orgs/{org}/keys")),
            token,
            Some(body),
        )
        .await;
        assert_eq!(response.status(), 201);
        let key: Value = response.json().await.unwrap();
        (
            key["id"].as_str().unwrap().to_owned(),
            key["public_id"].as_str().unwrap().to_owned(),
        )
    }

    async fn key(&self, org: &str, team: &str) -> (String, String) {
        self.key_as(&self.cp.admin_token, org, json!({"team_id": team}))
            .await
    }

    /// An admin API token for `email`, given `role` in `org` (or in `team`).
    async fn user(&self, email: &str, org: &str, role: &str, team: Option<&str>) -> String {
        self.created(
            &format!("/orgs/{org}/members"),
            json!({"email": email, "role": role, "team_id": team}),
        )
        .await;
        token_in(
            &cli(&self.db, &["tokens", "create", "--email", email])
                .await
                .unwrap(),
        )
        .unwrap()
    }

    async fn client(&self) -> TelemetryServiceClient<tonic::transport::Channel> {
        TelemetryServiceClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    fn authorized<T>(&self, message: T, token: &str) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    /// Sends `batches` on one stream; the acks, or the status the stream ended with.
    async fn report_with(
        &self,
        token: &str,
        batches: Vec<proto::UsageBatch>,
    ) -> Result<Vec<u64>, (Vec<u64>, tonic::Status)> {
        let request = self.authorized(futures_util::stream::iter(batches), token);
        let mut acks = match self.client().await.report(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Err((Vec::new(), status)),
        };
        let mut seen = Vec::new();
        loop {
            match acks.message().await {
                Ok(Some(ack)) => seen.push(ack.committed_seq),
                Ok(None) => return Ok(seen),
                Err(status) => return Err((seen, status)),
            }
        }
    }

    async fn report(&self, batches: Vec<proto::UsageBatch>) -> Vec<u64> {
        let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
        let acks = self.report_with(&self.token, batches).await.unwrap();
        assert_eq!(acks, seqs, "every batch acked in order after its commit");
        acks
    }

    async fn spent(&self, budgets: &[(&str, i64)]) -> Result<Vec<i64>, tonic::Status> {
        let request = proto::SpentRequest {
            budgets: budgets
                .iter()
                .map(|(id, start)| proto::BudgetPeriodRef {
                    budget_id: (*id).to_owned(),
                    period_start_unix_s: *start,
                })
                .collect(),
        };
        let request = self.authorized(request, &self.token);
        Ok(self
            .client()
            .await
            .spent(request)
            .await?
            .into_inner()
            .spent_micros)
    }

    /// `GET /usage?<query>` as `token`: status and body.
    async fn usage(&self, token: &str, query: &str) -> (u16, Value) {
        let response = send(
            Method::GET,
            &self.cp.api(&format!("/usage?{query}")),
            token,
            None,
        )
        .await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn count(&self, sql: &str) -> i64 {
        let pool = self.db.pool().await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

/// An event of `key` in `team` (and `project`) of `org`, `cost` micro-USD.
fn event(org: &str, team: &str, project: &str, key: &str, cost: i64) -> proto::UsageEvent {
    proto::UsageEvent {
        event_id: Uuid::now_v7().to_string(),
        gateway_id: "gw-1".into(),
        region: "eu".into(),
        org_id: org.into(),
        team_id: team.into(),
        project_id: project.into(),
        key_id: key.into(),
        model: "gpt-test".into(),
        endpoint: "/v1/chat/completions".into(),
        status: proto::CallStatus::Ok as i32,
        http_status: 200,
        started_at_unix_ms: now_ms(),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_micros: cost,
        reserved_micros: cost * 2,
        ..Default::default()
    }
}

fn batch(seq: u64, events: Vec<proto::UsageEvent>) -> proto::UsageBatch {
    proto::UsageBatch {
        seq,
        gateway_id: "gw-1".into(),
        events,
    }
}

/// Sums of `field` over a usage answer's rows.
fn total(usage: &Value, field: &str) -> i64 {
    usage["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_i64().unwrap())
        .sum()
}

/// `group → cost_micros` of a grouped usage answer.
fn by_group(usage: &Value) -> BTreeMap<String, i64> {
    let mut groups = BTreeMap::new();
    for row in usage["items"].as_array().unwrap() {
        *groups
            .entry(row["group"].as_str().unwrap_or("-").to_owned())
            .or_insert(0) += row["cost_micros"].as_i64().unwrap();
    }
    groups
}

fn range(interval: &str) -> String {
    let from = OffsetDateTime::now_utc() - time::Duration::days(3);
    let to = OffsetDateTime::now_utc() + time::Duration::hours(2);
    let f = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace('+', "%2B")
    };
    format!("interval={interval}&from={}&to={}", f(from), f(to))
}

#[tokio::test]
async fn replayed_batches_add_nothing_and_rollups_are_the_sum_of_the_events() {
    let p = Plane::start(&[]).await;
    let (_, key_a) = p.key(&p.org, &p.team).await;
    let project = p
        .created(
            &format!("/orgs/{}/projects", p.org),
            json!({"team_id": p.team, "slug": "p", "name": "P"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, key_b) = p
        .key_as(
            &p.cp.admin_token,
            &p.org,
            json!({"team_id": p.team, "project_id": project}),
        )
        .await;

    // 300 calls over the last 3 hours, two keys, two models, every tenth one failed.
    let start = now_ms();
    let events: Vec<proto::UsageEvent> = (0..300i64)
        .map(|i| {
            let (key, project) = if i % 3 == 0 {
                (&key_b, project.as_str())
            } else {
                (&key_a, "")
            };
            let mut e = event(&p.org, &p.team, project, key, i * 7 % 1000 + 1);
            e.started_at_unix_ms = start - i * 36_000;
            e.model = if i % 2 == 0 { "gpt-a" } else { "gpt-b" }.into();
            e.prompt_tokens = u64::try_from(i).unwrap();
            e.cache_read_tokens = 1;
            if i % 10 == 0 {
                e.status = proto::CallStatus::UpstreamError as i32;
                e.http_status = 502;
            }
            e
        })
        .collect();
    let cost: i64 = events.iter().map(|e| e.cost_micros).sum();
    let prompt: u64 = events.iter().map(|e| e.prompt_tokens).sum();
    // A call refused before its key was known: logged, in no one's rollup.
    let mut anonymous = event("", "", "", "", 0);
    anonymous.status = proto::CallStatus::Rejected as i32;
    let mut first = events[..100].to_vec();
    first.push(anonymous);
    let batches = vec![
        batch(1, first),
        batch(2, events[100..200].to_vec()),
        batch(3, events[200..].to_vec()),
    ];
    p.report(batches.clone()).await;
    assert_eq!(p.count("SELECT count(*) FROM usage_events").await, 301);

    // A gateway replaying its spool after a lost ack: the same batches, on a new stream.
    p.report(batches[1..].to_vec()).await;
    // ... and a batch mixing old events with new ones: only the new ones count.
    let fresh: Vec<proto::UsageEvent> = (0..10)
        .map(|_| event(&p.org, &p.team, "", &key_a, 1_000))
        .collect();
    let mut mixed = events[..50].to_vec();
    mixed.extend(fresh.iter().cloned());
    p.report(vec![batch(4, mixed)]).await;
    let (cost, prompt) = (cost + 10_000, prompt + 100);
    assert_eq!(p.count("SELECT count(*) FROM usage_events").await, 311);

    // The rollups are exactly the sum of the stored events, per hour and per day.
    for table in ["usage_hourly", "usage_daily"] {
        let sums = p
            .count(&format!(
                "SELECT (sum(requests) * 1000000000 + sum(errors) * 1000000 + sum(cache_read_tokens))::bigint FROM {table}"
            ))
            .await;
        assert_eq!(sums, 310 * 1_000_000_000 + 30 * 1_000_000 + 300, "{table}");
        assert_eq!(
            p.count(&format!("SELECT sum(cost_micros)::bigint FROM {table}"))
                .await,
            cost,
            "{table}"
        );
    }
    assert_eq!(
        p.count("SELECT sum(cost_micros)::bigint FROM usage_events WHERE org_id IS NOT NULL")
            .await,
        cost
    );

    // The usage API says the same, whatever the interval and grouping.
    for interval in ["hour", "day"] {
        let (status, usage) = p
            .usage(
                &p.cp.admin_token,
                &format!("org_id={}&{}", p.org, range(interval)),
            )
            .await;
        assert_eq!(status, 200, "{usage}");
        assert_eq!(total(&usage, "requests"), 310, "{interval}");
        assert_eq!(total(&usage, "errors"), 30);
        assert_eq!(total(&usage, "cost_micros"), cost);
        assert_eq!(
            total(&usage, "prompt_tokens"),
            i64::try_from(prompt).unwrap()
        );
        if interval == "hour" {
            assert!(usage["items"].as_array().unwrap().len() >= 3, "{usage}");
        }
    }
    let (_, by_model) = p
        .usage(
            &p.cp.admin_token,
            &format!("org_id={}&group_by=model&{}", p.org, range("day")),
        )
        .await;
    let models = by_group(&by_model);
    assert_eq!(
        models.keys().collect::<Vec<_>>(),
        ["gpt-a", "gpt-b", "gpt-test"]
    );
    assert_eq!(models.values().sum::<i64>(), cost);
    let (_, by_project) = p
        .usage(
            &p.cp.admin_token,
            &format!("org_id={}&group_by=project&{}", p.org, range("day")),
        )
        .await;
    let projects = by_group(&by_project);
    let in_project: i64 = events
        .iter()
        .filter(|e| !e.project_id.is_empty())
        .map(|e| e.cost_micros)
        .sum();
    assert_eq!(projects[&project], in_project);
    assert_eq!(projects["-"], cost - in_project, "keys without a project");
}

#[tokio::test]
async fn bad_events_are_quarantined_bad_batches_and_strangers_refused() {
    let p = Plane::start(&[]).await;
    let (_, key) = p.key(&p.org, &p.team).await;
    let good = || event(&p.org, &p.team, "", &key, 10);

    // A malformed event is set aside with its reason; the rest of its batch is stored
    // and the batch acked, so it never holds up what the gateway sends after it.
    let mut broken = good();
    broken.event_id = "not-a-uuid".into();
    let mut half = good();
    half.team_id.clear();
    p.report(vec![
        batch(1, vec![good()]),
        batch(2, vec![good(), broken, half]),
    ])
    .await;
    assert_eq!(p.count("SELECT count(*) FROM usage_events").await, 2);
    assert_eq!(
        p.count("SELECT sum(requests)::bigint FROM usage_daily")
            .await,
        2
    );
    assert_eq!(
        p.count(
            "SELECT count(*) FROM usage_quarantine WHERE reason = 'malformed' AND gateway_id = 'gw-1'"
        )
        .await,
        2
    );
    assert_eq!(
        p.count(
            "SELECT count(*) FROM usage_quarantine WHERE event_id = 'not-a-uuid' AND detail LIKE '%event 1: event_id%'"
        )
        .await,
        1
    );

    let (_, status) = p
        .report_with(&p.token, vec![batch(3, vec![good(); 10_001])])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("at most 10000"), "{status:?}");

    let (_, status) = p
        .report_with("tgc_0000", vec![batch(5, vec![good()])])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(p.count("SELECT count(*) FROM usage_events").await, 2);

    // The largest batch there may be goes through in one piece.
    let big: Vec<proto::UsageEvent> = (0..10_000).map(|_| good()).collect();
    p.report(vec![batch(6, big)]).await;
    assert_eq!(p.count("SELECT count(*) FROM usage_events").await, 10_002);
    assert_eq!(
        p.count("SELECT sum(cost_micros)::bigint FROM usage_hourly")
            .await,
        100_020
    );
}

/// `key → cost` of `org` as `token` sees it.
async fn keys(p: &Plane, token: &str, org: &str) -> BTreeMap<String, i64> {
    let (status, usage) = p.usage(token, &format!("org_id={org}&group_by=key")).await;
    assert_eq!(status, 200, "{usage}");
    by_group(&usage)
}

#[tokio::test]
async fn usage_shows_each_caller_only_what_its_role_may_see_as_json_or_csv() {
    let p = Plane::start(&[]).await;
    let (org, t1) = (p.org.clone(), p.team.clone());
    let t2 = p.team(&org, "ops").await;
    let mia = p.user("mia@acme.com", &org, "member", Some(&t1)).await;
    let tom = p.user("tom@acme.com", &org, "team_admin", Some(&t2)).await;
    let vera = p.user("vera@acme.com", &org, "viewer", None).await;
    let (_, mias_key) = p.key_as(&mia, &org, json!({"team_id": t1})).await;
    let (_, team_key) = p.key(&org, &t1).await;
    let (_, ops_key) = p.key(&org, &t2).await;
    let other = p.org("globex").await;
    let other_team = p.team(&other, "x").await;
    let (_, other_key) = p.key(&other, &other_team).await;
    let bob = p.user("bob@globex.com", &other, "org_admin", None).await;

    let started = now_ms() - 1_000;
    let mut events = Vec::new();
    for (org, team, key, cost, n) in [
        (&org, &t1, &mias_key, 100, 3),
        (&org, &t1, &team_key, 200, 1),
        (&org, &t2, &ops_key, 400, 1),
        (&other, &other_team, &other_key, 800, 2),
    ] {
        for _ in 0..n {
            let mut e = event(org, team, "", key, cost);
            e.started_at_unix_ms = started;
            events.push(e);
        }
    }
    p.report(vec![batch(1, events)]).await;

    let everything = BTreeMap::from([
        (mias_key.clone(), 300),
        (team_key.clone(), 200),
        (ops_key.clone(), 400),
    ]);
    assert_eq!(keys(&p, &p.cp.admin_token, &org).await, everything);
    assert_eq!(
        keys(&p, &vera, &org).await,
        everything,
        "an org viewer sees the org"
    );
    assert_eq!(
        keys(&p, &mia, &org).await,
        BTreeMap::from([(mias_key.clone(), 300)]),
        "a member sees only the keys it owns"
    );
    assert_eq!(
        keys(&p, &tom, &org).await,
        BTreeMap::from([(ops_key.clone(), 400)]),
        "a team admin sees its team"
    );
    let (_, teams) = p
        .usage(&tom, &format!("org_id={org}&group_by=team&interval=hour"))
        .await;
    assert_eq!(by_group(&teams), BTreeMap::from([(t2.clone(), 400)]));

    // Another org's admin learns nothing, not even that the org exists.
    let (status, _) = p.usage(&bob, &format!("org_id={org}")).await;
    assert_eq!(status, 404);
    let (_, own) = p.usage(&bob, &format!("org_id={other}")).await;
    assert_eq!(total(&own, "cost_micros"), 1_600);

    // CSV, asked for with format=csv or with Accept.
    for (query, accept) in [
        (format!("org_id={org}&group_by=key&format=csv"), None),
        (format!("org_id={org}&group_by=key"), Some("text/csv")),
    ] {
        let mut request = http()
            .get(p.cp.api(&format!("/usage?{query}")))
            .bearer_auth(&p.cp.admin_token);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let text = response.text().await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "bucket,key,requests,errors,prompt_tokens,completion_tokens,cache_read_tokens,cache_write_tokens,cost_micros"
        );
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!(",{mias_key},3,0,30,15,0,0,300"))),
            "{text}"
        );
    }

    // Pages follow each other without gaps or repeats.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = p
            .usage(
                &p.cp.admin_token,
                &format!("org_id={org}&group_by=key&limit=1{cursor}"),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(by_group(&page).into_keys());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={}", next.replace(':', "%3A")),
            None => break,
        }
    }
    assert_eq!(seen, everything.keys().cloned().collect::<Vec<_>>());

    // Every bad parameter is named.
    let (status, problem) = p
        .usage(
            &p.cp.admin_token,
            &format!("org_id={org}&group_by=user&from=yesterday&interval=week"),
        )
        .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["group_by", "interval", "from"]);
}

#[tokio::test]
async fn spent_is_the_sum_of_each_budget_period() {
    let p = Plane::start(&[]).await;
    let (org, team) = (p.org.clone(), p.team.clone());
    let project = p
        .created(
            &format!("/orgs/{org}/projects"),
            json!({"team_id": team, "slug": "p", "name": "P"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (k1_id, k1) = p
        .key_as(
            &p.cp.admin_token,
            &org,
            json!({"team_id": team, "project_id": project}),
        )
        .await;
    let (_, k2) = p.key(&org, &team).await;
    let budget = |kind: &str, id: &str, period: &str| json!({"scope_kind": kind, "scope_id": id, "amount_micros": 1_000_000_000_000i64, "period": period});
    let path = format!("/orgs/{org}/budgets");
    let org_week = p.created(&path, budget("org", &org, "week")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let team_month = p.created(&path, budget("team", &team, "month")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let project_total = p.created(&path, budget("project", &project, "total")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_day = p.created(&path, budget("key", &k1_id, "day")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Now, two hours ago, and 40 days ago (older than every partition: the request log's
    // default partition takes it).
    let now = now_ms();
    let mut events = Vec::new();
    for (key, project, cost, at) in [
        (&k1, project.as_str(), 1_000, now),
        (&k2, "", 500, now),
        (&k1, project.as_str(), 70, now - 2 * HOUR_MS),
        (&k1, project.as_str(), 300, now - 40 * DAY_MS),
    ] {
        let mut e = event(&org, &team, project, key, cost);
        e.started_at_unix_ms = at;
        events.push(e);
    }
    p.report(vec![batch(1, events.clone())]).await;
    assert_eq!(
        p.count("SELECT count(*) FROM usage_events_default").await,
        1,
        "the 40-day-old event is stored all the same"
    );

    let utc_now = OffsetDateTime::now_utc();
    let start = |period| period_start(period, utc_now);
    let since = |from_s: i64, key: Option<&str>| -> i64 {
        events
            .iter()
            .filter(|e| e.started_at_unix_ms >= from_s * 1000)
            .filter(|e| key.is_none_or(|k| e.key_id == k))
            .map(|e| e.cost_micros)
            .sum()
    };
    // Since the start of the previous hour: not aligned to a day, summed per hour.
    let last_hour = (now / HOUR_MS - 1) * HOUR_MS / 1000;
    let unknown = Uuid::now_v7().to_string();
    let spent = p
        .spent(&[
            (&org_week, start(Period::Week)),
            (&team_month, start(Period::Month)),
            (&project_total, 0),
            (&key_day, start(Period::Day)),
            (&unknown, start(Period::Day)),
            (&team_month, last_hour),
        ])
        .await
        .unwrap();
    assert_eq!(
        spent,
        [
            since(start(Period::Week), None),
            since(start(Period::Month), None),
            1_370,
            since(start(Period::Day), Some(&k1)),
            0,
            1_500,
        ]
    );

    let status = p.spent(&[("budget-1", 0)]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut request = tonic::Request::new(proto::SpentRequest::default());
    request
        .metadata_mut()
        .insert("authorization", "Bearer tgc_nope".parse().unwrap());
    let status = p.client().await.spent(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// What a webhook receiver got, per path.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    at: Instant,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Path → how many first requests answer 500.
    failing: Arc<HashMap<String, usize>>,
}

impl Receiver {
    async fn start(failing: &[(&str, usize)]) -> (String, Self) {
        async fn hook(
            axum::extract::State(r): axum::extract::State<Receiver>,
            uri: http::Uri,
            headers: http::HeaderMap,
            body: bytes::Bytes,
        ) -> http::StatusCode {
            let path = uri.path().to_owned();
            let mut got = r.got.lock().unwrap();
            let before = got.iter().filter(|g| g.path == path).count();
            got.push(Received {
                path: path.clone(),
                at: Instant::now(),
                headers,
                body,
            });
            if before < r.failing.get(&path).copied().unwrap_or(0) {
                http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                http::StatusCode::NO_CONTENT
            }
        }
        let receiver = Self {
            got: Arc::default(),
            failing: Arc::new(failing.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()),
        };
        let app = axum::Router::new()
            .fallback(hook)
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, receiver)
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

/// The receiver's check: `X-Tollgate-Signature` is the HMAC-SHA256 of the body under
/// the secret shown when the webhook was created.
fn signed_by(received: &Received, secret: &str) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&received.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    received.headers["x-tollgate-signature"].to_str().unwrap() == expected
}

async fn webhook(p: &Plane, url: String, team: Option<&str>) -> (String, String) {
    let created = p
        .created(
            &format!("/orgs/{}/webhooks", p.org),
            json!({"url": url, "team_id": team, "description": "alerts"}),
        )
        .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn crossing_thresholds_fires_each_alert_once_to_signed_webhooks() {
    let p = Plane::start(&[]).await;
    let other_team = p.team(&p.org, "ops").await;
    let (_, key) = p.key(&p.org, &p.team).await;
    let (url, receiver) = Receiver::start(&[]).await;
    let (org_hook, org_secret) = webhook(&p, format!("{url}/org"), None).await;
    let (_, team_secret) = webhook(&p, format!("{url}/team"), Some(&p.team)).await;
    webhook(&p, format!("{url}/ops"), Some(&other_team)).await;
    // A lifetime budget, so that no period boundary can fall inside the test.
    let budget = p
        .created(
            &format!("/orgs/{}/budgets", p.org),
            json!({"scope_kind": "team", "scope_id": p.team, "amount_micros": 1_000_000, "period": "total"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let spend = |cost| event(&p.org, &p.team, "", &key, cost);
    let thresholds = |path: &str| -> Vec<i64> {
        let mut pcts: Vec<i64> = receiver
            .at(path)
            .iter()
            .map(|r| {
                serde_json::from_slice::<Value>(&r.body).unwrap()["threshold_pct"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        pcts.sort_unstable();
        pcts
    };

    let first = batch(1, vec![spend(300_000), spend(300_000)]);
    p.report(vec![first.clone()]).await;
    assert!(
        eventually(Duration::from_secs(10), || thresholds("/org") == [50]).await,
        "{:?}",
        thresholds("/org")
    );
    let second = batch(2, vec![spend(250_000)]);
    p.report(vec![second.clone()]).await;
    // Replays and spend below the next threshold fire nothing.
    p.report(vec![first, second]).await;
    p.report(vec![batch(3, vec![spend(100_000)])]).await;
    p.report(vec![batch(4, vec![spend(50_000)])]).await;
    p.report(vec![batch(5, vec![spend(1)])]).await;
    assert!(
        eventually(Duration::from_secs(10), || thresholds("/org")
            == [50, 80, 100])
        .await,
        "{:?}",
        thresholds("/org")
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        thresholds("/org"),
        [50, 80, 100],
        "each threshold exactly once"
    );
    assert_eq!(
        thresholds("/team"),
        [50, 80, 100],
        "the budget's team hears too"
    );
    assert!(
        receiver.at("/ops").is_empty(),
        "another team's webhook does not"
    );

    for received in receiver.at("/org") {
        assert!(signed_by(&received, &org_secret));
        assert!(!signed_by(&received, &team_secret));
        let body: Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(body["type"], "budget.threshold_crossed");
        assert_eq!(body["budget_id"], budget.as_str());
        assert_eq!(body["scope"], json!({"kind": "team", "id": p.team}));
        assert_eq!(body["period"]["kind"], "total");
        assert_eq!(body["amount_micros"], 1_000_000);
        let pct = body["threshold_pct"].as_i64().unwrap();
        assert!(body["spent_micros"].as_i64().unwrap() * 100 >= 1_000_000 * pct);
    }
    for received in receiver.at("/team") {
        assert!(signed_by(&received, &team_secret));
    }

    // The alerts API lists them with their deliveries.
    let alerts: Value = send(
        Method::GET,
        &p.cp.api(&format!("/alerts?org_id={}", p.org)),
        &p.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let items = alerts["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{alerts}");
    for alert in items {
        assert_eq!(alert["budget_id"], budget.as_str());
        let deliveries = alert["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 2, "{alert}");
        assert!(deliveries.iter().all(|d| d["state"] == "delivered"));
    }
    assert_eq!(
        p.count("SELECT count(*) FROM budget_alerts").await,
        3,
        "one row per threshold"
    );
    let log: Value = send(
        Method::GET,
        &p.cp
            .api(&format!("/orgs/{}/webhooks/{org_hook}/deliveries", p.org)),
        &p.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(log.as_array().unwrap().len(), 3, "{log}");
}

/// `(attempt, outcome, status)` of a webhook's delivery log, newest first.
async fn delivery_log(p: &Plane, hook: &str) -> Vec<(i64, String, i64)> {
    let log: Value = send(
        Method::GET,
        &p.cp
            .api(&format!("/orgs/{}/webhooks/{hook}/deliveries", p.org)),
        &p.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["outcome"].as_str().unwrap().to_owned(),
                d["status_code"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_and_logged() {
    let p = Plane::start(&[("TOLLGATE_TELEMETRY__WEBHOOK_ATTEMPTS", "3")]).await;
    let (_, key) = p.key(&p.org, &p.team).await;
    let (url, receiver) = Receiver::start(&[("/flaky", 2), ("/dead", usize::MAX)]).await;
    let (flaky, flaky_secret) = webhook(&p, format!("{url}/flaky"), None).await;
    let (dead, _) = webhook(&p, format!("{url}/dead"), None).await;
    p.created(
        &format!("/orgs/{}/budgets", p.org),
        json!({"scope_kind": "org", "scope_id": p.org, "amount_micros": 1_000, "period": "total",
               "alert_thresholds_pct": [100]}),
    )
    .await;
    p.report(vec![batch(
        1,
        vec![event(&p.org, &p.team, "", &key, 1_500)],
    )])
    .await;

    assert!(
        eventually(Duration::from_secs(15), || {
            receiver.at("/flaky").len() == 3 && receiver.at("/dead").len() == 3
        })
        .await
    );
    let attempts = receiver.at("/flaky");
    let numbers: Vec<&str> = attempts
        .iter()
        .map(|r| r.headers["x-tollgate-attempt"].to_str().unwrap())
        .collect();
    assert_eq!(numbers, ["1", "2", "3"]);
    assert!(attempts.iter().all(|r| signed_by(r, &flaky_secret)));
    assert!(
        attempts.iter().all(|r| r.body == attempts[0].body),
        "the same body each time"
    );
    // Backoff 100 ms, doubled: ≥ 100 ms before the second attempt, ≥ 200 ms before the third.
    assert!(attempts[1].at - attempts[0].at >= Duration::from_millis(90));
    assert!(attempts[2].at - attempts[1].at >= Duration::from_millis(190));

    let states = || async {
        let alerts: Value = send(
            Method::GET,
            &p.cp.api(&format!("/alerts?org_id={}", p.org)),
            &p.cp.admin_token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        let mut states: Vec<(String, String, i64, Option<i64>)> = alerts["items"][0]["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["webhook_id"].as_str().unwrap().to_owned(),
                    d["state"].as_str().unwrap().to_owned(),
                    d["attempts"].as_i64().unwrap(),
                    d["last_status_code"].as_i64(),
                )
            })
            .collect();
        states.sort();
        states
    };
    let mut expected = vec![
        (flaky.clone(), "delivered".to_owned(), 3, Some(204)),
        (dead.clone(), "failed".to_owned(), 3, Some(500)),
    ];
    expected.sort();
    let deadline = Instant::now() + Duration::from_secs(5);
    while states().await != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states().await, expected);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.at("/dead").len(), 3, "no attempt after the last");

    assert_eq!(
        delivery_log(&p, &flaky).await,
        [
            (3, "delivered".to_owned(), 204),
            (2, "failed".to_owned(), 500),
            (1, "failed".to_owned(), 500)
        ]
    );
    assert_eq!(
        delivery_log(&p, &dead).await,
        [
            (3, "failed".to_owned(), 500),
            (2, "failed".to_owned(), 500),
            (1, "failed".to_owned(), 500)
        ]
    );
}

#[tokio::test]
async fn day_partitions_take_over_early_rows_and_old_days_are_dropped() {
    use time::macros::{date, datetime};
    use tollgate_control_plane::store::usage;
    use tollgate_control_plane::telemetry::{ingest::Batch, partitions};

    let db = TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    tollgate_control_plane::MIGRATOR.run(&pool).await.unwrap();
    let where_rows = || async {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tableoid::regclass::text, count(*) FROM usage_events GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let (org, team) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let at = |t: OffsetDateTime| {
        let mut e = event(&org, &team, "", "abcdEFGH1234", 10);
        e.started_at_unix_ms = i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap();
        e
    };

    partitions::maintain(&pool, 90, date!(2026 - 03 - 10))
        .await
        .unwrap();
    let events = vec![
        at(datetime!(2026-03-10 12:00 UTC)),
        at(datetime!(2026-01-01 08:00 UTC)),
        at(datetime!(2026-03-20 23:59 UTC)),
    ];
    let batch = Batch::try_from(batch(1, events)).unwrap();
    let stored = usage::ingest(&pool, "eu", "gw-1", &batch.events)
        .await
        .unwrap();
    assert_eq!(stored.inserted, 3);
    assert_eq!(
        where_rows().await,
        [
            ("usage_events_default".to_owned(), 2),
            ("usage_events_p20260310".to_owned(), 1)
        ]
    );

    // Days later: the new day's partition takes its row over from the default one.
    partitions::maintain(&pool, 90, date!(2026 - 03 - 18))
        .await
        .unwrap();
    assert_eq!(
        where_rows().await,
        [
            ("usage_events_default".to_owned(), 1),
            ("usage_events_p20260310".to_owned(), 1),
            ("usage_events_p20260320".to_owned(), 1)
        ]
    );
    // A replay still finds them all (the primary key spans the partitions' rows).
    let again = usage::ingest(&pool, "eu", "gw-1", &batch.events)
        .await
        .unwrap();
    assert_eq!(again.inserted, 0);

    // Five days of retention: everything before 2026-03-13 goes, the rollups stay.
    partitions::maintain(&pool, 5, date!(2026 - 03 - 18))
        .await
        .unwrap();
    assert_eq!(
        where_rows().await,
        [("usage_events_p20260320".to_owned(), 1)]
    );
    let partitions: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        partitions,
        [
            "usage_events_default",
            "usage_events_p20260313",
            "usage_events_p20260317",
            "usage_events_p20260318",
            "usage_events_p20260319",
            "usage_events_p20260320",
            "usage_events_p20260321"
        ]
    );
    let rolled_up: i64 = sqlx::query_scalar("SELECT sum(cost_micros)::bigint FROM usage_daily")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rolled_up, 30);
}
