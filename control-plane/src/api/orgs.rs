//! `/api/v1/orgs`: platform admins create and delete orgs; members see theirs.

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
use super::validate::{Body, Checks};
use super::{AppState, PageQuery};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::orgs::{self, Org};
use crate::store::{Page, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org, update_org, delete_org))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
}

pub use crate::service::orgs::NewOrg;
use crate::service::orgs::json;

/// [`Permission::ReadOrg`], then 404 unless the org exists.
pub async fn require_read(
    pool: &crate::store::Pool,
    principal: &Principal,
    org_id: Uuid,
) -> Result<(), ApiError> {
    crate::service::orgs::require_read(pool, principal, org_id).await?;
    Ok(())
}

/// Create an org (platform admins). Send `Idempotency-Key` to make retries safe.
#[utoipa::path(post, path = "/orgs", tag = "orgs", request_body = NewOrg,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = Org), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_org(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Body<NewOrg>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "orgs", None, &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let org = crate::service::orgs::create(&mut tx, &principal, &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&org))
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// Orgs the caller can see.
#[utoipa::path(get, path = "/orgs", tag = "orgs", params(PageQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Org>), (status = 401), (status = 422)))]
async fn list_orgs(
    State(state): State<AppState>,
    principal: Principal,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Org>>, ApiError> {
    Ok(Json(
        crate::service::orgs::list(&state, &principal, page.cursor, page.limit()?).await?,
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}", tag = "orgs", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Org), (status = 401), (status = 404)))]
async fn get_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Org>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    Ok(Json(orgs::get(&state.pool, org_id).await?))
}

/// Rename an org (org admins).
#[utoipa::path(patch, path = "/orgs/{org_id}", tag = "orgs", params(("org_id" = Uuid, Path)), request_body = OrgUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 200, body = Org), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<OrgUpdate>, ApiError>,
) -> Result<Json<Org>, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let Body(update) = body?;
    Checks::default().name("name", &update.name).done()?;
    let mut tx = state.pool.begin().await?;
    let before = orgs::get_for_update(&mut tx, org_id).await?;
    let after = orgs::rename(&mut tx, org_id, update.name.trim()).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "org",
        &org_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Delete an org and everything in it (platform admins).
#[utoipa::path(delete, path = "/orgs/{org_id}", tag = "orgs", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let before = orgs::get_for_update(&mut tx, org_id).await?;
    orgs::delete(&mut tx, org_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "org",
        &org_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
