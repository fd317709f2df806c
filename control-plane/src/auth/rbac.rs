//! What a principal may do — decided here and nowhere else. Every handler states the
//! permission it needs and calls [`require`].
//!
//! Tenant isolation: a principal with no role at all in an org gets **404** for anything
//! in it (it must not even learn the object exists); one that can see the org but lacks
//! the role for a write gets 403.

use uuid::Uuid;

use super::Principal;
use crate::api::error::ApiError;
use crate::store::usage::Visible;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Create and delete orgs, manage the platform's regions, providers, models and
    /// deployments: platform admins only.
    ManagePlatform,
    /// Read the model catalog: any authenticated principal (members need to know what
    /// they can call).
    ReadModels,
    ReadOrg(Uuid),
    /// Change the org itself, its teams and members.
    AdminOrg(Uuid),
    ReadTeam {
        org: Uuid,
        team: Uuid,
    },
    AdminTeam {
        org: Uuid,
        team: Uuid,
    },
}

impl Principal {
    fn role_in(&self, org: Uuid, team: Option<Uuid>) -> impl Iterator<Item = &str> {
        self.memberships
            .iter()
            .filter(move |m| m.org_id == org && (m.team_id.is_none() || m.team_id == team))
            .map(|m| m.role.as_str())
    }

    /// Any role in `org` (org-wide or in one of its teams).
    pub fn sees_org(&self, org: Uuid) -> bool {
        self.platform_admin || self.memberships.iter().any(|m| m.org_id == org)
    }

    /// Org ids this principal may read; `None` = all (platform admin).
    pub fn visible_orgs(&self) -> Option<Vec<Uuid>> {
        if self.platform_admin {
            return None;
        }
        let mut orgs: Vec<Uuid> = self.memberships.iter().map(|m| m.org_id).collect();
        orgs.sort_unstable();
        orgs.dedup();
        Some(orgs)
    }

    /// Which of `org`'s usage and budget alerts this principal sees: all of it for
    /// platform admins and org-wide admins and viewers; otherwise the teams it has a
    /// team role other than `member` in, and, as a `member` (of the org or of a team),
    /// the keys it owns. Nothing at all without a role in `org` (callers check
    /// [`Permission::ReadOrg`] first, which answers 404).
    pub fn usage_view(&self, org: Uuid) -> Visible {
        if self.platform_admin {
            return Visible::All;
        }
        let mut teams = Vec::new();
        let mut own_keys = false;
        for m in self.memberships.iter().filter(|m| m.org_id == org) {
            match (m.team_id, m.role.as_str()) {
                (_, "member") => own_keys = true,
                (None, _) => return Visible::All,
                (Some(team), _) => teams.push(team),
            }
        }
        Visible::Some {
            teams,
            keys_of: own_keys.then_some(self.user_id),
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        if self.platform_admin {
            return true;
        }
        match permission {
            Permission::ManagePlatform => false,
            Permission::ReadModels => true,
            Permission::ReadOrg(org) => self.sees_org(org),
            Permission::AdminOrg(org) => self.role_in(org, None).any(|r| r == "org_admin"),
            Permission::ReadTeam { org, team } => self.role_in(org, Some(team)).next().is_some(),
            Permission::AdminTeam { org, team } => self
                .role_in(org, Some(team))
                .any(|r| r == "org_admin" || r == "team_admin"),
        }
    }
}

fn org_of(permission: Permission) -> Option<Uuid> {
    match permission {
        Permission::ManagePlatform | Permission::ReadModels => None,
        Permission::ReadOrg(org) | Permission::AdminOrg(org) => Some(org),
        Permission::ReadTeam { org, .. } | Permission::AdminTeam { org, .. } => Some(org),
    }
}

/// `Ok` if allowed; else 404 when the org is invisible to the principal, 403 otherwise.
pub fn require(principal: &Principal, permission: Permission) -> Result<(), ApiError> {
    if principal.allows(permission) {
        return Ok(());
    }
    match org_of(permission) {
        Some(org) if !principal.sees_org(org) => Err(ApiError::not_found()),
        _ => Err(ApiError::forbidden()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::users::Membership;

    fn principal(roles: &[(Uuid, Option<Uuid>, &str)]) -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            email: "a@b.c".into(),
            platform_admin: false,
            memberships: roles
                .iter()
                .map(|(org, team, role)| Membership {
                    id: Uuid::now_v7(),
                    user_id: Uuid::nil(),
                    org_id: *org,
                    team_id: *team,
                    role: (*role).into(),
                })
                .collect(),
            request_id: String::new(),
            source_ip: String::new(),
        }
    }

    #[test]
    fn roles_grant_what_they_should_and_nothing_across_orgs() {
        let (a, b, team) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let org_admin = principal(&[(a, None, "org_admin")]);
        assert!(org_admin.allows(Permission::AdminOrg(a)));
        assert!(org_admin.allows(Permission::AdminTeam { org: a, team }));
        assert!(!org_admin.allows(Permission::ReadOrg(b)));
        assert!(
            matches!(require(&org_admin, Permission::ReadOrg(b)), Err(e) if e.status == http::StatusCode::NOT_FOUND)
        );

        let viewer = principal(&[(a, None, "viewer")]);
        assert!(viewer.allows(Permission::ReadTeam { org: a, team }));
        assert!(
            matches!(require(&viewer, Permission::AdminOrg(a)), Err(e) if e.status == http::StatusCode::FORBIDDEN)
        );

        let team_admin = principal(&[(a, Some(team), "team_admin")]);
        assert!(team_admin.allows(Permission::AdminTeam { org: a, team }));
        assert!(!team_admin.allows(Permission::AdminTeam {
            org: a,
            team: Uuid::now_v7()
        }));
        assert!(!team_admin.allows(Permission::AdminOrg(a)));
        assert!(!team_admin.allows(Permission::ManagePlatform));
        assert!(team_admin.allows(Permission::ReadModels));
        assert!(
            matches!(require(&org_admin, Permission::ManagePlatform), Err(e) if e.status == http::StatusCode::FORBIDDEN)
        );
    }

    #[test]
    fn usage_is_seen_org_wide_per_team_or_per_own_key() {
        let (a, b, team, other) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        assert_eq!(
            principal(&[(a, None, "viewer")]).usage_view(a),
            Visible::All
        );
        assert_eq!(
            principal(&[(a, None, "org_admin")]).usage_view(a),
            Visible::All
        );
        let team_admin = principal(&[(a, Some(team), "team_admin"), (b, None, "org_admin")]);
        assert_eq!(
            team_admin.usage_view(a),
            Visible::Some {
                teams: vec![team],
                keys_of: None
            }
        );
        let member = principal(&[(a, Some(other), "member")]);
        assert_eq!(
            member.usage_view(a),
            Visible::Some {
                teams: vec![],
                keys_of: Some(member.user_id)
            }
        );
        assert_eq!(
            principal(&[(b, None, "viewer")]).usage_view(a),
            Visible::Some {
                teams: vec![],
                keys_of: None
            },
            "nothing of another org"
        );
    }
}
