//! The admin REST API under `/api/v1`, described by an OpenAPI 3.1 document generated
//! from the handlers themselves (`/api/openapi.json`, never hand-maintained). One file
//! per resource; every handler authenticates ([`crate::auth::Principal`]) and checks its
//! permission ([`crate::auth::rbac::require`]) before touching the store.

mod audit;
pub mod error;
mod idempotent;
mod keys;
mod members;
mod orgs;
mod teams;
pub mod validate;

use axum::Json;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::store::Pool;

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    /// Mixed into every key's HMAC; `None` = keys cannot be minted here.
    pub key_pepper: Option<secrecy::SecretString>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "Orgs, teams, members, virtual keys and the audit log of a Tollgate control plane. Authenticate with `Authorization: Bearer tga_…` (from `tollgate-control bootstrap` or `tokens create`)."
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
                .merge(audit::router()),
        )
        .split_for_parts();
    api.route("/api/openapi.json", get(move || async move { Json(doc) }))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Items per page, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<uuid::Uuid>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<i64, error::ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=200).contains(&n) => Ok(n),
            Some(_) => Err(error::ApiError::invalid(vec![error::FieldError {
                field: "limit".into(),
                message: "must be between 1 and 200".into(),
            }])),
        }
    }
}
