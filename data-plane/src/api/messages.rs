//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API,
//! metered like chat (see [`crate::lanes::messages`]). Errors come in Anthropic's shape
//! `{"type": "error", "error": {"type", "message"}}` with the status codes its SDKs map to
//! their exception classes; a refusal of Tollgate's own keeps its code in the message.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, header};
use serde_json::{Value, json};

use super::RequestId;
use super::error::{GatewayError, rate_headers};
use super::lane::{self, Lane};
use super::proxy::call_guard;
use crate::gateway::Gateway;
use crate::lanes::frames::Frame;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::authorize;
use crate::pipeline::limit::{RateInfo, limit};
use crate::pipeline::request::{self, RequestError};
use crate::pipeline::settle::CallGuard;
use crate::providers::{Endpoint, ProviderError};
use crate::snapshot::now_ms;
use crate::tokenize::Counting;

pub const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

const LANE: Lane = Lane {
    endpoint: Endpoint::Messages,
    error: anthropic_error,
    stream_error,
};

pub async fn messages(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    lane::handle(gw, LANE, id, headers, body).await
}

/// Anthropic's error `type` for a status, as its SDKs map them to exception classes.
fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `error` in Anthropic's shape; the status, `Retry-After` and rate headers stay.
pub fn anthropic_error(error: GatewayError) -> Response {
    let mut message = match error.code {
        Some(code) => format!("{} (tollgate: {code})", error.message),
        None => error.message.clone(),
    };
    if let Some(param) = &error.param {
        message = format!("{param}: {message}");
    }
    let body = json!({"type": "error", "error": {
        "type": error_type(error.status.as_u16()), "message": message,
    }});
    let (mut parts, _) = error.into_response().into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body.to_string()))
}

/// Anthropic's in-band `error` event, which its SDKs raise on mid-stream.
fn stream_error(error: &ProviderError) -> Bytes {
    let body = json!({"type": "error", "error": {
        "type": "api_error", "message": format!("The provider's stream failed: {error} (tollgate: upstream_error)"),
    }});
    Frame::encode("error", &body.to_string())
}

/// Counts a request's input tokens without calling any model. It is a call like any
/// other — authenticated, authorized, within the caller's limits — with its usage event
/// (at no cost). The count is the gateway's own estimate for the model, the number its
/// reservations use: an upper bound of what the provider will bill.
pub async fn count_tokens(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut guard = call_guard(&gw, Endpoint::Messages, &id.0, &headers);
    COUNT_TOKENS_PATH.clone_into(&mut guard.event.endpoint);
    match count(&gw, &headers, body, &mut guard).await {
        Ok((tokens, rate)) => {
            guard.first_byte();
            guard.finish(200);
            let mut response = axum::Json(json!({"input_tokens": tokens})).into_response();
            rate_headers(response.headers_mut(), &rate);
            response
        }
        Err(error) => {
            guard.fail(error.status.as_u16(), error.code_str());
            anthropic_error(error)
        }
    }
}

async fn count(
    gw: &Gateway,
    headers: &HeaderMap,
    body: Body,
    guard: &mut CallGuard,
) -> Result<(u64, RateInfo), GatewayError> {
    let bytes = request::read_bytes(body, gw.max_body_bytes).await?;
    // `count_tokens` takes no `max_tokens`; it is otherwise a Messages body.
    let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| RequestError::Invalid {
        message: format!("We could not parse the JSON body of your request: {e}"),
        param: None,
    })?;
    if let Some(body) = value.as_object_mut()
        && !body.contains_key("max_tokens")
    {
        body.insert("max_tokens".into(), 1.into());
    }
    let req = request::parse(value.to_string().as_bytes(), Endpoint::Messages)?;
    guard.requested(&req);
    let snapshot = gw.live.load();
    let now = now_ms();
    let caller = authenticate(&snapshot, headers, gw.pepper(), now)?;
    guard.caller(&caller);
    // The count is the answer here: the tokenizer's, never the bound.
    let grant = authorize(
        &snapshot,
        &caller,
        &req,
        Endpoint::Messages,
        Counting::Exact,
    )?;
    guard.granted(&grant);
    let deadline_ms = gw.lease_deadline_ms(&grant.model, now);
    // A request slot, no tokens: counting generates nothing.
    let (permit, rate) = limit(
        &gw.limiter,
        &gw.ledger,
        &gw.tasks,
        &caller,
        0,
        now,
        deadline_ms,
    )
    .await?;
    guard.hold_permit(permit);
    Ok((grant.estimate.prompt_tokens, rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[tokio::test]
    async fn errors_take_anthropics_shape_and_keep_tollgates_code() {
        let error = GatewayError {
            retry_after: Some(std::time::Duration::from_secs(3)),
            ..GatewayError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                "You exceeded your current quota.",
            )
        };
        let response = anthropic_error(error);
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("(tollgate: insufficient_quota)")
        );
    }

    #[test]
    fn statuses_map_to_the_sdks_exception_types() {
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(403), "permission_error");
        assert_eq!(error_type(404), "not_found_error");
        assert_eq!(error_type(502), "api_error");
        assert_eq!(error_type(529), "overloaded_error");
    }
}
