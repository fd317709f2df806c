//! `/api/v1/orgs/{org_id}/rate-limits`: requests/min, tokens/min and requests in flight
//! per org, team, project or key — one set per scope (409 for a second). Who may set one
//! follows the scope, as for budgets ([`super::scope`]); anyone in the org reads them.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::idempotent::Idempotency;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, page_limit, scope};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::rate_limits::{self, Limits, RateLimit};
use crate::store::{Page, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rate_limit, list_rate_limits))
        .routes(routes!(
            get_rate_limit,
            update_rate_limit,
            delete_rate_limit
        ))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRateLimit {
    /// `org`, `team`, `project` or `key`.
    #[schema(pattern = "^(org|team|project|key)$")]
    pub scope_kind: String,
    /// The org's, team's, project's or key's id.
    pub scope_id: Uuid,
    /// Requests per minute.
    #[schema(minimum = 0)]
    pub rpm: Option<i32>,
    /// Tokens (prompt + completion) per minute.
    #[schema(minimum = 0)]
    pub tpm: Option<i64>,
    /// Requests in flight at once.
    #[schema(minimum = 0)]
    pub max_concurrent: Option<i32>,
}

/// Absent fields keep their value; `null` lifts that limit (one must remain).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitUpdate {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub rpm: Option<Option<i32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub tpm: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>, minimum = 0)]
    pub max_concurrent: Option<Option<i32>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RateLimitQuery {
    /// Only limits of this kind of scope: `org`, `team`, `project` or `key`.
    pub scope_kind: Option<String>,
    /// Only the limit of this org, team, project or key.
    pub scope_id: Option<Uuid>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

fn json(rate_limit: &RateLimit) -> serde_json::Value {
    serde_json::to_value(rate_limit).unwrap_or_default()
}

fn check_limits(checks: Checks, limits: Limits) -> Checks {
    checks
        .at_least("rpm", limits.rpm, 0)
        .at_least("tpm", limits.tpm, 0)
        .at_least("max_concurrent", limits.max_concurrent, 0)
        .check(
            limits.rpm.is_some() || limits.tpm.is_some() || limits.max_concurrent.is_some(),
            "body",
            "set at least one of rpm, tpm and max_concurrent",
        )
}

/// Set a scope's rate limit (org admins for the org and its teams; team admins for their
/// projects and keys). Send `Idempotency-Key` to make retries safe.
#[utoipa::path(post, path = "/orgs/{org_id}/rate-limits", tag = "rate-limits", params(("org_id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    request_body = NewRateLimit,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = RateLimit), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_rate_limit(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Body<NewRateLimit>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    let limits = Limits {
        rpm: new.rpm,
        tpm: new.tpm,
        max_concurrent: new.max_concurrent,
    };
    let checks = Checks::default().one_of("scope_kind", &new.scope_kind, scope::KINDS);
    check_limits(checks, limits).done()?;
    scope::require_admin(
        &state.pool,
        &principal,
        org_id,
        &new.scope_kind,
        new.scope_id,
    )
    .await?;
    let idempotency = Idempotency::from_request(&headers, "rate-limits", Some(org_id), &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let rate_limit =
        rate_limits::create(&mut tx, org_id, &new.scope_kind, new.scope_id, limits).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "rate_limit",
        &rate_limit.id.to_string(),
        None,
        Some(json(&rate_limit)),
    )
    .await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&rate_limit))
        .await?;
    tx.commit().await?;
    Ok(response)
}

#[utoipa::path(get, path = "/orgs/{org_id}/rate-limits", tag = "rate-limits", params(("org_id" = Uuid, Path), RateLimitQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<RateLimit>), (status = 401), (status = 404), (status = 422)))]
async fn list_rate_limits(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    Query(q): Query<RateLimitQuery>,
) -> Result<Json<Page<RateLimit>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    let limit = page_limit(q.limit)?;
    if let Some(kind) = &q.scope_kind {
        Checks::default()
            .one_of("scope_kind", kind, scope::KINDS)
            .done()?;
    }
    Ok(Json(
        rate_limits::list(
            &state.pool,
            org_id,
            q.scope_kind.as_deref(),
            q.scope_id,
            q.cursor,
            limit,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}/rate-limits/{rate_limit_id}", tag = "rate-limits",
    params(("org_id" = Uuid, Path), ("rate_limit_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = RateLimit), (status = 401), (status = 404)))]
async fn get_rate_limit(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, rate_limit_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<RateLimit>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    Ok(Json(
        rate_limits::get(&state.pool, org_id, rate_limit_id).await?,
    ))
}

/// Change a rate limit (whoever may set it).
#[utoipa::path(patch, path = "/orgs/{org_id}/rate-limits/{rate_limit_id}", tag = "rate-limits",
    params(("org_id" = Uuid, Path), ("rate_limit_id" = Uuid, Path)), request_body = RateLimitUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = RateLimit), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_rate_limit(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, rate_limit_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<RateLimitUpdate>, ApiError>,
) -> Result<Json<RateLimit>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(update) = body?;
    let current = rate_limits::get(&state.pool, org_id, rate_limit_id).await?;
    scope::require_admin_of_existing(
        &state.pool,
        &principal,
        org_id,
        &current.scope_kind,
        current.scope_id,
    )
    .await?;
    let mut tx = state.pool.begin().await?;
    let before = rate_limits::get_for_update(&mut tx, org_id, rate_limit_id).await?;
    let limits = Limits {
        rpm: update.rpm.unwrap_or(before.limits.rpm),
        tpm: update.tpm.unwrap_or(before.limits.tpm),
        max_concurrent: update
            .max_concurrent
            .unwrap_or(before.limits.max_concurrent),
    };
    check_limits(Checks::default(), limits).done()?;
    let after = rate_limits::update(&mut tx, org_id, rate_limit_id, limits).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "rate_limit",
        &rate_limit_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Remove a rate limit (whoever may set it).
#[utoipa::path(delete, path = "/orgs/{org_id}/rate-limits/{rate_limit_id}", tag = "rate-limits",
    params(("org_id" = Uuid, Path), ("rate_limit_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_rate_limit(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, rate_limit_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let current = rate_limits::get(&state.pool, org_id, rate_limit_id).await?;
    scope::require_admin_of_existing(
        &state.pool,
        &principal,
        org_id,
        &current.scope_kind,
        current.scope_id,
    )
    .await?;
    let mut tx = state.pool.begin().await?;
    let before = rate_limits::delete(&mut tx, org_id, rate_limit_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "rate_limit",
        &rate_limit_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
