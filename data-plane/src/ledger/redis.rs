//! The Redis ledger: budgets shared by every gateway, reserved and settled by Lua
//! scripts that run atomically on one slot (all keys of a call share the org's hash tag
//! `<prefix>{org:<id>}`, so the same code works on Redis Cluster).
//!
//! Key layout under `<prefix>{org:<id>}:`
//! - `budget:<budget id>:<period start>` — hash `spent`, `reserved` (micro-USD); expires
//!   a while after its period ends;
//! - `res:<reservation id>` — hash `amount`, `deadline`, `lines` (its counters' keys);
//! - `done:<reservation id>` — tombstone of a settled reservation (idempotency, and how
//!   a settlement tells "already settled" from "Redis restarted and lost it");
//! - `leases` — zset of open reservation ids scored by deadline (Unix ms);
//! - `reaper` — short lock so one gateway at a time reaps the org.
//!
//! Scripts are sent once and then called by SHA (`EVALSHA`), reloaded on `NOSCRIPT`.
//! If Redis cannot be reached, `fail_closed` refuses to reserve (no upstream call), and
//! `fail_open` reserves against a per-gateway local cap instead. Settlements that cannot
//! reach Redis wait in a bounded local queue and are retried. None is ever dropped: past
//! the queue's capacity — and for every call served in `fail_open` — the cost is kept as
//! spend owed per budget counter (a map bounded by the number of budgets, not of calls)
//! and added when Redis is back; the reservations those settlements held are released
//! by the reaper at their deadline, and a settlement that arrives after the reaper still
//! adds its cost (the tombstone records *how* a reservation ended, not what it cost).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Script, Value};

use super::memory::MemoryLedger;
use super::{
    BudgetLine, Ledger, Reservation, ReserveError, ReserveRequest, SettleError, SpendSource,
};
use crate::config::{FailurePolicy, RedisSettings};
use crate::money::Micros;

const RESERVE: &str = include_str!("reserve.lua");
const SETTLE: &str = include_str!("settle.lua");
const SEED: &str = include_str!("seed.lua");
/// Reservation records outlive their deadline by this much, so the reaper finds them.
const RECORD_GRACE_SECS: u64 = 7 * 24 * 3600;
/// Leases the reaper handles per org per pass.
const REAP_BATCH: isize = 200;

#[derive(Debug)]
pub struct RedisLedger {
    target: Target,
    connection: OnceLock<Conn>,
    prefix: String,
    pub(super) timeout: Duration,
    policy: FailurePolicy,
    healthy: AtomicBool,
    /// Reservations made while Redis was unreachable (fail_open), capped per gateway.
    fallback: MemoryLedger,
    fallback_cap: Micros,
    pending: Mutex<VecDeque<(Reservation, Micros)>>,
    pending_capacity: usize,
    /// Spend not yet in Redis, per budget counter key: settlements past the queue's
    /// capacity, and calls served under `fail_open`.
    owed: Mutex<HashMap<String, (BudgetLine, Micros)>>,
    /// The real budget lines of reservations made under `fail_open` (they were reserved
    /// against the local cap), so their cost still reaches those budgets.
    fail_open_lines: Mutex<HashMap<uuid::Uuid, Vec<BudgetLine>>>,
    reserve: Script,
    settle: Script,
    seed: Script,
}

/// Where the ledger lives.
#[derive(Debug)]
enum Target {
    Single(::redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A connection to one Redis or to a Redis Cluster. Both reconnect by themselves; the
/// cluster one also follows slot moves. Everything here runs on either.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Conn::Single",
            Self::Cluster(_) => "Conn::Cluster",
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisLedgerError {
    #[error("invalid Redis URL")]
    Url(#[source] ::redis::RedisError),
}

impl RedisLedger {
    pub fn new(
        settings: &RedisSettings,
        policy: FailurePolicy,
        fallback_cap: Micros,
    ) -> Result<Self, RedisLedgerError> {
        let timeout = Duration::from_millis(settings.timeout_ms);
        let target = if settings.cluster {
            let nodes = if settings.cluster_nodes.is_empty() {
                vec![settings.url.clone()]
            } else {
                settings.cluster_nodes.clone()
            };
            let client = ClusterClient::builder(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(RedisLedgerError::Url)?;
            Target::Cluster(Box::new(client))
        } else {
            Target::Single(
                ::redis::Client::open(settings.url.as_str()).map_err(RedisLedgerError::Url)?,
            )
        };
        Ok(Self {
            target,
            connection: OnceLock::new(),
            prefix: settings.key_prefix.clone(),
            timeout: Duration::from_millis(settings.timeout_ms),
            policy,
            healthy: AtomicBool::new(false),
            fallback: MemoryLedger::default(),
            fallback_cap,
            pending: Mutex::new(VecDeque::new()),
            pending_capacity: settings.settle_queue_capacity,
            owed: Mutex::new(HashMap::new()),
            fail_open_lines: Mutex::new(HashMap::new()),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            seed: Script::new(SEED),
        })
    }

    /// Connects (once; the manager reconnects by itself afterwards). Called by the
    /// maintenance loop until it succeeds.
    pub async fn connect(&self) -> Result<(), ::redis::RedisError> {
        if self.connection.get().is_some() {
            return Ok(());
        }
        let connection = match &self.target {
            Target::Single(client) => {
                let config = ::redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                Conn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            Target::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
        };
        let _ = self.connection.set(connection);
        self.healthy.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(super) fn connection(&self) -> Option<Conn> {
        self.connection.get().cloned()
    }

    pub(super) fn tag(&self, org: &str) -> String {
        format!("{}{{org:{org}}}", self.prefix)
    }

    pub fn budget_key(&self, line: &BudgetLine) -> String {
        format!(
            "{}:budget:{}:{}",
            self.tag(&line.org_id),
            line.budget_id,
            line.period_start
        )
    }

    fn record_key(&self, org: &str, id: &uuid::Uuid) -> String {
        format!("{}:res:{}", self.tag(org), id.simple())
    }

    fn tombstone_key(&self, org: &str, id: &str) -> String {
        format!("{}:done:{id}", self.tag(org))
    }

    fn leases_key(&self, org: &str) -> String {
        format!("{}:leases", self.tag(org))
    }

    /// Spent and reserved of one budget line (tests, re-seeding, inspection).
    pub async fn counter(
        &self,
        line: &BudgetLine,
    ) -> Result<(Micros, Micros), ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let (spent, reserved): (Option<i64>, Option<i64>) = ::redis::cmd("HMGET")
            .arg(self.budget_key(line))
            .arg("spent")
            .arg("reserved")
            .query_async(&mut con)
            .await?;
        Ok((Micros(spent.unwrap_or(0)), Micros(reserved.unwrap_or(0))))
    }

    /// Periodic upkeep: a health check, retrying queued settlements, and reaping expired
    /// leases of `orgs`. One pass; the caller loops.
    pub async fn maintain(&self, orgs: &[String], now_ms: i64) {
        if self.connect().await.is_err() {
            self.healthy.store(false, Ordering::Relaxed);
            return;
        }
        let Some(mut con) = self.connection() else {
            return;
        };
        let ping: Result<String, _> =
            tokio::time::timeout(self.timeout, ::redis::cmd("PING").query_async(&mut con))
                .await
                .unwrap_or_else(|_| Err(timeout_error()));
        let up = ping.is_ok();
        if up != self.healthy.swap(up, Ordering::Relaxed) {
            if up {
                tracing::info!("Redis ledger reachable again");
            } else {
                tracing::error!("Redis ledger unreachable");
            }
        }
        if !up {
            return;
        }
        self.retry_pending().await;
        match self.reap(orgs, now_ms).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("tollgate_reservations_reaped_total").increment(n as u64);
                tracing::warn!(
                    reaped = n,
                    "released reservations of calls that never settled (a gateway died?)"
                );
            }
            Err(e) => tracing::warn!(error = %e, "reaper pass failed"),
        }
    }

    /// Releases every reservation of `orgs` whose deadline passed. One gateway at a time
    /// per org (a short lock), so the work is not duplicated. Returns how many.
    pub async fn reap(&self, orgs: &[String], now_ms: i64) -> Result<usize, ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let mut reaped = 0;
        let mut open = 0u64;
        for org in orgs {
            let leases = self.leases_key(org);
            let lock = format!("{}:reaper", self.tag(org));
            let took: Option<String> = ::redis::cmd("SET")
                .arg(&lock)
                .arg("1")
                .arg("NX")
                .arg("PX")
                .arg(
                    u64::try_from(self.timeout.as_millis())
                        .unwrap_or(1000)
                        .max(500),
                )
                .query_async(&mut con)
                .await?;
            open += con.zcard::<_, u64>(&leases).await?;
            if took.is_none() {
                continue;
            }
            let expired: Vec<String> = con
                .zrangebyscore_limit(&leases, "-inf", now_ms, 0, REAP_BATCH)
                .await?;
            for id in expired {
                let record = format!("{}:res:{id}", self.tag(org));
                let lines: Option<String> = con.hget(&record, "lines").await?;
                let Some(lines) = lines else {
                    // A lease whose record is gone (settled meanwhile, or expired): drop it.
                    let _: i64 = con.zrem(&leases, &id).await?;
                    continue;
                };
                let mut invocation = self.settle.prepare_invoke();
                invocation
                    .key(&record)
                    .key(&leases)
                    .key(self.tombstone_key(org, &id));
                for key in lines.split('\n').filter(|k| !k.is_empty()) {
                    invocation.key(key);
                }
                invocation
                    .arg(&id)
                    .arg(0)
                    .arg(RECORD_GRACE_SECS)
                    .arg("reap");
                let released: i64 = invocation.invoke_async(&mut con).await?;
                reaped += usize::from(released == 1);
            }
        }
        metrics::gauge!("tollgate_reservations_open").set(open as f64);
        Ok(reaped)
    }

    /// Re-seeds `lines` from `source` (see [`SpendSource`]).
    pub async fn reseed(
        &self,
        source: &impl SpendSource,
        lines: &[BudgetLine],
    ) -> Result<(), SettleError> {
        let durable = source.spent(lines).await?;
        if durable.len() != lines.len() {
            return Err(SettleError::Unavailable(
                "spend source answered for the wrong number of budgets".into(),
            ));
        }
        self.seed(lines, &durable)
            .await
            .map_err(|e| SettleError::Unavailable(e.to_string()))
    }

    /// Has this Redis been seeded from the durable ledger since it last lost its data?
    /// (A flushed or restarted-empty Redis has lost the marker with everything else.)
    pub async fn seeded(&self) -> Result<bool, ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        ::redis::cmd("EXISTS")
            .arg(format!("{}seeded", self.prefix))
            .query_async(&mut con)
            .await
    }

    /// Restores every line's counter from `source` (one script run per org, so each
    /// touches one cluster slot) and marks this Redis as seeded.
    pub async fn reseed_all(
        &self,
        source: &impl SpendSource,
        lines: &[BudgetLine],
    ) -> Result<(), SettleError> {
        let unavailable = |e: ::redis::RedisError| SettleError::Unavailable(e.to_string());
        let durable = source.spent(lines).await?;
        if durable.len() != lines.len() {
            return Err(SettleError::Unavailable(
                "spend source answered for the wrong number of budgets".into(),
            ));
        }
        let mut by_org: std::collections::BTreeMap<&str, (Vec<BudgetLine>, Vec<Micros>)> =
            std::collections::BTreeMap::new();
        for (line, spent) in lines.iter().zip(durable) {
            let group = by_org.entry(line.org_id.as_str()).or_default();
            group.0.push(line.clone());
            group.1.push(spent);
        }
        for (group_lines, spent) in by_org.values() {
            self.seed(group_lines, spent).await.map_err(unavailable)?;
        }
        let mut con = self
            .connection()
            .ok_or_else(not_connected)
            .map_err(unavailable)?;
        let () = ::redis::cmd("SET")
            .arg(format!("{}seeded", self.prefix))
            .arg(crate::snapshot::now_ms())
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Restores spent counters from the durable ledger: `spent = max(redis, durable)`.
    pub async fn seed(
        &self,
        lines: &[BudgetLine],
        durable: &[Micros],
    ) -> Result<(), ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let mut invocation = self.seed.prepare_invoke();
        for line in lines {
            invocation.key(self.budget_key(line));
        }
        for spent in durable {
            invocation.arg(spent.0);
        }
        for line in lines {
            invocation.arg(line.ttl_secs);
        }
        let _: i64 = invocation.invoke_async(&mut con).await?;
        Ok(())
    }

    async fn try_reserve(
        &self,
        request: &ReserveRequest,
    ) -> Result<Result<Micros, (usize, Micros)>, ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let org = request.lines.first().map_or("", |l| l.org_id.as_str());
        let ttl = u64::try_from((request.deadline_ms - crate::snapshot::now_ms()).max(0) / 1000)
            .unwrap_or(0)
            + RECORD_GRACE_SECS;
        let mut invocation = self.reserve.prepare_invoke();
        for line in &request.lines {
            invocation.key(self.budget_key(line));
        }
        invocation
            .key(self.record_key(org, &request.id))
            .key(self.leases_key(org));
        invocation
            .arg(request.id.simple().to_string())
            .arg(request.amount.0)
            .arg(request.min_amount.0)
            .arg(request.deadline_ms)
            .arg(ttl);
        for line in &request.lines {
            invocation
                .arg(line.limit.0)
                .arg(u8::from(line.clamp))
                .arg(line.ttl_secs);
        }
        let reply: Vec<i64> = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut con))
            .await
            .unwrap_or_else(|_| Err(timeout_error()))?;
        match reply.as_slice() {
            [1, granted] => Ok(Ok(Micros(*granted))),
            [0, index, left] => Ok(Err((
                usize::try_from(*index).unwrap_or(1).saturating_sub(1),
                Micros(*left),
            ))),
            other => Err(::redis::RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "reserve script",
                format!("{other:?}"),
            ))),
        }
    }

    async fn try_settle(
        &self,
        reservation: &Reservation,
        actual: Micros,
    ) -> Result<(), ::redis::RedisError> {
        let mut con = self.connection().ok_or_else(not_connected)?;
        let org = reservation.lines.first().map_or("", |l| l.org_id.as_str());
        let id = reservation.id.simple().to_string();
        let mut invocation = self.settle.prepare_invoke();
        invocation
            .key(self.record_key(org, &reservation.id))
            .key(self.leases_key(org))
            .key(self.tombstone_key(org, &id));
        for line in &reservation.lines {
            invocation.key(self.budget_key(line));
        }
        invocation
            .arg(&id)
            .arg(actual.0)
            .arg(RECORD_GRACE_SECS)
            .arg("settle");
        for line in &reservation.lines {
            invocation.arg(line.ttl_secs);
        }
        let result: i64 = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut con))
            .await
            .unwrap_or_else(|_| Err(timeout_error()))?;
        if result == 3 {
            metrics::counter!("tollgate_late_settlements_total").increment(1);
            tracing::warn!(reservation = %reservation.id, cost = %actual, "settled after the reaper released the reservation; its cost was added");
        }
        Ok(())
    }

    /// Remembers `actual` as spend owed to each of `lines`, to add once Redis is back.
    fn owe(&self, lines: &[BudgetLine], actual: Micros) {
        if actual <= Micros::ZERO {
            return;
        }
        let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        for line in lines {
            owed.entry(self.budget_key(line))
                .or_insert_with(|| (line.clone(), Micros::ZERO))
                .1 += actual;
        }
        metrics::gauge!("tollgate_owed_spend_counters").set(owed.len() as f64);
    }

    /// Spend owed to budget counters (tests, metrics): counter key → micro-USD.
    pub fn owed_spend(&self) -> HashMap<String, Micros> {
        let owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
        owed.iter().map(|(k, (_, m))| (k.clone(), *m)).collect()
    }

    /// Adds owed spend to its counters; what fails stays owed.
    async fn pay_owed(&self) {
        let owed: Vec<(String, (BudgetLine, Micros))> = self
            .owed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (key, (line, amount)) in owed {
            let Some(mut con) = self.connection() else {
                self.owe(std::slice::from_ref(&line), amount);
                continue;
            };
            let mut pipe = ::redis::pipe();
            pipe.atomic().hincr(&key, "spent", amount.0);
            if line.ttl_secs > 0 {
                pipe.cmd("EXPIRE").arg(&key).arg(line.ttl_secs).arg("NX");
            }
            let paid: Result<(), _> =
                tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut con))
                    .await
                    .unwrap_or_else(|_| Err(timeout_error()));
            if paid.is_err() {
                self.owe(std::slice::from_ref(&line), amount);
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, VecDeque<(Reservation, Micros)>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Settlements still waiting for Redis.
    pub fn pending_settlements(&self) -> usize {
        self.lock_pending().len()
    }

    async fn retry_pending(&self) {
        self.pay_owed().await;
        let batch: Vec<(Reservation, Micros)> = self.lock_pending().drain(..).collect();
        for (reservation, actual) in batch {
            metrics::counter!("tollgate_settle_retries_total").increment(1);
            if self.try_settle(&reservation, actual).await.is_err() {
                self.lock_pending().push_back((reservation, actual));
            }
        }
        metrics::gauge!("tollgate_settle_queue_depth").set(self.pending_settlements() as f64);
    }

    fn unavailable(&self, why: &str) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(reason = why, "Redis ledger unreachable");
        }
    }
}

pub(super) fn not_connected() -> ::redis::RedisError {
    ::redis::RedisError::from((::redis::ErrorKind::Io, "Redis ledger not connected yet"))
}

pub(super) fn timeout_error() -> ::redis::RedisError {
    ::redis::RedisError::from((::redis::ErrorKind::Io, "Redis ledger timed out"))
}

impl Ledger for RedisLedger {
    async fn reserve(&self, request: ReserveRequest) -> Result<Reservation, ReserveError> {
        match self.try_reserve(&request).await {
            Ok(Ok(granted)) => Ok(Reservation {
                id: request.id,
                lines: request.lines,
                amount: granted,
            }),
            Ok(Err((index, left))) => Err(ReserveError::Insufficient {
                budget_id: request
                    .lines
                    .get(index)
                    .map(|l| l.budget_id.clone())
                    .unwrap_or_default(),
                remaining: left,
                needed: request.amount,
            }),
            Err(e) => {
                self.unavailable(&e.to_string());
                match self.policy {
                    FailurePolicy::FailClosed => {
                        Err(ReserveError::Unavailable("Redis unreachable".into()))
                    }
                    FailurePolicy::FailOpen => {
                        metrics::counter!("tollgate_fail_open_reservations_total").increment(1);
                        let line = BudgetLine {
                            budget_id: "fail-open-cap".into(),
                            org_id: String::new(),
                            period_start: 0,
                            limit: self.fallback_cap,
                            clamp: false,
                            ttl_secs: 0,
                        };
                        let lines = request.lines.clone();
                        let reserved = self
                            .fallback
                            .reserve(ReserveRequest {
                                lines: vec![line],
                                ..request
                            })
                            .await?;
                        self.fail_open_lines
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(reserved.id, lines);
                        Ok(reserved)
                    }
                }
            }
        }
    }

    async fn settle(&self, reservation: &Reservation, actual: Micros) -> Result<(), SettleError> {
        if self.fallback.holds(&reservation.id) {
            // Served under fail_open: free the local cap, and owe the cost to the real
            // budgets so it is counted there once Redis is back.
            let lines = self
                .fail_open_lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&reservation.id)
                .unwrap_or_default();
            self.owe(&lines, actual);
            return self.fallback.settle(reservation, actual).await;
        }
        match self.try_settle(reservation, actual).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.unavailable(&e.to_string());
                let mut pending = self.lock_pending();
                if pending.len() >= self.pending_capacity {
                    // Keep the cost, not the settlement: the reaper releases the
                    // reservation at its deadline, the owed spend is added when Redis is back.
                    drop(pending);
                    metrics::counter!("tollgate_settlements_coalesced_total").increment(1);
                    tracing::warn!(reservation = %reservation.id, "settlement queue full; cost kept as owed spend until Redis is back");
                    self.owe(&reservation.lines, actual);
                    return Ok(());
                }
                pending.push_back((reservation.clone(), actual));
                tracing::warn!(reservation = %reservation.id, queued = pending.len(), "settlement queued until Redis is back");
                Ok(())
            }
        }
    }
}
