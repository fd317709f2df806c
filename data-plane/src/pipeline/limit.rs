//! Step 3: rate limits — requests/min, tokens/min and requests in flight — on every
//! scope of the caller (key, project, team, org) that sets them.
//!
//! With the Redis ledger the counters are shared by every gateway (one atomic script per
//! call, see `ledger::redis_limits`); with the in-process ledger — or while Redis is
//! unreachable — they are this gateway's own. A caller with no limits anywhere costs
//! nothing here (no lock, no round trip).
//!
//! Tokens per minute count the call's estimate while it runs — usually the prompt's
//! cheap bound, see `tokenize` — and the tokens it really used once it ends (both
//! ledgers correct the window then). A bound that a tokens/min limit refuses is counted
//! again by the tokenizer and tried once more ([`limit_grant`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::authenticate::Caller;
use super::authorize::Grant;
use crate::ledger::Ledgers;
use crate::ledger::redis_limits::{Refusal, SharedSlots};
use crate::providers::Endpoint;
use crate::providers::JsonRequest;
use crate::snapshot::{Limits, ScopeKind};

const WINDOW_MS: i64 = 60_000;

const TOKENS_PER_MINUTE: &str = "tokens per minute";

#[derive(Debug, Default)]
pub struct LocalLimiter {
    scopes: Mutex<HashMap<(ScopeKind, String), ScopeState>>,
}

#[derive(Debug, Default)]
struct ScopeState {
    /// Start of the current one-minute window (Unix ms, aligned to the minute).
    window_start_ms: i64,
    requests: u64,
    tokens: u64,
    in_flight: u32,
}

/// Concurrency slots held by one call; released on drop (and, in Redis, the tokens/min
/// estimate corrected to what the call really used).
#[derive(Debug)]
pub struct Permit {
    held: Held,
    estimated_tokens: u64,
    actual_tokens: Option<u64>,
}

#[derive(Debug)]
enum Held {
    Nothing,
    Local {
        limiter: Arc<LocalLimiter>,
        /// Scopes with a concurrency slot (`true`) or a tokens/min count to correct.
        scopes: Vec<((ScopeKind, String), bool)>,
        /// The window the call's tokens were counted in.
        window_start_ms: i64,
    },
    Redis {
        ledger: Arc<Ledgers>,
        tasks: TaskTracker,
        slots: SharedSlots,
    },
}

impl Permit {
    /// Tokens the call really used (prompt + completion), for the tokens/min correction.
    pub fn actual_tokens(&mut self, tokens: u64) {
        self.actual_tokens = Some(tokens);
    }
}

/// What the `x-ratelimit-*` headers report (the scope with the least headroom).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateInfo {
    pub requests: Option<(u64, u64)>,
    pub tokens: Option<(u64, u64)>,
    /// Until the window resets.
    pub reset: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Rate limit reached for {scope} {scope_id}: {limit} {what}. Please try again in {}s.", .retry_after.as_secs().max(1))]
pub struct LimitError {
    pub scope: ScopeKind,
    pub scope_id: String,
    pub what: &'static str,
    pub limit: u64,
    pub retry_after: Duration,
    pub info: RateInfo,
}

impl Drop for Permit {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::Nothing => {}
            Held::Local {
                limiter,
                scopes,
                window_start_ms,
            } => {
                let mut state = limiter.lock();
                for (key, slot) in &scopes {
                    let Some(s) = state.get_mut(key) else {
                        continue;
                    };
                    if *slot {
                        s.in_flight = s.in_flight.saturating_sub(1);
                    }
                    // The window counts what the call used, not what it was estimated at
                    // (a window that has moved on counts nothing of it anyway).
                    if let Some(actual) = self.actual_tokens
                        && s.window_start_ms == window_start_ms
                    {
                        s.tokens = s.tokens.saturating_sub(self.estimated_tokens) + actual;
                    }
                }
            }
            Held::Redis {
                ledger,
                tasks,
                slots,
            } => {
                let delta = self.actual_tokens.map_or(0, |actual| {
                    i64::try_from(actual).unwrap_or(i64::MAX)
                        - i64::try_from(self.estimated_tokens).unwrap_or(i64::MAX)
                });
                tasks.spawn(async move {
                    if let Ledgers::Redis(redis) = &*ledger
                        && let Err(e) = redis.release_slots(&slots, delta).await
                    {
                        // The slots expire with their lease anyway.
                        tracing::warn!(error = %e, "could not release rate-limit slots");
                    }
                });
            }
        }
    }
}

/// The caller's scopes that set any limit.
fn limited_scopes<'c>(caller: &Caller<'c>) -> Vec<(ScopeKind, &'c str, Limits)> {
    let mut scopes: Vec<(ScopeKind, &str, Limits)> = vec![
        (ScopeKind::Key, &caller.key.public_id, caller.key.limits),
        (ScopeKind::Team, &caller.team.id, caller.team.limits),
        (ScopeKind::Org, &caller.org.id, caller.org.limits),
    ];
    if let Some(project) = caller.project {
        scopes.push((ScopeKind::Project, &project.id, project.limits));
    }
    scopes.retain(|(_, _, limits)| !limits.is_unlimited());
    scopes
}

fn window(now_ms: i64) -> (i64, Duration) {
    let start = now_ms - now_ms.rem_euclid(WINDOW_MS);
    (
        start,
        Duration::from_millis(u64::try_from(start + WINDOW_MS - now_ms).unwrap_or(0)),
    )
}

/// The step for a granted call: `admit` (a [`limit`] call) at the grant's tokens; when a
/// tokens/min limit refuses an estimate counted by the bound, the prompt is counted by
/// the tokenizer and the call admitted once more (the refusal counted nowhere).
pub async fn limit_grant<F, Fut>(
    grant: &mut Grant,
    req: &JsonRequest,
    endpoint: Endpoint,
    admit: F,
) -> Result<(Permit, RateInfo), Box<LimitError>>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<(Permit, RateInfo), Box<LimitError>>>,
{
    match admit(grant.estimate.tokens()).await {
        Err(refused) if refused.what == TOKENS_PER_MINUTE && grant.count_exactly(req, endpoint) => {
            metrics::counter!("tollgate_estimates_recounted_total", "step" => "limit").increment(1);
            admit(grant.estimate.tokens()).await
        }
        other => other,
    }
}

/// The step: admit a call estimated at `tokens`, holding its slots until `lease_deadline_ms`
/// at the latest.
pub async fn limit(
    local: &Arc<LocalLimiter>,
    ledger: &Arc<Ledgers>,
    tasks: &TaskTracker,
    caller: &Caller<'_>,
    tokens: u64,
    now_ms: i64,
    lease_deadline_ms: i64,
) -> Result<(Permit, RateInfo), Box<LimitError>> {
    let scopes = limited_scopes(caller);
    let (window_start, reset) = window(now_ms);
    if scopes.is_empty() {
        let permit = Permit {
            held: Held::Nothing,
            estimated_tokens: tokens,
            actual_tokens: None,
        };
        return Ok((
            permit,
            RateInfo {
                reset,
                ..RateInfo::default()
            },
        ));
    }
    if let Ledgers::Redis(redis) = &**ledger {
        match redis
            .admit(
                &caller.org.id,
                &scopes,
                tokens,
                now_ms,
                window_start,
                lease_deadline_ms,
            )
            .await
        {
            Ok(Ok((slots, requests, token_room))) => {
                let permit = Permit {
                    held: Held::Redis {
                        ledger: ledger.clone(),
                        tasks: tasks.clone(),
                        slots,
                    },
                    estimated_tokens: tokens,
                    actual_tokens: None,
                };
                return Ok((
                    permit,
                    RateInfo {
                        requests,
                        tokens: token_room,
                        reset,
                    },
                ));
            }
            Ok(Err(Refusal {
                index,
                kind,
                limit,
                remaining_requests,
                remaining_tokens,
            })) => {
                let (scope, id, limits) = scopes[index];
                let (what, retry_after) = match kind {
                    1 => ("requests per minute", reset),
                    2 => (TOKENS_PER_MINUTE, reset),
                    _ => ("concurrent requests", Duration::from_secs(1)),
                };
                return Err(Box::new(LimitError {
                    scope,
                    scope_id: id.to_owned(),
                    what,
                    limit,
                    retry_after,
                    info: RateInfo {
                        requests: limits.rpm.map(|rpm| (u64::from(rpm), remaining_requests)),
                        tokens: limits.tpm.map(|tpm| (tpm, remaining_tokens)),
                        reset,
                    },
                }));
            }
            Err(e) => {
                metrics::counter!("tollgate_rate_limit_fallbacks_total").increment(1);
                tracing::warn!(error = %e, "Redis unreachable: rate limits count on this gateway only");
            }
        }
    }
    local.admit(caller, tokens, now_ms)
}

impl LocalLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ScopeKind, String), ScopeState>> {
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits one call estimated at `tokens` or says which limit it hit. All scopes are
    /// checked before any is counted, so a refused call counts nowhere.
    pub fn admit(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        tokens: u64,
        now_ms: i64,
    ) -> Result<(Permit, RateInfo), Box<LimitError>> {
        let scopes = limited_scopes(caller);
        let (window_start, reset) = window(now_ms);
        let mut info = RateInfo {
            reset,
            ..RateInfo::default()
        };

        let mut state = self.lock();
        for (kind, id, limits) in &scopes {
            let s = state.entry((*kind, (*id).to_owned())).or_default();
            if s.window_start_ms != window_start {
                s.window_start_ms = window_start;
                s.requests = 0;
                s.tokens = 0;
            }
            // The refusal reports this scope's headroom in the x-ratelimit-* headers.
            let headroom = RateInfo {
                requests: limits
                    .rpm
                    .map(|rpm| (u64::from(rpm), u64::from(rpm).saturating_sub(s.requests))),
                tokens: limits.tpm.map(|tpm| (tpm, tpm.saturating_sub(s.tokens))),
                reset,
            };
            let refuse = |what, limit: u64, retry_after| {
                Box::new(LimitError {
                    scope: *kind,
                    scope_id: (*id).to_owned(),
                    what,
                    limit,
                    retry_after,
                    info: headroom,
                })
            };
            if let Some(rpm) = limits.rpm.map(u64::from)
                && s.requests + 1 > rpm
            {
                return Err(refuse("requests per minute", rpm, reset));
            }
            if let Some(tpm) = limits.tpm
                && s.tokens + tokens > tpm
            {
                return Err(refuse(TOKENS_PER_MINUTE, tpm, reset));
            }
            if let Some(max) = limits.max_concurrent
                && s.in_flight + 1 > max
            {
                return Err(refuse(
                    "concurrent requests",
                    u64::from(max),
                    Duration::from_secs(1),
                ));
            }
        }
        let mut held = Vec::new();
        for (kind, id, limits) in &scopes {
            let key = (*kind, (*id).to_owned());
            let Some(s) = state.get_mut(&key) else {
                continue;
            };
            s.requests += 1;
            s.tokens += tokens;
            if let Some(rpm) = limits.rpm.map(u64::from) {
                let remaining = rpm.saturating_sub(s.requests);
                if info.requests.is_none_or(|(_, r)| remaining < r) {
                    info.requests = Some((rpm, remaining));
                }
            }
            if let Some(tpm) = limits.tpm {
                let remaining = tpm.saturating_sub(s.tokens);
                if info.tokens.is_none_or(|(_, r)| remaining < r) {
                    info.tokens = Some((tpm, remaining));
                }
            }
            let slot = limits.max_concurrent.is_some();
            if slot {
                s.in_flight += 1;
            }
            if slot || limits.tpm.is_some() {
                held.push((key, slot));
            }
        }
        drop(state);
        let permit = Permit {
            held: Held::Local {
                limiter: self.clone(),
                scopes: held,
                window_start_ms: window_start,
            },
            estimated_tokens: tokens,
            actual_tokens: None,
        };
        Ok((permit, info))
    }
}
