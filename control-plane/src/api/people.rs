//! `/api/v1/users/{user_id}/deactivate`: offboarding at once (platform admins). The
//! person's sessions end, its tokens are revoked, and its keys are revoked or handed to
//! their team (no owner), as the admin chooses — one transaction, audited.

use axum::Json;
use axum::extract::{Path, State};
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
use crate::store::sessions::{self, Deactivated};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(deactivate))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deactivation {
    /// `revoke` (the default) or `hand_to_team`: what becomes of the keys it owns.
    #[schema(pattern = "^(revoke|hand_to_team)$")]
    pub keys: Option<String>,
}

/// Deactivate a person at once (platform admins).
#[utoipa::path(post, path = "/users/{user_id}/deactivate", tag = "people",
    params(("user_id" = Uuid, Path)), request_body = Deactivation,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 200, body = Deactivated), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn deactivate(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<Uuid>,
    body: Result<Body<Deactivation>, ApiError>,
) -> Result<Json<Deactivated>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(how) = body?;
    let keys = how.keys.unwrap_or_else(|| "revoke".into());
    Checks::default()
        .one_of("keys", &keys, &["revoke", "hand_to_team"])
        .done()?;
    let mut tx = state.pool.begin().await?;
    let done = sessions::deactivate_user(&mut tx, user_id, keys == "revoke").await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "user",
        &user_id.to_string(),
        None,
        Some(serde_json::json!({"deactivated": true, "outcome": done})),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(done))
}
