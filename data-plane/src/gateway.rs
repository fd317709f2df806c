//! `Gateway`: the state every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{RoutingSettings, Settings};
use crate::ledger::Ledgers;
use crate::pipeline::emit::Emitter;
use crate::pipeline::forward::HttpClients;
use crate::pipeline::limit::LocalLimiter;
use crate::pipeline::route::Cooldowns;
use crate::prices::PriceTable;
use crate::snapshot::Model;
use crate::snapshot::live::Live;

pub struct Gateway {
    pub live: Arc<Live>,
    pub ledger: Arc<Ledgers>,
    pub limiter: Arc<LocalLimiter>,
    pub cooldowns: Cooldowns,
    pub http: HttpClients,
    pub routing: RoutingSettings,
    pub prices: PriceTable,
    pub emitter: Emitter,
    /// Background work that must finish before exit (settlements).
    pub tasks: TaskTracker,
    pub metrics: PrometheusHandle,
    pub max_body_bytes: usize,
    /// Added to a call's longest duration to make its reservation's lease.
    pub lease_margin: Duration,
    pub gateway_id: String,
    pub region: String,
    /// Stops background loops at shutdown.
    pub shutdown: CancellationToken,
    /// Cancelled when a shutdown begins: `/readyz` turns 503 while calls are still served.
    pub draining: CancellationToken,
    pepper: SecretString,
}

impl Gateway {
    pub fn new(
        settings: &Settings,
        live: Arc<Live>,
        ledger: Ledgers,
        prices: PriceTable,
        emitter: Emitter,
        metrics: PrometheusHandle,
    ) -> Self {
        Self {
            live,
            ledger: Arc::new(ledger),
            limiter: Arc::new(LocalLimiter::default()),
            cooldowns: Cooldowns::new(
                settings.routing.cooldown_failures,
                Duration::from_millis(settings.routing.cooldown_ms),
            ),
            http: HttpClients::default(),
            routing: settings.routing.clone(),
            prices,
            emitter,
            tasks: TaskTracker::new(),
            metrics,
            max_body_bytes: settings.server.max_body_bytes,
            lease_margin: Duration::from_millis(settings.ledger.lease_margin_ms),
            gateway_id: settings.server.gateway_id.clone(),
            region: settings.server.region.clone(),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            pepper: settings.auth.key_pepper.clone(),
        }
    }

    pub fn pepper(&self) -> &[u8] {
        self.pepper.expose_secret().as_bytes()
    }

    /// When the leases of a call to `model` starting at `now_ms` run out (Unix ms): its
    /// longest possible duration — every attempt at the slowest deployment — plus a
    /// margin. Limiter slots and budget reservations share it.
    pub fn lease_deadline_ms(&self, model: &Model, now_ms: i64) -> i64 {
        let longest = model
            .deployments
            .iter()
            .map(|d| d.timeouts.total)
            .max()
            .unwrap_or_default();
        let lease = longest * self.routing.max_attempts + self.lease_margin;
        now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
    }
}
