//! Gateways: their enrollment tokens (per region, stored as SHA-256 like admin tokens)
//! and what the control plane last heard from each.

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

pub const ENROLLMENT_PREFIX: &str = "tge_";

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EnrollmentToken {
    pub id: Uuid,
    pub region_id: String,
    /// The first characters, to recognise a token; never enough to use it.
    pub prefix: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const TOKEN_COLUMNS: &str = "id, region_id, prefix, name, revoked_at, last_used_at, created_at";

/// A new token for `region_id`; the returned text is the only copy of the secret.
pub async fn create_token(
    tx: &mut Tx<'_>,
    region_id: &str,
    name: &str,
) -> Result<(EnrollmentToken, String), StoreError> {
    let secret: [u8; 32] = rand::rng().random();
    let token = format!("{ENROLLMENT_PREFIX}{}", hex::encode(secret));
    let row = sqlx::query_as::<_, EnrollmentToken>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO enrollment_tokens (id, region_id, token_sha256, prefix, name)
         VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(region_id)
    .bind(Sha256::digest(token.as_bytes()).to_vec())
    .bind(&token[..ENROLLMENT_PREFIX.len() + 6])
    .bind(name)
    .fetch_one(&mut **tx)
    .await?;
    Ok((row, token))
}

pub async fn list_tokens(pool: &Pool, region_id: &str) -> Result<Vec<EnrollmentToken>, StoreError> {
    Ok(
        sqlx::query_as::<_, EnrollmentToken>(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM enrollment_tokens WHERE region_id = $1 ORDER BY id"
        )))
        .bind(region_id)
        .fetch_all(pool)
        .await?,
    )
}

pub async fn revoke_token(
    tx: &mut Tx<'_>,
    region_id: &str,
    id: Uuid,
) -> Result<EnrollmentToken, StoreError> {
    Ok(
        sqlx::query_as::<_, EnrollmentToken>(sqlx::AssertSqlSafe(format!(
            "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND region_id = $2 RETURNING {TOKEN_COLUMNS}"
        )))
        .bind(id)
        .bind(region_id)
        .fetch_one(&mut **tx)
        .await?,
    )
}

/// One row of the fleet view.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GatewayStatus {
    pub id: String,
    pub region_id: String,
    pub build: String,
    /// The control-plane replica holding its stream.
    pub replica: String,
    pub connected: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub connected_since: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    pub applied_version: i64,
    /// The newest version published for its region.
    pub latest_version: i64,
    pub last_nack_version: Option<i64>,
    pub last_nack_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_nack_at: Option<OffsetDateTime>,
    /// What the gateway's last Ack said it serves without (`"id: why"`), e.g. a
    /// deployment of a provider kind its build does not know.
    pub disabled_deployments: Vec<String>,
    /// Usage events of this gateway that ingest refused and quarantined (within the
    /// request log's retention).
    pub quarantined_events: i64,
}

pub async fn list_gateways(
    pool: &Pool,
    region: Option<&str>,
) -> Result<Vec<GatewayStatus>, StoreError> {
    Ok(sqlx::query_as::<_, GatewayStatus>(
        "SELECT g.id, g.region_id, g.build, g.replica, g.connected, g.connected_since, g.last_seen,
                g.applied_version,
                coalesce((SELECT max(version) FROM config_versions v WHERE v.region_id = g.region_id), 0) AS latest_version,
                g.last_nack_version, g.last_nack_error, g.last_nack_at, g.disabled_deployments,
                (SELECT count(*) FROM usage_quarantine q WHERE q.gateway_id = g.id) AS quarantined_events
           FROM gateways g
          WHERE ($1::text IS NULL OR g.region_id = $1)
          ORDER BY g.region_id, g.id",
    )
    .bind(region)
    .fetch_all(pool)
    .await?)
}

/// A stream opened: the gateway is connected through `replica` in session `session`.
/// [`StoreError::Conflict`] when the id is another region's gateway (a region's token
/// never takes over another region's row).
pub async fn connected(
    pool: &Pool,
    id: &str,
    region_id: &str,
    build: &str,
    replica: &str,
    session: Uuid,
    applied_version: u64,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "INSERT INTO gateways (id, region_id, build, replica, session_id, connected, connected_since, last_seen, applied_version)
         VALUES ($1, $2, $3, $4, $5, true, now(), now(), $6)
         ON CONFLICT (id) DO UPDATE SET region_id = $2, build = $3, replica = $4, session_id = $5,
           connected = true, connected_since = now(), last_seen = now(), applied_version = $6
         WHERE gateways.region_id = $2",
    )
    .bind(id)
    .bind(region_id)
    .bind(build)
    .bind(replica)
    .bind(session)
    .bind(i64::try_from(applied_version).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict {
            constraint: "gateway_region".into(),
        });
    }
    Ok(())
}

/// What a stream learnt: an Ack (no error; `disabled` = the deployments it applied the
/// version without) or a Nack, or only that it is alive. One statement, so the fleet
/// view never shows a version beside another version's list.
pub async fn heard(
    pool: &Pool,
    id: &str,
    session: Uuid,
    applied_version: u64,
    nack: Option<(u64, &str)>,
    disabled: Option<&[String]>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE gateways SET last_seen = now(), applied_version = $3,
           disabled_deployments = coalesce($6, disabled_deployments),
           last_nack_version = CASE WHEN $4::bigint IS NULL THEN last_nack_version ELSE $4 END,
           last_nack_error = CASE WHEN $4::bigint IS NULL THEN last_nack_error ELSE $5 END,
           last_nack_at = CASE WHEN $4::bigint IS NULL THEN last_nack_at ELSE now() END
         WHERE id = $1 AND session_id = $2",
    )
    .bind(id)
    .bind(session)
    .bind(i64::try_from(applied_version).unwrap_or(i64::MAX))
    .bind(nack.map(|(v, _)| i64::try_from(v).unwrap_or(i64::MAX)))
    .bind(nack.map(|(_, e)| e))
    .bind(disabled)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn disconnected(pool: &Pool, id: &str, session: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE gateways SET connected = false, last_seen = now() WHERE id = $1 AND session_id = $2",
    )
    .bind(id)
    .bind(session)
    .execute(pool)
    .await?;
    Ok(())
}
