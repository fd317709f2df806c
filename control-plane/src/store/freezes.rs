//! Freezes (emergency stops): while one is active on an org, team, project or key, every
//! call it covers is refused by the gateways. Lifting keeps the row (when, by whom), so
//! the table is also the record of past stops. Every query names the org.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Freeze {
    pub id: Uuid,
    pub org_id: Uuid,
    /// `org`, `team`, `project` or `key`.
    pub scope_kind: String,
    pub scope_id: Uuid,
    /// Why calls are stopped; gateways quote it in their refusal.
    pub reason: String,
    /// Who froze it (email, or `cli`).
    pub created_by: String,
    /// When it was lifted; absent while active.
    #[serde(with = "time::serde::rfc3339::option")]
    pub lifted_at: Option<OffsetDateTime>,
    pub lifted_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, org_id, scope_kind, scope_id, reason, created_by, lifted_at, lifted_by, created_at, updated_at";

/// [`StoreError::Conflict`] (`freezes_one_per_scope`) if the scope is frozen already.
pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    reason: &str,
    created_by: &str,
) -> Result<Freeze, StoreError> {
    let sql = format!(
        "INSERT INTO freezes (id, org_id, scope_kind, scope_id, reason, created_by)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(org_id)
        .bind(scope_kind)
        .bind(scope_id)
        .bind(reason)
        .bind(created_by)
        .fetch_one(&mut **tx)
        .await?)
}

/// A freeze, active or lifted, locked for the lift's before/after audit.
pub async fn get_for_update(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Freeze, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM freezes WHERE org_id = $1 AND id = $2 FOR UPDATE");
    Ok(sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Freeze, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM freezes WHERE org_id = $1 AND id = $2");
    Ok(sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// The org's active freezes, oldest first.
pub async fn active(pool: &Pool, org_id: Uuid) -> Result<Vec<Freeze>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM freezes WHERE org_id = $1 AND lifted_at IS NULL ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .fetch_all(pool)
        .await?)
}

/// Every org's active freezes, for the snapshot builder (inside its transaction).
pub async fn all_active(db: &mut PgConnection) -> Result<Vec<Freeze>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM freezes WHERE lifted_at IS NULL ORDER BY id");
    sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .fetch_all(db)
        .await
}

/// Ends an active freeze; [`StoreError::NotFound`] if it is lifted already.
pub async fn lift(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    lifted_by: &str,
) -> Result<Freeze, StoreError> {
    let sql = format!(
        "UPDATE freezes SET lifted_at = now(), lifted_by = $3
          WHERE org_id = $1 AND id = $2 AND lifted_at IS NULL RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Freeze>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(lifted_by)
        .fetch_one(&mut **tx)
        .await?)
}
