//! Who is calling: a bearer admin API token (`Authorization: Bearer tga_…`) or a browser
//! session cookie (signed in with OpenID Connect, [`oidc`] and [`sign_in`]) — both
//! resolve to the same [`Principal`] in this one extractor, so handlers never know
//! which. A cookie-authenticated write must carry the session's CSRF token
//! ([`session`]); bearer calls need none. Roles are read afresh on every request.

pub mod http_client;
pub mod oidc;
pub mod rbac;
pub mod sealing;
pub mod session;
pub mod sign_in;

use axum::extract::FromRequestParts;
use http::request::Parts;
use uuid::Uuid;

use crate::service::{Problem, Services};
use crate::store::users::{self, Membership};
use crate::store::{StoreError, audit::Actor, sessions};

/// An authenticated caller with every role it holds.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub email: String,
    pub platform_admin: bool,
    pub memberships: Vec<Membership>,
    pub request_id: String,
    pub source_ip: String,
    /// Set when the caller came with a browser session rather than a token.
    pub session_id: Option<Uuid>,
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

/// Where a cookie-authenticated write carries its CSRF token.
#[derive(Debug, Clone, Copy)]
pub enum Csrf<'a> {
    /// In the `X-CSRF-Token` header (API calls from the session's pages' scripts).
    Header,
    /// In a form field the caller read from the body (the web UI's plain forms).
    Form(Option<&'a str>),
}

impl FromRequestParts<Services> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Services,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state, Csrf::Header).await
    }
}

/// Who is calling, with the roles it holds now. A session's unsafe request must prove
/// it came from the session's own pages (`csrf`); a bearer token needs no such proof.
pub async fn authenticate(
    parts: &Parts,
    state: &Services,
    csrf: Csrf<'_>,
) -> Result<Principal, Problem> {
    let max_age = state.sessions.membership_max_age_s;
    let bearer = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let cookie = session::cookie(&parts.headers, state.sessions.cookies.session_name());
    let (user, read_only, session_id) = match (bearer, cookie) {
        (Some(token), _) => {
            if !token.starts_with(users::TOKEN_PREFIX) {
                return Err(Problem::unauthenticated());
            }
            match users::user_for_token(&state.pool, token, max_age).await {
                Ok(owner) => (owner.user, owner.read_only, None),
                Err(StoreError::NotFound) => return Err(Problem::unauthenticated()),
                Err(e) => return Err(e.into()),
            }
        }
        (None, Some(secret)) => {
            let session =
                match sessions::touch_session(&state.pool, secret, state.sessions.idle_s).await {
                    Ok(session) => session,
                    Err(StoreError::NotFound) => return Err(Problem::unauthenticated()),
                    Err(e) => return Err(e.into()),
                };
            // The cookie rides along on cross-site requests; a token only this
            // session's pages know proves the request came from them.
            let presented = match csrf {
                Csrf::Header => parts
                    .headers
                    .get(session::CSRF_HEADER)
                    .and_then(|v| v.to_str().ok()),
                Csrf::Form(field) => field,
            };
            if !parts.method.is_safe() && !session::csrf_matches(secret, presented) {
                return Err(Problem::csrf());
            }
            match users::active_user(&state.pool, session.user_id, max_age).await {
                Ok(user) => (user, false, Some(session.id)),
                Err(StoreError::NotFound) => return Err(Problem::unauthenticated()),
                Err(e) => return Err(e.into()),
            }
        }
        (None, None) => return Err(Problem::unauthenticated()),
    };
    let mut memberships = users::memberships(&state.pool, user.id, max_age).await?;
    if read_only {
        // A read-only token keeps where its owner's roles reach, never what they write.
        for m in &mut memberships {
            m.role = "viewer".into();
        }
    }
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(Principal {
        user_id: user.id,
        email: user.email,
        platform_admin: user.is_platform_admin && !read_only,
        memberships,
        request_id,
        source_ip: source_ip(parts),
        session_id,
    })
}

/// The client's address as the server saw it.
pub fn source_ip(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}
