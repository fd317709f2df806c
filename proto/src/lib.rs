//! Wire types of Tollgate's two gRPC links, generated from `proto/*.proto`:
//! [`config`] (control plane → gateways, signed snapshots with Ack/Nack) and
//! [`telemetry`] (gateways → control plane, usage batches).
//!
//! This crate holds no business logic: validation of what arrives happens where it is
//! turned into domain types (`TryFrom` in each plane), not here.

/// `tollgate.config.v1`: `ConfigService.Stream` and the `Snapshot` it carries.
pub mod config {
    tonic::include_proto!("tollgate.config.v1");
}

/// `tollgate.telemetry.v1`: `TelemetryService.Report` and `UsageEvent`.
pub mod telemetry {
    tonic::include_proto!("tollgate.telemetry.v1");
}

mod kinds;

#[cfg(test)]
mod tests;
