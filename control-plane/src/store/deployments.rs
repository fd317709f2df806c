//! Deployments: a model served by a provider account in a region, with its prices,
//! weight and timeouts. Gateways route a model's calls over its region's deployments.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Page, Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Deployment {
    pub id: Uuid,
    pub model_id: Uuid,
    pub region_id: String,
    pub provider_id: Uuid,
    /// The model name the provider knows (Azure: the deployment name).
    pub upstream_model: String,
    /// Azure's `api-version`; empty for other providers.
    pub api_version: String,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub settings: DeploymentSettings,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Prices and timings of a deployment. Prices are micro-USD per 1M tokens; absent = the
/// gateway's own price table.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeploymentSettings {
    pub input_price: Option<i64>,
    pub output_price: Option<i64>,
    pub cached_input_price: Option<i64>,
    pub cache_write_price: Option<i64>,
    /// Long-context tiers of the deployment's own prices, thresholds ascending; empty =
    /// one price at every prompt size (or the price table's tiers, without own prices).
    #[serde(default)]
    #[sqlx(json)]
    pub price_tiers: Vec<PriceTier>,
    /// Share of the model's traffic in the region, relative to its other deployments.
    pub weight: i32,
    /// Connecting to the provider (ms).
    pub connect_ms: i32,
    /// Until the first byte of the answer (ms).
    pub first_byte_ms: i32,
    /// The whole call (ms).
    pub total_ms: i32,
    /// Gateways refuse calls to it when their config is older than this (ms); 0 = never.
    pub max_staleness_ms: i64,
    /// Bedrock: the AWS region requests are signed for (e.g. `us-east-1`); empty for
    /// other providers.
    #[serde(default)]
    pub cloud_region: String,
}

/// The rates of a call whose prompt (fresh input, cache reads and cache writes together)
/// is above `above_prompt_tokens`, micro-USD per 1M tokens; every token of such a call,
/// output included, is billed at them. Absent cache prices are the tier's input price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    #[schema(minimum = 1)]
    pub above_prompt_tokens: i64,
    #[schema(minimum = 0)]
    pub input_price: i64,
    #[schema(minimum = 0)]
    pub output_price: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cached_input_price: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cache_write_price: Option<i64>,
}

/// Filters of [`list`]; all optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub model_id: Option<Uuid>,
    pub region_id: Option<&'a str>,
    pub provider_id: Option<Uuid>,
}

const COLUMNS: &str = "id, model_id, region_id, provider_id, upstream_model, api_version, input_price, \
     output_price, cached_input_price, cache_write_price, price_tiers, weight, connect_ms, first_byte_ms, \
     total_ms, max_staleness_ms, cloud_region, created_at, updated_at";

pub async fn create(
    tx: &mut Tx<'_>,
    model_id: Uuid,
    region_id: &str,
    provider_id: Uuid,
    upstream_model: &str,
    api_version: &str,
    s: &DeploymentSettings,
) -> Result<Deployment, StoreError> {
    let sql = format!(
        "INSERT INTO deployments (id, model_id, region_id, provider_id, upstream_model, api_version,
           input_price, output_price, cached_input_price, cache_write_price, weight, connect_ms,
           first_byte_ms, total_ms, max_staleness_ms, cloud_region, price_tiers)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(model_id)
        .bind(region_id)
        .bind(provider_id)
        .bind(upstream_model)
        .bind(api_version)
        .bind(s.input_price)
        .bind(s.output_price)
        .bind(s.cached_input_price)
        .bind(s.cache_write_price)
        .bind(s.weight)
        .bind(s.connect_ms)
        .bind(s.first_byte_ms)
        .bind(s.total_ms)
        .bind(s.max_staleness_ms)
        .bind(&s.cloud_region)
        .bind(sqlx::types::Json(&s.price_tiers))
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, id: Uuid) -> Result<Deployment, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE id = $1");
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

pub async fn get_for_update(tx: &mut Tx<'_>, id: Uuid) -> Result<Deployment, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM deployments WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn list(
    pool: &Pool,
    filter: Filter<'_>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Deployment>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM deployments
         WHERE ($1::uuid IS NULL OR model_id = $1) AND ($2::text IS NULL OR region_id = $2)
           AND ($3::uuid IS NULL OR provider_id = $3) AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5"
    );
    let rows = sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(filter.model_id)
        .bind(filter.region_id)
        .bind(filter.provider_id)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    Ok(Page::from_rows(rows, limit, |d| d.id))
}

/// Every deployment of a model, for the audit of a model delete (they go with it).
pub async fn of_model(tx: &mut Tx<'_>, model_id: Uuid) -> Result<Vec<Deployment>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM deployments WHERE model_id = $1 ORDER BY id FOR UPDATE");
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(model_id)
        .fetch_all(&mut **tx)
        .await?)
}

pub async fn update(
    tx: &mut Tx<'_>,
    id: Uuid,
    upstream_model: &str,
    api_version: &str,
    s: &DeploymentSettings,
) -> Result<Deployment, StoreError> {
    let sql = format!(
        "UPDATE deployments SET upstream_model = $2, api_version = $3, input_price = $4, output_price = $5,
           cached_input_price = $6, cache_write_price = $7, weight = $8, connect_ms = $9,
           first_byte_ms = $10, total_ms = $11, max_staleness_ms = $12, cloud_region = $13,
           price_tiers = $14
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(upstream_model)
        .bind(api_version)
        .bind(s.input_price)
        .bind(s.output_price)
        .bind(s.cached_input_price)
        .bind(s.cache_write_price)
        .bind(s.weight)
        .bind(s.connect_ms)
        .bind(s.first_byte_ms)
        .bind(s.total_ms)
        .bind(s.max_staleness_ms)
        .bind(&s.cloud_region)
        .bind(sqlx::types::Json(&s.price_tiers))
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn delete(tx: &mut Tx<'_>, id: Uuid) -> Result<Deployment, StoreError> {
    let sql = format!("DELETE FROM deployments WHERE id = $1 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, Deployment>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}
