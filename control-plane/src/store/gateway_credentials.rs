//! Gateway credentials: what each gateway process gets in exchange for its region's
//! enrollment token (`ConfigService.Enroll`), bound to one gateway id and region, short
//! lived and renewed while the process runs. Only a SHA-256 of the secret is kept; the
//! gateway holds the secret in memory only. A credential counts while it is neither
//! revoked nor expired and the enrollment token it was minted with is not revoked.
//!
//! A gateway id belongs to one region: the first region that enrolls or connects it owns
//! it, and another region's token can neither get a credential for it nor take its fleet
//! row over.

use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

pub const CREDENTIAL_PREFIX: &str = "tgc_";

/// Expired credentials stay listed this long (what the fleet view shows of past
/// processes), then go.
const KEEP_EXPIRED: &str = "1 day";

/// One credential as the fleet view shows it (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GatewayCredential {
    pub id: Uuid,
    pub gateway_id: String,
    pub region_id: String,
    /// The enrollment token it was exchanged for.
    pub enrollment_token_id: Uuid,
    /// The first characters, to recognise it; never enough to use it.
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub renewed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "c.id, c.gateway_id, c.region_id, c.enrollment_token_id, c.prefix, c.issued_at, \
                       c.renewed_at, c.expires_at, c.revoked_at";

/// A live enrollment token: its id and the region it enrolls into.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Enrollment {
    pub token_id: Uuid,
    pub region_id: String,
}

/// What a live credential vouches for.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Vouched {
    pub id: Uuid,
    pub gateway_id: String,
    pub region_id: String,
    pub expires_at: OffsetDateTime,
}

fn sha256(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn seconds(ttl: Duration) -> f64 {
    ttl.as_secs_f64()
}

/// The live enrollment token `token` (and records its use).
pub async fn enrollment(pool: &Pool, token: &str) -> Result<Enrollment, StoreError> {
    Ok(sqlx::query_as::<_, Enrollment>(
        "UPDATE enrollment_tokens SET last_used_at = now()
         WHERE token_sha256 = $1 AND revoked_at IS NULL RETURNING id AS token_id, region_id",
    )
    .bind(sha256(token))
    .fetch_one(pool)
    .await?)
}

/// A new credential for `gateway_id` in the enrollment's region, valid for `ttl`; the
/// returned text is the only copy of the secret. [`StoreError::Conflict`] when the id
/// belongs to another region (its fleet row, or a live credential there).
pub async fn issue(
    pool: &Pool,
    enrollment: &Enrollment,
    gateway_id: &str,
    ttl: Duration,
) -> Result<(GatewayCredential, String), StoreError> {
    let mut tx = pool.begin().await?;
    // Two regions enrolling the same new id at once: one of them waits and then sees the
    // other's credential.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tollgate-gateway:' || $1, 0))")
        .bind(gateway_id)
        .execute(&mut *tx)
        .await?;
    let elsewhere: Option<String> = sqlx::query_scalar(
        "SELECT region_id FROM gateways WHERE id = $1 AND region_id <> $2
         UNION ALL
         SELECT region_id FROM gateway_credentials
          WHERE gateway_id = $1 AND region_id <> $2 AND revoked_at IS NULL AND expires_at > now()
         LIMIT 1",
    )
    .bind(gateway_id)
    .bind(&enrollment.region_id)
    .fetch_optional(&mut *tx)
    .await?;
    if elsewhere.is_some() {
        return Err(StoreError::Conflict {
            constraint: "gateway_region".into(),
        });
    }
    // Every enrollment sweeps the long-expired ones of any gateway (pods come and go
    // under new ids; their rows must not pile up).
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM gateway_credentials WHERE expires_at < now() - interval '{KEEP_EXPIRED}'"
    )))
    .execute(&mut *tx)
    .await?;
    let secret: [u8; 32] = rand::rng().random();
    let credential = format!("{CREDENTIAL_PREFIX}{}", hex::encode(secret));
    let row = sqlx::query_as::<_, GatewayCredential>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO gateway_credentials AS c (id, gateway_id, region_id, enrollment_token_id, secret_sha256, prefix, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(gateway_id)
    .bind(&enrollment.region_id)
    .bind(enrollment.token_id)
    .bind(sha256(&credential))
    .bind(&credential[..CREDENTIAL_PREFIX.len() + 6])
    .bind(seconds(ttl))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((row, credential))
}

/// Extends the live credential `secret` to `ttl` from now. [`StoreError::NotFound`] when
/// it is unknown, revoked, expired, or its enrollment token was revoked.
pub async fn renew(
    pool: &Pool,
    secret: &str,
    ttl: Duration,
) -> Result<GatewayCredential, StoreError> {
    Ok(sqlx::query_as::<_, GatewayCredential>(sqlx::AssertSqlSafe(format!(
        "UPDATE gateway_credentials c SET expires_at = now() + make_interval(secs => $2), renewed_at = now()
           FROM enrollment_tokens t
          WHERE c.secret_sha256 = $1 AND c.revoked_at IS NULL AND c.expires_at > now()
            AND t.id = c.enrollment_token_id AND t.revoked_at IS NULL
          RETURNING {COLUMNS}"
    )))
    .bind(sha256(secret))
    .bind(seconds(ttl))
    .fetch_one(pool)
    .await?)
}

const LIVE: &str = "c.revoked_at IS NULL AND c.expires_at > now() AND t.revoked_at IS NULL";

/// What the live credential `secret` vouches for; [`StoreError::NotFound`] otherwise.
pub async fn authenticate(pool: &Pool, secret: &str) -> Result<Vouched, StoreError> {
    Ok(sqlx::query_as::<_, Vouched>(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.gateway_id, c.region_id, c.expires_at
           FROM gateway_credentials c JOIN enrollment_tokens t ON t.id = c.enrollment_token_id
          WHERE c.secret_sha256 = $1 AND {LIVE}"
    )))
    .bind(sha256(secret))
    .fetch_one(pool)
    .await?)
}

/// When the credential `id` expires, if it still counts.
pub async fn live_until(pool: &Pool, id: Uuid) -> Result<Option<OffsetDateTime>, StoreError> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT c.expires_at
           FROM gateway_credentials c JOIN enrollment_tokens t ON t.id = c.enrollment_token_id
          WHERE c.id = $1 AND {LIVE}"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Every credential of the region (or of all), newest first per gateway.
pub async fn list(pool: &Pool, region: Option<&str>) -> Result<Vec<GatewayCredential>, StoreError> {
    Ok(
        sqlx::query_as::<_, GatewayCredential>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM gateway_credentials c
          WHERE ($1::text IS NULL OR c.region_id = $1)
          ORDER BY c.region_id, c.gateway_id, c.issued_at DESC, c.id"
        )))
        .bind(region)
        .fetch_all(pool)
        .await?,
    )
}

/// Revokes the credential `id` (idempotent: a second revoke keeps the first time).
pub async fn revoke(tx: &mut Tx<'_>, id: Uuid) -> Result<GatewayCredential, StoreError> {
    Ok(
        sqlx::query_as::<_, GatewayCredential>(sqlx::AssertSqlSafe(format!(
            "UPDATE gateway_credentials c SET revoked_at = coalesce(c.revoked_at, now())
          WHERE c.id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?,
    )
}
