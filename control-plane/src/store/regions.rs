//! Regions: where gateway fleets run, each receiving its own config snapshot. The id is a
//! slug chosen by the operator (`eu-west`), so lists page by id text, not by UUID.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Region {
    /// Slug, e.g. `eu-west`; what gateways name in their `server.region`.
    pub id: String,
    pub name: String,
    /// Where callers reach the region's gateways (origin + optional path, e.g.
    /// `https://llm.eu.example.com`); absent = not published. Shown in the portal's snippets.
    pub public_url: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A page of regions, ordered by id.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegionPage {
    pub items: Vec<Region>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

const COLUMNS: &str = "id, name, public_url, created_at, updated_at";

pub async fn create(
    tx: &mut Tx<'_>,
    id: &str,
    name: &str,
    public_url: Option<&str>,
) -> Result<Region, StoreError> {
    let sql = format!(
        "INSERT INTO regions (id, name, public_url) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(name)
        .bind(public_url)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, id: &str) -> Result<Region, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM regions WHERE id = $1");
    Ok(sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// Locks the row: for an update's before/after audit, or so a deployment being created
/// cannot lose its region to a concurrent delete.
pub async fn get_for_update(tx: &mut Tx<'_>, id: &str) -> Result<Region, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM regions WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn list(pool: &Pool, cursor: Option<&str>, limit: i64) -> Result<RegionPage, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM regions WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2"
    );
    let mut items = sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let limit = usize::try_from(limit).unwrap_or(0);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(RegionPage { items, next_cursor })
}

pub async fn update(
    tx: &mut Tx<'_>,
    id: &str,
    name: &str,
    public_url: Option<&str>,
) -> Result<Region, StoreError> {
    let sql =
        format!("UPDATE regions SET name = $2, public_url = $3 WHERE id = $1 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(name)
        .bind(public_url)
        .fetch_one(&mut **tx)
        .await?)
}

/// [`StoreError::InUse`] while deployments (or published config versions) name it.
pub async fn delete(tx: &mut Tx<'_>, id: &str) -> Result<Region, StoreError> {
    let sql = format!("DELETE FROM regions WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as::<_, Region>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::on_delete)
}
