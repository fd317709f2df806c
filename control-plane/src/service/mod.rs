//! The service layer: what Tollgate does, once, under both faces — the REST API
//! ([`crate::api`]) and the web UI ([`crate::ui`]). A service function takes the
//! [`Services`], the [`crate::auth::Principal`] acting and plain input; it checks the
//! permission table ([`crate::auth::rbac`]), validates, writes through [`crate::store`]
//! with its audit record in the same transaction, and answers a value or a [`Problem`].
//! Neither face decides anything itself: the API turns a [`Problem`] into problem+json,
//! the UI into inline field errors.
//!
//! Moved here so far: orgs, teams, keys, budgets, usage and the audit log (what the
//! dashboard reads and writes); the other resources' rules still live in their REST
//! handlers and move here as the UI grows (docs/architecture.md).

pub mod account;
pub mod audit;
pub mod budgets;
pub mod checks;
pub mod keys;
pub mod models;
pub mod orgs;
pub mod problem;
pub mod scope;
pub mod teams;
pub mod usage;

pub use problem::{FieldError, Problem};

use crate::store::Pool;

#[derive(Clone)]
pub struct Services {
    pub pool: Pool,
    /// Mixed into every key's HMAC; `None` = keys cannot be minted here.
    pub key_pepper: Option<secrecy::SecretString>,
    /// Budget hierarchy violations: refused, or only warned about.
    pub hierarchy: crate::config::HierarchyPolicy,
    /// Webhook signing secrets derive from it; `None` = webhooks cannot be created here.
    pub webhook_key: Option<secrecy::SecretString>,
    /// Where webhooks may point (public addresses, and the allow-listed hosts).
    pub webhook_destinations: crate::telemetry::destination::Destinations,
    /// Browser sign-in; `None` = not configured (bearer tokens only).
    pub sign_in: Option<std::sync::Arc<crate::auth::sign_in::SignIn>>,
    pub sessions: SessionPolicy,
    /// Seals orgs' IdP client secrets (`sign_in.master_key`); `None` = none can be stored.
    pub sealer: Option<std::sync::Arc<crate::auth::sealing::Sealer>>,
}

/// How sessions and IdP-granted roles behave (from `[sign_in]`).
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    pub cookies: crate::auth::session::Cookies,
    /// Seconds a session may sit unused.
    pub idle_s: i64,
    /// Seconds a session lives at most.
    pub absolute_s: i64,
    /// Seconds an IdP-granted role lasts without a renewing sign-in.
    pub membership_max_age_s: i64,
    /// `<public_url>` without a trailing slash, when sign-in is configured.
    pub public_url: Option<String>,
}
