//! `/api/v1/models`: the model catalog. Anyone authenticated reads it (members need to
//! know what they can call); platform admins write it. A name or alias resolves to one
//! model only: a clash with another model's name or alias is a 409 naming the field. A
//! model's name never changes (allow-lists refer to it); deleting a model deletes its
//! deployments.
//!
//! Allow-lists elsewhere (teams, projects, keys) may only name models of this catalog
//! ([`require_known`]). [`create`] is shared with `tollgate-control models create`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use super::idempotent::Idempotency;
use super::patch::nullable;
use super::validate::{Body, Checks};
use super::{AppState, page_limit};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
pub use crate::service::models::require_known;
use crate::store::audit::{self, Actor};
use crate::store::models::{self, Model, ModelRow};
use crate::store::{Page, Tx, deployments};

pub const TOKENIZERS: &[&str] = &["o200k_base", "cl100k_base"];
/// The endpoints a model may serve (`modes`); a model serves all of them unless told.
pub const MODES: &[&str] = &["chat", "completions", "embeddings"];
/// OpenAI's own limit on `n`; the most answers one call may buy.
pub const MAX_N: i32 = 128;
/// More aliases than this is a mistake, not a catalog.
const MAX_ALIASES: usize = 64;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_model, list_models))
        .routes(routes!(get_model, update_model, delete_model))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModel {
    /// What callers send as `model`; unique across all names and aliases; never changes.
    #[schema(pattern = "^\\S+$", min_length = 1, max_length = 200)]
    pub name: String,
    /// Other names for it, each unique across all names and aliases.
    #[serde(default)]
    #[schema(max_items = 64)]
    pub aliases: Vec<String>,
    /// `max_tokens` assumed when a call does not say (tokens; default 4096).
    #[serde(default = "default_max_output_tokens")]
    #[schema(minimum = 1)]
    pub default_max_output_tokens: i32,
    /// `o200k_base` (default) or `cl100k_base`.
    #[serde(default = "default_tokenizer")]
    #[schema(pattern = "^(o200k_base|cl100k_base)$")]
    pub tokenizer: String,
    /// Shown in the gateway's `GET /v1/models`.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub owned_by: String,
    /// Prompt tokens the model accepts; a longer prompt is refused with 400
    /// `context_length_exceeded` before anything is sent. Absent = unknown (no check).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub context_window: Option<i32>,
    /// The largest `max_tokens` the model accepts (tokens); a call asking for more is
    /// refused with 400 instead of reserving its price. Absent = unknown (no check).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_output_tokens: Option<i32>,
    /// Endpoints the model serves (default: all three); a call to another is a 400.
    #[serde(default = "all_modes")]
    #[schema(value_type = Vec<Mode>, min_items = 1)]
    pub modes: Vec<String>,
    /// The largest `n` (or `best_of`) one call may ask for, 1–128 (default 128); 1 refuses
    /// every call that asks for more than one answer.
    #[serde(default = "max_n")]
    #[schema(minimum = 1, maximum = 128)]
    pub max_n: i32,
}

/// An endpoint a model serves.
#[derive(Debug, utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum Mode {
    Chat,
    Completions,
    Embeddings,
}

fn all_modes() -> Vec<String> {
    MODES.iter().map(|m| (*m).to_owned()).collect()
}

fn max_n() -> i32 {
    MAX_N
}

fn default_max_output_tokens() -> i32 {
    4096
}

fn default_tokenizer() -> String {
    TOKENIZERS[0].to_owned()
}

/// Absent fields keep their value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelUpdate {
    #[schema(max_items = 64)]
    pub aliases: Option<Vec<String>>,
    #[schema(minimum = 1)]
    pub default_max_output_tokens: Option<i32>,
    #[schema(pattern = "^(o200k_base|cl100k_base)$")]
    pub tokenizer: Option<String>,
    #[schema(max_length = 200)]
    pub owned_by: Option<String>,
    /// `null` makes it unknown again.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub context_window: Option<Option<i32>>,
    /// `null` makes it unknown again.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i32>, minimum = 1)]
    pub max_output_tokens: Option<Option<i32>>,
    #[schema(value_type = Option<Vec<Mode>>, min_items = 1)]
    pub modes: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 128)]
    pub max_n: Option<i32>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// Only the model this name or alias resolves to.
    pub name: Option<String>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// A model name or alias: 1–200 characters, no whitespace or control characters (callers
/// type them into `model`).
fn well_formed(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 200
        && !name.contains(|c: char| c.is_whitespace() || c.is_control())
}

fn check_aliases(checks: Checks, name: &str, aliases: &[String]) -> Checks {
    checks
        .check(
            aliases.iter().all(|a| well_formed(a)),
            "aliases",
            "1–200 characters each, without spaces or control characters",
        )
        .check(
            aliases.len() <= MAX_ALIASES,
            "aliases",
            &format!("at most {MAX_ALIASES}"),
        )
        .distinct("aliases", aliases)
        .check(
            !aliases.iter().any(|a| a == name),
            "aliases",
            "must not repeat the model's name",
        )
}

/// The metadata gateways check calls against: positive token limits, a default answer
/// the model can give, known modes (at least one), `n` within 1–128.
fn check_limits(checks: Checks, row: &ModelRow<'_>) -> Checks {
    checks
        .at_least(
            "default_max_output_tokens",
            Some(row.default_max_output_tokens),
            1,
        )
        .at_least("context_window", row.context_window, 1)
        .at_least("max_output_tokens", row.max_output_tokens, 1)
        .check(
            // A limit below 1 is already reported on its own field.
            row.max_output_tokens
                .is_none_or(|max| max < 1 || row.default_max_output_tokens <= max),
            "default_max_output_tokens",
            "must not exceed max_output_tokens",
        )
        .check(
            !row.modes.is_empty() && row.modes.iter().all(|m| MODES.contains(&m.as_str())),
            "modes",
            "one or more of chat, completions, embeddings",
        )
        .distinct("modes", row.modes)
        .check(
            (1..=MAX_N).contains(&row.max_n),
            "max_n",
            "between 1 and 128",
        )
}

/// 409 when `name` (if given) or any alias already names another model. Call after
/// [`models::lock_names`].
async fn check_clashes(
    tx: &mut Tx<'_>,
    name: Option<&str>,
    aliases: &[String],
    except: Option<Uuid>,
) -> Result<(), ApiError> {
    let mut wanted: Vec<String> = aliases.to_vec();
    wanted.extend(name.map(str::to_owned));
    let taken = models::taken(tx, &wanted, except).await?;
    if taken.is_empty() {
        return Ok(());
    }
    let mut errors = Vec::new();
    if name.is_some_and(|n| taken.iter().any(|t| t == n)) {
        errors.push(FieldError {
            field: "name".into(),
            message: "already the name or an alias of another model".into(),
        });
    }
    let clashing: Vec<&str> = aliases
        .iter()
        .filter(|a| taken.contains(a))
        .map(String::as_str)
        .collect();
    if !clashing.is_empty() {
        errors.push(FieldError {
            field: "aliases".into(),
            message: format!(
                "already the name or an alias of another model: {}",
                clashing.join(", ")
            ),
        });
    }
    Err(ApiError {
        errors,
        ..ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            "a name or alias is already taken",
        )
    })
}

/// Validates, creates and audits a model.
pub async fn create(tx: &mut Tx<'_>, actor: &Actor, new: &NewModel) -> Result<Model, ApiError> {
    let row = ModelRow {
        aliases: &new.aliases,
        default_max_output_tokens: new.default_max_output_tokens,
        tokenizer: &new.tokenizer,
        owned_by: &new.owned_by,
        context_window: new.context_window,
        max_output_tokens: new.max_output_tokens,
        modes: &new.modes,
        max_n: new.max_n,
    };
    let checks = Checks::default().check(
        well_formed(&new.name),
        "name",
        "1–200 characters, without spaces or control characters",
    );
    let checks = check_limits(checks, &row)
        .one_of("tokenizer", &new.tokenizer, TOKENIZERS)
        .short_text("owned_by", &new.owned_by);
    check_aliases(checks, &new.name, &new.aliases).done()?;
    models::lock_names(tx).await?;
    check_clashes(tx, Some(&new.name), &new.aliases, None).await?;
    let model = models::create(tx, &new.name, &row).await?;
    audit::record(
        tx,
        actor,
        None,
        "create",
        "model",
        &model.id.to_string(),
        None,
        Some(json(&model)),
    )
    .await?;
    Ok(model)
}

/// Add a model to the catalog (platform admins).
#[utoipa::path(post, path = "/models", tag = "models", request_body = NewModel,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the first answer")),
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = Model), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_model(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Body<NewModel>, ApiError>,
) -> Result<Response, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(new) = body?;
    let idempotency = Idempotency::from_request(&headers, "models", None, &new)?;
    let mut tx = state.pool.begin().await?;
    if let Some(replayed) = idempotency.replay(&mut tx, &principal).await? {
        return Ok(replayed);
    }
    let model = create(&mut tx, &principal.actor(), &new).await?;
    let response = idempotency
        .answer(&mut tx, &principal, StatusCode::CREATED, json(&model))
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// The catalog (anyone authenticated).
#[utoipa::path(get, path = "/models", tag = "models", params(ModelQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Page<Model>), (status = 401), (status = 422)))]
async fn list_models(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<ModelQuery>,
) -> Result<Json<Page<Model>>, ApiError> {
    require(&principal, Permission::ReadModels)?;
    let limit = page_limit(q.limit)?;
    if let Some(name) = &q.name {
        Checks::default().text("name", name).done()?;
    }
    Ok(Json(
        models::list(&state.pool, q.name.as_deref(), q.cursor, limit).await?,
    ))
}

#[utoipa::path(get, path = "/models/{model_id}", tag = "models", params(("model_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Model), (status = 401), (status = 404)))]
async fn get_model(
    State(state): State<AppState>,
    principal: Principal,
    Path(model_id): Path<Uuid>,
) -> Result<Json<Model>, ApiError> {
    require(&principal, Permission::ReadModels)?;
    Ok(Json(models::get(&state.pool, model_id).await?))
}

/// Change a model's aliases, output default, tokenizer, owner, limits or modes (platform
/// admins).
#[utoipa::path(patch, path = "/models/{model_id}", tag = "models", params(("model_id" = Uuid, Path)), request_body = ModelUpdate,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 200, body = Model), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn update_model(
    State(state): State<AppState>,
    principal: Principal,
    Path(model_id): Path<Uuid>,
    body: Result<Body<ModelUpdate>, ApiError>,
) -> Result<Json<Model>, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let Body(update) = body?;
    let mut tx = state.pool.begin().await?;
    models::lock_names(&mut tx).await?;
    let before = models::get_for_update(&mut tx, model_id).await?;
    let aliases = update.aliases.as_ref().unwrap_or(&before.aliases);
    let row = ModelRow {
        aliases,
        default_max_output_tokens: update
            .default_max_output_tokens
            .unwrap_or(before.default_max_output_tokens),
        tokenizer: update.tokenizer.as_deref().unwrap_or(&before.tokenizer),
        owned_by: update.owned_by.as_deref().unwrap_or(&before.owned_by),
        context_window: update.context_window.unwrap_or(before.context_window),
        max_output_tokens: update.max_output_tokens.unwrap_or(before.max_output_tokens),
        modes: update.modes.as_ref().unwrap_or(&before.modes),
        max_n: update.max_n.unwrap_or(before.max_n),
    };
    let checks = check_limits(Checks::default(), &row)
        .one_of("tokenizer", row.tokenizer, TOKENIZERS)
        .short_text("owned_by", row.owned_by);
    check_aliases(checks, &before.name, aliases).done()?;
    check_clashes(&mut tx, None, aliases, Some(model_id)).await?;
    let after = models::update(&mut tx, model_id, &row).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        None,
        "update",
        "model",
        &model_id.to_string(),
        Some(json(&before)),
        Some(json(&after)),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

/// Remove a model and its deployments (platform admins).
#[utoipa::path(delete, path = "/models/{model_id}", tag = "models", params(("model_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_model(
    State(state): State<AppState>,
    principal: Principal,
    Path(model_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ManagePlatform)?;
    let mut tx = state.pool.begin().await?;
    let before = models::get_for_update(&mut tx, model_id).await?;
    let actor = principal.actor();
    // The cascade would remove them silently; the log names each one.
    for deployment in deployments::of_model(&mut tx, model_id).await? {
        audit::record(
            &mut tx,
            &actor,
            None,
            "delete",
            "deployment",
            &deployment.id.to_string(),
            Some(json(&deployment)),
            None,
        )
        .await?;
    }
    models::delete(&mut tx, model_id).await?;
    audit::record(
        &mut tx,
        &actor,
        None,
        "delete",
        "model",
        &model_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
