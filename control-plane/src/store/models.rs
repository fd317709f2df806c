//! The model catalog: what callers may name in `model`. A model's name and every alias
//! resolve to exactly one model, so names and aliases are unique across the whole catalog.
//! The database cannot express that over arrays; writers take [`lock_names`] first and
//! check with [`taken`] inside the same transaction.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Model {
    pub id: Uuid,
    /// What callers send as `model`; unique across names and aliases.
    pub name: String,
    /// Other names that resolve to this model.
    pub aliases: Vec<String>,
    /// `max_tokens` assumed when a call does not say (tokens); prices the worst case.
    pub default_max_output_tokens: i32,
    /// `o200k_base` or `cl100k_base`: how gateways count prompt tokens.
    pub tokenizer: String,
    /// Shown in `GET /v1/models`.
    pub owned_by: String,
    /// Prompt tokens the model accepts; `null` = unknown (gateways do not check).
    pub context_window: Option<i32>,
    /// The largest `max_tokens` one answer may have (tokens); `null` = unknown.
    pub max_output_tokens: Option<i32>,
    /// Endpoints the model serves: `chat`, `completions`, `embeddings`.
    pub modes: Vec<String>,
    /// The largest `n` (or `best_of`) a call may ask for; 1 refuses n > 1.
    pub max_n: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The writable fields of a model.
#[derive(Debug, Clone)]
pub struct ModelRow<'a> {
    pub aliases: &'a [String],
    pub default_max_output_tokens: i32,
    pub tokenizer: &'a str,
    pub owned_by: &'a str,
    pub context_window: Option<i32>,
    pub max_output_tokens: Option<i32>,
    pub modes: &'a [String],
    pub max_n: i32,
}

const COLUMNS: &str = "id, name, aliases, default_max_output_tokens, tokenizer, owned_by,
    context_window, max_output_tokens, modes, max_n, created_at, updated_at";

/// Serialises writers of names and aliases until the transaction ends, so two of them
/// cannot both pass [`taken`] with the same new alias. Readers are not blocked.
pub async fn lock_names(tx: &mut Tx<'_>) -> Result<(), StoreError> {
    sqlx::query("LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Which of `names` already name a model or an alias of one (other than `except`).
pub async fn taken(
    tx: &mut Tx<'_>,
    names: &[String],
    except: Option<Uuid>,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT u.n FROM unnest($1::text[]) AS u(n)
         WHERE EXISTS (SELECT 1 FROM models m
                       WHERE ($2::uuid IS NULL OR m.id <> $2) AND (m.name = u.n OR m.aliases @> ARRAY[u.n]))
         ORDER BY u.n",
    )
    .bind(names)
    .bind(except)
    .fetch_all(&mut **tx)
    .await?)
}

/// Which of `names` are neither a model's name nor an alias, in the order given.
pub async fn unknown(pool: &Pool, names: &[String]) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT u.n FROM unnest($1::text[]) WITH ORDINALITY AS u(n, i)
         WHERE NOT EXISTS (SELECT 1 FROM models m WHERE m.name = u.n OR m.aliases @> ARRAY[u.n])
         ORDER BY u.i",
    )
    .bind(names)
    .fetch_all(pool)
    .await?)
}

pub async fn create(tx: &mut Tx<'_>, name: &str, row: &ModelRow<'_>) -> Result<Model, StoreError> {
    let sql = format!(
        "INSERT INTO models (id, name, aliases, default_max_output_tokens, tokenizer, owned_by,
                             context_window, max_output_tokens, modes, max_n)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(row.aliases)
        .bind(row.default_max_output_tokens)
        .bind(row.tokenizer)
        .bind(row.owned_by)
        .bind(row.context_window)
        .bind(row.max_output_tokens)
        .bind(row.modes)
        .bind(row.max_n)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Model, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE id = $1");
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// Locks the row: for an update's audit, or so a deployment being created cannot lose its
/// model to a concurrent delete.
pub async fn get_for_update(tx: &mut Tx<'_>, id: Uuid) -> Result<Model, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// The model `name` names, by its name or one of its aliases.
pub async fn resolve(pool: &Pool, name: &str) -> Result<Model, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM models WHERE name = $1 OR aliases @> ARRAY[$1]");
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_one(pool)
        .await?)
}

/// The catalog, or only the model `name` resolves to (by name or alias).
pub async fn list(
    pool: &Pool,
    name: Option<&str>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Model>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM models
         WHERE ($1::text IS NULL OR name = $1 OR aliases @> ARRAY[$1]) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |m| m.id))
}

pub async fn update(tx: &mut Tx<'_>, id: Uuid, row: &ModelRow<'_>) -> Result<Model, StoreError> {
    let sql = format!(
        "UPDATE models SET aliases = $2, default_max_output_tokens = $3, tokenizer = $4, owned_by = $5,
                           context_window = $6, max_output_tokens = $7, modes = $8, max_n = $9
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(row.aliases)
        .bind(row.default_max_output_tokens)
        .bind(row.tokenizer)
        .bind(row.owned_by)
        .bind(row.context_window)
        .bind(row.max_output_tokens)
        .bind(row.modes)
        .bind(row.max_n)
        .fetch_one(&mut **tx)
        .await?)
}

/// Deletes the model and, by cascade, its deployments.
pub async fn delete(tx: &mut Tx<'_>, id: Uuid) -> Result<Model, StoreError> {
    let sql = format!("DELETE FROM models WHERE id = $1 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, Model>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}
