//! Usage to the control plane: the emit step's queue is drained into an on-disk
//! [`spool::Spool`] in batches (adaptive: a batch is whatever arrived during the previous
//! fsync), and [`ship::Shipper`] streams the spool to `TelemetryService.Report`. The
//! request path only ever does a non-blocking `try_send` into the queue.

pub mod ship;
pub mod spool;

use std::sync::Arc;

use tokio::sync::Notify;
use tollgate_proto::telemetry::UsageEvent;

use spool::{Spool, SpoolError};

/// Hands batches to the spool and wakes the shipper.
#[derive(Clone)]
pub struct Spooler {
    pub spool: Arc<Spool>,
    pub wake: Arc<Notify>,
}

impl Spooler {
    /// Makes `events` durable (off the async workers); counts and logs them if it cannot.
    pub async fn store(&self, events: Vec<UsageEvent>) {
        let count = events.len() as u64;
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.append(events)).await {
            Ok(Ok(_)) => self.wake.notify_one(),
            Ok(Err(SpoolError::Full(bytes))) => {
                metrics::counter!("tollgate_telemetry_dropped_total").increment(count);
                tracing::error!(
                    count,
                    bytes,
                    "usage spool full: events dropped (the control plane has been unreachable for long)"
                );
            }
            Ok(Err(e)) => {
                metrics::counter!("tollgate_telemetry_dropped_total").increment(count);
                tracing::error!(count, error = %e, "usage events could not be spooled: dropped");
            }
            Err(e) => {
                metrics::counter!("tollgate_telemetry_dropped_total").increment(count);
                tracing::error!(count, error = %e, "spooling panicked: events dropped");
            }
        }
    }
}
