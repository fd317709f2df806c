//! `GET /api/v1/alerts`: budget alerts fired in an org (each threshold once per budget
//! period), newest first, with where each webhook delivery stands. Seen like usage
//! ([`Principal::usage_view`]): org-wide roles all of them, team admins their teams',
//! members those on budgets of keys they own.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::Page;
use crate::store::alerts::{self, Alert};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_alerts))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// The org whose alerts to list.
    #[param(required = true, value_type = String, format = Uuid)]
    pub org_id: Option<String>,
    /// Items per page, 1–200 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<String>,
}

fn invalid(errors: &mut Vec<FieldError>, field: &str, message: &str) {
    errors.push(FieldError {
        field: field.into(),
        message: message.into(),
    });
}

/// `Some(None)` when absent, `None` (and an error) when not a UUID.
fn uuid_param(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
) -> Option<Option<Uuid>> {
    match value.map(Uuid::parse_str) {
        None => Some(None),
        Some(Ok(id)) => Some(Some(id)),
        Some(Err(_)) => {
            invalid(errors, field, "must be a UUID");
            None
        }
    }
}

#[utoipa::path(get, path = "/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = Page<Alert>), (status = 400, description = "Malformed query"),
        (status = 401), (status = 404), (status = 422)))]
async fn list_alerts(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AlertQuery>,
) -> Result<Json<Page<Alert>>, ApiError> {
    let mut errors = Vec::new();
    if q.org_id.is_none() {
        invalid(&mut errors, "org_id", "required");
    }
    let org = uuid_param(&mut errors, "org_id", q.org_id.as_deref());
    let cursor = uuid_param(&mut errors, "cursor", q.cursor.as_deref());
    let limit = match q.limit.as_deref().map(str::parse::<i64>) {
        None => Some(50),
        Some(Ok(n)) if (1..=200).contains(&n) => Some(n),
        Some(_) => {
            invalid(&mut errors, "limit", "an integer between 1 and 200");
            None
        }
    };
    let (Some(Some(org_id)), Some(cursor), Some(limit)) = (org, cursor, limit) else {
        return Err(ApiError::invalid(errors));
    };
    require(&principal, Permission::ReadOrg(org_id))?;
    let rows = alerts::list(
        &state.pool,
        org_id,
        &principal.usage_view(org_id),
        cursor,
        limit,
    )
    .await?;
    Ok(Json(Page::from_rows(rows, limit, |a| a.alert.id)))
}
