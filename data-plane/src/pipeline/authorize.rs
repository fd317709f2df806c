//! Step 2: may this caller use this model? The alias must exist, and every allow-list
//! on the way (key, project, team) must let it through: a list that is not set lets
//! everything through, an empty one nothing; an entry naming an alias stands for the
//! model the alias names.

use std::sync::Arc;

use super::authenticate::Caller;
use crate::snapshot::{Model, Snapshot};

/// Permission to call one model.
#[derive(Debug, Clone)]
pub struct Grant {
    pub model: Arc<Model>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthzError {
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    UnknownModel(String),
    #[error("Your key may not use the model `{0}`.")]
    NotAllowed(String),
}

pub fn authorize(
    snapshot: &Snapshot,
    caller: &Caller<'_>,
    requested: &str,
) -> Result<Grant, AuthzError> {
    let model = snapshot
        .model(requested)
        .ok_or_else(|| AuthzError::UnknownModel(requested.to_owned()))?;
    if !allowed(caller, model) {
        return Err(AuthzError::NotAllowed(requested.to_owned()));
    }
    Ok(Grant {
        model: model.clone(),
    })
}

/// Every allow-list between the key and its team lets `model` through.
pub fn allowed(caller: &Caller<'_>, model: &Model) -> bool {
    caller.key.allowed_models.permits(model)
        && caller
            .project
            .is_none_or(|p| p.allowed_models.permits(model))
        && caller.team.allowed_models.permits(model)
}
