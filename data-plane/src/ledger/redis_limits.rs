//! Rate limits shared by every gateway: requests/min, tokens/min and requests in flight
//! per scope, checked and counted by one script (`admit.lua`), released by another
//! (`release.lua`) when the call ends. Keys live under the org's hash tag like the
//! budgets: `<prefix>{org:<id>}:rl:<scope>:<id>:<minute>` (hash `req`, `tok`, expires
//! after two minutes) and `…:cc:<scope>:<id>` (zset of calls in flight, scored by lease
//! deadline, so a dead gateway's slots free themselves).

use std::sync::LazyLock;

use ::redis::Script;

use super::redis::{RedisLedger, not_connected, timeout_error};
use crate::snapshot::{Limits, ScopeKind};

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("admit.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("release.lua")));

/// The Redis keys a call's limits were counted in, to release them at its end.
#[derive(Debug, Clone)]
pub struct SharedSlots {
    call_id: String,
    /// (window, in-flight set) per limited scope.
    keys: Vec<(String, String)>,
}

/// Why a call was refused: which scope (index into the scopes given), which limit
/// (1 rpm, 2 tpm, 3 concurrency), its value, and what was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub index: usize,
    pub kind: u8,
    pub limit: u64,
    pub remaining_requests: u64,
    pub remaining_tokens: u64,
}

/// (limit, remaining) of the tightest scope, when any scope limits it.
pub type Room = Option<(u64, u64)>;

fn scope_name(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Org => "org",
        ScopeKind::Team => "team",
        ScopeKind::Project => "project",
        ScopeKind::Key => "key",
    }
}

fn room(limit: i64, left: i64) -> Room {
    (limit >= 0).then(|| {
        (
            u64::try_from(limit).unwrap_or(0),
            u64::try_from(left).unwrap_or(0),
        )
    })
}

impl RedisLedger {
    /// Admits a call on `scopes` (all of org `org`), or says which limit refused it.
    pub async fn admit(
        &self,
        org: &str,
        scopes: &[(ScopeKind, &str, Limits)],
        tokens: u64,
        now_ms: i64,
        window_start_ms: i64,
        lease_deadline_ms: i64,
    ) -> Result<Result<(SharedSlots, Room, Room), Refusal>, ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let tag = self.tag(org);
        let call_id = uuid::Uuid::now_v7().simple().to_string();
        let keys: Vec<(String, String)> = scopes
            .iter()
            .map(|(kind, id, _)| {
                let scope = format!("{tag}:{}:{id}", scope_name(*kind));
                (
                    format!("{scope}:rl:{window_start_ms}"),
                    format!("{scope}:cc"),
                )
            })
            .collect();
        let mut invocation = ADMIT.prepare_invoke();
        for (window, in_flight) in &keys {
            invocation.key(window).key(in_flight);
        }
        invocation
            .arg(&call_id)
            .arg(now_ms)
            .arg(lease_deadline_ms)
            .arg(tokens);
        let limit = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        for (_, _, limits) in scopes {
            invocation
                .arg(limit(limits.rpm.map(u64::from)))
                .arg(limit(limits.tpm))
                .arg(limit(limits.max_concurrent.map(u64::from)));
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut con))
            .await
            .unwrap_or_else(|_| Err(timeout_error()))?;
        match reply.as_slice() {
            [1, rpm, rpm_left, tpm, tpm_left] => Ok(Ok((
                SharedSlots { call_id, keys },
                room(*rpm, *rpm_left),
                room(*tpm, *tpm_left),
            ))),
            [0, index, kind, limit, requests_left, tokens_left] => Ok(Err(Refusal {
                index: usize::try_from(*index).unwrap_or(1).saturating_sub(1),
                kind: u8::try_from(*kind).unwrap_or(3),
                limit: u64::try_from(*limit).unwrap_or(0),
                remaining_requests: u64::try_from(*requests_left).unwrap_or(0),
                remaining_tokens: u64::try_from(*tokens_left).unwrap_or(0),
            })),
            other => Err(::redis::RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "admit script",
                format!("{other:?}"),
            ))),
        }
    }

    /// Frees a call's in-flight slots and corrects tokens/min by `token_delta`.
    pub async fn release_slots(
        &self,
        slots: &SharedSlots,
        token_delta: i64,
    ) -> Result<(), ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let mut invocation = RELEASE.prepare_invoke();
        for (window, in_flight) in &slots.keys {
            invocation.key(window).key(in_flight);
        }
        invocation.arg(&slots.call_id).arg(token_delta);
        let _: i64 = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut con))
            .await
            .unwrap_or_else(|_| Err(timeout_error()))?;
        Ok(())
    }
}
