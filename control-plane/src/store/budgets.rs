//! Budgets: an amount of micro-USD per scope (org, team, project, key) and period. The
//! hierarchy holds per period: org ≥ team ≥ project ≥ key (a key without a project sits
//! directly under its team). Every query names the org.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Budget {
    pub id: Uuid,
    pub org_id: Uuid,
    /// `org`, `team`, `project` or `key`.
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

/// Where a budget sits in the hierarchy, for the caller to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// The smallest budget of the same period among the scopes enclosing this one (a
    /// key's project, team and org; a project's team and org; a team's org).
    pub parent: Option<i64>,
    /// The largest budget of the same period among the scopes inside this one (an org's
    /// teams, projects and keys; a team's projects and keys; a project's keys).
    pub largest_child: Option<i64>,
}

const COLUMNS: &str = "id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp, \
                       created_at, updated_at";

/// Locks the org's budgets so two concurrent writes cannot both pass the check, then
/// finds the budgets around scope `scope_kind`/`scope_id` in `period`.
///
/// Every level counts, not only the adjacent one: with no team budget, a key's budget is
/// still held to its org's.
pub async fn neighbours(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    period: &str,
) -> Result<Neighbours, StoreError> {
    sqlx::query("SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE")
        .bind(org_id)
        .execute(&mut **tx)
        .await?;
    let (parent, largest_child): (Option<i64>, Option<i64>) = sqlx::query_as(
        "WITH enclosing (kind, id) AS (
           SELECT 'org', $1::uuid WHERE $2 <> 'org'
           UNION ALL SELECT 'team', team_id FROM projects WHERE $2 = 'project' AND org_id = $1 AND id = $3
           UNION ALL SELECT 'team', team_id FROM api_keys WHERE $2 = 'key' AND org_id = $1 AND id = $3
           UNION ALL SELECT 'project', project_id FROM api_keys
             WHERE $2 = 'key' AND org_id = $1 AND id = $3 AND project_id IS NOT NULL
         ), enclosed (kind, id) AS (
           SELECT 'team', id FROM teams WHERE $2 = 'org' AND org_id = $1
           UNION ALL SELECT 'project', id FROM projects WHERE org_id = $1 AND (
             $2 = 'org' OR ($2 = 'team' AND team_id = $3))
           UNION ALL SELECT 'key', id FROM api_keys WHERE org_id = $1 AND (
             $2 = 'org' OR ($2 = 'team' AND team_id = $3) OR ($2 = 'project' AND project_id = $3))
         )
         SELECT
           (SELECT min(b.amount_micros) FROM budgets b JOIN enclosing e ON b.scope_kind = e.kind AND b.scope_id = e.id
            WHERE b.org_id = $1 AND b.period = $4),
           (SELECT max(b.amount_micros) FROM budgets b JOIN enclosed e ON b.scope_kind = e.kind AND b.scope_id = e.id
            WHERE b.org_id = $1 AND b.period = $4)",
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
    let sql = format!(
        "INSERT INTO budgets (id, org_id, scope_kind, scope_id, amount_micros, period, alert_thresholds_pct, clamp)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
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

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Budget, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets WHERE org_id = $1 AND id = $2");
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(pool)
        .await?)
}

pub async fn get_for_update(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Budget, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM budgets WHERE org_id = $1 AND id = $2 FOR UPDATE");
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// An org's budgets, optionally of one scope kind and/or one scope.
pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    scope_kind: Option<&str>,
    scope_id: Option<Uuid>,
) -> Result<Vec<Budget>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM budgets
         WHERE org_id = $1 AND ($2::text IS NULL OR scope_kind = $2) AND ($3::uuid IS NULL OR scope_id = $3)
         ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(scope_kind)
        .bind(scope_id)
        .fetch_all(pool)
        .await?)
}

pub async fn update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    amount_micros: i64,
    alert_thresholds_pct: &[i32],
    clamp: bool,
) -> Result<Budget, StoreError> {
    let sql = format!(
        "UPDATE budgets SET amount_micros = $3, alert_thresholds_pct = $4, clamp = $5
         WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(amount_micros)
        .bind(alert_thresholds_pct)
        .bind(clamp)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Budget, StoreError> {
    let sql = format!("DELETE FROM budgets WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, Budget>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}
