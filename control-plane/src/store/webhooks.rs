//! Webhooks budget alerts are delivered to, per org (every alert of the org) or per team
//! (alerts of budgets on the team, its projects and keys). No secret is stored: each
//! webhook's signing secret is derived from the server's webhook key and its id.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Webhook {
    pub id: Uuid,
    pub org_id: Uuid,
    /// Set for a team's webhook; absent for the org's.
    pub team_id: Option<Uuid>,
    /// Whole in the create answer; `scheme://host[:port]/…` in every later answer.
    pub url: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, org_id, team_id, url, description, created_at, updated_at";

pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    team_id: Option<Uuid>,
    url: &str,
    description: &str,
) -> Result<Webhook, StoreError> {
    let sql = format!(
        "INSERT INTO webhooks (id, org_id, team_id, url, description) VALUES ($1, $2, $3, $4, $5)
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(org_id)
        .bind(team_id)
        .bind(url)
        .bind(description)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Webhook, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 AND id = $2");
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(pool)
        .await?)
}

/// The org's webhooks; with `teams`, only the webhooks of those teams.
pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    teams: Option<&[Uuid]>,
) -> Result<Vec<Webhook>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM webhooks WHERE org_id = $1 AND ($2::uuid[] IS NULL OR team_id = ANY($2))
         ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(teams)
        .fetch_all(pool)
        .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Webhook, StoreError> {
    let sql = format!("DELETE FROM webhooks WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}");
    Ok(sqlx::query_as::<_, Webhook>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// One attempt to deliver an alert to a webhook.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub alert_id: Uuid,
    pub webhook_id: Uuid,
    /// 1 for the first try.
    pub attempt: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `delivered` (the receiver answered 2xx) or `failed`.
    pub outcome: String,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i32>,
    /// Why the attempt failed (connect error, timeout, non-2xx).
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// The webhook's delivery log, newest first, up to `limit` rows before `before_id`.
pub async fn deliveries(
    pool: &Pool,
    org_id: Uuid,
    webhook_id: Uuid,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(sqlx::query_as::<_, Delivery>(
        "SELECT id, alert_id, webhook_id, attempt, at, outcome, status_code, error, duration_ms
         FROM webhook_deliveries
         WHERE org_id = $1 AND webhook_id = $2 AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
    )
    .bind(org_id)
    .bind(webhook_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
