//! The fleet: `GET /api/v1/gateways` (what every gateway runs, whether it refused
//! something, the usage events of it ingest quarantined, and the credentials gateway
//! processes enrolled for), the per-region enrollment tokens gateways enroll with, and
//! revoking either. Platform admins only: gateways serve every org.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::validate::{Body, Checks};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit;
use crate::store::config_errors::{self, ConfigError};
use crate::store::fleet::{self, EnrollmentToken, GatewayStatus};
use crate::store::gateway_credentials::{self, GatewayCredential};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways))
        .routes(routes!(create_enrollment_token, list_enrollment_tokens))
        .routes(routes!(revoke_enrollment_token))
        .routes(routes!(revoke_gateway_credential))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FleetQuery {
    /// Only gateways of this region.
    pub region: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Fleet {
    pub items: Vec<GatewayStatus>,
    /// Config the builder set aside: per region, each org whose data would not validate
    /// on gateways (and what was served instead), or the region itself when its catalog
    /// would not. Empty when every org's config is live.
    pub config_errors: Vec<ConfigError>,
    /// Every gateway process's credential (live ones and those expired within a day):
    /// which gateway, when issued and renewed, until when, whether revoked.
    #[serde(default)]
    pub credentials: Vec<GatewayCredential>,
}

/// Every gateway that ever connected: region, build, connection, the config version it
/// applied against the newest of its region, and its last refusal (NACK); and the orgs
/// whose config the builder set aside.
#[utoipa::path(get, path = "/gateways", tag = "gateways", params(FleetQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Fleet), (status = 401), (status = 403)))]
async fn list_gateways(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<FleetQuery>,
) -> Result<Json<Fleet>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    if let Some(region) = &query.region {
        Checks::default().text("region", region).done()?;
    }
    let items = fleet::list_gateways(&state.pool, query.region.as_deref()).await?;
    let config_errors = config_errors::list(&state.pool, query.region.as_deref()).await?;
    let credentials = gateway_credentials::list(&state.pool, query.region.as_deref()).await?;
    Ok(Json(Fleet {
        items,
        config_errors,
        credentials,
    }))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// What it is for, e.g. the deployment that uses it.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedEnrollmentToken {
    /// Shown once: set it as the gateways' TOLLGATE_CONTROL__ENROLLMENT_TOKEN.
    pub token: String,
    pub enrollment_token: EnrollmentToken,
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Mint a token for the region's gateways (the secret is shown once).
#[utoipa::path(post, path = "/regions/{region_id}/enrollment-tokens", tag = "gateways",
    params(("region_id" = String, Path)), request_body = NewEnrollmentToken,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = CreatedEnrollmentToken), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn create_enrollment_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(region_id): Path<String>,
    body: Result<Body<NewEnrollmentToken>, ApiError>,
) -> Result<(StatusCode, Json<CreatedEnrollmentToken>), ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    Checks::default()
        .text("region_id", &region_id)
        .text("name", &new.name)
        .done()?;
    if new.name.chars().count() > 200 {
        return Err(ApiError::invalid(vec![super::error::FieldError {
            field: "name".into(),
            message: "at most 200 characters".into(),
        }]));
    }
    let mut tx = state.pool.begin().await?;
    let (row, token) = fleet::create_token(&mut tx, &region_id, new.name.trim()).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "create",
        "enrollment_token",
        &row.id.to_string(),
        None,
        Some(json(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollmentToken {
            token,
            enrollment_token: row,
        }),
    ))
}

#[utoipa::path(get, path = "/regions/{region_id}/enrollment-tokens", tag = "gateways",
    params(("region_id" = String, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<EnrollmentToken>), (status = 401), (status = 403)))]
async fn list_enrollment_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Path(region_id): Path<String>,
) -> Result<Json<Vec<EnrollmentToken>>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    Checks::default().text("region_id", &region_id).done()?;
    Ok(Json(fleet::list_tokens(&state.pool, &region_id).await?))
}

/// Revoke a token: gateways can no longer enroll with it, and the credentials minted
/// with it stop counting — their open streams end within a couple of seconds.
#[utoipa::path(delete, path = "/regions/{region_id}/enrollment-tokens/{token_id}", tag = "gateways",
    params(("region_id" = String, Path), ("token_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = EnrollmentToken), (status = 401), (status = 403), (status = 404)))]
async fn revoke_enrollment_token(
    State(state): State<AppState>,
    principal: Principal,
    Path((region_id, token_id)): Path<(String, Uuid)>,
) -> Result<Json<EnrollmentToken>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    Checks::default().text("region_id", &region_id).done()?;
    let mut tx = state.pool.begin().await?;
    let row = fleet::revoke_token(&mut tx, &region_id, token_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "revoke",
        "enrollment_token",
        &row.id.to_string(),
        None,
        Some(json(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(row))
}

/// Revoke one gateway process's credential: its streams end within a couple of seconds
/// and it cannot be renewed. The process enrolls again with its enrollment token if that
/// is still live; revoke the token to shut a region's gateways out.
#[utoipa::path(delete, path = "/gateways/credentials/{credential_id}", tag = "gateways",
    params(("credential_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = GatewayCredential), (status = 401), (status = 403), (status = 404)))]
async fn revoke_gateway_credential(
    State(state): State<AppState>,
    principal: Principal,
    Path(credential_id): Path<Uuid>,
) -> Result<Json<GatewayCredential>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let row = gateway_credentials::revoke(&mut tx, credential_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "revoke",
        "gateway_credential",
        &row.id.to_string(),
        None,
        Some(json(&row)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(row))
}
