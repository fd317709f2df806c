//! Graceful shutdown and the `healthcheck` subcommands: a SIGTERM'd gateway stops being
//! ready, still serves while load balancers notice, finishes the streams in flight and
//! exits 0 with every call settled; a SIGTERM'd control plane ends its config streams so
//! the fleet records the gateway as gone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey, binary};
use tollgate_tests::mock::MockUpstream;

use crate::config_push::{Plane, until_ready};
use crate::http;

/// A standalone gateway whose model `slow` streams 12 chunks 150 ms apart (~2 s), with a
/// drain delay long enough to observe.
async fn draining_gateway() -> (MockUpstream, TestKey, GatewayProcess) {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"slow\"\ndefault_max_output_tokens = 100\n\
         [[deployments]]\nid = \"d\"\nmodel = \"slow\"\nprovider = \"openai\"\nbase_url = \"{base}\"\n\
         upstream_model = \"m+chunks=12+delay=150\"\nprices = {{ input = 1000000, output = 1000000 }}\n{entry}",
        base = mock.openai_base_url(),
        entry = key.entry("search", ""),
    );
    let gateway = GatewayProcess::start(
        &config,
        &[
            ("TOLLGATE_SERVER__DRAIN_DELAY_MS", "1500"),
            ("TOLLGATE_SERVER__SHUTDOWN_DEADLINE_MS", "30000"),
        ],
    )
    .await
    .unwrap();
    (mock, key, gateway)
}

fn chat(stream: bool) -> Value {
    json!({"model": "slow", "stream": stream, "max_tokens": 50,
           "messages": [{"role": "user", "content": "count"}]})
}

async fn readyz(gateway: &GatewayProcess) -> (u16, String) {
    match http().get(format!("{}/readyz", gateway.url)).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn sigterm_turns_readyz_503_keeps_serving_through_the_drain_and_finishes_streams() {
    let (_mock, key, mut gateway) = draining_gateway().await;
    until_ready(&gateway).await;

    // A stream in flight when the signal comes.
    let mut streaming = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert_eq!(streaming.status(), 200);
    let first = streaming.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("data:"));

    gateway.terminate().await;
    let started = Instant::now();
    let (status, body) = loop {
        let (status, body) = readyz(&gateway).await;
        if status == 503 {
            break (status, body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "readyz never turned 503 after SIGTERM:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");

    // Still draining (the listener is open): a new call is served in full.
    let during = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        during.status(),
        200,
        "a call during the drain delay was refused"
    );
    let during: Value = during.json().await.unwrap();
    assert_eq!(during["usage"]["completion_tokens"], 12);

    // The stream that was in flight runs to its end.
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = streaming.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        rest.trim_end().ends_with("data: [DONE]"),
        "stream cut short:\n{rest}"
    );

    let exit = gateway.wait().await.unwrap();
    assert!(exit.success(), "exit {exit:?}:\n{}", gateway.stderr());
    // Both calls were settled and recorded before the process went away.
    let events = gateway.usage_events(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["http_status"] == 200), "{events:?}");
}

#[tokio::test]
async fn after_the_drain_delay_new_connections_are_refused_while_a_stream_finishes() {
    let (_mock, key, mut gateway) = draining_gateway().await;
    until_ready(&gateway).await;
    let mut streaming = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    let _ = streaming.chunk().await.unwrap();
    gateway.terminate().await;
    // Past the drain delay the listener is closed: a fresh connection is refused, even
    // though the process still runs to finish the stream.
    let started = Instant::now();
    loop {
        let fresh = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .get(format!("{}/healthz", gateway.url))
            .send()
            .await;
        if fresh.is_err() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the listener never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut rest = String::new();
    while let Some(chunk) = streaming.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        rest.trim_end().ends_with("data: [DONE]"),
        "stream cut short:\n{rest}"
    );
    assert!(gateway.wait().await.unwrap().success());
}

#[tokio::test]
async fn healthcheck_subcommands_say_ready_or_not_with_their_exit_code() {
    let (_mock, _key, mut gateway) = draining_gateway().await;
    until_ready(&gateway).await;
    let bin = binary("tollgate-gateway", "TOLLGATE_GATEWAY_BIN").unwrap();
    let probe = |url: String| {
        let bin = bin.clone();
        async move {
            tokio::process::Command::new(bin)
                .args(["healthcheck", "--url", &url])
                .env("TOLLGATE_AUTH__KEY_PEPPER", tollgate_tests::gateway::PEPPER)
                .output()
                .await
                .unwrap()
        }
    };
    let ok = probe(format!("{}/readyz", gateway.url)).await;
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ready: config version"));
    gateway.stop().await.unwrap();
    let gone = probe(format!("{}/readyz", gateway.url)).await;
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("unhealthy"));

    // The control plane's probe reads /readyz, which needs its database.
    let mut plane = Plane::start().await;
    let control = binary("tollgate-control", "TOLLGATE_CONTROL_BIN").unwrap();
    let up = tokio::process::Command::new(&control)
        .args(["healthcheck", "--url", &format!("{}/readyz", plane.cp.url)])
        .output()
        .await
        .unwrap();
    assert!(up.status.success(), "{up:?}");
    let live = http()
        .get(format!("{}/healthz", plane.cp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    plane.cp.stop().await.unwrap();
    let down = tokio::process::Command::new(&control)
        .args(["healthcheck", "--url", &format!("{}/readyz", plane.cp.url)])
        .output()
        .await
        .unwrap();
    assert_eq!(down.status.code(), Some(1), "{down:?}");
}

#[tokio::test]
async fn a_stopping_control_plane_ends_config_streams_and_the_fleet_records_it() {
    let mut plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway("eu", "gw-stop", &grpc, &token, "lkg-stop")
        .await;
    until_ready(&gateway).await;
    let started = Instant::now();
    while !plane
        .fleet()
        .await
        .iter()
        .any(|g| g["id"] == "gw-stop" && g["connected"] == true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = plane.cp.stop().await.unwrap();
    assert!(exit.success(), "{exit:?}");
    // The stream was ended by the replica (not cut by its death): the disconnect was
    // recorded before it exited.
    let pool = plane.db.pool().await.unwrap();
    let connected: bool = sqlx::query_scalar("SELECT connected FROM gateways WHERE id = 'gw-stop'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        !connected,
        "the gateway still shows as connected to a stopped replica"
    );
    // The gateway itself keeps serving from the config it has.
    assert_eq!(readyz(&gateway).await.0, 200);
}

#[tokio::test]
async fn a_gateway_given_two_replicas_moves_to_the_other_when_its_replica_stops() {
    let mut plane = Plane::start().await;
    let grpc_a = plane.cp.grpc.clone().unwrap();
    let grpc_b = format!("127.0.0.1:{}", crate::config_push::free_port());
    let env = Plane::env(&plane.key_file, &grpc_b);
    let replica_b =
        tollgate_tests::control::ControlPlane::serve(&plane.db, plane.cp.admin_token.clone(), &env)
            .await
            .unwrap();
    let token = plane.enrollment_token("eu").await;
    // Both replicas, in order; the gateway starts on the first.
    let urls = format!(
        "[\"http://{grpc_a}\", \"http://{}\"]",
        replica_b.grpc.as_deref().unwrap()
    );
    let config = format!(
        "[server]\nregion = \"eu\"\ngateway_id = \"gw-two\"\n\
         [control]\nurl = {urls}\nenrollment_token = \"{token}\"\n\
         trusted_keys = {{ {trusted} }}\nlast_known_good = \"{lkg}\"\nreconnect_max_ms = 300\n\
         [telemetry]\nspool_dir = \"{lkg}.spool\"\n",
        trusted = plane.trusted,
        lkg = plane.dir.path().join("two.lkg").display(),
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    until_ready(&gateway).await;

    let replica_of = |fleet: &[Value]| {
        fleet
            .iter()
            .find(|g| g["id"] == "gw-two" && g["connected"] == true)
            .map(|g| g["replica"].as_str().unwrap_or_default().to_owned())
    };
    let started = Instant::now();
    let first = loop {
        if let Some(replica) = replica_of(&plane.fleet().await) {
            break replica;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    plane.cp.stop().await.unwrap();
    // Replica B's API and stream carry on: the gateway reconnects there, and a key made
    // now reaches it.
    let fleet_b = || async {
        let fleet: Value = crate::config_push::send(
            reqwest::Method::GET,
            &replica_b.api("/gateways"),
            &replica_b.admin_token,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
        fleet["items"].as_array().unwrap().clone()
    };
    let started = Instant::now();
    loop {
        if let Some(replica) = replica_of(&fleet_b().await)
            && replica != first
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not move to the other replica:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created: Value = crate::config_push::send(
        reqwest::Method::POST,
        &replica_b.api(&format!("/orgs/{}/keys", plane.org)),
        &replica_b.admin_token,
        Some(json!({"team_id": plane.team})),
    )
    .await
    .json()
    .await
    .unwrap();
    let key = created["key"].as_str().unwrap();
    crate::config_push::until_status(&gateway, key, "m", 200).await;
}
