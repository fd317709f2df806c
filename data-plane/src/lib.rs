//! The Tollgate gateway: an OpenAI-compatible HTTP API that authenticates virtual keys,
//! enforces model access, rate limits and budgets, and forwards calls to providers.
//!
//! Layout (one module per concern):
//! - [`config`]: the process's own `Settings` (TOML + `TOLLGATE_*` env);
//! - [`snapshot`]: the validated runtime config (keys, models, deployments, budgets),
//!   swapped atomically by [`snapshot::live`]; [`snapshot::file`] reads the standalone form,
//!   [`snapshot::remote`] streams signed snapshots from the control plane;
//! - [`identity`]: the short-lived credential the gateway enrolls for and renews, which
//!   its links to the control plane present;
//! - [`pipeline`]: the request steps, one module each, in call order;
//! - [`providers`]: one adapter per provider behind one trait;
//! - [`lanes`]: the client surfaces beside chat (Anthropic Messages, OpenAI Responses),
//!   passed through to the providers that speak them and translated for the rest;
//! - [`ledger`]: budget reservation and settlement;
//! - [`telemetry`]: usage events to the control plane (spool + shipper);
//! - [`otel`]: OpenTelemetry traces over OTLP and W3C `traceparent` propagation (off
//!   unless configured);
//! - [`money`], [`prices`], [`tokenize`]: pure building blocks (the key format is the
//!   `tollgate-keys` crate, shared with the control plane);
//! - [`api`]: the axum routes and the OpenAI-shaped error.
//!
//! The gateway holds no state that outlives the process except what the ledger keeps;
//! it never logs key secrets, provider credentials, prompts or responses.

pub mod api;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod identity;
pub mod lanes;
pub mod ledger;
pub mod money;
pub mod otel;
pub mod pipeline;
pub mod prices;
pub mod providers;
pub mod snapshot;
pub mod telemetry;
pub mod tokenize;
