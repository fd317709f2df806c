//! Step 7: settle. A [`CallGuard`] exists from the first moment of a call and owns what
//! must happen at its end: settle (or release) the budget reservation with the actual
//! cost, give back the limiter's slots, and emit exactly one usage event. It does all
//! of that in `Drop`, so it happens on success, on every error path, and when the
//! client disconnects mid-stream (hyper drops the body, the body drops the guard).
//! Ledger I/O runs on the gateway's `TaskTracker`, which shutdown drains.

use std::sync::Arc;

use futures_util::FutureExt;
use std::time::Instant;

use tokio_util::task::TaskTracker;
use tollgate_proto::telemetry::{CallStatus, UsageEvent};

use super::emit::Emitter;
use super::limit::Permit;
use crate::ledger::{Ledger, Ledgers, Reservation};
use crate::money::{self, Micros, Prices, Usage};

/// Rough characters per token, for when a provider reports no usage at all.
const CHARS_PER_TOKEN: usize = 4;

pub struct CallGuard {
    ledger: Arc<Ledgers>,
    tasks: TaskTracker,
    emitter: Emitter,
    started: Instant,
    reservation: Option<Reservation>,
    _permit: Option<Permit>,
    /// The event as it fills up along the pipeline.
    pub event: UsageEvent,
    prices: Prices,
    estimated_prompt_tokens: u64,
    usage: Option<Usage>,
    streamed_chars: usize,
    first_byte: Option<Instant>,
    /// Set once the response has been handed over completely.
    finished: bool,
    reached_upstream: bool,
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
            reservation: None,
            _permit: None,
            event,
            prices: Prices::default(),
            estimated_prompt_tokens: 0,
            usage: None,
            streamed_chars: 0,
            first_byte: None,
            finished: false,
            reached_upstream: false,
        }
    }

    pub fn hold_permit(&mut self, permit: Permit) {
        self._permit = Some(permit);
    }

    pub fn hold_reservation(
        &mut self,
        reservation: Option<Reservation>,
        estimated_prompt_tokens: u64,
    ) {
        self.event.reserved_micros = reservation.as_ref().map_or(0, |r| r.amount.0);
        self.reservation = reservation;
        self.estimated_prompt_tokens = estimated_prompt_tokens;
    }

    /// The call reached a deployment with these prices (cost is computed at its end).
    pub fn routed(&mut self, deployment_id: &str, prices: Prices, attempts: u32) {
        self.event.deployment_id = deployment_id.to_owned();
        self.event.attempts = attempts;
        self.prices = prices;
        self.reached_upstream = true;
    }

    pub fn attempts(&mut self, attempts: u32) {
        self.event.attempts = attempts;
    }

    pub fn first_byte(&mut self) {
        self.first_byte.get_or_insert_with(Instant::now);
    }

    /// Usage reported by the provider; later reports replace earlier ones (cumulative).
    pub fn usage(&mut self, usage: Usage) {
        self.usage = Some(usage);
    }

    pub fn streamed(&mut self, chars: usize) {
        self.streamed_chars += chars;
    }

    /// The response was delivered in full with this HTTP status.
    pub fn finish(&mut self, http_status: u16) {
        self.event.http_status = u32::from(http_status);
        self.finished = true;
    }

    /// Ends the call with an error answered to the client.
    pub fn fail(&mut self, http_status: u16, code: &str, upstream: bool) {
        self.event.http_status = u32::from(http_status);
        self.event.error_code = code.to_owned();
        self.event.status = if upstream {
            CallStatus::UpstreamError
        } else {
            CallStatus::Rejected
        } as i32;
        self.finished = true;
    }

    /// What the call used: the provider's numbers, else an estimate from what was seen.
    fn final_usage(&self) -> Usage {
        if let Some(usage) = self.usage {
            return usage;
        }
        if !self.reached_upstream {
            return Usage::default();
        }
        Usage {
            input: self.estimated_prompt_tokens,
            output: self.streamed_chars.div_ceil(CHARS_PER_TOKEN) as u64,
            ..Usage::default()
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let usage = self.final_usage();
        let cost = if self.reached_upstream {
            money::cost(&usage, &self.prices)
        } else {
            Micros::ZERO
        };
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

        if let Some(reservation) = self.reservation.take() {
            let ledger = self.ledger.clone();
            let settle = async move {
                if let Err(e) = ledger.settle(&reservation, cost).await {
                    tracing::error!(error = %e, reservation = %reservation.id, "could not settle a reservation");
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
