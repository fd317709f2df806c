//! Budgets and rate limits shared by several gateway processes through Redis: a hard
//! limit under concurrency, the tightest scope wins, a killed gateway's reservation comes
//! back, and limits hold across the fleet rather than per gateway.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_tests::env::TestRedis;
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::http;

/// Output-only pricing: each call reserves exactly what it costs (8 tokens × 2 µ$), so
/// the number of calls a budget affords is exact.
const PRICES: &str = "prices = { input = 0, output = 2000000 }";
const CALL_COST: i64 = 16;

fn config(
    redis: &TestRedis,
    mock: &MockUpstream,
    upstream: &str,
    extra: &str,
    keys: &str,
) -> String {
    format!(
        "[ledger]\nkind = \"redis\"\nlease_margin_ms = 300\n\
         [redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}\"\nmaintenance_interval_ms = 100\n\
         [routing]\nmax_attempts = 1\n\
         [[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\n\
         [[deployments]]\nid = \"d\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{base}\"\n\
         upstream_model = \"{upstream}\"\n{PRICES}\ntimeouts = {{ total_ms = 1000, first_byte_ms = 1000 }}\n\
         {extra}\n{keys}",
        url = redis.url,
        prefix = redis.prefix,
        base = mock.openai_base_url(),
    )
}

async fn call(gateway: &GatewayProcess, key: &TestKey) -> reqwest::Response {
    http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
}

/// The same call on one of the three lanes (chat, Anthropic Messages, OpenAI Responses),
/// each with an 8-token output limit, so each costs what a chat call costs.
async fn lane_call(gateway: &GatewayProcess, key: &TestKey, lane: usize) -> reqwest::Response {
    let (path, body) = match lane % 3 {
        0 => return call(gateway, key).await,
        1 => (
            "messages",
            json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}),
        ),
        _ => (
            "responses",
            json!({"model": "chat", "max_output_tokens": 8, "input": "hello"}),
        ),
    };
    http()
        .post(format!("{}/{path}", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// (spent, reserved) of a lifetime budget, read straight from Redis.
async fn counter(redis: &TestRedis, budget: &str) -> (i64, i64) {
    let mut con = redis.connection().await.unwrap();
    let key = format!("{}{{org:acme}}:budget:{budget}:0", redis.prefix);
    let (spent, reserved): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
        .arg(key)
        .arg("spent")
        .arg("reserved")
        .query_async(&mut con)
        .await
        .unwrap();
    (spent.unwrap_or(0), reserved.unwrap_or(0))
}

/// Sends `n` calls at once, spread over `gateways`; returns (successes, insufficient_quota).
async fn storm(gateways: &[GatewayProcess], key: &TestKey, n: usize) -> (usize, usize) {
    let calls = (0..n).map(|i| call(&gateways[i % gateways.len()], key));
    let mut ok = 0;
    let mut refused = 0;
    for response in futures_util::future::join_all(calls).await {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "insufficient_quota");
                refused += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    (ok, refused)
}

/// `n` calls at once over the three lanes and `gateways`; returns (successes, refusals
/// for the budget, each in its lane's error shape).
async fn mixed_storm(gateways: &[GatewayProcess], key: &TestKey, n: usize) -> (usize, usize) {
    let calls = (0..n).map(|i| lane_call(&gateways[i % gateways.len()], key, i / gateways.len()));
    let mut ok = 0;
    let mut refused = 0;
    for response in futures_util::future::join_all(calls).await {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: Value = response.json().await.unwrap();
                let code = body["error"]["code"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        // Anthropic's shape keeps Tollgate's code in the message.
                        let message = body["error"]["message"].as_str().unwrap_or_default();
                        if message.contains("(tollgate: insufficient_quota)") {
                            "insufficient_quota".into()
                        } else {
                            message.to_owned()
                        }
                    });
                assert_eq!(code, "insufficient_quota", "{body}");
                refused += 1;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    (ok, refused)
}

#[tokio::test]
async fn three_gateways_never_overspend_a_shared_budget_on_any_mix_of_lanes() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    // Affords exactly 100 calls.
    let budget = format!(
        "[[budgets]]\nid = \"team-total\"\nscope = \"team:search\"\namount_usd = \"0.{:06}\"\nperiod = \"total\"\n",
        100 * CALL_COST
    );
    let config = config(&redis, &mock, "m", &budget, &key.entry("search", ""));
    let gateways =
        futures_util::future::try_join_all((0..3).map(|_| GatewayProcess::start(&config, &[])))
            .await
            .unwrap();

    // Chat, Messages and Responses calls in turn on each gateway.
    let (ok, refused) = mixed_storm(&gateways, &key, 300).await;
    assert_eq!(ok + refused, 300);
    assert_eq!(ok, 100, "the budget affords exactly 100 calls");
    assert_eq!(
        mock.requests().len(),
        100,
        "refused calls never reached the provider"
    );
    let (spent, reserved) = counter(&redis, "team-total").await;
    assert_eq!(spent, 100 * CALL_COST);
    assert_eq!(reserved, 0, "nothing left reserved");
}

#[tokio::test]
async fn the_tightest_scope_wins_and_nothing_is_reserved_elsewhere() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    let budgets = format!(
        "[[budgets]]\nid = \"k\"\nscope = \"key:{id}\"\namount_usd = \"0.000800\"\nperiod = \"total\"\n\
         [[budgets]]\nid = \"t\"\nscope = \"team:search\"\namount_usd = \"0.001600\"\nperiod = \"total\"\n\
         [[budgets]]\nid = \"o\"\nscope = \"org:acme\"\namount_usd = \"0.003200\"\nperiod = \"total\"\n",
        id = key.public_id
    );
    let config = config(&redis, &mock, "m", &budgets, &key.entry("search", ""));
    let gateways =
        futures_util::future::try_join_all((0..3).map(|_| GatewayProcess::start(&config, &[])))
            .await
            .unwrap();
    let (ok, _) = storm(&gateways, &key, 120).await;
    assert_eq!(ok, 800 / 16);
    for (budget, expected) in [("k", 800), ("t", 800), ("o", 800)] {
        assert_eq!(
            counter(&redis, budget).await,
            (expected, 0),
            "budget {budget}"
        );
    }
}

#[tokio::test]
async fn a_killed_gateways_reservation_is_reaped_after_its_deadline() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    let budget = "[[budgets]]\nid = \"b\"\nscope = \"team:search\"\namount_usd = \"1.00\"\nperiod = \"total\"\n";
    // The upstream never answers within the deployment's 1 s; the lease is 1 s + 0.3 s.
    let config = config(
        &redis,
        &mock,
        "m+ttfb=30000",
        budget,
        &key.entry("search", ""),
    );
    let mut doomed = GatewayProcess::start(&config, &[]).await.unwrap();
    let survivor = GatewayProcess::start(&config, &[]).await.unwrap();

    let url = doomed.v1();
    let full = key.full.clone();
    let in_flight = tokio::spawn(async move {
        http()
            .post(format!("{url}/chat/completions"))
            .bearer_auth(full)
            .json(&json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}))
            .send()
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while counter(&redis, "b").await.1 == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reserved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill().await;
    assert!(
        in_flight.await.unwrap().is_err(),
        "the client saw its gateway die"
    );
    assert_eq!(
        counter(&redis, "b").await,
        (0, CALL_COST),
        "the dead gateway's reservation is still held"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counter(&redis, "b").await.1 != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reaper never released it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counter(&redis, "b").await,
        (0, 0),
        "the budget is whole again"
    );
    drop(survivor);
}

#[tokio::test]
async fn a_concurrency_limit_holds_across_three_gateways() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    // Slow upstream, so calls overlap; the team may have 4 in flight, fleet-wide.
    let config = config(&redis, &mock, "m+ttfb=150", "", &key.entry("search", "")).replace(
        "[[teams]]\nid = \"search\"\norg = \"acme\"\n",
        "[[teams]]\nid = \"search\"\norg = \"acme\"\nlimits = { max_concurrent = 4 }\n",
    );
    let gateways =
        futures_util::future::try_join_all((0..3).map(|_| GatewayProcess::start(&config, &[])))
            .await
            .unwrap();
    let calls = (0..30).map(|i| call(&gateways[i % 3], &key));
    let mut ok = 0;
    let mut limited = 0;
    for response in futures_util::future::join_all(calls).await {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limit_exceeded");
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 4, "{ok} calls got through");
    assert!(limited > 0, "30 overlapping calls must hit a limit of 4");
    assert!(
        mock.stats().max_in_flight <= 4,
        "the provider saw {} calls at once",
        mock.stats().max_in_flight
    );
    // Slots were given back: a new call goes through.
    assert_eq!(call(&gateways[0], &key).await.status(), 200);
}

#[tokio::test]
async fn requests_per_minute_are_counted_fleet_wide() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    let config = config(
        &redis,
        &mock,
        "m",
        "",
        &key.entry("search", "limits = { rpm = 5 }"),
    );
    let gateways =
        futures_util::future::try_join_all((0..3).map(|_| GatewayProcess::start(&config, &[])))
            .await
            .unwrap();
    let mut statuses = Vec::new();
    for i in 0..9 {
        let response = call(&gateways[i % 3], &key).await;
        if response.status() == 429 {
            assert_eq!(response.headers()["x-ratelimit-limit-requests"], "5");
            assert!(response.headers().contains_key("retry-after"));
        }
        statuses.push(response.status().as_u16());
    }
    // Per-gateway counting would have let all 9 through (3 per gateway); shared, 5 do —
    // unless the minute turned over mid-test, which only lets more through later.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        ok == 5 || (ok > 5 && statuses[..5].iter().all(|s| *s == 200)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_redis_restart_fails_closed_then_recovers_keeping_queued_spend() {
    let mut server = tollgate_tests::env::RedisServer::start().await.unwrap();
    let redis = TestRedis::new().await.unwrap(); // only for its prefix
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let budget = "[[budgets]]\nid = \"b\"\nscope = \"team:search\"\namount_usd = \"1.00\"\nperiod = \"total\"\n";
    let config = config(
        &redis,
        &mock,
        "m+ttfb=600",
        budget,
        &key.entry("search", ""),
    )
    .replace(
        &format!("url = \"{}\"", redis.url),
        &format!("url = \"{}\"", server.url()),
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let ready = || async {
        http()
            .get(format!("{}/readyz", gateway.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ready().await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A call in flight when Redis goes away settles later, from the gateway's queue.
    let in_flight = {
        let (url, full) = (gateway.v1(), key.full.clone());
        tokio::spawn(async move {
            http()
                .post(format!("{url}/chat/completions"))
                .bearer_auth(full)
                .json(&json!({"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop();
    assert_eq!(in_flight.await.unwrap(), 200);

    let refused = call(&gateway, &key).await;
    assert_eq!(refused.status(), 503, "fail closed: no Redis, no call");
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "ledger_unavailable"
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "the refused call never reached the provider"
    );
    assert_eq!(ready().await, 503);

    server.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ready().await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let spent_key = format!("{}{{org:acme}}:budget:b:0", redis.prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spent: Option<i64> = redis::cmd("HGET")
            .arg(&spent_key)
            .arg("spent")
            .query_async(&mut con)
            .await
            .unwrap();
        if spent == Some(CALL_COST) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queued spend never arrived: {spent:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(call(&gateway, &key).await.status(), 200, "serving again");
}

/// Gateways are stateless: a response created through one is found through another
/// (its pin is in Redis, under the org's hash tag), and chaining reaches its deployment.
#[tokio::test]
async fn a_response_pinned_through_one_gateway_is_found_through_another() {
    let (redis, mock) = (
        TestRedis::new().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let key = TestKey::new();
    let config = config(&redis, &mock, "m", "", &key.entry("search", ""));
    let gateways =
        futures_util::future::try_join_all((0..2).map(|_| GatewayProcess::start(&config, &[])))
            .await
            .unwrap();
    let created: Value = lane_call(&gateways[0], &key, 2).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let response = http()
        .get(format!("{}/responses/{id}", gateways[1].v1()))
        .bearer_auth(&key.full)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let fetched: Value = response.json().await.unwrap();
    assert_eq!(fetched["id"], id);
    let chained = http()
        .post(format!("{}/responses", gateways[1].v1()))
        .bearer_auth(&key.full)
        .json(&json!({"model": "chat", "input": "more", "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(chained.status(), 200);
    let mut con = redis.connection().await.unwrap();
    let pinned: Option<String> = redis::cmd("GET")
        .arg(format!("{}{{org:acme}}:resp:{id}", redis.prefix))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(pinned.as_deref(), Some("d"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}{{org:acme}}:resp:{id}", redis.prefix))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 0, "a pin expires");
}
