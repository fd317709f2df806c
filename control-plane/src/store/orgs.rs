//! Orgs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Org {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub async fn create(tx: &mut Tx<'_>, slug: &str, name: &str) -> Result<Org, StoreError> {
    Ok(sqlx::query_as::<_, Org>(
        "INSERT INTO orgs (id, slug, name) VALUES ($1, $2, $3) RETURNING id, slug, name, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(slug)
    .bind(name)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Org, StoreError> {
    Ok(sqlx::query_as::<_, Org>(
        "SELECT id, slug, name, created_at, updated_at FROM orgs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

/// Orgs visible to the caller: all of them (`visible = None`) or those listed.
pub async fn list(
    pool: &Pool,
    visible: Option<&[Uuid]>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Org>, StoreError> {
    let rows = sqlx::query_as::<_, Org>(
        "SELECT id, slug, name, created_at, updated_at FROM orgs
         WHERE ($1::uuid[] IS NULL OR id = ANY($1)) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(visible)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    Ok(Page::from_rows(rows, limit, |o| o.id))
}

/// Locks the row for the update's before/after audit.
pub async fn get_for_update(tx: &mut Tx<'_>, id: Uuid) -> Result<Org, StoreError> {
    Ok(sqlx::query_as::<_, Org>(
        "SELECT id, slug, name, created_at, updated_at FROM orgs WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn rename(tx: &mut Tx<'_>, id: Uuid, name: &str) -> Result<Org, StoreError> {
    Ok(sqlx::query_as::<_, Org>(
        "UPDATE orgs SET name = $2 WHERE id = $1 RETURNING id, slug, name, created_at, updated_at",
    )
    .bind(id)
    .bind(name)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn delete(tx: &mut Tx<'_>, id: Uuid) -> Result<(), StoreError> {
    let done = sqlx::query("DELETE FROM orgs WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
