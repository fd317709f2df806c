//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use http::StatusCode;

use crate::gateway::Gateway;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready once a snapshot is loaded (version > 0) and the budget ledger is reachable, and
/// until a shutdown begins.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    if gw.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down".to_owned(),
        );
    }
    let version = gw.live.version();
    if version == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no config loaded".to_owned(),
        );
    }
    if !gw.ledger.healthy() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: budget ledger (Redis) unreachable".to_owned(),
        );
    }
    (StatusCode::OK, format!("ready: config version {version}"))
}

pub async fn metrics(State(gw): State<Arc<Gateway>>) -> impl IntoResponse {
    metrics::gauge!("tollgate_config_version").set(gw.live.version() as f64);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
}
