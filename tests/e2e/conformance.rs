//! One conformance matrix for every provider adapter: the same OpenAI-shaped calls go
//! through a gateway whose only deployment uses that adapter, in front of the mock
//! upstream speaking that provider's API. An adapter that cannot serve a case opts out
//! explicitly, and the opt-out itself is tested (a clear 400, never a silent pass).

use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::{http, sse_events};

/// 1 µ$ per prompt token, 2 µ$ per output token.
const PRICES: &str = "prices = { input = 1000000, output = 2000000 }";

struct Harness {
    mock: MockUpstream,
    key: TestKey,
    gateway: GatewayProcess,
}

/// The wire format a matrix row's upstream speaks (Vertex serves two).
fn format(provider: &str) -> &str {
    match provider {
        "vertex" => "gemini",
        "vertex_claude" => "anthropic",
        other => other,
    }
}

/// The `[[deployments]]` block of `provider` for model `m`, with `directives` appended
/// to the upstream model name (they steer the mock).
fn deployment(provider: &str, mock: &str, directives: &str, prices: &str) -> String {
    let vertex_root = format!("{mock}/v1/projects/acme-ml/locations/europe-west4");
    let (provider, base, upstream, extra) = match provider {
        "vertex" => ("vertex", vertex_root, "gemini-2.5-flash", ""),
        "vertex_claude" => ("vertex", vertex_root, "claude-sonnet-4@20250514", ""),
        other => {
            let (base, upstream, extra) = plain_deployment(other, mock);
            (other, base, upstream, extra)
        }
    };
    let credential = if provider == "bedrock" {
        "TOLLGATE_PROVIDER_CONFORMANCE_ACCESS_KEY_ID"
    } else {
        "TOLLGATE_PROVIDER_CONFORMANCE_KEY"
    };
    format!(
        "[[deployments]]\nid = \"dep\"\nmodel = \"m\"\nprovider = \"{provider}\"\nbase_url = \"{base}\"\n\
         upstream_model = \"{upstream}{directives}\"\ncredential = \"env:{credential}\"\n{extra}{prices}\n"
    )
}

fn plain_deployment(provider: &str, mock: &str) -> (String, &'static str, &'static str) {
    match provider {
        "openai" | "openai_compatible" => (format!("{mock}/v1"), "mock-gpt", ""),
        "azure" => (
            mock.to_owned(),
            "prod-gpt",
            "api_version = \"2024-10-21\"\n",
        ),
        "anthropic" => (format!("{mock}/v1"), "mock-claude", ""),
        "gemini" => (format!("{mock}/v1beta"), "mock-gemini", ""),
        "bedrock" => (
            mock.to_owned(),
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "cloud_region = \"us-east-1\"\n",
        ),
        other => panic!("no conformance setup for {other}"),
    }
}

async fn harness(provider: &str, directives: &str) -> Harness {
    priced_harness(provider, directives, PRICES).await
}

async fn priced_harness(provider: &str, directives: &str, prices: &str) -> Harness {
    // Vertex authenticates with tokens minted from a service-account key; everything
    // else with the static secret.
    let vertex = provider.starts_with("vertex");
    let mock = MockUpstream::start_with(tollgate_tests::mock::MockOptions {
        require_key: (!vertex).then(|| "provider-secret".into()),
        google_token: vertex.then(|| tollgate_tests::mock::gemini::TokenEndpoint {
            public_key_pem: GOOGLE_PUBLIC_KEY.into(),
            lifetime_secs: 3600,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let credential = if vertex {
        service_account(&format!("{}/token", mock.url()))
    } else {
        "provider-secret".to_owned()
    };
    // Bedrock signs with an access key (the mock checks it is "provider-secret") and its
    // secret, the standard pair of variables under the allowed prefix.
    let aws_secret = (
        "TOLLGATE_PROVIDER_CONFORMANCE_SECRET_ACCESS_KEY",
        "aws-secret",
    );
    let key = TestKey::new();
    let config = format!(
        "[routing]\nmax_attempts = 2\nbackoff_base_ms = 1\n[[orgs]]\nid = \"o\"\n[[teams]]\nid = \"t\"\norg = \"o\"\n\
         [[models]]\nname = \"m\"\ndefault_max_output_tokens = 64\n{}{}",
        deployment(provider, &mock.url(), directives, prices),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(
        &config,
        &[
            ("TOLLGATE_PROVIDER_CONFORMANCE_KEY", credential.as_str()),
            (
                "TOLLGATE_PROVIDER_CONFORMANCE_ACCESS_KEY_ID",
                "provider-secret",
            ),
            aws_secret,
        ],
    )
    .await
    .unwrap();
    Harness { mock, key, gateway }
}

const GOOGLE_PUBLIC_KEY: &str = include_str!("../fixtures/google/test-service-account.pub.pem");

/// The test service-account key file, its `token_uri` pointed at `token_uri`.
pub fn service_account(token_uri: &str) -> String {
    let mut key: Value =
        serde_json::from_str(include_str!("../fixtures/google/test-service-account.json")).unwrap();
    key["token_uri"] = token_uri.into();
    key.to_string()
}

impl Harness {
    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        http()
            .post(format!("{}{path}", self.gateway.v1()))
            .bearer_auth(&self.key.full)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello big world"},
    ]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "lookup", "description": "Find a thing",
        "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}}}}}])
}

/// Chunks of an OpenAI stream (without `[DONE]`), and whether `[DONE]` ended it.
fn chunks(text: &str) -> (Vec<Value>, bool) {
    let events = sse_events(text);
    let done = events.last().is_some_and(|(_, d)| d == "[DONE]");
    let chunks = events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    (chunks, done)
}

pub async fn plain(provider: &str) {
    let h = harness(provider, "").await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "w0 w1 w2 w3 w4 w5 w6 w7"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The provider credential was resolved from the environment and sent upstream.
    assert_eq!(h.mock.api_requests().len(), 1);
}

pub async fn max_tokens(provider: &str) {
    let h = harness(provider, "").await;
    let body: Value = h
        .post("/chat/completions", chat(json!({"max_tokens": 3})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "w0 w1 w2");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

/// The reserved output ceiling always goes upstream, in the field the provider honours,
/// so the provider can never bill more output than was reserved.
pub async fn output_cap(provider: &str) {
    let h = harness(provider, "").await;
    let sent =
        |i: usize| -> Value { serde_json::from_str(&h.mock.api_requests()[i].body).unwrap() };
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let (field, client_field) = match format(provider) {
        "openai" | "azure" => ("/max_completion_tokens", "/max_tokens"),
        "gemini" => (
            "/generationConfig/maxOutputTokens",
            "/generationConfig/maxOutputTokens",
        ),
        "bedrock" => ("/inferenceConfig/maxTokens", "/inferenceConfig/maxTokens"),
        _ => ("/max_tokens", "/max_tokens"),
    };
    let at = |i: usize, pointer: &str| sent(i).pointer(pointer).cloned();
    // No limit from the client: the model's default ceiling, which was reserved.
    assert_eq!(at(0, field), Some(json!(64)), "{}", sent(0));
    // The client's own (lower) limit goes as it was sent.
    let response = h
        .post("/chat/completions", chat(json!({"max_tokens": 5})))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(at(1, client_field), Some(json!(5)), "{}", sent(1));
    let streamed = h
        .post("/chat/completions", chat(json!({"stream": true})))
        .await;
    assert_eq!(streamed.status(), 200);
    let _ = streamed.text().await;
    assert_eq!(at(2, field), Some(json!(64)), "{}", sent(2));
}

pub async fn streaming(provider: &str) {
    let h = harness(provider, "").await;
    let text = h
        .post("/chat/completions", chat(json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let (chunks, done) = chunks(&text);
    assert!(done, "{text}");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "w0 w1 w2 w3 w4 w5 w6 w7");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    assert!(
        chunks
            .iter()
            .all(|c| !c["choices"].as_array().unwrap().is_empty()),
        "usage chunk not asked for"
    );
}

pub async fn streaming_usage(provider: &str) {
    let h = harness(provider, "").await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let text = h
        .post("/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();
    let (chunks, _) = chunks(&text);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    // "be brief" + "hello big world" = 5 words → 5 prompt tokens by the mock's rule.
    assert_eq!(last["usage"]["prompt_tokens"], 5);
    assert_eq!(last["usage"]["completion_tokens"], 8);
}

pub async fn tools_json(provider: &str) {
    let h = harness(provider, "").await;
    let body: Value = h
        .post("/chat/completions", chat(json!({"tools": tools()})))
        .await
        .json()
        .await
        .unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"ok": true}));
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

pub async fn tools_streaming(provider: &str) {
    let h = harness(provider, "").await;
    let text = h
        .post(
            "/chat/completions",
            chat(json!({"tools": tools(), "stream": true})),
        )
        .await
        .text()
        .await
        .unwrap();
    let (chunks, done) = chunks(&text);
    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["function"]["name"], "lookup");
    assert!(calls[0]["id"].is_string());
    let arguments: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"ok": true})
    );
}

pub async fn upstream_errors(provider: &str) {
    let h = harness(provider, "+status=503").await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 502);
    assert_eq!(h.mock.api_requests().len(), 2, "retried once, then gave up");

    let h = harness(provider, "+status=400").await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        h.mock.api_requests().len(),
        1,
        "a client error is not retried"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("injected 400"),
        "{body}"
    );
}

pub async fn usage_and_cost(provider: &str) {
    let h = harness(provider, "+cache_read=10").await;
    let _ = h
        .post("/chat/completions", chat(json!({})))
        .await
        .bytes()
        .await
        .unwrap();
    let _ = h
        .post("/chat/completions", chat(json!({"stream": true})))
        .await
        .bytes()
        .await
        .unwrap();
    let events = h.gateway.usage_events(2).await;
    assert_eq!(events.len(), 2);
    for e in &events {
        // 5 uncached words + 10 cached, 8 out. Cached input has no price here, so the
        // cost is 5 × 1 + 8 × 2 µ$.
        assert_eq!(e["prompt_tokens"], 15, "{e}");
        assert_eq!(e["cache_read_tokens"], 10, "{e}");
        assert_eq!(e["completion_tokens"], 8, "{e}");
        assert_eq!(e["cost_micros"], 21, "{e}");
    }
}

/// [`PRICES`] up to 12 prompt tokens; above, a long-context tier of 3 µ$ per prompt
/// token, 1 µ$ per cached one and 5 µ$ per output token.
const TIERED: &str = "prices = { input = 1000000, output = 2000000, tiers = [\
    { above_prompt_tokens = 12, input = 3000000, output = 5000000, cached_input = 1000000 }] }";

/// `words` words of user prompt after the "be brief" system prompt.
fn chat_of(words: usize) -> Value {
    let text: Vec<String> = (0..words).map(|i| format!("w{i}")).collect();
    json!({"model": "m", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": text.join(" ")},
    ]})
}

/// The provider's own prompt count picks the tier: a prompt of exactly the threshold
/// bills at the base rates, one token more (or cache reads taking it over) at the
/// tier's, every token of the call included.
pub async fn long_context_tier(provider: &str) {
    let h = priced_harness(provider, "", TIERED).await;
    for (words, stream) in [(10, false), (11, false), (20, true)] {
        let mut body = chat_of(words);
        if stream {
            body["stream"] = true.into();
        }
        let response = h.post("/chat/completions", body).await;
        assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
        let _ = response.bytes().await.unwrap();
    }
    let events = h.gateway.usage_events(3).await;
    let cost = |prompt: u64| {
        events
            .iter()
            .find(|e| e["prompt_tokens"] == prompt)
            .unwrap_or_else(|| panic!("no call of {prompt} prompt tokens: {events:?}"))["cost_micros"]
            .clone()
    };
    // 12 prompt tokens (at the threshold): 12 × 1 + 8 × 2 µ$.
    assert_eq!(cost(12), 28, "{events:?}");
    // 13: 13 × 3 + 8 × 5 µ$.
    assert_eq!(cost(13), 79, "{events:?}");
    // 22, streamed: 22 × 3 + 8 × 5 µ$.
    assert_eq!(cost(22), 106, "{events:?}");

    // 5 fresh + 10 cached = 15 prompt tokens: 5 × 3 + 10 × 1 + 8 × 5 µ$.
    let h = priced_harness(provider, "+cache_read=10", TIERED).await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let events = h.gateway.usage_events(1).await;
    assert_eq!(events[0]["prompt_tokens"], 15, "{}", events[0]);
    assert_eq!(events[0]["cost_micros"], 65, "{}", events[0]);
}

/// Thinking/reasoning tokens come inside the provider's output count, are billed at the
/// output price, and stay within the reserved ceiling the gateway sent (the model's
/// default 64 here): 8 answer tokens + 56 of the 100 thinking tokens asked for.
pub async fn thinking_within_ceiling(provider: &str) {
    let h = harness(provider, "+thoughts=100").await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 64, "{body}");
    let streamed = h
        .post(
            "/chat/completions",
            chat(json!({"stream": true, "stream_options": {"include_usage": true}})),
        )
        .await;
    assert_eq!(streamed.status(), 200);
    let _ = streamed.bytes().await.unwrap();
    let events = h.gateway.usage_events(2).await;
    for e in &events {
        assert_eq!(e["completion_tokens"], 64, "{e}");
        // 5 prompt tokens × 1 µ$ + 64 output tokens × 2 µ$.
        assert_eq!(e["cost_micros"], 133, "{e}");
    }
}

pub async fn embeddings(provider: &str) {
    let h = harness(provider, "").await;
    let response = h
        .post(
            "/embeddings",
            json!({"model": "m", "input": ["one two", "three"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // Gemini reports no embedding usage: the gateway counts 3 tiktoken tokens and bills
    // Gemini's margin over them (× 1.2, rounded up), as it reserved.
    let expected = if format(provider) == "gemini" { 4 } else { 3 };
    assert_eq!(body["usage"]["prompt_tokens"], expected);
    let events = h.gateway.usage_events(1).await;
    assert_eq!(events[0]["prompt_tokens"], expected, "{}", events[0]);
    assert_eq!(events[0]["cost_micros"], expected, "{}", events[0]);
}

/// JSON mode reaches the provider in its own form.
pub async fn json_mode(provider: &str) {
    let h = harness(provider, "").await;
    let response = h
        .post(
            "/chat/completions",
            chat(json!({"response_format": {"type": "json_object"}})),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let sent = h.mock.api_requests()[0].json();
    match format(provider) {
        "gemini" => assert_eq!(
            sent["generationConfig"]["responseMimeType"], "application/json",
            "{sent}"
        ),
        // Documented in the adapter: Anthropic has no JSON mode outside its beta, and
        // refuses fields it does not know; the model still sees the instructions.
        "anthropic" | "bedrock" => assert!(sent.get("response_format").is_none(), "{sent}"),
        _ => assert_eq!(sent["response_format"]["type"], "json_object", "{sent}"),
    }
}

/// An image in the prompt reaches the provider in its own form.
pub async fn images(provider: &str) {
    let h = harness(provider, "").await;
    let image = "data:image/png;base64,iVBORw0KGgo=";
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": image}},
    ]}]});
    let response = h.post("/chat/completions", body).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let sent = h.mock.api_requests()[0].json();
    let (pointer, expected) = match format(provider) {
        "gemini" => (
            "/contents/0/parts/1/inlineData",
            json!({"mimeType": "image/png", "data": "iVBORw0KGgo="}),
        ),
        "bedrock" => (
            "/messages/0/content/1/image",
            json!({"format": "png", "source": {"bytes": "iVBORw0KGgo="}}),
        ),
        "anthropic" => (
            "/messages/0/content/1/source",
            json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}),
        ),
        _ => ("/messages/0/content/1/image_url/url", json!(image)),
    };
    assert_eq!(sent.pointer(pointer), Some(&expected), "{sent}");
}

/// The provider's 429 reaches the client as OpenAI's, with its Retry-After.
pub async fn rate_limited(provider: &str) {
    let h = harness(provider, "+status=429+retry_after=7").await;
    let response = h.post("/chat/completions", chat(json!({}))).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
}

/// A stream the provider breaks off with an in-band error ends with OpenAI's error event.
pub async fn mid_stream_error(provider: &str) {
    let h = harness(provider, "+error_after=3").await;
    let text = h
        .post("/chat/completions", chat(json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap();
    let (chunks, done) = chunks(&text);
    assert!(!done, "a failed stream does not claim completion: {text}");
    assert_eq!(
        chunks.last().unwrap()["error"]["code"],
        "upstream_error",
        "{text}"
    );
    let events = h.gateway.usage_events(1).await;
    assert_eq!(events[0]["http_status"], 502, "{}", events[0]);
}

pub async fn completions(provider: &str) {
    let h = harness(provider, "").await;
    let body: Value = h
        .post(
            "/completions",
            json!({"model": "m", "prompt": "say this", "max_tokens": 2}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["text"], "w0 w1");
    let text = h
        .post(
            "/completions",
            json!({"model": "m", "prompt": "say this", "max_tokens": 2, "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
    let (chunks, done) = chunks(&text);
    assert!(done);
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, "w0 w1");
}

/// Fields that differ between runs (ids, clocks): a transcript keeps their place, not
/// their value.
const VOLATILE: &[&str] = &[
    "id",
    "item_id",
    "call_id",
    "tool_use_id",
    "created",
    "created_at",
];

fn normalized(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if VOLATILE.contains(&name.as_str()) && !field.is_null() {
                    *field = json!("<volatile>");
                } else {
                    normalized(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalized),
        _ => {}
    }
}

/// A lane's streamed answer through the gateway as a golden transcript: every event
/// (volatile fields masked), then what the gateway metered. A change in the events or
/// in the accounting shows up as a diff of `tests/e2e/golden/<provider>.<lane>.sse`;
/// `TOLLGATE_BLESS=1` rewrites the file after a change that is meant.
pub async fn lane_transcript(provider: &str, lane: &str) {
    let h = harness(provider, "+cache_read=10").await;
    let (path, body) = match lane {
        "messages" => (
            "/messages",
            json!({"model": "m", "max_tokens": 5, "stream": true, "system": "be brief",
                "messages": [{"role": "user", "content": "hello big world"}]}),
        ),
        _ => (
            "/responses",
            json!({"model": "m", "max_output_tokens": 5, "stream": true,
                "instructions": "be brief", "input": "hello big world"}),
        ),
    };
    let response = h.post(path, body).await;
    assert_eq!(response.status(), 200, "{}", h.gateway.stderr());
    let text = response.text().await.unwrap();
    let mut transcript = String::new();
    for (event, data) in sse_events(&text) {
        let mut data: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
        normalized(&mut data);
        transcript.push_str(&format!(
            "event: {}\ndata: {data}\n\n",
            event.unwrap_or_default()
        ));
    }
    let events = h.gateway.usage_events(1).await;
    let e = &events[0];
    transcript.push_str(&format!(
        "# metered: endpoint={} prompt_tokens={} completion_tokens={} cache_read_tokens={} cache_write_tokens={} cost_micros={}\n",
        e["endpoint"], e["prompt_tokens"], e["completion_tokens"], e["cache_read_tokens"], e["cache_write_tokens"], e["cost_micros"],
    ));
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e/golden")
        .join(format!("{provider}.{lane}.sse"));
    if std::env::var_os("TOLLGATE_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &transcript).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run with TOLLGATE_BLESS=1 to write it, and review it:\n{transcript}",
            golden.display()
        )
    });
    assert_eq!(
        transcript, expected,
        "the {lane} transcript over {provider} changed (TOLLGATE_BLESS=1 rewrites it)"
    );
}

/// The explicit opt-out: the endpoint answers a clear 400 and nothing reaches upstream.
pub async fn unsupported(provider: &str, path: &str, body: Value) {
    let h = harness(provider, "").await;
    let response = h.post(path, body).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_endpoint");
    assert!(h.mock.api_requests().is_empty());
}

/// `conformance!(provider, opt_out: [case, ...])` runs every case not opted out; an
/// opted-out `embeddings`/`completions` case checks the clear refusal instead.
macro_rules! conformance {
    ($provider:ident $(, opt_out: [$($skip:ident),*])?) => {
        mod $provider {
            const P: &str = stringify!($provider);
            #[tokio::test] async fn plain() { super::plain(P).await }
            #[tokio::test] async fn max_tokens() { super::max_tokens(P).await }
            #[tokio::test] async fn output_cap() { super::output_cap(P).await }
            #[tokio::test] async fn streaming() { super::streaming(P).await }
            #[tokio::test] async fn streaming_usage() { super::streaming_usage(P).await }
            #[tokio::test] async fn tools_json() { super::tools_json(P).await }
            #[tokio::test] async fn tools_streaming() { super::tools_streaming(P).await }
            #[tokio::test] async fn upstream_errors() { super::upstream_errors(P).await }
            #[tokio::test] async fn usage_and_cost() { super::usage_and_cost(P).await }
            #[tokio::test] async fn long_context_tier() { super::long_context_tier(P).await }
            #[tokio::test] async fn thinking_within_ceiling() { super::thinking_within_ceiling(P).await }
            #[tokio::test] async fn messages_transcript() { super::lane_transcript(P, "messages").await }
            #[tokio::test] async fn responses_transcript() { super::lane_transcript(P, "responses").await }
            #[tokio::test] async fn json_mode() { super::json_mode(P).await }
            #[tokio::test] async fn images() { super::images(P).await }
            #[tokio::test] async fn rate_limited() { super::rate_limited(P).await }
            #[tokio::test] async fn mid_stream_error() { super::mid_stream_error(P).await }
            conformance!(@case embeddings $($($skip)*)?);
            conformance!(@case completions $($($skip)*)?);
        }
    };
    (@case embeddings embeddings $($rest:ident)*) => {
        #[tokio::test] async fn embeddings_opted_out() {
            super::unsupported(P, "/embeddings", serde_json::json!({"model": "m", "input": "x"})).await
        }
    };
    (@case completions embeddings $($rest:ident)*) => { conformance!(@case completions $($rest)*); };
    (@case completions completions $($rest:ident)*) => {
        #[tokio::test] async fn completions_opted_out() {
            super::unsupported(P, "/completions", serde_json::json!({"model": "m", "prompt": "x"})).await
        }
    };
    (@case embeddings completions $($rest:ident)*) => { conformance!(@case embeddings $($rest)*); };
    (@case embeddings) => { #[tokio::test] async fn embeddings() { super::embeddings(P).await } };
    (@case completions) => { #[tokio::test] async fn completions() { super::completions(P).await } };
}

conformance!(openai);
conformance!(openai_compatible);
conformance!(azure);
conformance!(anthropic, opt_out: [embeddings, completions]);
conformance!(gemini, opt_out: [completions]);
conformance!(vertex, opt_out: [embeddings, completions]);
conformance!(vertex_claude, opt_out: [embeddings, completions]);
conformance!(bedrock, opt_out: [embeddings, completions]);
