//! The gateway (binary `tollgate-gateway`, coming with the data-plane issue) will own the
//! OpenAI-compatible HTTP API and its request pipeline — authenticate, authorize, limit,
//! reserve, route, forward, settle, emit — plus the provider adapters, the Redis budget
//! ledger and rate limiters, the config-push client and the telemetry client.
//!
//! It is stateless apart from the live config snapshot (swapped atomically) and its
//! last-known-good copy on disk; budgets and limits shared between gateways live in Redis.
