//! Virtual keys. The secret is never stored: only its HMAC (for gateways) and a display
//! prefix. Nothing read from here carries the HMAC back out.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

/// A key as the API shows it: everything but the secret and its HMAC.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Key {
    pub id: Uuid,
    pub public_id: String,
    /// Enough to recognise the key, never to use it.
    pub display_prefix: String,
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub project_id: Option<Uuid>,
    pub owner_user_id: Option<Uuid>,
    pub name: String,
    /// Models (names or aliases) this key may call: `null` = not set (as its project and team), `[]` = none.
    pub allowed_models: Option<Vec<String>>,
    /// `active` or `revoked`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    pub rotated_from: Option<Uuid>,
    /// A rotated key stays valid until then.
    #[serde(with = "time::serde::rfc3339::option")]
    pub grace_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, public_id, display_prefix, org_id, team_id, project_id, owner_user_id, name, \
                       allowed_models, status, expires_at, rotated_from, grace_until, created_at, updated_at";

/// What a new key row needs besides its minted secret.
#[derive(Debug, Clone)]
pub struct NewKeyRow<'a> {
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub project_id: Option<Uuid>,
    pub owner_user_id: Option<Uuid>,
    pub name: &'a str,
    pub allowed_models: Option<&'a [String]>,
    pub expires_at: Option<OffsetDateTime>,
    pub rotated_from: Option<Uuid>,
}

pub async fn create(
    tx: &mut Tx<'_>,
    row: &NewKeyRow<'_>,
    minted: &tollgate_keys::NewKey,
) -> Result<Key, StoreError> {
    let sql = format!(
        "INSERT INTO api_keys (id, public_id, display_prefix, secret_hmac, org_id, team_id, project_id, owner_user_id,
                               name, allowed_models, expires_at, rotated_from)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(&minted.public_id)
        .bind(&minted.display_prefix)
        .bind(minted.secret_hmac.as_slice())
        .bind(row.org_id)
        .bind(row.team_id)
        .bind(row.project_id)
        .bind(row.owner_user_id)
        .bind(row.name)
        .bind(row.allowed_models)
        .bind(row.expires_at)
        .bind(row.rotated_from)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Key, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2");
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(pool)
        .await?)
}

pub async fn get_for_update(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Key, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE org_id = $1 AND id = $2 FOR UPDATE");
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Filters of [`list`]; all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub team_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    /// `active` or `revoked`.
    pub status: Option<&'a str>,
    pub owner: Option<Uuid>,
}

/// Keys of an org that match every filter given.
pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    filter: Filter<'_>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Key>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys
         WHERE org_id = $1 AND ($2::uuid IS NULL OR team_id = $2) AND ($3::uuid IS NULL OR project_id = $3)
           AND ($4::text IS NULL OR status = $4) AND ($5::uuid IS NULL OR owner_user_id = $5)
           AND ($6::uuid IS NULL OR id > $6)
         ORDER BY id LIMIT $7"
    );
    let rows = sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(filter.team_id)
        .bind(filter.project_id)
        .bind(filter.status)
        .bind(filter.owner)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |k| k.id))
}

/// Changes what a key's holder may edit; never its secret, team or project.
pub async fn update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    name: &str,
    allowed_models: Option<&[String]>,
    expires_at: Option<OffsetDateTime>,
) -> Result<Key, StoreError> {
    let sql = format!(
        "UPDATE api_keys SET name = $3, allowed_models = $4, expires_at = $5 WHERE org_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(name)
        .bind(allowed_models)
        .bind(expires_at)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn revoke(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Key, StoreError> {
    let sql = format!(
        "UPDATE api_keys SET status = 'revoked' WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Starts the old key's grace period: valid until `grace_until`, then expired.
pub async fn start_grace(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    grace_until: OffsetDateTime,
) -> Result<Key, StoreError> {
    let sql = format!(
        "UPDATE api_keys SET grace_until = $3, expires_at = LEAST(coalesce(expires_at, $3), $3)
         WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Key>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .bind(grace_until)
        .fetch_one(&mut **tx)
        .await?)
}
