//! The mock upstream behaves like the providers it stands in for, and does what each
//! request's directives ask.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tollgate_tests::mock::{MockOptions, MockUpstream, openai::embedding};

use crate::{http, sse_events};

async fn mock() -> MockUpstream {
    MockUpstream::start().await.expect("mock starts")
}

async fn post(mock: &MockUpstream, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", mock.url()))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("request reaches the mock")
}

fn chat(model: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hello big wide world"}]},
        ],
    })
}

/// `data:` payloads of an OpenAI stream, `[DONE]` included.
fn openai_data(body: &str) -> Vec<String> {
    sse_events(body).into_iter().map(|(_, data)| data).collect()
}

#[tokio::test]
async fn chat_json_has_deterministic_text_and_usage() {
    let mock = mock().await;
    let response = post(&mock, "/v1/chat/completions", chat("mock-gpt-4o")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4 w5 w6 w7"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // "be brief" + "hello big wide world" = 6 words.
    assert_eq!(body["usage"]["prompt_tokens"], 6);
    assert_eq!(body["usage"]["completion_tokens"], 8);
    assert_eq!(body["usage"]["total_tokens"], 14);
}

#[tokio::test]
async fn max_tokens_and_chunks_shape_the_answer() {
    let mock = mock().await;
    let mut request = chat("m+chunks=5");
    request["max_completion_tokens"] = json!(3);
    let body: Value = post(&mock, "/v1/chat/completions", request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "w0 w1 w2");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_chunk() {
    let mock = mock().await;
    let mut request = chat("m+chunks=3");
    request["stream"] = json!(true);
    let response = post(&mock, "/v1/chat/completions", request).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let data = openai_data(&response.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // role chunk, 3 content chunks, finish chunk
    assert_eq!(chunks.len(), 5);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "w0 w1 w2");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_usage_chunk() {
    let mock = mock().await;
    let mut request = chat("m+chunks=2");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let data = openai_data(
        &post(&mock, "/v1/chat/completions", request)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(data.last().unwrap(), "[DONE]");
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["prompt_tokens"], 6);
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 2);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(
        first["usage"],
        Value::Null,
        "OpenAI sends usage: null on other chunks"
    );
}

#[tokio::test]
async fn tools_produce_a_tool_call_json_and_streamed() {
    let mock = mock().await;
    let mut request = chat("m");
    request["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let body: Value = post(&mock, "/v1/chat/completions", request.clone())
        .await
        .json()
        .await
        .unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(call["function"]["arguments"], "{\"ok\":true}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    request["stream"] = json!(true);
    let data = openai_data(
        &post(&mock, "/v1/chat/completions", request)
            .await
            .text()
            .await
            .unwrap(),
    );
    let arguments: String = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(arguments, "{\"ok\":true}");
}

#[tokio::test]
async fn anthropic_messages_json_and_event_sequence() {
    let mock = mock().await;
    let request = json!({
        "model": "claude+chunks=4+cache_read=10+cache_write=5",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [{"role": "user", "content": "hello there"}],
    });
    let body: Value = post(&mock, "/v1/messages", request.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["content"][0]["text"], "w0 w1 w2 w3");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 4);
    assert_eq!(body["usage"]["output_tokens"], 4);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(body["usage"]["cache_creation_input_tokens"], 5);

    let mut streaming = request;
    streaming["stream"] = json!(true);
    let events = sse_events(
        &post(&mock, "/v1/messages", streaming)
            .await
            .text()
            .await
            .unwrap(),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    let delta: Value = serde_json::from_str(&events[8].1).unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(
        delta["usage"]["output_tokens"], 4,
        "message_delta carries the cumulative total"
    );
}

#[tokio::test]
async fn anthropic_insists_on_max_tokens_and_uses_its_error_shape() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/v1/messages",
        json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = post(&mock, "/v1/messages", json!({"model": "claude+status=529", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(response.status(), 529);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["type"],
        "overloaded_error"
    );
}

#[tokio::test]
async fn injected_statuses_come_with_provider_errors_and_retry_after() {
    let mock = mock().await;
    let response = post(
        &mock,
        "/v1/chat/completions",
        chat("m+status=429+retry_after=7"),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    for status in [500u16, 503] {
        let response = post(
            &mock,
            "/v1/chat/completions",
            chat(&format!("m+status={status}")),
        )
        .await;
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error");
    }
    // The same knob as a header.
    let response = http()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .header("x-mock-status", "503")
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
async fn a_cut_stream_breaks_off_after_n_events() {
    let mock = mock().await;
    let mut request = chat("m+cut=3+chunks=10");
    request["stream"] = json!(true);
    let mut response = post(&mock, "/v1/chat/completions", request).await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(bytes)) => received.extend_from_slice(&bytes),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        outcome.is_err(),
        "a cut stream must end in a transport error, not a clean end"
    );
    let data = openai_data(&String::from_utf8(received).unwrap());
    assert_eq!(data.len(), 3);
    assert!(!data.contains(&"[DONE]".to_owned()));
}

#[tokio::test]
async fn error_after_sends_an_in_band_error_event() {
    let mock = mock().await;
    let mut request = chat("m+error_after=2");
    request["stream"] = json!(true);
    let data = openai_data(
        &post(&mock, "/v1/chat/completions", request)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(data.len(), 3);
    let error: Value = serde_json::from_str(&data[2]).unwrap();
    assert_eq!(error["error"]["type"], "server_error");

    let request = json!({"model": "c+error_after=1", "max_tokens": 9, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let events = sse_events(
        &post(&mock, "/v1/messages", request)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].0.as_deref(), Some("error"));
}

#[tokio::test]
async fn latency_hang_and_delay_are_honoured() {
    let mock = mock().await;
    let started = Instant::now();
    let response = post(&mock, "/v1/chat/completions", chat("m+ttfb=150")).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let mut request = chat("m+chunks=3+delay=60");
    request["stream"] = json!(true);
    let started = Instant::now();
    let _ = post(&mock, "/v1/chat/completions", request)
        .await
        .text()
        .await
        .unwrap();
    // 6 events (role, 3 pieces, finish, [DONE]) with a delay between each pair.
    assert!(started.elapsed() >= Duration::from_millis(5 * 60));

    let hung = http()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .timeout(Duration::from_millis(300))
        .json(&chat("m+hang"))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
}

#[tokio::test]
async fn requests_are_recorded_and_concurrency_is_counted() {
    let mock = mock().await;
    let _ = post(&mock, "/v1/chat/completions", chat("recorded")).await;
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert_eq!(recorded[0].header("Authorization"), Some("Bearer sk-test"));
    assert_eq!(recorded[0].json()["model"], "recorded");

    mock.reset();
    let slow = || post(&mock, "/v1/chat/completions", chat("m+ttfb=300"));
    let (a, b, c) = tokio::join!(slow(), slow(), slow());
    assert!([a, b, c].iter().all(|r| r.status() == 200));
    let stats = mock.stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.max_in_flight, 3);
    assert_eq!(stats.in_flight, 0);

    // A stream counts as in flight until its body ends or the client goes away.
    let mut request = chat("m+stall=1");
    request["stream"] = json!(true);
    let mut open = post(&mock, "/v1/chat/completions", request).await;
    let _first = open.chunk().await.unwrap();
    assert_eq!(mock.stats().in_flight, 1);
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.stats().in_flight != 0 {
        assert!(
            Instant::now() < deadline,
            "a dropped stream stayed in flight"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn embeddings_models_and_completions() {
    let mock = mock().await;
    let body: Value = post(
        &mock,
        "/v1/embeddings",
        json!({"model": "e", "input": ["one two", "three"], "dimensions": 4}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let floats: Vec<f32> = serde_json::from_value(body["data"][1]["embedding"].clone()).unwrap();
    assert_eq!(floats, embedding(1, 4));

    // The Python SDK asks for base64 by default.
    let body: Value = post(
        &mock,
        "/v1/embeddings",
        json!({"model": "e", "input": "x", "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, embedding(0, 8));

    let models: Value = http()
        .get(format!("{}/v1/models", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "mock-gpt-4o")
    );

    let body: Value = post(
        &mock,
        "/v1/completions",
        json!({"model": "m+chunks=2", "prompt": "say this"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["choices"][0]["text"], "w0 w1");
    assert_eq!(body["usage"]["prompt_tokens"], 2);
}

#[tokio::test]
async fn azure_paths_need_api_version_and_take_the_model_from_the_url() {
    let mock = mock().await;
    let url = format!(
        "{}/openai/deployments/prod-4o+chunks=1/chat/completions",
        mock.url()
    );
    let missing = http()
        .post(&url)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let body: Value = http()
        .post(format!("{url}?api-version=2024-10-21"))
        .header("api-key", "azure-secret")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"], "prod-4o+chunks=1");
    assert_eq!(body["choices"][0]["message"]["content"], "w0");
    assert_eq!(
        mock.requests()[1].query.as_deref(),
        Some("api-version=2024-10-21")
    );
}

#[tokio::test]
async fn bad_input_gets_clear_400s_and_wrong_keys_401() {
    let mock = MockUpstream::start_with(MockOptions {
        require_key: Some("sk-right".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let send = |body: &'static str, key: &'static str| {
        http()
            .post(format!("{}/v1/chat/completions", mock.url()))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = send("{not json", "sk-right").await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(
        malformed.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let typo = send(
        r#"{"model":"m+chunkz=3","messages":[{"role":"user","content":"x"}]}"#,
        "sk-right",
    )
    .await
    .unwrap();
    assert_eq!(typo.status(), 400);
    assert!(
        typo.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chunkz")
    );

    let wrong = send(
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        "sk-wrong",
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_api_key"
    );

    let unknown = http()
        .get(format!("{}/v1/nope", mock.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_binary_serves_and_reports_over_http() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-openai"))
        .args(["--listen", "127.0.0.1:0", "--record-capacity", "5"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");

    let response = http()
        .post(format!("{url}/v1/chat/completions"))
        .json(&chat("m"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stats: Value = http()
        .get(format!("{url}/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    let recorded: Value = http()
        .get(format!("{url}/_mock/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recorded[0]["path"], "/v1/chat/completions");
    child.kill().await.unwrap();
}
