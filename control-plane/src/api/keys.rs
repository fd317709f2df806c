//! `/api/v1/orgs/{org_id}/keys`: virtual keys. The full key (`tg_<public id>_<secret>`)
//! is in the create and rotate answers only — never again, and never stored.
//!
//! Who may do what ([`crate::auth::rbac::TABLE`]): team and org admins manage every key
//! of their teams; a member of a team mints and manages only keys it owns, in that team;
//! viewers and org-wide members mint nothing; org-wide readers see all keys.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use super::idempotent::Idempotency;
use super::patch::{nullable, nullable_rfc3339};
use super::validate::{Body, Checks};
use super::{AppState, models, page_limit, teams};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::keys::{self, Key};
use crate::store::{Page, audit};

use crate::service::keys::{self as service, KeyFilter, json, require_manage};
pub use crate::service::keys::{CreatedKey, NewKey};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// How long the old key keeps working (seconds, 0–2592000; default 86400).
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_seconds: Option<i64>,
}

/// Absent fields keep their value; `expires_at: null` makes the key never expire.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// Narrows the team's allow-list: `null` = as the team, `[]` = no model; absent =
    /// unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
    /// RFC 3339, in the future. Not for a rotated key (its grace deadline is its expiry).
    #[serde(default, deserialize_with = "nullable_rfc3339")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<OffsetDateTime>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    pub team_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    /// `active` or `revoked`.
    pub status: Option<String>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<Uuid>,
}

/// Mint a key. Admins of the team create keys for it; members create their own.
#[utoipa::path(post, path = "/orgs/{org_id}/keys", tag = "keys", params(("org_id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    request_body = NewKey,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = CreatedKey), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Body<NewKey>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "keys", Some(org_id), &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let created = service::create(&state, &mut tx, &principal, org_id, &new).await?;
    // A retry gets the key without its secret: the secret is shown once and never stored.
    idempotency
        .remember(
            &mut tx,
            &principal,
            StatusCode::CREATED,
            &json(&created.info),
        )
        .await?;
    tx.commit().await?;
    Ok(axum::response::IntoResponse::into_response((
        StatusCode::CREATED,
        Json(created),
    )))
}

#[utoipa::path(get, path = "/orgs/{org_id}/keys", tag = "keys", params(("org_id" = Uuid, Path), KeyQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Key>), (status = 401), (status = 404), (status = 422)))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    Query(q): Query<KeyQuery>,
) -> Result<Json<Page<Key>>, ApiError> {
    let filter = KeyFilter {
        team_id: q.team_id,
        project_id: q.project_id,
        status: q.status,
    };
    Ok(Json(
        service::list(
            &state,
            &principal,
            org_id,
            &filter,
            q.cursor,
            page_limit(q.limit)?,
        )
        .await?,
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}/keys/{key_id}", tag = "keys",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Key), (status = 401), (status = 404)))]
async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Key>, ApiError> {
    Ok(Json(
        service::get(&state, &principal, org_id, key_id).await?,
    ))
}

/// Rename a key, change its allow-list or expiry; never its secret (rotate for that).
/// Admins of its team change any key of it; members only their own.
#[utoipa::path(patch, path = "/orgs/{org_id}/keys/{key_id}", tag = "keys",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)), request_body = KeyUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 200, body = Key), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<KeyUpdate>, ApiError>,
) -> Result<Json<Key>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(update) = body?;
    let mut checks = Checks::default();
    if let Some(name) = &update.name {
        checks = checks.short_text("name", name);
    }
    if let Some(Some(allowed)) = &update.allowed_models {
        checks = checks.models("allowed_models", allowed);
    }
    if let Some(Some(at)) = update.expires_at {
        checks = checks.check(
            at > OffsetDateTime::now_utc(),
            "expires_at",
            "must be in the future",
        );
    }
    checks.done()?;
    if let Some(Some(allowed)) = &update.allowed_models {
        models::require_known(&state.pool, "allowed_models", allowed).await?;
    }
    let mut tx = state.pool.begin().await?;
    let before = keys::get_for_update(&mut tx, org_id, key_id).await?;
    require_manage(&principal, org_id, before.team_id, before.owner_user_id)?;
    if let Some(list) = &update.allowed_models {
        let team = crate::store::teams::get(&state.pool, org_id, before.team_id).await?;
        teams::require_within(&state.pool, "allowed_models", &team, list.as_deref()).await?;
    }
    // Rotation set the old key's expiry to its grace deadline; moving it would undo that.
    if update.expires_at.is_some() && before.grace_until.is_some() {
        return Err(ApiError::invalid(vec![FieldError {
            field: "expires_at".into(),
            message: "a rotated key expires at the end of its grace period".into(),
        }]));
    }
    let after = keys::update(
        &mut tx,
        org_id,
        key_id,
        update.name.as_deref().unwrap_or(&before.name),
        match &update.allowed_models {
            None => before.allowed_models.as_deref(),
            Some(list) => list.as_deref(),
        },
        update.expires_at.unwrap_or(before.expires_at),
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "key",
        &key_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Replace a key: a new key now (shown once), the old one valid until the grace deadline.
#[utoipa::path(post, path = "/orgs/{org_id}/keys/{key_id}/rotate", tag = "keys",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)), request_body = Rotation,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = CreatedKey), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn rotate_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<Rotation>, ApiError>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(rotation) = body?;
    let created =
        service::rotate(&state, &principal, org_id, key_id, rotation.grace_seconds).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke a key, effective immediately.
#[utoipa::path(post, path = "/orgs/{org_id}/keys/{key_id}/revoke", tag = "keys",
    params(("org_id" = Uuid, Path), ("key_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Key), (status = 401), (status = 403), (status = 404)))]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, key_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Key>, ApiError> {
    Ok(Json(
        service::revoke(&state, &principal, org_id, key_id).await?,
    ))
}
