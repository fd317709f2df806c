//! Telemetry cannot forge spend, end to end: a real control plane on its own database
//! (regions `eu` and `us`, each with deployments), gateway credentials enrolled over
//! `ConfigService.Enroll`, usage sent over `TelemetryService.Report` by a tonic client as
//! a gateway sends it, and a real gateway process enrolling and renewing on its own.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tollgate_proto::config as config_proto;
use tollgate_proto::config::config_service_client::ConfigServiceClient;
use tollgate_proto::telemetry as proto;
use tollgate_proto::telemetry::telemetry_service_client::TelemetryServiceClient;
use tollgate_tests::control::enroll;
use tonic::Code;
use uuid::Uuid;

use crate::config_push::{Plane, call, send, until_status};

/// Deployments of the shared plane (see `config_push::Plane::start`).
const EU_DEPLOYMENT: &str = "00000000-0000-7000-8000-000000000004";
const US_DEPLOYMENT: &str = "00000000-0000-7000-8000-000000000005";

/// What a revocation may take to end the streams that use it.
const REVOCATION_BOUND: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn authorized<T>(message: T, bearer: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    request
}

/// What `rx` receives, as a request stream.
fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

fn grpc(plane: &Plane) -> String {
    plane.cp.grpc.clone().unwrap()
}

/// A new enrollment token of `region`: `(id, secret)`.
async fn enrollment_token(plane: &Plane, region: &str) -> (String, String) {
    let created: Value = send(
        Method::POST,
        &plane
            .cp
            .api(&format!("/regions/{region}/enrollment-tokens")),
        &plane.cp.admin_token,
        Some(json!({"name": "integrity"})),
    )
    .await
    .json()
    .await
    .unwrap();
    (
        created["enrollment_token"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// `(public id, org, team)` of a new key of a new team in `org` (a new org if `None`).
async fn key_in(plane: &Plane, org: Option<&str>) -> (String, String, String) {
    let org = match org {
        Some(org) => org.to_owned(),
        None => {
            let slug = format!("o{}", &Uuid::now_v7().simple().to_string()[20..]);
            let org: Value = send(
                Method::POST,
                &plane.cp.api("/orgs"),
                &plane.cp.admin_token,
                Some(json!({"slug": slug, "name": slug})),
            )
            .await
            .json()
            .await
            .unwrap();
            org["id"].as_str().unwrap().to_owned()
        }
    };
    let team: Value = send(
        Method::POST,
        &plane.cp.api(&format!("/orgs/{org}/teams")),
        &plane.cp.admin_token,
        Some(json!({"slug": format!("t{}", &Uuid::now_v7().simple().to_string()[20..]), "name": "T"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let team = team["id"].as_str().unwrap().to_owned();
    let key: Value = send(
        Method::POST,
        &plane.cp.api(&format!("/orgs/{org}/keys")),
        &plane.cp.admin_token,
        Some(json!({"team_id": team})),
    )
    .await
    .json()
    .await
    .unwrap();
    (key["public_id"].as_str().unwrap().to_owned(), org, team)
}

fn event(key: &(String, String, String), cost: i64, reserved: i64) -> proto::UsageEvent {
    proto::UsageEvent {
        event_id: Uuid::now_v7().to_string(),
        gateway_id: "gw-int".into(),
        region: "eu".into(),
        org_id: key.1.clone(),
        team_id: key.2.clone(),
        key_id: key.0.clone(),
        model: "m".into(),
        deployment_id: EU_DEPLOYMENT.into(),
        endpoint: "/v1/chat/completions".into(),
        status: proto::CallStatus::Ok as i32,
        http_status: 200,
        started_at_unix_ms: now_ms(),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_micros: cost,
        reserved_micros: reserved,
        ..Default::default()
    }
}

async fn count(plane: &Plane, sql: &str) -> i64 {
    let pool = plane.db.pool().await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap()
}

/// An open config stream of `gateway_id` in `region`: the server's messages.
async fn open_stream(
    plane: &Plane,
    bearer: &str,
    gateway_id: &str,
    region: &str,
) -> Result<
    (
        tonic::Streaming<config_proto::ControlMessage>,
        mpsc::Sender<config_proto::GatewayMessage>,
    ),
    tonic::Status,
> {
    let mut client = ConfigServiceClient::connect(format!("http://{}", grpc(plane)))
        .await
        .unwrap()
        .max_decoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(4);
    tx.send(config_proto::GatewayMessage {
        msg: Some(config_proto::gateway_message::Msg::Hello(
            config_proto::Hello {
                gateway_id: gateway_id.into(),
                region: region.into(),
                build: "test".into(),
                last_applied_version: 0,
            },
        )),
    })
    .await
    .unwrap();
    let outbound = receiver_stream(rx);
    let inbound = client
        .stream(authorized(outbound, bearer))
        .await?
        .into_inner();
    Ok((inbound, tx))
}

#[tokio::test]
async fn forged_events_are_quarantined_while_the_rest_of_their_batch_is_committed() {
    let plane = Plane::start().await;
    let (_, token) = enrollment_token(&plane, "eu").await;
    let credential = enroll(&grpc(&plane), &token, "gw-int", "eu")
        .await
        .unwrap()
        .credential;
    assert!(credential.starts_with("tgc_"), "{credential}");
    // The gateway is also on the config stream, so the fleet view lists it.
    let (mut config, _hello) = open_stream(&plane, &credential, "gw-int", "eu")
        .await
        .unwrap();
    config.message().await.unwrap().expect("a first snapshot");

    let ours = key_in(&plane, Some(&plane.org)).await;
    let theirs = key_in(&plane, None).await;
    let valid_a = event(&ours, 100, 1_000);
    let valid_b = event(&ours, 200, 1_000);
    let mut unknown = event(&ours, 100, 1_000);
    unknown.key_id = "zzzzZZZZ99999999".into();
    // Another org's key, charged to our org and team.
    let mut other_org = event(&ours, 100, 1_000);
    other_org.key_id = theirs.0.clone();
    // A call said to be served by the other region's deployment.
    let mut other_region = event(&theirs, 100, 1_000);
    other_region.deployment_id = US_DEPLOYMENT.into();
    let far_above = event(&ours, 50_000_000, 1_000);
    let mut future = event(&ours, 100, 1_000);
    future.started_at_unix_ms = now_ms() + 3_600_000;
    let max = event(&ours, i64::MAX, 1_000);
    let max_reserved = event(&ours, i64::MAX, i64::MAX);
    let forged = [
        (&unknown, "unknown_key"),
        (&other_org, "key_scope"),
        (&other_region, "deployment_region"),
        (&far_above, "cost_above_reserved"),
        (&future, "future"),
        (&max, "cost_above_reserved"),
        (&max_reserved, "reserved"),
    ];
    let mut events = vec![valid_a.clone()];
    events.extend(forged.iter().map(|(e, _)| (*e).clone()));
    events.push(valid_b.clone());
    let batch = proto::UsageBatch {
        seq: 1,
        gateway_id: "gw-int".into(),
        events,
    };
    let next = proto::UsageBatch {
        seq: 2,
        gateway_id: "gw-int".into(),
        events: vec![event(&ours, 300, 1_000)],
    };
    let mut client = TelemetryServiceClient::connect(format!("http://{}", grpc(&plane)))
        .await
        .unwrap();
    let mut acks = client
        .report(authorized(
            futures_util::stream::iter([batch.clone(), next]),
            &credential,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Some(ack) = acks.message().await.unwrap() {
        acked.push(ack.committed_seq);
    }
    assert_eq!(
        acked,
        [1, 2],
        "both batches acked, the forged events held up nothing"
    );

    // Only the real events count, in the log and in every rollup.
    assert_eq!(count(&plane, "SELECT count(*) FROM usage_events").await, 3);
    for table in ["usage_events", "usage_hourly", "usage_daily"] {
        assert_eq!(
            count(
                &plane,
                &format!("SELECT sum(cost_micros)::bigint FROM {table}")
            )
            .await,
            600,
            "{table}"
        );
    }
    for (e, reason) in forged {
        assert_eq!(
            count(
                &plane,
                &format!(
                    "SELECT count(*) FROM usage_quarantine WHERE event_id = '{}' AND reason = '{reason}'
                       AND gateway_id = 'gw-int' AND region_id = 'eu' AND (event->>'cost_micros')::numeric = {}",
                    e.event_id, e.cost_micros
                )
            )
            .await,
            1,
            "{reason}"
        );
    }

    // A replay of the batch (a lost ack) neither stores nor quarantines anything twice.
    let replay = client
        .report(authorized(futures_util::stream::iter([batch]), &credential))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replay.committed_seq, 1);
    assert_eq!(count(&plane, "SELECT count(*) FROM usage_events").await, 3);
    assert_eq!(
        count(&plane, "SELECT count(*) FROM usage_quarantine").await,
        7
    );

    // Counted where an operator looks: the fleet view and the metrics.
    let fleet = plane.fleet().await;
    let row = fleet.iter().find(|g| g["id"] == "gw-int").unwrap();
    assert_eq!(row["quarantined_events"], 7, "{row}");
    let metrics = crate::http()
        .get(format!("{}/metrics", plane.cp.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("tollgate_usage_events_quarantined_total{reason=\"unknown_key\"}")),
        "{metrics}"
    );
}

#[tokio::test]
async fn rollup_sums_saturate_instead_of_overflowing() {
    use tollgate_control_plane::store::usage;
    use tollgate_control_plane::telemetry::ingest::Batch;
    use tollgate_tests::env::TestDb;

    let db = TestDb::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    tollgate_control_plane::MIGRATOR.run(&pool).await.unwrap();
    let key = (
        "abcdEFGH1234".to_owned(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    // The store alone (ingest's checks would refuse these): two events whose sum is past
    // i64::MAX, in one batch and then across batches.
    let huge = || {
        let mut e = event(&key, i64::MAX - 10, 0);
        e.prompt_tokens = u64::MAX;
        e
    };
    let batch = |events| {
        Batch::try_from(proto::UsageBatch {
            seq: 1,
            gateway_id: "gw-1".into(),
            events,
        })
        .unwrap()
    };
    let first = batch(vec![huge(), huge()]);
    assert_eq!(
        usage::ingest(&pool, "eu", "gw-1", &first.events)
            .await
            .unwrap()
            .inserted,
        2,
        "a sum past i64::MAX no longer fails the batch"
    );
    let second = batch(vec![huge(), event(&key, 5, 0)]);
    usage::ingest(&pool, "eu", "gw-1", &second.events)
        .await
        .unwrap();
    for table in ["usage_hourly", "usage_daily"] {
        let (cost, prompt, requests): (i64, i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(
            format!("SELECT cost_micros, prompt_tokens, requests FROM {table}"),
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((cost, prompt, requests), (i64::MAX, i64::MAX, 4), "{table}");
    }
    // Reading sums over saturated rows saturates too.
    let rows = usage::usage(
        &pool,
        &usage::UsageQuery {
            org_id: Uuid::parse_str(&key.1).unwrap(),
            interval: usage::Interval::Day,
            group_by: usage::GroupBy::None,
            from: time::OffsetDateTime::now_utc() - time::Duration::days(2),
            to: time::OffsetDateTime::now_utc() + time::Duration::days(1),
            after: None,
            limit: 10,
        },
        &usage::Visible::All,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].cost_micros, i64::MAX);
}

#[tokio::test]
async fn a_regions_token_cannot_enroll_or_stream_as_another_regions_gateway() {
    let plane = Plane::start().await;
    let (_, eu) = enrollment_token(&plane, "eu").await;
    let (_, us) = enrollment_token(&plane, "us").await;
    let url = grpc(&plane);

    let status = enroll(&url, &eu, "gw-a", "us").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let gw_a = enroll(&url, &eu, "gw-a", "eu").await.unwrap();
    assert!(
        gw_a.expires_at_unix_ms > now_ms() + 3_000_000,
        "about an hour"
    );
    let (mut stream, _hello) = open_stream(&plane, &gw_a.credential, "gw-a", "eu")
        .await
        .unwrap();
    stream.message().await.unwrap().expect("a first snapshot");

    // The us token can get no credential for eu's gateway...
    let status = enroll(&url, &us, "gw-a", "us").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("another region"), "{status:?}");
    // ... and its own gateway's credential cannot speak for it.
    let gw_b = enroll(&url, &us, "gw-b", "us").await.unwrap();
    for (id, region) in [("gw-a", "us"), ("gw-a", "eu"), ("gw-b", "eu")] {
        let status = open_stream(&plane, &gw_b.credential, id, region)
            .await
            .err()
            .unwrap_or_else(|| panic!("{id} in {region} was let in"));
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{id} {region}: {status:?}"
        );
    }
    // Not even straight at the store: the fleet row stays eu's.
    let pool = plane.db.pool().await.unwrap();
    let taken = tollgate_control_plane::store::fleet::connected(
        &pool,
        "gw-a",
        "us",
        "test",
        "replica",
        Uuid::now_v7(),
        0,
    )
    .await;
    assert!(
        matches!(
            taken,
            Err(tollgate_control_plane::store::StoreError::Conflict { .. })
        ),
        "{taken:?}"
    );
    let fleet = plane.fleet().await;
    let row = fleet.iter().find(|g| g["id"] == "gw-a").unwrap();
    assert_eq!(row["region_id"], "eu");
    assert_eq!(row["connected"], true);

    // Streams and usage take only a credential, never the enrollment token itself.
    let status = open_stream(&plane, &eu, "gw-a", "eu").await.err().unwrap();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("Enroll"), "{status:?}");
    let mut telemetry = TelemetryServiceClient::connect(format!("http://{url}"))
        .await
        .unwrap();
    let status = telemetry
        .spent(authorized(proto::SpentRequest::default(), &eu))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    telemetry
        .spent(authorized(proto::SpentRequest::default(), &gw_b.credential))
        .await
        .unwrap();
}

/// Waits for the next message of `stream`: the status it ended with, within `within`.
async fn ended_with(
    stream: &mut tonic::Streaming<config_proto::ControlMessage>,
    within: Duration,
) -> tonic::Status {
    tokio::time::timeout(within, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok("ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream is still open")
}

#[tokio::test]
async fn revoking_a_token_or_a_credential_ends_the_streams_that_use_it() {
    let plane = Plane::start().await;
    let (token_id, token) = enrollment_token(&plane, "eu").await;
    let (_, other_token) = enrollment_token(&plane, "eu").await;
    let url = grpc(&plane);
    let one = enroll(&url, &token, "gw-one", "eu").await.unwrap();
    let two = enroll(&url, &token, "gw-two", "eu").await.unwrap();
    let three = enroll(&url, &other_token, "gw-three", "eu").await.unwrap();
    let (mut config_one, _h1) = open_stream(&plane, &one.credential, "gw-one", "eu")
        .await
        .unwrap();
    let (mut config_two, _h2) = open_stream(&plane, &two.credential, "gw-two", "eu")
        .await
        .unwrap();
    let (mut config_three, _h3) = open_stream(&plane, &three.credential, "gw-three", "eu")
        .await
        .unwrap();
    for stream in [&mut config_one, &mut config_two, &mut config_three] {
        stream.message().await.unwrap().expect("a first snapshot");
    }
    // A usage link held open (nothing sent yet).
    let (usage_tx, usage_rx) = mpsc::channel::<proto::UsageBatch>(1);
    let mut usage = TelemetryServiceClient::connect(format!("http://{url}"))
        .await
        .unwrap()
        .report(authorized(receiver_stream(usage_rx), &one.credential))
        .await
        .unwrap()
        .into_inner();

    // One credential revoked: its stream ends, the others stay.
    let revoked = send(
        Method::DELETE,
        &plane.cp.api(&format!("/gateways/credentials/{}", three.id)),
        &plane.cp.admin_token,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let started = Instant::now();
    let status = ended_with(&mut config_three, REVOCATION_BOUND).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    println!(
        "a revoked credential's stream ended after {:?}",
        started.elapsed()
    );
    let mut renew = ConfigServiceClient::connect(format!("http://{url}"))
        .await
        .unwrap();
    let status = renew
        .renew(authorized(config_proto::RenewRequest {}, &three.credential))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The enrollment token revoked: every stream of every credential minted with it ends.
    let revoked = send(
        Method::DELETE,
        &plane
            .cp
            .api(&format!("/regions/eu/enrollment-tokens/{token_id}")),
        &plane.cp.admin_token,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let started = Instant::now();
    for stream in [&mut config_one, &mut config_two] {
        let status = ended_with(stream, REVOCATION_BOUND).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let usage_end = tokio::time::timeout(REVOCATION_BOUND, usage.message())
        .await
        .expect("the usage link is still open");
    assert_eq!(
        usage_end.unwrap_err().code(),
        Code::Unauthenticated,
        "the usage link ends too"
    );
    println!(
        "a revoked token's streams ended after {:?}",
        started.elapsed()
    );
    drop(usage_tx);
    for credential in [&one.credential, &two.credential] {
        let status = open_stream(&plane, credential, "gw-one", "eu")
            .await
            .err()
            .unwrap();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = enroll(&url, &token, "gw-one", "eu").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The fleet view shows each credential: gateway, issued, expires, revoked.
    let fleet: Value = send(
        Method::GET,
        &plane.cp.api("/gateways?region=eu"),
        &plane.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let credentials = fleet["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 3, "{fleet}");
    let three_row = credentials
        .iter()
        .find(|c| c["id"] == three.id.as_str())
        .unwrap();
    assert_eq!(three_row["gateway_id"], "gw-three");
    assert!(three_row["revoked_at"].is_string(), "{three_row}");
    assert!(three_row["issued_at"].is_string() && three_row["expires_at"].is_string());
    assert!(
        !fleet.to_string().contains(&three.credential),
        "no secret in the view"
    );
}

#[tokio::test]
async fn a_gateway_enrolls_renews_and_re_enrolls_after_its_credential_is_revoked() {
    // Credentials of 2 s: the gateway renews every second.
    let plane =
        Plane::start_with(|_| vec![("TOLLGATE_GRPC__CREDENTIAL_TTL_S".to_owned(), "2".to_owned())])
            .await;
    let (_, token) = enrollment_token(&plane, "eu").await;
    let gateway = plane
        .gateway("eu", "gw-pod", &grpc(&plane), &token, "pod.lkg")
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    // Past two lifetimes, the gateway still has config and its usage still arrives.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, later) = plane.create_key().await;
    until_status(&gateway, &later, "m", 200).await;
    let credentials = |fleet: &Value| -> Vec<Value> {
        fleet["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["gateway_id"] == "gw-pod")
            .cloned()
            .collect()
    };
    let fleet = |plane: &Plane| {
        let (url, token) = (plane.cp.api("/gateways"), plane.cp.admin_token.clone());
        async move {
            send(Method::GET, &url, &token, None)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let held = credentials(&fleet(&plane).await);
    assert_eq!(held.len(), 1, "one process, one credential: {held:?}");
    assert!(held[0]["renewed_at"].is_string(), "renewed: {held:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &plane,
        "SELECT count(*) FROM usage_events WHERE gateway_id = 'gw-pod' AND org_id IS NOT NULL",
    )
    .await
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "usage never arrived:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&plane, "SELECT count(*) FROM usage_quarantine").await,
        0
    );

    // Its credential revoked: the gateway enrolls again and goes on getting config.
    let id = held[0]["id"].as_str().unwrap().to_owned();
    let revoked = send(
        Method::DELETE,
        &plane.cp.api(&format!("/gateways/credentials/{id}")),
        &plane.cp.admin_token,
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = credentials(&fleet(&plane).await);
        if held.iter().any(|c| c["revoked_at"].is_null()) && held.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never re-enrolled: {held:?}\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, after) = plane.create_key().await;
    until_status(&gateway, &after, "m", 200).await;
    assert_eq!(call(&gateway, &key, "m").await.status(), 200);
}
