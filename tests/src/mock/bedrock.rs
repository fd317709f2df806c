//! AWS Bedrock's Converse API as documented: `POST /model/{modelId}/converse` (JSON) and
//! `/model/{modelId}/converse-stream` (`application/vnd.amazon.eventstream`: binary
//! frames with CRCs, `:event-type` messageStart, contentBlockStart/Delta/Stop,
//! messageStop, metadata with usage; exceptions as `:message-type: exception`). Errors
//! are `{"message": …}` with `x-amzn-errortype`. Requests must be SigV4-signed for the
//! `bedrock` service; with `require_key` set, for that access key id.

use std::sync::Arc;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::stream::sse_response;
use super::{Flavor, Shared, TOOL_ARGUMENTS, error_response, piece, prepare, prompt_tokens};

pub async fn converse(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&shared, &model, &headers, &body, false).await
}

pub async fn converse_stream(
    State(shared): State<Arc<Shared>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(&shared, &model, &headers, &body, true).await
}

/// A SigV4 `authorization` header for the `bedrock` service (and the expected key).
fn signed(shared: &Shared, headers: &HeaderMap) -> bool {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(credential) = authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split(',').next())
    else {
        return false;
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let key_ok = shared
        .options
        .require_key
        .as_deref()
        .is_none_or(|key| parts.first() == Some(&key));
    key_ok
        && parts.len() == 5
        && parts[3] == "bedrock"
        && parts[4] == "aws4_request"
        && authorization.contains("Signature=")
        && headers.contains_key("x-amz-date")
}

fn event(kind: &str, payload: &Value) -> Bytes {
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for messages this small.
    let _ = write_message_to(&message, &mut out);
    Bytes::from(out)
}

async fn answer(
    shared: &Shared,
    model: &str,
    headers: &HeaderMap,
    body: &[u8],
    stream: bool,
) -> Response {
    if !signed(shared, headers) {
        return error_response(
            Flavor::Aws,
            StatusCode::FORBIDDEN,
            "mock: The request signature we calculated does not match the signature you provided.",
            None,
        );
    }
    let (body, _model, behavior) =
        match prepare(shared, Flavor::Aws, headers, body, Some(model)).await {
            Ok(prepared) => prepared,
            Err(response) => return response,
        };
    if body
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        return error_response(
            Flavor::Aws,
            StatusCode::BAD_REQUEST,
            "mock: messages must not be empty",
            None,
        );
    }
    let cap = body
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let completion = behavior.completion_tokens(cap);
    let tool = body
        .pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let tool = body
        .pointer("/toolConfig/toolChoice/tool/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(tool);
    let stop = match (&tool, behavior.truncated(cap)) {
        (Some(_), _) => "tool_use",
        (None, true) => "max_tokens",
        (None, false) => "end_turn",
    };
    let input = prompt_tokens(&body);
    // Claude's reasoning on Bedrock is counted in `outputTokens`.
    let output = u64::from(completion) + behavior.thinking_tokens(cap, completion);
    let usage = json!({
        "inputTokens": input,
        "outputTokens": output,
        "totalTokens": input + output + behavior.cache_read + behavior.cache_write,
        "cacheReadInputTokens": behavior.cache_read,
        "cacheWriteInputTokens": behavior.cache_write,
    });
    let tool_id = format!("tooluse_mock_{}", shared.next_id());
    if !stream {
        let content = match &tool {
            Some(name) => {
                json!([{"toolUse": {"toolUseId": tool_id, "name": name, "input": {"ok": true}}}])
            }
            None => json!([{"text": (0..completion).map(piece).collect::<String>()}]),
        };
        let mut answer = json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "metrics": {"latencyMs": 1},
        });
        if behavior.usage {
            answer["usage"] = usage;
        }
        return Json(answer).into_response();
    }
    let mut events = vec![event("messageStart", &json!({"role": "assistant"}))];
    match &tool {
        Some(name) => {
            events.push(event(
                "contentBlockStart",
                &json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": tool_id, "name": name}}}),
            ));
            for part in TOOL_ARGUMENTS {
                events.push(event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": part}}}),
                ));
            }
        }
        None => {
            for i in 0..completion {
                events.push(event(
                    "contentBlockDelta",
                    &json!({"contentBlockIndex": 0, "delta": {"text": piece(i)}}),
                ));
            }
        }
    }
    events.push(event("contentBlockStop", &json!({"contentBlockIndex": 0})));
    events.push(event("messageStop", &json!({"stopReason": stop})));
    if behavior.usage {
        events.push(event(
            "metadata",
            &json!({"usage": usage, "metrics": {"latencyMs": 1}}),
        ));
    }
    let exception = Message::new(Bytes::from(
        json!({"message": "mock: injected mid-stream error"}).to_string(),
    ))
    .add_header(Header::new(
        ":message-type",
        HeaderValue::String("exception".into()),
    ))
    .add_header(Header::new(
        ":exception-type",
        HeaderValue::String("modelStreamErrorException".into()),
    ));
    let mut error = Vec::new();
    let _ = write_message_to(&exception, &mut error);
    let mut response = sse_response(events, Bytes::from(error), &behavior);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    response
}

/// AWS's JSON error: `{"message": …}`; the type travels in `x-amzn-errortype`.
pub fn error_parts(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "ValidationException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}
