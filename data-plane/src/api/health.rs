//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;

use crate::gateway::Gateway;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready once a snapshot is loaded (version > 0).
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    let version = gw.live.version();
    if version > 0 {
        (StatusCode::OK, format!("ready: config version {version}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no config loaded".to_owned(),
        )
    }
}

pub async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    metrics::gauge!("tollgate_config_version").set(gw.live.version() as f64);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
}
