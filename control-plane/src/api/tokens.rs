//! `/api/v1/tokens`: admin API tokens. Everyone lists and revokes its own tokens; platform
//! admins those of everyone. A token is a person's credential, not a role in an org, so
//! revoking one's own needs no role at all (the permission table is about what roles do
//! in orgs and teams; another person's token is [`Permission::ManagePlatform`]).
//! Tokens are minted by the operator CLI (`tollgate-control tokens create`), never here:
//! a leaked token must not be able to mint its own successor.

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
use crate::store::users::{self, Token};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens))
        .routes(routes!(revoke_token))
}

/// The caller's tokens (a platform admin's: everyone's), newest first; never a secret.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, body = Vec<Token>), (status = 401)))]
async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<Token>>, ApiError> {
    let whose = (!principal.allows(Permission::ManagePlatform)).then_some(principal.user_id);
    Ok(Json(users::list_tokens(&state.pool, whose).await?))
}

/// Revoke a token: refused (401) from the next request on. Revoking one's own token
/// with itself is allowed and is the last thing it does.
#[utoipa::path(post, path = "/tokens/{token_id}/revoke", tag = "tokens",
    params(("token_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Token), (status = 401), (status = 404)))]
async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(token_id): Path<Uuid>,
) -> Result<Json<Token>, ApiError> {
    let mut tx = state.pool.begin().await?;
    let before = users::get_token(&mut tx, token_id).await?;
    if before.user_id != principal.user_id {
        // Someone else's token: as good as missing unless the caller runs the platform.
        require(&principal, Permission::ManagePlatform).map_err(|_| ApiError::not_found())?;
    }
    let after = users::revoke_token(&mut tx, token_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "admin_token",
        &token_id.to_string(),
        Some(serde_json::to_value(&before).unwrap_or_default()),
        Some(serde_json::to_value(&after).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}
