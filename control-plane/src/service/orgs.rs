//! Orgs: platform admins create them; anyone with a role in one sees it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::checks::Checks;
use super::{Problem, Services};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::orgs::{self, Org};
use crate::store::{Page, Tx, audit};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    /// URL-safe identifier, unique: lowercase letters, digits and '-'.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$", min_length = 1, max_length = 63)]
    pub slug: String,
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
}

pub fn json(org: &Org) -> serde_json::Value {
    serde_json::to_value(org).unwrap_or_default()
}

/// [`Permission::ReadOrg`], then 404 unless the org exists: a platform admin passes the
/// permission for any id, and a list under a missing org must not answer an empty 200.
pub async fn require_read(
    pool: &crate::store::Pool,
    principal: &Principal,
    org_id: Uuid,
) -> Result<Org, Problem> {
    require(principal, Permission::ReadOrg(org_id))?;
    Ok(orgs::get(pool, org_id).await?)
}

/// Creates and audits an org, in the caller's transaction.
pub async fn create(tx: &mut Tx<'_>, principal: &Principal, new: &NewOrg) -> Result<Org, Problem> {
    require(principal, Permission::ManagePlatform)?;
    Checks::default()
        .slug("slug", &new.slug)
        .name("name", &new.name)
        .done()?;
    let org = orgs::create(tx, &new.slug, new.name.trim()).await?;
    audit::record(
        tx,
        &principal.actor(),
        Some(org.id),
        "create",
        "org",
        &org.id.to_string(),
        None,
        Some(json(&org)),
    )
    .await?;
    Ok(org)
}

/// The orgs the caller can see.
pub async fn list(
    svc: &Services,
    principal: &Principal,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Page<Org>, Problem> {
    let visible = principal.visible_orgs();
    Ok(orgs::list(&svc.pool, visible.as_deref(), cursor, limit).await?)
}
