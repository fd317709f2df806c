//! The Anthropic Messages lane end to end: the real gateway in front of the mock, over
//! an Anthropic deployment (passed through, compared byte for byte with what the mock
//! sent) and an OpenAI one (translated), with budgets, errors and `count_tokens`.

use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::{http, sse_events};

/// 1 µ$ per input token, 2 per output token, 0.5 per cache read, 1.25 per cache write.
const PRICES: &str =
    "prices = { input = 1000000, output = 2000000, cached_input = 500000, cache_write = 1250000 }";

pub struct Lane {
    pub mock: MockUpstream,
    pub key: TestKey,
    pub gateway: GatewayProcess,
}

/// Models `claude` (an Anthropic deployment) and `gpt` (an OpenAI one), each with
/// `directives` on its upstream model, plus `extra` TOML.
pub async fn lane(directives: &str, extra: &str) -> Lane {
    let mock = MockUpstream::start_with(tollgate_tests::mock::MockOptions {
        require_key: Some("provider-secret".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let key = TestKey::new();
    let url = mock.url();
    let config = format!(
        "[routing]\nmax_attempts = 1\n{extra}\n[[orgs]]\nid = \"o\"\n[[teams]]\nid = \"t\"\norg = \"o\"\n\
         [[models]]\nname = \"claude\"\ndefault_max_output_tokens = 64\n\
         [[models]]\nname = \"gpt\"\ndefault_max_output_tokens = 64\n\
         [[deployments]]\nid = \"anthropic-dep\"\nmodel = \"claude\"\nprovider = \"anthropic\"\nbase_url = \"{url}/v1\"\n\
         upstream_model = \"mock-claude{directives}\"\ncredential = \"env:TOLLGATE_PROVIDER_LANE_KEY\"\n{PRICES}\n\
         [[deployments]]\nid = \"openai-dep\"\nmodel = \"gpt\"\nprovider = \"openai\"\nbase_url = \"{url}/v1\"\n\
         upstream_model = \"mock-gpt{directives}\"\ncredential = \"env:TOLLGATE_PROVIDER_LANE_KEY\"\n{PRICES}\n{}",
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(
        &config,
        &[("TOLLGATE_PROVIDER_LANE_KEY", "provider-secret")],
    )
    .await
    .unwrap();
    Lane { mock, key, gateway }
}

impl Lane {
    /// A Messages call the way Anthropic's SDKs make it (`x-api-key`).
    pub async fn messages(&self, path: &str, body: Value) -> reqwest::Response {
        http()
            .post(format!("{}{path}", self.gateway.v1()))
            .header("x-api-key", &self.key.full)
            .header("anthropic-version", "2023-06-01")
            .header("anthropic-beta", "prompt-caching-2024-07-31")
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn message(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "max_tokens": 50,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello big world"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn tools() -> Value {
    json!([{"name": "lookup", "description": "Find a thing",
        "input_schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}])
}

#[tokio::test]
async fn a_json_message_passes_through_to_anthropic_byte_for_byte() {
    let h = lane("", "").await;
    let response = h.messages("/messages", message("claude", json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    assert_eq!(response.headers()["x-tollgate-deployment"], "anthropic-dep");
    let received = response.text().await.unwrap();
    let sent = h.mock.responses();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        received, sent[0].body,
        "the client got exactly what the provider sent"
    );

    let upstream = &h.mock.requests()[0];
    assert_eq!(upstream.path, "/v1/messages");
    // The provider's credential went upstream, never the caller's Tollgate key.
    assert_eq!(upstream.header("x-api-key"), Some("provider-secret"));
    assert_eq!(upstream.header("authorization"), None);
    assert_eq!(upstream.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        upstream.header("anthropic-beta"),
        Some("prompt-caching-2024-07-31")
    );
    let body = upstream.json();
    assert_eq!(body["model"], "mock-claude");
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(
        body["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );

    let events = h.gateway.usage_events(1).await;
    assert_eq!(events[0]["endpoint"], "/v1/messages", "{}", events[0]);
    assert_eq!(events[0]["deployment_id"], "anthropic-dep");
    // "be brief" + "hello big world": 5 prompt tokens by the mock's rule; 8 out.
    assert_eq!(events[0]["prompt_tokens"], 5);
    assert_eq!(events[0]["completion_tokens"], 8);
    assert_eq!(events[0]["cost_micros"], 5 + 8 * 2);
}

#[tokio::test]
async fn a_streamed_message_passes_through_byte_for_byte_and_cache_tokens_are_priced_once() {
    let h = lane("+cache_read=10+cache_write=4", "").await;
    let response = h
        .messages("/messages", message("claude", json!({"stream": true})))
        .await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let received = response.text().await.unwrap();
    let sent = h.mock.responses();
    assert_eq!(
        received, sent[0].body,
        "the stream reached the client byte for byte"
    );
    let names: Vec<_> = sse_events(&received)
        .into_iter()
        .filter_map(|(e, _)| e)
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));

    let events = h.gateway.usage_events(1).await;
    let e = &events[0];
    // message_start and message_delta both report the totals: counted once.
    assert_eq!(e["completion_tokens"], 8, "{e}");
    assert_eq!(e["cache_read_tokens"], 10, "{e}");
    assert_eq!(e["cache_write_tokens"], 4, "{e}");
    // Anthropic's input_tokens leave the cache out: 5 words, plus the cache's 10 + 4.
    assert_eq!(e["prompt_tokens"], 5 + 10 + 4, "{e}");
    assert!(e["streamed"].as_bool().unwrap(), "{e}");
    // Each kind at its own price: 5 × 1 + 8 × 2 + 10 × 0.5 + 4 × 1.25 µ$.
    assert_eq!(e["cost_micros"], 5 + 16 + 5 + 5, "{e}");
}

#[tokio::test]
async fn a_message_to_an_openai_deployment_is_translated_both_ways() {
    let h = lane("", "").await;
    let response = h.messages("/messages", message("gpt", json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "gpt");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "w0 w1 w2 w3 w4 w5 w6 w7"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 5);
    assert_eq!(body["usage"]["output_tokens"], 8);
    let upstream = h.mock.requests()[0].json();
    assert_eq!(h.mock.requests()[0].path, "/v1/chat/completions");
    assert_eq!(
        upstream["messages"][0],
        json!({"role": "system", "content": "be brief"})
    );
    assert_eq!(upstream["max_completion_tokens"], 50);

    // Tools: tool_use out, and a tool_result round trip back in.
    let response = h
        .messages(
            "/messages",
            message(
                "gpt",
                json!({"tools": tools(), "tool_choice": {"type": "any"}}),
            ),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["stop_reason"], "tool_use", "{body}");
    let call = &body["content"][0];
    assert_eq!(call["type"], "tool_use");
    assert_eq!(call["name"], "lookup");
    assert_eq!(call["input"], json!({"ok": true}));
    let id = call["id"].as_str().unwrap();
    let follow_up = json!({"model": "gpt", "max_tokens": 50, "tools": tools(), "messages": [
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": [call.clone()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "found"}]}]});
    let response = h.messages("/messages", follow_up).await;
    assert_eq!(response.status(), 200);
    let upstream = h.mock.requests()[2].json();
    assert_eq!(upstream["messages"][1]["tool_calls"][0]["id"], id);
    assert_eq!(
        upstream["messages"][2],
        json!({"role": "tool", "tool_call_id": id, "content": "found"})
    );

    let events = h.gateway.usage_events(3).await;
    assert!(
        events
            .iter()
            .all(|e| e["endpoint"] == "/v1/messages" && e["deployment_id"] == "openai-dep")
    );
}

#[tokio::test]
async fn a_streamed_message_to_an_openai_deployment_speaks_anthropics_event_grammar() {
    let h = lane("", "").await;
    let text = h
        .messages("/messages", message("gpt", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
    assert_eq!(
        names[..2],
        ["message_start", "content_block_start"],
        "{text}"
    );
    assert_eq!(
        names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(!text.contains("[DONE]"));
    let text_out: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/delta/text")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text_out, "w0 w1 w2 w3 w4 w5 w6 w7");
    let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(delta["usage"]["output_tokens"], 8);
    assert_eq!(delta["usage"]["input_tokens"], 5);
    let usage = h.gateway.usage_events(1).await;
    assert_eq!(usage[0]["cost_micros"], 5 + 16, "{}", usage[0]);
}

#[tokio::test]
async fn errors_on_the_lane_come_in_anthropics_shape() {
    let h = lane("", "").await;
    let error = |body: Value| -> (String, String) {
        (
            body["error"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    // No key at all: refused at admission, before the body is read.
    let response = http()
        .post(format!("{}/messages", h.gateway.v1()))
        .json(&message("claude", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(error(body).0, "authentication_error");

    let response = h.messages("/messages", message("nope", json!({}))).await;
    assert_eq!(response.status(), 404);
    let (kind, text) = error(response.json().await.unwrap());
    assert_eq!(kind, "not_found_error");
    assert!(text.contains("(tollgate: model_not_found)"), "{text}");

    let mut body = message("claude", json!({}));
    body.as_object_mut().unwrap().remove("max_tokens");
    let response = h.messages("/messages", body).await;
    assert_eq!(response.status(), 400);
    let (kind, text) = error(response.json().await.unwrap());
    assert_eq!(kind, "invalid_request_error");
    assert!(text.contains("max_tokens"), "{text}");

    let response = h.messages("/messages", json!("not an object")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        error(response.json().await.unwrap()).0,
        "invalid_request_error"
    );

    // What chat cannot express is refused by name on a translated deployment.
    let response = h
        .messages(
            "/messages",
            message(
                "gpt",
                json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            ),
        )
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        error(response.json().await.unwrap())
            .1
            .starts_with("tools:")
    );

    // The provider's own error keeps its status (and so the SDK's exception class).
    let h = lane("+status=529", "").await;
    let response = h.messages("/messages", message("claude", json!({}))).await;
    assert!(response.status().is_server_error());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(h.mock.requests().len(), 1);
    assert!(h.mock.requests().iter().all(|r| r.path == "/v1/messages"));
}

#[tokio::test]
async fn the_budget_refuses_a_message_it_cannot_afford_before_the_provider_is_called() {
    let h = lane(
        "",
        "[[budgets]]\nscope = \"team:t\"\namount_usd = \"0.000010\"\nperiod = \"day\"\n",
    )
    .await;
    for model in ["claude", "gpt"] {
        for stream in [false, true] {
            let response = h
                .messages("/messages", message(model, json!({"stream": stream})))
                .await;
            assert_eq!(response.status(), 429);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["type"], "rate_limit_error");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("(tollgate: insufficient_quota)"),
                "{body}"
            );
        }
    }
    assert!(h.mock.requests().is_empty(), "nothing reached the provider");
    let events = h.gateway.usage_events(4).await;
    assert_eq!(events.len(), 4);
    assert!(
        events
            .iter()
            .all(|e| e["endpoint"] == "/v1/messages" && e["error_code"] == "insufficient_quota")
    );
}

#[tokio::test]
async fn count_tokens_is_authorized_limited_and_metered_at_no_cost() {
    let h = lane("", "").await;
    let body = json!({"model": "claude", "system": "be brief",
        "messages": [{"role": "user", "content": "hello big world"}]});
    let response = h.messages("/messages/count_tokens", body.clone()).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let counted: Value = response.json().await.unwrap();
    let tokens = counted["input_tokens"].as_u64().unwrap();
    // An upper bound of the provider's count (5 words), never less.
    assert!(tokens >= 5, "{counted}");
    assert!(h.mock.requests().is_empty(), "counting calls no model");

    let mut unknown = body.clone();
    unknown["model"] = "nope".into();
    let response = h.messages("/messages/count_tokens", unknown).await;
    assert_eq!(response.status(), 404);

    let events = h.gateway.usage_events(2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["endpoint"], "/v1/messages/count_tokens");
    assert_eq!(events[0]["cost_micros"], 0);
    assert_eq!(events[0]["model"], "claude");
    assert_eq!(events[0]["http_status"], 200);
    assert_eq!(events[1]["error_code"], "model_not_found");
}

#[tokio::test]
async fn a_stream_the_provider_breaks_off_ends_with_anthropics_error_event() {
    // Translated: the chat stream is cut after 3 events; the client gets the lane's own
    // error event, in Anthropic's shape, and the call is metered at its worst case.
    let h = lane("+cut=3", "").await;
    let text = h
        .messages("/messages", message("gpt", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"), "{text}");
    let data: Value = serde_json::from_str(data).unwrap();
    assert_eq!(data["type"], "error");
    assert_eq!(data["error"]["type"], "api_error");
    let usage = h.gateway.usage_events(1).await;
    assert_eq!(usage[0]["error_code"], "upstream_error", "{}", usage[0]);

    // Passed through: Anthropic's own in-band error event reaches the client as it was.
    let h = lane("+error_after=3", "").await;
    let received = h
        .messages("/messages", message("claude", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(received, h.mock.responses()[0].body);
    assert!(received.contains("event: error"), "{received}");
}
