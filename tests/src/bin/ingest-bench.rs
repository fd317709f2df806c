//! Telemetry ingest benchmark (figures in BENCHMARKS.md, "Telemetry ingest").
//!
//! A real `tollgate-control` on a fresh Postgres database per case; each stream is one
//! gateway sending batches of 1,000 usage events back to back over
//! `TelemetryService.Report` (the next batch is on the wire while the previous one
//! commits, as the gateway's shipper does). Events spread over `--keys` keys and
//! `--models` models in the current hour, one team with a budget (so the alert check runs).
//! Reported: events/s from the first batch sent to the last ack, the server's commit time
//! per batch (its `/metrics`), and the request log's size per event. Every case checks
//! that the log and the rollups hold exactly what was sent.
//!
//! ```text
//! cargo build --release -p tollgate-control-plane --bin tollgate-control
//! cargo run --release -p tollgate-tests --bin ingest-bench [-- --batches 200 --streams 1,4]
//! ```
//! (needs Postgres; the control-plane binary is taken from the same target directory).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use clap::Parser;
use serde_json::{Value, json};
use tollgate_proto::telemetry as proto;
use tollgate_proto::telemetry::telemetry_service_client::TelemetryServiceClient;
use tollgate_tests::control::{ControlPlane, cli, enroll};
use tollgate_tests::env::TestDb;

#[derive(Debug, Parser)]
struct Args {
    /// Batches each stream sends.
    #[arg(long, default_value_t = 200)]
    batches: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,
    /// Concurrent streams (gateways) per case, comma-separated: one case each.
    #[arg(long, default_value = "1,4")]
    streams: String,
    /// Distinct keys the events spread over.
    #[arg(long, default_value_t = 50)]
    keys: usize,
    /// Distinct models the events spread over.
    #[arg(long, default_value_t = 4)]
    models: usize,
}

#[expect(clippy::print_stdout, reason = "the benchmark's report")]
fn say(text: &str) {
    println!("{text}");
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// xorshift64*: enough randomness to spread events, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap_or(1)).unwrap_or(0)
    }
}

struct World {
    org: String,
    team: String,
    keys: Vec<String>,
    models: Vec<String>,
}

fn make_batch(
    world: &World,
    rng: &mut Rng,
    gateway: &str,
    seq: u64,
    size: usize,
) -> proto::UsageBatch {
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0);
    let events = (0..size)
        .map(|_| {
            let prompt = 50 + rng.next() % 2_000;
            let completion = rng.next() % 500;
            proto::UsageEvent {
                event_id: uuid::Uuid::now_v7().to_string(),
                gateway_id: gateway.to_owned(),
                region: "eu".into(),
                org_id: world.org.clone(),
                team_id: world.team.clone(),
                key_id: world.keys[rng.below(world.keys.len())].clone(),
                model: world.models[rng.below(world.models.len())].clone(),
                // Not routed to a deployment (the bench has none): ingest's checks skip nothing
                // else.
                deployment_id: String::new(),
                endpoint: "/v1/chat/completions".into(),
                status: proto::CallStatus::Ok as i32,
                http_status: 200,
                streamed: rng.next().is_multiple_of(2),
                started_at_unix_ms: now_ms - i64::try_from(rng.next() % 1_000).unwrap_or(0),
                ttfb_ms: 120,
                latency_ms: 900,
                prompt_tokens: prompt,
                completion_tokens: completion,
                cost_micros: i64::try_from(prompt / 4 + completion).unwrap_or(0),
                reserved_micros: 5_000,
                price_table_version: "2026-11".into(),
                request_id: uuid::Uuid::now_v7().simple().to_string(),
                attempts: 1,
                ..Default::default()
            }
        })
        .collect();
    proto::UsageBatch {
        seq,
        gateway_id: gateway.to_owned(),
        events,
    }
}

/// One value of the control plane's `/metrics` (a summary quantile, a sum or a count).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn case(args: &Args, streams: usize) -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("signing.pem").display().to_string();
    cli(&db, &["signing-key", "new", "--out", &key_file]).await?;
    let grpc = format!("127.0.0.1:{}", free_port()?);
    let cp = ControlPlane::start_with(
        &db,
        &[
            ("TOLLGATE_SIGNING__KEY_FILE", &key_file),
            ("TOLLGATE_GRPC__LISTEN", &grpc),
        ],
    )
    .await?;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(cp.api(path))
            .bearer_auth(&cp.admin_token)
            .json(&body)
            .send()
    };
    post("/regions", json!({"id": "eu", "name": "EU"})).await?;
    let token: Value = post("/regions/eu/enrollment-tokens", json!({"name": "bench"}))
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().context("no token")?.to_owned();
    let org: Value = post("/orgs", json!({"slug": "bench", "name": "Bench"}))
        .await?
        .json()
        .await?;
    let org = org["id"].as_str().context("no org")?.to_owned();
    let team: Value = post(
        &format!("/orgs/{org}/teams"),
        json!({"slug": "t", "name": "T"}),
    )
    .await?
    .json()
    .await?;
    let team = team["id"].as_str().context("no team")?.to_owned();
    post(
        &format!("/orgs/{org}/budgets"),
        json!({"scope_kind": "team", "scope_id": team, "amount_micros": i64::MAX / 200, "period": "month"}),
    )
    .await?;
    // Ingest checks every event's key against the control plane's: the bench's keys
    // must exist, in its team.
    sqlx::query(
        "INSERT INTO api_keys (id, public_id, display_prefix, secret_hmac, org_id, team_id)
         SELECT md5('bench' || i)::uuid, 'benchkey' || lpad(i::text, 8, '0'), 'tg_bench', decode(repeat('00', 32), 'hex'), $1, $2
         FROM generate_series(0, $3 - 1) AS i",
    )
    .bind(uuid::Uuid::parse_str(&org)?)
    .bind(uuid::Uuid::parse_str(&team)?)
    .bind(i32::try_from(args.keys)?)
    .execute(&db.pool().await?)
    .await?;
    let world = std::sync::Arc::new(World {
        org,
        team,
        keys: (0..args.keys).map(|i| format!("benchkey{i:08}")).collect(),
        models: (0..args.models).map(|i| format!("model-{i}")).collect(),
    });

    let mut clients = Vec::new();
    for i in 0..streams {
        // Each stream is a gateway of its own, with the credential it enrolled for.
        let credential = enroll(&grpc, &token, &format!("bench-gw-{i}"), "eu")
            .await?
            .credential;
        clients.push((
            TelemetryServiceClient::connect(format!("http://{grpc}")).await?,
            credential,
        ));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (mut client, token)) in clients.into_iter().enumerate() {
        let world = world.clone();
        let (batches, size) = (args.batches, args.batch_size);
        tasks.push(tokio::spawn(async move {
            let gateway = format!("bench-gw-{i}");
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (u64::try_from(i).unwrap_or(0) + 1));
            let outgoing = futures_util::stream::iter(
                (1..=batches).map(move |seq| make_batch(&world, &mut rng, &gateway, seq, size)),
            );
            let mut request = tonic::Request::new(outgoing);
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            let mut acks = client.report(request).await?.into_inner();
            let mut last = 0;
            while let Some(ack) = acks.message().await? {
                last = ack.committed_seq;
            }
            ensure!(
                last == batches,
                "stream {i} ended at batch {last} of {batches}"
            );
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let total = u64::try_from(streams).unwrap_or(0)
        * args.batches
        * u64::try_from(args.batch_size).unwrap_or(0);

    let metrics = http
        .get(format!("{}/metrics", cp.url))
        .send()
        .await?
        .text()
        .await?;
    let q = |quantile: &str| {
        metric(
            &metrics,
            &format!("tollgate_usage_batch_commit_seconds{{quantile=\"{quantile}\"}}"),
        )
        .map_or_else(|| "?".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
    };
    let pool = db.pool().await?;
    let (stored, rolled_up, log_bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM usage_events),
                (SELECT sum(requests)::bigint FROM usage_hourly),
                (SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits
                  WHERE inhparent = 'usage_events'::regclass)",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(
        u64::try_from(stored)? == total && u64::try_from(rolled_up)? == total,
        "stored {stored} events, rolled up {rolled_up}, sent {total}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_hourly")
        .fetch_one(&pool)
        .await?;
    say(&format!(
        "{streams} stream(s) × {} batches × {} events: {total} events in {:.2} s = {:.0} events/s; \
         commit per batch p50 {} p99 {} max {}; {rows} hourly rollup rows; request log {:.0} bytes/event",
        args.batches,
        args.batch_size,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        q("0.5"),
        q("0.99"),
        q("1"),
        log_bytes as f64 / total as f64,
    ));
    drop(cp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// The store alone, in this process: `usage::ingest` of the same batches, one at a time,
/// without gRPC, decoding or the alert check.
async fn store_only(args: &Args) -> anyhow::Result<()> {
    use tollgate_control_plane::store::usage;
    use tollgate_control_plane::telemetry::ingest::{Batch, Bounds, Ceiling};
    let db = TestDb::create().await?;
    let pool = db.pool().await?;
    tollgate_control_plane::MIGRATOR.run(&pool).await?;
    tollgate_control_plane::telemetry::partitions::maintain_now(&pool, 90).await;
    let world = World {
        org: uuid::Uuid::now_v7().to_string(),
        team: uuid::Uuid::now_v7().to_string(),
        keys: (0..args.keys).map(|i| format!("benchkey{i:08}")).collect(),
        models: (0..args.models).map(|i| format!("model-{i}")).collect(),
    };
    let mut rng = Rng(7);
    let mut times = Vec::new();
    let mut convert = Duration::ZERO;
    let mut screen = Duration::ZERO;
    for seq in 1..=args.batches {
        let wire = make_batch(&world, &mut rng, "store", seq, args.batch_size);
        // What ingest checks each event against: this world's keys are not in the
        // database, so the screened copy is only timed, never stored.
        let mut probe = Batch::try_from(wire.clone())?;
        let t = Instant::now();
        let facts = usage::facts(&pool, "eu", &probe.key_ids()).await?;
        let bounds = Bounds::now(90, Ceiling::of(&facts, None));
        probe.screen(&facts, "eu", &bounds);
        screen += t.elapsed();
        let t = Instant::now();
        let batch = Batch::try_from(wire)?;
        convert += t.elapsed();
        let t = Instant::now();
        usage::ingest(&pool, "eu", "store", &batch.events).await?;
        times.push(t.elapsed());
    }
    let total: Duration = times.iter().sum();
    times.sort();
    let events = args.batches * u64::try_from(args.batch_size).unwrap_or(0);
    say(&format!(
        "store only, 1 connection: {events} events, {:.0} events/s; per batch p50 {:.1} ms p99 {:.1} ms; \
         checking + laying out a batch {:.2} ms; loading facts + screening a batch {:.2} ms",
        events as f64 / total.as_secs_f64(),
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() * 99 / 100].as_secs_f64() * 1000.0,
        convert.as_secs_f64() * 1000.0 / args.batches as f64,
        screen.as_secs_f64() * 1000.0 / args.batches as f64,
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    say(&format!(
        "ingest-bench: {} keys × {} models, batches of {}",
        args.keys, args.models, args.batch_size
    ));
    store_only(&args).await?;
    for streams in args.streams.split(',') {
        let streams: usize = streams.trim().parse().context("--streams")?;
        case(&args, streams).await?;
    }
    Ok(())
}
