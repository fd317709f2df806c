//! `GET /v1/models` and `GET /v1/models/{id}`: only what the caller's key may use.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::{AuthzError, allowed, not_frozen, resolve};
use crate::snapshot::{Model, now_ms};

fn entry(model: &Model, created: i64) -> Value {
    json!({"id": model.name, "object": "model", "created": created / 1000,
        "owned_by": if model.owned_by.is_empty() { "tollgate" } else { &model.owned_by }})
}

pub async fn list(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let snapshot = gw.live.load();
    let caller = match authenticate(&snapshot, &headers, gw.pepper(), now_ms()) {
        Ok(caller) => caller,
        Err(e) => return GatewayError::from(e).into_response(),
    };
    if let Err(e) = not_frozen(&snapshot, &caller) {
        return GatewayError::from(e).into_response();
    }
    let data: Vec<Value> = snapshot
        .model_names
        .iter()
        .filter_map(|name| snapshot.model(name))
        .filter(|model| allowed(&caller, model))
        .map(|model| entry(model, snapshot.generated_at_ms))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn show(
    State(gw): State<Arc<Gateway>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let snapshot = gw.live.load();
    let caller = match authenticate(&snapshot, &headers, gw.pepper(), now_ms()) {
        Ok(caller) => caller,
        Err(e) => return GatewayError::from(e).into_response(),
    };
    if let Err(e) = not_frozen(&snapshot, &caller) {
        return GatewayError::from(e).into_response();
    }
    // A model the key may not use is reported as missing, like OpenAI does.
    match resolve(&snapshot, &caller, &id) {
        Ok(model) => Json(entry(model, snapshot.generated_at_ms)).into_response(),
        Err(_) => GatewayError::from(AuthzError::UnknownModel(id)).into_response(),
    }
}
