//! An org's sign-in setup: its own IdP connection (`/orgs/{org_id}/idp-connection`, org
//! admins; the client secret is sealed at rest and never shown again), the email domains
//! it owns (`/orgs/{org_id}/domains`, platform admins: a domain decides which IdP may
//! speak for an address), and group → role mappings (`/orgs/{org_id}/group-mappings`,
//! org admins). A mapping names the connection it reads: the org's own or the platform
//! IdP — never another org's. Every change is audited.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, FieldError};
use super::members::ROLES;
use super::validate::{Body, Checks};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit;
use crate::store::idp::{self, Connection, Domain, Mapping};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_connection, get_connection, delete_connection))
        .routes(routes!(add_domain, list_domains))
        .routes(routes!(remove_domain))
        .routes(routes!(add_mapping, list_mappings))
        .routes(routes!(remove_mapping))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// The IdP's issuer URL (https; discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Tollgate's client id at that IdP.
    pub client_id: String,
    /// Tollgate's client secret there: sealed at rest, never returned.
    pub client_secret: String,
    /// The ID token claim with the person's groups (default `groups`).
    pub groups_claim: Option<String>,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

fn platform_issuer(state: &AppState) -> Option<String> {
    state
        .sign_in
        .as_ref()
        .and_then(|s| s.platform.as_ref())
        .map(|p| p.issuer.clone())
}

/// Set the org's own identity provider (org admins); replaces the one it had.
#[utoipa::path(put, path = "/orgs/{org_id}/idp-connection", tag = "sign-in", params(("org_id" = Uuid, Path)), request_body = NewConnection,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 200, body = Connection), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn put_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewConnection>, ApiError>,
) -> Result<Json<Connection>, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let Body(new) = body?;
    let issuer = new.issuer.trim_end_matches('/').to_owned();
    let groups_claim = new.groups_claim.unwrap_or_else(|| "groups".into());
    Checks::default()
        .http_url("issuer", &issuer)
        .check(
            platform_issuer(&state).as_deref() != Some(issuer.as_str()),
            "issuer",
            "is the platform's identity provider, which every org shares already",
        )
        .short_text("client_id", &new.client_id)
        .check(!new.client_id.is_empty(), "client_id", "must not be empty")
        .check(
            !new.client_secret.is_empty(),
            "client_secret",
            "must not be empty",
        )
        .short_text("groups_claim", &groups_claim)
        .check(
            !groups_claim.is_empty(),
            "groups_claim",
            "must not be empty",
        )
        .done()?;
    let sealer = state.sealer.as_ref().ok_or_else(|| {
        invalid(
            "client_secret",
            "cannot be stored: sign_in.master_key is not set on this control plane",
        )
    })?;
    let sealed = sealer.seal(&new.client_secret, org_id.as_bytes());
    let mut tx = state.pool.begin().await?;
    let before = idp::get_connection(&state.pool, org_id).await.ok();
    let after = idp::put_connection(
        &mut tx,
        org_id,
        &issuer,
        &new.client_id,
        &sealed,
        &groups_claim,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        if before.is_some() { "update" } else { "create" },
        "idp_connection",
        &after.id.to_string(),
        before.map(|b| serde_json::to_value(b).unwrap_or_default()),
        Some(serde_json::to_value(&after).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

#[utoipa::path(get, path = "/orgs/{org_id}/idp-connection", tag = "sign-in", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Connection), (status = 401), (status = 404)))]
async fn get_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Connection>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    Ok(Json(idp::get_connection(&state.pool, org_id).await?))
}

/// Remove the org's own IdP: its people sign in with the platform IdP again.
#[utoipa::path(delete, path = "/orgs/{org_id}/idp-connection", tag = "sign-in", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_connection(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let mut tx = state.pool.begin().await?;
    let before = idp::delete_connection(&mut tx, org_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "idp_connection",
        &before.id.to_string(),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// An email domain, e.g. `example.com`; it belongs to one org only.
    #[schema(pattern = "^[a-z0-9.-]+\\.[a-z]{2,}$")]
    pub domain: String,
}

/// Assign an email domain to the org (platform admins): sign-in with such an address
/// goes to the org's IdP, and no other org's IdP may sign it in.
#[utoipa::path(post, path = "/orgs/{org_id}/domains", tag = "sign-in", params(("org_id" = Uuid, Path)), request_body = NewDomain,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = Domain), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn add_domain(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewDomain>, ApiError>,
) -> Result<(StatusCode, Json<Domain>), ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let domain = new.domain.to_ascii_lowercase();
    let well_formed = domain.contains('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    Checks::default()
        .check(
            well_formed,
            "domain",
            "must be a domain name such as example.com",
        )
        .done()?;
    let mut tx = state.pool.begin().await?;
    let created = idp::add_domain(&mut tx, org_id, &domain).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "org_domain",
        &created.domain,
        None,
        Some(serde_json::to_value(&created).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/orgs/{org_id}/domains", tag = "sign-in", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Domain>), (status = 401), (status = 404)))]
async fn list_domains(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Domain>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    Ok(Json(idp::list_domains(&state.pool, org_id).await?))
}

#[utoipa::path(delete, path = "/orgs/{org_id}/domains/{domain}", tag = "sign-in",
    params(("org_id" = Uuid, Path), ("domain" = String, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn remove_domain(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, domain)): Path<(Uuid, String)>,
) -> Result<StatusCode, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let before = idp::remove_domain(&mut tx, org_id, &domain).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "org_domain",
        &before.domain,
        Some(serde_json::to_value(&before).unwrap_or_default()),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMapping {
    /// The connection whose tokens are read: the org's own IdP (the default when it has
    /// one) or the platform IdP (the default otherwise).
    pub issuer: Option<String>,
    /// The claim read (default: the connection's groups claim).
    pub claim: Option<String>,
    /// The claim value (e.g. a group name) that grants the role.
    pub value: String,
    /// `org_admin`, `team_admin`, `member` or `viewer`.
    #[schema(pattern = "^(org_admin|team_admin|member|viewer)$")]
    pub role: String,
    /// For a role within one team of the org.
    pub team_id: Option<Uuid>,
}

/// Map an IdP group (or any claim value) to a role in the org (org admins). Takes
/// effect at each person's next sign-in, which adds and removes what mappings give.
#[utoipa::path(post, path = "/orgs/{org_id}/group-mappings", tag = "sign-in", params(("org_id" = Uuid, Path)), request_body = NewMapping,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = Mapping), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn add_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewMapping>, ApiError>,
) -> Result<(StatusCode, Json<Mapping>), ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let Body(new) = body?;
    let own = idp::get_connection(&state.pool, org_id).await.ok();
    let platform = platform_issuer(&state);
    let allowed: Vec<String> = own
        .iter()
        .map(|c| c.issuer.clone())
        .chain(platform.clone())
        .collect();
    let issuer = match &new.issuer {
        Some(issuer) => issuer.trim_end_matches('/').to_owned(),
        None => allowed.first().cloned().ok_or_else(|| {
            invalid(
                "issuer",
                "the org has no identity provider and sign-in is not configured",
            )
        })?,
    };
    let default_claim = match (&own, &state.sign_in) {
        (Some(c), _) if c.issuer == issuer => c.groups_claim.clone(),
        (_, Some(s)) => s
            .platform
            .as_ref()
            .map(|p| p.groups_claim.clone())
            .unwrap_or_else(|| "groups".into()),
        _ => "groups".into(),
    };
    let claim = new.claim.clone().unwrap_or(default_claim);
    let mut checks = Checks::default()
        .check(
            allowed.contains(&issuer),
            "issuer",
            "must be the org's own identity provider or the platform's",
        )
        .short_text("claim", &claim)
        .check(!claim.is_empty(), "claim", "must not be empty")
        .short_text("value", &new.value)
        .check(!new.value.is_empty(), "value", "must not be empty")
        .one_of("role", &new.role, ROLES);
    if new.role == "team_admin" && new.team_id.is_none() {
        checks = checks.check(false, "team_id", "team_admin is a role within a team");
    }
    checks.done()?;
    let mut tx = state.pool.begin().await?;
    let created = idp::add_mapping(
        &mut tx,
        org_id,
        &issuer,
        &claim,
        &new.value,
        &new.role,
        new.team_id,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "group_mapping",
        &created.id.to_string(),
        None,
        Some(serde_json::to_value(&created).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/orgs/{org_id}/group-mappings", tag = "sign-in", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Mapping>), (status = 401), (status = 404)))]
async fn list_mappings(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Mapping>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    Ok(Json(idp::list_mappings(&state.pool, org_id).await?))
}

/// Remove a mapping (org admins): the roles it gave go at each person's next sign-in.
#[utoipa::path(delete, path = "/orgs/{org_id}/group-mappings/{mapping_id}", tag = "sign-in",
    params(("org_id" = Uuid, Path), ("mapping_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn remove_mapping(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, mapping_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let mut tx = state.pool.begin().await?;
    let before = idp::remove_mapping(&mut tx, org_id, mapping_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "group_mapping",
        &mapping_id.to_string(),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
