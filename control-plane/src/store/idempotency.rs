//! Answers to creates made with an `Idempotency-Key`, so a retried request returns the
//! first answer instead of creating twice. Saved in the create's own transaction.

use serde_json::Value;
use uuid::Uuid;

use super::{StoreError, Tx};

pub struct Saved {
    pub request_hash: Vec<u8>,
    pub status: u16,
    pub response: Value,
}

/// The answer saved for `key` by `user_id` in `scope` (route and org).
pub async fn find(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    scope: &str,
    key: &str,
) -> Result<Option<Saved>, StoreError> {
    let row: Option<(Vec<u8>, i32, Value)> =
        sqlx::query_as("SELECT request_hash, status, response FROM idempotency_keys WHERE user_id = $1 AND scope = $2 AND key = $3")
            .bind(user_id)
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|(request_hash, status, response)| Saved {
        request_hash,
        status: u16::try_from(status).unwrap_or(500),
        response,
    }))
}

pub async fn save(
    tx: &mut Tx<'_>,
    user_id: Uuid,
    scope: &str,
    key: &str,
    saved: &Saved,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO idempotency_keys (user_id, scope, key, request_hash, status, response) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(user_id)
        .bind(scope)
        .bind(key)
        .bind(&saved.request_hash)
        .bind(i32::from(saved.status))
        .bind(&saved.response)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
