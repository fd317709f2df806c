//! `POST /v1/responses`: OpenAI's Responses API, metered like chat (see
//! [`crate::lanes::responses`]), and the stored-response calls (`GET`/`DELETE
//! /v1/responses/{id}`, `POST …/cancel`, `GET …/input_items`), which reach the deployment
//! that created the response through its pin (see [`crate::ledger::pins`]). Errors are
//! OpenAI's, as on every OpenAI endpoint.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::RequestId;
use super::error::GatewayError;
use super::lane::{self, Lane};
use super::proxy::call_guard;
use crate::gateway::Gateway;
use crate::lanes::frames::Frame;
use crate::ledger::pins::PinError;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::{AuthzError, allowed, not_frozen};
use crate::pipeline::limit::limit;
use crate::pipeline::settle::CallGuard;
use crate::providers::{CallCx, Chunk, Endpoint, JsonRequest, ProviderError, TimeoutPhase, send};
use crate::snapshot::{Deployment, ProviderKind, now_ms};

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

/// Pins the response a passthrough call created to the deployment that holds it (a
/// translated response is stored nowhere, so there is nothing to pin). The id is in the
/// JSON body, or in a stream's first event (`response.created`). A pin that cannot be
/// written costs the client its later `GET`, not this answer: logged, not failed.
pub(super) async fn pin(gw: &Gateway, org: &str, deployment: &Deployment, first: Option<&Chunk>) {
    if !passthrough(deployment) {
        return;
    }
    let Some(first) = first else { return };
    let value: Option<Value> = serde_json::from_slice(&first.data)
        .ok()
        .or_else(|| serde_json::from_str(&Frame::parse(first.data.clone()).data).ok());
    let id = value.as_ref().and_then(|v| {
        v.get("id")
            .or_else(|| v.pointer("/response/id"))
            .and_then(Value::as_str)
    });
    let Some(id) = id else { return };
    if let Err(e) = gw.pins.pin(&gw.ledger, org, id, &deployment.id).await {
        tracing::warn!(error = %e, "could not pin a response to its deployment");
    }
}

/// Deployments that keep Responses state themselves (the lane passes through to them).
fn passthrough(deployment: &Deployment) -> bool {
    matches!(
        deployment.provider,
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi
    )
}

/// `previous_response_id` must reach the deployment that created that response: the plan
/// narrows to it. A response the caller's org did not create through Tollgate is not
/// found; one held by a deployment of another model cannot be continued with this one.
pub(super) async fn follow_pin(
    gw: &Gateway,
    org: &str,
    req: &JsonRequest,
    plan: &mut Vec<Arc<Deployment>>,
) -> Result<(), GatewayError> {
    let Some(previous) = req.body.get("previous_response_id").and_then(Value::as_str) else {
        return Ok(());
    };
    if !plan.iter().any(|d| passthrough(d)) {
        // Every deployment translates: the adapter refuses the field by name.
        return Ok(());
    }
    let pinned = gw
        .pins
        .pinned(&gw.ledger, org, previous)
        .await
        .map_err(|e| pins_unavailable(&e))?
        .ok_or_else(|| not_found(previous, "previous_response_id"))?;
    plan.retain(|d| d.id == pinned);
    if plan.is_empty() {
        return Err(GatewayError {
            param: Some("previous_response_id".into()),
            ..GatewayError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("previous_response_other_model"),
                format!(
                    "The response '{previous}' was created by another model's deployment; continue it with that model."
                ),
            )
        });
    }
    Ok(())
}

fn not_found(id: &str, param: &str) -> GatewayError {
    GatewayError {
        param: Some(param.to_owned()),
        ..GatewayError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("response_not_found"),
            format!(
                "No response with id '{id}' was created through Tollgate by your organization (or it has expired)."
            ),
        )
    }
}

fn pins_unavailable(e: &PinError) -> GatewayError {
    tracing::warn!(error = %e, "response pins unavailable");
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        Some("ledger_unavailable"),
        "The gateway cannot look up which deployment holds this response right now. Please retry shortly.",
    )
}

/// One of the stored-response calls: `GET /v1/responses/{id}`, its `DELETE`,
/// `POST /v1/responses/{id}/cancel`, `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Get,
    Delete,
    Cancel,
    InputItems,
}

impl Stored {
    /// The usage event's `endpoint`.
    fn label(self) -> &'static str {
        match self {
            Self::Get => "GET /v1/responses/{id}",
            Self::Delete => "DELETE /v1/responses/{id}",
            Self::Cancel => "POST /v1/responses/{id}/cancel",
            Self::InputItems => "GET /v1/responses/{id}/input_items",
        }
    }
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    stored(&gw, Stored::Get, &request_id, &id, query, &headers).await
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    stored(&gw, Stored::Delete, &request_id, &id, None, &headers).await
}

pub async fn cancel(
    State(gw): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    stored(&gw, Stored::Cancel, &request_id, &id, None, &headers).await
}

pub async fn input_items(
    State(gw): State<Arc<Gateway>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    stored(&gw, Stored::InputItems, &request_id, &id, query, &headers).await
}

/// A stored-response call: authenticated, found through the org's pin, authorized for
/// the model whose deployment holds it, within the caller's request limits, forwarded
/// to that deployment, and emitted as a usage event at no cost (the provider bills
/// nothing for it).
async fn stored(
    gw: &Gateway,
    call: Stored,
    request_id: &RequestId,
    id: &str,
    query: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let mut guard = call_guard(gw, Endpoint::Responses, &request_id.0, headers);
    call.label().clone_into(&mut guard.event.endpoint);
    match stored_call(gw, call, id, query, headers, &mut guard).await {
        Ok(response) => {
            guard.first_byte();
            guard.finish(response.status().as_u16());
            response
        }
        Err(error) => {
            guard.fail(error.status.as_u16(), error.code_str());
            error.into_response()
        }
    }
}

async fn stored_call(
    gw: &Gateway,
    call: Stored,
    id: &str,
    query: Option<String>,
    headers: &HeaderMap,
    guard: &mut CallGuard,
) -> Result<Response, GatewayError> {
    let snapshot = gw.live.load();
    let now = now_ms();
    let caller = authenticate(&snapshot, headers, gw.pepper(), now)?;
    guard.caller(&caller);
    not_frozen(&snapshot, &caller)?;
    let pinned = gw
        .pins
        .pinned(&gw.ledger, &caller.org.id, id)
        .await
        .map_err(|e| pins_unavailable(&e))?
        .ok_or_else(|| not_found(id, "response_id"))?;
    let (model, deployment) = snapshot
        .models
        .values()
        .find_map(|m| {
            m.deployments
                .iter()
                .find(|d| d.id == pinned)
                .map(|d| (m.clone(), d.clone()))
        })
        .ok_or_else(|| not_found(id, "response_id"))?;
    if !allowed(&caller, &model) {
        return Err(AuthzError::NotAllowed(model.name.clone()).into());
    }
    model.name.clone_into(&mut guard.event.model);
    guard.event.deployment_id.clone_from(&deployment.id);
    let deadline_ms = gw.lease_deadline_ms(&model, now);
    let (permit, _rate) = limit(
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

    let http = gw
        .http
        .for_connect_timeout(deployment.timeouts.connect)
        .map_err(|e| GatewayError::from(ProviderError::Transport(e)))?;
    let base = match deployment.provider {
        ProviderKind::AzureOpenAi => format!("{}/openai/v1/responses", deployment.base_url),
        _ => format!("{}/responses", deployment.base_url),
    };
    // The id came back from the pin store, which only holds ids a provider returned;
    // escaping it keeps it one path segment all the same.
    let segment: String = url_segment(id);
    let mut url = match call {
        Stored::Get | Stored::Delete => format!("{base}/{segment}"),
        Stored::Cancel => format!("{base}/{segment}/cancel"),
        Stored::InputItems => format!("{base}/{segment}/input_items"),
    };
    if let Some(query) =
        query.filter(|q| matches!(call, Stored::Get | Stored::InputItems) && !q.is_empty())
    {
        url = format!("{url}?{query}");
    }
    let request = match call {
        Stored::Get | Stored::InputItems => http.get(url),
        Stored::Delete => http.delete(url),
        Stored::Cancel => http.post(url),
    };
    let request = match (&deployment.credential, deployment.provider) {
        (Some(key), ProviderKind::AzureOpenAi) => request.header("api-key", key.expose_secret()),
        (Some(key), _) => request.bearer_auth(key.expose_secret()),
        (None, _) => request,
    };
    let cx = CallCx {
        http: &http,
        deployment: &deployment,
        endpoint: Endpoint::Responses,
        request_id: &guard.event.request_id.clone(),
        traceparent: headers.get("traceparent").and_then(|v| v.to_str().ok()),
    };
    let response = send(request, cx).await.map_err(GatewayError::from)?;
    let status = response.status();
    let body = tokio::time::timeout(deployment.timeouts.total, response.bytes())
        .await
        .map_err(|_| GatewayError::from(ProviderError::Timeout(TimeoutPhase::Completion)))?
        .map_err(|e| GatewayError::from(ProviderError::Transport(e)))?;
    if matches!(call, Stored::Delete)
        && let Err(e) = gw.pins.unpin(&gw.ledger, &caller.org.id, id).await
    {
        tracing::warn!(error = %e, "could not unpin a deleted response");
    }
    let mut answer = Response::new(Body::from(body));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&deployment.id) {
        answer.headers_mut().insert("x-tollgate-deployment", value);
    }
    Ok(answer)
}

/// `id` as one URL path segment.
fn url_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_id_stays_one_path_segment() {
        assert_eq!(url_segment("resp_abc-1.2~"), "resp_abc-1.2~");
        assert_eq!(url_segment("../x?y"), "..%2Fx%3Fy");
    }
}
