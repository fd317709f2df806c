//! Projects: groups of keys within a team. Every query names the org.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Pool, StoreError, Tx};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub org_id: Uuid,
    pub team_id: Uuid,
    pub slug: String,
    pub name: String,
    /// Models (names or aliases) this project may call: `null` = not set (as its team), `[]` = none.
    pub allowed_models: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

pub async fn create(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    team_id: Uuid,
    slug: &str,
    name: &str,
    allowed_models: Option<&[String]>,
) -> Result<Project, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "INSERT INTO projects (id, org_id, team_id, slug, name, allowed_models) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, org_id, team_id, slug, name, allowed_models, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(org_id)
    .bind(team_id)
    .bind(slug)
    .bind(name)
    .bind(allowed_models)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn get(pool: &Pool, org_id: Uuid, id: Uuid) -> Result<Project, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "SELECT id, org_id, team_id, slug, name, allowed_models, created_at, updated_at
         FROM projects WHERE org_id = $1 AND id = $2",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(pool)
    .await?)
}

pub async fn get_for_update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
) -> Result<Project, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "SELECT id, org_id, team_id, slug, name, allowed_models, created_at, updated_at
         FROM projects WHERE org_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(
    pool: &Pool,
    org_id: Uuid,
    team_id: Option<Uuid>,
) -> Result<Vec<Project>, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "SELECT id, org_id, team_id, slug, name, allowed_models, created_at, updated_at
         FROM projects WHERE org_id = $1 AND ($2::uuid IS NULL OR team_id = $2) ORDER BY id",
    )
    .bind(org_id)
    .bind(team_id)
    .fetch_all(pool)
    .await?)
}

pub async fn update(
    tx: &mut Tx<'_>,
    org_id: Uuid,
    id: Uuid,
    name: &str,
    allowed_models: Option<&[String]>,
) -> Result<Project, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "UPDATE projects SET name = $3, allowed_models = $4 WHERE org_id = $1 AND id = $2
         RETURNING id, org_id, team_id, slug, name, allowed_models, created_at, updated_at",
    )
    .bind(org_id)
    .bind(id)
    .bind(name)
    .bind(allowed_models)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn delete(tx: &mut Tx<'_>, org_id: Uuid, id: Uuid) -> Result<Project, StoreError> {
    Ok(sqlx::query_as::<_, Project>(
        "DELETE FROM projects WHERE org_id = $1 AND id = $2
         RETURNING id, org_id, team_id, slug, name, allowed_models, created_at, updated_at",
    )
    .bind(org_id)
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}
