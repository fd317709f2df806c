//! `GET /api/v1/audit`: the audit log, newest first, filtered to the orgs the caller can
//! see. There is deliberately no route that changes or deletes entries.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::store::audit::AuditEntry;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this org's entries.
    pub org_id: Option<Uuid>,
    /// `create`, `update` or `delete`.
    pub action: Option<String>,
    /// `org`, `team`, `membership`, ...
    pub object_type: Option<String>,
    /// Entries older than this id (the last id of the previous page).
    pub before_id: Option<i64>,
    /// 1–500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<AuditEntry>), (status = 401), (status = 404), (status = 422)))]
async fn list_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let filter = crate::service::audit::AuditFilter {
        org_id: q.org_id,
        action: q.action,
        object_type: q.object_type,
        before_id: q.before_id,
    };
    Ok(Json(
        crate::service::audit::list(&state, &principal, &filter, q.limit.unwrap_or(100)).await?,
    ))
}
