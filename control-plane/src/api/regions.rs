//! `/api/v1/regions`: where gateway fleets run. Platform admins only. A region cannot be
//! deleted while deployments use it (409).
//!
//! [`create`] is shared with `tollgate-control regions create`, so both validate and audit
//! alike.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::idempotent::Idempotency;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, page_limit};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::Tx;
use crate::store::audit::{self, Actor};
use crate::store::regions::{self, Region, RegionPage};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_region, list_regions))
        .routes(routes!(get_region, update_region, delete_region))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegion {
    /// Slug, unique, e.g. `eu-west`; gateways name it in `server.region`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub id: String,
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
    /// Where callers reach the region's gateways: an `http(s)://` origin and optional
    /// path, no query, fragment or credentials (e.g. `https://llm.eu.example.com`).
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub public_url: Option<String>,
}

/// Absent fields keep their value; `public_url: null` unpublishes the URL.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub public_url: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegionQuery {
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn json(region: &Region) -> serde_json::Value {
    serde_json::to_value(region).unwrap_or_default()
}

/// A region id that is not a slug names no region (and must not reach SQL: it may hold NUL).
fn shaped(id: &str) -> Result<(), ApiError> {
    Checks::default()
        .slug("region_id", id)
        .done()
        .map_err(|_| ApiError::not_found())
}

/// Validates, creates and audits a region.
pub async fn create(tx: &mut Tx<'_>, actor: &Actor, new: &NewRegion) -> Result<Region, ApiError> {
    let mut checks = Checks::default()
        .slug("id", &new.id)
        .name("name", &new.name);
    if let Some(url) = &new.public_url {
        checks = checks.base_url("public_url", url);
    }
    checks.done()?;
    let region = regions::create(tx, &new.id, new.name.trim(), new.public_url.as_deref()).await?;
    audit::record(
        tx,
        actor,
        None,
        "create",
        "region",
        &region.id,
        None,
        Some(json(&region)),
    )
    .await?;
    Ok(region)
}

/// Add a region (platform admins).
#[utoipa::path(post, path = "/regions", tag = "regions", request_body = NewRegion,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Region), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_region(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Body<NewRegion>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "regions", None, &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let region = create(&mut tx, &principal.actor(), &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&region))
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// Regions, ordered by id (platform admins).
#[utoipa::path(get, path = "/regions", tag = "regions", params(RegionQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = RegionPage), (status = 401), (status = 403), (status = 422)))]
async fn list_regions(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<RegionQuery>,
) -> Result<Json<RegionPage>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let limit = page_limit(q.limit)?;
    if let Some(cursor) = &q.cursor {
        Checks::default().text("cursor", cursor).done()?;
    }
    Ok(Json(
        regions::list(&state.pool, q.cursor.as_deref(), limit).await?,
    ))
}

#[utoipa::path(get, path = "/regions/{region_id}", tag = "regions", params(("region_id" = String, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Region), (status = 401), (status = 403), (status = 404)))]
async fn get_region(
    State(state): State<AppState>,
    principal: Principal,
    Path(region_id): Path<String>,
) -> Result<Json<Region>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    shaped(&region_id)?;
    Ok(Json(regions::get(&state.pool, &region_id).await?))
}

/// Rename a region or set its public URL (platform admins). Its id is what gateways
/// name; it never changes.
#[utoipa::path(patch, path = "/regions/{region_id}", tag = "regions", params(("region_id" = String, Path)), request_body = RegionUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Region), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_region(
    State(state): State<AppState>,
    principal: Principal,
    Path(region_id): Path<String>,
    body: Result<Body<RegionUpdate>, ApiError>,
) -> Result<Json<Region>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    shaped(&region_id)?;
    let Body(update) = body?;
    let mut checks = Checks::default();
    if let Some(name) = &update.name {
        checks = checks.name("name", name);
    }
    if let Some(Some(url)) = &update.public_url {
        checks = checks.base_url("public_url", url);
    }
    checks.done()?;
    let mut tx = state.pool.begin().await?;
    let before = regions::get_for_update(&mut tx, &region_id).await?;
    let after = regions::update(
        &mut tx,
        &region_id,
        update.name.as_deref().map_or(&before.name, str::trim),
        match &update.public_url {
            None => before.public_url.as_deref(),
            Some(url) => url.as_deref(),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "region",
        &region_id,
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Remove a region no deployment uses (platform admins); 409 while any does.
#[utoipa::path(delete, path = "/regions/{region_id}", tag = "regions", params(("region_id" = String, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn delete_region(
    State(state): State<AppState>,
    principal: Principal,
    Path(region_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    shaped(&region_id)?;
    let mut tx = state.pool.begin().await?;
    let before = regions::delete(&mut tx, &region_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "delete",
        "region",
        &region_id,
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
