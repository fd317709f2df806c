//! `/api/v1/orgs/{org_id}/webhooks`: where budget alerts are delivered. An org's webhook
//! (org admins) gets every alert of the org; a team's (its team admins) the alerts of
//! budgets on the team, its projects and keys.
//!
//! The signing secret is in the create answer only: it is derived from the server's
//! `[telemetry] webhook_key` and the webhook id, never stored, and cannot be shown again.
//! To change it, create a new webhook and delete the old one. Deliveries are signed with
//! `X-Tollgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
//!
//! A URL is a secret too (receivers put tokens in paths and queries): only the create
//! answer shows it whole; lists, reads and the audit log show `scheme://host[:port]/…`.
//! Destinations must resolve to public addresses (see `telemetry::destination`), or be
//! allow-listed in `[telemetry] webhook_allow_hosts`.

use axum::Json;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ApiError;
use super::validate::{Body, Checks};
use super::{AppState, page_limit};
use crate::auth::Principal;
use crate::auth::rbac::{Permission, require};
use crate::store::audit;
use crate::store::webhooks::{self, Delivery, Webhook};
use crate::telemetry::destination::{self, DestinationError};
use crate::telemetry::webhook;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where alerts are POSTed: an `http://` or `https://` URL whose host resolves to
    /// public addresses only (or is allow-listed). Shown whole only in the create answer.
    #[schema(max_length = 2048)]
    pub url: String,
    /// A team's webhook; absent = the org's (every alert of the org).
    pub team_id: Option<Uuid>,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub description: String,
}

/// A webhook with its signing secret — the only time the secret is shown.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_…`: the HMAC-SHA256 key of `X-Tollgate-Signature`. Store it now.
    pub secret: String,
    #[serde(flatten)]
    pub info: Webhook,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Attempts older than this id (the last id of the previous page).
    pub before_id: Option<i64>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The webhook as shown after creation: its URL redacted.
fn shown(mut webhook: Webhook) -> Webhook {
    webhook.url = destination::redacted(&webhook.url);
    webhook
}

/// The audit log's copy: redacted like every answer after creation.
fn json(webhook: &Webhook) -> serde_json::Value {
    serde_json::to_value(shown(webhook.clone())).unwrap_or_default()
}

/// Org admins manage the org's webhooks; team admins (and org admins) a team's.
fn require_admin(principal: &Principal, org: Uuid, team: Option<Uuid>) -> Result<(), ApiError> {
    match team {
        None => Ok(require(principal, Permission::AdminOrg(org))?),
        Some(team) => Ok(require(principal, Permission::AdminTeam { org, team })?),
    }
}

/// Add a webhook. The answer carries its signing secret, once.
#[utoipa::path(post, path = "/orgs/{org_id}/webhooks", tag = "webhooks", params(("org_id" = Uuid, Path)),
    request_body = NewWebhook,
    responses((status = 415, description = "Body is not JSON"), (status = 400, description = "Malformed path, query or body"),
        (status = 201, body = CreatedWebhook), (status = 401), (status = 403), (status = 404), (status = 422),
        (status = 503, description = "No webhook key is configured on this control plane")))]
async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
    body: Result<Body<NewWebhook>, ApiError>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let Body(new) = body?;
    require_admin(&principal, org_id, new.team_id)?;
    Checks::default()
        .http_url("url", &new.url)
        .short_text("description", &new.description)
        .done()?;
    match state.webhook_destinations.check(&new.url).await {
        Ok(()) => {}
        // Nothing to connect to now; every delivery resolves and checks again.
        Err(DestinationError::Unresolved { host, .. }) => {
            tracing::info!(%host, "webhook host does not resolve (yet); deliveries will check it");
        }
        Err(refused) => {
            return Err(ApiError::invalid(vec![super::error::FieldError {
                field: "url".into(),
                message: refused.to_string(),
            }]));
        }
    }
    let Some(key) = &state.webhook_key else {
        tracing::error!("telemetry.webhook_key is not set: webhooks cannot be created");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Webhooks unavailable",
            "this control plane has no webhook key configured",
        ));
    };
    let mut tx = state.pool.begin().await?;
    let created =
        webhooks::create(&mut tx, org_id, new.team_id, &new.url, &new.description).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "create",
        "webhook",
        &created.id.to_string(),
        None,
        Some(json(&created)),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            secret: webhook::secret(key, created.id),
            info: created,
        }),
    ))
}

/// The webhooks the caller administers (URLs redacted to `scheme://host/…`): all of the org's for org admins, their teams'
/// for team admins, none for others.
#[utoipa::path(get, path = "/orgs/{org_id}/webhooks", tag = "webhooks", params(("org_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Webhook>),
        (status = 401), (status = 404)))]
async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    Path(org_id): Path<Uuid>,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    super::orgs::require_read(&state.pool, &principal, org_id).await?;
    let teams = if principal.allows(Permission::AdminOrg(org_id)) {
        None
    } else {
        Some(
            principal
                .memberships
                .iter()
                .filter_map(|m| m.team_id.filter(|_| m.org_id == org_id))
                .filter(|&team| principal.allows(Permission::AdminTeam { org: org_id, team }))
                .collect::<Vec<_>>(),
        )
    };
    let found = webhooks::list(&state.pool, org_id, teams.as_deref()).await?;
    Ok(Json(found.into_iter().map(shown).collect()))
}

/// A webhook the caller administers (without its secret; URL redacted).
#[utoipa::path(get, path = "/orgs/{org_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("org_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Webhook),
        (status = 401), (status = 403), (status = 404)))]
async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, webhook_id)): Path<(Uuid, Uuid)>,
) -> Result<Json<Webhook>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let found = webhooks::get(&state.pool, org_id, webhook_id).await?;
    require_admin(&principal, org_id, found.team_id)?;
    Ok(Json(shown(found)))
}

/// Remove a webhook; deliveries still pending to it are dropped.
#[utoipa::path(delete, path = "/orgs/{org_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("org_id" = Uuid, Path), ("webhook_id" = Uuid, Path)),
    responses((status = 400, description = "Malformed path, query or body"), (status = 204), (status = 401),
        (status = 403), (status = 404)))]
async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, webhook_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let found = webhooks::get(&state.pool, org_id, webhook_id).await?;
    require_admin(&principal, org_id, found.team_id)?;
    let mut tx = state.pool.begin().await?;
    let before = webhooks::delete(&mut tx, org_id, webhook_id).await?;
    audit::record(
        &mut tx,
        &principal.actor(),
        Some(org_id),
        "delete",
        "webhook",
        &webhook_id.to_string(),
        Some(json(&before)),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The webhook's delivery log: every attempt, newest first.
#[utoipa::path(get, path = "/orgs/{org_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("org_id" = Uuid, Path), ("webhook_id" = Uuid, Path), DeliveryQuery),
    responses((status = 400, description = "Malformed path, query or body"), (status = 200, body = Vec<Delivery>),
        (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path((org_id, webhook_id)): Path<(Uuid, Uuid)>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    require(&principal, Permission::ReadOrg(org_id))?;
    let limit = page_limit(q.limit)?;
    let found = webhooks::get(&state.pool, org_id, webhook_id).await?;
    require_admin(&principal, org_id, found.team_id)?;
    Ok(Json(
        webhooks::deliveries(&state.pool, org_id, webhook_id, q.before_id, limit).await?,
    ))
}
