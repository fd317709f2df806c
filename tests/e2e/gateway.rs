//! The standalone gateway binary end to end: routing, retries, timeouts, streaming,
//! budgets, limits and bad input, against the mock upstream.

use std::time::Duration;

use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey, binary};
use tollgate_tests::mock::MockUpstream;

use crate::{http, sse_events};

/// Prices that make costs easy to check: 1 µ$ per prompt token, 2 µ$ per output token.
const PRICES: &str = "prices = { input = 1000000, output = 2000000 }";

struct Setup {
    mock: MockUpstream,
    key: TestKey,
    gateway: GatewayProcess,
}

/// One org/team, model `chat` on the mock, plus `extra` TOML (models, budgets, ...).
async fn setup(extra: &str) -> Setup {
    setup_with(extra, "").await
}

async fn setup_with(extra: &str, key_extra: &str) -> Setup {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[routing]\nbackoff_base_ms = 1\nbackoff_max_ms = 5\n{extra}\n\
         [[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\ndefault_max_output_tokens = 100\n\
         [[deployments]]\nid = \"primary\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{base}\"\nupstream_model = \"mock-gpt-4o\"\n{PRICES}\n\
         {entry}",
        base = mock.openai_base_url(),
        entry = key.entry("search", key_extra),
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    Setup { mock, key, gateway }
}

/// A deployment block on the mock with an upstream model name (carrying directives).
fn deployment(id: &str, model: &str, upstream: &str, mock: &str, extra: &str) -> String {
    format!(
        "[[deployments]]\nid = \"{id}\"\nmodel = \"{model}\"\nprovider = \"openai\"\nbase_url = \"{mock}/v1\"\nupstream_model = \"{upstream}\"\n{PRICES}\n{extra}\n"
    )
}

impl Setup {
    async fn chat(&self, body: Value) -> reqwest::Response {
        http()
            .post(format!("{}/chat/completions", self.gateway.v1()))
            .bearer_auth(&self.key.full)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn hello(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hello big world"}]})
}

#[tokio::test]
async fn a_call_is_proxied_priced_and_recorded() {
    let s = setup("").await;
    let response = s.chat(hello("chat")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-tollgate-deployment"], "primary");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4 w5 w6 w7"
    );

    let sent = s.mock.requests();
    assert_eq!(
        sent[0].json()["model"],
        "mock-gpt-4o",
        "the deployment's model goes upstream"
    );
    assert!(sent[0].header("x-request-id").is_some());

    let events = s.gateway.usage_events(1).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["status"], "CALL_STATUS_OK");
    assert_eq!(e["key_id"], s.key.public_id);
    assert_eq!(e["team_id"], "search");
    assert_eq!(e["deployment_id"], "primary");
    assert_eq!(e["prompt_tokens"], 3);
    assert_eq!(e["completion_tokens"], 8);
    // 3 × 1 µ$ + 8 × 2 µ$
    assert_eq!(e["cost_micros"], 19);
    assert!(!e["price_table_version"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn streams_pass_through_and_strip_the_usage_chunk_unless_asked() {
    let s = setup("").await;
    let mut body = hello("chat");
    body["stream"] = json!(true);
    let text = s.chat(body.clone()).await.text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "no usage-only chunk: {text}"
    );
    // The gateway asked upstream for usage anyway, to settle exactly.
    assert_eq!(
        s.mock.requests()[0].json()["stream_options"]["include_usage"],
        true
    );

    body["stream_options"] = json!({"include_usage": true});
    let text = s.chat(body).await.text().await.unwrap();
    let events = sse_events(&text);
    let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 8);

    let usage_events = s.gateway.usage_events(2).await;
    assert!(
        usage_events
            .iter()
            .all(|e| e["cost_micros"] == 19 && e["streamed"] == true),
        "{usage_events:?}"
    );
}

#[tokio::test]
async fn a_failing_deployment_falls_back_and_then_cools_down() {
    let mock = MockUpstream::start().await.unwrap();
    let m = mock.url();
    // The failing deployment is nearly always picked first, until it is cooled down.
    let extra = format!(
        "[routing]\nmax_attempts = 2\nbackoff_base_ms = 1\ncooldown_failures = 2\ncooldown_ms = 60000\n\
         [[models]]\nname = \"flaky\"\n{}{}",
        deployment("broken", "flaky", "x+status=503", &m, "weight = 1000"),
        deployment("healthy", "flaky", "ok", &m, "weight = 1")
    );
    let key = TestKey::new();
    let config = format!(
        "{extra}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}",
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    for _ in 0..6 {
        let response = http()
            .post(format!("{}/chat/completions", gateway.v1()))
            .bearer_auth(&key.full)
            .json(&hello("flaky"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-tollgate-deployment"], "healthy");
    }
    let to_broken = mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "x+status=503")
        .count();
    assert_eq!(
        to_broken, 2,
        "after 2 failures the broken deployment is skipped"
    );
}

#[tokio::test]
async fn errors_from_upstream_map_to_the_right_statuses() {
    let mock = MockUpstream::start().await.unwrap();
    let m = mock.url();
    let extra = format!(
        "[routing]\nmax_attempts = 2\nbackoff_base_ms = 1\n\
         [[models]]\nname = \"down\"\n{}\
         [[models]]\nname = \"bad\"\n{}\
         [[models]]\nname = \"hung\"\n{}",
        deployment("d1", "down", "x+status=503", &m, ""),
        deployment("d2", "bad", "x+status=400", &m, ""),
        deployment(
            "d3",
            "hung",
            "x+hang",
            &m,
            "timeouts = { first_byte_ms = 300 }"
        ),
    );
    let key = TestKey::new();
    let config = format!(
        "{extra}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}",
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let call = |model: &'static str| {
        http()
            .post(format!("{}/chat/completions", gateway.v1()))
            .bearer_auth(&key.full)
            .json(&hello(model))
            .send()
    };

    let down = call("down").await.unwrap();
    assert_eq!(down.status(), 502);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_error");
    assert_eq!(mock.requests().len(), 2, "retried once");

    let bad = call("bad").await.unwrap();
    assert_eq!(
        bad.status(),
        400,
        "a client error from upstream is passed on, not retried"
    );
    assert_eq!(mock.requests().len(), 3);

    let hung = call("hung").await.unwrap();
    assert_eq!(hung.status(), 504);
    assert_eq!(
        hung.json::<Value>().await.unwrap()["error"]["code"],
        "upstream_timeout"
    );

    let events = gateway.usage_events(3).await;
    assert!(
        events.iter().all(|e| e["status"] != "CALL_STATUS_OK"),
        "{events:?}"
    );
    // Answered errors are not billed; a timed-out call may have been generated in full,
    // so it costs its worst case.
    for e in &events {
        let timed_out = e["error_code"] == "upstream_timeout";
        let cost = e["cost_micros"].as_i64().unwrap_or(0);
        assert_eq!(cost > 0, timed_out, "{e}");
    }
}

#[tokio::test]
async fn a_stream_that_breaks_ends_with_an_error_event_not_a_hang() {
    let mock = MockUpstream::start().await.unwrap();
    let m = mock.url();
    let extra = format!(
        "[[models]]\nname = \"cut\"\n{}[[models]]\nname = \"stall\"\n{}",
        deployment("c", "cut", "x+cut=3", &m, ""),
        deployment(
            "s",
            "stall",
            "x+stall=2",
            &m,
            "timeouts = { total_ms = 500 }"
        ),
    );
    let key = TestKey::new();
    let config = format!(
        "{extra}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}",
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    for model in ["cut", "stall"] {
        let mut body = hello(model);
        body["stream"] = json!(true);
        let text = tokio::time::timeout(
            Duration::from_secs(10),
            http()
                .post(format!("{}/chat/completions", gateway.v1()))
                .bearer_auth(&key.full)
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
        .unwrap()
        .text()
        .await
        .unwrap();
        let events = sse_events(&text);
        let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
        assert_eq!(last["error"]["code"], "upstream_error", "{model}: {text}");
        assert!(events.iter().all(|(_, d)| d != "[DONE]"));
    }
}

/// Streams `model` and hangs up after two chunks; returns the call's usage event.
async fn hang_up_after_two_chunks(model: &str, upstream: &str) -> Value {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[models]]\nname = \"{model}\"\n{}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}\
         [[budgets]]\nscope = \"team:t\"\namount_usd = \"1.00\"\nperiod = \"day\"\n",
        deployment(model, model, upstream, &mock.url(), ""),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let mut body = hello(model);
    body["stream"] = json!(true);
    let mut response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&body)
        .send()
        .await
        .unwrap();
    let _first = response.chunk().await.unwrap().unwrap();
    let _second = response.chunk().await.unwrap().unwrap();
    assert_eq!(mock.stats().in_flight, 1);
    drop(response);

    let events = gateway.usage_events(1).await;
    assert_eq!(events.len(), 1, "{}", gateway.stderr());
    assert_eq!(events[0]["status"], "CALL_STATUS_CLIENT_DISCONNECTED");
    // The provider finished the answer after the client left (and billed it). The mock
    // counts its answer done a moment after the gateway read its last byte: poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mock.stats().in_flight != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(mock.stats().in_flight, 0);
    events[0].clone()
}

#[tokio::test]
async fn a_client_that_hangs_up_is_settled_at_the_providers_usage() {
    let event = hang_up_after_two_chunks("slow", "x+chunks=30+delay=30").await;
    // The gateway read the rest of the stream for the usage at its end: the whole
    // answer is charged, at the provider's own figures, not the worst case.
    assert_eq!(event["completion_tokens"], 30, "{event}");
    let cost = event["cost_micros"].as_i64().unwrap();
    let prompt = event["prompt_tokens"].as_i64().unwrap();
    assert_eq!(cost, prompt + 2 * 30, "{event}");
    assert!(cost < event["reserved_micros"].as_i64().unwrap(), "{event}");
}

#[tokio::test]
async fn a_client_that_hangs_up_on_a_stream_without_usage_pays_the_worst_case() {
    let event = hang_up_after_two_chunks("quiet", "x+chunks=30+delay=30+no_usage").await;
    let reserved = event["reserved_micros"].as_i64().unwrap();
    assert!(reserved > 0, "{event}");
    assert_eq!(event["cost_micros"].as_i64().unwrap(), reserved, "{event}");
}

#[tokio::test]
async fn a_budget_is_a_hard_limit_under_concurrency() {
    // Each call reserves prompt (~10) + 10 output × 2 µ$ ≈ 30 µ$ and really costs
    // 3 + 8 × 2 = 19 µ$; 100 µ$ of budget cannot pay for more than 5 calls.
    let s = setup(
        "[[budgets]]\nscope = \"team:search\"\namount_usd = \"0.000100\"\nperiod = \"month\"\n",
    )
    .await;
    let calls = (0..20).map(|_| {
        let mut body = hello("chat");
        body["max_tokens"] = json!(10);
        s.chat(body)
    });
    let responses = futures_util::future::join_all(calls).await;
    let mut ok = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["code"], "insufficient_quota");
                assert_eq!(body["error"]["type"], "insufficient_quota");
                // The budget is named as its owner knows it, never by its id.
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    message.contains("team search: $0.0000") && message.contains("left this month"),
                    "{message}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!((1..=5).contains(&ok), "{ok} calls succeeded");
    let events = s.gateway.usage_events(20).await;
    let spent: i64 = events
        .iter()
        .map(|e| e["cost_micros"].as_i64().unwrap())
        .sum();
    assert!(spent <= 100, "spent {spent} µ$ of a 100 µ$ budget");
    assert_eq!(spent, 19 * ok);
}

#[tokio::test]
async fn rate_limits_answer_429_with_openai_headers() {
    let s = setup_with("", "limits = { rpm = 2 }").await;
    for _ in 0..2 {
        let response = s.chat(hello("chat")).await;
        assert_eq!(response.status(), 200);
        assert!(
            response
                .headers()
                .contains_key("x-ratelimit-remaining-requests")
        );
    }
    let refused = s.chat(hello("chat")).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"]["code"],
        "rate_limit_exceeded"
    );
}

#[tokio::test]
async fn bad_input_gets_openai_errors_never_a_crash() {
    let s = setup("[server]\nmax_body_bytes = 4096\n").await;
    let send = |body: Vec<u8>| {
        http()
            .post(format!("{}/chat/completions", s.gateway.v1()))
            .bearer_auth(&s.key.full)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = send(b"{\"model\": \"chat\", \"messages\": [".to_vec())
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    let huge = serde_json::to_vec(
        &json!({"model": "chat", "messages": [{"role": "user", "content": "x".repeat(10_000)}]}),
    )
    .unwrap();
    let too_big = send(huge).await.unwrap();
    assert_eq!(too_big.status(), 413);
    assert_eq!(
        too_big.json::<Value>().await.unwrap()["error"]["code"],
        "request_too_large"
    );

    let no_messages = send(br#"{"model":"chat"}"#.to_vec()).await.unwrap();
    assert_eq!(
        no_messages.json::<Value>().await.unwrap()["error"]["param"],
        "messages"
    );

    let unicode = json!({"model": "chat", "messages": [{"role": "user", "content": "héllo 世界 🦀 \u{0000}"}]});
    let response = s.chat(unicode).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        s.mock.requests()[0].json()["messages"][0]["content"],
        "héllo 世界 🦀 \u{0000}"
    );

    let unknown = http()
        .get(format!("{}/v1/files", s.gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().contains_key("x-request-id"));
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_url"
    );

    let no_key = http()
        .post(format!("{}/chat/completions", s.gateway.v1()))
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    // Nothing bad reached the upstream.
    assert_eq!(s.mock.requests().len(), 1);
}

#[tokio::test]
async fn health_readiness_metrics_and_models() {
    let s = setup("[[models]]\nname = \"hidden\"\n[[deployments]]\nid = \"h\"\nmodel = \"hidden\"\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nprices = { input = 1, output = 1 }\n").await;
    let get = |path: &str| {
        http()
            .get(format!("{}{path}", s.gateway.url))
            .bearer_auth(&s.key.full)
            .send()
    };
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let _ = s.chat(hello("chat")).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tollgate_requests_total"), "{metrics}");

    let models: Value = get("/v1/models").await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hidden", "chat"], "config order");
    assert_eq!(get("/v1/models/chat").await.unwrap().status(), 200);
    assert_eq!(get("/v1/models/nope").await.unwrap().status(), 404);
}

#[tokio::test]
async fn an_invalid_config_is_refused_naming_every_bad_field() {
    let config = "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"ghost\"\n\
                  [[models]]\nname = \"m\"\n[[deployments]]\nid = \"d\"\nmodel = \"m\"\nprovider = \"openai\"\nbase_url = \"nope\"\ncredential = \"env:TOLLGATE_TEST_UNSET_VAR\"\nprices = { input = 1, output = 1 }\n";
    let Err(error) = GatewayProcess::start(config, &[]).await else {
        panic!("gateway started with a bad config")
    };
    let message = error.to_string();
    for field in [
        "teams[0].org:",
        "deployments[0].base_url:",
        "deployments[0].credential:",
    ] {
        assert!(message.contains(field), "{field} not named in:\n{message}");
    }
}

#[tokio::test]
async fn keys_new_prints_a_working_key_and_its_config_entry() {
    let output =
        tokio::process::Command::new(binary("tollgate-gateway", "TOLLGATE_GATEWAY_BIN").unwrap())
            .args(["keys", "new", "--team", "t"])
            .env("TOLLGATE_AUTH__KEY_PEPPER", tollgate_tests::gateway::PEPPER)
            .output()
            .await
            .unwrap();
    assert!(output.status.success());
    // The key on stderr (shown once); stdout is the entry alone, so `>> file` keeps TOML.
    let shown = String::from_utf8(output.stderr).unwrap();
    let full = shown
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("tg_"))
        .unwrap()
        .to_owned();
    let entry = String::from_utf8(output.stdout).unwrap();
    assert!(entry.starts_with("[[keys]]"), "{entry}");
    assert!(!entry.contains(&full), "the secret went to stdout");
    entry.parse::<toml::Table>().expect("stdout is TOML");
    let entry = entry.as_str();

    let mock = MockUpstream::start().await.unwrap();
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n[[models]]\nname = \"chat\"\n{}\n{entry}",
        deployment("d", "chat", "m", &mock.url(), "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&full)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Another last character (never the same one: that would be the right key).
    let last = if full.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &full[..full.len() - 1]);
    let response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&wrong)
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn shutdown_finishes_and_settles_calls_in_flight() {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[models]]\nname = \"slow\"\n{}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}",
        deployment("slow", "slow", "x+ttfb=500", &mock.url(), ""),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let url = gateway.v1();
    let call = tokio::spawn(async move {
        http()
            .post(format!("{url}/chat/completions"))
            .bearer_auth(&key.full)
            .json(&hello("slow"))
            .send()
            .await
    });
    // Stop once the call is really in flight (reached the upstream), not after a guess:
    // a request still in the socket buffer at SIGTERM is not in flight yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while mock.requests().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut gateway = gateway;
    let status = gateway.stop().await.unwrap();
    assert!(status.success());
    assert_eq!(
        call.await.unwrap().unwrap().status(),
        200,
        "the call in flight was finished"
    );
    let log = std::fs::read_to_string(gateway.dir.path().join("usage.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        1,
        "its usage event was written before exit"
    );
}

#[tokio::test]
async fn a_clamping_budget_lowers_max_tokens_instead_of_refusing() {
    // 40 µ$ left at 2 µ$ per output token (prompt tokens free here): 100 output tokens
    // are not affordable, 20 are.
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n[[models]]\nname = \"chat\"\n\
         [[deployments]]\nid = \"d\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{}\"\nprices = {{ input = 0, output = 2000000 }}\n\
         [[budgets]]\nscope = \"team:t\"\namount_usd = \"0.000040\"\nperiod = \"day\"\nclamp = \"clamp\"\n{}",
        mock.openai_base_url(),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let response = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&json!({"model": "chat", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-tollgate-max-tokens-clamped"], "20");
    assert_eq!(
        mock.requests()[0].json()["max_tokens"],
        20,
        "the provider was asked for what the budget affords"
    );
}

/// A timed-out attempt may have been generated and billed in full, so the call pays for
/// it, and a retry needs a second worst case reserved: where the budget has it the call
/// fails over (to a pricier deployment, which the reservation already priced), where it
/// has not the timeout is the answer and nothing more is sent.
#[tokio::test]
async fn a_retry_after_a_timeout_is_reserved_again_or_not_made() {
    let mock = MockUpstream::start().await.unwrap();
    let m = mock.url();
    let pricier = "prices = { input = 2000000, output = 4000000 }";
    let (rich, poor) = (TestKey::new(), TestKey::new());
    let config = format!(
        "[routing]\nmax_attempts = 2\nbackoff_base_ms = 1\ncooldown_failures = 100\n\
         [[models]]\nname = \"m\"\ndefault_max_output_tokens = 100\n\
         [[deployments]]\nid = \"hung\"\nmodel = \"m\"\nprovider = \"openai\"\nbase_url = \"{m}/v1\"\nupstream_model = \"x+hang\"\n{PRICES}\nweight = 1000\ntimeouts = {{ first_byte_ms = 300, total_ms = 300 }}\n\
         [[deployments]]\nid = \"fine\"\nmodel = \"m\"\nprovider = \"openai\"\nbase_url = \"{m}/v1\"\nupstream_model = \"ok\"\n{pricier}\nweight = 1\n\
         [[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"rich\"\norg = \"acme\"\n[[teams]]\nid = \"poor\"\norg = \"acme\"\n\
         [[budgets]]\nscope = \"team:rich\"\namount_usd = \"1.00\"\nperiod = \"day\"\n\
         [[budgets]]\nscope = \"team:poor\"\namount_usd = \"0.000700\"\nperiod = \"day\"\n{}{}",
        rich.entry("rich", ""),
        poor.entry("poor", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let call = |key: &TestKey| {
        http()
            .post(format!("{}/chat/completions", gateway.v1()))
            .bearer_auth(&key.full)
            .json(&hello("m"))
            .send()
    };

    let response = call(&rich).await.unwrap();
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
    assert_eq!(response.headers()["x-tollgate-deployment"], "fine");
    let event = gateway.usage_events(1).await.remove(0);
    let reserved = event["reserved_micros"].as_i64().unwrap();
    let worst = reserved / 2;
    let prompt = event["prompt_tokens"].as_i64().unwrap();
    assert!(worst >= 4 * 100, "{event}");
    assert_eq!(event["attempts"], 2, "{event}");
    // Charged: the timed-out attempt's worst case (its tokens recorded as that worst
    // case: the whole ceiling) plus the serving attempt's own usage, at the pricier
    // deployment's prices (which the reservation already used).
    assert_eq!(event["completion_tokens"], 100 + 8, "{event}");
    let cost = event["cost_micros"].as_i64().unwrap();
    assert!(cost > worst && cost <= reserved, "{event}");
    assert!(prompt > 0, "{event}");

    let sent_before = mock.requests().len();
    let response = call(&poor).await.unwrap();
    assert_eq!(response.status(), 504, "{}", gateway.stderr());
    assert_eq!(mock.requests().len(), sent_before + 1, "no retry was sent");
    let event = gateway.usage_events(2).await.remove(1);
    assert_eq!(event["cost_micros"], event["reserved_micros"], "{event}");
    assert!(event["cost_micros"].as_i64().unwrap() > 0, "{event}");
}

/// A provider refusing Tollgate's own credential is Tollgate's fault, not the tenant's:
/// the call fails over, the deployment cools down at once, and where nothing else is
/// left the client gets a 502 that says so — never the provider's 401.
#[tokio::test]
async fn an_upstream_401_is_a_502_that_fails_over_and_cools_the_deployment_down() {
    let mock = MockUpstream::start().await.unwrap();
    let m = mock.url();
    let key = TestKey::new();
    let config = format!(
        "[routing]\nmax_attempts = 2\nbackoff_base_ms = 1\ncooldown_failures = 100\ncooldown_ms = 60000\n\
         [[models]]\nname = \"m\"\n{}{}[[models]]\nname = \"only\"\n{}\
         [[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}",
        deployment("revoked", "m", "x+status=401", &m, "weight = 1000"),
        deployment("good", "m", "ok", &m, "weight = 1"),
        deployment("alone", "only", "x+status=403", &m, ""),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let call = |model: &str| {
        http()
            .post(format!("{}/chat/completions", gateway.v1()))
            .bearer_auth(&key.full)
            .json(&hello(model))
            .send()
    };
    for _ in 0..3 {
        let response = call("m").await.unwrap();
        assert_eq!(response.status(), 200, "{}", gateway.stderr());
        assert_eq!(response.headers()["x-tollgate-deployment"], "good");
    }
    let to_revoked = mock
        .requests()
        .iter()
        .filter(|r| r.json()["model"] == "x+status=401")
        .count();
    assert!(
        to_revoked <= 1,
        "cooled down after the first refusal, yet tried {to_revoked} times"
    );

    let response = call("only").await.unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed", "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
}

/// A client that gives up on a JSON call does not end it: the provider answers (and
/// bills) anyway, so the gateway takes the answer and settles with its usage.
#[tokio::test]
async fn a_client_that_gives_up_on_a_json_call_is_settled_at_the_providers_usage() {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[models]]\nname = \"slow\"\ndefault_max_output_tokens = 100\n{}\n[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"t\"\norg = \"acme\"\n{}\
         [[budgets]]\nscope = \"team:t\"\namount_usd = \"1.00\"\nperiod = \"day\"\n",
        deployment("slow", "slow", "x+ttfb=800", &mock.url(), ""),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let gave_up = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&hello("slow"))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client was meant to give up first");

    let events = gateway.usage_events(1).await;
    assert_eq!(events.len(), 1, "{}", gateway.stderr());
    let event = &events[0];
    assert_eq!(
        event["status"], "CALL_STATUS_CLIENT_DISCONNECTED",
        "{event}"
    );
    assert_eq!(
        event["completion_tokens"], 8,
        "the whole answer was read: {event}"
    );
    let cost = event["cost_micros"].as_i64().unwrap();
    let prompt = event["prompt_tokens"].as_i64().unwrap();
    assert_eq!(cost, prompt + 2 * 8, "{event}");
    assert!(cost < event["reserved_micros"].as_i64().unwrap(), "{event}");
}
