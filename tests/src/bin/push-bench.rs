//! Config-push benchmark (figures in BENCHMARKS.md):
//!
//! 1. A world of 100k keys, 1k teams and 200 deployments (100 models × 2 regions) in a
//!    fresh Postgres database: the publisher's build + validate + sign time per region,
//!    the encoded size, and a gateway's apply time (verify + decode + validate), with the
//!    longest pause a concurrent request task saw during the swaps.
//! 2. Propagation: a real `tollgate-control` process and 20 config clients (real gRPC
//!    streams, real verification); the time from each admin-API write to each client
//!    having swapped the new version in, p50/p99 over 50 writes.
//!
//! `cargo run --release -p tollgate-tests --bin push-bench` (needs Postgres; the
//! control-plane binary is taken from the same target directory).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message as _;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tollgate_control_plane::push::build::World;
use tollgate_control_plane::push::publish::{Latest, Publisher};
use tollgate_data_plane::config::ControlSettings;
use tollgate_data_plane::identity::Enroller;
use tollgate_data_plane::prices::PriceTable;
use tollgate_data_plane::snapshot::live::Live;
use tollgate_data_plane::snapshot::remote::{Checker, ConfigClient};
use tollgate_data_plane::snapshot::{Credentials, Snapshot};
use tollgate_proto::config as proto;
use tollgate_signing::{SnapshotSigner, TrustedKeys};
use tollgate_tests::control::{ControlPlane, cli};
use tollgate_tests::env::TestDb;

#[expect(clippy::print_stdout, reason = "the benchmark's report")]
fn say(text: &str) {
    println!("{text}");
}

/// `orgs` orgs with `teams` teams in all, `keys` keys spread over the teams, `models`
/// models each deployed in regions eu and us, a budget per team.
async fn seed(pool: &PgPool, orgs: u32, teams: u32, keys: u32, models: u32) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO regions (id) VALUES ('eu'), ('us');
         INSERT INTO providers (id, kind, name, base_url)
           VALUES ('00000000-0000-7000-8000-000000000001', 'openai_compatible', 'p', 'http://127.0.0.1:9');
         INSERT INTO models (id, name)
           SELECT uuid_in(lpad(to_hex(i), 32, '0')::cstring), 'model-' || i FROM generate_series(1, {models}) i;
         INSERT INTO deployments (id, model_id, region_id, provider_id, upstream_model, input_price, output_price)
           SELECT gen_random_uuid(), m.id, r.id, '00000000-0000-7000-8000-000000000001', m.name, 150000, 600000
             FROM models m CROSS JOIN regions r;
         INSERT INTO orgs (id, slug, name)
           SELECT uuid_in(lpad(to_hex(1000000 + i), 32, '0')::cstring), 'org-' || i, 'Org ' || i FROM generate_series(1, {orgs}) i;
         INSERT INTO teams (id, org_id, slug, name)
           SELECT uuid_in(lpad(to_hex(2000000 + i), 32, '0')::cstring),
                  uuid_in(lpad(to_hex(1000000 + 1 + i % {orgs}), 32, '0')::cstring), 'team-' || i, 'Team ' || i
             FROM generate_series(1, {teams}) i;
         INSERT INTO api_keys (id, public_id, display_prefix, secret_hmac, org_id, team_id, name)
           SELECT gen_random_uuid(), 'k' || lpad(i::text, 15, '0'), 'tg_k' || lpad(i::text, 15, '0') || '_…',
                  decode(md5(i::text) || md5((i + 1)::text), 'hex'), t.org_id, t.id, 'key ' || i
             FROM generate_series(1, {keys}) i
             JOIN teams t ON t.id = uuid_in(lpad(to_hex(2000000 + 1 + i % {teams}), 32, '0')::cstring);
         INSERT INTO budgets (id, org_id, scope_kind, scope_id, amount_micros, period)
           SELECT gen_random_uuid(), org_id, 'team', id, 100000000, 'month' FROM teams;"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn snapshot_figures() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let pool = db.pool().await?;
    tollgate_control_plane::MIGRATOR.run(&pool).await?;
    let seeding = Instant::now();
    seed(&pool, 10, 1_000, 100_000, 100).await?;
    say(&format!(
        "seeded 100k keys, 1k teams, 200 deployments in {:?}",
        seeding.elapsed()
    ));

    let prices = PriceTable::built_in()?;
    let signer = Arc::new(SnapshotSigner::generate("bench")?);
    let publisher = Publisher::new(
        pool.clone(),
        signer.clone(),
        prices.clone(),
        Arc::new(Latest::default()),
        Duration::ZERO,
    );
    let started = Instant::now();
    let published = publisher.publish().await?;
    let total = started.elapsed();
    anyhow::ensure!(published.len() == 2, "expected two regions: {published:?}");
    say(&format!(
        "publish (load + build + validate + sign + store), both regions: {total:?} ({:?} per region)",
        total / 2
    ));

    // The phases, for one region.
    let mut conn = pool.acquire().await?;
    let t = Instant::now();
    let world = World::load(&mut conn).await?;
    let load = t.elapsed();
    let t = Instant::now();
    let mut snapshot = world.snapshot_for("eu");
    snapshot.version = 1;
    let payload = snapshot.encode_to_vec();
    let build = t.elapsed();
    let t = Instant::now();
    Snapshot::from_proto(snapshot, &prices, &Credentials::form_only())?;
    let validate = t.elapsed();
    let t = Instant::now();
    std::hint::black_box(signer.sign(&payload));
    let sign = t.elapsed();
    say(&format!(
        "  phases: load from Postgres {load:?} (shared by all regions), build + encode {build:?}, validate {validate:?}, sign {sign:?}"
    ));
    say(&format!(
        "  encoded size: {:.1} MiB",
        payload.len() as f64 / 1048576.0
    ));

    // Gateway side: verify + decode + validate, then the swap, with a request task running.
    let public = signer.public_key_base64();
    let checker = Arc::new(Checker {
        trusted: TrustedKeys::parse([("bench", public.as_str())])?,
        prices,
        credentials: Credentials::form_only(),
        region: "eu".into(),
    });
    let live = Arc::new(Live::new(Snapshot::empty()));
    let worst_gap_us = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let probe = {
        let (live, worst, stop) = (live.clone(), worst_gap_us.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !stop.is_cancelled() {
                let snapshot = live.load();
                std::hint::black_box(snapshot.keys.get("k000000000000042"));
                drop(snapshot);
                tokio::time::sleep(Duration::from_millis(1)).await;
                let gap = last.elapsed().as_micros() as u64;
                worst.fetch_max(gap, Ordering::Relaxed);
                last = Instant::now();
            }
        })
    };
    let mut applies = Vec::new();
    for version in 1..=5u64 {
        let mut wire = world.snapshot_for("eu");
        wire.version = version;
        let payload = wire.encode_to_vec();
        let signed = proto::SignedSnapshot {
            version,
            nonce: version,
            signature: signer.sign(&payload),
            payload,
            key_id: "bench".into(),
        };
        let t = Instant::now();
        let checker = checker.clone();
        let applied = live.version();
        let snapshot =
            tokio::task::spawn_blocking(move || checker.acceptance(applied).accept(&signed))
                .await??;
        let old = live.store(snapshot);
        tokio::task::spawn_blocking(move || drop(old)).await?;
        applies.push(t.elapsed());
    }
    stop.cancel();
    probe.await?;
    applies.sort();
    say(&format!(
        "  gateway apply (verify + decode + validate + swap), 5 runs: median {:?}, max {:?}",
        applies[2], applies[4]
    ));
    say(&format!(
        "  longest gap of a 1 ms request-like task during the swaps: {:.1} ms",
        worst_gap_us.load(Ordering::Relaxed) as f64 / 1000.0
    ));
    Ok(())
}

async fn propagation() -> anyhow::Result<()> {
    const GATEWAYS: usize = 20;
    const WRITES: usize = 50;
    let db = TestDb::create().await?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("signing.pem").display().to_string();
    let trusted = cli(
        &db,
        &["signing-key", "new", "--out", &key_file, "--key-id", "k1"],
    )
    .await?;
    let public = trusted
        .trim()
        .split('"')
        .nth(1)
        .context("public key")?
        .to_owned();
    let cp = ControlPlane::start_with(
        &db,
        &[
            ("TOLLGATE_SIGNING__KEY_FILE", key_file.as_str()),
            ("TOLLGATE_SIGNING__KEY_ID", "k1"),
            ("TOLLGATE_GRPC__LISTEN", "127.0.0.1:0"),
        ],
    )
    .await?;
    let pool = db.pool().await?;
    seed(&pool, 1, 10, 1_000, 5).await?;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/api/v1/regions/eu/enrollment-tokens", cp.url))
        .bearer_auth(&cp.admin_token)
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().context("token")?.to_owned();
    let org: String = sqlx::query_scalar("SELECT id::text FROM orgs LIMIT 1")
        .fetch_one(&pool)
        .await?;
    let team: String = sqlx::query_scalar("SELECT id::text FROM teams LIMIT 1")
        .fetch_one(&pool)
        .await?;

    let stop = CancellationToken::new();
    let mut lives = Vec::new();
    for i in 0..GATEWAYS {
        let settings: ControlSettings = toml::from_str(&format!(
            "url = \"http://{}\"\nenrollment_token = \"{token}\"\ntrusted_keys = {{ k1 = \"{public}\" }}\nlast_known_good = \"{}\"\n",
            cp.grpc.as_deref().context("grpc")?,
            dir.path().join(format!("gw-{i}.lkg")).display()
        ))?;
        let checker = Arc::new(Checker {
            trusted: TrustedKeys::parse([("k1", public.as_str())])?,
            prices: PriceTable::built_in()?,
            credentials: Credentials::form_only(),
            region: "eu".into(),
        });
        let live = Arc::new(Live::detached(Snapshot::empty()));
        // Each gateway enrolls for its own credential, as a real one does.
        let (enroller, credential) = Enroller::new(
            tollgate_data_plane::snapshot::remote::endpoint(&settings)?,
            token.clone(),
            format!("bench-{i}"),
            "eu".into(),
            Duration::from_secs(1),
        );
        tokio::spawn(enroller.run(stop.clone()));
        let client = ConfigClient::new(
            &settings,
            format!("bench-{i}"),
            credential,
            checker,
            live.clone(),
        )?;
        tokio::spawn(client.run(stop.clone()));
        lives.push(live);
    }
    let wait_all_above = |lives: &[Arc<Live>], version: u64| {
        let lives = lives.to_vec();
        async move {
            let started = Instant::now();
            let mut done: Vec<Option<Duration>> = vec![None; lives.len()];
            while done.iter().any(Option::is_none) {
                for (i, live) in lives.iter().enumerate() {
                    if done[i].is_none() && live.version() > version {
                        done[i] = Some(started.elapsed());
                    }
                }
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "gateways did not catch up"
                );
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            Ok(done.into_iter().flatten().collect::<Vec<_>>())
        }
    };
    wait_all_above(&lives, 0).await?;

    let mut each = Vec::new();
    let mut slowest = Vec::new();
    for _ in 0..WRITES {
        let before = lives.iter().map(|l| l.version()).min().unwrap_or(0);
        let started = Instant::now();
        let response = http
            .post(format!("{}/api/v1/orgs/{org}/keys", cp.url))
            .bearer_auth(&cp.admin_token)
            .json(&json!({"team_id": team}))
            .send()
            .await?;
        let write = started.elapsed();
        anyhow::ensure!(response.status() == 201, "key create failed");
        // Measured from the start of the write (the wait starts when it returned).
        let mut latencies: Vec<Duration> = wait_all_above(&lives, before)
            .await?
            .into_iter()
            .map(|l| l + write)
            .collect();
        latencies.sort();
        slowest.push(*latencies.last().unwrap_or(&Duration::ZERO));
        each.extend(latencies);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    each.sort();
    slowest.sort();
    say(&format!(
        "propagation, API write → applied on each of {GATEWAYS} gateways, {WRITES} writes: p50 {:?}, p99 {:?}; last gateway per write p50 {:?}, p99 {:?}",
        percentile(&each, 0.5),
        percentile(&each, 0.99),
        percentile(&slowest, 0.5),
        percentile(&slowest, 0.99)
    ));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    snapshot_figures().await?;
    propagation().await?;
    Ok(())
}
