//! The only place with SQL. One file per aggregate; every query on tenant-owned rows has
//! the org id in its WHERE clause, so a caller can never reach another org's rows by id.
//! The platform catalog (regions, providers, models, deployments) belongs to no org.
//! Constraint violations become [`StoreError::Conflict`] (unique), [`StoreError::Invalid`]
//! (check), [`StoreError::NotFound`] (a parent missing on insert) or
//! [`StoreError::InUse`] (a referenced row on delete) right here, naming the constraint.

pub mod alerts;
pub mod audit;
pub mod budgets;
pub mod config_errors;
pub mod deployments;
pub mod fleet;
pub mod freezes;
pub mod gateway_credentials;
pub mod idempotency;
pub mod idp;
pub mod keys;
pub mod models;
pub mod orgs;
pub mod projects;
pub mod providers;
pub mod rate_limits;
pub mod regions;
pub mod scopes;
pub mod sessions;
pub mod teams;
pub mod usage;
pub mod users;
pub mod webhooks;

use serde::{Deserialize, Serialize};

pub type Pool = sqlx::PgPool;
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// One round trip to the database, for readiness.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflicts with an existing row ({constraint})")]
    Conflict { constraint: String },
    #[error("violates {constraint}")]
    Invalid { constraint: String },
    /// A delete refused because other rows still reference the row.
    #[error("still referenced ({constraint})")]
    InUse { constraint: String },
    #[error("database error")]
    Db(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if matches!(e, sqlx::Error::RowNotFound) {
            return Self::NotFound;
        }
        if let Some(db) = e.as_database_error() {
            let constraint = db.constraint().unwrap_or("a constraint").to_owned();
            match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation => return Self::Conflict { constraint },
                // A child row naming a parent that is not there (or not in this org).
                sqlx::error::ErrorKind::ForeignKeyViolation => return Self::NotFound,
                sqlx::error::ErrorKind::CheckViolation
                | sqlx::error::ErrorKind::NotNullViolation => {
                    return Self::Invalid { constraint };
                }
                _ => {}
            }
        }
        Self::Db(e)
    }
}

impl StoreError {
    /// For deletes: a foreign key violation means something still points at the row (409),
    /// not that a parent is missing (which is what it means for inserts).
    pub fn on_delete(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error()
            && matches!(db.kind(), sqlx::error::ErrorKind::ForeignKeyViolation)
        {
            return Self::InUse {
                constraint: db.constraint().unwrap_or("a foreign key").to_owned(),
            };
        }
        e.into()
    }
}

/// A page of a list, ordered by id (UUIDv7, so by creation time).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<uuid::Uuid>,
}

impl<T> Page<T> {
    /// `rows` was fetched with `limit + 1` to learn whether more exist.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(&id)
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}
