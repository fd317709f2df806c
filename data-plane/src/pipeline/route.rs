//! Step 5: which deployments to try, in order. A weighted random pick among healthy
//! deployments first, then the others (weighted order) as fallbacks; deployments in
//! cooldown go last — still tried when nothing else is left, rather than failing a
//! call that might succeed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::snapshot::{Deployment, Model};

/// Consecutive-failure circuit breaker per deployment, shared by every call in the process.
#[derive(Debug)]
pub struct Cooldowns {
    threshold: u32,
    period: Duration,
    state: Mutex<HashMap<String, Health>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    consecutive_failures: u32,
    cooled_until: Option<Instant>,
}

impl Cooldowns {
    pub fn new(threshold: u32, period: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            period,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_cooling(&self, deployment: &str, now: Instant) -> bool {
        self.lock()
            .get(deployment)
            .and_then(|h| h.cooled_until)
            .is_some_and(|until| until > now)
    }

    pub fn record_success(&self, deployment: &str) {
        let mut state = self.lock();
        if let Some(h) = state.get_mut(deployment) {
            *h = Health::default();
        }
    }

    /// Cools `deployment` down at once: a failure no retry there can fix (the provider
    /// refused Tollgate's own credential).
    pub fn cool_down(&self, deployment: &str, now: Instant) {
        let mut state = self.lock();
        let h = state.entry(deployment.to_owned()).or_default();
        h.consecutive_failures = 0;
        h.cooled_until = Some(now + self.period);
    }

    /// Returns true when this failure put the deployment into cooldown.
    pub fn record_failure(&self, deployment: &str, now: Instant) -> bool {
        let mut state = self.lock();
        let h = state.entry(deployment.to_owned()).or_default();
        h.consecutive_failures += 1;
        if h.consecutive_failures >= self.threshold {
            h.consecutive_failures = 0;
            h.cooled_until = Some(now + self.period);
            return true;
        }
        false
    }
}

/// May `d` serve calls with config `staleness` old? Only within its max staleness.
pub fn fresh_enough(d: &Deployment, staleness: Duration) -> bool {
    d.max_staleness.is_none_or(|max| staleness <= max)
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// Every deployment of the model allows less config staleness than this gateway has:
    /// fail closed rather than serve from config that may be long out of date.
    #[error("config is {}s old, more than any deployment of the model allows", .0.as_secs())]
    ConfigStale(Duration),
}

/// Step 5: the deployments to try for `model`, best first; none whose config is too
/// stale, and an error when that leaves none.
pub fn plan(
    model: &Model,
    cooldowns: &Cooldowns,
    now: Instant,
    staleness: Duration,
) -> Result<Vec<Arc<Deployment>>, RouteError> {
    let order = order(model, cooldowns, now, staleness);
    if order.is_empty() && !model.deployments.is_empty() {
        return Err(RouteError::ConfigStale(staleness));
    }
    Ok(order)
}

fn order(
    model: &Model,
    cooldowns: &Cooldowns,
    now: Instant,
    staleness: Duration,
) -> Vec<Arc<Deployment>> {
    let (mut healthy, mut cooling): (Vec<_>, Vec<_>) = model
        .deployments
        .iter()
        .filter(|d| fresh_enough(d, staleness))
        .cloned()
        .partition(|d| !cooldowns.is_cooling(&d.id, now));
    let mut rng = rand::rng();
    let mut order = Vec::with_capacity(model.deployments.len());
    for group in [&mut healthy, &mut cooling] {
        // Weighted sampling without replacement.
        while !group.is_empty() {
            let total: u64 = group.iter().map(|d| u64::from(d.weight)).sum();
            let mut pick = rng.random_range(0..total.max(1));
            let index = group
                .iter()
                .position(|d| {
                    let w = u64::from(d.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            order.push(group.swap_remove(index));
        }
    }
    order
}
