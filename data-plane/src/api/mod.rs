//! The gateway's HTTP surface: OpenAI's `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models[/{id}]`, plus `/healthz`, `/readyz` and `/metrics`.
//! Every response carries `x-request-id`; unknown routes answer 404 in OpenAI's shape
//! (nothing is proxied unmetered). Every `/v1` call runs inside a `request` span that
//! carries its `request_id` into logs and, with tracing on, is the call's OpenTelemetry
//! server span (continuing the client's `traceparent`).

pub mod error;
mod health;
mod models;
mod proxy;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::HeaderValue;
use tracing::Instrument;
use tracing::field::Empty;

use crate::gateway::Gateway;
use error::GatewayError;

/// The id of one call: the client's `x-request-id` when it is sane, else a UUIDv7.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{*id}", get(models::show))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|request: Request| async move {
            GatewayError::not_found_route(request.uri().path()).into_response()
        })
        .layer(middleware::from_fn(request_id))
        .with_state(gateway)
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
