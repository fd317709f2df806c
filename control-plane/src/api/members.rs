//! `/api/v1/orgs/{org_id}/members`: org admins give people roles in the org or a team,
//! and take them away (effective from the person's next request).

use axum::Json;
use axum::extract::{Path, State};
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
use crate::store::users::{self, Membership};

pub const ROLES: &[&str] = &["org_admin", "team_admin", "member", "viewer"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_member, list_members))
        .routes(routes!(remove_member))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// The person; created on first use (they log in with it later).
    #[schema(format = Email, pattern = "^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$")]
    pub email: String,
    /// `org_admin`, `team_admin`, `member` or `viewer`.
    #[schema(pattern = "^(org_admin|team_admin|member|viewer)$")]
    pub role: String,
    /// For a role within one team of the org.
    pub team_id: Option<Uuid>,
}

/// Give a person a role (org admins).
#[utoipa::path(post, path = "/orgs/{org_id}/members", tag = "members", params(("org_id" = Uuid, Path)), request_body = NewMember,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = Membership), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewMember>, ApiError>,
) -> Result<(StatusCode, Json<Membership>), ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let Body(new) = body?;
    let mut checks = Checks::default()
        .email("email", &new.email)
        .one_of("role", &new.role, ROLES);
    if new.role == "team_admin" && new.team_id.is_none() {
        checks = checks.one_of(
            "team_id",
            "",
            &["a team id (team_admin is a role within a team)"],
        );
    }
    checks.done()?;
    let mut tx = state.pool.begin().await?;
    let user = users::upsert(&mut tx, &new.email, false).await?;
    let membership =
        users::add_membership(&mut tx, user.id, org_id, new.team_id, &new.role).await?;
    let after = serde_json::to_value(&membership).unwrap_or_default();
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "membership",
        &membership.id.to_string(),
        None,
        Some(after),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(membership)))
}

#[utoipa::path(get, path = "/orgs/{org_id}/members", tag = "members", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Membership>), (status = 401), (status = 404)))]
async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Membership>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    Ok(Json(users::list_members(&state.pool, org_id).await?))
}

/// Remove a membership (org admins): the role it gave ends with the person's next request.
#[utoipa::path(delete, path = "/orgs/{org_id}/members/{membership_id}", tag = "members",
    params(("org_id" = Uuid, Path), ("membership_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, membership_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let mut tx = state.pool.begin().await?;
    let before = users::remove_membership(&mut tx, org_id, membership_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "membership",
        &membership_id.to_string(),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
