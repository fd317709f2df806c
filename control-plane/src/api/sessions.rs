//! `/api/v1/sessions`: a person lists and ends its own browser sessions;
//! `/api/v1/orgs/{org_id}/sessions`: an org admin those of the org's members. Ending
//! one makes its cookie useless from the next request on.

use axum::Json;
use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit;
use crate::store::sessions::{self, Session};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_own))
        .routes(routes!(end_own))
        .routes(routes!(list_org))
        .routes(routes!(end_in_org))
}

/// The caller's live sessions, newest first.
#[utoipa::path(get, path = "/sessions", tag = "sessions",
    responses((status = 200, body = Vec<Session>), (status = 401)))]
async fn list_own(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Session>>, ApiError> {
    Ok(Json(
        sessions::list_sessions(&state.pool, Some(principal.user_id), None).await?,
    ))
}

/// End one of the caller's sessions (a platform admin: anyone's).
#[utoipa::path(post, path = "/sessions/{session_id}/end", tag = "sessions",
    params(("session_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Session), (status = 401), (status = 403), (status = 404)))]
async fn end_own(
    State(state): State<AppState>,
    principal: Principal,
    Path(session_id): Path<Uuid>,
) -> Result<Json<Session>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = sessions::get_session(&mut tx, session_id).await?;
    if before.user_id != principal.user_id {
        require(&principal, Permission::ManagePlatform).map_err(|_| ApiError::not_found())?;
    }
    let after = end(&mut tx, &principal, None, before).await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Live sessions of the org's members (org admins).
#[utoipa::path(get, path = "/orgs/{org_id}/sessions", tag = "sessions", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Session>), (status = 401), (status = 403), (status = 404)))]
async fn list_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Session>>, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    Ok(Json(
        sessions::list_sessions(&state.pool, None, Some(org_id)).await?,
    ))
}

/// End a session of one of the org's members (org admins).
#[utoipa::path(post, path = "/orgs/{org_id}/sessions/{session_id}/end", tag = "sessions",
    params(("org_id" = Uuid, Path), ("session_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Session), (status = 401), (status = 403), (status = 404)))]
async fn end_in_org(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, session_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Session>, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let members = sessions::list_sessions(&state.pool, None, Some(org_id)).await?;
    if !members.iter().any(|s| s.id == session_id) {
        return Err(ApiError::not_found());
    }
    let mut tx = state.pool.begin().await?;
    let before = sessions::get_session(&mut tx, session_id).await?;
    let after = end(&mut tx, &principal, Some(org_id), before).await?;
    tx.commit().await?;
    Ok(Json(after))
}

async fn end(
    tx: &mut crate::store::Tx<'_>,
    principal: &Principal,
    org_id: Option<Uuid>,
    before: Session,
) -> Result<Session, ApiError> {
    let after = sessions::end_session(tx, before.id).await?;
    audit::record(
        tx,
        &principal.actor(),
        org_id,
        "update",
        "session",
        &before.id.to_string(),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&after).unwrap_or_default()),
    )
    .await?;
    Ok(after)
}
