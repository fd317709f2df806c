//! Anthropic's Messages API (`POST /v1/messages`), JSON and its SSE event sequence:
//! `message_start`, `content_block_start`, `ping`, `content_block_delta`…,
//! `content_block_stop`, `message_delta` (cumulative usage), `message_stop`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::stream::{named, sse_response};
use super::{
    Flavor, Shared, TOOL_ARGUMENTS, chosen_tool, error_response, piece, prepare, prompt_tokens,
};

pub async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    messages_inner(&shared, &headers, &body, None).await
}

/// Claude on Vertex AI: `…/publishers/anthropic/models/{model}:rawPredict` (or
/// `:streamRawPredict`), the Messages body without `model` and with Vertex's
/// `anthropic_version`, a minted Google bearer token.
pub async fn vertex_messages(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((_project, _location, call)): axum::extract::Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = super::gemini::check_bearer(&shared, &headers) {
        return refused;
    }
    let bad =
        |message: &str| error_response(Flavor::Anthropic, StatusCode::BAD_REQUEST, message, None);
    let Some((model, "rawPredict" | "streamRawPredict")) = call.rsplit_once(':') else {
        return bad("mock: expected {model}:rawPredict or :streamRawPredict");
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if json.get("anthropic_version").and_then(Value::as_str) != Some("vertex-2023-10-16") {
        return bad("anthropic_version: must be vertex-2023-10-16");
    }
    if json.get("model").is_some() {
        return bad("model: Extra inputs are not permitted");
    }
    messages_inner(&shared, &headers, &body, Some(model)).await
}

async fn messages_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    model_override: Option<&str>,
) -> Response {
    let (body, model, behavior) =
        match prepare(shared, Flavor::Anthropic, headers, body, model_override).await {
            Ok(prepared) => prepared,
            Err(response) => return response,
        };
    let bad =
        |message: &str| error_response(Flavor::Anthropic, StatusCode::BAD_REQUEST, message, None);
    // The real API insists on both; a translating gateway must send them.
    let Some(max_tokens) = body.get("max_tokens").and_then(Value::as_u64) else {
        return bad("max_tokens: Field required");
    };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return bad("messages: at least one message is required");
    }
    let id = format!("msg_mock_{}", shared.next_id());
    let input_tokens = prompt_tokens(&body);
    let output_tokens = behavior.completion_tokens(Some(max_tokens));
    // Thinking blocks are counted in `output_tokens` (their text is not sent here).
    let thinking = behavior.thinking_tokens(Some(max_tokens), output_tokens);
    let tool = chosen_tool(&body, Flavor::Anthropic);
    let stop_reason = match (&tool, behavior.truncated(Some(max_tokens))) {
        (Some(_), _) => "tool_use",
        (None, true) => "max_tokens",
        (None, false) => "end_turn",
    };
    let usage = |output: u32| {
        json!({
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": behavior.cache_write,
            "cache_read_input_tokens": behavior.cache_read,
            "output_tokens": u64::from(output) + thinking,
        })
    };
    let tool_id = format!("toolu_mock_{id}");

    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let content = match &tool {
            Some(name) => {
                json!([{"type": "tool_use", "id": tool_id, "name": name, "input": {"ok": true}}])
            }
            None => {
                let text: String = (0..output_tokens).map(piece).collect();
                json!([{"type": "text", "text": text}])
            }
        };
        return Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage(output_tokens),
        }))
        .into_response();
    }

    let mut events = vec![named(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": usage(1),
        }}),
    )];
    match &tool {
        Some(name) => {
            events.push(named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
            ));
            events.push(named("ping", &json!({"type": "ping"})));
            for part in TOOL_ARGUMENTS {
                events.push(named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
                ));
            }
        }
        None => {
            events.push(named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            events.push(named("ping", &json!({"type": "ping"})));
            for i in 0..output_tokens {
                events.push(named(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece(i)}}),
                ));
            }
        }
    }
    events.push(named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    // Anthropic's usage is cumulative: message_delta repeats the totals so far, it does not
    // add to message_start's numbers.
    events.push(named(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage(output_tokens)}),
    ));
    events.push(named("message_stop", &json!({"type": "message_stop"})));
    let error = named(
        "error",
        &json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock: injected mid-stream error"}}),
    );
    sse_response(events, error, &behavior)
}
