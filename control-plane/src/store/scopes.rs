//! What a budget's or rate limit's scope (`team`, `project` or `key` plus an id) names
//! within an org. An id from another org, or of another kind, is not found.

use uuid::Uuid;

use super::{Pool, StoreError};

/// The team a team, project or key scope belongs to (a team's is itself).
pub async fn owning_team(
    pool: &Pool,
    org_id: Uuid,
    scope_kind: &str,
    scope_id: Uuid,
) -> Result<Uuid, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM teams WHERE $3 = 'team' AND org_id = $1 AND id = $2
         UNION ALL SELECT team_id FROM projects WHERE $3 = 'project' AND org_id = $1 AND id = $2
         UNION ALL SELECT team_id FROM api_keys WHERE $3 = 'key' AND org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(scope_id)
    .bind(scope_kind)
    .fetch_one(pool)
    .await?)
}
