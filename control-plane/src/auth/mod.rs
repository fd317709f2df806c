//! Who is calling. Today a bearer admin API token (`Authorization: Bearer tga_…`); the
//! web UI's session cookie will resolve to the same [`Principal`] in this one extractor,
//! so no handler changes when it arrives.

pub mod rbac;

use axum::extract::FromRequestParts;
use http::request::Parts;
use uuid::Uuid;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::store::users::{self, Membership};
use crate::store::{StoreError, audit::Actor};

/// An authenticated caller with every role it holds.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub email: String,
    pub platform_admin: bool,
    pub memberships: Vec<Membership>,
    pub request_id: String,
    pub source_ip: String,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            user_id: Some(self.user_id),
            name: self.email.clone(),
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(users::TOKEN_PREFIX))
            .ok_or_else(ApiError::unauthenticated)?;
        let user = match users::user_for_token(&state.pool, token).await {
            Ok(user) => user,
            Err(StoreError::NotFound) => return Err(ApiError::unauthenticated()),
            Err(e) => return Err(e.into()),
        };
        let memberships = users::memberships(&state.pool, user.id).await?;
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let source_ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        Ok(Self {
            user_id: user.id,
            email: user.email,
            platform_admin: user.is_platform_admin,
            memberships,
            request_id,
            source_ip,
        })
    }
}
