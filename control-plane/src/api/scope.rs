//! Budget and rate-limit scopes: the rules live in the service layer.

pub use crate::service::scope::*;
