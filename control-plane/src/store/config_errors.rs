//! What the snapshot builder could not publish, per region and org: the fleet view's
//! `config_errors`. Written by the publisher with every build of a region, inside its
//! build transaction; an org whose data is fixed drops out at the next build.

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError};

/// One org (or the whole region) whose config was set aside.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ConfigError {
    pub region_id: String,
    /// The org at fault; absent when the region's platform part (models, deployments)
    /// is, and the whole region's snapshot was held back.
    pub org_id: Option<Uuid>,
    /// `previous` (the org serves its last published config, with revocations applied),
    /// `omitted` (the org's keys are unknown to the region's gateways) or `held` (the
    /// region's gateways keep the previous version).
    pub action: String,
    /// The validation problems, one per line.
    pub message: String,
    /// Since when this has been failing.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// `(org_id, action, message)`: what one build set aside.
pub type Reported<'a> = (Option<Uuid>, &'a str, &'a str);

/// Makes `errors` the region's whole list, keeping `since` of those still failing.
pub async fn replace(
    conn: &mut PgConnection,
    region: &str,
    errors: &[Reported<'_>],
) -> Result<(), sqlx::Error> {
    // NULL (the region itself) cannot sit in `= ANY`; the nil UUID stands in for it.
    let keep: Vec<Uuid> = errors
        .iter()
        .map(|(org, _, _)| org.unwrap_or(Uuid::nil()))
        .collect();
    sqlx::query(
        "DELETE FROM config_errors
          WHERE region_id = $1 AND NOT (coalesce(org_id, '00000000-0000-0000-0000-000000000000') = ANY($2))",
    )
    .bind(region)
    .bind(&keep)
    .execute(&mut *conn)
    .await?;
    for (org, action, message) in errors {
        sqlx::query(
            "INSERT INTO config_errors (region_id, org_id, action, message) VALUES ($1, $2, $3, $4)
             ON CONFLICT ON CONSTRAINT config_errors_one
             DO UPDATE SET action = $3, message = $4, updated_at = now()",
        )
        .bind(region)
        .bind(org)
        .bind(action)
        .bind(message)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Every region's, or `region`'s, current errors.
pub async fn list(pool: &Pool, region: Option<&str>) -> Result<Vec<ConfigError>, StoreError> {
    Ok(sqlx::query_as::<_, ConfigError>(
        "SELECT region_id, org_id, action, message, since, updated_at FROM config_errors
          WHERE ($1::text IS NULL OR region_id = $1)
          ORDER BY region_id, org_id NULLS FIRST",
    )
    .bind(region)
    .fetch_all(pool)
    .await?)
}
