//! `/api/v1/orgs/{org_id}/budgets`: spend caps per org, team or key and period. Org
//! admins set org and team budgets; team admins set their keys' budgets. The hierarchy is
//! checked per period — a team's budget cannot exceed its org's, a key's cannot exceed its
//! team's, and a parent cannot go below a child — and refused (422), or with
//! `[budgets] hierarchy = "warn"` created with a `Warning` header.

use axum::Json;
use axum::extract::{Path, State};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError};
use super::validate::Checks;
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::config::HierarchyPolicy;
use crate::store::audit;
use crate::store::budgets::{self, Budget};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_budget, list_budgets))
        .routes(routes!(delete_budget))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    /// `org`, `team` or `key`.
    #[schema(pattern = "^(org|team|key)$")]
    pub scope_kind: String,
    /// The org's, team's or key's id.
    pub scope_id: Uuid,
    /// Micro-USD (1 USD = 1,000,000).
    #[schema(minimum = 0)]
    pub amount_micros: i64,
    /// `day`, `week`, `month` (UTC calendar) or `total`.
    #[schema(pattern = "^(day|week|month|total)$")]
    pub period: String,
    /// Percentages at which alerts fire (1–100); default 50, 80, 100.
    #[serde(default)]
    pub alert_thresholds_pct: Option<Vec<i32>>,
    /// Lower max_tokens to what is left instead of refusing (default false).
    #[serde(default)]
    pub clamp: bool,
}

fn json(budget: &Budget) -> serde_json::Value {
    serde_json::to_value(budget).unwrap_or_default()
}

fn over(field: &str, message: String) -> ApiError {
    ApiError::invalid(vec![FieldError {
        field: field.into(),
        message,
    }])
}

#[utoipa::path(post, path = "/orgs/{org_id}/budgets", tag = "budgets", params(("org_id" = Uuid, Path)), request_body = NewBudget,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Budget), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_budget(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Json<NewBudget>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, HeaderMap, Json<Budget>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Json(new) = body?;
    Checks::default()
        .one_of("scope_kind", &new.scope_kind, &["org", "team", "key"])
        .one_of("period", &new.period, &["day", "week", "month", "total"])
        .done()?;
    let thresholds = new
        .alert_thresholds_pct
        .clone()
        .unwrap_or_else(|| vec![50, 80, 100]);
    if new.amount_micros < 0 {
        return Err(over("amount_micros", "must not be negative".into()));
    }
    if thresholds.iter().any(|t| !(1..=100).contains(t)) {
        return Err(over(
            "alert_thresholds_pct",
            "each between 1 and 100".into(),
        ));
    }
    // Who may set it depends on the scope; the scope must be in this org.
    match new.scope_kind.as_str() {
        "org" => {
            require(&principal, Permission::AdminOrg(org_id))?;
            if new.scope_id != org_id {
                return Err(over(
                    "scope_id",
                    "an org budget's scope_id is the org's id".into(),
                ));
            }
        }
        "team" => {
            require(&principal, Permission::AdminOrg(org_id))?;
            budgets::team_in_org(&state.pool, org_id, new.scope_id).await?;
        }
        _ => {
            let team = budgets::key_team(&state.pool, org_id, new.scope_id).await?;
            require(&principal, Permission::AdminTeam { org: org_id, team })?;
        }
    }
    let mut tx = state.pool.begin().await?;
    let around =
        budgets::neighbours(&mut tx, org_id, &new.scope_kind, new.scope_id, &new.period).await?;
    let violation = match (around.parent, around.largest_child) {
        (Some(parent), _) if new.amount_micros > parent => Some(format!(
            "exceeds the enclosing budget of this period ({parent} micro-USD)"
        )),
        (_, Some(child)) if new.amount_micros < child => Some(format!(
            "is below a budget it contains for this period ({child} micro-USD)"
        )),
        _ => None,
    };
    if let Some(problem) = &violation
        && state.hierarchy == HierarchyPolicy::Error
    {
        return Err(over("amount_micros", problem.clone()));
    }
    let budget = budgets::create(
        &mut tx,
        org_id,
        &new.scope_kind,
        new.scope_id,
        new.amount_micros,
        &new.period,
        &thresholds,
        new.clamp,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "budget",
        &budget.id.to_string(),
        None,
        Some(json(&budget)),
    )
    .await?;
    tx.commit().await?;
    let mut headers = HeaderMap::new();
    if let Some(problem) = violation
        && let Ok(value) =
            HeaderValue::from_str(&format!("199 tollgate \"amount_micros {problem}\""))
    {
        headers.insert(http::header::WARNING, value);
    }
    Ok((StatusCode::CREATED, headers, Json(budget)))
}

#[utoipa::path(get, path = "/orgs/{org_id}/budgets", tag = "budgets", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Budget>), (status = 401), (status = 404)))]
async fn list_budgets(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Budget>>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    Ok(Json(budgets::list(&state.pool, org_id).await?))
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
