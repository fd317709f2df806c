//! What a principal may do — decided here and nowhere else. [`TABLE`] is the one written
//! permission table, [`Role`] × [`Action`]; every handler states the [`Permission`] it
//! needs (an action on a concrete org or team) and calls [`require`], which answers
//! [`Denied`] (no HTTP types: `api/error.rs` maps it to 404 or 403).
//!
//! A membership row counts only where it reaches: an org-wide row (no team) in its whole
//! org, a team row in its team (and, for org-level reads, in its org). An org-wide
//! `member` or `viewer` therefore has no write in any team: it does not mint keys.
//!
//! Tenant isolation: a principal with no role at all in an org gets [`Denied::Hidden`]
//! (404) for anything in it (it must not even learn the object exists); one that can see
//! the org but lacks the role gets [`Denied::Forbidden`] (403).

use uuid::Uuid;

use super::Principal;
use crate::store::usage::Visible;

/// A role as it applies to the object acted on: the membership's role and its reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `users.is_platform_admin`: everything, everywhere.
    PlatformAdmin,
    /// Org-wide `org_admin`.
    OrgAdmin,
    /// Org-wide `member`: sees the org, owns what it owned; no rights inside any team.
    OrgMember,
    /// Org-wide `viewer`: reads the whole org, writes nothing.
    OrgViewer,
    /// `team_admin` of the team acted on (a team-scoped `org_admin` row counts as this).
    TeamAdmin,
    /// `member` of the team acted on.
    TeamMember,
    /// `viewer` of the team acted on.
    TeamViewer,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::PlatformAdmin,
        Role::OrgAdmin,
        Role::OrgMember,
        Role::OrgViewer,
        Role::TeamAdmin,
        Role::TeamMember,
        Role::TeamViewer,
    ];

    /// The role a membership row gives (`team` = its `team_id`).
    fn of_row(role: &str, team: Option<Uuid>) -> Option<Self> {
        Some(match (role, team) {
            ("org_admin", None) => Self::OrgAdmin,
            ("member", None) => Self::OrgMember,
            ("viewer", None) => Self::OrgViewer,
            ("org_admin" | "team_admin", Some(_)) => Self::TeamAdmin,
            ("member", Some(_)) => Self::TeamMember,
            ("viewer", Some(_)) => Self::TeamViewer,
            // The schema allows no other row; an unknown one grants nothing.
            _ => return None,
        })
    }
}

/// What is done, without the object it is done to (that is [`Permission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create and delete orgs; manage regions, providers, models, deployments, gateways.
    ManagePlatform,
    /// Read the model catalog (members need to know what they can call).
    ReadModels,
    /// See the org and its org-level lists (teams, members, budgets, limits, audit).
    ReadOrg,
    /// Change the org, its teams and members, org and team budgets and limits.
    AdminOrg,
    /// Set a team's model allow-list (a team admin works within it).
    SetTeamModels,
    /// Read a team and its projects.
    ReadTeam,
    /// Manage a team's projects, every key of it, project and key budgets and limits.
    AdminTeam,
    /// Mint a key in the team (owned by the minter unless it is a team admin).
    MintKey,
    /// Change, rotate or revoke a key one owns, in its team.
    ManageOwnKey,
    /// See every key of the org, not only one's own.
    ReadAllKeys,
    /// See all of the org's usage and alerts.
    ReadAllUsage,
    /// See the usage and alerts of the team.
    ReadTeamUsage,
    /// See the usage of keys one owns (for roles with no wider view).
    ReadOwnUsage,
}

impl Action {
    pub const ALL: [Action; 13] = [
        Action::ManagePlatform,
        Action::ReadModels,
        Action::ReadOrg,
        Action::AdminOrg,
        Action::SetTeamModels,
        Action::ReadTeam,
        Action::AdminTeam,
        Action::MintKey,
        Action::ManageOwnKey,
        Action::ReadAllKeys,
        Action::ReadAllUsage,
        Action::ReadTeamUsage,
        Action::ReadOwnUsage,
    ];
}

use Role::{OrgAdmin, OrgMember, OrgViewer, PlatformAdmin, TeamAdmin, TeamMember, TeamViewer};

/// The permission table: each action and the roles that may take it. Nothing else in
/// the control plane decides who may do what. (README "Roles" shows the same table.)
pub const TABLE: &[(Action, &[Role])] = &[
    (Action::ManagePlatform, &[PlatformAdmin]),
    (Action::ReadModels, &Role::ALL),
    (Action::ReadOrg, &Role::ALL),
    (Action::AdminOrg, &[PlatformAdmin, OrgAdmin]),
    (Action::SetTeamModels, &[PlatformAdmin, OrgAdmin]),
    (
        Action::ReadTeam,
        &[
            PlatformAdmin,
            OrgAdmin,
            OrgViewer,
            TeamAdmin,
            TeamMember,
            TeamViewer,
        ],
    ),
    (Action::AdminTeam, &[PlatformAdmin, OrgAdmin, TeamAdmin]),
    (
        Action::MintKey,
        &[PlatformAdmin, OrgAdmin, TeamAdmin, TeamMember],
    ),
    (
        Action::ManageOwnKey,
        &[PlatformAdmin, OrgAdmin, TeamAdmin, TeamMember],
    ),
    (Action::ReadAllKeys, &[PlatformAdmin, OrgAdmin, OrgViewer]),
    (Action::ReadAllUsage, &[PlatformAdmin, OrgAdmin, OrgViewer]),
    (
        Action::ReadTeamUsage,
        &[PlatformAdmin, OrgAdmin, OrgViewer, TeamAdmin, TeamViewer],
    ),
    (Action::ReadOwnUsage, &[OrgMember, TeamMember]),
];

/// May `role` take `action`? A lookup in [`TABLE`].
pub fn allows(role: Role, action: Action) -> bool {
    TABLE
        .iter()
        .any(|(a, roles)| *a == action && roles.contains(&role))
}

/// An action on a concrete object: what a handler asks [`require`] for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ManagePlatform,
    ReadModels,
    ReadOrg(Uuid),
    AdminOrg(Uuid),
    ReadAllKeys(Uuid),
    SetTeamModels { org: Uuid, team: Uuid },
    ReadTeam { org: Uuid, team: Uuid },
    AdminTeam { org: Uuid, team: Uuid },
    MintKey { org: Uuid, team: Uuid },
    ManageOwnKey { org: Uuid, team: Uuid },
}

/// Where an action is taken: nowhere in particular, in an org, or in one of its teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Platform,
    Org(Uuid),
    Team { org: Uuid, team: Uuid },
}

impl Permission {
    fn parts(self) -> (Action, Target) {
        use Permission as P;
        match self {
            P::ManagePlatform => (Action::ManagePlatform, Target::Platform),
            P::ReadModels => (Action::ReadModels, Target::Platform),
            P::ReadOrg(org) => (Action::ReadOrg, Target::Org(org)),
            P::AdminOrg(org) => (Action::AdminOrg, Target::Org(org)),
            P::ReadAllKeys(org) => (Action::ReadAllKeys, Target::Org(org)),
            P::SetTeamModels { org, team } => (Action::SetTeamModels, Target::Team { org, team }),
            P::ReadTeam { org, team } => (Action::ReadTeam, Target::Team { org, team }),
            P::AdminTeam { org, team } => (Action::AdminTeam, Target::Team { org, team }),
            P::MintKey { org, team } => (Action::MintKey, Target::Team { org, team }),
            P::ManageOwnKey { org, team } => (Action::ManageOwnKey, Target::Team { org, team }),
        }
    }
}

/// Why a permission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The principal has no role in the object's org: it must not learn the object exists.
    #[error("no such object")]
    Hidden,
    /// The principal sees the org but its roles do not allow this.
    #[error("your role does not allow this")]
    Forbidden,
}

impl Principal {
    /// The roles this principal holds that reach `target`.
    fn roles_at(&self, target: Target) -> impl Iterator<Item = Role> + '_ {
        let platform = self.platform_admin.then_some(PlatformAdmin);
        let rows = self.memberships.iter().filter_map(move |m| {
            let reaches = match target {
                // Platform-level reads (the model catalog) are open to any role anywhere.
                Target::Platform => true,
                // Any role in the org (org-wide or in a team) acts at org level.
                Target::Org(org) => m.org_id == org,
                Target::Team { org, team } => {
                    m.org_id == org && (m.team_id.is_none() || m.team_id == Some(team))
                }
            };
            reaches.then(|| Role::of_row(&m.role, m.team_id)).flatten()
        });
        platform.into_iter().chain(rows)
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

    /// Which of `org`'s usage and budget alerts this principal sees, by the table's
    /// usage actions: all of it ([`Action::ReadAllUsage`]), else the teams its roles
    /// there may read usage of ([`Action::ReadTeamUsage`]) and the keys it owns
    /// ([`Action::ReadOwnUsage`]). Nothing at all without a role in `org` (callers check
    /// [`Permission::ReadOrg`] first, which answers 404).
    pub fn usage_view(&self, org: Uuid) -> Visible {
        if self
            .roles_at(Target::Org(org))
            .any(|r| allows(r, Action::ReadAllUsage))
        {
            return Visible::All;
        }
        let mut teams = Vec::new();
        let mut own_keys = false;
        for m in self.memberships.iter().filter(|m| m.org_id == org) {
            let Some(role) = Role::of_row(&m.role, m.team_id) else {
                continue;
            };
            own_keys |= allows(role, Action::ReadOwnUsage);
            if let Some(team) = m.team_id
                && allows(role, Action::ReadTeamUsage)
            {
                teams.push(team);
            }
        }
        Visible::Some {
            teams,
            keys_of: own_keys.then_some(self.user_id),
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        let (action, target) = permission.parts();
        self.roles_at(target).any(|role| allows(role, action))
    }
}

/// `Ok` if allowed; else [`Denied::Hidden`] when the org is invisible to the principal,
/// [`Denied::Forbidden`] otherwise.
pub fn require(principal: &Principal, permission: Permission) -> Result<(), Denied> {
    if principal.allows(permission) {
        return Ok(());
    }
    match permission.parts().1 {
        Target::Org(org) | Target::Team { org, .. } if !principal.sees_org(org) => {
            Err(Denied::Hidden)
        }
        _ => Err(Denied::Forbidden),
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
            session_id: None,
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
        assert_eq!(
            require(&org_admin, Permission::ReadOrg(b)),
            Err(Denied::Hidden)
        );

        let viewer = principal(&[(a, None, "viewer")]);
        assert!(viewer.allows(Permission::ReadTeam { org: a, team }));
        assert_eq!(
            require(&viewer, Permission::AdminOrg(a)),
            Err(Denied::Forbidden)
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
        assert_eq!(
            require(&org_admin, Permission::ManagePlatform),
            Err(Denied::Forbidden)
        );
    }

    #[test]
    fn the_table_names_every_action_once() {
        for action in Action::ALL {
            let rows = TABLE.iter().filter(|(a, _)| *a == action).count();
            assert_eq!(rows, 1, "{action:?} must have exactly one row");
        }
        assert_eq!(TABLE.len(), Action::ALL.len());
        for role in Role::ALL {
            assert!(allows(role, Action::ReadOrg), "{role:?} sees its org");
        }
    }

    #[test]
    fn viewers_and_org_wide_members_write_nothing_in_a_team() {
        let writes = [
            Action::AdminOrg,
            Action::SetTeamModels,
            Action::AdminTeam,
            Action::MintKey,
            Action::ManageOwnKey,
            Action::ManagePlatform,
        ];
        for role in [Role::OrgViewer, Role::TeamViewer, Role::OrgMember] {
            for action in writes {
                assert!(!allows(role, action), "{role:?} may not {action:?}");
            }
        }
        let (a, team) = (Uuid::now_v7(), Uuid::now_v7());
        for role in ["member", "viewer"] {
            let p = principal(&[(a, None, role)]);
            assert!(p.allows(Permission::ReadOrg(a)));
            assert_eq!(
                require(&p, Permission::MintKey { org: a, team }),
                Err(Denied::Forbidden),
                "org-wide {role} mints nothing"
            );
        }
        assert!(!principal(&[(a, None, "member")]).allows(Permission::ReadTeam { org: a, team }));
        let member = principal(&[(a, Some(team), "member")]);
        assert!(member.allows(Permission::MintKey { org: a, team }));
        assert!(!member.allows(Permission::MintKey {
            org: a,
            team: Uuid::now_v7()
        }));
        let team_viewer = principal(&[(a, Some(team), "viewer")]);
        assert!(!team_viewer.allows(Permission::MintKey { org: a, team }));
        assert!(team_viewer.allows(Permission::ReadTeam { org: a, team }));
    }

    #[test]
    fn only_org_admins_set_a_team_allow_list() {
        let (a, team) = (Uuid::now_v7(), Uuid::now_v7());
        let team_admin = principal(&[(a, Some(team), "team_admin")]);
        assert!(team_admin.allows(Permission::AdminTeam { org: a, team }));
        assert!(!team_admin.allows(Permission::SetTeamModels { org: a, team }));
        assert!(
            principal(&[(a, None, "org_admin")]).allows(Permission::SetTeamModels { org: a, team })
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
