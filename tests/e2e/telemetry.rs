//! Usage from real gateways to a real control plane: nothing lost, nothing counted twice
//! (control-plane outage, gateway SIGKILL), and Redis budget counters restored from the
//! control plane's durable spend after Redis lost them.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::control::ControlPlane;
use tollgate_tests::env::TestRedis;
use tollgate_tests::gateway::GatewayProcess;

use crate::config_push::{Plane, call, send, until_ready, until_status};
use crate::http;

/// Requests and micro-USD the usage API reports for the plane's org (all time, by day).
pub(crate) async fn usage_totals(plane: &Plane) -> (i64, i64) {
    let from = (time::OffsetDateTime::now_utc() - time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let report: Value = send(
        Method::GET,
        &plane.cp.api(&format!(
            "/usage?org_id={}&interval=day&from={from}",
            plane.org
        )),
        &plane.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let items = report["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"));
    (
        items.iter().map(|r| r["requests"].as_i64().unwrap()).sum(),
        items
            .iter()
            .map(|r| r["cost_micros"].as_i64().unwrap())
            .sum(),
    )
}

/// Waits until the usage API shows `requests` calls; fails if it shows more.
async fn until_usage(plane: &Plane, requests: i64) -> i64 {
    let started = Instant::now();
    loop {
        let (seen, cost) = usage_totals(plane).await;
        assert!(
            seen <= requests,
            "usage shows {seen} calls, only {requests} were made"
        );
        if seen == requests {
            return cost;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "usage shows {seen} of {requests} calls after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the gateway settled for `org`: its usage log (one line per call), once it holds
/// `calls` of them. A call whose client left mid-stream settles when the provider's
/// stream ends (the gateway reads it to the end for its usage), so that can take a while.
async fn settled(gateway: &GatewayProcess, org: &str, calls: usize) -> (usize, i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events: Vec<Value> = gateway
            .usage_events(calls)
            .await
            .into_iter()
            .filter(|e| e["org_id"] == org)
            .collect();
        if events.len() >= calls || Instant::now() > deadline {
            let cost = events
                .iter()
                .map(|e| e["cost_micros"].as_i64().unwrap())
                .sum();
            return (events.len(), cost);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stream read for a few chunks and then dropped: the client went away.
async fn disconnect_mid_stream(gateway: &GatewayProcess, key: &str) {
    let response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(key)
        .json(&json!({"model": "slow", "stream": true, "messages": [{"role": "user", "content": "tell a long story"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    for _ in 0..3 {
        body.next().await;
    }
}

/// `n` calls of every kind: plain, streamed, upstream error, client gone mid-stream.
async fn mixed_calls(gateway: &GatewayProcess, key: &str, n: usize) -> usize {
    let mut made = 0;
    for i in 0..n {
        match i % 4 {
            0 => assert_eq!(call(gateway, key, "m").await.status(), 200),
            1 => {
                let response = http()
                    .post(format!("{}/chat/completions", gateway.v1()))
                    .bearer_auth(key)
                    .json(&json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.text().await.unwrap();
            }
            2 => assert!(
                call(gateway, key, "broken")
                    .await
                    .status()
                    .is_server_error()
            ),
            _ => disconnect_mid_stream(gateway, key).await,
        }
        made += 1;
    }
    made
}

#[tokio::test]
async fn every_call_arrives_exactly_once_across_a_control_plane_outage() {
    let mut plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway("eu", "gw-usage", &grpc, &token, "usage.lkg")
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;
    let mut calls = 1; // the probe that answered 200
    // until_status may have made calls that answered 401 before the key arrived: those
    // are usage too (rejected calls), but of no org; count only this org's.
    calls += mixed_calls(&gateway, &key, 12).await;
    until_usage(&plane, calls as i64).await;

    // The control plane goes away mid-traffic; calls go on and wait in the spool.
    plane.cp.kill().await;
    calls += mixed_calls(&gateway, &key, 12).await;
    let env = Plane::env(&plane.key_file, &grpc);
    plane.cp = ControlPlane::serve(&plane.db, plane.cp.admin_token.clone(), &env)
        .await
        .unwrap();
    calls += mixed_calls(&gateway, &key, 4).await;

    let durable_cost = until_usage(&plane, calls as i64).await;
    // Nothing more arrives later (no duplicates from replays).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(usage_totals(&plane).await.0, calls as i64);

    let org_events = gateway
        .usage_events(calls)
        .await
        .into_iter()
        .filter(|e| e["org_id"] == plane.org.as_str())
        .collect::<Vec<_>>();
    assert_eq!(org_events.len(), calls, "the gateway's own record");
    let settled_cost: i64 = org_events
        .iter()
        .map(|e| e["cost_micros"].as_i64().unwrap())
        .sum();
    assert!(settled_cost > 0);
    assert_eq!(
        durable_cost, settled_cost,
        "the control plane's spend is the gateways' settlements"
    );
}

#[tokio::test]
async fn a_gateway_killed_with_sigkill_delivers_what_it_had_spooled() {
    let mut plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let mut gateway = plane
        .gateway("eu", "gw-kill", &grpc, &token, "kill.lkg")
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;
    until_usage(&plane, 1).await;

    // With the control plane down, usage can only go to the spool.
    plane.cp.kill().await;
    let calls = 1 + mixed_calls(&gateway, &key, 20).await;
    let (logged, _) = settled(&gateway, &plane.org, calls).await;
    assert!(logged >= calls);
    // The usage log is written just before the spool; give the fsync a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.kill().await;

    let env = Plane::env(&plane.key_file, &grpc);
    plane.cp = ControlPlane::serve(&plane.db, plane.cp.admin_token.clone(), &env)
        .await
        .unwrap();
    let restarted = plane
        .gateway("eu", "gw-kill", &grpc, &token, "kill.lkg")
        .await;
    until_ready(&restarted).await;
    until_usage(&plane, calls as i64).await;
}

#[tokio::test]
async fn a_flushed_redis_gets_its_budget_counters_back_from_the_control_plane() {
    let plane = Plane::start().await;
    let redis = TestRedis::new().await.unwrap();
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let budget: Value = send(
        Method::POST,
        &plane.cp.api(&format!("/orgs/{}/budgets", plane.org)),
        &plane.cp.admin_token,
        Some(json!({"scope_kind": "team", "scope_id": plane.team, "amount_micros": 50_000_000, "period": "month"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let budget_id = budget["id"].as_str().unwrap().to_owned();
    let sections = format!(
        "[ledger]\nkind = \"redis\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\nmaintenance_interval_ms = 100\n",
        redis.url, redis.prefix
    );
    let url = format!("http://{grpc}");
    let gateway = plane
        .gateway_full("eu", "gw-seed", &url, &token, "seed.lkg", "", &sections)
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;
    let calls = 1 + mixed_calls(&gateway, &key, 8).await;
    let durable = until_usage(&plane, calls as i64).await;

    let mut con = redis.connection().await.unwrap();
    let counter = redis
        .keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.contains(&format!(":budget:{budget_id}:")))
        .expect("the team budget's counter");
    let spent = |con: &mut redis::aio::MultiplexedConnection| {
        let counter = counter.clone();
        let mut con = con.clone();
        async move {
            let spent: Option<i64> = redis::cmd("HGET")
                .arg(&counter)
                .arg("spent")
                .query_async(&mut con)
                .await
                .unwrap();
            spent.unwrap_or(0)
        }
    };
    let before = spent(&mut con).await;
    assert_eq!(
        before, durable,
        "Redis and the control plane agree before the flush"
    );

    // Redis loses everything of this gateway's (as a FLUSHALL or an empty restart would).
    for k in redis.keys().await.unwrap() {
        let _: () = redis::cmd("DEL")
            .arg(&k)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let started = Instant::now();
    loop {
        if spent(&mut con).await == before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the counter was not restored:\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gateway
            .stderr()
            .contains("budget counters restored from the control plane")
    );
}
