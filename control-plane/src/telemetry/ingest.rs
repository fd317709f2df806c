//! `TelemetryService.Report`: a gateway's stream of usage batches, answered with the
//! highest batch committed.
//!
//! Batches on one stream are taken one at a time, in order. A batch is refused whole
//! (`INVALID_ARGUMENT`, nothing stored) only for what is wrong with the batch itself (too
//! many events, a malformed gateway id). Each event is then checked on its own against
//! what the control plane knows ([`check`]): well formed; its key exists, in the org,
//! team and project the event names; its deployment (if any) is one of the reporting
//! region's; its time is within the clock skew of now and not older than the request
//! log's retention; its token counts are what one call can use; its cost is bounded by
//! what was reserved plus a margin, or — when nothing was reserved (no budget applied) —
//! by its tokens at the region's highest prices. An event that fails is quarantined
//! (`usage_quarantine`, with the reason) and counted (`tollgate_usage_events_quarantined_total`
//! and the gateway's row in the fleet view); the rest of the batch is stored with its
//! rollups in one statement ([`usage::ingest`]), and only then is the batch's `seq`
//! acknowledged — so a forged or broken event never holds up the batch behind it. A
//! database failure ends the stream with `UNAVAILABLE` (the gateway keeps the batch and
//! retries; both the quarantine and the log are idempotent per event). Everything is
//! recorded as the gateway and region of the stream's credential, never as what the
//! batch claims; the stream ends with `UNAUTHENTICATED` once that credential stops
//! counting.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::Stream;
use serde_json::json;
use time::OffsetDateTime;
use tollgate_data_plane::prices::PriceTable;
use tollgate_proto::telemetry as proto;
use tonic::{Status, Streaming};
use uuid::Uuid;

use super::alerts::Touches;
use crate::store::Pool;
use crate::store::usage::{self, EventColumns, Facts, Quarantined};

/// Most events one batch may carry (a gateway splits bigger backlogs).
pub const MAX_EVENTS: usize = 10_000;
/// Free-text fields are cut to this many characters (they come from clients, e.g. the
/// model name, and must never make a batch unstorable).
const TEXT_CHARS: usize = 256;
/// How far in the future (by the control plane's clock) a call may say it started.
pub const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// Most tokens of one kind (prompt, completion, cache read, cache write) one call may
/// report: 10× the largest context window offered today (1-2 M tokens), room for `n`
/// answers of a long output too.
pub const MAX_TOKENS: i64 = 20_000_000;
/// Added to every cost bound (micro-USD, one cent): rounding and per-call minimums.
pub const MARGIN_MICROS: i64 = 10_000;
/// Price (micro-USD per million tokens) assumed for a deployment whose model has no price
/// anywhere — far above any real price, so it only ever loosens a bound.
pub const FALLBACK_PRICE: i64 = 1_000_000_000;

/// A batch checked whole and laid out for the store: the well-formed events in columns,
/// the refused ones aside.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub gateway_id: String,
    pub events: EventColumns,
    pub refused: Vec<Quarantined>,
}

/// Why an event was refused; [`Rejection::code`] is what the quarantine and the metric
/// record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("key {key:?} is not a key of this control plane")]
    UnknownKey { key: String },
    #[error("key {key:?} belongs to another org, team or project than the event names")]
    KeyScope { key: String },
    #[error("deployment {deployment:?} is not a deployment of region {region:?}")]
    DeploymentRegion { deployment: String, region: String },
    #[error("started {ahead_ms} ms ahead of the control plane's clock (at most {} s of skew)", MAX_CLOCK_SKEW.whole_seconds())]
    Future { ahead_ms: i128 },
    #[error(
        "started {days} days ago, before the {retention_days}-day retention of the request log"
    )]
    TooOld { days: i64, retention_days: u32 },
    #[error("{field} = {value} is more than one call uses (at most {MAX_TOKENS})")]
    Tokens { field: &'static str, value: i64 },
    #[error(
        "reserved_micros = {reserved} is more than any call in this region can reserve ({ceiling})"
    )]
    Reserved { reserved: i64, ceiling: i64 },
    #[error(
        "cost_micros = {cost} is above what was reserved ({reserved}) plus the margin (bound {bound})"
    )]
    CostAboveReserved {
        cost: i64,
        reserved: i64,
        bound: i64,
    },
    #[error(
        "cost_micros = {cost} is above what its tokens cost at the region's highest prices (bound {bound})"
    )]
    CostAboveTokens { cost: i64, bound: i64 },
}

impl Rejection {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::KeyScope { .. } => "key_scope",
            Self::DeploymentRegion { .. } => "deployment_region",
            Self::Future { .. } => "future",
            Self::TooOld { .. } => "too_old",
            Self::Tokens { .. } => "tokens",
            Self::Reserved { .. } => "reserved",
            Self::CostAboveReserved { .. } => "cost_above_reserved",
            Self::CostAboveTokens { .. } => "cost_above_tokens",
        }
    }
}

/// The highest prices of the region's deployments (micro-USD per million tokens): what a
/// call that reserved nothing can cost at most per token. Input covers prompt, cache
/// read and cache write tokens alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ceiling {
    pub input: i64,
    pub output: i64,
}

impl Ceiling {
    /// Over every deployment of the region: its own prices, else the price table's for
    /// its upstream model, else [`FALLBACK_PRICE`].
    pub fn of(facts: &Facts, table: Option<&PriceTable>) -> Self {
        if facts.deployments.is_empty() {
            // Nothing known to price by (a region whose deployments were all removed
            // while calls were in flight): the loosest bound, never a refusal.
            return Self {
                input: FALLBACK_PRICE,
                output: FALLBACK_PRICE,
            };
        }
        let mut ceiling = Self::default();
        for d in facts.deployments.values() {
            // A long-context tier's rates are what the deployment charges at most.
            let (input, output) = match (d.input_price, d.output_price) {
                (Some(input), Some(output)) => d.price_tiers.iter().fold(
                    (
                        input
                            .max(d.cached_input_price.unwrap_or(input))
                            .max(d.cache_write_price.unwrap_or(input)),
                        output,
                    ),
                    |(i, o), t| {
                        let tier_input = t
                            .input_price
                            .max(t.cached_input_price.unwrap_or(t.input_price))
                            .max(t.cache_write_price.unwrap_or(t.input_price));
                        (i.max(tier_input), o.max(t.output_price))
                    },
                ),
                _ => table.and_then(|t| t.lookup(&d.upstream_model)).map_or(
                    (FALLBACK_PRICE, FALLBACK_PRICE),
                    |p| {
                        p.tiers.iter().fold(
                            (p.input.max(p.cached_input).max(p.cache_write), p.output),
                            |(i, o), t| {
                                (
                                    i.max(t.input).max(t.cached_input).max(t.cache_write),
                                    o.max(t.output),
                                )
                            },
                        )
                    },
                ),
            };
            ceiling.input = ceiling.input.max(input);
            ceiling.output = ceiling.output.max(output);
        }
        ceiling
    }
}

/// What events are checked against besides the facts: the time window and the prices.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub now: OffsetDateTime,
    pub retention_days: u32,
    pub ceiling: Ceiling,
}

fn clamp_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

impl Bounds {
    /// The bounds as of now, by the control plane's clock.
    pub fn now(retention_days: u32, ceiling: Ceiling) -> Self {
        Self {
            now: OffsetDateTime::now_utc(),
            retention_days,
            ceiling,
        }
    }

    /// Micro-USD that `tokens_in` input and `tokens_out` output tokens can cost at the
    /// region's highest prices, doubled (a fallback to a pricier deployment, a price
    /// change in flight), plus the margin.
    fn token_cost(&self, tokens_in: i64, tokens_out: i64) -> i64 {
        let micros = (i128::from(tokens_in) * i128::from(self.ceiling.input)
            + i128::from(tokens_out) * i128::from(self.ceiling.output))
            / 1_000_000;
        clamp_i64(2 * micros + i128::from(MARGIN_MICROS))
    }
}

/// Checks event `i` of `c` against what the control plane knows.
pub fn check(
    c: &EventColumns,
    i: usize,
    facts: &Facts,
    region: &str,
    b: &Bounds,
) -> Result<(), Rejection> {
    let ahead = c.started_at[i] - b.now;
    if ahead > MAX_CLOCK_SKEW {
        return Err(Rejection::Future {
            ahead_ms: ahead.whole_milliseconds(),
        });
    }
    let age = b.now - c.started_at[i];
    if age > time::Duration::days(i64::from(b.retention_days)) {
        return Err(Rejection::TooOld {
            days: age.whole_days(),
            retention_days: b.retention_days,
        });
    }
    let (prompt, completion, cache_read, cache_write) = (
        c.prompt_tokens[i],
        c.completion_tokens[i],
        c.cache_read_tokens[i],
        c.cache_write_tokens[i],
    );
    for (field, value) in [
        ("prompt_tokens", prompt),
        ("completion_tokens", completion),
        ("cache_read_tokens", cache_read),
        ("cache_write_tokens", cache_write),
    ] {
        if !(0..=MAX_TOKENS).contains(&value) {
            return Err(Rejection::Tokens { field, value });
        }
    }
    // A call refused before its key was known is logged but rolled up nowhere.
    let Some(key) = &c.key_id[i] else {
        return Ok(());
    };
    let Some(scope) = facts.keys.get(key) else {
        return Err(Rejection::UnknownKey { key: key.clone() });
    };
    if c.org_id[i] != Some(scope.org_id)
        || c.team_id[i] != Some(scope.team_id)
        || c.project_id[i] != scope.project_id
    {
        return Err(Rejection::KeyScope { key: key.clone() });
    }
    let deployment = &c.deployment_id[i];
    if !deployment.is_empty()
        && !Uuid::parse_str(deployment).is_ok_and(|id| facts.deployments.contains_key(&id))
    {
        return Err(Rejection::DeploymentRegion {
            deployment: deployment.clone(),
            region: region.to_owned(),
        });
    }
    let (cost, reserved) = (c.cost_micros[i], c.reserved_micros[i]);
    // A reservation is the worst case of a call: no call reserves more than its tokens
    // can ever cost at the region's highest prices.
    let ceiling = b.token_cost(MAX_TOKENS * 3, MAX_TOKENS);
    if reserved > ceiling {
        return Err(Rejection::Reserved { reserved, ceiling });
    }
    if reserved > 0 {
        // A call settles at what the provider billed, or at the reservation when that is
        // unknown; the margin covers a prompt estimate that fell short.
        let bound = clamp_i64(i128::from(reserved) * 3 / 2 + i128::from(MARGIN_MICROS));
        if cost > bound {
            return Err(Rejection::CostAboveReserved {
                cost,
                reserved,
                bound,
            });
        }
    } else {
        let bound = b.token_cost(prompt + cache_read + cache_write, completion);
        if cost > bound {
            return Err(Rejection::CostAboveTokens { cost, bound });
        }
    }
    Ok(())
}

/// A stored copy of a refused event, as sent (strings cut and cleaned as for the log).
fn raw_json(e: &proto::UsageEvent) -> serde_json::Value {
    json!({
        "event_id": text(e.event_id.clone()), "gateway_id": text(e.gateway_id.clone()),
        "region": text(e.region.clone()), "org_id": text(e.org_id.clone()),
        "team_id": text(e.team_id.clone()), "project_id": text(e.project_id.clone()),
        "key_id": text(e.key_id.clone()), "model": text(e.model.clone()),
        "deployment_id": text(e.deployment_id.clone()), "endpoint": text(e.endpoint.clone()),
        "status": e.status, "http_status": e.http_status, "error_code": text(e.error_code.clone()),
        "streamed": e.streamed, "started_at_unix_ms": e.started_at_unix_ms, "ttfb_ms": e.ttfb_ms,
        "latency_ms": e.latency_ms, "prompt_tokens": e.prompt_tokens,
        "completion_tokens": e.completion_tokens, "cache_read_tokens": e.cache_read_tokens,
        "cache_write_tokens": e.cache_write_tokens, "cost_micros": e.cost_micros,
        "reserved_micros": e.reserved_micros, "price_table_version": text(e.price_table_version.clone()),
        "request_id": text(e.request_id.clone()), "trace_id": text(e.trace_id.clone()),
        "attempts": e.attempts,
    })
}

/// Event `i` of `c` as JSON, for the quarantine.
fn column_json(c: &EventColumns, i: usize) -> serde_json::Value {
    let id = |v: &Option<Uuid>| v.map(|u| u.to_string()).unwrap_or_default();
    json!({
        "event_id": c.event_id[i].to_string(), "org_id": id(&c.org_id[i]),
        "team_id": id(&c.team_id[i]), "project_id": id(&c.project_id[i]),
        "key_id": c.key_id[i].clone().unwrap_or_default(), "model": c.model[i],
        "deployment_id": c.deployment_id[i], "endpoint": c.endpoint[i], "status": c.status[i],
        "http_status": c.http_status[i], "error_code": c.error_code[i], "streamed": c.streamed[i],
        "started_at_unix_ms": c.started_at[i].unix_timestamp_nanos() / 1_000_000,
        "ttfb_ms": c.ttfb_ms[i], "latency_ms": c.latency_ms[i], "prompt_tokens": c.prompt_tokens[i],
        "completion_tokens": c.completion_tokens[i], "cache_read_tokens": c.cache_read_tokens[i],
        "cache_write_tokens": c.cache_write_tokens[i], "cost_micros": c.cost_micros[i],
        "reserved_micros": c.reserved_micros[i], "price_table_version": c.price_table_version[i],
        "request_id": c.request_id[i], "trace_id": c.trace_id[i], "attempts": c.attempts[i],
    })
}

impl Batch {
    /// Public ids of the keys the well-formed events name, each once.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.events.key_id.iter().flatten().cloned().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Moves every event that fails [`check`] to `refused`.
    pub fn screen(&mut self, facts: &Facts, region: &str, bounds: &Bounds) {
        let keep: Vec<bool> = (0..self.events.len())
            .map(|i| match check(&self.events, i, facts, region, bounds) {
                Ok(()) => true,
                Err(rejection) => {
                    self.refused.push(Quarantined {
                        event_id: self.events.event_id[i].to_string(),
                        reason: rejection.code(),
                        detail: rejection.to_string(),
                        event: column_json(&self.events, i),
                    });
                    false
                }
            })
            .collect();
        if keep.iter().any(|k| !k) {
            self.events.retain(&keep);
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("a batch carries at most {MAX_EVENTS} events, this one {0}")]
    TooLarge(usize),
    #[error("gateway_id must be 1-128 characters of [A-Za-z0-9._:-]")]
    GatewayId,
    #[error("event {index}: {field} {value:?} is not a UUID")]
    Id {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("event {index}: key_id {value:?} is not a key's public id (8-32 letters and digits)")]
    KeyId { index: usize, value: String },
    #[error("event {index}: org_id, team_id and key_id are set together or not at all")]
    PartialScope { index: usize },
    #[error("event {index}: started_at_unix_ms {value} is not a time after 1970")]
    StartedAt { index: usize, value: i64 },
    #[error("event {index}: {field} is negative")]
    Negative { index: usize, field: &'static str },
}

fn valid_gateway_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn valid_public_id(id: &str) -> bool {
    (8..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Text Postgres stores as given: no NUL, at most [`TEXT_CHARS`] characters.
fn text(value: String) -> String {
    if !value.contains('\0') && value.len() <= TEXT_CHARS {
        return value;
    }
    value
        .chars()
        .take(TEXT_CHARS)
        .map(|c| if c == '\0' { '\u{fffd}' } else { c })
        .collect()
}

fn uuid(index: usize, field: &'static str, value: &str) -> Result<Option<Uuid>, BatchError> {
    if value.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(value)
        .map(Some)
        .map_err(|_| BatchError::Id {
            index,
            field,
            value: value.chars().take(64).collect(),
        })
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn saturating_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// One event laid out for the store, or why it cannot be.
fn parse(index: usize, e: &proto::UsageEvent) -> Result<(), BatchError> {
    let event_id = uuid(index, "event_id", &e.event_id)?;
    if event_id.is_none() {
        return Err(BatchError::Id {
            index,
            field: "event_id",
            value: String::new(),
        });
    }
    let org_id = uuid(index, "org_id", &e.org_id)?;
    let team_id = uuid(index, "team_id", &e.team_id)?;
    uuid(index, "project_id", &e.project_id)?;
    if !e.key_id.is_empty() && !valid_public_id(&e.key_id) {
        return Err(BatchError::KeyId {
            index,
            value: e.key_id.chars().take(64).collect(),
        });
    }
    let key = !e.key_id.is_empty();
    if org_id.is_some() != team_id.is_some() || org_id.is_some() != key {
        return Err(BatchError::PartialScope { index });
    }
    if started_at(e.started_at_unix_ms).is_none() {
        return Err(BatchError::StartedAt {
            index,
            value: e.started_at_unix_ms,
        });
    }
    if e.cost_micros < 0 {
        return Err(BatchError::Negative {
            index,
            field: "cost_micros",
        });
    }
    if e.reserved_micros < 0 {
        return Err(BatchError::Negative {
            index,
            field: "reserved_micros",
        });
    }
    Ok(())
}

fn started_at(unix_ms: i64) -> Option<OffsetDateTime> {
    (unix_ms > 0)
        .then(|| OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000).ok())
        .flatten()
}

fn push(c: &mut EventColumns, e: proto::UsageEvent) {
    let id = |v: &str| Uuid::parse_str(v).ok();
    c.started_at
        .push(started_at(e.started_at_unix_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH));
    c.event_id.push(id(&e.event_id).unwrap_or_default());
    c.org_id.push(id(&e.org_id));
    c.team_id.push(id(&e.team_id));
    c.project_id.push(id(&e.project_id));
    c.key_id.push((!e.key_id.is_empty()).then_some(e.key_id));
    c.model.push(text(e.model));
    c.deployment_id.push(text(e.deployment_id));
    c.endpoint.push(text(e.endpoint));
    c.status
        .push(i16::try_from(e.status).unwrap_or(proto::CallStatus::Unspecified as i16));
    c.http_status.push(saturating_i32(e.http_status));
    c.error_code.push(text(e.error_code));
    c.streamed.push(e.streamed);
    c.ttfb_ms.push(saturating_i32(e.ttfb_ms));
    c.latency_ms.push(saturating_i32(e.latency_ms));
    c.prompt_tokens.push(saturating_i64(e.prompt_tokens));
    c.completion_tokens
        .push(saturating_i64(e.completion_tokens));
    c.cache_read_tokens
        .push(saturating_i64(e.cache_read_tokens));
    c.cache_write_tokens
        .push(saturating_i64(e.cache_write_tokens));
    c.cost_micros.push(e.cost_micros);
    c.reserved_micros.push(e.reserved_micros);
    c.price_table_version.push(text(e.price_table_version));
    c.request_id.push(text(e.request_id));
    c.trace_id.push(text(e.trace_id));
    c.attempts.push(saturating_i32(e.attempts));
}

impl TryFrom<proto::UsageBatch> for Batch {
    type Error = BatchError;

    /// Refuses the batch only for what is wrong with the batch itself; a malformed event
    /// goes to `refused`.
    fn try_from(batch: proto::UsageBatch) -> Result<Self, Self::Error> {
        if batch.events.len() > MAX_EVENTS {
            return Err(BatchError::TooLarge(batch.events.len()));
        }
        if !valid_gateway_id(&batch.gateway_id) {
            return Err(BatchError::GatewayId);
        }
        let mut events = EventColumns::default();
        let mut refused = Vec::new();
        for (index, e) in batch.events.into_iter().enumerate() {
            match parse(index, &e) {
                Ok(()) => push(&mut events, e),
                Err(error) => refused.push(Quarantined {
                    event_id: text(e.event_id.clone()),
                    reason: Rejection::Malformed(String::new()).code(),
                    detail: text(Rejection::Malformed(error.to_string()).to_string()),
                    event: raw_json(&e),
                }),
            }
        }
        Ok(Self {
            seq: batch.seq,
            gateway_id: batch.gateway_id,
            events,
            refused,
        })
    }
}

pub type ReportStream = Pin<Box<dyn Stream<Item = Result<proto::ReportAck, Status>> + Send>>;

/// Resolves when the stream's credential stops counting.
pub type Revoked = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Who is reporting (from the stream's credential) and what ingest needs.
pub struct Context {
    pub pool: Pool,
    pub region: String,
    pub gateway_id: String,
    pub touches: Arc<Touches>,
    pub prices: Option<Arc<PriceTable>>,
    pub retention_days: u32,
}

/// One gateway stream.
struct Session {
    cx: Context,
    inbound: Streaming<proto::UsageBatch>,
    revoked: Revoked,
    /// Every batch up to this one is stored.
    committed: u64,
    ended: bool,
}

fn unavailable(gateway: &str, e: &crate::store::StoreError) -> Status {
    tracing::error!(gateway, error = %e, "storing a usage batch failed");
    Status::unavailable("control plane database unavailable")
}

impl Session {
    async fn commit(&mut self, batch: proto::UsageBatch) -> Result<(), Status> {
        let cx = &self.cx;
        let mut batch = Batch::try_from(batch).map_err(|e| {
            metrics::counter!("tollgate_usage_batches_refused_total").increment(1);
            tracing::warn!(region = %cx.region, gateway = %cx.gateway_id, error = %e, "refused a usage batch");
            Status::invalid_argument(e.to_string())
        })?;
        if batch.gateway_id != cx.gateway_id {
            // Spooled under another name (the operator renamed the gateway): recorded as
            // the credential's gateway all the same.
            tracing::debug!(claimed = %batch.gateway_id, gateway = %cx.gateway_id, "batch names another gateway id");
        }
        let started = Instant::now();
        let facts = usage::facts(&cx.pool, &cx.region, &batch.key_ids())
            .await
            .map_err(|e| unavailable(&cx.gateway_id, &e))?;
        let bounds = Bounds::now(cx.retention_days, Ceiling::of(&facts, cx.prices.as_deref()));
        batch.screen(&facts, &cx.region, &bounds);
        if !batch.refused.is_empty() {
            let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
            for q in &batch.refused {
                *reasons.entry(q.reason).or_default() += 1;
            }
            for (reason, count) in &reasons {
                metrics::counter!("tollgate_usage_events_quarantined_total", "reason" => *reason)
                    .increment(*count);
            }
            let new = usage::quarantine(&cx.pool, &cx.region, &cx.gateway_id, &batch.refused)
                .await
                .map_err(|e| unavailable(&cx.gateway_id, &e))?;
            tracing::warn!(gateway = %cx.gateway_id, region = %cx.region, seq = batch.seq, refused = batch.refused.len(), new, ?reasons, "usage events quarantined");
        }
        let ingested = usage::ingest(&cx.pool, &cx.region, &cx.gateway_id, &batch.events)
            .await
            .map_err(|e| unavailable(&cx.gateway_id, &e))?;
        metrics::histogram!("tollgate_usage_batch_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("tollgate_usage_events_ingested_total").increment(ingested.inserted);
        let replayed = u64::try_from(batch.events.len())
            .unwrap_or(0)
            .saturating_sub(ingested.inserted);
        if replayed > 0 {
            metrics::counter!("tollgate_usage_events_duplicate_total").increment(replayed);
            tracing::debug!(gateway = %cx.gateway_id, seq = batch.seq, replayed, "replayed usage events skipped");
        }
        self.committed = self.committed.max(batch.seq);
        if !ingested.touched.is_empty() {
            self.cx.touches.add(ingested.touched);
        }
        Ok(())
    }
}

/// Acks each batch of `inbound` once committed; ends at the first bad batch or failure,
/// or when `revoked` resolves.
pub fn report(
    cx: Context,
    revoked: Revoked,
    inbound: Streaming<proto::UsageBatch>,
) -> ReportStream {
    let session = Session {
        cx,
        inbound,
        revoked,
        committed: 0,
        ended: false,
    };
    Box::pin(futures_util::stream::unfold(
        session,
        |mut session| async move {
            if session.ended {
                return None;
            }
            let next = tokio::select! {
                () = &mut session.revoked => {
                    tracing::warn!(gateway = %session.cx.gateway_id, "credential revoked or expired: ending the usage stream");
                    session.ended = true;
                    return Some((Err(Status::unauthenticated("credential revoked or expired")), session));
                }
                next = session.inbound.message() => next,
            };
            match next {
                Ok(Some(batch)) => {
                    let answer = match session.commit(batch).await {
                        Ok(()) => Ok(proto::ReportAck {
                            committed_seq: session.committed,
                        }),
                        Err(status) => {
                            session.ended = true;
                            Err(status)
                        }
                    };
                    Some((answer, session))
                }
                Ok(None) => None,
                Err(status) => {
                    tracing::debug!(region = %session.cx.region, %status, "usage stream ended");
                    None
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests;
