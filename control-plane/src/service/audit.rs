//! The audit log as people read it: newest first, only orgs the caller can see.

use uuid::Uuid;

use super::checks::Checks;
use super::{FieldError, Problem, Services};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit::{self, AuditEntry};

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub org_id: Option<Uuid>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub before_id: Option<i64>,
}

pub async fn list(
    svc: &Services,
    principal: &Principal,
    filter: &AuditFilter,
    limit: i64,
) -> Result<Vec<AuditEntry>, Problem> {
    if !(1..=500).contains(&limit) {
        return Err(Problem::invalid(vec![FieldError {
            field: "limit".into(),
            message: "must be between 1 and 500".into(),
        }]));
    }
    // Postgres text cannot hold NUL: a 422 here, not a failed query.
    Checks::default()
        .text("action", filter.action.as_deref().unwrap_or_default())
        .text(
            "object_type",
            filter.object_type.as_deref().unwrap_or_default(),
        )
        .done()?;
    let orgs = match filter.org_id {
        Some(org) => {
            require(principal, Permission::ReadOrg(org))?;
            Some(vec![org])
        }
        None => principal.visible_orgs(),
    };
    Ok(audit::list(
        &svc.pool,
        orgs.as_deref(),
        filter.action.as_deref(),
        filter.object_type.as_deref(),
        filter.before_id,
        limit,
    )
    .await?)
}
