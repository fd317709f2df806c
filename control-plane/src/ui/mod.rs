//! The web UI's HTTP side: routes, who is looking, forms, and the security headers. It
//! calls the service layer — the same functions and permission table as the REST API —
//! and hands the answers to `tollgate-web-ui`, which draws them. It holds no SQL and no
//! rule of its own; a button hidden from a role is refused by the service anyway.
//!
//! Every response carries a CSP with a fresh nonce (no `unsafe-inline`),
//! `X-Frame-Options: DENY` and `Cache-Control: no-store`. Every form carries the
//! session's CSRF token, checked before the service is called.

mod pages;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use tollgate_web_ui::{Block, Flash, Nav, Shell};
use uuid::Uuid;

use crate::auth::{Csrf, Principal, authenticate, session};
use crate::service::{Problem, Services};

pub fn router() -> axum::Router<Services> {
    axum::Router::new()
        .route("/", get(pages::overview))
        .route("/account", get(pages::account))
        .route("/orgs", get(pages::orgs).post(pages::create_org))
        .route("/orgs/{org}", get(pages::org))
        .route("/orgs/{org}/teams", post(pages::create_team))
        .route("/orgs/{org}/teams/{team}", get(pages::team))
        .route("/orgs/{org}/budgets", post(pages::create_budget))
        .route("/orgs/{org}/keys", get(pages::keys).post(pages::create_key))
        .route("/orgs/{org}/keys/{key}", get(pages::key))
        .route("/orgs/{org}/keys/{key}/revoke", post(pages::revoke_key))
        .route("/orgs/{org}/keys/{key}/rotate", post(pages::rotate_key))
        .route("/orgs/{org}/usage", get(pages::usage))
        .route("/orgs/{org}/audit", get(pages::audit))
        .route("/ui/assets/{file}", get(asset))
        .layer(axum::middleware::from_fn(security_headers))
}

/// This response's CSP nonce, put into the request by [`security_headers`].
#[derive(Debug, Clone)]
struct Nonce(String);

async fn security_headers(mut request: Request, next: axum::middleware::Next) -> Response {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let nonce = base64::engine::general_purpose::STANDARD.encode(bytes);
    request.extensions_mut().insert(Nonce(nonce.clone()));
    let mut response = next.run(request).await;
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    use tollgate_web_ui::assets;
    let path = format!("/ui/assets/{file}");
    let (body, kind) = if path == assets::css_path() {
        (assets::CSS, "text/css; charset=utf-8")
    } else if path == assets::js_path() {
        (assets::JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            // The name carries the content's hash: a changed file is a new URL.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// A signed-in person looking at a page.
pub struct Viewer {
    pub principal: Principal,
    /// The session's CSRF token, for the page's forms.
    pub csrf: String,
    nonce: String,
}

/// Why a page was not shown: not signed in (the caller decides: a landing page or a
/// redirect to sign-in), or a page that says what went wrong.
pub enum Refused {
    SignIn,
    Page(Response),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/auth/login").into_response(),
            Self::Page(response) => response,
        }
    }
}

fn nonce_of(parts: &Parts) -> String {
    parts
        .extensions
        .get::<Nonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default()
}

impl Viewer {
    async fn resolve(parts: &Parts, state: &Services, csrf: Csrf<'_>) -> Result<Self, Refused> {
        let nonce = nonce_of(parts);
        match authenticate(parts, state, csrf).await {
            Ok(principal) => {
                let csrf = session::cookie(&parts.headers, state.sessions.cookies.session_name())
                    .map(session::csrf_token)
                    .unwrap_or_default();
                Ok(Self {
                    principal,
                    csrf,
                    nonce,
                })
            }
            Err(problem) if problem.status == StatusCode::UNAUTHORIZED => Err(Refused::SignIn),
            Err(problem) => Err(Refused::Page(bare_page(&nonce, &problem))),
        }
    }

    /// The frame of a page: title, navigation (with the current org's pages), flash.
    fn shell(&self, title: &str, org: Option<Uuid>, current: &str, flash: Option<Flash>) -> Shell {
        let mut nav = vec![Nav::new(
            "Overview",
            match org {
                Some(org) => format!("/?org={org}"),
                None => "/".into(),
            },
        )];
        if self.principal.platform_admin {
            nav.push(Nav::new("Orgs", "/orgs"));
        }
        if let Some(org) = org {
            nav.push(Nav::new("Teams", format!("/orgs/{org}")));
            nav.push(Nav::new("Keys", format!("/orgs/{org}/keys")));
            nav.push(Nav::new("Usage", format!("/orgs/{org}/usage")));
            nav.push(Nav::new("Audit log", format!("/orgs/{org}/audit")));
        }
        nav.push(Nav::new("Account", "/account"));
        for item in &mut nav {
            item.current = item.label == current;
        }
        Shell {
            title: title.into(),
            nonce: self.nonce.clone(),
            email: Some(self.principal.email.clone()),
            platform_admin: self.principal.platform_admin,
            csrf: self.csrf.clone(),
            nav,
            flash,
            alerts: Vec::new(),
        }
    }

    fn page(&self, status: StatusCode, shell: Shell, blocks: Vec<Block>) -> Response {
        html(status, tollgate_web_ui::render(shell, blocks))
    }

    /// The page a refused request shows, in the frame.
    fn problem(&self, org: Option<Uuid>, problem: &Problem) -> Response {
        let (title, text) = explain(problem);
        let shell = self.shell(title, org, "", None);
        self.page(problem.status, shell, vec![Block::Text(text)])
    }
}

impl FromRequestParts<Services> for Viewer {
    type Rejection = Refused;

    async fn from_request_parts(parts: &mut Parts, state: &Services) -> Result<Self, Refused> {
        Self::resolve(parts, state, Csrf::Header).await
    }
}

/// A submitted form: who sent it (its CSRF token checked) and its fields.
pub struct Posted {
    pub viewer: Viewer,
    pub fields: Fields,
}

/// A form's fields by name (the last value of a repeated name wins, except for lists,
/// read with [`Fields::all`]).
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .unwrap_or_default()
    }

    /// `None` for an empty field.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    pub fn values(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(n, _)| n != "csrf_token")
            .cloned()
            .collect()
    }
}

impl FromRequest<Services> for Posted {
    type Rejection = Refused;

    async fn from_request(request: Request, state: &Services) -> Result<Self, Refused> {
        let (parts, body) = request.into_parts();
        let nonce = nonce_of(&parts);
        let request = Request::from_parts(parts.clone(), body);
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|e| {
                Refused::Page(bare_page(
                    &nonce,
                    &Problem::new(StatusCode::BAD_REQUEST, "Bad form", e.body_text()),
                ))
            })?;
        let fields = Fields(fields);
        let token = fields.opt("csrf_token").map(str::to_owned);
        let viewer = Viewer::resolve(&parts, state, Csrf::Form(token.as_deref())).await?;
        Ok(Self { viewer, fields })
    }
}

/// A problem in plain words for a page.
fn explain(problem: &Problem) -> (&'static str, String) {
    match problem.status {
        StatusCode::NOT_FOUND => (
            "Not found",
            "There is no such page, or it is not yours to see.".into(),
        ),
        StatusCode::FORBIDDEN if problem.title.starts_with("CSRF") => (
            "Form expired",
            "This form did not come from this session's pages (or the session changed). Go back, reload the page and try again.".into(),
        ),
        StatusCode::FORBIDDEN => ("Not allowed", "Your role does not allow this.".into()),
        s if s.is_server_error() => (
            "Something went wrong",
            format!("{} Try again in a moment.", problem.detail),
        ),
        _ => ("Refused", problem.to_string()),
    }
}

/// A page outside the frame (before we know who is looking).
fn bare_page(nonce: &str, problem: &Problem) -> Response {
    let (title, text) = explain(problem);
    let shell = Shell {
        title: title.into(),
        nonce: nonce.into(),
        ..Shell::default()
    };
    html(
        problem.status,
        tollgate_web_ui::render(shell, vec![Block::Text(text)]),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

/// The landing page for someone not signed in.
fn landing(nonce: String) -> Response {
    let shell = Shell {
        title: "Tollgate".into(),
        nonce,
        ..Shell::default()
    };
    html(
        StatusCode::OK,
        tollgate_web_ui::render(
            shell,
            vec![
                Block::Text("You are not signed in.".into()),
                Block::Links(vec![("Sign in".into(), "/auth/login".into())]),
            ],
        ),
    )
}
