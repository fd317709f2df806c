//! `/api/v1/providers`: provider accounts, platform admins only. Tollgate never holds a
//! provider's secret: a provider names where gateways find it (`credential_ref`,
//! `env:NAME` or `file:PATH`), and anything else is refused (422); `base_url` is an origin
//! and path only (no query, fragment or userinfo). A provider's kind never changes (its
//! deployments were validated for it); one in use by deployments cannot be deleted (409).
//!
//! [`create`] is shared with `tollgate-control providers create`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::idempotent::Idempotency;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, page_limit};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit::{self, Actor};
use crate::store::providers::{self, Provider};
use crate::store::{Page, Tx};

/// The one list of kinds (`tollgate_proto`), which gateways and snapshots share.
pub const KINDS: &[&str] = &tollgate_proto::config::ProviderKind::NAMES;

/// OpenAI-compatible servers whose quirks the gateways know (`data-plane`'s
/// `providers::preset`; a gateway refuses a snapshot naming one it does not know).
pub const PRESETS: &[&str] = &[
    "vllm", "ollama", "groq", "mistral", "deepseek", "xai", "together",
];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_provider, list_providers))
        .routes(routes!(get_provider, update_provider, delete_provider))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    /// `openai`, `azure`, `anthropic`, `openai_compatible`, `gemini`, `vertex` or
    /// `bedrock`.
    #[schema(pattern = "^(openai|azure|anthropic|openai_compatible|gemini|vertex|bedrock)$")]
    pub kind: String,
    /// `openai_compatible` only: whose quirks the gateways apply (`vllm`, `ollama`,
    /// `groq`, `mistral`, `deepseek`, `xai`, `together`). Fixed at creation, like `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(vllm|ollama|groq|mistral|deepseek|xai|together)$")]
    pub preset: Option<String>,
    /// Unique.
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: String,
    /// The provider's API root, e.g. `https://api.openai.com/v1`: origin and path only
    /// (no query, no fragment, no `user:password@`).
    #[schema(pattern = "^https?://[^/?#@]+(/[^?#]*)?$", max_length = 2048)]
    pub base_url: String,
    /// `env:NAME` (the environment variable that holds the secret on every gateway) or
    /// `file:PATH` (a file under the gateways' `credentials.file_dir`). Each gateway only
    /// reads what its `[credentials]` settings allow. The secret itself is refused.
    /// Absent for a provider that needs no credential.
    #[schema(
        pattern = "^(env:[A-Z_][A-Z0-9_]*|file:[^\\x00-\\x1f]+)$",
        max_length = 1029
    )]
    pub credential_ref: Option<String>,
}

/// Absent fields keep their value; `credential_ref: null` removes the credential.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderUpdate {
    #[schema(pattern = "\\S", min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(pattern = "^https?://[^/?#@]+(/[^?#]*)?$", max_length = 2048)]
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^(env:[A-Z_][A-Z0-9_]*|file:[^\\x00-\\x1f]+)$", max_length = 1029)]
    pub credential_ref: Option<Option<String>>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProviderQuery {
    /// Only providers of this kind.
    pub kind: Option<String>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

fn json(provider: &Provider) -> serde_json::Value {
    serde_json::to_value(provider).unwrap_or_default()
}

/// Validates, creates and audits a provider.
pub async fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    new: &NewProvider,
) -> Result<Provider, ApiError> {
    let mut checks = Checks::default()
        .one_of("kind", &new.kind, KINDS)
        .name("name", &new.name)
        .base_url("base_url", &new.base_url);
    if let Some(credential_ref) = &new.credential_ref {
        checks = checks.credential_ref("credential_ref", credential_ref);
    }
    if let Some(preset) = &new.preset {
        checks = checks.one_of("preset", preset, PRESETS).check(
            new.kind == "openai_compatible",
            "preset",
            "only openai_compatible providers take a preset",
        );
    }
    checks.done()?;
    let provider = providers::create(
        tx,
        &new.kind,
        new.name.trim(),
        &new.base_url,
        new.credential_ref.as_deref(),
        new.preset.as_deref(),
    )
    .await?;
    audit::record(
        tx,
        actor,
        None,
        "create",
        "provider",
        &provider.id.to_string(),
        None,
        Some(json(&provider)),
    )
    .await?;
    Ok(provider)
}

/// Add a provider account (platform admins).
#[utoipa::path(post, path = "/providers", tag = "providers", request_body = NewProvider,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Provider), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_provider(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Body<NewProvider>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "providers", None, &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let provider = create(&mut tx, &principal.actor(), &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&provider))
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// Provider accounts (platform admins).
#[utoipa::path(get, path = "/providers", tag = "providers", params(ProviderQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Provider>), (status = 401), (status = 403), (status = 422)))]
async fn list_providers(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ProviderQuery>,
) -> Result<Json<Page<Provider>>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let limit = page_limit(q.limit)?;
    if let Some(kind) = &q.kind {
        Checks::default().one_of("kind", kind, KINDS).done()?;
    }
    Ok(Json(
        providers::list(&state.pool, q.kind.as_deref(), q.cursor, limit).await?,
    ))
}

#[utoipa::path(get, path = "/providers/{provider_id}", tag = "providers", params(("provider_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Provider), (status = 401), (status = 403), (status = 404)))]
async fn get_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(provider_id): Path<Uuid>,
) -> Result<Json<Provider>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    Ok(Json(providers::get(&state.pool, provider_id).await?))
}

/// Rename a provider, move its base URL or change its credential reference (platform admins).
#[utoipa::path(patch, path = "/providers/{provider_id}", tag = "providers", params(("provider_id" = Uuid, Path)), request_body = ProviderUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Provider), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn update_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(provider_id): Path<Uuid>,
    body: Result<Body<ProviderUpdate>, ApiError>,
) -> Result<Json<Provider>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(update) = body?;
    let mut checks = Checks::default();
    if let Some(name) = &update.name {
        checks = checks.name("name", name);
    }
    if let Some(base_url) = &update.base_url {
        checks = checks.base_url("base_url", base_url);
    }
    if let Some(Some(credential_ref)) = &update.credential_ref {
        checks = checks.credential_ref("credential_ref", credential_ref);
    }
    checks.done()?;
    let mut tx = state.pool.begin().await?;
    let before = providers::get_for_update(&mut tx, provider_id).await?;
    let credential_ref = match &update.credential_ref {
        Some(new) => new.as_deref(),
        None => before.credential_ref.as_deref(),
    };
    let after = providers::update(
        &mut tx,
        provider_id,
        update.name.as_deref().map_or(&before.name, str::trim),
        update.base_url.as_deref().unwrap_or(&before.base_url),
        credential_ref,
    )
    .await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "provider",
        &provider_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Remove a provider no deployment uses (platform admins); 409 while any does.
#[utoipa::path(delete, path = "/providers/{provider_id}", tag = "providers", params(("provider_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn delete_provider(
    State(state): State<AppState>,
    principal: Principal,
    Path(provider_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let before = providers::delete(&mut tx, provider_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "delete",
        "provider",
        &provider_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
