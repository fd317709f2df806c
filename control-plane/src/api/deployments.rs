//! `/api/v1/deployments`: a model served by a provider account in a region, platform
//! admins only. Its model, region and provider are fixed at creation (make a new one to
//! move); an unknown one is a 422 naming the field. Azure deployments need `api_version`.
//!
//! [`create`] is shared with `tollgate-control deployments create`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::idempotent::Idempotency;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, page_limit};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit::{self, Actor};
use crate::store::deployments::{self, Deployment, DeploymentSettings, Filter, PriceTier};
use crate::store::{Page, StoreError, Tx, models, providers, regions};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deployment, list_deployments))
        .routes(routes!(
            get_deployment,
            update_deployment,
            delete_deployment
        ))
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeployment {
    pub model_id: Uuid,
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub region_id: String,
    pub provider_id: Uuid,
    /// The model name the provider knows (Azure: the deployment name).
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub upstream_model: String,
    /// Azure's `api-version`, required for Azure providers; empty for others.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub api_version: String,
    /// Micro-USD per 1M input tokens; absent = the gateway's price table.
    #[schema(minimum = 0)]
    pub input_price: Option<i64>,
    /// Micro-USD per 1M output tokens.
    #[schema(minimum = 0)]
    pub output_price: Option<i64>,
    /// Micro-USD per 1M cached input tokens.
    #[schema(minimum = 0)]
    pub cached_input_price: Option<i64>,
    /// Micro-USD per 1M tokens written to the provider's cache.
    #[schema(minimum = 0)]
    pub cache_write_price: Option<i64>,
    /// Long-context tiers of this deployment's prices (needs `input_price` and
    /// `output_price`), at most 8, `above_prompt_tokens` strictly ascending.
    #[serde(default)]
    #[schema(max_items = 8)]
    pub price_tiers: Vec<PriceTier>,
    /// Share of the model's traffic in the region (default 1).
    #[serde(default = "defaults::weight")]
    #[schema(minimum = 1)]
    pub weight: i32,
    /// Connect timeout (ms, default 5000).
    #[serde(default = "defaults::connect_ms")]
    #[schema(minimum = 1)]
    pub connect_ms: i32,
    /// Time to the answer's first byte (ms, default 120000).
    #[serde(default = "defaults::first_byte_ms")]
    #[schema(minimum = 1)]
    pub first_byte_ms: i32,
    /// The whole call (ms, default 600000).
    #[serde(default = "defaults::total_ms")]
    #[schema(minimum = 1)]
    pub total_ms: i32,
    /// Gateways refuse calls to it when their config is older than this (ms); 0 = never.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub max_staleness_ms: i64,
    /// Bedrock: the AWS region requests are signed for (e.g. `us-east-1`), required for
    /// Bedrock providers; empty for others.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9-]*$", max_length = 63)]
    pub cloud_region: String,
}

/// The schema's defaults, the same as the table's.
mod defaults {
    pub fn weight() -> i32 {
        1
    }
    pub fn connect_ms() -> i32 {
        5_000
    }
    pub fn first_byte_ms() -> i32 {
        120_000
    }
    pub fn total_ms() -> i32 {
        600_000
    }
}

/// Absent fields keep their value; a price set to `null` falls back to the gateway's table.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub upstream_model: Option<String>,
    #[schema(max_length = 200)]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub input_price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub output_price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub cached_input_price: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub cache_write_price: Option<Option<i64>>,
    /// Replaces the tiers; `[]` or `null` removes them.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<PriceTier>>, max_items = 8)]
    pub price_tiers: Option<Option<Vec<PriceTier>>>,
    #[schema(minimum = 1)]
    pub weight: Option<i32>,
    #[schema(minimum = 1)]
    pub connect_ms: Option<i32>,
    #[schema(minimum = 1)]
    pub first_byte_ms: Option<i32>,
    #[schema(minimum = 1)]
    pub total_ms: Option<i32>,
    #[schema(minimum = 0)]
    pub max_staleness_ms: Option<i64>,
    #[schema(pattern = "^[a-z0-9-]*$", max_length = 63)]
    pub cloud_region: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// Only deployments of the model this name or alias resolves to.
    pub model: Option<String>,
    /// Only deployments in this region.
    pub region: Option<String>,
    /// Only deployments through this provider account.
    pub provider_id: Option<Uuid>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

fn json(deployment: &Deployment) -> serde_json::Value {
    serde_json::to_value(deployment).unwrap_or_default()
}

/// Every field check of a deployment's values, given its provider's kind.
fn check(
    checks: Checks,
    provider_kind: &str,
    upstream_model: &str,
    api_version: &str,
    s: &DeploymentSettings,
) -> Checks {
    let checks = checks
        .check(
            !upstream_model.trim().is_empty()
                && upstream_model.chars().count() <= 200
                && !upstream_model.contains(char::is_control),
            "upstream_model",
            "1–200 characters, not only spaces, without control characters",
        )
        .short_text("api_version", api_version)
        .check(
            provider_kind != "azure" || !api_version.trim().is_empty(),
            "api_version",
            "required for an azure provider (e.g. 2024-10-21)",
        )
        .at_least("input_price", s.input_price, 0)
        .at_least("output_price", s.output_price, 0)
        .at_least("cached_input_price", s.cached_input_price, 0)
        .at_least("cache_write_price", s.cache_write_price, 0)
        .check(
            s.price_tiers.is_empty() || (s.input_price.is_some() && s.output_price.is_some()),
            "price_tiers",
            "tiers refine the deployment's own prices: set input_price and output_price too",
        )
        .check(
            s.price_tiers.len() <= MAX_PRICE_TIERS,
            "price_tiers",
            "at most 8 tiers",
        );
    tier_checks(checks, &s.price_tiers)
        .at_least("weight", Some(s.weight), 1)
        .at_least("connect_ms", Some(s.connect_ms), 1)
        .at_least("first_byte_ms", Some(s.first_byte_ms), 1)
        .at_least("total_ms", Some(s.total_ms), 1)
        .at_least("max_staleness_ms", Some(s.max_staleness_ms), 0)
        .check(
            s.cloud_region.len() <= 63
                && s.cloud_region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "cloud_region",
            "a region name: lowercase letters, digits and '-' (e.g. us-east-1)",
        )
        .check(
            provider_kind != "bedrock" || !s.cloud_region.is_empty(),
            "cloud_region",
            "required for a bedrock provider (the AWS region, e.g. us-east-1)",
        )
}

/// As many as a gateway takes (`tollgate_data_plane::money::MAX_TIERS`).
const MAX_PRICE_TIERS: usize = 8;

/// Each tier's prices are non-negative and its threshold above the previous one's.
fn tier_checks(mut checks: Checks, tiers: &[PriceTier]) -> Checks {
    let mut previous = 0;
    for (i, t) in tiers.iter().enumerate() {
        let at = |field: &str| format!("price_tiers[{i}].{field}");
        checks = checks
            .check(
                t.above_prompt_tokens >= 1,
                &at("above_prompt_tokens"),
                "must be at least 1",
            )
            .check(
                i == 0 || t.above_prompt_tokens > previous,
                &at("above_prompt_tokens"),
                "must be above the previous tier's (tiers ascend)",
            )
            .at_least(&at("input_price"), Some(t.input_price), 0)
            .at_least(&at("output_price"), Some(t.output_price), 0)
            .at_least(&at("cached_input_price"), t.cached_input_price, 0)
            .at_least(&at("cache_write_price"), t.cache_write_price, 0);
        previous = t.above_prompt_tokens;
    }
    checks
}

/// `Ok(None)` for a missing row: the caller names the field in its 422.
fn found<T>(result: Result<T, StoreError>) -> Result<Option<T>, ApiError> {
    match result {
        Ok(row) => Ok(Some(row)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Validates, creates and audits a deployment. Its model, region and provider stay locked
/// until the transaction ends, so none can vanish under it.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    new: &NewDeployment,
) -> Result<Deployment, ApiError> {
    let model = found(models::get_for_update(tx, new.model_id).await)?;
    // A region id that is not a slug names no region (and may hold NUL, which SQL refuses).
    let region = if Checks::default()
        .slug("region_id", &new.region_id)
        .done()
        .is_ok()
    {
        found(regions::get_for_update(tx, &new.region_id).await)?
    } else {
        None
    };
    let provider = found(providers::get_for_update(tx, new.provider_id).await)?;
    let settings = DeploymentSettings {
        input_price: new.input_price,
        output_price: new.output_price,
        cached_input_price: new.cached_input_price,
        cache_write_price: new.cache_write_price,
        price_tiers: new.price_tiers.clone(),
        weight: new.weight,
        connect_ms: new.connect_ms,
        first_byte_ms: new.first_byte_ms,
        total_ms: new.total_ms,
        max_staleness_ms: new.max_staleness_ms,
        cloud_region: new.cloud_region.clone(),
    };
    let checks = Checks::default()
        .check(model.is_some(), "model_id", "no such model")
        .check(region.is_some(), "region_id", "no such region")
        .check(provider.is_some(), "provider_id", "no such provider");
    let kind = provider.as_ref().map_or("", |p| p.kind.as_str());
    check(
        checks,
        kind,
        &new.upstream_model,
        &new.api_version,
        &settings,
    )
    .done()?;
    let deployment = deployments::create(
        tx,
        new.model_id,
        &new.region_id,
        new.provider_id,
        new.upstream_model.trim(),
        new.api_version.trim(),
        &settings,
    )
    .await?;
    audit::record(
        tx,
        actor,
        None,
        "create",
        "deployment",
        &deployment.id.to_string(),
        None,
        Some(json(&deployment)),
    )
    .await?;
    Ok(deployment)
}

/// Deploy a model through a provider account in a region (platform admins).
#[utoipa::path(post, path = "/deployments", tag = "deployments", request_body = NewDeployment,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Deployment), (status = 401), (status = 403), (status = 422)))]
async fn create_deployment(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Body<NewDeployment>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "deployments", None, &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let deployment = create(&mut tx, &principal.actor(), &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&deployment))
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// Deployments, by model, region or provider (platform admins).
#[utoipa::path(get, path = "/deployments", tag = "deployments", params(DeploymentQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Deployment>), (status = 401), (status = 403), (status = 422)))]
async fn list_deployments(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<DeploymentQuery>,
) -> Result<Json<Page<Deployment>>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let limit = page_limit(q.limit)?;
    Checks::default()
        .text("model", q.model.as_deref().unwrap_or_default())
        .text("region", q.region.as_deref().unwrap_or_default())
        .done()?;
    let model_id = match &q.model {
        None => None,
        Some(name) => match models::resolve(&state.pool, name).await {
            Ok(model) => Some(model.id),
            // Nothing is deployed of a model that does not exist.
            Err(StoreError::NotFound) => {
                return Ok(Json(Page {
                    items: Vec::new(),
                    next_cursor: None,
                }));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let filter = Filter {
        model_id,
        region_id: q.region.as_deref(),
        provider_id: q.provider_id,
    };
    Ok(Json(
        deployments::list(&state.pool, filter, q.cursor, limit).await?,
    ))
}

#[utoipa::path(get, path = "/deployments/{deployment_id}", tag = "deployments", params(("deployment_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Deployment), (status = 401), (status = 403), (status = 404)))]
async fn get_deployment(
    State(state): State<AppState>,
    principal: Principal,
    Path(deployment_id): Path<Uuid>,
) -> Result<Json<Deployment>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    Ok(Json(deployments::get(&state.pool, deployment_id).await?))
}

/// Change a deployment's upstream model, API version, prices, weight or timeouts
/// (platform admins).
#[utoipa::path(patch, path = "/deployments/{deployment_id}", tag = "deployments", params(("deployment_id" = Uuid, Path)), request_body = DeploymentUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Deployment), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_deployment(
    State(state): State<AppState>,
    principal: Principal,
    Path(deployment_id): Path<Uuid>,
    body: Result<Body<DeploymentUpdate>, ApiError>,
) -> Result<Json<Deployment>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(u) = body?;
    let mut tx = state.pool.begin().await?;
    let before = deployments::get_for_update(&mut tx, deployment_id).await?;
    let provider = providers::get_for_update(&mut tx, before.provider_id).await?;
    let old = &before.settings;
    let settings = DeploymentSettings {
        input_price: u.input_price.unwrap_or(old.input_price),
        output_price: u.output_price.unwrap_or(old.output_price),
        cached_input_price: u.cached_input_price.unwrap_or(old.cached_input_price),
        cache_write_price: u.cache_write_price.unwrap_or(old.cache_write_price),
        price_tiers: match &u.price_tiers {
            None => old.price_tiers.clone(),
            Some(tiers) => tiers.clone().unwrap_or_default(),
        },
        weight: u.weight.unwrap_or(old.weight),
        connect_ms: u.connect_ms.unwrap_or(old.connect_ms),
        first_byte_ms: u.first_byte_ms.unwrap_or(old.first_byte_ms),
        total_ms: u.total_ms.unwrap_or(old.total_ms),
        max_staleness_ms: u.max_staleness_ms.unwrap_or(old.max_staleness_ms),
        cloud_region: u
            .cloud_region
            .clone()
            .unwrap_or_else(|| old.cloud_region.clone()),
    };
    let upstream_model = u
        .upstream_model
        .as_deref()
        .unwrap_or(&before.upstream_model);
    let api_version = u.api_version.as_deref().unwrap_or(&before.api_version);
    check(
        Checks::default(),
        &provider.kind,
        upstream_model,
        api_version,
        &settings,
    )
    .done()?;
    let after = deployments::update(
        &mut tx,
        deployment_id,
        upstream_model.trim(),
        api_version.trim(),
        &settings,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "deployment",
        &deployment_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Remove a deployment (platform admins).
#[utoipa::path(delete, path = "/deployments/{deployment_id}", tag = "deployments", params(("deployment_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_deployment(
    State(state): State<AppState>,
    principal: Principal,
    Path(deployment_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let before = deployments::delete(&mut tx, deployment_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "delete",
        "deployment",
        &deployment_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
