//! The control plane (binary `tollgate-control`) owns the truth: the platform catalog
//! (regions, providers, models, deployments), orgs, teams, projects, users and their roles,
//! virtual keys, budgets and rate limits, in Postgres; the admin REST API over them
//! (OpenAPI 3.1 at `/api/openapi.json`); RBAC and the append-only audit log; sign-in with OpenID
//! Connect, browser sessions and personal tokens ([`auth`]); the web dashboard ([`ui`], drawn
//! by `tollgate-web-ui`). [`service`] holds the rules both faces share. [`push`] signs and streams config to
//! gateways; [`telemetry`] takes their usage back (request log, rollups, budget alerts).
//!
//! Layout: [`store`] is the only place with SQL (one file per aggregate, tenant id in
//! every WHERE); [`auth`] turns a request into a [`auth::Principal`] and decides what it
//! may do ([`auth::rbac`]); [`api`] is the HTTP surface with its problem+json error.
//! It must never keep a key's or token's secret after showing it once.

pub mod api;
pub mod auth;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod push;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod ui;

/// Migrations embedded at compile time (no database needed to build).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
