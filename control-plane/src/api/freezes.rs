//! `/api/v1/orgs/{org_id}/freezes`: the emergency stop. A freeze on an org, team, project
//! or key makes every gateway refuse the calls it covers (403, code `frozen`) until it is
//! lifted; the snapshot carries it, so it reaches the fleet as fast as a key revocation.
//! Who may freeze or lift follows the scope, as for budgets and rate limits
//! ([`super::scope`]); anyone in the org sees the active ones.
//!
//! The rules live in [`freeze`], [`lift`] and [`list`], plain functions the handlers (and
//! later the web UI) call.

use axum::Json;
use axum::extract::{Path, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::validate::{Body, Checks};
use super::{AppState, scope};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::freezes::{self, Freeze};
use crate::store::{Pool, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_freeze, list_freezes))
        .routes(routes!(lift_freeze))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFreeze {
    /// `org`, `team`, `project` or `key`.
    #[schema(pattern = "^(org|team|project|key)$")]
    pub scope_kind: String,
    /// The org's, team's, project's or key's id.
    pub scope_id: Uuid,
    /// Why calls are stopped; callers see it in the gateway's refusal.
    #[schema(pattern = "\\S", min_length = 1, max_length = 500)]
    pub reason: String,
}

/// Longest reason, in characters (the column allows the same).
const MAX_REASON: usize = 500;

fn json(freeze: &Freeze) -> serde_json::Value {
    serde_json::to_value(freeze).unwrap_or_default()
}

/// Freezes a scope of `org_id`: checks the principal may (404 outside its orgs, 403
/// without the role), validates, stores and audits. 409 if the scope is frozen already.
pub async fn freeze(
    pool: &Pool,
    principal: &Principal,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
    reason: &str,
) -> Result<Freeze, ApiError> {
    super::orgs::require_read(pool, principal, org_id).await?;
    let reason = reason.trim();
    Checks::default()
        .one_of("scope_kind", scope_kind, scope::KINDS)
        .check(
            !reason.is_empty() && reason.chars().count() <= MAX_REASON && !reason.contains('\0'),
            "reason",
            "1–500 characters, not only spaces, no NUL",
        )
        .done()?;
    scope::require_admin(pool, principal, org_id, scope_kind, scope_id).await?;
    let actor = principal.actor();
    let mut tx = pool.begin().await?;
    let freeze =
        freezes::create(&mut tx, org_id, scope_kind, scope_id, reason, &actor.name).await?;
    audit::record(
        &mut tx,
        &actor,
        Some(org_id),
        "create",
        "freeze",
        &freeze.id.to_string(),
        None,
        Some(json(&freeze)),
    )
    .await?;
    tx.commit().await?;
    Ok(freeze)
}

/// Lifts an active freeze (whoever may set it); 409 if it was lifted already.
pub async fn lift(
    pool: &Pool,
    principal: &Principal,
    org_id: Uuid,
    freeze_id: Uuid,
) -> Result<Freeze, ApiError> {
    require(principal, Permission::ReadOrg(org_id))?;
    let current = freezes::get(pool, org_id, freeze_id).await?;
    scope::require_admin_of_existing(
        pool,
        principal,
        org_id,
        &current.scope_kind,
        current.scope_id,
    )
    .await?;
    let actor = principal.actor();
    let mut tx = pool.begin().await?;
    let before = freezes::get_for_update(&mut tx, org_id, freeze_id).await?;
    if before.lifted_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "Already lifted",
            "this freeze was lifted already",
        ));
    }
    let after = freezes::lift(&mut tx, org_id, freeze_id, &actor.name).await?;
    audit::record(
        &mut tx,
        &actor,
        Some(org_id),
        "update",
        "freeze",
        &freeze_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

/// The org's active freezes, oldest first (anyone in the org).
pub async fn list(
    pool: &Pool,
    principal: &Principal,
    org_id: Uuid,
) -> Result<Vec<Freeze>, ApiError> {
    super::orgs::require_read(pool, principal, org_id).await?;
    Ok(freezes::active(pool, org_id).await?)
}

/// Freeze an org, team or project or a key: every gateway refuses its calls (403,
/// code `frozen`) until the freeze is lifted. Org admins for the org and its teams; team
/// admins for their projects and keys.
#[utoipa::path(post, path = "/orgs/{org_id}/freezes", tag = "freezes", params(("org_id" = Uuid, Path)),
    request_body = NewFreeze,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Freeze), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_freeze(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewFreeze>, ApiError>,
) -> Result<(StatusCode, Json<Freeze>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    let freeze = freeze(
        &state.pool,
        &principal,
        org_id,
        &new.scope_kind,
        new.scope_id,
        &new.reason,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(freeze)))
}

/// The org's active freezes.
#[utoipa::path(get, path = "/orgs/{org_id}/freezes", tag = "freezes", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Freeze>), (status = 401), (status = 404)))]
async fn list_freezes(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Freeze>>, ApiError> {
    Ok(Json(list(&state.pool, &principal, org_id).await?))
}

/// Lift a freeze: calls flow again once gateways have the next snapshot.
#[utoipa::path(post, path = "/orgs/{org_id}/freezes/{freeze_id}/lift", tag = "freezes",
    params(("org_id" = Uuid, Path), ("freeze_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Freeze), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn lift_freeze(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, freeze_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Freeze>, ApiError> {
    Ok(Json(
        lift(&state.pool, &principal, org_id, freeze_id).await?,
    ))
}
