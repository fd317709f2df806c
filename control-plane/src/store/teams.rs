//! Teams. Every query names the org: a team id alone never reaches a row.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Team {
    pub id: Uuid,
    pub org_id: Uuid,
    pub slug: String,
    pub name: String,
    /// Models (names or aliases) this team may call: `null` = not set (every model), `[]` = none.
    pub allowed_models: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    slug: &str,
    name: &str,
    allowed_models: Option<&[String]>,
) -> Result<Team, StoreError> {
    Ok(sqlx::query_as::<_, Team>(
        "INSERT INTO teams (id, org_id, slug, name, allowed_models) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, org_id, slug, name, allowed_models, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(slug)
    .bind(name)
    .bind(allowed_models)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Team, StoreError> {
    Ok(sqlx::query_as::<_, Team>(
        "SELECT id, org_id, slug, name, allowed_models, created_at, updated_at FROM teams WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(pool)
    .await?)
}

pub async fn get_for_update(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Team, StoreError> {
    Ok(sqlx::query_as::<_, Team>(
        "SELECT id, org_id, slug, name, allowed_models, created_at, updated_at FROM teams WHERE org_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Team>, StoreError> {
    let rows = sqlx::query_as::<_, Team>(
        "SELECT id, org_id, slug, name, allowed_models, created_at, updated_at FROM teams
         WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(org_id)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

pub async fn update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    name: &str,
    allowed_models: Option<&[String]>,
) -> Result<Team, StoreError> {
    Ok(sqlx::query_as::<_, Team>(
        "UPDATE teams SET name = $3, allowed_models = $4 WHERE org_id = $1 AND id = $2
         RETURNING id, org_id, slug, name, allowed_models, created_at, updated_at",
    )
    .bind(org_id)
    .bind(id)
    .bind(name)
    .bind(allowed_models)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM teams WHERE org_id = $1 AND id = $2")
        .bind(org_id)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
