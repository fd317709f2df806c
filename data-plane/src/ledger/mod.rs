//! The budget ledger: reserve the worst case before a call, settle the real cost after.
//!
//! Semantics every implementation keeps (the in-process one here, the Redis one that
//! several gateways share):
//! - **reserve** checks every budget line of the call and reserves the amount in all of
//!   them or in none; a short line is reported with what remains on it;
//! - **settle** replaces the reserved amount with the actual cost in every line of the
//!   reservation (the lines remember their period, so a rollover in between does not
//!   move the money), and is idempotent by reservation id;
//! - **release** is settle with zero cost;
//! - **clamp**: when a short line allows clamping and can still pay `min_amount`, the
//!   reservation is granted for what that line has left (`Reservation::amount` is then
//!   below the request) and the caller lowers the call's output ceiling to match.

pub mod memory;
pub mod pins;
pub mod redis;
pub mod redis_limits;

use std::future::Future;

use crate::money::Micros;

/// One budget that applies to a call, in the period the call falls into.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetLine {
    pub budget_id: String,
    /// Decides the Redis hash tag (all lines of a call share one org).
    pub org_id: String,
    /// Start of the budget period (Unix seconds, UTC); 0 for lifetime budgets.
    pub period_start: i64,
    pub limit: Micros,
    /// A short budget may grant less than asked (down to `min_amount`) instead of refusing.
    pub clamp: bool,
    /// How long the period's counter must be kept (seconds); 0 = forever.
    pub ttl_secs: u64,
}

#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// Unique per call (UUIDv7); settle and release refer to it.
    pub id: uuid::Uuid,
    pub lines: Vec<BudgetLine>,
    pub amount: Micros,
    /// The least a clamped reservation may be granted (a minimal answer).
    pub min_amount: Micros,
    /// Unix ms after which an unsettled reservation may be reclaimed.
    pub deadline_ms: i64,
}

/// A held reservation. It carries its lines so settling needs no other lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: uuid::Uuid,
    pub lines: Vec<BudgetLine>,
    /// What was granted: the requested amount, or less when a budget clamped it.
    pub amount: Micros,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ReserveError {
    #[error("budget {budget_id} has {remaining} left, the call may cost up to {needed}")]
    Insufficient {
        budget_id: String,
        remaining: Micros,
        needed: Micros,
    },
    #[error("budget ledger unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SettleError {
    #[error("budget ledger unavailable: {0}")]
    Unavailable(String),
}

pub trait Ledger: Send + Sync {
    fn reserve(
        &self,
        request: ReserveRequest,
    ) -> impl Future<Output = Result<Reservation, ReserveError>> + Send;

    /// Replaces `reservation.amount` by `actual` in every line. Idempotent.
    fn settle(
        &self,
        reservation: &Reservation,
        actual: Micros,
    ) -> impl Future<Output = Result<(), SettleError>> + Send;

    fn release(
        &self,
        reservation: &Reservation,
    ) -> impl Future<Output = Result<(), SettleError>> + Send {
        self.settle(reservation, Micros::ZERO)
    }
}

/// Where spend is durably recorded — the control plane's rollups, fed by telemetry — so
/// that a Redis that comes back empty can be re-seeded (`RedisLedger::reseed`) with
/// `spent = max(redis, durable)` and never forgets what was spent. Implemented by the
/// control-plane client when telemetry lands.
pub trait SpendSource: Send + Sync {
    /// Durable spend of each line's budget in the line's period, in the same order.
    fn spent(
        &self,
        lines: &[BudgetLine],
    ) -> impl Future<Output = Result<Vec<Micros>, SettleError>> + Send;
}

/// The ledgers a gateway can run with (closed set, chosen by `[ledger] kind`).
#[derive(Debug)]
pub enum Ledgers {
    Memory(memory::MemoryLedger),
    Redis(Box<redis::RedisLedger>),
}

impl Ledger for Ledgers {
    async fn reserve(&self, request: ReserveRequest) -> Result<Reservation, ReserveError> {
        match self {
            Self::Memory(l) => l.reserve(request).await,
            Self::Redis(l) => l.reserve(request).await,
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: Micros) -> Result<(), SettleError> {
        match self {
            Self::Memory(l) => l.settle(reservation, actual).await,
            Self::Redis(l) => l.settle(reservation, actual).await,
        }
    }
}

impl Ledgers {
    /// False while the ledger cannot take reservations (shown by `/readyz`).
    pub fn healthy(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(l) => l.healthy(),
        }
    }
}
