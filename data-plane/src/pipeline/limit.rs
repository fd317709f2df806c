//! Step 3: rate limits — requests/min, tokens/min and requests in flight — on every
//! scope of the caller (key, project, team, org) that sets them.
//!
//! This is the in-process limiter (one gateway). Limits shared by a fleet come with the
//! Redis ledger; the step's interface stays the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::authenticate::Caller;
use crate::snapshot::{Limits, ScopeKind};

const WINDOW_MS: i64 = 60_000;

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

/// Concurrency slots held by one call; released on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<LocalLimiter>,
    held: Vec<(ScopeKind, String)>,
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
        let mut scopes = self.limiter.lock();
        for key in &self.held {
            if let Some(state) = scopes.get_mut(key) {
                state.in_flight = state.in_flight.saturating_sub(1);
            }
        }
    }
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
        let mut scopes: Vec<(ScopeKind, &str, Limits)> = vec![
            (ScopeKind::Key, &caller.key.public_id, caller.key.limits),
            (ScopeKind::Team, &caller.team.id, caller.team.limits),
            (ScopeKind::Org, &caller.org.id, caller.org.limits),
        ];
        if let Some(project) = caller.project {
            scopes.push((ScopeKind::Project, &project.id, project.limits));
        }
        scopes.retain(|(_, _, limits)| !limits.is_unlimited());
        let window_start = now_ms - now_ms.rem_euclid(WINDOW_MS);
        let reset =
            Duration::from_millis(u64::try_from(window_start + WINDOW_MS - now_ms).unwrap_or(0));
        let mut info = RateInfo {
            reset,
            ..RateInfo::default()
        };
        if scopes.is_empty() {
            return Ok((
                Permit {
                    limiter: self.clone(),
                    held: Vec::new(),
                },
                info,
            ));
        }

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
                return Err(refuse("tokens per minute", tpm, reset));
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
            if limits.max_concurrent.is_some() {
                s.in_flight += 1;
                held.push(key);
            }
        }
        drop(state);
        Ok((
            Permit {
                limiter: self.clone(),
                held,
            },
            info,
        ))
    }
}
