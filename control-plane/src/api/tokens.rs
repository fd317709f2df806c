//! `/api/v1/tokens`: admin API tokens. Everyone lists and revokes its own tokens; platform
//! admins those of everyone. A token is a person's credential, not a role in an org, so
//! revoking one's own needs no role at all (the permission table is about what roles do
//! in orgs and teams; another person's token is [`Permission::ManagePlatform`]).
//! Operators mint tokens with the CLI (`tollgate-control tokens create`); people mint
//! personal tokens here, but only from a signed-in browser session — a leaked token must
//! not be able to mint its own successor. A personal token acts with its owner's roles
//! as they are at each request (a removed membership counts at once), optionally
//! narrowed to read-only, and dies with its owner's deactivation.

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
use crate::store::users::{self, Token};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for, e.g. `ci-deploy`.
    pub name: String,
    /// Days until it expires (1–365, default 90).
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<i64>,
    /// Only the reads of its owner's roles.
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MintedToken {
    #[serde(flatten)]
    pub token: Token,
    /// The secret, shown this once.
    pub secret: String,
}

/// Mint a personal API token (from a signed-in browser session only).
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = MintedToken), (status = 401), (status = 403), (status = 422)))]
async fn mint_token(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Body<NewToken>, ApiError>,
) -> Result<(StatusCode, Json<MintedToken>), ApiError> {
    if principal.session_id.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "personal tokens are minted from a signed-in browser session, not with a token",
        ));
    }
    let Body(new) = body?;
    let days = new.expires_in_days.unwrap_or(90);
    Checks::default()
        .short_text("name", &new.name)
        .check(!new.name.is_empty(), "name", "must not be empty")
        .check(
            (1..=365).contains(&days),
            "expires_in_days",
            "must be between 1 and 365",
        )
        .done()?;
    let expires_at = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    let mut tx = state.pool.begin().await?;
    let (token, secret) = users::create_token(
        &mut tx,
        principal.user_id,
        &new.name,
        expires_at,
        new.read_only,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "create",
        "admin_token",
        &token.id.to_string(),
        None,
        Some(serde_json::to_value(&token).unwrap_or_default()),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(MintedToken { token, secret })))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, mint_token))
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
