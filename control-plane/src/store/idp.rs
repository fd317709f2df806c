//! Orgs' own identity providers, the email domains each org owns (home-realm discovery)
//! and the group → role mappings of every connection. A connection's client secret is
//! stored only sealed (`auth::sealing`); this module never sees it in the clear.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

/// An org's IdP connection as listed: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Connection {
    pub id: Uuid,
    pub org_id: Uuid,
    /// The IdP's issuer URL (its discovery document is `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// The ID token claim group mappings of this connection match by default.
    pub groups_claim: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A connection with its sealed secret, for signing in only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedConnection {
    pub org_id: Uuid,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_ciphertext: Vec<u8>,
    pub groups_claim: String,
}

const CONNECTION_COLUMNS: &str = "id, org_id, issuer, client_id, groups_claim, created_at";

/// Sets the org's connection (replacing one it had).
pub async fn put_connection(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    issuer: &str,
    client_id: &str,
    sealed_secret: &[u8],
    groups_claim: &str,
) -> Result<Connection, StoreError> {
    let sql = format!(
        "INSERT INTO idp_connections (id, org_id, issuer, client_id, client_secret_ciphertext, groups_claim)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (org_id) DO UPDATE SET issuer = EXCLUDED.issuer, client_id = EXCLUDED.client_id,
           client_secret_ciphertext = EXCLUDED.client_secret_ciphertext, groups_claim = EXCLUDED.groups_claim
         RETURNING {CONNECTION_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Connection>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(org_id)
        .bind(issuer.trim_end_matches('/'))
        .bind(client_id)
        .bind(sealed_secret)
        .bind(groups_claim)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn get_connection(pool: &Pool, org_id: Uuid) -> Result<Connection, StoreError> {
    let sql = format!("SELECT {CONNECTION_COLUMNS} FROM idp_connections WHERE org_id = $1");
    Ok(sqlx::query_as::<_, Connection>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .fetch_one(pool)
        .await?)
}

pub async fn delete_connection(tx: &mut Tx<'_>, org_id: Uuid) -> Result<Connection, StoreError> {
    let sql =
        format!("DELETE FROM idp_connections WHERE org_id = $1 RETURNING {CONNECTION_COLUMNS}");
    Ok(sqlx::query_as::<_, Connection>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .fetch_one(&mut **tx)
        .await?)
}

const SEALED_COLUMNS: &str = "org_id, issuer, client_id, client_secret_ciphertext, groups_claim";

pub async fn sealed_connection_of_org(
    pool: &Pool,
    org_id: Uuid,
) -> Result<Option<SealedConnection>, StoreError> {
    let sql = format!("SELECT {SEALED_COLUMNS} FROM idp_connections WHERE org_id = $1");
    Ok(
        sqlx::query_as::<_, SealedConnection>(sqlx::AssertSqlSafe(sql))
            .bind(org_id)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn sealed_connection_by_issuer(
    pool: &Pool,
    issuer: &str,
) -> Result<Option<SealedConnection>, StoreError> {
    let sql = format!("SELECT {SEALED_COLUMNS} FROM idp_connections WHERE issuer = $1");
    Ok(
        sqlx::query_as::<_, SealedConnection>(sqlx::AssertSqlSafe(sql))
            .bind(issuer)
            .fetch_optional(pool)
            .await?,
    )
}

/// The org that owns email domain `domain`, if any.
pub async fn org_of_domain(pool: &Pool, domain: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Uuid>("SELECT org_id FROM org_domains WHERE domain = lower($1)")
            .bind(domain)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn org_by_slug(pool: &Pool, slug: &str) -> Result<Option<Uuid>, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM orgs WHERE slug = $1")
            .bind(slug)
            .fetch_optional(pool)
            .await?,
    )
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Domain {
    pub domain: String,
    pub org_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

pub async fn add_domain(tx: &mut Tx<'_>, org_id: Uuid, domain: &str) -> Result<Domain, StoreError> {
    Ok(sqlx::query_as::<_, Domain>(
        "INSERT INTO org_domains (domain, org_id) VALUES (lower($1), $2) RETURNING domain, org_id, created_at",
    )
    .bind(domain)
    .bind(org_id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list_domains(pool: &Pool, org_id: Uuid) -> Result<Vec<Domain>, StoreError> {
    Ok(sqlx::query_as::<_, Domain>(
        "SELECT domain, org_id, created_at FROM org_domains WHERE org_id = $1 ORDER BY domain",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?)
}

pub async fn remove_domain(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    domain: &str,
) -> Result<Domain, StoreError> {
    Ok(sqlx::query_as::<_, Domain>(
        "DELETE FROM org_domains WHERE org_id = $1 AND domain = lower($2) RETURNING domain, org_id, created_at",
    )
    .bind(org_id)
    .bind(domain)
    .fetch_one(&mut **tx)
    .await?)
}

/// A claim value of one connection that gives a role in the org.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Mapping {
    pub id: Uuid,
    pub org_id: Uuid,
    /// The connection (IdP issuer) whose ID tokens this mapping reads.
    pub issuer: String,
    /// The claim read, e.g. `groups`.
    pub claim: String,
    /// The value that grants the role (one of the claim's values).
    pub value: String,
    /// `org_admin`, `team_admin`, `member` or `viewer`.
    pub role: String,
    /// For a role within one team of the org.
    pub team_id: Option<Uuid>,
}

const MAPPING_COLUMNS: &str = "id, org_id, issuer, claim, value, role, team_id";

pub async fn add_mapping(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    issuer: &str,
    claim: &str,
    value: &str,
    role: &str,
    team_id: Option<Uuid>,
) -> Result<Mapping, StoreError> {
    let sql = format!(
        "INSERT INTO group_mappings (id, org_id, issuer, claim, value, role, team_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {MAPPING_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Mapping>(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(org_id)
        .bind(issuer.trim_end_matches('/'))
        .bind(claim)
        .bind(value)
        .bind(role)
        .bind(team_id)
        .fetch_one(&mut **tx)
        .await?)
}

pub async fn list_mappings(pool: &Pool, org_id: Uuid) -> Result<Vec<Mapping>, StoreError> {
    let sql = format!("SELECT {MAPPING_COLUMNS} FROM group_mappings WHERE org_id = $1 ORDER BY id");
    Ok(sqlx::query_as::<_, Mapping>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .fetch_all(pool)
        .await?)
}

/// Every mapping of connection `issuer`, limited to `org_id` for an org's own connection
/// (`None` = the platform connection, whose mappings may live in any org).
pub async fn mappings_of_issuer(
    pool: &Pool,
    issuer: &str,
    org_id: Option<Uuid>,
) -> Result<Vec<Mapping>, StoreError> {
    let sql = format!(
        "SELECT {MAPPING_COLUMNS} FROM group_mappings
         WHERE issuer = $1 AND ($2::uuid IS NULL OR org_id = $2) ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Mapping>(sqlx::AssertSqlSafe(sql))
        .bind(issuer)
        .bind(org_id)
        .fetch_all(pool)
        .await?)
}

pub async fn remove_mapping(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
) -> Result<Mapping, StoreError> {
    let sql = format!(
        "DELETE FROM group_mappings WHERE org_id = $1 AND id = $2 RETURNING {MAPPING_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Mapping>(sqlx::AssertSqlSafe(sql))
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut **tx)
        .await?)
}
