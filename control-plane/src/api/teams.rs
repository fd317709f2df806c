//! `/api/v1/orgs/{org_id}/teams`: org admins manage teams; anyone in the org reads them.
//! A team admin renames its team but works within its allow-list: only org admins set it.
//!
//! Allow-lists (here and on projects and keys): absent or `null` = not set (every model
//! the level above allows), `[]` = no model at all. A PATCH that does not name the list
//! leaves it as it is.

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
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, PageQuery, models};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::teams::{self, Team};
use crate::store::{Page, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_team, list_teams))
        .routes(routes!(get_team, update_team, delete_team))
}

pub use crate::service::teams::{NewTeam, require_within};

/// Absent fields keep their value.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Org admins only. `null` = every model, `[]` = none; absent = unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
}

use crate::service::teams::json;

/// Create a team (org admins).
#[utoipa::path(post, path = "/orgs/{org_id}/teams", tag = "teams", params(("org_id" = Uuid, Path),
    ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    request_body = NewTeam,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 201, body = Team), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_team(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Body<NewTeam>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "teams", Some(org_id), &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let team = crate::service::teams::create(&state, &mut tx, &principal, org_id, &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&team))
        .await?;
    tx.commit().await?;
    Ok(response)
}

#[utoipa::path(get, path = "/orgs/{org_id}/teams", tag = "teams", params(("org_id" = Uuid, Path), PageQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Team>), (status = 401), (status = 404), (status = 422)))]
async fn list_teams(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Team>>, ApiError> {
    Ok(Json(
        crate::service::teams::list(&state, &principal, org_id, page.cursor, page.limit()?).await?,
    ))
}

#[utoipa::path(get, path = "/orgs/{org_id}/teams/{team_id}", tag = "teams",
    params(("org_id" = Uuid, Path), ("team_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Team), (status = 401), (status = 404)))]
async fn get_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Team>, ApiError> {
    require(
        &principal,
        Permission::ReadTeam {
            org: org_id,
            team: team_id,
        },
    )?;
    Ok(Json(teams::get(&state.pool, org_id, team_id).await?))
}

/// Rename a team (org or team admins) or change its model allow-list (org admins).
#[utoipa::path(patch, path = "/orgs/{org_id}/teams/{team_id}", tag = "teams",
    params(("org_id" = Uuid, Path), ("team_id" = Uuid, Path)), request_body = TeamUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"), (status = 200, body = Team), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<TeamUpdate>, ApiError>,
) -> Result<Json<Team>, ApiError> {
    require(
        &principal,
        Permission::AdminTeam {
            org: org_id,
            team: team_id,
        },
    )?;
    let Body(update) = body?;
    if update.allowed_models.is_some() {
        // A team admin works within the team's allow-list; only org admins move it.
        require(
            &principal,
            Permission::SetTeamModels {
                org: org_id,
                team: team_id,
            },
        )?;
    }
    let mut checks = Checks::default();
    if let Some(name) = &update.name {
        checks = checks.name("name", name);
    }
    if let Some(Some(allowed)) = &update.allowed_models {
        checks = checks.models("allowed_models", allowed);
    }
    checks.done()?;
    if let Some(Some(allowed)) = &update.allowed_models {
        models::require_known(&state.pool, "allowed_models", allowed).await?;
    }
    let mut tx = state.pool.begin().await?;
    let before = teams::get_for_update(&mut tx, org_id, team_id).await?;
    let after = teams::update(
        &mut tx,
        org_id,
        team_id,
        update.name.as_deref().map_or(&before.name, str::trim),
        match &update.allowed_models {
            None => before.allowed_models.as_deref(),
            Some(list) => list.as_deref(),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "update",
        "team",
        &team_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Delete a team and everything in it (org admins).
#[utoipa::path(delete, path = "/orgs/{org_id}/teams/{team_id}", tag = "teams",
    params(("org_id" = Uuid, Path), ("team_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_team(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, team_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::AdminOrg(org_id))?;
    let mut tx = state.pool.begin().await?;
    let before = teams::get_for_update(&mut tx, org_id, team_id).await?;
    teams::delete(&mut tx, org_id, team_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "team",
        &team_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
