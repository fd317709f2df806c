//! Telemetry: what gateways report back, and what the control plane makes of it.
//!
//! - [`ingest`]: `TelemetryService.Report`, usage batches into the day-partitioned request
//!   log and the hourly/daily rollups, idempotently, acked after commit;
//! - [`spent`]: `TelemetryService.Spent`, budget periods' durable spend for Redis re-seeds;
//! - [`partitions`]: the request log's partitions and retention;
//! - [`alerts`]: budget thresholds checked for the scopes each batch spent in;
//! - [`webhook`]: alert delivery (signed, retried with backoff, logged).
//!
//! Gateways authenticate both RPCs with their region's enrollment token, as on the config
//! stream. Nothing here decides what an admin may see: the usage and alert APIs do.

pub mod alerts;
pub mod destination;
pub mod ingest;
pub mod partitions;
pub mod spent;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tollgate_proto::telemetry as proto;
use tollgate_proto::telemetry::telemetry_service_server::{
    TelemetryService, TelemetryServiceServer,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::config::TelemetrySettings;
use crate::store::{Pool, StoreError, fleet};
use alerts::Touches;

/// Largest message accepted: a batch of [`ingest::MAX_EVENTS`] events with long free-text
/// fields.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The telemetry gRPC service, ready for the gRPC server.
pub type Service = TelemetryServiceServer<Telemetry>;

/// Ingest and `Spent` for the gRPC server, sharing the alert checker's queue.
#[derive(Clone)]
pub struct Telemetry {
    pool: Pool,
    touches: Arc<Touches>,
}

impl Telemetry {
    /// Runs a first pass of the partition upkeep, then starts it hourly, the alert
    /// checker and the webhook delivery worker; all stop when `shutdown` is cancelled.
    pub async fn start(
        pool: Pool,
        settings: &TelemetrySettings,
        shutdown: CancellationToken,
    ) -> Self {
        partitions::maintain_now(&pool, settings.retention_days).await;
        let touches = Arc::new(Touches::default());
        let deliveries = Arc::new(Notify::new());
        tokio::spawn(partitions::run(
            pool.clone(),
            settings.retention_days,
            shutdown.clone(),
        ));
        tokio::spawn(alerts::run(
            pool.clone(),
            touches.clone(),
            deliveries.clone(),
            shutdown.clone(),
        ));
        if let Some(deliverer) = webhook::Deliverer::new(pool.clone(), settings) {
            tokio::spawn(deliverer.run(deliveries, shutdown));
        }
        Self { pool, touches }
    }

    pub fn service(&self) -> Service {
        TelemetryServiceServer::new(self.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// The region whose enrollment token (`authorization: Bearer tge_…`) the call carries.
pub async fn region_of(pool: &Pool, metadata: &MetadataMap) -> Result<String, Status> {
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated("missing enrollment token (authorization: Bearer tge_…)")
        })?;
    match fleet::region_for_token(pool, token).await {
        Ok(region) => Ok(region),
        Err(StoreError::NotFound) => Err(Status::unauthenticated(
            "unknown or revoked enrollment token",
        )),
        Err(e) => {
            tracing::error!(error = %e, "enrollment check failed");
            Err(Status::unavailable("control plane database unavailable"))
        }
    }
}

#[tonic::async_trait]
impl TelemetryService for Telemetry {
    type ReportStream = ingest::ReportStream;

    async fn report(
        &self,
        request: Request<Streaming<proto::UsageBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let region = region_of(&self.pool, request.metadata()).await?;
        Ok(Response::new(ingest::report(
            self.pool.clone(),
            region,
            self.touches.clone(),
            request.into_inner(),
        )))
    }

    async fn spent(
        &self,
        request: Request<proto::SpentRequest>,
    ) -> Result<Response<proto::SpentReply>, Status> {
        region_of(&self.pool, request.metadata()).await?;
        spent::answer(&self.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}
