//! Users, their memberships (roles) and their admin API tokens.
//!
//! Admin tokens are `tga_<43 base64url chars>` (256 random bits); only their SHA-256 is
//! stored — a fast hash is right for a secret with that much entropy. Every token
//! expires (default 90 days) and can be revoked; either ends it on the next request.

use rand::RngExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

pub const TOKEN_PREFIX: &str = "tga_";

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_platform_admin: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Membership {
    pub id: Uuid,
    pub user_id: Uuid,
    pub org_id: Uuid,
    /// Set for a role within one team; absent for an org-wide role.
    pub team_id: Option<Uuid>,
    /// `org_admin`, `team_admin`, `member` or `viewer`.
    pub role: String,
}

pub async fn platform_admin_exists(pool: &Pool) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM users WHERE is_platform_admin)",
        )
        .fetch_one(pool)
        .await?,
    )
}

/// The user with `email`, created if missing.
pub async fn upsert(
    tx: &mut Tx<'_>,
    email: &str,
    platform_admin: bool,
) -> Result<User, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "INSERT INTO users (id, email, is_platform_admin) VALUES ($1, lower($2), $3)
         ON CONFLICT (email) DO UPDATE SET is_platform_admin = users.is_platform_admin OR EXCLUDED.is_platform_admin
         RETURNING id, email, name, is_platform_admin",
    )
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(platform_admin)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn find_by_email(pool: &Pool, email: &str) -> Result<User, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT id, email, name, is_platform_admin FROM users WHERE email = lower($1)",
    )
    .bind(email)
    .fetch_one(pool)
    .await?)
}

/// How long a token lives unless its minter says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: time::Duration = time::Duration::days(90);

/// An admin API token as listed: never its secret or hash.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Token {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The owner's email.
    pub email: String,
    /// The first characters, enough to recognise the token, never to use it.
    pub prefix: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Minted read-only: its owner's roles, each reduced to viewing.
    pub read_only: bool,
}

const TOKEN_COLUMNS: &str = "t.id, t.user_id, u.email, t.prefix, t.name, t.expires_at, t.revoked_at, \
                             t.last_used_at, t.created_at, t.read_only";

/// A new token for `user_id`, valid until `expires_at`; the returned text is the only
/// copy of the secret.
pub async fn create_token(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    name: &str,
    expires_at: OffsetDateTime,
    read_only: bool,
) -> Result<(Token, String), StoreError> {
    let secret: [u8; 32] = rand::rng().random();
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let sql = format!(
        "WITH t AS (INSERT INTO admin_tokens (id, user_id, token_sha256, prefix, name, expires_at, read_only)
                    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
         SELECT {TOKEN_COLUMNS} FROM t JOIN users u ON u.id = t.user_id"
    );
    let row = sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .bind(&token[..TOKEN_PREFIX.len() + 6])
        .bind(name)
        .bind(expires_at)
        .bind(read_only)
        .fetch_one(&mut **tx)
        .await?;
    Ok((row, token))
}

/// Tokens of `user_id`, or of everyone (`None`), newest first.
pub async fn list_tokens(pool: &Pool, user_id: Option<Uuid>) -> Result<Vec<Token>, StoreError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM admin_tokens t JOIN users u ON u.id = t.user_id
         WHERE $1::uuid IS NULL OR t.user_id = $1 ORDER BY t.id DESC"
    );
    Ok(sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .fetch_all(pool)
        .await?)
}

pub async fn get_token(tx: &mut Tx<'_>, id: Uuid) -> Result<Token, StoreError> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM admin_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.id = $1 FOR UPDATE OF t"
    );
    Ok(sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Revokes token `id` (a no-op on one revoked already); it is refused from the next
/// request on.
pub async fn revoke_token(tx: &mut Tx<'_>, id: Uuid) -> Result<Token, StoreError> {
    let sql = format!(
        "WITH t AS (UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, now())
                    WHERE id = $1 RETURNING *)
         SELECT {TOKEN_COLUMNS} FROM t JOIN users u ON u.id = t.user_id"
    );
    Ok(sqlx::query_as::<_, Token>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// What a live token stands for: its owner, and whether it was minted read-only.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user: User,
    pub read_only: bool,
}

/// The owner of a live (not revoked, not expired) token, unless the owner is deactivated.
/// `idp_max_age_s`: how long platform admin granted by the IdP lasts without a sign-in.
pub async fn user_for_token(
    pool: &Pool,
    token: &str,
    idp_max_age_s: i64,
) -> Result<TokenOwner, StoreError> {
    let (id, email, name, is_platform_admin, read_only) =
        sqlx::query_as::<_, (Uuid, String, String, bool, bool)>(
            "UPDATE admin_tokens t SET last_used_at = now()
             FROM users u
             WHERE t.token_sha256 = $1 AND t.user_id = u.id AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.deactivated_at IS NULL
             RETURNING u.id, u.email, u.name,
                       u.is_platform_admin OR coalesce(u.idp_platform_admin_at > now() - make_interval(secs => $2), false),
                       t.read_only",
        )
        .bind(Sha256::digest(token.as_bytes()).to_vec())
        .bind(idp_max_age_s as f64)
        .fetch_one(pool)
        .await?;
    Ok(TokenOwner {
        user: User {
            id,
            email,
            name,
            is_platform_admin,
        },
        read_only,
    })
}

/// The user `id` as a session sees it (platform admin from the IdP only while renewed);
/// `NotFound` once deactivated.
pub async fn active_user(pool: &Pool, id: Uuid, idp_max_age_s: i64) -> Result<User, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT id, email, name,
                is_platform_admin OR coalesce(idp_platform_admin_at > now() - make_interval(secs => $2), false)
                  AS is_platform_admin
         FROM users WHERE id = $1 AND deactivated_at IS NULL",
    )
    .bind(id)
    .bind(idp_max_age_s as f64)
    .fetch_one(pool)
    .await?)
}

/// The roles `user_id` holds now: every one granted by hand, and those the IdP granted
/// that a sign-in renewed within `idp_max_age_s` (offboarding: the rest lapse).
pub async fn memberships(
    pool: &Pool,
    user_id: Uuid,
    idp_max_age_s: i64,
) -> Result<Vec<Membership>, StoreError> {
    Ok(sqlx::query_as::<_, Membership>(
        "SELECT id, user_id, org_id, team_id, role FROM memberships
         WHERE user_id = $1
           AND (source = 'manual' OR renewed_at > now() - make_interval(secs => $2))",
    )
    .bind(user_id)
    .bind(idp_max_age_s as f64)
    .fetch_all(pool)
    .await?)
}

pub async fn add_membership(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    org_id: Uuid,
    team_id: Option<Uuid>,
    role: &str,
) -> Result<Membership, StoreError> {
    Ok(sqlx::query_as::<_, Membership>(
        "INSERT INTO memberships (id, user_id, org_id, team_id, role) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, user_id, org_id, team_id, role",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(org_id)
    .bind(team_id)
    .bind(role)
    .fetch_one(&mut **tx)
    .await?)
}

/// Removes membership `id` of `org_id`; the roles it gave end with the next request.
pub async fn remove_membership(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
) -> Result<Membership, StoreError> {
    Ok(sqlx::query_as::<_, Membership>(
        "DELETE FROM memberships WHERE org_id = $1 AND id = $2
         RETURNING id, user_id, org_id, team_id, role",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list_members(pool: &Pool, org_id: Uuid) -> Result<Vec<Membership>, StoreError> {
    Ok(sqlx::query_as::<_, Membership>(
        "SELECT id, user_id, org_id, team_id, role FROM memberships WHERE org_id = $1 ORDER BY id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?)
}
