//! Sign-in state: people's identities at their IdPs (issuer + subject), sign-ins under way
//! (login flows), browser sessions, and the memberships an IdP grants.
//!
//! Only SHA-256 hashes of session ids and login `state`s are stored (256 random bits
//! each, so a fast hash is right). A session ends when it is ended, when it has been idle
//! longer than the idle timeout, or at its absolute expiry — whichever comes first.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::users::User;
use super::{Pool, StoreError, Tx};

fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// The user an IdP identity belongs to (its `sub` at `issuer`).
pub async fn user_for_identity(
    tx: &mut Tx<'_>,
    issuer: &str,
    subject: &str,
) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT u.id, u.email, u.name, u.is_platform_admin FROM user_identities i
         JOIN users u ON u.id = i.user_id WHERE i.issuer = $1 AND i.subject = $2",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Whether `user_id` is known to an IdP other than `issuer` (then no other IdP may claim
/// it by email).
pub async fn has_other_identity(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    issuer: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM user_identities WHERE user_id = $1 AND issuer <> $2)",
    )
    .bind(user_id)
    .bind(issuer)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn find_user_by_email(tx: &mut Tx<'_>, email: &str) -> Result<Option<User>, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "SELECT id, email, name, is_platform_admin FROM users WHERE email = lower($1)",
    )
    .bind(email)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn create_user(tx: &mut Tx<'_>, email: &str, name: &str) -> Result<User, StoreError> {
    Ok(sqlx::query_as::<_, User>(
        "INSERT INTO users (id, email, name) VALUES ($1, lower($2), $3)
         RETURNING id, email, name, is_platform_admin",
    )
    .bind(Uuid::now_v7())
    .bind(email)
    .bind(name)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn link_identity(
    tx: &mut Tx<'_>,
    issuer: &str,
    subject: &str,
    user_id: Uuid,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO user_identities (issuer, subject, user_id) VALUES ($1, $2, $3)")
        .bind(issuer)
        .bind(subject)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Whether the user is deactivated (a deactivated person cannot sign in).
pub async fn is_deactivated(tx: &mut Tx<'_>, user_id: Uuid) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, bool>("SELECT deactivated_at IS NOT NULL FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Records (or clears) platform admin granted by the platform IdP at this sign-in.
pub async fn set_idp_platform_admin(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    granted: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET idp_platform_admin_at = CASE WHEN $2 THEN now() ELSE NULL END WHERE id = $1",
    )
    .bind(user_id)
    .bind(granted)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A role an IdP grants at one sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub org_id: Uuid,
    pub team_id: Option<Uuid>,
    pub role: String,
}

/// What a sign-in changed in the person's IdP-granted memberships.
#[derive(Debug, Default, Serialize)]
pub struct Synced {
    pub added: Vec<Grant>,
    pub removed: Vec<Grant>,
}

/// Makes the IdP-granted memberships of `user_id` in `orgs` exactly `grants` (renewing
/// those that stay); memberships granted by hand are never touched, and a grant where a
/// hand-made membership exists already leaves that one as it is.
pub async fn sync_idp_memberships(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    orgs: &[Uuid],
    grants: &[Grant],
) -> Result<Synced, StoreError> {
    let existing = sqlx::query_as::<_, (Uuid, Uuid, Option<Uuid>, String)>(
        "SELECT id, org_id, team_id, role FROM memberships
         WHERE user_id = $1 AND source = 'idp' AND org_id = ANY($2) FOR UPDATE",
    )
    .bind(user_id)
    .bind(orgs)
    .fetch_all(&mut **tx)
    .await?;
    let mut synced = Synced::default();
    for (id, org_id, team_id, role) in existing {
        let grant = Grant {
            org_id,
            team_id,
            role,
        };
        if grants.contains(&grant) {
            sqlx::query("UPDATE memberships SET renewed_at = now() WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        } else {
            sqlx::query("DELETE FROM memberships WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            synced.removed.push(grant);
        }
    }
    for grant in grants {
        // One role per person and scope (memberships_one_role): the first mapping wins,
        // and a hand-made membership on the same scope stays as it is.
        let inserted = sqlx::query(
            "INSERT INTO memberships (id, user_id, org_id, team_id, role, source)
             VALUES ($1, $2, $3, $4, $5, 'idp') ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(grant.org_id)
        .bind(grant.team_id)
        .bind(&grant.role)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 1 {
            synced.added.push(grant.clone());
        }
    }
    Ok(synced)
}

/// How long a sign-in may take between leaving for the IdP and coming back.
pub const LOGIN_FLOW_LIFETIME_S: i64 = 600;

/// A sign-in under way, as stored until its callback.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LoginFlow {
    pub issuer: String,
    pub pkce_verifier: String,
    pub nonce: String,
}

pub async fn create_login_flow(
    pool: &Pool,
    state: &str,
    flow: &LoginFlow,
) -> Result<(), StoreError> {
    // Old, abandoned flows go with each new one, so the table stays small.
    sqlx::query("DELETE FROM login_flows WHERE created_at < now() - make_interval(secs => $1)")
        .bind(LOGIN_FLOW_LIFETIME_S as f64)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO login_flows (state_sha256, issuer, pkce_verifier, nonce) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256(state))
    .bind(&flow.issuer)
    .bind(&flow.pkce_verifier)
    .bind(&flow.nonce)
    .execute(pool)
    .await?;
    Ok(())
}

/// The flow of `state`, removed: a state is good for one callback only.
pub async fn take_login_flow(pool: &Pool, state: &str) -> Result<LoginFlow, StoreError> {
    Ok(sqlx::query_as::<_, LoginFlow>(
        "DELETE FROM login_flows WHERE state_sha256 = $1
           AND created_at > now() - make_interval(secs => $2)
         RETURNING issuer, pkce_verifier, nonce",
    )
    .bind(sha256(state))
    .bind(LOGIN_FLOW_LIFETIME_S as f64)
    .fetch_one(pool)
    .await?)
}

/// A session as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The IdP the session was signed in with.
    pub issuer: String,
    pub source_ip: String,
    pub user_agent: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The absolute end; it ends earlier when idle for longer than the idle timeout.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

const SESSION_COLUMNS: &str =
    "id, user_id, issuer, source_ip, user_agent, created_at, last_seen_at, expires_at, ended_at";

/// A new session whose secret is `secret` (the cookie value; only its hash is kept).
pub async fn create_session(
    tx: &mut Tx<'_>,
    secret: &str,
    user_id: Uuid,
    issuer: &str,
    source_ip: &str,
    user_agent: &str,
    absolute_s: i64,
) -> Result<Session, StoreError> {
    let sql = format!(
        "INSERT INTO sessions (id, secret_sha256, user_id, issuer, source_ip, user_agent, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         RETURNING {SESSION_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Session>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(sha256(secret))
        .bind(user_id)
        .bind(issuer)
        .bind(source_ip)
        .bind(user_agent.chars().take(300).collect::<String>())
        .bind(absolute_s as f64)
        .fetch_one(&mut **tx)
        .await?)
}

/// The live session of cookie value `secret`, touched (its idle clock restarts).
/// `NotFound` when ended, idle for more than `idle_s`, past its expiry, or unknown.
pub async fn touch_session(pool: &Pool, secret: &str, idle_s: i64) -> Result<Session, StoreError> {
    let sql = format!(
        "UPDATE sessions SET last_seen_at = now()
         WHERE secret_sha256 = $1 AND ended_at IS NULL AND expires_at > now()
           AND last_seen_at > now() - make_interval(secs => $2)
         RETURNING {SESSION_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Session>(sqlx::AssertSqlSafe(sql))
        .bind(sha256(secret))
        .bind(idle_s as f64)
        .fetch_one(pool)
        .await?)
}

/// Live sessions of `user_id`, or of every member of `org_id`, newest first.
pub async fn list_sessions(
    pool: &Pool,
    user_id: Option<Uuid>,
    org_id: Option<Uuid>,
) -> Result<Vec<Session>, StoreError> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s
         WHERE ended_at IS NULL AND expires_at > now()
           AND ($1::uuid IS NULL OR user_id = $1)
           AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM memberships m
                                            WHERE m.user_id = s.user_id AND m.org_id = $2))
         ORDER BY id DESC"
    );
    Ok(sqlx::query_as::<_, Session>(sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind(org_id)
        .fetch_all(pool)
        .await?)
}

pub async fn get_session(tx: &mut Tx<'_>, id: Uuid) -> Result<Session, StoreError> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Session>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Ends session `id` (a no-op on one ended already).
pub async fn end_session(tx: &mut Tx<'_>, id: Uuid) -> Result<Session, StoreError> {
    let sql = format!(
        "UPDATE sessions SET ended_at = coalesce(ended_at, now()) WHERE id = $1 RETURNING {SESSION_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Session>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}

/// Deactivates `user_id` at once: sessions ended, tokens revoked, and its keys revoked or
/// handed to their team (owner cleared). Returns how many of each.
pub async fn deactivate_user(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    revoke_keys: bool,
) -> Result<Deactivated, StoreError> {
    let user = sqlx::query(
        "UPDATE users SET deactivated_at = coalesce(deactivated_at, now()) WHERE id = $1",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    if user.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    let sessions =
        sqlx::query("UPDATE sessions SET ended_at = now() WHERE user_id = $1 AND ended_at IS NULL")
            .bind(user_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    let tokens = sqlx::query(
        "UPDATE admin_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let keys = if revoke_keys {
        sqlx::query(
            "UPDATE api_keys SET status = 'revoked' WHERE owner_user_id = $1 AND status = 'active'",
        )
    } else {
        sqlx::query("UPDATE api_keys SET owner_user_id = NULL WHERE owner_user_id = $1")
    }
    .bind(user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(Deactivated {
        user_id,
        sessions_ended: sessions,
        tokens_revoked: tokens,
        keys_revoked: if revoke_keys { keys } else { 0 },
        keys_handed_to_team: if revoke_keys { 0 } else { keys },
    })
}

/// What deactivating a person did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deactivated {
    pub user_id: Uuid,
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
    pub keys_revoked: u64,
    pub keys_handed_to_team: u64,
}
