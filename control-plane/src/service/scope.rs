//! The scope of a budget or a rate limit: the org itself, or one of its teams, projects or
//! keys. Who may set either is decided here, once for both: org admins for the org and its
//! teams; admins of the owning team (and org admins) for a project or a key.

use http::StatusCode;
use uuid::Uuid;

use super::problem::{FieldError, Problem as ApiError};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::{Pool, StoreError, scopes};

pub const KINDS: &[&str] = &["org", "team", "project", "key"];

/// `Ok` if `principal` may set a budget or rate limit on the scope and the scope is in
/// `org_id` (404 otherwise). `kind` is one of [`KINDS`].
pub async fn require_admin(
    pool: &Pool,
    principal: &Principal,
    org_id: Uuid,
    kind: &str,
    scope_id: Uuid,
) -> Result<(), ApiError> {
    if kind == "org" {
        require(principal, Permission::AdminOrg(org_id))?;
        if scope_id != org_id {
            return Err(ApiError::invalid(vec![FieldError {
                field: "scope_id".into(),
                message: "an org scope's scope_id is the org's id".into(),
            }]));
        }
        return Ok(());
    }
    if kind == "team" {
        require(principal, Permission::AdminOrg(org_id))?;
    }
    let team = match scopes::owning_team(pool, org_id, kind, scope_id).await {
        Ok(team) => team,
        Err(StoreError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("no {kind} with this scope_id in the org"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(require(
        principal,
        Permission::AdminTeam { org: org_id, team },
    )?)
}

/// As [`require_admin`], for a budget or rate limit that exists already. Its scope may be
/// gone since (deleting a team removes its projects and keys, not the limits on them); such
/// a row is left to org admins.
pub async fn require_admin_of_existing(
    pool: &Pool,
    principal: &Principal,
    org_id: Uuid,
    kind: &str,
    scope_id: Uuid,
) -> Result<(), ApiError> {
    match require_admin(pool, principal, org_id, kind, scope_id).await {
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            Ok(require(principal, Permission::AdminOrg(org_id))?)
        }
        other => other,
    }
}
