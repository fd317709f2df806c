//! `/api/v1/orgs/{org_id}/projects`: projects within a team, managed by the team's admins
//! (and org admins); anyone who can see the team reads them.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, models, teams};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit;
use crate::store::projects::{self, Project};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project, update_project, delete_project))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub team_id: Uuid,
    /// Unique within the team.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub slug: String,
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
    /// Narrows the team's allow-list: absent or `null` = as the team, `[]` = no model.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// Absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Narrows the team's allow-list: `null` = as the team, `[]` = no model; absent =
    /// unchanged.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Only this team's projects.
    pub team_id: Option<Uuid>,
}

fn json(project: &Project) -> serde_json::Value {
    serde_json::to_value(project).unwrap_or_default()
}

#[utoipa::path(post, path = "/orgs/{org_id}/projects", tag = "projects", params(("org_id" = Uuid, Path)), request_body = NewProject,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Project), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn create_project(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewProject>, ApiError>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    require(
        &principal,
        Permission::AdminTeam {
            org: org_id,
            team: new.team_id,
        },
    )?;
    let allowed = new.allowed_models.as_deref();
    Checks::default()
        .slug("slug", &new.slug)
        .name("name", &new.name)
        .models("allowed_models", allowed.unwrap_or_default())
        .done()?;
    models::require_known(&state.pool, "allowed_models", allowed.unwrap_or_default()).await?;
    let team = crate::store::teams::get(&state.pool, org_id, new.team_id).await?;
    teams::require_within(&state.pool, "allowed_models", &team, allowed).await?;
    let mut tx = state.pool.begin().await?;
    let project = projects::create(
        &mut tx,
        org_id,
        new.team_id,
        &new.slug,
        new.name.trim(),
        allowed,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "project",
        &project.id.to_string(),
        None,
        Some(json(&project)),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(project)))
}

#[utoipa::path(get, path = "/orgs/{org_id}/projects", tag = "projects", params(("org_id" = Uuid, Path), ProjectQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Project>), (status = 401), (status = 404)))]
async fn list_projects(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    Query(q): Query<ProjectQuery>,
) -> Result<Json<Vec<Project>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    let all = projects::list(&state.pool, org_id, q.team_id).await?;
    // Team-scoped members see their teams' projects only.
    let visible = all
        .into_iter()
        .filter(|p| {
            principal.allows(Permission::ReadTeam {
                org: org_id,
                team: p.team_id,
            })
        })
        .collect();
    Ok(Json(visible))
}

#[utoipa::path(get, path = "/orgs/{org_id}/projects/{project_id}", tag = "projects",
    params(("org_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Project), (status = 401), (status = 404)))]
async fn get_project(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, project_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Project>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let project = projects::get(&state.pool, org_id, project_id).await?;
    require(
        &principal,
        Permission::ReadTeam {
            org: org_id,
            team: project.team_id,
        },
    )?;
    Ok(Json(project))
}

/// Rename a project or change its model allow-list (admins of its team).
#[utoipa::path(patch, path = "/orgs/{org_id}/projects/{project_id}", tag = "projects",
    params(("org_id" = Uuid, Path), ("project_id" = Uuid, Path)), request_body = ProjectUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Project), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_project(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, project_id)): Path<(Uuid, Uuid)>,
    body: Result<Body<ProjectUpdate>, ApiError>,
) -> Result<Json<Project>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(update) = body?;
    let existing = projects::get(&state.pool, org_id, project_id).await?;
    require(
        &principal,
        Permission::AdminTeam {
            org: org_id,
            team: existing.team_id,
        },
    )?;
    let mut checks = Checks::default();
    if let Some(name) = &update.name {
        checks = checks.name("name", name);
    }
    if let Some(Some(allowed)) = &update.allowed_models {
        checks = checks.models("allowed_models", allowed);
    }
    checks.done()?;
    if let Some(list) = &update.allowed_models {
        if let Some(allowed) = list {
            models::require_known(&state.pool, "allowed_models", allowed).await?;
        }
        let team = crate::store::teams::get(&state.pool, org_id, existing.team_id).await?;
        teams::require_within(&state.pool, "allowed_models", &team, list.as_deref()).await?;
    }
    let mut tx = state.pool.begin().await?;
    let before = projects::get_for_update(&mut tx, org_id, project_id).await?;
    let after = projects::update(
        &mut tx,
        org_id,
        project_id,
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
        "project",
        &project_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

#[utoipa::path(delete, path = "/orgs/{org_id}/projects/{project_id}", tag = "projects",
    params(("org_id" = Uuid, Path), ("project_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_project(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, project_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let existing = projects::get(&state.pool, org_id, project_id).await?;
    require(
        &principal,
        Permission::AdminTeam {
            org: org_id,
            team: existing.team_id,
        },
    )?;
    let mut tx = state.pool.begin().await?;
    let before = projects::delete(&mut tx, org_id, project_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "project",
        &project_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
