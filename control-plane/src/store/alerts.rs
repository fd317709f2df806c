//! Budget alerts: thresholds crossed in a budget period, the outbox of their deliveries
//! to webhooks, and the delivery log.
//!
//! An alert fires at most once per budget, period and threshold: the unique row
//! `(budget_id, period_start, threshold_pct)` decides, whichever control-plane replica
//! inserts it first. Its notifications are written in the same transaction, so a fired
//! alert cannot lose its deliveries to a crash; any replica's delivery worker claims due
//! notifications (`FOR UPDATE SKIP LOCKED`, with `next_attempt_at` as the claim's lease).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::usage::{Touched, Visible};
use super::{Pool, StoreError};

/// A threshold crossed in a budget's current period (not fired yet when read).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Crossing {
    pub budget_id: Uuid,
    pub org_id: Uuid,
    pub team_id: Option<Uuid>,
    pub scope_kind: String,
    pub scope_id: Uuid,
    pub period: String,
    pub period_start: OffsetDateTime,
    pub threshold_pct: i32,
    /// Micro-USD.
    pub spent_micros: i64,
    pub amount_micros: i64,
}

/// Thresholds crossed, and not fired yet, in the current period of every budget on the
/// `touched` scopes. Periods are UTC calendar periods (weeks start on Monday), as the
/// gateways count them; spend is summed from the daily rollup.
pub async fn crossed(pool: &Pool, touched: &Touched) -> Result<Vec<Crossing>, StoreError> {
    Ok(sqlx::query_as::<_, Crossing>(
        "WITH b AS (
           SELECT b.id, b.org_id, b.scope_kind, b.scope_id, b.period, b.amount_micros, b.alert_thresholds_pct,
                  CASE b.period WHEN 'total' THEN 'epoch'::timestamptz ELSE date_trunc(b.period, now(), 'UTC') END
                    AS period_start,
                  CASE b.scope_kind WHEN 'team' THEN b.scope_id WHEN 'project' THEN p.team_id
                    WHEN 'key' THEN k.team_id END AS team_id,
                  k.public_id
           FROM budgets b
           LEFT JOIN projects p ON b.scope_kind = 'project' AND p.id = b.scope_id AND p.org_id = b.org_id
           LEFT JOIN api_keys k ON b.scope_kind = 'key' AND k.id = b.scope_id AND k.org_id = b.org_id
           WHERE (b.scope_kind = 'org' AND b.scope_id = ANY($1))
              OR (b.scope_kind = 'team' AND b.scope_id = ANY($2))
              OR (b.scope_kind = 'project' AND b.scope_id = ANY($3))
              OR (b.scope_kind = 'key' AND k.public_id = ANY($4))
         ), s AS (
           SELECT b.*, (
             SELECT least(coalesce(sum(d.cost_micros), 0), 9223372036854775807) FROM usage_daily d
             WHERE d.org_id = b.org_id AND d.bucket >= b.period_start
               AND (b.scope_kind = 'org' OR (b.scope_kind = 'team' AND d.team_id = b.scope_id)
                    OR (b.scope_kind = 'project' AND d.project_id = b.scope_id)
                    OR (b.scope_kind = 'key' AND d.key_id = b.public_id))
           )::bigint AS spent
           FROM b
         )
         SELECT s.id AS budget_id, s.org_id, s.team_id, s.scope_kind, s.scope_id, s.period, s.period_start,
                t.pct AS threshold_pct, s.spent AS spent_micros, s.amount_micros
         FROM s CROSS JOIN LATERAL unnest(s.alert_thresholds_pct) AS t(pct)
         WHERE s.spent > 0 AND s.spent::numeric * 100 >= s.amount_micros::numeric * t.pct
           AND NOT EXISTS (SELECT 1 FROM budget_alerts a
                           WHERE a.budget_id = s.id AND a.period_start = s.period_start AND a.threshold_pct = t.pct)
         ORDER BY s.id, t.pct",
    )
    .bind(&touched.orgs)
    .bind(&touched.teams)
    .bind(&touched.projects)
    .bind(&touched.keys)
    .fetch_all(pool)
    .await?)
}

/// What [`fire`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Alerts this call inserted (others had fired already, e.g. on another replica).
    pub alerts: u64,
    /// Deliveries queued for them.
    pub notifications: u64,
}

/// Records the crossings that have not fired yet and queues one delivery per alert and
/// matching webhook (the org's, and the team's the budget belongs to), in one
/// transaction.
pub async fn fire(pool: &Pool, crossings: &[Crossing]) -> Result<Fired, StoreError> {
    if crossings.is_empty() {
        return Ok(Fired::default());
    }
    let ids: Vec<Uuid> = crossings.iter().map(|_| Uuid::now_v7()).collect();
    let budget_ids: Vec<Uuid> = crossings.iter().map(|c| c.budget_id).collect();
    let org_ids: Vec<Uuid> = crossings.iter().map(|c| c.org_id).collect();
    let team_ids: Vec<Option<Uuid>> = crossings.iter().map(|c| c.team_id).collect();
    let scope_kinds: Vec<&str> = crossings.iter().map(|c| c.scope_kind.as_str()).collect();
    let scope_ids: Vec<Uuid> = crossings.iter().map(|c| c.scope_id).collect();
    let periods: Vec<&str> = crossings.iter().map(|c| c.period.as_str()).collect();
    let starts: Vec<OffsetDateTime> = crossings.iter().map(|c| c.period_start).collect();
    let pcts: Vec<i32> = crossings.iter().map(|c| c.threshold_pct).collect();
    let spent: Vec<i64> = crossings.iter().map(|c| c.spent_micros).collect();
    let amounts: Vec<i64> = crossings.iter().map(|c| c.amount_micros).collect();
    let mut tx = pool.begin().await?;
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO budget_alerts (id, org_id, team_id, budget_id, scope_kind, scope_id, period, period_start,
                                    threshold_pct, spent_micros, amount_micros)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::text[],
                              $8::timestamptz[], $9::int4[], $10::int8[], $11::int8[])
         ON CONFLICT (budget_id, period_start, threshold_pct) DO NOTHING
         RETURNING id",
    )
    .bind(&ids)
    .bind(&org_ids)
    .bind(&team_ids)
    .bind(&budget_ids)
    .bind(&scope_kinds)
    .bind(&scope_ids)
    .bind(&periods)
    .bind(&starts)
    .bind(&pcts)
    .bind(&spent)
    .bind(&amounts)
    .fetch_all(&mut *tx)
    .await?;
    let notifications = sqlx::query(
        "INSERT INTO alert_notifications (alert_id, webhook_id, org_id)
         SELECT a.id, w.id, a.org_id FROM budget_alerts a
         JOIN webhooks w ON w.org_id = a.org_id AND (w.team_id IS NULL OR w.team_id = a.team_id)
         WHERE a.id = ANY($1)",
    )
    .bind(&inserted)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(Fired {
        alerts: u64::try_from(inserted.len()).unwrap_or(u64::MAX),
        notifications,
    })
}

/// A fired alert as stored (what a webhook is told).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct FiredAlert {
    pub id: Uuid,
    pub org_id: Uuid,
    /// The team of the budget's scope; absent for an org budget.
    pub team_id: Option<Uuid>,
    pub budget_id: Uuid,
    /// `org`, `team`, `project` or `key`.
    pub scope_kind: String,
    pub scope_id: Uuid,
    /// `day`, `week`, `month` or `total`.
    pub period: String,
    /// Start of the budget period the threshold was crossed in (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    pub threshold_pct: i32,
    /// Micro-USD spent in the period when the alert fired.
    pub spent_micros: i64,
    /// The budget's amount then (micro-USD).
    pub amount_micros: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: OffsetDateTime,
}

const ALERT_COLUMNS: &str = "a.id, a.org_id, a.team_id, a.budget_id, a.scope_kind, a.scope_id, a.period, \
                             a.period_start, a.threshold_pct, a.spent_micros, a.amount_micros, a.fired_at";

/// A delivery a worker claimed: try it now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    #[sqlx(flatten)]
    pub alert: FiredAlert,
    pub webhook_id: Uuid,
    pub url: String,
    /// This attempt's number, 1 for the first.
    pub attempt: i32,
}

/// Claims up to `limit` due deliveries for `lease_ms`: no other worker takes them until
/// then, and one whose worker died is retried after it.
pub async fn claim_due(pool: &Pool, limit: i64, lease_ms: i64) -> Result<Vec<Due>, StoreError> {
    let sql = format!(
        "WITH due AS (
           SELECT alert_id, webhook_id FROM alert_notifications
           WHERE state = 'pending' AND next_attempt_at <= now()
           ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
         )
         UPDATE alert_notifications n
         SET attempts = n.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
         FROM due, budget_alerts a, webhooks w
         WHERE n.alert_id = due.alert_id AND n.webhook_id = due.webhook_id AND a.id = n.alert_id AND w.id = n.webhook_id
         RETURNING {ALERT_COLUMNS}, n.webhook_id, w.url, n.attempts AS attempt"
    );
    Ok(sqlx::query_as::<_, Due>(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .bind(lease_ms)
        .fetch_all(pool)
        .await?)
}

/// How an attempt ended, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub next: Next,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryInMs(i64),
    GiveUp,
}

/// Logs an attempt of a claimed delivery and moves the delivery on.
pub async fn record_attempt(pool: &Pool, due: &Due, attempt: &Attempt) -> Result<(), StoreError> {
    let outcome = if attempt.next == Next::Delivered {
        "delivered"
    } else {
        "failed"
    };
    let (state, retry_ms) = match attempt.next {
        Next::Delivered => ("delivered", 0),
        Next::RetryInMs(ms) => ("pending", ms),
        Next::GiveUp => ("failed", 0),
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries (alert_id, webhook_id, org_id, attempt, outcome, status_code, error, duration_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(due.alert.id)
    .bind(due.webhook_id)
    .bind(due.alert.org_id)
    .bind(due.attempt)
    .bind(outcome)
    .bind(attempt.status_code)
    .bind(attempt.error.as_deref())
    .bind(attempt.duration_ms)
    .execute(&mut *tx)
    .await?;
    // Only while the claim is still ours (a lease that ran out may have been re-claimed).
    sqlx::query(
        "UPDATE alert_notifications
         SET state = $4, next_attempt_at = now() + $5 * interval '1 millisecond',
             last_status_code = $6, last_error = $7
         WHERE alert_id = $1 AND webhook_id = $2 AND attempts = $3 AND state = 'pending'",
    )
    .bind(due.alert.id)
    .bind(due.webhook_id)
    .bind(due.attempt)
    .bind(state)
    .bind(retry_ms)
    .bind(attempt.status_code)
    .bind(attempt.error.as_deref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Where one alert's delivery to one webhook stands.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DeliveryState {
    #[serde(skip)]
    pub alert_id: Uuid,
    pub webhook_id: Uuid,
    /// `pending`, `delivered` or `failed` (every attempt failed).
    pub state: String,
    pub attempts: i32,
    /// When a pending delivery is tried next.
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// The receiver's HTTP status on the last attempt, if it answered.
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A fired alert with where its deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    #[serde(flatten)]
    pub alert: FiredAlert,
    /// One per webhook the alert went to; empty when the org had none.
    pub deliveries: Vec<DeliveryState>,
}

/// The org's alerts `visible` to the caller, newest first, up to `limit + 1` before
/// `before` (an alert id).
pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    visible: &Visible,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Alert>, StoreError> {
    let (all, teams, owner) = match visible {
        Visible::All => (true, Vec::new(), None),
        Visible::Some { teams, keys_of } => (false, teams.clone(), *keys_of),
    };
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM budget_alerts a
         WHERE a.org_id = $1 AND ($2::uuid IS NULL OR a.id < $2)
           AND ($3 OR a.team_id = ANY($4)
                OR ($5::uuid IS NOT NULL AND a.scope_kind = 'key'
                    AND a.scope_id IN (SELECT id FROM api_keys WHERE org_id = $1 AND owner_user_id = $5)))
         ORDER BY a.id DESC LIMIT $6"
    );
    let alerts = sqlx::query_as::<_, FiredAlert>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(before)
        .bind(all)
        .bind(&teams)
        .bind(owner)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let ids: Vec<Uuid> = alerts.iter().map(|a| a.id).collect();
    let states = sqlx::query_as::<_, DeliveryState>(
        "SELECT alert_id, webhook_id, state, attempts, next_attempt_at, last_status_code, last_error, updated_at
         FROM alert_notifications WHERE org_id = $1 AND alert_id = ANY($2) ORDER BY webhook_id",
    )
    .bind(org_id)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(alerts
        .into_iter()
        .map(|alert| Alert {
            deliveries: states
                .iter()
                .filter(|s| s.alert_id == alert.id)
                .cloned()
                .collect(),
            alert,
        })
        .collect())
}
