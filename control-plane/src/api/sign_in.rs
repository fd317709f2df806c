//! The browser's way in: `/auth/login` → the IdP → `/auth/callback` → a session cookie;
//! `/auth/logout`; and `/`, a minimal server-rendered page (who is signed in, their
//! sessions and tokens). A thin skin over [`crate::auth::sign_in`]: the rules live there.
//!
//! These are pages, not API: errors are plain HTML sentences ("your account has no role
//! in any org yet — ask an admin"); what went wrong in detail goes to the log and the
//! audit log, never a token.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::auth::oidc::Connection;
use crate::auth::session::{self, CSRF_HEADER};
use crate::auth::sign_in::{SignIn, SignInError};
use crate::store::audit::{self, Actor};
use crate::store::sessions::{self, LOGIN_FLOW_LIFETIME_S};
use crate::store::{StoreError, users};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    /// An org's login URL: `/auth/login?org=<slug>`.
    org: Option<String>,
    /// Home-realm discovery: the person's email picks its org's IdP.
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
}

/// Only the socket address: a forwarded-for header would be the client's to choose.
fn client_ip(extensions: &http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} · Tollgate</title></head><body><h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The page a refused sign-in shows; the detail is logged and audited.
async fn refused(state: &AppState, actor: &Actor, error: &SignInError) -> Response {
    tracing::warn!(error = %error, source_ip = %actor.source_ip, "sign-in refused");
    if let Ok(mut tx) = state.pool.begin().await {
        let recorded = audit::record(
            &mut tx,
            actor,
            None,
            "sign_in_failed",
            "session",
            "",
            None,
            Some(json!({"reason": error.to_string()})),
        )
        .await;
        if recorded.is_ok() {
            let _ = tx.commit().await;
        }
    }
    let body = format!(
        "<p id=\"error\">{}</p><p><a href=\"/auth/login\">Sign in again</a></p>",
        escape(error.plain())
    );
    page(error.status(), "Sign-in failed", &body)
}

fn sign_in_of(state: &AppState) -> Result<Arc<SignIn>, SignInError> {
    state.sign_in.clone().ok_or(SignInError::NotConfigured)
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Query(query): Query<LoginQuery>,
) -> Response {
    let actor = Actor {
        user_id: None,
        name: "anonymous".into(),
        request_id: request_id(&headers),
        source_ip: client_ip(&extensions),
    };
    match begin(&state, &actor, &query).await {
        Ok((url, login_state)) => {
            let cookies = state.sessions.cookies;
            let mut response = Redirect::to(&url).into_response();
            // Binds the sign-in to this browser: a callback in another browser (a login
            // CSRF) finds no matching cookie.
            if let Ok(value) = HeaderValue::from_str(&cookies.set(
                cookies.login_name(),
                &login_state,
                LOGIN_FLOW_LIFETIME_S,
            )) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => refused(&state, &actor, &e).await,
    }
}

async fn begin(
    state: &AppState,
    actor: &Actor,
    query: &LoginQuery,
) -> Result<(String, String), SignInError> {
    let sign_in = sign_in_of(state)?;
    let connection = sign_in
        .connection_for(&state.pool, query.org.as_deref(), query.email.as_deref())
        .await?;
    sign_in.throttle(&actor.source_ip, &connection)?;
    let (url, flow, login_state) = sign_in.oidc.begin(&connection).await?;
    sessions::create_login_flow(&state.pool, &login_state, &flow).await?;
    Ok((url, login_state))
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let mut actor = Actor {
        user_id: None,
        name: "anonymous".into(),
        request_id: request_id(&headers),
        source_ip: client_ip(&extensions),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let cookies = state.sessions.cookies;
    let result = finish(&state, &mut actor, &headers, &query, &user_agent).await;
    let mut response = match result {
        Ok(secret) => {
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookies.set(
                cookies.session_name(),
                &secret,
                state.sessions.absolute_s,
            )) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => refused(&state, &actor, &e).await,
    };
    if let Ok(value) = HeaderValue::from_str(&cookies.clear(cookies.login_name())) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The callback's work; the new session's cookie value on success.
async fn finish(
    state: &AppState,
    actor: &mut Actor,
    headers: &HeaderMap,
    query: &CallbackQuery,
    user_agent: &str,
) -> Result<String, SignInError> {
    let sign_in = sign_in_of(state)?;
    let login_state = query.state.as_deref().ok_or(SignInError::BadState)?;
    let bound = session::cookie(headers, state.sessions.cookies.login_name());
    if bound != Some(login_state) {
        return Err(SignInError::BadState);
    }
    let flow = match sessions::take_login_flow(&state.pool, login_state).await {
        Ok(flow) => flow,
        Err(StoreError::NotFound) => return Err(SignInError::BadState),
        Err(e) => return Err(e.into()),
    };
    if let Some(error) = &query.error {
        return Err(SignInError::Provider(format!(
            "{error}: {}",
            query.error_description.as_deref().unwrap_or_default()
        )));
    }
    let code = query.code.as_deref().ok_or(SignInError::BadState)?;
    let connection: Connection = sign_in
        .connection_by_issuer(&state.pool, &flow.issuer)
        .await?;
    sign_in.throttle(&actor.source_ip, &connection)?;
    let identity = sign_in.oidc.finish(&connection, &flow, code).await?;
    actor.name = identity
        .email
        .clone()
        .unwrap_or_else(|| format!("{} at {}", identity.subject, identity.issuer));
    let signed_in = sign_in
        .complete(&state.pool, &connection, &identity, actor)
        .await?;
    actor.user_id = Some(signed_in.user.id);
    let max_age = state.sessions.membership_max_age_s;
    let user = users::active_user(&state.pool, signed_in.user.id, max_age).await?;
    let memberships = users::memberships(&state.pool, user.id, max_age).await?;
    if memberships.is_empty() && !user.is_platform_admin {
        return Err(SignInError::NoRole);
    }
    // Always a new id at sign-in: a session id planted before it (fixation) is worthless.
    let secret = session::new_secret();
    let mut tx = state.pool.begin().await.map_err(StoreError::from)?;
    let created = sessions::create_session(
        &mut tx,
        &secret,
        user.id,
        &connection.issuer,
        &actor.source_ip,
        user_agent,
        state.sessions.absolute_s,
    )
    .await?;
    audit::record(
        &mut tx,
        actor,
        connection.org_id,
        "sign_in",
        "session",
        &created.id.to_string(),
        None,
        Some(json!({"issuer": connection.issuer, "roles_added": signed_in.synced.added.len(), "roles_removed": signed_in.synced.removed.len()})),
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(secret)
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let cookies = state.sessions.cookies;
    let Some(secret) = session::cookie(&headers, cookies.session_name()) else {
        return Redirect::to("/").into_response();
    };
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| form.ok().and_then(|Form(f)| f.csrf_token));
    if !session::csrf_matches(secret, presented.as_deref()) {
        return super::error::ApiError::csrf().into_response();
    }
    let mut end_session = None;
    if let Ok(live) = sessions::touch_session(&state.pool, secret, state.sessions.idle_s).await
        && let Ok(mut tx) = state.pool.begin().await
    {
        let actor = Actor {
            user_id: Some(live.user_id),
            name: users::active_user(
                &state.pool,
                live.user_id,
                state.sessions.membership_max_age_s,
            )
            .await
            .map(|u| u.email)
            .unwrap_or_default(),
            request_id: request_id(&headers),
            source_ip: client_ip(&extensions),
        };
        let ended = sessions::end_session(&mut tx, live.id).await;
        let recorded = audit::record(
            &mut tx,
            &actor,
            None,
            "sign_out",
            "session",
            &live.id.to_string(),
            None,
            None,
        )
        .await;
        if ended.is_ok()
            && recorded.is_ok()
            && tx.commit().await.is_ok()
            && let Some(sign_in) = &state.sign_in
            && let Ok(connection) = sign_in
                .connection_by_issuer(&state.pool, &live.issuer)
                .await
        {
            let back = format!(
                "{}/",
                state.sessions.public_url.as_deref().unwrap_or_default()
            );
            end_session = sign_in.oidc.end_session_url(&connection, &back).await;
        }
    }
    let mut response = Redirect::to(end_session.as_deref().unwrap_or("/")).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookies.clear(cookies.session_name())) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
