//! Liveness and readiness, outside `/api/v1`: probes carry no token.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::store::{self, Pool};

#[derive(Clone)]
struct Health {
    pool: Pool,
    stopping: CancellationToken,
}

/// `/healthz` (the process answers) and `/readyz` (it can reach Postgres and is not
/// shutting down — a load balancer should send it API calls).
pub fn router(pool: Pool, stopping: CancellationToken) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Health { pool, stopping })
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    if health.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: shutting down");
    }
    match store::ping(&health.pool).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the database is unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: database unreachable",
            )
        }
    }
}
