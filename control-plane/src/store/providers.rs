//! Provider accounts (an OpenAI org, an Azure resource, ...). Their credentials are
//! references (`env:NAME`) that gateways resolve; nothing read from here carries a secret,
//! and `credential_ciphertext` is never selected.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Provider {
    pub id: Uuid,
    /// A provider kind's name (`tollgate_proto::config::ProviderKind::NAMES`).
    pub kind: String,
    /// `openai_compatible` only: whose quirks apply (`vllm`, `groq`, …); absent = none.
    pub preset: Option<String>,
    pub name: String,
    /// Where the provider's API lives, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// `env:NAME`: the environment variable holding the secret on the gateways; absent for
    /// a provider that needs no credential.
    pub credential_ref: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// No credential is stored as '' (the column's default); the API shows it as absent.
const COLUMNS: &str = "id, kind, nullif(preset, '') AS preset, name, base_url, nullif(credential_ref, '') AS credential_ref, created_at, updated_at";

pub async fn create(
    tx: &mut Tx<'_>,
    kind: &str,
    name: &str,
    base_url: &str,
    credential_ref: Option<&str>,
    preset: Option<&str>,
) -> Result<Provider, StoreError> {
    let sql = format!(
        "INSERT INTO providers (id, kind, name, base_url, credential_ref, preset)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(kind)
        .bind(name)
        .bind(base_url)
        .bind(credential_ref.unwrap_or_default())
        .bind(preset.unwrap_or_default())
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Provider, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers WHERE id = $1");
    Ok(sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// Locks the row against a concurrent update or delete.
pub async fn get_for_update(tx: &mut Tx<'_>, id: Uuid) -> Result<Provider, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn find_by_name(pool: &Pool, name: &str) -> Result<Provider, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM providers WHERE name = $1");
    Ok(sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_one(pool)
        .await?)
}

pub async fn list(
    pool: &Pool,
    kind: Option<&str>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Provider>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM providers
         WHERE ($1::text IS NULL OR kind = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(kind)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |p| p.id))
}

pub async fn update(
    tx: &mut Tx<'_>,
    id: Uuid,
    name: &str,
    base_url: &str,
    credential_ref: Option<&str>,
) -> Result<Provider, StoreError> {
    let sql = format!(
        "UPDATE providers SET name = $2, base_url = $3, credential_ref = $4 WHERE id = $1
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(name)
        .bind(base_url)
        .bind(credential_ref.unwrap_or_default())
        .fetch_one(&mut **tx)
        .await?)
}

/// [`StoreError::InUse`] while deployments use it.
pub async fn delete(tx: &mut Tx<'_>, id: Uuid) -> Result<Provider, StoreError> {
    let sql = format!("DELETE FROM providers WHERE id = $1 RETURNING {COLUMNS}");
    sqlx::query_as::<_, Provider>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::on_delete)
}
