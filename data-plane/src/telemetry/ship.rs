//! Ships spooled batches to the control plane over `TelemetryService.Report` and deletes
//! them from the spool once acknowledged. A window of batches is in flight at once;
//! after a reconnect everything still in the spool is sent again (ingest is idempotent
//! on event ids, so a batch the control plane stored before the break counts once).
//! Both RPCs present the gateway's enrolled credential ([`crate::identity`]).

use std::sync::Arc;
use std::time::Duration;

use crate::snapshot::remote::ControlPlanes;
use rand::RngExt;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tollgate_proto::telemetry::telemetry_service_client::TelemetryServiceClient;
use tollgate_proto::telemetry::{BudgetPeriodRef, SpentRequest, UsageBatch};

use super::spool::Spool;
use crate::identity::Credential;
use crate::ledger::{BudgetLine, SettleError, SpendSource};
use crate::money::Micros;

/// Batches sent but not yet acknowledged, at most.
const WINDOW: u64 = 16;

pub struct Shipper {
    endpoint: ControlPlanes,
    credential: Credential,
    spool: Arc<Spool>,
    /// Poked by the spooler after each append.
    wake: Arc<Notify>,
    reconnect_max: Duration,
}

impl Shipper {
    pub fn new(
        endpoint: ControlPlanes,
        credential: Credential,
        spool: Arc<Spool>,
        wake: Arc<Notify>,
        reconnect_max: Duration,
    ) -> Self {
        Self {
            endpoint,
            credential,
            spool,
            wake,
            reconnect_max,
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            metrics::gauge!("tollgate_telemetry_connected").set(0.0);
            let outcome = tokio::select! {
                outcome = self.session() => outcome,
                () = shutdown.cancelled() => return,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, spooled_bytes = self.spool.bytes(), "telemetry link to the control plane failed; usage stays in the spool");
                }
            }
            let wait = rand::rng().random_range(backoff / 2..=backoff);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(self.reconnect_max);
        }
    }

    async fn session(&self) -> Result<(), String> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let mut client = TelemetryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<UsageBatch>(WINDOW as usize);
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            );
        let mut inbound = client
            .report(self.credential.authorize(outbound).await?)
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::Unauthenticated {
                    self.credential.refused();
                }
                format!(
                    "control plane refused the link: {:?}: {}",
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        metrics::gauge!("tollgate_telemetry_connected").set(1.0);
        let (mut sent, mut acked) = (0u64, 0u64);
        let mut progressed = false;
        loop {
            if sent.saturating_sub(acked) < WINDOW {
                let spool = self.spool.clone();
                let room = usize::try_from(WINDOW - sent.saturating_sub(acked)).unwrap_or(1);
                let batches = tokio::task::spawn_blocking(move || spool.read_after(sent, room))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("reading the spool: {e}"))?;
                for batch in batches {
                    sent = batch.seq;
                    if acked == 0 {
                        // Nothing acknowledged yet on this stream: count from the first sent.
                        acked = batch.seq.saturating_sub(1);
                    }
                    tx.send(batch)
                        .await
                        .map_err(|_| "the link closed".to_owned())?;
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                ack = inbound.message() => match ack {
                    Ok(Some(ack)) => {
                        acked = acked.max(ack.committed_seq);
                        progressed = true;
                        let spool = self.spool.clone();
                        tokio::task::spawn_blocking(move || spool.acked(ack.committed_seq))
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| format!("trimming the spool: {e}"))?;
                        metrics::counter!("tollgate_telemetry_batches_acked_total").increment(1);
                    }
                    Ok(None) if progressed => return Ok(()),
                    Ok(None) => return Err("the control plane closed the link".into()),
                    Err(status) => {
                        if status.code() == tonic::Code::Unauthenticated {
                            self.credential.refused();
                        }
                        return Err(format!("link ended: {status}"));
                    }
                },
            }
        }
    }
}

/// The control plane's durable spend (its rollups of every gateway's usage), to restore
/// Redis counters after Redis lost them.
pub struct ControlSpend {
    pub endpoint: ControlPlanes,
    pub credential: Credential,
}

impl SpendSource for ControlSpend {
    async fn spent(&self, lines: &[BudgetLine]) -> Result<Vec<Micros>, SettleError> {
        let unavailable = |e: String| SettleError::Unavailable(format!("control plane spend: {e}"));
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let request = SpentRequest {
            budgets: lines
                .iter()
                .map(|l| BudgetPeriodRef {
                    budget_id: l.budget_id.clone(),
                    period_start_unix_s: l.period_start,
                })
                .collect(),
        };
        let reply = TelemetryServiceClient::new(channel)
            // The ledger's upkeep loop asks: it must never wait on an enrollment (its
            // reaper runs in the same loop).
            .spent(
                self.credential
                    .authorize_now(request)
                    .map_err(unavailable)?,
            )
            .await
            .map_err(|s| unavailable(s.message().to_owned()))?
            .into_inner();
        Ok(reply.spent_micros.into_iter().map(Micros).collect())
    }
}
