//! What a call may ask of a model, checked before anything is reserved or sent: model
//! limits and modes set in the catalog reach the gateway and refuse calls with OpenAI's
//! 400s; several answers (`n`) are priced as several answers. Every refusal here is
//! also checked at the mock upstream: it received nothing.
//!
//! The prompt is first counted by its byte bound; a budget or a tokens/min limit that the
//! bound would refuse or clamp gets the tokenizer's count instead, so the bound never
//! refuses or shortens a call the real count lets through.

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::config_push::{Plane, send, until_status};
use crate::http;

/// Model `m` of the plane (see [`Plane::start`]).
const MODEL_M: &str = "00000000-0000-7000-8000-000000000002";

async fn post(gateway: &GatewayProcess, key: &str, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", gateway.v1()))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The OpenAI error of a refused call, after checking its status.
async fn error(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    body["error"].clone()
}

#[tokio::test]
async fn catalog_limits_and_modes_refuse_calls_at_the_gateway_before_they_leave() {
    let plane = Plane::start().await;

    // Bad metadata is a 422 naming every field.
    let refused = send(
        Method::PATCH,
        &plane.cp.api(&format!("/models/{MODEL_M}")),
        &plane.cp.admin_token,
        Some(
            json!({"max_output_tokens": 0, "modes": ["chat", "speech"], "max_n": 500,
                    "context_window": -5}),
        ),
    )
    .await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["context_window", "max_output_tokens", "modes", "max_n"],
        "{problem}"
    );
    let refused = send(
        Method::PATCH,
        &plane.cp.api(&format!("/models/{MODEL_M}")),
        &plane.cp.admin_token,
        Some(json!({"max_output_tokens": 1000, "default_max_output_tokens": 2000})),
    )
    .await;
    assert_eq!(refused.status(), 422, "a default above the limit");

    // gpt-4o's published limits, chat only.
    let patched = send(
        Method::PATCH,
        &plane.cp.api(&format!("/models/{MODEL_M}")),
        &plane.cp.admin_token,
        Some(json!({"context_window": 128000, "max_output_tokens": 16384, "modes": ["chat"]})),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let model: Value = patched.json().await.unwrap();
    assert_eq!(
        (
            &model["context_window"],
            &model["max_output_tokens"],
            &model["modes"],
            &model["max_n"]
        ),
        (&json!(128000), &json!(16384), &json!(["chat"]), &json!(128))
    );
    let read: Value = send(
        Method::GET,
        &plane.cp.api(&format!("/models/{MODEL_M}")),
        &plane.cp.admin_token,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(read["max_output_tokens"], 16384);

    let token = plane.enrollment_token("eu").await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let gateway = plane
        .gateway("eu", "gw-estimate", &grpc, &token, "eu.lkg")
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;
    let sent = plane.mock.requests().len();

    let huge = post(
        &gateway,
        &key,
        "/chat/completions",
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100_000_000}),
    )
    .await;
    let e = error(huge, 400).await;
    assert_eq!(
        e["message"],
        "max_tokens is too large: 100000000. This model supports at most 16384 completion tokens, whereas you provided 100000000."
    );
    assert_eq!(
        (&e["type"], &e["param"], &e["code"]),
        (
            &json!("invalid_request_error"),
            &json!("max_tokens"),
            &json!("invalid_value")
        )
    );

    let embeddings = post(
        &gateway,
        &key,
        "/embeddings",
        json!({"model": "m", "input": "hello"}),
    )
    .await;
    let e = error(embeddings, 400).await;
    assert_eq!(e["param"], "model");
    assert_eq!(
        e["message"],
        "m does not serve /v1/embeddings; it serves /v1/chat/completions."
    );

    assert_eq!(
        plane.mock.requests().len(),
        sent,
        "no refused call reached the upstream"
    );
}

/// A standalone gateway with model `chat` (1 µ$ per prompt token, 2 µ$ per output
/// token; context window 200 tokens), model `single` (refuses n > 1), and `budget`.
async fn standalone(budget: &str) -> (MockUpstream, TestKey, GatewayProcess) {
    standalone_with(budget, "").await
}

/// [`standalone`], with extra lines in the key's entry (`limits = …`).
async fn standalone_with(budget: &str, key_extra: &str) -> (MockUpstream, TestKey, GatewayProcess) {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let deployment = |id: &str, model: &str| {
        format!(
            "[[deployments]]\nid = \"{id}\"\nmodel = \"{model}\"\nprovider = \"openai\"\n\
             base_url = \"{base}\"\nupstream_model = \"mock-gpt-4o\"\n\
             prices = {{ input = 1000000, output = 2000000 }}\n",
            base = mock.openai_base_url()
        )
    };
    let config = format!(
        "[[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\ncontext_window = 200\nmax_output_tokens = 1000\n\
         [[models]]\nname = \"single\"\nmax_n = 1\n\
         {}{}{budget}\n{}",
        deployment("primary", "chat"),
        deployment("one", "single"),
        key.entry("search", key_extra),
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    (mock, key, gateway)
}

fn hello(model: &str, extra: Value) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello big world"}], "max_tokens": 100});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    body
}

#[tokio::test]
async fn n_answers_are_priced_as_n_answers() {
    // One answer's worst case: ~10 prompt µ$ + 100 × 2 µ$ = ~210 µ$; four answers:
    // ~810 µ$. A 500 µ$ budget covers the first, not the second.
    let (mock, key, gateway) = standalone(
        "[[budgets]]\nscope = \"team:search\"\namount_usd = \"0.000500\"\nperiod = \"month\"\n",
    )
    .await;
    let four = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({"n": 4})),
    )
    .await;
    let e = error(four, 429).await;
    assert_eq!(e["code"], "insufficient_quota");
    assert!(mock.requests().is_empty(), "nothing went upstream");

    let one = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({"n": 1})),
    )
    .await;
    assert_eq!(one.status(), 200);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn bad_n_a_refused_n_and_a_prompt_past_the_window_are_400s_that_never_leave() {
    let (mock, key, gateway) = standalone("").await;
    let cases = [
        (hello("chat", json!({"n": 0})), "n", Value::Null),
        (hello("chat", json!({"n": 129})), "n", Value::Null),
        (
            hello("single", json!({"n": 2})),
            "n",
            json!("invalid_value"),
        ),
        (
            hello("chat", json!({"max_completion_tokens": 1001})),
            "max_completion_tokens",
            json!("invalid_value"),
        ),
        (
            json!({"model": "chat", "messages": [{"role": "user", "content": "hello ".repeat(300)}]}),
            "messages",
            json!("context_length_exceeded"),
        ),
    ];
    for (body, param, code) in cases {
        let e = error(
            post(&gateway, &key.full, "/chat/completions", body).await,
            400,
        )
        .await;
        assert_eq!((&e["param"], &e["code"]), (&json!(param), &code), "{e}");
    }
    let e = error(
        post(
            &gateway,
            &key.full,
            "/chat/completions",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hello ".repeat(300)}]}),
        )
        .await,
        400,
    )
    .await;
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 200 tokens."),
        "{e}"
    );
    assert!(mock.requests().is_empty(), "nothing went upstream");
    // The same model still serves a call within its limits.
    let ok = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("single", json!({"n": 1})),
    )
    .await;
    assert_eq!(ok.status(), 200);
}

// `hello("chat", {})` with `max_tokens: 100`: the tokenizer counts 3 priming + 3 framing +
// "user" (1) + "hello big world" (3) = 10 prompt tokens, a worst case of 10 + 100 × 2 =
// 210 µ$; the bound counts "user" and "hello big world" by their bytes (4 + 15): 25
// tokens, 225 µ$.
const EXACT_WORST: i64 = 210;
const BOUND_WORST: i64 = 225;

#[tokio::test]
async fn a_budget_with_room_reserves_the_prompts_byte_bound() {
    let (mock, key, gateway) = standalone(
        "[[budgets]]\nscope = \"team:search\"\namount_usd = \"1.00\"\nperiod = \"month\"\n",
    )
    .await;
    let ok = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let event = gateway.usage_events(1).await.remove(0);
    assert_eq!(event["reserved_micros"], BOUND_WORST, "{event}");
    // Charged at the provider's own count all the same: 3 prompt words + 8 tokens × 2.
    assert_eq!(event["cost_micros"], 3 + 8 * 2, "{event}");
    assert_eq!(mock.requests()[0].json()["max_tokens"], 100);
}

#[tokio::test]
async fn a_budget_the_bound_would_refuse_reserves_the_tokenizers_count() {
    // 215 µ$: less than the bound's worst case, more than the tokenizer's.
    let (mock, key, gateway) = standalone(
        "[[budgets]]\nscope = \"team:search\"\namount_usd = \"0.000215\"\nperiod = \"month\"\n",
    )
    .await;
    let ok = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let event = gateway.usage_events(1).await.remove(0);
    assert_eq!(event["reserved_micros"], EXACT_WORST, "{event}");
    // 215 - 19 = 196 µ$ left: the tokenizer's 210 does not fit either, so it is refused.
    let refused = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    let e = error(refused, 429).await;
    assert_eq!(e["code"], "insufficient_quota");
    assert_eq!(mock.requests().len(), 1, "the refused call never left");
}

#[tokio::test]
async fn a_clamping_budget_the_bound_would_clamp_lets_the_whole_answer_through() {
    let (mock, key, gateway) = standalone(
        "[[budgets]]\nscope = \"team:search\"\namount_usd = \"0.000215\"\nperiod = \"month\"\nclamp = \"clamp\"\n",
    )
    .await;
    let ok = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert!(
        !ok.headers().contains_key("x-tollgate-max-tokens-clamped"),
        "{:?}",
        ok.headers()
    );
    assert_eq!(
        mock.requests()[0].json()["max_tokens"],
        100,
        "not shortened"
    );
    let event = gateway.usage_events(1).await.remove(0);
    assert_eq!(event["reserved_micros"], EXACT_WORST, "{event}");
    // What is left now (196 µ$) cannot pay for 100 output tokens by either count: the
    // tokenizer's prompt (10 µ$) decides the clamp, 93 tokens, not the bound's 85.
    let clamped = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    assert_eq!(clamped.status(), 200);
    assert_eq!(clamped.headers()["x-tollgate-max-tokens-clamped"], "93");
    assert_eq!(mock.requests()[1].json()["max_tokens"], 93);
}

#[tokio::test]
async fn a_tokens_per_minute_limit_the_bound_would_hit_counts_with_the_tokenizer() {
    // 115 tokens a minute: the bound's 25 + 100 do not fit, the tokenizer's 10 + 100 do.
    let (mock, key, gateway) = standalone_with("", "limits = { tpm = 115 }").await;
    let ok = post(
        &gateway,
        &key.full,
        "/chat/completions",
        hello("chat", json!({})),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-ratelimit-limit-tokens"], "115");
    assert_eq!(ok.headers()["x-ratelimit-remaining-tokens"], "5");
    // Once the call has ended the window counts what it used (3 + 8 tokens), not its
    // estimate: 104 left, room for a call of 10 + 90 by the tokenizer's count. Polled,
    // since the window is corrected as the call's last step, after its answer is sent.
    let smaller = || hello("chat", json!({"max_tokens": 90}));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response = post(&gateway, &key.full, "/chat/completions", smaller()).await;
        if response.status() == 200 {
            break;
        }
        let e = error(response, 429).await;
        assert_eq!(e["code"], "rate_limit_exceeded", "{e}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the window never gave back the estimate: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(mock.requests().len(), 2);
}
