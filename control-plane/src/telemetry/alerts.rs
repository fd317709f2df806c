//! The budget alert checker: after a batch commits, the budgets on the scopes it spent
//! in are checked against their thresholds for the current period.
//!
//! Ingest only records which scopes were touched ([`Touches::add`], never waiting);
//! one task per process drains them, so a burst of batches costs one check. A threshold
//! fires once per budget period whichever replica sees it first
//! ([`alerts::fire`]); its deliveries are queued in the same transaction and the
//! delivery worker is woken.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::usage::Touched;
use crate::store::{Pool, StoreError, alerts};

/// Scopes spent in since the last check.
#[derive(Debug, Default)]
pub struct Touches {
    pending: Mutex<Pending>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Pending {
    orgs: HashSet<Uuid>,
    teams: HashSet<Uuid>,
    projects: HashSet<Uuid>,
    keys: HashSet<String>,
}

impl Touches {
    pub fn add(&self, touched: Touched) {
        {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            p.orgs.extend(touched.orgs);
            p.teams.extend(touched.teams);
            p.projects.extend(touched.projects);
            p.keys.extend(touched.keys);
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Touched {
        let p = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Touched {
            orgs: p.orgs.into_iter().collect(),
            teams: p.teams.into_iter().collect(),
            projects: p.projects.into_iter().collect(),
            keys: p.keys.into_iter().collect(),
        }
    }
}

/// Fires what `touched` crossed; the number of deliveries queued.
pub async fn check(pool: &Pool, touched: &Touched) -> Result<u64, StoreError> {
    let crossings = alerts::crossed(pool, touched).await?;
    if crossings.is_empty() {
        return Ok(0);
    }
    let fired = alerts::fire(pool, &crossings).await?;
    if fired.alerts > 0 {
        metrics::counter!("tollgate_budget_alerts_fired_total").increment(fired.alerts);
        tracing::info!(
            alerts = fired.alerts,
            deliveries = fired.notifications,
            "budget alerts fired"
        );
    }
    Ok(fired.notifications)
}

/// Checks touched scopes until `shutdown`; wakes `deliveries` when something was queued.
pub async fn run(
    pool: Pool,
    touches: Arc<Touches>,
    deliveries: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = touches.wake.notified() => {}
            () = shutdown.cancelled() => return,
        }
        let touched = touches.take();
        if touched.is_empty() {
            continue;
        }
        match check(&pool, &touched).await {
            Ok(0) => {}
            Ok(_) => deliveries.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "budget alert check failed; retrying");
                // Check them again with whatever comes next.
                touches.add(touched);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}
