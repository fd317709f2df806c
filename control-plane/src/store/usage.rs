//! Usage: the request log (`usage_events`, one partition per UTC day) and the spend
//! rollups per hour and per day, written together in one statement per batch; the sums
//! the usage API, `Spent` and the budget alerts read from the rollups; and the
//! partitions' upkeep.
//!
//! Invariants: a rollup row only ever grows by what the same statement inserted into
//! the log (replays insert nothing, so they add nothing), and each batch touches each
//! rollup row once, whatever its size (no per-request UPDATE). Sums saturate at
//! `i64::MAX` instead of failing: ingest bounds each event, so only a flood of them
//! could get there, and a sum that cannot be stored must never make a batch unstorable
//! (its gateway would retry it forever). What ingest checks events against
//! ([`facts`]) and what it refused ([`quarantine`]) are here too.

use std::collections::HashMap;

use sqlx::Row;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::{Pool, StoreError};

/// A batch of events, column by column (what `unnest` binds). Every vector has the same
/// length. `org_id`, `team_id` and `key_id` are all set or all `None` (a call refused
/// before its key was known); only events with them are rolled up.
#[derive(Debug, Default)]
pub struct EventColumns {
    pub started_at: Vec<OffsetDateTime>,
    pub event_id: Vec<Uuid>,
    pub org_id: Vec<Option<Uuid>>,
    pub team_id: Vec<Option<Uuid>>,
    pub project_id: Vec<Option<Uuid>>,
    /// The key's public id.
    pub key_id: Vec<Option<String>>,
    pub model: Vec<String>,
    pub deployment_id: Vec<String>,
    pub endpoint: Vec<String>,
    pub status: Vec<i16>,
    pub http_status: Vec<i32>,
    pub error_code: Vec<String>,
    pub streamed: Vec<bool>,
    pub ttfb_ms: Vec<i32>,
    pub latency_ms: Vec<i32>,
    pub prompt_tokens: Vec<i64>,
    pub completion_tokens: Vec<i64>,
    pub cache_read_tokens: Vec<i64>,
    pub cache_write_tokens: Vec<i64>,
    /// Micro-USD.
    pub cost_micros: Vec<i64>,
    pub reserved_micros: Vec<i64>,
    pub price_table_version: Vec<String>,
    pub request_id: Vec<String>,
    pub trace_id: Vec<String>,
    pub attempts: Vec<i32>,
}

impl EventColumns {
    pub fn len(&self) -> usize {
        self.event_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.event_id.is_empty()
    }

    /// Keeps the events whose `keep` entry is true, in order.
    pub fn retain(&mut self, keep: &[bool]) {
        fn only<T>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep.get(i - 1).copied().unwrap_or(false)
            });
        }
        only(&mut self.started_at, keep);
        only(&mut self.event_id, keep);
        only(&mut self.org_id, keep);
        only(&mut self.team_id, keep);
        only(&mut self.project_id, keep);
        only(&mut self.key_id, keep);
        only(&mut self.model, keep);
        only(&mut self.deployment_id, keep);
        only(&mut self.endpoint, keep);
        only(&mut self.status, keep);
        only(&mut self.http_status, keep);
        only(&mut self.error_code, keep);
        only(&mut self.streamed, keep);
        only(&mut self.ttfb_ms, keep);
        only(&mut self.latency_ms, keep);
        only(&mut self.prompt_tokens, keep);
        only(&mut self.completion_tokens, keep);
        only(&mut self.cache_read_tokens, keep);
        only(&mut self.cache_write_tokens, keep);
        only(&mut self.cost_micros, keep);
        only(&mut self.reserved_micros, keep);
        only(&mut self.price_table_version, keep);
        only(&mut self.request_id, keep);
        only(&mut self.trace_id, keep);
        only(&mut self.attempts, keep);
    }
}

/// The scopes a batch's newly stored events spent in: whose budgets to check.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    pub orgs: Vec<Uuid>,
    pub teams: Vec<Uuid>,
    pub projects: Vec<Uuid>,
    /// Public ids.
    pub keys: Vec<String>,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.orgs.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Ingested {
    /// Events stored now; the rest of the batch was stored before (a replay).
    pub inserted: u64,
    pub touched: Touched,
}

/// Rows of both rollups, with the statement that adds a batch to them; each sum
/// saturates at `i64::MAX` (added as numeric, clamped, then stored as bigint).
const ROLLUP_SUMS: &str = "requests = least(r.requests::numeric + excluded.requests, 9223372036854775807)::bigint,
    errors = least(r.errors::numeric + excluded.errors, 9223372036854775807)::bigint,
    prompt_tokens = least(r.prompt_tokens::numeric + excluded.prompt_tokens, 9223372036854775807)::bigint,
    completion_tokens = least(r.completion_tokens::numeric + excluded.completion_tokens, 9223372036854775807)::bigint,
    cache_read_tokens = least(r.cache_read_tokens::numeric + excluded.cache_read_tokens, 9223372036854775807)::bigint,
    cache_write_tokens = least(r.cache_write_tokens::numeric + excluded.cache_write_tokens, 9223372036854775807)::bigint,
    cost_micros = least(r.cost_micros::numeric + excluded.cost_micros, 9223372036854775807)::bigint";

/// `sum(column)` of bigints (numeric in Postgres), saturated back into a bigint.
macro_rules! sat_sum {
    ($col:literal) => {
        concat!("least(sum(", $col, "), 9223372036854775807)::bigint")
    };
}

/// One statement: insert the events (a replayed one conflicts on its primary key and is
/// skipped), aggregate only the rows actually inserted per hour and per day, and add the
/// aggregates to the rollups. Rollup rows are written in key order so that concurrent
/// batches lock them in the same order.
static INGEST_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH input AS (
           SELECT * FROM unnest($3::timestamptz[], $4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::text[],
                                $9::text[], $10::text[], $11::text[], $12::int2[], $13::int4[], $14::text[],
                                $15::bool[], $16::int4[], $17::int4[], $18::int8[], $19::int8[], $20::int8[],
                                $21::int8[], $22::int8[], $23::int8[], $24::text[], $25::text[], $26::text[],
                                $27::int4[])
             AS t(started_at, event_id, org_id, team_id, project_id, key_id, model, deployment_id, endpoint,
                  status, http_status, error_code, streamed, ttfb_ms, latency_ms, prompt_tokens,
                  completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros, reserved_micros,
                  price_table_version, request_id, trace_id, attempts)
         ), inserted AS (
           INSERT INTO usage_events (started_at, event_id, gateway_id, region_id, org_id, team_id, project_id,
             key_id, model, deployment_id, endpoint, status, http_status, error_code, streamed, ttfb_ms,
             latency_ms, prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros,
             reserved_micros, price_table_version, request_id, trace_id, attempts)
           SELECT started_at, event_id, $1, $2, org_id, team_id, project_id, key_id, model, deployment_id,
             endpoint, status, http_status, error_code, streamed, ttfb_ms, latency_ms, prompt_tokens,
             completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros, reserved_micros,
             price_table_version, request_id, trace_id, attempts
           FROM input
           ON CONFLICT DO NOTHING
           RETURNING started_at, org_id, team_id, project_id, key_id, model, status, prompt_tokens,
             completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros
         ), hourly AS (
           SELECT date_trunc('hour', started_at, 'UTC') AS bucket, org_id, team_id, project_id, key_id, model,
                  count(*) AS requests, count(*) FILTER (WHERE status <> 1) AS errors,
                  {prompt} AS prompt_tokens, {completion} AS completion_tokens,
                  {cache_read} AS cache_read_tokens, {cache_write} AS cache_write_tokens, {cost} AS cost_micros
           FROM inserted
           WHERE org_id IS NOT NULL AND team_id IS NOT NULL AND key_id IS NOT NULL
           GROUP BY 1, 2, 3, 4, 5, 6
         ), hourly_added AS (
           INSERT INTO usage_hourly AS r (bucket, org_id, team_id, project_id, key_id, model, requests, errors,
             prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros)
           SELECT * FROM hourly ORDER BY org_id, bucket, team_id, project_id, key_id, model
           ON CONFLICT (org_id, bucket, team_id, project_id, key_id, model) DO UPDATE SET {ROLLUP_SUMS}
         ), daily_added AS (
           INSERT INTO usage_daily AS r (bucket, org_id, team_id, project_id, key_id, model, requests, errors,
             prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, cost_micros)
           SELECT date_trunc('day', bucket, 'UTC'), org_id, team_id, project_id, key_id, model, {requests},
                  {errors}, {prompt}, {completion}, {cache_read}, {cache_write}, {cost}
           FROM hourly GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 2, 1, 3, 4, 5, 6
           ON CONFLICT (org_id, bucket, team_id, project_id, key_id, model) DO UPDATE SET {ROLLUP_SUMS}
         )
         SELECT (SELECT count(*) FROM inserted) AS inserted,
                (SELECT coalesce(array_agg(DISTINCT org_id), '{{}}') FROM hourly) AS orgs,
                (SELECT coalesce(array_agg(DISTINCT team_id), '{{}}') FROM hourly) AS teams,
                (SELECT coalesce(array_agg(DISTINCT project_id) FILTER (WHERE project_id IS NOT NULL), '{{}}') FROM hourly) AS projects,
                (SELECT coalesce(array_agg(DISTINCT key_id), '{{}}') FROM hourly) AS keys",
        requests = sat_sum!("requests"),
        errors = sat_sum!("errors"),
        prompt = sat_sum!("prompt_tokens"),
        completion = sat_sum!("completion_tokens"),
        cache_read = sat_sum!("cache_read_tokens"),
        cache_write = sat_sum!("cache_write_tokens"),
        cost = sat_sum!("cost_micros"),
    )
});

/// Deadlock or serialization failure: the transaction can simply run again.
fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// Stores a batch of `gateway_id` (in `region_id`) and adds it to the rollups, in one
/// transaction; idempotent per event (a replayed event is neither stored nor counted
/// again).
pub async fn ingest(
    pool: &Pool,
    region_id: &str,
    gateway_id: &str,
    events: &EventColumns,
) -> Result<Ingested, StoreError> {
    if events.is_empty() {
        return Ok(Ingested::default());
    }
    let mut tries = 0;
    loop {
        tries += 1;
        let result = sqlx::query(sqlx::AssertSqlSafe(INGEST_SQL.as_str()))
            .bind(gateway_id)
            .bind(region_id)
            .bind(&events.started_at)
            .bind(&events.event_id)
            .bind(&events.org_id)
            .bind(&events.team_id)
            .bind(&events.project_id)
            .bind(&events.key_id)
            .bind(&events.model)
            .bind(&events.deployment_id)
            .bind(&events.endpoint)
            .bind(&events.status)
            .bind(&events.http_status)
            .bind(&events.error_code)
            .bind(&events.streamed)
            .bind(&events.ttfb_ms)
            .bind(&events.latency_ms)
            .bind(&events.prompt_tokens)
            .bind(&events.completion_tokens)
            .bind(&events.cache_read_tokens)
            .bind(&events.cache_write_tokens)
            .bind(&events.cost_micros)
            .bind(&events.reserved_micros)
            .bind(&events.price_table_version)
            .bind(&events.request_id)
            .bind(&events.trace_id)
            .bind(&events.attempts)
            .fetch_one(pool)
            .await;
        // One statement is one transaction: all of it lands or none.
        match result {
            Ok(row) => {
                let inserted: i64 = row.try_get("inserted")?;
                return Ok(Ingested {
                    inserted: u64::try_from(inserted).unwrap_or(0),
                    touched: Touched {
                        orgs: row.try_get("orgs")?,
                        teams: row.try_get("teams")?,
                        projects: row.try_get("projects")?,
                        keys: row.try_get("keys")?,
                    },
                });
            }
            Err(e) if tries < 4 && retryable(&e) => {
                tracing::debug!(error = %e, tries, "usage batch retried");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Where a key belongs, as ingest checks an event's claims against it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyScope {
    pub public_id: String,
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub project_id: Option<Uuid>,
}

/// A deployment of the reporting region and its own prices (micro-USD per million
/// tokens; `None` where the price table applies).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeploymentPrices {
    pub id: Uuid,
    pub upstream_model: String,
    pub input_price: Option<i64>,
    pub output_price: Option<i64>,
    pub cached_input_price: Option<i64>,
    pub cache_write_price: Option<i64>,
    /// Long-context tiers of the deployment's own prices.
    #[sqlx(json)]
    pub price_tiers: Vec<super::deployments::PriceTier>,
}

/// What the control plane knows that a batch's events are checked against.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// The keys the batch names, by public id (any status: a call on a key revoked
    /// while it ran is still billed).
    pub keys: HashMap<String, KeyScope>,
    /// Every deployment of the region.
    pub deployments: HashMap<Uuid, DeploymentPrices>,
}

/// The keys `public_ids` and the deployments of `region_id`. Every org is served in
/// every region (the snapshot builder sends each region every org), so a key's org is
/// always one of the region's; what ties an event to its region is the deployment.
pub async fn facts(
    pool: &Pool,
    region_id: &str,
    public_ids: &[String],
) -> Result<Facts, StoreError> {
    let keys: Vec<KeyScope> = sqlx::query_as(
        "SELECT public_id, org_id, team_id, project_id FROM api_keys WHERE public_id = ANY($1)",
    )
    .bind(public_ids)
    .fetch_all(pool)
    .await?;
    let deployments: Vec<DeploymentPrices> = sqlx::query_as(
        "SELECT id, upstream_model, input_price, output_price, cached_input_price, cache_write_price,
                price_tiers
           FROM deployments WHERE region_id = $1",
    )
    .bind(region_id)
    .fetch_all(pool)
    .await?;
    Ok(Facts {
        keys: keys.into_iter().map(|k| (k.public_id.clone(), k)).collect(),
        deployments: deployments.into_iter().map(|d| (d.id, d)).collect(),
    })
}

/// An event ingest refused: why, and the event as sent (JSON, no NUL anywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    /// As sent (possibly not a UUID: that may be why it was refused).
    pub event_id: String,
    /// A fixed code, e.g. `unknown_key`.
    pub reason: &'static str,
    pub detail: String,
    pub event: serde_json::Value,
}

/// Keeps refused events of `gateway_id` (in `region_id`); a replayed refusal is kept
/// once. How many were new.
pub async fn quarantine(
    pool: &Pool,
    region_id: &str,
    gateway_id: &str,
    events: &[Quarantined],
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason).collect();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    let bodies: Vec<String> = events.iter().map(|e| e.event.to_string()).collect();
    let done = sqlx::query(
        "INSERT INTO usage_quarantine (gateway_id, event_id, region_id, reason, detail, event)
         SELECT $1, e, $2, r, d, j::jsonb FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(e, r, d, j)
         ON CONFLICT DO NOTHING",
    )
    .bind(gateway_id)
    .bind(region_id)
    .bind(&ids)
    .bind(&reasons)
    .bind(&details)
    .bind(&bodies)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One budget period asked about by `Spent`.
#[derive(Debug, Clone, Copy)]
pub struct PeriodRef {
    pub budget_id: Uuid,
    /// Start of the period; whole hours before the first full day are summed from the
    /// hourly rollup, whole days from the daily one.
    pub since: OffsetDateTime,
    /// The first UTC midnight at or after `since`.
    pub first_day: OffsetDateTime,
}

/// Micro-USD spent in each budget's scope since its period start, in `periods` order; 0
/// for a budget that does not exist. Gateways ask for any org they serve, so this is
/// keyed by budget id alone.
pub async fn spent(pool: &Pool, periods: &[PeriodRef]) -> Result<Vec<i64>, StoreError> {
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = periods.iter().map(|p| p.budget_id).collect();
    let since: Vec<OffsetDateTime> = periods.iter().map(|p| p.since).collect();
    let first_day: Vec<OffsetDateTime> = periods.iter().map(|p| p.first_day).collect();
    let rows: Vec<(i64,)> = sqlx::query_as(
        "SELECT least(coalesce(s.spent, 0), 9223372036854775807)::bigint
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS q(budget_id, since, first_day, ord)
         LEFT JOIN budgets b ON b.id = q.budget_id
         LEFT JOIN api_keys k ON b.scope_kind = 'key' AND k.id = b.scope_id AND k.org_id = b.org_id
         LEFT JOIN LATERAL (
           SELECT sum(x.cost_micros) AS spent FROM (
             SELECT d.cost_micros FROM usage_daily d
              WHERE d.org_id = b.org_id AND d.bucket >= q.first_day
                AND (b.scope_kind = 'org' OR (b.scope_kind = 'team' AND d.team_id = b.scope_id)
                     OR (b.scope_kind = 'project' AND d.project_id = b.scope_id)
                     OR (b.scope_kind = 'key' AND d.key_id = k.public_id))
             UNION ALL
             SELECT h.cost_micros FROM usage_hourly h
              WHERE h.org_id = b.org_id AND h.bucket >= q.since AND h.bucket < q.first_day
                AND (b.scope_kind = 'org' OR (b.scope_kind = 'team' AND h.team_id = b.scope_id)
                     OR (b.scope_kind = 'project' AND h.project_id = b.scope_id)
                     OR (b.scope_kind = 'key' AND h.key_id = k.public_id))
           ) x
         ) s ON true
         ORDER BY q.ord",
    )
    .bind(&ids)
    .bind(&since)
    .bind(&first_day)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(spent,)| spent).collect())
}

/// Rollup granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
}

/// What usage rows are grouped by besides the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    None,
    Team,
    Project,
    /// The key's public id.
    Key,
    Model,
}

/// Which of an org's usage a caller may see: all of it, or only some teams' and/or the
/// keys one user owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    All,
    Some {
        teams: Vec<Uuid>,
        keys_of: Option<Uuid>,
    },
}

impl Visible {
    /// `(all, teams, owner)` as bound by the queries.
    fn binds(&self) -> (bool, Vec<Uuid>, Option<Uuid>) {
        match self {
            Self::All => (true, Vec::new(), None),
            Self::Some { teams, keys_of } => (false, teams.clone(), *keys_of),
        }
    }
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    sqlx::FromRow,
    utoipa::ToSchema,
)]
pub struct UsageRow {
    /// Start of the hour or day (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub bucket: OffsetDateTime,
    /// The team's, project's or key's id or the model, as grouped by; absent when not
    /// grouped (or for usage of keys without a project).
    pub group: Option<String>,
    pub requests: i64,
    /// Calls that did not succeed (refused, upstream error, client gone).
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    /// Micro-USD.
    pub cost_micros: i64,
}

/// A usage query: org, time range of bucket starts `[from, to)`, and the keyset cursor
/// `(bucket, group)` of the previous page.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub org_id: Uuid,
    pub interval: Interval,
    pub group_by: GroupBy,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub after: Option<(OffsetDateTime, String)>,
    pub limit: i64,
}

/// Up to `limit + 1` rows ordered by bucket, then group (so the caller learns whether
/// another page exists).
pub async fn usage(
    pool: &Pool,
    query: &UsageQuery,
    visible: &Visible,
) -> Result<Vec<UsageRow>, StoreError> {
    let table = match query.interval {
        Interval::Hour => "usage_hourly",
        Interval::Day => "usage_daily",
    };
    let group = match query.group_by {
        GroupBy::None => "NULL::text",
        GroupBy::Team => "team_id::text",
        GroupBy::Project => "project_id::text",
        GroupBy::Key => "key_id",
        GroupBy::Model => "model",
    };
    let sql = format!(
        "SELECT bucket, \"group\", requests, errors, prompt_tokens, completion_tokens, cache_read_tokens,
                cache_write_tokens, cost_micros
         FROM (
           SELECT bucket, {group} AS \"group\", {requests} AS requests, {errors} AS errors,
                  {prompt} AS prompt_tokens, {completion} AS completion_tokens,
                  {cache_read} AS cache_read_tokens, {cache_write} AS cache_write_tokens, {cost} AS cost_micros
           FROM {table}
           WHERE org_id = $1 AND bucket >= $2 AND bucket < $3
             AND ($4 OR team_id = ANY($5)
                  OR ($6::uuid IS NOT NULL
                      AND key_id IN (SELECT public_id FROM api_keys WHERE org_id = $1 AND owner_user_id = $6)))
           GROUP BY 1, 2
         ) u
         WHERE $7::timestamptz IS NULL OR (bucket, coalesce(\"group\", '')) > ($7, $8)
         ORDER BY bucket, coalesce(\"group\", '')
         LIMIT $9",
        requests = sat_sum!("requests"),
        errors = sat_sum!("errors"),
        prompt = sat_sum!("prompt_tokens"),
        completion = sat_sum!("completion_tokens"),
        cache_read = sat_sum!("cache_read_tokens"),
        cache_write = sat_sum!("cache_write_tokens"),
        cost = sat_sum!("cost_micros"),
    );
    let (all, teams, owner) = visible.binds();
    let (after_bucket, after_group) = match &query.after {
        Some((bucket, group)) => (Some(*bucket), group.as_str()),
        None => (None, ""),
    };
    Ok(sqlx::query_as::<_, UsageRow>(sqlx::AssertSqlSafe(sql))
        .bind(query.org_id)
        .bind(query.from)
        .bind(query.to)
        .bind(all)
        .bind(&teams)
        .bind(owner)
        .bind(after_bucket)
        .bind(after_group)
        .bind(query.limit + 1)
        .fetch_all(pool)
        .await?)
}

/// Partitions are named after their UTC day.
pub fn partition_name(day: Date) -> String {
    format!(
        "usage_events_p{:04}{:02}{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("usage_events_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..].parse().ok()?;
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()
}

fn midnight(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02} 00:00:00+00",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// Every replica runs the upkeep; this lock makes them take turns.
const PARTITION_LOCK: i64 = 0x7467_7061_7274; // "tgpart"

/// Creates the partition of `day` unless it exists, moving over the rows the default
/// partition holds for that day. True when it was created.
pub async fn ensure_partition(pool: &Pool, day: Date) -> Result<bool, StoreError> {
    let name = partition_name(day);
    let next = day.next_day().ok_or(StoreError::NotFound)?;
    let (lo, hi) = (midnight(day), midnight(next));
    let mut tx = pool.begin().await?;
    // Never queue behind a long query while holding up every insert behind us.
    sqlx::query("SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK)
        .execute(&mut *tx)
        .await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        tx.commit().await?;
        return Ok(false);
    }
    // The name and bounds are built from a Date above, never from input.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS);
         WITH moved AS (
           DELETE FROM usage_events_default WHERE started_at >= '{lo}' AND started_at < '{hi}' RETURNING *
         )
         INSERT INTO {name} SELECT * FROM moved;
         ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}');"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Drops the day partitions entirely before `cutoff` (and the default partition's rows
/// before it); the names of the dropped partitions.
pub async fn drop_partitions_before(pool: &Pool, cutoff: Date) -> Result<Vec<String>, StoreError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut dropped = Vec::new();
    for name in names {
        let Some(day) = partition_day(&name) else {
            continue;
        };
        if day >= cutoff {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '10s'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        // `name` matched usage_events_p<8 digits> above.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        dropped.push(name);
    }
    sqlx::query("DELETE FROM usage_events_default WHERE started_at < $1")
        .bind(cutoff.midnight().assume_utc())
        .execute(pool)
        .await?;
    // Refused events are kept as long as the log they were refused from.
    sqlx::query("DELETE FROM usage_quarantine WHERE received_at < $1")
        .bind(cutoff.midnight().assume_utc())
        .execute(pool)
        .await?;
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn partition_names_round_trip() {
        let day = date!(2026 - 03 - 07);
        assert_eq!(partition_name(day), "usage_events_p20260307");
        assert_eq!(partition_day(&partition_name(day)), Some(day));
        assert_eq!(partition_day("usage_events_default"), None);
        assert_eq!(partition_day("usage_events_p2026030"), None);
        assert_eq!(partition_day("usage_events_p20261301"), None);
    }
}
