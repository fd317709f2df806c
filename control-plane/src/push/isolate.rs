//! One org's bad data never blocks another's config. When a region's snapshot would not
//! validate on gateways, the builder finds which orgs are at fault and sets their data
//! aside, so every other org keeps getting its changes.
//!
//! - The platform part (models, deployments) is checked alone first: if it is at fault,
//!   no org can be served from it, and the region's snapshot is **held** (the previous
//!   version stays live everywhere).
//! - Otherwise each org is checked alone on top of the platform part. An org at fault
//!   serves its **previous** published content (frozen: teams, projects, keys, budgets
//!   and limits as they were), minus every key that is no longer active, so revocations
//!   and deletions still reach gateways; an org with no previous content, or whose
//!   previous content no longer fits the current catalog, is **omitted** (its keys are
//!   unknown until its data is fixed).
//! - What was set aside is reported to the caller, which logs it, counts it and shows
//!   it in the fleet view.
//!
//! Nothing here runs when the whole snapshot validates, which is the normal case.

use std::collections::{BTreeMap, HashSet};

use tollgate_proto::config as proto;

/// What happened to an org's (or the region's) data that did not validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The org serves its previous published content.
    Previous,
    /// The org is left out of the region's snapshot.
    Omitted,
    /// The region's snapshot was not published at all.
    Held,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Previous => "previous",
            Self::Omitted => "omitted",
            Self::Held => "held",
        }
    }
}

/// One org (or, with `org_id` `None`, the platform part) that was set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub org_id: Option<String>,
    pub action: Action,
    /// The validation problems, one per line (at most [`MAX_LINES`]).
    pub message: String,
}

/// The snapshot to publish (`None`: hold the region back) and what was set aside.
#[derive(Debug)]
pub struct Isolated {
    pub snapshot: Option<proto::Snapshot>,
    pub problems: Vec<Problem>,
}

/// Problem lines kept per org: enough to find the bad row, bounded for the fleet view.
pub const MAX_LINES: usize = 20;

/// The rows of one org.
#[derive(Debug, Default, Clone)]
struct Tenant {
    orgs: Vec<proto::Org>,
    teams: Vec<proto::Team>,
    projects: Vec<proto::Project>,
    keys: Vec<proto::ApiKey>,
    budgets: Vec<proto::Budget>,
}

/// Takes every org's rows out of `snapshot` (which keeps the platform part), by org id.
fn split(snapshot: &mut proto::Snapshot) -> BTreeMap<String, Tenant> {
    let mut tenants: BTreeMap<String, Tenant> = BTreeMap::new();
    for org in std::mem::take(&mut snapshot.orgs) {
        tenants.entry(org.id.clone()).or_default().orgs.push(org);
    }
    for team in std::mem::take(&mut snapshot.teams) {
        tenants
            .entry(team.org_id.clone())
            .or_default()
            .teams
            .push(team);
    }
    for project in std::mem::take(&mut snapshot.projects) {
        tenants
            .entry(project.org_id.clone())
            .or_default()
            .projects
            .push(project);
    }
    for key in std::mem::take(&mut snapshot.keys) {
        tenants
            .entry(key.org_id.clone())
            .or_default()
            .keys
            .push(key);
    }
    for budget in std::mem::take(&mut snapshot.budgets) {
        tenants
            .entry(budget.org_id.clone())
            .or_default()
            .budgets
            .push(budget);
    }
    tenants
}

/// `platform` with `tenants` added.
fn join<'a>(
    platform: &proto::Snapshot,
    tenants: impl IntoIterator<Item = &'a Tenant>,
) -> proto::Snapshot {
    let mut snapshot = platform.clone();
    for t in tenants {
        snapshot.orgs.extend(t.orgs.iter().cloned());
        snapshot.teams.extend(t.teams.iter().cloned());
        snapshot.projects.extend(t.projects.iter().cloned());
        snapshot.keys.extend(t.keys.iter().cloned());
        snapshot.budgets.extend(t.budgets.iter().cloned());
    }
    snapshot
}

fn message(problems: &[String]) -> String {
    let mut lines: Vec<&str> = problems
        .iter()
        .take(MAX_LINES)
        .map(String::as_str)
        .collect();
    let more = problems.len().saturating_sub(MAX_LINES);
    let tail = format!("(and {more} more)");
    if more > 0 {
        lines.push(&tail);
    }
    lines.join("\n")
}

/// An org's previous content, less every key that is not active now (revoked, expired,
/// deleted) and the budgets on those keys.
fn frozen(mut previous: Tenant, active_keys: &HashSet<&str>) -> Tenant {
    previous
        .keys
        .retain(|k| active_keys.contains(k.public_id.as_str()));
    let kept: HashSet<String> = previous.keys.iter().map(|k| k.public_id.clone()).collect();
    previous.budgets.retain(|b| {
        b.scope
            .as_ref()
            .is_none_or(|s| s.kind != i32::from(proto::ScopeKind::Key) || kept.contains(&s.id))
    });
    previous
}

/// Sets aside the orgs of `built` whose data does not pass `validate` (which returns the
/// problems, one per line). `previous` is the region's last published snapshot.
pub fn isolate(
    mut built: proto::Snapshot,
    previous: Option<proto::Snapshot>,
    validate: &dyn Fn(proto::Snapshot) -> Result<(), Vec<String>>,
) -> Isolated {
    let held = |problems: &[String]| Isolated {
        snapshot: None,
        problems: vec![Problem {
            org_id: None,
            action: Action::Held,
            message: message(problems),
        }],
    };
    let active_keys: HashSet<String> = built.keys.iter().map(|k| k.public_id.clone()).collect();
    let tenants = split(&mut built);
    let platform = built;
    if let Err(problems) = validate(platform.clone()) {
        return held(&problems);
    }
    let mut good: Vec<&Tenant> = Vec::new();
    let mut bad: Vec<(String, Vec<String>)> = Vec::new();
    for (org_id, tenant) in &tenants {
        match validate(join(&platform, [tenant])) {
            Ok(()) => good.push(tenant),
            Err(problems) => bad.push((org_id.clone(), problems)),
        }
    }
    // Previous content that still fits the current catalog on its own.
    let mut previous = previous.map(|mut p| split(&mut p)).unwrap_or_default();
    let active: HashSet<&str> = active_keys.iter().map(String::as_str).collect();
    let carried: BTreeMap<&str, Tenant> = bad
        .iter()
        .filter_map(|(org_id, _)| {
            Some((org_id.as_str(), frozen(previous.remove(org_id)?, &active)))
        })
        .filter(|(_, t)| validate(join(&platform, [t])).is_ok())
        .collect();
    let report = |carried: &BTreeMap<&str, Tenant>| -> Vec<Problem> {
        bad.iter()
            .map(|(org_id, problems)| Problem {
                org_id: Some(org_id.clone()),
                action: if carried.contains_key(org_id.as_str()) {
                    Action::Previous
                } else {
                    Action::Omitted
                },
                message: message(problems),
            })
            .collect()
    };
    if !carried.is_empty() {
        let candidate = join(&platform, good.iter().copied().chain(carried.values()));
        if validate(candidate.clone()).is_ok() {
            return Isolated {
                snapshot: Some(candidate),
                problems: report(&carried),
            };
        }
    }
    let candidate = join(&platform, good.iter().copied());
    match validate(candidate.clone()) {
        Ok(()) => Isolated {
            snapshot: Some(candidate),
            problems: report(&BTreeMap::new()),
        },
        // Orgs valid alone but not together (which the store's constraints should make
        // impossible): nothing to single out.
        Err(problems) => held(&problems),
    }
}

#[cfg(test)]
mod tests;
