//! OpenAI's Responses API (`POST /v1/responses`, and Azure's `/openai/v1/responses`),
//! JSON and its SSE events: `response.created`, `response.in_progress`, per output item
//! `response.output_item.added` … deltas … `response.output_item.done`, and
//! `response.completed` (or `response.incomplete` when `max_output_tokens` cut it) with
//! the usage.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Value, json};

use super::stream::{named, sse_response};
use super::{
    Flavor, Shared, TOOL_ARGUMENTS, error_response, piece, prepare, prompt_tokens, unix_now,
};

/// The function the mock "calls": the named `tool_choice`, else the first function tool.
fn chosen_tool(body: &Value) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    let choice = body.get("tool_choice");
    if choice.and_then(Value::as_str) == Some("none") {
        return None;
    }
    if let Some(name) = choice.and_then(|c| c.get("name")).and_then(Value::as_str) {
        return Some(name.to_owned());
    }
    tools
        .iter()
        .find(|t| t.get("type").and_then(Value::as_str) == Some("function"))
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

pub async fn responses(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, model, behavior) =
        match prepare(&shared, Flavor::OpenAi, &headers, &body, None).await {
            Ok(prepared) => prepared,
            Err(response) => return response,
        };
    let n = shared.next_id();
    let id = format!("resp_mock_{n}");
    let max = body.get("max_output_tokens").and_then(Value::as_u64);
    let output_tokens = behavior.completion_tokens(max);
    let tool = chosen_tool(&body);
    let truncated = tool.is_none() && behavior.truncated(max);
    let input_tokens = prompt_tokens(&body) + behavior.cache_read;
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": behavior.cache_read},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + u64::from(output_tokens),
    });
    let item_id = format!("msg_mock_{n}");
    let (added, done) = match &tool {
        Some(name) => (
            json!({"type": "function_call", "id": format!("fc_mock_{n}"), "call_id": format!("call_mock_{n}"),
                "name": name, "arguments": "", "status": "in_progress"}),
            json!({"type": "function_call", "id": format!("fc_mock_{n}"), "call_id": format!("call_mock_{n}"),
                "name": name, "arguments": TOOL_ARGUMENTS.concat(), "status": "completed"}),
        ),
        None => {
            let text: String = (0..output_tokens).map(piece).collect();
            (
                json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}),
                json!({"type": "message", "id": item_id, "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}),
            )
        }
    };
    let status = if truncated { "incomplete" } else { "completed" };
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": unix_now(), "status": status,
            "model": model, "output": output, "usage": usage, "error": null,
            "incomplete_details": if truncated && status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "previous_response_id": body.get("previous_response_id").cloned().unwrap_or(Value::Null),
            "tools": body.get("tools").cloned().unwrap_or(json!([])), "parallel_tool_calls": true,
            "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto"))})
    };
    let finished = response(status, json!([done.clone()]), usage.clone());
    if body.get("store").and_then(Value::as_bool) != Some(false) {
        shared.lock_stored().insert(
            id.clone(),
            (
                finished.clone(),
                body.get("input").cloned().unwrap_or(Value::Null),
            ),
        );
    }
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return Json(finished).into_response();
    }

    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut push = |name: &str, mut data: Value| {
        data["type"] = name.into();
        data["sequence_number"] = seq.into();
        seq += 1;
        events.push(named(name, &data));
    };
    push(
        "response.created",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.in_progress",
        json!({"response": response("in_progress", json!([]), Value::Null)}),
    );
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": added}),
    );
    match &tool {
        Some(_) => {
            let fc = format!("fc_mock_{n}");
            for part in TOOL_ARGUMENTS {
                push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": fc, "output_index": 0, "delta": part}),
                );
            }
            push(
                "response.function_call_arguments.done",
                json!({"item_id": fc, "output_index": 0, "arguments": TOOL_ARGUMENTS.concat()}),
            );
        }
        None => {
            push(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for i in 0..output_tokens {
                push(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0,
                    "content_index": 0, "delta": piece(i), "logprobs": []}),
                );
            }
            let text: String = (0..output_tokens).map(piece).collect();
            push(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0,
                "content_index": 0, "text": text, "logprobs": []}),
            );
            push(
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                "part": {"type": "output_text", "text": text, "annotations": []}}),
            );
        }
    }
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done}),
    );
    push(&format!("response.{status}"), json!({"response": finished}));
    let error = named(
        "error",
        &json!({"type": "error", "code": "server_error", "message": "mock: injected mid-stream error", "param": null, "sequence_number": seq}),
    );
    sse_response(events, error, &behavior)
}

impl Shared {
    fn lock_stored(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Value, Value)>> {
        self.stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn missing(id: &str) -> Response {
    error_response(
        Flavor::OpenAi,
        http::StatusCode::NOT_FOUND,
        &format!("mock: no response with id '{id}'"),
        None,
    )
}

pub async fn retrieve(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.lock_stored().get(&id) {
        Some((response, _)) => Json(response.clone()).into_response(),
        None => missing(&id),
    }
}

pub async fn delete(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.lock_stored().remove(&id) {
        Some(_) => Json(json!({"id": id, "object": "response", "deleted": true})).into_response(),
        None => missing(&id),
    }
}

pub async fn input_items(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some((_, input)) = shared.lock_stored().get(&id).cloned() else {
        return missing(&id);
    };
    let items = match input {
        Value::String(text) => vec![
            json!({"type": "message", "id": format!("msg_in_{id}"), "role": "user",
            "content": [{"type": "input_text", "text": text}]}),
        ],
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    let first = items
        .first()
        .and_then(|i| i.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let last = items
        .last()
        .and_then(|i| i.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    Json(json!({"object": "list", "data": items, "first_id": first, "last_id": last, "has_more": false}))
        .into_response()
}

/// Only background responses can be cancelled; the mock makes none.
pub async fn cancel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if !shared.lock_stored().contains_key(&id) {
        return missing(&id);
    }
    error_response(
        Flavor::OpenAi,
        http::StatusCode::BAD_REQUEST,
        "mock: only background responses can be cancelled",
        None,
    )
}
