//! OpenAI-shaped endpoints (and Azure OpenAI's deployment-scoped paths, which carry the
//! model in the URL and insist on `api-version`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stream::{data, sse_response};
use super::{
    Behavior, Flavor, Shared, TOOL_ARGUMENTS, chosen_tool, error_response, piece, prepare,
    prompt_tokens, unix_now,
};

/// Models `GET /v1/models` lists; any other name works as well.
pub const MODELS: &[&str] = &[
    "mock-gpt-4o",
    "mock-gpt-4o-mini",
    "mock-embedding",
    "mock-claude",
];

/// Dimensions of a mock embedding unless the request asks for `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 8;

#[derive(Debug, Deserialize)]
pub struct AzureQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

pub async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    chat_inner(&shared, &headers, &body, None).await
}

pub async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    completions_inner(&shared, &headers, &body, None).await
}

pub async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    embeddings_inner(&shared, &headers, &body, None).await
}

pub async fn azure_chat(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    Query(query): Query<AzureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(missing) = missing_api_version(&query) {
        return missing;
    }
    chat_inner(&shared, &headers, &body, Some(&deployment)).await
}

pub async fn azure_completions(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    Query(query): Query<AzureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(missing) = missing_api_version(&query) {
        return missing;
    }
    completions_inner(&shared, &headers, &body, Some(&deployment)).await
}

pub async fn azure_embeddings(
    State(shared): State<Arc<Shared>>,
    Path(deployment): Path<String>,
    Query(query): Query<AzureQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(missing) = missing_api_version(&query) {
        return missing;
    }
    embeddings_inner(&shared, &headers, &body, Some(&deployment)).await
}

/// Azure refuses calls without `api-version`; `Some` is that refusal.
fn missing_api_version(query: &AzureQuery) -> Option<Response> {
    match query.api_version.as_deref() {
        Some(v) if !v.is_empty() => None,
        _ => Some(error_response(
            Flavor::OpenAi,
            StatusCode::BAD_REQUEST,
            "mock: missing required query parameter api-version",
            Some("api-version"),
        )),
    }
}

pub async fn models() -> Json<Value> {
    let data: Vec<Value> = MODELS
        .iter()
        .map(
            |id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}),
        )
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// What every OpenAI completion-style answer shares.
struct Answer {
    id: u64,
    created: u64,
    model: String,
    prompt_tokens: u64,
    completion: u32,
    /// Reasoning tokens, billed inside `completion_tokens` as OpenAI reports them.
    reasoning: u64,
    finish_reason: &'static str,
    behavior: Behavior,
}

impl Answer {
    fn new(shared: &Shared, body: &Value, model: String, behavior: Behavior) -> Self {
        let max_tokens = body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Value::as_u64);
        Self {
            id: shared.next_id(),
            created: unix_now(),
            model,
            prompt_tokens: prompt_tokens(body) + behavior.cache_read,
            completion: behavior.completion_tokens(max_tokens),
            reasoning: behavior.thinking_tokens(max_tokens, behavior.completion_tokens(max_tokens)),
            finish_reason: if behavior.truncated(max_tokens) {
                "length"
            } else {
                "stop"
            },
            behavior,
        }
    }

    fn text(&self) -> String {
        (0..self.completion).map(piece).collect()
    }

    fn usage(&self) -> Value {
        let completion = u64::from(self.completion) + self.reasoning;
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.behavior.cache_read},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        })
    }

    fn mid_stream_error() -> Bytes {
        data(&json!({"error": {
            "message": "mock: injected mid-stream error",
            "type": "server_error", "param": null, "code": null,
        }}))
    }
}

async fn chat_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    model: Option<&str>,
) -> Response {
    let (body, model, behavior) = match prepare(shared, Flavor::OpenAi, headers, body, model).await
    {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return error_response(
            Flavor::OpenAi,
            StatusCode::BAD_REQUEST,
            "mock: `messages` must be a non-empty array",
            Some("messages"),
        );
    }
    let tool = chosen_tool(&body, Flavor::OpenAi);
    let mut answer = Answer::new(shared, &body, model, behavior);
    if tool.is_some() {
        answer.finish_reason = "tool_calls";
    }
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    if !streaming {
        let message = match &tool {
            Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_mock_{}", answer.id), "type": "function",
                "function": {"name": name, "arguments": TOOL_ARGUMENTS.concat()},
            }]}),
            None => json!({"role": "assistant", "content": answer.text(), "refusal": null}),
        };
        let mut response = json!({
            "id": format!("chatcmpl-mock-{}", answer.id),
            "object": "chat.completion",
            "created": answer.created,
            "model": answer.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": answer.finish_reason}],
            "system_fingerprint": "fp_mock",
        });
        if answer.behavior.usage {
            response["usage"] = answer.usage();
        }
        return Json(response).into_response();
    }

    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({
            "id": format!("chatcmpl-mock-{}", answer.id),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        data(&chunk)
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match &tool {
        Some(name) => {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": format!("call_mock_{}", answer.id), "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for part in TOOL_ARGUMENTS {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
        }
        None => {
            for i in 0..answer.completion {
                events.push(chunk(json!({"content": piece(i)}), Value::Null));
            }
        }
    }
    events.push(chunk(json!({}), json!(answer.finish_reason)));
    if include_usage && answer.behavior.usage {
        events.push(data(&json!({
            "id": format!("chatcmpl-mock-{}", answer.id),
            "object": "chat.completion.chunk",
            "created": answer.created,
            "model": answer.model,
            "system_fingerprint": "fp_mock",
            "choices": [],
            "usage": answer.usage(),
        })));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(events, Answer::mid_stream_error(), &answer.behavior)
}

async fn completions_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    model: Option<&str>,
) -> Response {
    let (body, model, behavior) = match prepare(shared, Flavor::OpenAi, headers, body, model).await
    {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    if body.get("prompt").is_none() {
        return error_response(
            Flavor::OpenAi,
            StatusCode::BAD_REQUEST,
            "mock: `prompt` is required",
            Some("prompt"),
        );
    }
    let answer = Answer::new(shared, &body, model, behavior);
    let streaming = body.get("stream").and_then(Value::as_bool) == Some(true);
    let id = format!("cmpl-mock-{}", answer.id);
    if !streaming {
        let mut response = json!({
            "id": id, "object": "text_completion", "created": answer.created, "model": answer.model,
            "choices": [{"text": answer.text(), "index": 0, "logprobs": null, "finish_reason": answer.finish_reason}],
        });
        if answer.behavior.usage {
            response["usage"] = answer.usage();
        }
        return Json(response).into_response();
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |text: String, finish: Value| {
        data(&json!({
            "id": id, "object": "text_completion", "created": answer.created, "model": answer.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        }))
    };
    let mut events: Vec<Bytes> = (0..answer.completion)
        .map(|i| chunk(piece(i), Value::Null))
        .collect();
    events.push(chunk(String::new(), json!(answer.finish_reason)));
    if include_usage && answer.behavior.usage {
        events.push(data(&json!({
            "id": id, "object": "text_completion", "created": answer.created, "model": answer.model,
            "choices": [], "usage": answer.usage(),
        })));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse_response(events, Answer::mid_stream_error(), &answer.behavior)
}

async fn embeddings_inner(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    model: Option<&str>,
) -> Response {
    let (body, model, behavior) = match prepare(shared, Flavor::OpenAi, headers, body, model).await
    {
        Ok(prepared) => prepared,
        Err(response) => return response,
    };
    let bad = |message: &str, param: &str| {
        error_response(
            Flavor::OpenAi,
            StatusCode::BAD_REQUEST,
            message,
            Some(param),
        )
    };
    // One embedding per string / per token-id array; a lone string or id array is one.
    let inputs = match body.get("input") {
        Some(Value::String(_)) => 1,
        Some(Value::Array(items)) if items.is_empty() => {
            return bad("mock: `input` must not be empty", "input");
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => 1,
        Some(Value::Array(items)) => items.len(),
        _ => return bad("mock: `input` must be a string or an array", "input"),
    };
    let dimensions = match body.get("dimensions") {
        None => DEFAULT_DIMENSIONS,
        Some(d) => match d.as_u64().and_then(|d| usize::try_from(d).ok()) {
            Some(d) if (1..=4096).contains(&d) => d,
            _ => {
                return bad(
                    "mock: `dimensions` must be between 1 and 4096",
                    "dimensions",
                );
            }
        },
    };
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return bad(
                "mock: `encoding_format` must be float or base64",
                "encoding_format",
            );
        }
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| {
            let vector = embedding(index, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = prompt_tokens(&body);
    let mut response = json!({"object": "list", "data": data, "model": model});
    if behavior.usage {
        response["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    Json(response).into_response()
}

/// A deterministic vector for the index-th input, so tests can compare values.
pub fn embedding(index: usize, dimensions: usize) -> Vec<f32> {
    (0..dimensions)
        .map(|j| ((index * 31 + j * 7) % 100) as f32 / 100.0)
        .collect()
}
