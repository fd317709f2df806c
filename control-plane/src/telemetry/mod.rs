//! Telemetry: what gateways report back, and what the control plane makes of it.
//!
//! - [`ingest`]: `TelemetryService.Report`, usage batches into the day-partitioned request
//!   log and the hourly/daily rollups, idempotently, acked after commit;
//! - [`spent`]: `TelemetryService.Spent`, budget periods' durable spend for Redis re-seeds;
//! - [`partitions`]: the request log's partitions and retention;
//! - [`alerts`]: budget thresholds checked for the scopes each batch spent in;
//! - [`webhook`]: alert delivery (signed, retried with backoff, logged).
//!
//! Gateways authenticate both RPCs with the credential they enrolled for, as on the
//! config stream ([`crate::push::identity`]): usage is recorded as the gateway and region
//! that credential names, never as what a batch claims. Nothing here decides what an
//! admin may see: the usage and alert APIs do.

pub mod alerts;
pub mod destination;
pub mod ingest;
pub mod partitions;
pub mod spent;
pub mod webhook;

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::prices::PriceTable;
use tollgate_proto::telemetry as proto;
use tollgate_proto::telemetry::telemetry_service_server::{
    TelemetryService, TelemetryServiceServer,
};
use tonic::{Request, Response, Status, Streaming};

use crate::config::TelemetrySettings;
use crate::push::identity::GatewayAuth;
use crate::store::Pool;
use alerts::Touches;

/// Largest message accepted: a batch of [`ingest::MAX_EVENTS`] events with long free-text
/// fields.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The telemetry gRPC service, ready for the gRPC server.
pub type Service = TelemetryServiceServer<Rpc>;

/// Ingest and `Spent` for the gRPC server, sharing the alert checker's queue.
#[derive(Clone)]
pub struct Telemetry {
    pool: Pool,
    touches: Arc<Touches>,
    /// What ingest bounds a call's cost with where a deployment sets no prices.
    prices: Option<Arc<PriceTable>>,
    retention_days: u32,
}

/// [`Telemetry`] behind gateway authentication.
#[derive(Clone)]
pub struct Rpc {
    telemetry: Telemetry,
    auth: Arc<GatewayAuth>,
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
        // Compiled in and unit-tested, so this only fails in a broken build; ingest then
        // bounds deployments without their own prices by its fallback price.
        let prices = PriceTable::built_in()
            .inspect_err(|e| tracing::error!(error = %e, "the built-in price table does not parse"))
            .ok()
            .map(Arc::new);
        Self {
            pool,
            touches,
            prices,
            retention_days: settings.retention_days,
        }
    }

    /// The gRPC service, taking only callers `auth` vouches for.
    pub fn service(&self, auth: Arc<GatewayAuth>) -> Service {
        TelemetryServiceServer::new(Rpc {
            telemetry: self.clone(),
            auth,
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }
}

#[tonic::async_trait]
impl TelemetryService for Rpc {
    type ReportStream = ingest::ReportStream;

    async fn report(
        &self,
        request: Request<Streaming<proto::UsageBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let gateway = self.auth.authenticate(request.metadata()).await?;
        let revoked = Box::pin(self.auth.revoked(&gateway));
        let t = &self.telemetry;
        Ok(Response::new(ingest::report(
            ingest::Context {
                pool: t.pool.clone(),
                region: gateway.region,
                gateway_id: gateway.gateway_id,
                touches: t.touches.clone(),
                prices: t.prices.clone(),
                retention_days: t.retention_days,
            },
            revoked,
            request.into_inner(),
        )))
    }

    async fn spent(
        &self,
        request: Request<proto::SpentRequest>,
    ) -> Result<Response<proto::SpentReply>, Status> {
        let gateway = self.auth.authenticate(request.metadata()).await?;
        tracing::debug!(gateway = %gateway.gateway_id, region = %gateway.region, "spent asked");
        spent::answer(&self.telemetry.pool, request.get_ref())
            .await
            .map(Response::new)
    }
}
