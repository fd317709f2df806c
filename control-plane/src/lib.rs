//! The control plane (binary `tollgate-control`, coming with the control-plane issue)
//! will own the truth: orgs, teams, projects, users, virtual keys, models, deployments,
//! budgets and limits in Postgres; the admin REST API with its OpenAPI document; OIDC
//! login, sessions and RBAC; the audit log; the snapshot builder and Ed25519 signer with
//! the `ConfigService` gRPC server; telemetry ingest, spend rollups and budget alerts.
//!
//! It must never hold a key's secret after showing it once, and never sends gateways
//! anything unsigned. Wire types come from [`tollgate_proto`].
