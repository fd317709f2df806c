//! Teams: org admins create them; anyone in the org reads them. Allow-lists (here and on
//! projects and keys): `None` = not set (what the level above allows), `[]` = no model.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::checks::Checks;
use super::{FieldError, Problem, Services, models};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::teams::{self, Team};
use crate::store::{Page, Tx, audit};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeam {
    /// Unique within the org.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub slug: String,
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
    /// Names or aliases of catalog models the team may call; absent or `null` = every
    /// model, `[]` = none.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

pub fn json(team: &Team) -> serde_json::Value {
    serde_json::to_value(team).unwrap_or_default()
}

/// Creates and audits a team (org admins), in the caller's transaction.
pub async fn create(
    svc: &Services,
    tx: &mut Tx<'_>,
    principal: &Principal,
    org_id: Uuid,
    new: &NewTeam,
) -> Result<Team, Problem> {
    require(principal, Permission::AdminOrg(org_id))?;
    let allowed = new.allowed_models.as_deref().unwrap_or_default();
    Checks::default()
        .slug("slug", &new.slug)
        .name("name", &new.name)
        .models("allowed_models", allowed)
        .done()?;
    models::require_known(&svc.pool, "allowed_models", allowed).await?;
    let team = teams::create(
        tx,
        org_id,
        &new.slug,
        new.name.trim(),
        new.allowed_models.as_deref(),
    )
    .await?;
    audit::record(
        tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "team",
        &team.id.to_string(),
        None,
        Some(json(&team)),
    )
    .await?;
    Ok(team)
}

pub async fn list(
    svc: &Services,
    principal: &Principal,
    org_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Team>, Problem> {
    super::orgs::require_read(&svc.pool, principal, org_id).await?;
    Ok(teams::list(&svc.pool, org_id, cursor, limit).await?)
}

/// 422 on `field` unless every entry of `list` names a model `team` allows: a project's or
/// key's allow-list narrows its team's, never widens it. Entries are compared by the
/// model they name, so an alias and its model's name are the same entry.
pub async fn require_within(
    pool: &crate::store::Pool,
    field: &str,
    team: &Team,
    list: Option<&[String]>,
) -> Result<(), Problem> {
    let (Some(team_list), Some(list)) = (&team.allowed_models, list) else {
        return Ok(());
    };
    let mut allowed = std::collections::HashSet::new();
    for name in team_list {
        // An entry naming a model deleted since allows nothing.
        if let Ok(model) = crate::store::models::resolve(pool, name).await {
            allowed.insert(model.name);
        }
    }
    let mut outside = Vec::new();
    for name in list {
        match crate::store::models::resolve(pool, name).await {
            Ok(model) if allowed.contains(&model.name) => {}
            Ok(_) | Err(crate::store::StoreError::NotFound) => outside.push(name.as_str()),
            Err(e) => return Err(e.into()),
        }
    }
    if outside.is_empty() {
        return Ok(());
    }
    Err(Problem::invalid(vec![FieldError {
        field: field.into(),
        message: format!(
            "not allowed to the team (its allow-list is set by org admins): {}",
            outside.join(", ")
        ),
    }]))
}
