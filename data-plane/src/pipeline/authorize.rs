//! Step 2: may this caller make this call? None of its key, project, team and org may be
//! frozen (an emergency stop refuses every call, before anything is limited or
//! reserved). The alias must exist, every allow-list on
//! the way (key, project, team) must let it through — a list that is not set lets
//! everything through, an empty one nothing; an entry naming an alias stands for the
//! model the alias names — and the request must fit the model. The answer carries the
//! call's worst case, which the limits (step 3) and the reservation (step 4) both use;
//! its prompt is counted by the cheap bound unless the caller asks for the real count,
//! and either step may ask for it later ([`Grant::count_exactly`]).

use std::sync::Arc;

use super::authenticate::Caller;
use super::reserve::{Estimate, EstimateError, estimate_counted};
use crate::providers::{Endpoint, JsonRequest};
use crate::snapshot::{Model, ScopeKind, Snapshot};
use crate::tokenize::Counting;

/// Permission to make one call to one model.
#[derive(Debug, Clone)]
pub struct Grant {
    pub model: Arc<Model>,
    /// The most the call may use and cost.
    pub estimate: Estimate,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthzError {
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    UnknownModel(String),
    #[error("Your key may not use the model `{0}`.")]
    NotAllowed(String),
    /// An admin stopped calls of this scope (the broadest frozen one is named).
    #[error(
        "Calls are stopped: {kind} `{name}` ({id}) is frozen by an administrator. Reason: {reason}"
    )]
    Frozen {
        kind: ScopeKind,
        name: String,
        id: String,
        reason: String,
    },
    /// The model cannot take the call as asked (a 400 naming the field).
    #[error(transparent)]
    Unfit(#[from] EstimateError),
}

pub fn authorize(
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    req: &JsonRequest,
    endpoint: Endpoint,
    counting: Counting,
) -> Result<Grant, AuthzError> {
    not_frozen(snapshot, caller)?;
    let model = resolve(snapshot, caller, req.model())?;
    Ok(Grant {
        estimate: estimate_counted(model, req, endpoint, counting)?,
        model: model.clone(),
    })
}

impl Grant {
    /// Counts the prompt with the tokenizer where the estimate was the bound, for a
    /// step the bound would make say no. False when there is nothing to count again.
    pub fn count_exactly(&mut self, req: &JsonRequest, endpoint: Endpoint) -> bool {
        if self.estimate.counting == Counting::Exact {
            return false;
        }
        // The bound passed every check the exact count faces, so this cannot fail.
        match estimate_counted(&self.model, req, endpoint, Counting::Exact) {
            Ok(exact) => {
                self.estimate = exact;
                true
            }
            Err(_) => false,
        }
    }
}

/// `Err(Frozen)` if a freeze covers the caller: its org, team, project or key, the
/// broadest first (lifting a narrower one would not let the call through).
pub fn not_frozen(snapshot: &Snapshot, caller: &Caller<'_>) -> Result<(), AuthzError> {
    if snapshot.freezes.is_empty() {
        return Ok(());
    }
    let project = caller
        .project
        .map(|p| (ScopeKind::Project, p.id.as_str(), p.name.as_str()));
    let scopes = [
        Some((
            ScopeKind::Org,
            caller.org.id.as_str(),
            caller.org.name.as_str(),
        )),
        Some((
            ScopeKind::Team,
            caller.team.id.as_str(),
            caller.team.name.as_str(),
        )),
        project,
        Some((
            ScopeKind::Key,
            caller.key.public_id.as_str(),
            caller.key.name.as_str(),
        )),
    ];
    for (kind, id, name) in scopes.into_iter().flatten() {
        if let Some(freeze) = snapshot.freezes.get(&(kind, id.to_owned())) {
            return Err(AuthzError::Frozen {
                kind,
                name: name.to_owned(),
                id: id.to_owned(),
                reason: freeze.reason.clone(),
            });
        }
    }
    Ok(())
}

/// The model `requested` names, if the caller may use it.
pub fn resolve<'s>(
    snapshot: &'s Snapshot,
    caller: &Caller<'_>,
    requested: &str,
) -> Result<&'s Arc<Model>, AuthzError> {
    let model = snapshot
        .model(requested)
        .ok_or_else(|| AuthzError::UnknownModel(requested.to_owned()))?;
    if !allowed(caller, model) {
        return Err(AuthzError::NotAllowed(requested.to_owned()));
    }
    Ok(model)
}

/// Every allow-list between the key and its team lets `model` through.
pub fn allowed(caller: &Caller<'_>, model: &Model) -> bool {
    caller.key.allowed_models.permits(model)
        && caller
            .project
            .is_none_or(|p| p.allowed_models.permits(model))
        && caller.team.allowed_models.permits(model)
}
