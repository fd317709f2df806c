//! `/api/v1/orgs/{org_id}/budgets`: spend caps per org, team, project or key and period.
//! Org admins set org and team budgets; team admins set their projects' and keys' budgets
//! ([`super::scope`]). The hierarchy org ≥ team ≥ project ≥ key is checked per period on
//! create and on every change of an amount — a budget cannot exceed one that encloses it,
//! nor go below one it contains — and refused (422), or with `[budgets] hierarchy = "warn"`
//! written with a `Warning` header.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::validate::{Body, Checks};
use super::{AppState, scope};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::config::HierarchyPolicy;
use crate::store::audit;
use crate::store::budgets::{self, Budget};

pub use crate::service::budgets::NewBudget;
use crate::service::budgets::{check_amounts, json, violation};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_budget, list_budgets))
        .routes(routes!(get_budget, update_budget, delete_budget))
}

/// Absent fields keep their value.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetUpdate {
    /// Micro-USD; checked against the hierarchy again.
    #[schema(minimum = 0)]
    pub amount_micros: Option<i64>,
    /// Percentages at which alerts fire (1–100).
    pub alert_thresholds_pct: Option<Vec<i32>>,
    pub clamp: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BudgetQuery {
    /// Only budgets of this kind of scope: `org`, `team`, `project` or `key`.
    pub scope_kind: Option<String>,
    /// Only the budgets of this org, team, project or key.
    pub scope_id: Option<Uuid>,
}

/// 422 under the `error` policy; otherwise the `Warning` header to answer with.
fn judge(policy: HierarchyPolicy, violation: Option<String>) -> Result<HeaderMap, ApiError> {
    warning_header(crate::service::budgets::judge(policy, violation)?)
}

fn warning_header(warning: Option<String>) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::new();
    if let Some(value) =
        warning.and_then(|w| HeaderValue::from_str(&format!("199 tollgate \"{w}\"")).ok())
    {
        headers.insert(http::header::WARNING, value);
    }
    Ok(headers)
}

#[utoipa::path(post, path = "/orgs/{org_id}/budgets", tag = "budgets", params(("org_id" = Uuid, Path)), request_body = NewBudget,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Budget), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewBudget>, ApiError>,
) -> Result<(StatusCode, HeaderMap, Json<Budget>), ApiError> {
    // Another org's caller learns nothing, not even that its body was malformed.
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    let written = crate::service::budgets::create(&state, &principal, org_id, &new).await?;
    Ok((
        StatusCode::CREATED,
        warning_header(written.warning)?,
        Json(written.budget),
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}/budgets", tag = "budgets", params(("org_id" = Uuid, Path), BudgetQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Budget>), (status = 401), (status = 404), (status = 422)))]
async fn list_budgets(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    Query(q): Query<BudgetQuery>,
) -> Result<Json<Vec<Budget>>, ApiError> {
    Ok(Json(
        crate::service::budgets::list(
            &state,
            &principal,
            org_id,
            q.scope_kind.as_deref(),
            q.scope_id,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}/budgets/{budget_id}", tag = "budgets",
    params(("org_id" = Uuid, Path), ("budget_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Budget), (status = 401), (status = 404)))]
async fn get_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, budget_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Budget>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    Ok(Json(budgets::get(&state.pool, org_id, budget_id).await?))
}

/// Change a budget's amount, alert thresholds or clamp (whoever may create it). A new
/// amount is checked against the hierarchy like a new budget.
#[utoipa::path(patch, path = "/orgs/{org_id}/budgets/{budget_id}", tag = "budgets",
    params(("org_id" = Uuid, Path), ("budget_id" = Uuid, Path)), request_body = BudgetUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Budget), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, budget_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<BudgetUpdate>, ApiError>,
) -> Result<(HeaderMap, Json<Budget>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(update) = body?;
    check_amounts(
        Checks::default(),
        update.amount_micros,
        update.alert_thresholds_pct.as_deref(),
    )
    .done()?;
    let current = budgets::get(&state.pool, org_id, budget_id).await?;
    scope::require_admin_of_existing(
        &state.pool,
        &principal,
        org_id,
        &current.scope_kind,
        current.scope_id,
    )
    .await?;
    let mut tx = state.pool.begin().await?;
    let around = budgets::neighbours(
        &mut tx,
        org_id,
        &current.scope_kind,
        current.scope_id,
        &current.period,
    )
    .await?;
    let before = budgets::get_for_update(&mut tx, org_id, budget_id).await?;
    let amount = update.amount_micros.unwrap_or(before.amount_micros);
    let headers = judge(state.hierarchy, violation(around, amount))?;
    let after = budgets::update(
        &mut tx,
        org_id,
        budget_id,
        amount,
        update
            .alert_thresholds_pct
            .as_deref()
            .unwrap_or(&before.alert_thresholds_pct),
        update.clamp.unwrap_or(before.clamp),
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "budget",
        &budget_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok((headers, Json(after)))
}

/// Remove a budget (org admins).
#[utoipa::path(delete, path = "/orgs/{org_id}/budgets/{budget_id}", tag = "budgets",
    params(("org_id" = Uuid, Path), ("budget_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, budget_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let mut tx = state.pool.begin().await?;
    let before = budgets::delete(&mut tx, org_id, budget_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "budget",
        &budget_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
