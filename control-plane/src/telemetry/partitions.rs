//! Upkeep of the request log's day partitions: yesterday's, today's and the next
//! [`DAYS_AHEAD`] days' exist (created at startup and hourly), and those older than
//! `[telemetry] retention_days` are dropped. Every replica runs it; the store serialises
//! them.

use std::time::Duration;

use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use crate::store::{Pool, StoreError, usage};

pub const DAYS_AHEAD: i64 = 3;
const EVERY: Duration = Duration::from_secs(3600);

/// One pass: create what is missing, drop what is too old.
pub async fn maintain(pool: &Pool, retention_days: u32, today: Date) -> Result<(), StoreError> {
    for offset in -1..=DAYS_AHEAD {
        let Some(day) = today.checked_add(time::Duration::days(offset)) else {
            continue;
        };
        if usage::ensure_partition(pool, day).await? {
            tracing::info!(partition = %usage::partition_name(day), "usage partition created");
        }
    }
    if let Some(cutoff) = today.checked_sub(time::Duration::days(i64::from(retention_days))) {
        for name in usage::drop_partitions_before(pool, cutoff).await? {
            tracing::info!(partition = %name, "usage partition dropped (retention)");
        }
    }
    Ok(())
}

/// A pass now, logging (not failing) when it cannot be done.
pub async fn maintain_now(pool: &Pool, retention_days: u32) {
    let today = OffsetDateTime::now_utc().date();
    if let Err(e) = maintain(pool, retention_days, today).await {
        tracing::warn!(error = %e, "usage partition upkeep failed; trying again in an hour");
    }
}

/// A pass every hour (the first an hour from now) until `shutdown`.
pub async fn run(pool: Pool, retention_days: u32, shutdown: CancellationToken) {
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shutdown.cancelled() => return,
        }
        maintain_now(&pool, retention_days).await;
    }
}
