//! Budgets: spend caps per org, team, project or key and period. Org admins set org and
//! team budgets; team admins their projects' and keys' ([`super::scope`]). The hierarchy
//! org ≥ team ≥ project ≥ key is checked per period on every amount: a budget cannot
//! exceed one that encloses it, nor go below one it contains — refused, or with
//! `[budgets] hierarchy = "warn"` written with a warning.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::checks::Checks;
use super::{FieldError, Problem, Services, scope};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::config::HierarchyPolicy;
use crate::store::audit;
use crate::store::budgets::{self, Budget, Neighbours};

pub const PERIODS: &[&str] = &["day", "week", "month", "total"];

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    /// `org`, `team`, `project` or `key`.
    #[schema(pattern = "^(org|team|project|key)$")]
    pub scope_kind: String,
    /// The org's, team's, project's or key's id.
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

/// A budget written, and the hierarchy warning it was written with (`warn` policy).
#[derive(Debug)]
pub struct Written {
    pub budget: Budget,
    pub warning: Option<String>,
}

pub fn json(budget: &Budget) -> serde_json::Value {
    serde_json::to_value(budget).unwrap_or_default()
}

pub fn over(field: &str, message: String) -> Problem {
    Problem::invalid(vec![FieldError {
        field: field.into(),
        message,
    }])
}

pub fn check_amounts(
    checks: Checks,
    amount_micros: Option<i64>,
    thresholds: Option<&[i32]>,
) -> Checks {
    checks.at_least("amount_micros", amount_micros, 0).check(
        thresholds.is_none_or(|t| t.iter().all(|t| (1..=100).contains(t))),
        "alert_thresholds_pct",
        "each between 1 and 100",
    )
}

/// What is wrong with `amount` between the budgets around it, if anything.
pub fn violation(around: Neighbours, amount: i64) -> Option<String> {
    match (around.parent, around.largest_child) {
        (Some(parent), _) if amount > parent => Some(format!(
            "exceeds the enclosing budget of this period ({parent} micro-USD)"
        )),
        (_, Some(child)) if amount < child => Some(format!(
            "is below a budget it contains for this period ({child} micro-USD)"
        )),
        _ => None,
    }
}

/// Refused under the `error` policy; otherwise the warning to write it with.
pub fn judge(
    policy: HierarchyPolicy,
    violation: Option<String>,
) -> Result<Option<String>, Problem> {
    match violation {
        Some(problem) if policy == HierarchyPolicy::Error => Err(over("amount_micros", problem)),
        other => Ok(other.map(|problem| format!("amount_micros {problem}"))),
    }
}

pub async fn create(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    new: &NewBudget,
) -> Result<Written, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    let checks = Checks::default()
        .one_of("scope_kind", &new.scope_kind, scope::KINDS)
        .one_of("period", &new.period, PERIODS);
    check_amounts(
        checks,
        Some(new.amount_micros),
        new.alert_thresholds_pct.as_deref(),
    )
    .done()?;
    let thresholds = new
        .alert_thresholds_pct
        .clone()
        .unwrap_or_else(|| vec![50, 80, 100]);
    scope::require_admin(&svc.pool, principal, org_id, &new.scope_kind, new.scope_id).await?;
    let mut tx = svc.pool.begin().await?;
    let around =
        budgets::neighbours(&mut tx, org_id, &new.scope_kind, new.scope_id, &new.period).await?;
    let warning = judge(svc.hierarchy, violation(around, new.amount_micros))?;
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
    Ok(Written { budget, warning })
}

pub async fn list(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    scope_kind: Option<&str>,
    scope_id: Option<Uuid>,
) -> Result<Vec<Budget>, Problem> {
    super::orgs::require_read(&svc.pool, principal, org_id).await?;
    if let Some(kind) = scope_kind {
        Checks::default()
            .one_of("scope_kind", kind, scope::KINDS)
            .done()?;
    }
    Ok(budgets::list(&svc.pool, org_id, scope_kind, scope_id).await?)
}
