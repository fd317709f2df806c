//! The gateway's HTTP surface: OpenAI's `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models[/{id}]`, the lanes — Anthropic's `/v1/messages` (and
//! `/v1/messages/count_tokens`) and OpenAI's `/v1/responses` — plus `/healthz`,
//! `/readyz` and `/metrics`.
//! Every response carries `x-request-id`; unknown routes answer 404 in OpenAI's shape
//! (nothing is proxied unmetered). Every `/v1` call runs inside a `request` span that
//! carries its `request_id` into logs and, with tracing on, is the call's OpenTelemetry
//! server span (continuing the client's `traceparent`).
//!
//! Two layers guard the proxied endpoints before a handler reads anything: [`admit`]
//! refuses a call without a valid key (401) or with a declared body over
//! `server.max_body_bytes` (413) from its headers alone, so an anonymous client cannot
//! make the gateway buffer large bodies; and [`openai_errors`] gives every error answer
//! the framework writes itself (405 for a wrong method, a rejected path) OpenAI's
//! `{"error": {...}}` body, so clients never see an empty or plain-text error.

pub mod error;
mod health;
mod lane;
mod messages;
mod models;
mod proxy;
mod responses;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use tracing::Instrument;
use tracing::field::Empty;

use crate::gateway::Gateway;
use crate::pipeline::authenticate::precheck;
use crate::providers::Endpoint;
use crate::snapshot::now_ms;
use error::GatewayError;

/// The id of one call: the client's `x-request-id` when it is sane, else a UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The API. `with_metrics`: also serve `/metrics` here (false when it has its own
/// listener, `server.metrics_listen`; then `/metrics` is a 404 here).
pub fn router(gateway: Arc<Gateway>, with_metrics: bool) -> Router {
    let mut routes = Router::new()
        .route("/v1/chat/completions", post(proxy::chat))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/messages", post(messages::messages))
        .route(messages::COUNT_TOKENS_PATH, post(messages::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/v1/responses/{id}/cancel", post(responses::cancel))
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::show))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if with_metrics {
        routes = routes.route("/metrics", get(health::metrics));
    }
    routes
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(gateway.clone(), admit))
        .layer(middleware::from_fn(openai_errors))
        .layer(middleware::from_fn(request_id))
        .with_state(gateway)
}

/// `/metrics` alone, for `server.metrics_listen`.
pub fn metrics_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(openai_errors))
        .with_state(gateway)
}

async fn not_found(request: Request) -> Response {
    GatewayError::not_found_route(request.uri().path()).into_response()
}

/// Header-only admission of the proxied endpoints, before any body byte is read: the
/// key must be valid, and a declared `Content-Length` within `server.max_body_bytes`
/// (a body without one is still cut off at the limit while it is read). A refusal is a
/// call like any other: it gets its usage event, as the pipeline would have sent.
async fn admit(State(gw): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let endpoint = match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => Endpoint::Chat,
        (&Method::POST, "/v1/completions") => Endpoint::Completions,
        (&Method::POST, "/v1/embeddings") => Endpoint::Embeddings,
        (&Method::POST, "/v1/messages" | messages::COUNT_TOKENS_PATH) => Endpoint::Messages,
        (&Method::POST, "/v1/responses") => Endpoint::Responses,
        _ => return next.run(request).await,
    };
    let path = request.uri().path().to_owned();
    let refusal = match precheck(&gw.live.load(), request.headers(), gw.pepper(), now_ms()) {
        Err(e) => Some(GatewayError::from(e)),
        Ok(()) => declared_length(request.headers())
            .filter(|length| *length > gw.max_body_bytes as u64)
            .map(|_| {
                GatewayError::from(crate::pipeline::request::RequestError::TooLarge {
                    limit: gw.max_body_bytes,
                })
            }),
    };
    let Some(error) = refusal else {
        return next.run(request).await;
    };
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let mut guard = proxy::call_guard(&gw, endpoint, &request_id, request.headers());
    path.clone_into(&mut guard.event.endpoint);
    guard.fail(error.status.as_u16(), error.code_str());
    drop(guard);
    let mut response = render(&path, error);
    // The body was not read: the connection cannot carry another request.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Error answers the framework wrote (an empty 405, a plain-text extractor rejection)
/// get OpenAI's error body; the gateway's own errors are JSON already and pass as they
/// are, and so do the probes' plain-text answers.
async fn openai_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let typed = response.headers().contains_key(header::CONTENT_TYPE);
    let probe = matches!(path.as_str(), "/healthz" | "/readyz");
    if !(status.is_client_error() || status.is_server_error())
        || (typed && probe)
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Framework errors are short; a 4xx text says what was wrong, a 5xx text is not
    // echoed (it could carry internals).
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty() && status.is_client_error());
    let error = framework_error(status, &method, &path, text);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let rendered = render(&path, error);
    let (rendered_parts, body) = rendered.into_parts();
    parts.headers.extend(rendered_parts.headers);
    Response::from_parts(parts, body)
}

/// An error in the shape the path's clients read: Anthropic's on the Messages lane,
/// OpenAI's everywhere else.
fn render(path: &str, error: GatewayError) -> Response {
    if path.starts_with("/v1/messages") {
        messages::anthropic_error(error)
    } else {
        error.into_response()
    }
}

fn framework_error(
    status: StatusCode,
    method: &Method,
    path: &str,
    text: Option<String>,
) -> GatewayError {
    let (kind, code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "invalid_request_error",
            Some("method_not_allowed"),
            format!("Method {method} is not allowed on {path}."),
        ),
        StatusCode::NOT_FOUND => return GatewayError::not_found_route(path),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "invalid_request_error",
            Some("request_too_large"),
            "The request body is too large.".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "invalid_request_error",
            Some("unsupported_media_type"),
            "The request body must be JSON (Content-Type: application/json).".to_owned(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "invalid_request_error",
            Some("request_timeout"),
            "The request was not received in time.".to_owned(),
        ),
        s if s.is_server_error() => (
            "server_error",
            None,
            "The gateway could not answer this request.".to_owned(),
        ),
        _ => (
            "invalid_request_error",
            None,
            format!("The request was refused ({status})."),
        ),
    };
    GatewayError::new(status, kind, code, text.unwrap_or(message))
}

async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    // Probes and scrapes (/healthz, /readyz, /metrics) get no span: they would drown
    // the calls in logs and traces.
    let span = if request.uri().path().starts_with("/v1/") {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            otel.name = format!("{} {route}", request.method()),
            otel.kind = "server",
            otel.status_code = Empty,
            request_id = %id,
            http.request.method = %request.method(),
            http.route = route,
            http.response.status_code = Empty,
            model = Empty,
            key_id = Empty,
            org_id = Empty,
            team_id = Empty,
            deployment = Empty,
        );
        crate::otel::continue_trace(&span, request.headers());
        span
    } else {
        tracing::Span::none()
    };
    let mut response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
