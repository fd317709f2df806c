//! Rate limits: requests/min, tokens/min and requests in flight, at most one set per
//! scope (org, team, project or key). Every query names the org.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RateLimit {
    pub id: Uuid,
    pub org_id: Uuid,
    /// `org`, `team`, `project` or `key`.
    pub scope_kind: String,
    pub scope_id: Uuid,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub limits: Limits,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Absent = not limited on that axis; at least one is set.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<i32>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<i64>,
    /// Requests in flight at once.
    pub max_concurrent: Option<i32>,
}

const COLUMNS: &str =
    "id, org_id, scope_kind, scope_id, rpm, tpm, max_concurrent, created_at, updated_at";

pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    limits: Limits,
) -> Result<RateLimit, StoreError> {
    let sql = format!(
        "INSERT INTO rate_limits (id, org_id, scope_kind, scope_id, rpm, tpm, max_concurrent)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(org_id)
        .bind(scope_kind)
        .bind(scope_id)
        .bind(limits.rpm)
        .bind(limits.tpm)
        .bind(limits.max_concurrent)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<RateLimit, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM rate_limits WHERE org_id = $1 AND id = $2");
    Ok(sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(pool)
        .await?)
}

pub async fn get_for_update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
) -> Result<RateLimit, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM rate_limits WHERE org_id = $1 AND id = $2 FOR UPDATE");
    Ok(sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// An org's rate limits, optionally of one scope kind and/or one scope.
pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    scope_kind: Option<&str>,
    scope_id: Option<Uuid>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<RateLimit>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rate_limits
         WHERE org_id = $1 AND ($2::text IS NULL OR scope_kind = $2) AND ($3::uuid IS NULL OR scope_id = $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5"
    );
    let rows = sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(scope_kind)
        .bind(scope_id)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |r| r.id))
}

pub async fn update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    limits: Limits,
) -> Result<RateLimit, StoreError> {
    let sql = format!(
        "UPDATE rate_limits SET rpm = $3, tpm = $4, max_concurrent = $5 WHERE org_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(limits.rpm)
        .bind(limits.tpm)
        .bind(limits.max_concurrent)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<RateLimit, StoreError> {
    let sql = format!("DELETE FROM rate_limits WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, RateLimit>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}
