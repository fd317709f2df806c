//! Step 7: settle. A [`CallGuard`] exists from the first moment of a call and owns what
//! must happen at its end: settle (or release) the budget reservation with the actual
//! cost, give back the limiter's slots, and emit exactly one usage event. It does all
//! of that in `Drop`, so it happens on success, on every error path, and when the
//! client disconnects mid-stream (hyper drops the body, the body drops the guard).
//! Ledger I/O runs on the gateway's `TaskTracker`, which shutdown drains.
//!
//! What a call costs: nothing if no attempt was sent; the provider's own `usage` if it
//! reported it and no attempt's bill is unknown; otherwise the reserved worst case. An
//! attempt's bill is unknown when it was sent but no definitive answer came back (a
//! timeout, a connection lost mid-answer, an answer without usage, a client that left
//! before the end) — a provider may go on generating after the client left, and the
//! reservation is the only bound the gateway holds.

use std::sync::Arc;

use futures_util::FutureExt;
use std::time::Instant;

use tokio_util::task::TaskTracker;
use tollgate_proto::telemetry::{CallStatus, UsageEvent};

use super::authenticate::Caller;
use super::authorize::Grant;
use super::emit::Emitter;
use super::forward::BeforeRetry;
use super::limit::Permit;
use super::reserve::{Estimate, Hold};
use crate::ledger::{Ledger, Ledgers, Reservation, ReserveRequest};
use crate::money::{self, Micros, Prices, Usage};
use crate::providers::JsonRequest;

/// The guard's answer to the forwarder before a retry (see [`CallGuard::before_retry`]).
pub struct RetryCover<'a> {
    pub guard: &'a mut CallGuard,
    pub ledger: &'a Ledgers,
}

impl BeforeRetry for RetryCover<'_> {
    async fn before_retry(&mut self, previous_maybe_billed: bool) -> bool {
        self.guard
            .before_retry(self.ledger, previous_maybe_billed)
            .await
    }
}

pub struct CallGuard {
    ledger: Arc<Ledgers>,
    tasks: TaskTracker,
    emitter: Emitter,
    started: Instant,
    /// The call's reservations: the first covers one attempt's worst case; each retry
    /// after an attempt whose bill is unknown adds one more (see [`Self::extend`]).
    reservations: Vec<Reservation>,
    /// Lease deadline of the reservations (Unix ms).
    deadline_ms: i64,
    _permit: Option<Permit>,
    /// The event as it fills up along the pipeline.
    pub event: UsageEvent,
    prices: Prices,
    estimate: Estimate,
    /// One attempt's worst case at the reserved output ceiling (also without budgets).
    worst_case: Micros,
    /// The output tokens that worst case pays for (every answer at the ceiling).
    worst_output_tokens: u64,
    usage: Option<Usage>,
    first_byte: Option<Instant>,
    /// Set once the response has been handed over completely.
    finished: bool,
    /// Attempts whose bill nobody knows yet: set when an attempt is sent, cleared when
    /// the provider's definitive answer (usage, or an error status) is in hand.
    unknown_bills: u32,
    /// Some attempt was sent to a provider.
    sent: bool,
}

impl CallGuard {
    pub fn new(
        ledger: Arc<Ledgers>,
        tasks: TaskTracker,
        emitter: Emitter,
        event: UsageEvent,
    ) -> Self {
        Self {
            ledger,
            tasks,
            emitter,
            started: Instant::now(),
            reservations: Vec::new(),
            deadline_ms: 0,
            _permit: None,
            event,
            prices: Prices::default(),
            estimate: Estimate::default(),
            worst_case: Micros::ZERO,
            worst_output_tokens: 0,
            usage: None,
            first_byte: None,
            finished: false,
            unknown_bills: 0,
            sent: false,
        }
    }

    /// The request as read: what the event says was asked for.
    pub fn requested(&mut self, req: &JsonRequest) {
        self.event.model = req.model().to_owned();
        self.event.streamed = req.stream();
    }

    /// Who is calling (step 1's answer), for the event and the call's span.
    pub fn caller(&mut self, caller: &Caller<'_>) {
        self.event.key_id = caller.key.public_id.clone();
        self.event.team_id = caller.team.id.clone();
        self.event.org_id = caller.org.id.clone();
        self.event.project_id = caller.project.map(|p| p.id.clone()).unwrap_or_default();
        let span = tracing::Span::current();
        span.record("key_id", caller.key.public_id.as_str());
        span.record("org_id", caller.org.id.as_str());
        span.record("team_id", caller.team.id.as_str());
    }

    /// The model the call may use (step 2's answer).
    pub fn granted(&mut self, grant: &Grant) {
        self.event.model = grant.model.name.clone();
        tracing::Span::current().record("model", grant.model.name.as_str());
    }

    pub fn hold_permit(&mut self, permit: Permit) {
        self._permit = Some(permit);
    }

    /// Takes over what step 4 reserved; from here on the guard settles it.
    pub fn hold(&mut self, hold: &mut Hold) {
        self.estimate = hold.estimate;
        self.worst_case = hold.worst_case;
        self.worst_output_tokens = hold
            .ceiling
            .unwrap_or(0)
            .saturating_mul(hold.estimate.choices);
        self.prices = hold.prices.clone();
        self.deadline_ms = hold.deadline_ms;
        self.reservations.extend(hold.reservation.take());
        self.event.reserved_micros = self.reserved().0;
    }

    fn reserved(&self) -> Micros {
        self.reservations
            .iter()
            .fold(Micros::ZERO, |sum, r| sum + r.amount)
    }

    /// Before a retry. When the attempt before it may have been billed (its bill is
    /// unknown), the retry needs one more worst case reserved in the same budgets, so
    /// the reservations still bound what the providers may bill; false (do not retry)
    /// when a budget cannot pay for it. The retry's own bill is unknown until answered.
    pub async fn before_retry(&mut self, ledger: &Ledgers, previous_unknown: bool) -> bool {
        if !previous_unknown {
            return true; // the previous attempt was answered: its count is the retry's now
        }
        if let Some(first) = self.reservations.first() {
            let request = ReserveRequest {
                id: uuid::Uuid::now_v7(),
                lines: first.lines.clone(),
                amount: first.amount,
                min_amount: first.amount,
                deadline_ms: self.deadline_ms,
            };
            match ledger.reserve(request).await {
                Ok(reservation) => {
                    self.reservations.push(reservation);
                    self.event.reserved_micros = self.reserved().0;
                }
                Err(e) => {
                    tracing::info!(error = %e, "no retry: the budget cannot cover another attempt while the last one's bill is unknown");
                    return false;
                }
            }
        }
        self.unknown_bills += 1;
        true
    }

    /// The first attempt is about to be sent: until its answer is known, its bill is not.
    pub fn sending(&mut self) {
        self.sent = true;
        self.unknown_bills = 1;
    }

    /// The last attempt's answer is definitive: an error the provider does not bill
    /// (an error status, a connection never made), or (see [`Self::usage`]) a usage
    /// report.
    pub fn answered(&mut self) {
        self.unknown_bills = self.unknown_bills.saturating_sub(1);
    }

    /// The call reached a deployment with these prices (cost is computed at its end).
    pub fn routed(&mut self, deployment_id: &str, prices: Prices, attempts: u32) {
        self.event.deployment_id = deployment_id.to_owned();
        self.event.attempts = attempts;
        self.prices = prices;
    }

    pub fn attempts(&mut self, attempts: u32) {
        self.event.attempts = attempts;
    }

    pub fn first_byte(&mut self) {
        self.first_byte.get_or_insert_with(Instant::now);
    }

    /// Usage reported by the provider; later reports replace earlier ones (cumulative).
    /// The first report makes the serving attempt's bill known.
    pub fn usage(&mut self, usage: Usage) {
        if self.usage.replace(usage).is_none() {
            self.answered();
        }
    }

    /// The response was delivered in full with this HTTP status.
    pub fn finish(&mut self, http_status: u16) {
        self.event.http_status = u32::from(http_status);
        self.finished = true;
    }

    /// Ends the call with an error answered to the client (an upstream error once an
    /// attempt was sent, a refusal before).
    pub fn fail(&mut self, http_status: u16, code: &str) {
        self.event.http_status = u32::from(http_status);
        self.event.error_code = code.to_owned();
        self.event.status = if self.sent {
            CallStatus::UpstreamError
        } else {
            CallStatus::Rejected
        } as i32;
        self.finished = true;
    }

    /// What the call used and what it costs (see the module docs for the rule).
    fn outcome(&self) -> (Usage, Micros) {
        if !self.sent {
            return (Usage::default(), Micros::ZERO);
        }
        // Each attempt whose bill is unknown may have cost one whole worst case (what
        // one reservation holds, or would hold where no budget applies).
        let unknown = Micros(
            self.worst_case
                .0
                .saturating_mul(i64::from(self.unknown_bills)),
        );
        // ... and is recorded as the tokens that worst case pays for, so the event's
        // tokens and cost tell the same story.
        let n = u64::from(self.unknown_bills);
        let unknown_usage = Usage {
            input: self.estimate.prompt_tokens.saturating_mul(n),
            output: self.worst_output_tokens.saturating_mul(n),
            ..Usage::default()
        };
        match self.usage {
            Some(usage) => {
                let total = Usage {
                    input: usage.input.saturating_add(unknown_usage.input),
                    output: usage.output.saturating_add(unknown_usage.output),
                    ..usage
                };
                (total, money::cost(&usage, &self.prices) + unknown)
            }
            None => (unknown_usage, unknown),
        }
    }

    /// The tracker shutdown drains: work that outlives the client (reading the rest of
    /// an abandoned stream for its usage) runs on it.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let (usage, cost) = self.outcome();
        if let Some(permit) = self._permit.as_mut() {
            permit.actual_tokens(usage.total());
        }
        let event = &mut self.event;
        if !self.finished {
            event.status = CallStatus::ClientDisconnected as i32;
            event.http_status = 499;
        } else if event.status == CallStatus::Unspecified as i32 {
            event.status = CallStatus::Ok as i32;
        }
        event.prompt_tokens = usage.input + usage.cache_read + usage.cache_write;
        event.completion_tokens = usage.output;
        event.cache_read_tokens = usage.cache_read;
        event.cache_write_tokens = usage.cache_write;
        event.cost_micros = cost.0;
        event.latency_ms = millis(self.started.elapsed());
        event.ttfb_ms = self
            .first_byte
            .map_or(0, |t| millis(t.duration_since(self.started)));

        let reservations = std::mem::take(&mut self.reservations);
        if !reservations.is_empty() {
            let ledger = self.ledger.clone();
            let settle = async move {
                // The cost fills the reservations in order; the last takes any excess
                // (a provider's usage above the worst case is spend all the same).
                let mut left = cost;
                let last = reservations.len() - 1;
                for (i, reservation) in reservations.iter().enumerate() {
                    let share = if i == last {
                        left
                    } else {
                        left.min(reservation.amount)
                    };
                    left = left - share;
                    if let Err(e) = ledger.settle(reservation, share).await {
                        tracing::error!(error = %e, reservation = %reservation.id, "could not settle a reservation");
                    }
                }
            };
            // An in-process ledger settles without waiting; only real I/O needs a task.
            let mut settle = Box::pin(settle);
            if settle.as_mut().now_or_never().is_none() {
                self.tasks.spawn(settle);
            }
        }
        self.emitter.emit(std::mem::take(&mut self.event));
    }
}

fn millis(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}
