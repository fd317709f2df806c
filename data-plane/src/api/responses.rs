//! `POST /v1/responses`: OpenAI's Responses API, metered like chat (see
//! [`crate::lanes::responses`]). Errors are OpenAI's, as on every OpenAI endpoint.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use serde_json::json;

use super::RequestId;
use super::error::GatewayError;
use super::lane::{self, Lane};
use crate::gateway::Gateway;
use crate::lanes::frames::Frame;
use crate::providers::{Endpoint, ProviderError};

const LANE: Lane = Lane {
    endpoint: Endpoint::Responses,
    error: GatewayError::into_response,
    stream_error,
};

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    lane::handle(gw, LANE, id, headers, body).await
}

/// The Responses API's in-band `error` event, which the OpenAI SDKs raise on.
fn stream_error(error: &ProviderError) -> Bytes {
    let body = json!({"type": "error", "code": "upstream_error", "param": null,
        "message": format!("The provider's stream failed: {error}")});
    Frame::encode("error", &body.to_string())
}
