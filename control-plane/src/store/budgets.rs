//! Budgets: an amount of micro-USD per scope (org, team, key) and period. The hierarchy
//! holds per period: a team's budget never exceeds its org's, a key's never its team's.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Budget {
    pub id: Uuid,
    pub org_id: Uuid,
    /// `org`, `team` or `key`.
    pub scope_kind: String,
    pub scope_id: Uuid,
    /// Micro-USD (1 USD = 1,000,000).
    pub amount_micros: i64,
    /// `day`, `week`, `month` (UTC calendar) or `total`.
    pub period: String,
    pub alert_thresholds_pct: Vec<i32>,
    /// Lower max_tokens to what is left instead of refusing a call.
    pub clamp: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Where a new budget sits in the hierarchy, for the caller to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// The enclosing scope's budget of the same period (team's org, key's team).
    pub parent: Option<i64>,
    /// The largest budget of the same period directly below (an org's teams, a team's keys).
    pub largest_child: Option<i64>,
}

/// The team a key belongs to, if the key is in `org_id`.
pub async fn key_team(pool: &Pool, org_id: Uuid, key_id: Uuid) -> Result<Uuid, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT team_id FROM api_keys WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(key_id)
            .fetch_one(pool)
            .await?,
    )
}

/// Whether team `team_id` is in `org_id`.
pub async fn team_in_org(pool: &Pool, org_id: Uuid, team_id: Uuid) -> Result<(), StoreError> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM teams WHERE org_id = $1 AND id = $2")
            .bind(org_id)
            .bind(team_id)
            .fetch_optional(pool)
            .await?;
    found.map(|_| ()).ok_or(StoreError::NotFound)
}

pub async fn neighbours(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    period: &str,
) -> Result<Neighbours, StoreError> {
    // Lock the org's budgets so two concurrent creates cannot both pass the check.
    sqlx::query("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
        .bind(org_id)
        .execute(&mut **tx)
        .await?;
    let (parent, largest_child): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT
           (SELECT amount_micros FROM budgets p WHERE p.org_id = $1 AND p.period = $4 AND (
              ($2 = 'team' AND p.scope_kind = 'org' AND p.scope_id = $1) OR
              ($2 = 'key' AND p.scope_kind = 'team' AND p.scope_id = (SELECT team_id FROM api_keys WHERE id = $3)))),
           (SELECT max(c.amount_micros) FROM budgets c WHERE c.org_id = $1 AND c.period = $4 AND (
              ($2 = 'org' AND c.scope_kind = 'team') OR
              ($2 = 'team' AND c.scope_kind = 'key' AND c.scope_id IN (SELECT id FROM api_keys WHERE team_id = $3))))",
    )
    .bind(org_id)
    .bind(scope_kind)
    .bind(scope_id)
    .bind(period)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Neighbours {
        parent,
        largest_child,
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    amount_micros: i64,
    period: &str,
    alert_thresholds_pct: &[i32],
    clamp: bool,
) -> Result<Budget, StoreError> {
    Ok(sqlx::query_as::<_, Budget>(
        "INSERT INTO budgets (id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(scope_kind)
    .bind(scope_id)
    .bind(amount_micros)
    .bind(period)
    .bind(alert_thresholds_pct)
    .bind(clamp)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(pool: &Pool, org_id: Uuid) -> Result<Vec<Budget>, StoreError> {
    Ok(sqlx::query_as::<_, Budget>(
        "SELECT id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp, created_at, updated_at
         FROM budgets WHERE org_id = $1 ORDER BY id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Budget, StoreError> {
    Ok(sqlx::query_as::<_, Budget>(
        "DELETE FROM budgets WHERE org_id = $1 AND id = $2
         RETURNING id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp, created_at, updated_at",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}
