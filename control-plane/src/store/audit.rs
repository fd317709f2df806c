//! The audit log: one row per admin write, in the same transaction as the write, so a
//! change without its entry cannot exist. Append-only (a trigger refuses UPDATE/DELETE).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

/// Who did it, from where, under which request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<Uuid>,
    /// Email, or `cli` for operator commands.
    pub name: String,
    pub request_id: String,
    pub source_ip: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor_user_id: Option<Uuid>,
    pub actor: String,
    pub org_id: Option<Uuid>,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: String,
    pub source_ip: String,
}

/// Fields never written to the log, whatever object they appear in.
const SECRET_FIELDS: &[&str] = &[
    "secret",
    "secret_hmac",
    "token",
    "token_sha256",
    "key",
    "credential_ciphertext",
    "client_secret",
    "client_secret_ciphertext",
    "secret_sha256",
    "id_token",
];

/// A copy of `value` with secret fields replaced by `"[redacted]"`.
pub fn redact(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        for (name, field) in fields.iter_mut() {
            if SECRET_FIELDS.contains(&name.as_str()) {
                *field = Value::String("[redacted]".into());
            } else {
                *field = redact(field.take());
            }
        }
    }
    value
}

#[allow(clippy::too_many_arguments)]
pub async fn record(
    tx: &mut Tx<'_>,
    actor: &Actor,
    org_id: Option<Uuid>,
    action: &str,
    object_type: &str,
    object_id: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (actor_user_id, actor, org_id, action, object_type, object_id, before, after, request_id, source_ip)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(org_id)
    .bind(action)
    .bind(object_type)
    .bind(object_id)
    .bind(before.map(redact))
    .bind(after.map(redact))
    .bind(&actor.request_id)
    .bind(&actor.source_ip)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Newest first. `orgs = None` means every org (platform admins); otherwise only entries
/// of the listed orgs.
pub async fn list(
    pool: &Pool,
    orgs: Option<&[Uuid]>,
    action: Option<&str>,
    object_type: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    Ok(sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor_user_id, actor, org_id, action, object_type, object_id, before, after, request_id, source_ip
         FROM audit_log
         WHERE ($1::uuid[] IS NULL OR org_id = ANY($1))
           AND ($2::text IS NULL OR action = $2)
           AND ($3::text IS NULL OR object_type = $3)
           AND ($4::bigint IS NULL OR id < $4)
         ORDER BY id DESC LIMIT $5",
    )
    .bind(orgs)
    .bind(action)
    .bind(object_type)
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::redact;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = redact(json!({"name": "k", "secret_hmac": "ab", "inner": {"token": "t", "ok": 1}}));
        assert_eq!(
            v,
            json!({"name": "k", "secret_hmac": "[redacted]", "inner": {"token": "[redacted]", "ok": 1}})
        );
    }
}
