//! The admin REST API under `/api/v1`, described by an OpenAPI 3.1 document generated
//! from the handlers themselves (`/api/openapi.json`, never hand-maintained). One file
//! per resource; every handler authenticates ([`crate::auth::Principal`]) and checks its
//! permission ([`crate::auth::rbac::require`]) before touching the store.

mod alerts;
mod audit;
mod budgets;
pub mod deployments;
pub mod error;
pub mod freezes;
mod gateways;
pub mod health;
mod idempotent;
mod idp;
mod keys;
mod members;
pub mod models;
mod orgs;
mod patch;
mod people;
mod projects;
pub mod providers;
mod rate_limits;
pub mod regions;
mod scope;
mod sessions;
pub mod sign_in;
mod teams;
mod tokens;
mod usage;
pub mod validate;
mod webhooks;

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use crate::service::{Services as AppState, SessionPolicy};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "The platform catalog (regions, providers, models, deployments) and, per org, teams, projects, members, virtual keys, budgets, rate limits, usage, budget alerts, alert webhooks and the audit log of a Tollgate control plane. Authenticate with `Authorization: Bearer tga_…` (from `tollgate-control bootstrap`, `tokens create`, or minted from a browser session) or with the browser session cookie of `/auth/login` (writes then need the `X-CSRF-Token` header)."
    ),
    components(schemas(error::FieldError))
)]
struct ApiDoc;

/// The whole HTTP surface: the API and its OpenAPI document.
pub fn router(state: AppState, max_body_bytes: usize) -> axum::Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            orgs::router()
                .merge(teams::router())
                .merge(members::router())
                .merge(keys::router())
                .merge(budgets::router())
                .merge(projects::router())
                .merge(rate_limits::router())
                .merge(regions::router())
                .merge(providers::router())
                .merge(models::router())
                .merge(deployments::router())
                .merge(audit::router())
                .merge(gateways::router())
                .merge(usage::router())
                .merge(alerts::router())
                .merge(webhooks::router())
                .merge(tokens::router())
                .merge(sessions::router())
                .merge(idp::router())
                .merge(people::router())
                .merge(freezes::router()),
        )
        .split_for_parts();
    api.merge(sign_in::router())
        .merge(crate::ui::router())
        .route("/api/openapi.json", get(move || async move { Json(doc) }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::map_response(problem_json_for_rejections))
        .with_state(state)
}

/// axum's own rejections (a malformed path or query, a body over the limit, an unknown
/// route) answer in plain text; turn them into problem+json like every other error.
async fn problem_json_for_rejections(
    response: axum::response::Response,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    let plain = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !status.is_client_error() || !plain {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let title = status.canonical_reason().unwrap_or("Bad request");
    let detail = String::from_utf8_lossy(&body).trim().to_owned();
    let detail = if detail.is_empty() {
        title.to_owned()
    } else {
        detail
    };
    error::ApiError::new(status, title, detail).into_response()
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<uuid::Uuid>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, error::ApiError> {
        page_limit(self.limit)
    }
}

/// The `limit` of a list with its own query type: 1–200, default 50.
pub fn page_limit(limit: Option<i64>) -> Result<i64, error::ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(error::ApiError::invalid(vec![error::FieldError {
            field: "limit".into(),
            message: "must be between 1 and 200".into(),
        }])),
    }
}
