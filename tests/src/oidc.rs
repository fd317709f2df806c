//! A real OpenID provider for the sign-in tests: npm's `oidc-provider` (panva, OpenID
//! Certified) run by `tests/oidc/provider.mjs`, behind a small rewriting proxy of ours,
//! and a cookie-keeping "browser" that drives logins over plain HTTP.
//!
//! - One provider per test binary and purpose ([`shared`], [`second`], [`short_lived`]),
//!   each in a process-wide `OnceLock`: started once, with a generous readiness deadline
//!   (it is ready when it prints its ready line, however long a loaded machine takes),
//!   and gone with the test process (its stdin is our pipe; it exits when that closes).
//!   Tests never share users: each makes its own through [`Provider::add_user`].
//! - The provider's issuer is the proxy's URL, so Tollgate, the browser and discovery
//!   all go through it. The proxy forwards everything and rewrites only the token
//!   endpoint's exchange of one authorization code, as a test asks ([`Rewrite`]): that is
//!   how a real provider's answers become the bad ones the negative tests need.
//! - The proxy runs on a thread of its own with its own runtime, since every
//!   `#[tokio::test]` has a runtime that ends with it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};

/// Tollgate's client at every test provider.
pub const CLIENT_ID: &str = "tollgate";
pub const CLIENT_SECRET: &str = "tollgate-test-client-secret-0123456789";
/// A second client at the same providers, for tokens with the wrong audience.
pub const OTHER_CLIENT_ID: &str = "other-app";
pub const OTHER_CLIENT_SECRET: &str = "other-app-test-client-secret-0123456789";
/// Platform IdP group whose members the test control planes make platform admins.
pub const ADMIN_GROUP: &str = "tollgate-admins";
/// Master key (32 bytes, base64) of the test control planes.
pub const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Every wait on a real process or request: generous, for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// What the proxy does to the token exchange of one authorization code.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Leave out `code_verifier` (PKCE missing).
    DropVerifier,
    /// Send another `code_verifier` (PKCE wrong).
    WrongVerifier,
    /// Change one claim of the ID token, keeping its signature (tampered).
    TamperIdToken,
    /// Re-issue the ID token's claims unsigned (`alg: none`).
    AlgNone,
    /// Re-issue the ID token's claims signed with HS256 under this key (the client
    /// secret, as an attacker hopes a confused verifier would use).
    Hmac(String),
    /// Answer with this ID token instead.
    ReplaceIdToken(String),
    /// Hold the answer back this long (the ID token expires meanwhile).
    Delay(Duration),
}

type Rules = Arc<Mutex<HashMap<String, Rewrite>>>;

pub struct Provider {
    /// The issuer URL, which is the proxy's: `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// Where the provider itself listens.
    upstream: String,
    rules: Rules,
    _child: Mutex<Child>,
    /// The provider's stderr.
    _log: tempfile::NamedTempFile,
}

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `npm ci` of tests/oidc, unless its packages are installed already (idempotent, and
/// offline once done). Also what `deploy/local/test` does before the cargo tests.
fn install_packages() -> anyhow::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = tests_dir().join("oidc");
            if dir.join("node_modules/oidc-provider/package.json").exists() {
                return Ok(());
            }
            let output = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("running npm ci in tests/oidc: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "npm ci in tests/oidc failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The provider most tests use.
pub fn shared() -> &'static Provider {
    static P: OnceLock<Provider> = OnceLock::new();
    P.get_or_init(|| Provider::start(600).expect("starting the shared OIDC provider"))
}

/// Another provider (another issuer, other keys): an org's own IdP, or an unknown one.
pub fn second() -> &'static Provider {
    static P: OnceLock<Provider> = OnceLock::new();
    P.get_or_init(|| Provider::start(600).expect("starting the second OIDC provider"))
}

/// A provider whose ID tokens live 2 s (for the expiry test).
pub fn short_lived() -> &'static Provider {
    static P: OnceLock<Provider> = OnceLock::new();
    P.get_or_init(|| Provider::start(2).expect("starting the short-lived OIDC provider"))
}

impl Provider {
    fn start(id_token_ttl_s: u64) -> anyhow::Result<Self> {
        install_packages()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let issuer = format!("http://{}", listener.local_addr()?);
        let clients = json!([
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            {"client_id": OTHER_CLIENT_ID, "client_secret": OTHER_CLIENT_SECRET},
        ]);
        let log = tempfile::NamedTempFile::new()?;
        let mut child = Command::new("node")
            .arg(tests_dir().join("oidc/provider.mjs"))
            .env("OIDC_ISSUER", &issuer)
            .env("OIDC_PORT", "0")
            .env("OIDC_CLIENTS", clients.to_string())
            .env("OIDC_ID_TOKEN_TTL", id_token_ttl_s.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its start-up notices (the in-memory adapter, development keys) would be
            // printed on every passing run: kept in a file, shown if it never gets ready.
            .stderr(log.reopen()?)
            .spawn()
            .context("starting node tests/oidc/provider.mjs (is node installed?)")?;
        let stdout = child.stdout.take().context("provider stdout")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            // Read until the ready line (warnings come first), then keep draining.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .strip_prefix("oidc-provider ready ")
                    .and_then(|rest| rest.rsplit_once("port="))
                    .map(|(_, port)| port.trim().to_owned())
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match ready_rx.recv_timeout(DEADLINE) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the OIDC provider printed no ready line within {DEADLINE:?}:\n{}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
        };
        let upstream = format!("http://127.0.0.1:{port}");
        let rules: Rules = Arc::default();
        let proxy_rules = rules.clone();
        let proxy_upstream = upstream.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
                let app = axum::Router::new().fallback(move |request| {
                    proxy(request, proxy_upstream.clone(), proxy_rules.clone())
                });
                let _ = axum::serve(listener, app).await;
            });
        });
        Ok(Self {
            issuer,
            upstream,
            rules,
            _child: Mutex::new(child),
            _log: log,
        })
    }

    /// Creates (or replaces) user `username` (password `pw-<username>`, `sub` the
    /// username) with these claims; a later sign-in sees the new ones.
    pub async fn add_user(&self, username: &str, email: &str, groups: &[&str]) {
        self.add_user_with(username, json!({"email": email, "groups": groups}))
            .await;
    }

    /// As [`Self::add_user`], with any claims (`email`, `email_verified`, `groups`, `org`).
    pub async fn add_user_with(&self, username: &str, claims: Value) {
        let mut user =
            json!({"username": username, "password": format!("pw-{username}"), "sub": username});
        if let (Some(user), Some(claims)) = (user.as_object_mut(), claims.as_object()) {
            user.extend(claims.clone());
        }
        let status = client()
            .post(format!("{}/test/users", self.upstream))
            .json(&user)
            .send()
            .await
            .expect("adding a test user")
            .status();
        assert_eq!(status, 204, "adding test user {username}");
    }

    /// The proxy will rewrite the token exchange of `code` so.
    pub fn rewrite(&self, code: &str, rewrite: Rewrite) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(code.to_owned(), rewrite);
    }

    /// Signs `username` in as client `client_id` directly (the test as the relying
    /// party), with `nonce`, and returns the ID token the provider issued.
    pub async fn id_token_for(
        &self,
        client_id: &str,
        client_secret: &str,
        username: &str,
        nonce: &str,
    ) -> anyhow::Result<String> {
        let verifier = format!(
            "{}{}",
            uuid::Uuid::now_v7().simple(),
            uuid::Uuid::now_v7().simple()
        );
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1:9/auth/callback";
        let mut url = reqwest::Url::parse(&format!("{}/auth", self.issuer))?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email profile groups")
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "test-state")
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut browser = Browser::new();
        let callback = browser
            .authorize(url.as_str(), "http://127.0.0.1:9", username)
            .await?;
        let code = query_param(&callback, "code").context("no code in the redirect")?;
        let response: Value = client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client_id, Some(client_secret))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_encode(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("code_verifier", verifier.as_str()),
            ]))
            .send()
            .await?
            .json()
            .await?;
        response["id_token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no id_token: {response}"))
    }
}

/// An HTTP client for the harness: no redirects followed, a generous timeout.
pub fn client() -> reqwest::Client {
    static CRYPTO: std::sync::Once = std::sync::Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(DEADLINE)
        .build()
        .expect("building the harness HTTP client")
}

/// `application/x-www-form-urlencoded` of `pairs`.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("static URL");
    url.query_pairs_mut().extend_pairs(pairs.iter());
    url.query().unwrap_or_default().to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Forwards one request to the provider, rewriting the token exchange if asked.
async fn proxy(
    request: axum::extract::Request,
    upstream: String,
    rules: Rules,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1024 * 1024).await else {
        return (http::StatusCode::BAD_REQUEST, "body too large").into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let mut body = body.to_vec();
    let mut rewrite = None;
    if parts.method == http::Method::POST && path.starts_with("/token") {
        let mut form: Vec<(String, String)> =
            reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
        let code = form
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone());
        rewrite = code.and_then(|c| rules.lock().unwrap_or_else(|e| e.into_inner()).remove(&c));
        match &rewrite {
            Some(Rewrite::DropVerifier) => form.retain(|(k, _)| k != "code_verifier"),
            Some(Rewrite::WrongVerifier) => {
                for (k, v) in &mut form {
                    if k == "code_verifier" {
                        *v = format!(
                            "{}{}",
                            uuid::Uuid::now_v7().simple(),
                            uuid::Uuid::now_v7().simple()
                        );
                    }
                }
            }
            _ => {}
        }
        let mut encoded = reqwest::Url::parse("http://x/").expect("static URL");
        encoded.query_pairs_mut().extend_pairs(form.iter());
        body = encoded.query().unwrap_or_default().as_bytes().to_vec();
    }
    let mut forward = client()
        .request(parts.method.clone(), format!("{upstream}{path}"))
        .body(body);
    // The Host header goes along: the provider builds its endpoint URLs from it, and they
    // must name the proxy, not the provider behind it.
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_LENGTH {
            forward = forward.header(name, value);
        }
    }
    let response = match forward.send().await {
        Ok(r) => r,
        Err(e) => {
            return (http::StatusCode::BAD_GATEWAY, format!("proxy: {e}")).into_response();
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let mut bytes = response.bytes().await.unwrap_or_default().to_vec();
    if let Some(rewrite) = rewrite {
        bytes = rewrite_token_response(&rewrite, bytes).await;
    }
    let mut out = axum::response::Response::builder().status(status);
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            out = out.header(name, value);
        }
    }
    out.body(axum::body::Body::from(bytes))
        .unwrap_or_else(|_| http::StatusCode::BAD_GATEWAY.into_response())
}

async fn rewrite_token_response(rewrite: &Rewrite, body: Vec<u8>) -> Vec<u8> {
    let Ok(mut json) = serde_json::from_slice::<Value>(&body) else {
        return body;
    };
    let Some(id_token) = json["id_token"].as_str().map(str::to_owned) else {
        return body;
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = id_token.split('.').collect();
    let claims: Value = parts
        .get(1)
        .and_then(|p| b64.decode(p).ok())
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or(Value::Null);
    let new = match rewrite {
        Rewrite::TamperIdToken => {
            let mut claims = claims.clone();
            claims["email"] = json!("someone-else@evil.example");
            format!(
                "{}.{}.{}",
                parts[0],
                b64.encode(claims.to_string()),
                parts.get(2).copied().unwrap_or_default()
            )
        }
        Rewrite::AlgNone => format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        ),
        Rewrite::Hmac(key) => {
            use hmac::{KeyInit, Mac};
            let signing_input = format!(
                "{}.{}",
                b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
                b64.encode(claims.to_string())
            );
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
                .expect("HMAC takes any key");
            mac.update(signing_input.as_bytes());
            format!(
                "{signing_input}.{}",
                b64.encode(mac.finalize().into_bytes())
            )
        }
        Rewrite::ReplaceIdToken(token) => token.clone(),
        Rewrite::Delay(pause) => {
            tokio::time::sleep(*pause).await;
            id_token
        }
        Rewrite::DropVerifier | Rewrite::WrongVerifier => id_token,
    };
    json["id_token"] = Value::String(new);
    json.to_string().into_bytes()
}

/// A browser without a browser: keeps cookies per host:port (cookies ignore ports, a
/// real browser would share them between the provider and Tollgate on 127.0.0.1 — the
/// provider's cookies are renamed so that does not matter) and follows redirects only
/// when told.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// The outcome of Tollgate's callback.
#[derive(Debug)]
pub struct Callback {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: client(),
            jar: HashMap::new(),
        }
    }

    fn authority(url: &str) -> String {
        reqwest::Url::parse(url)
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default()
    }

    /// The cookie `name` this browser holds for `url`'s host and port.
    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar.get(&Self::authority(url))?.get(name).cloned()
    }

    pub fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.jar
            .entry(Self::authority(url))
            .or_default()
            .insert(name.to_owned(), value.to_owned());
    }

    fn cookie_header(&self, url: &str) -> String {
        self.jar
            .get(&Self::authority(url))
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    fn keep_cookies(&mut self, url: &str, response: &reqwest::Response) {
        let jar = self.jar.entry(Self::authority(url)).or_default();
        for value in response.headers().get_all(http::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let Some((name, rest)) = text.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let expired = text.to_ascii_lowercase().contains("max-age=0");
            if expired || rest.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), rest.trim().to_owned());
            }
        }
    }

    /// One request with this browser's cookies; keeps what it sets.
    pub async fn request(
        &mut self,
        method: reqwest::Method,
        url: &str,
        form: Option<&[(&str, &str)]>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, url)
            .header(http::header::COOKIE, self.cookie_header(url));
        if let Some(form) = form {
            request = request
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form_encode(form));
        }
        let response = request.send().await?;
        self.keep_cookies(url, &response);
        Ok(response)
    }

    /// An API call with this browser's cookies, a JSON body and, if given, the CSRF
    /// header.
    pub async fn api(
        &mut self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
        csrf: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self
            .http
            .request(method, url)
            .header(http::header::COOKIE, self.cookie_header(url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await?;
        self.keep_cookies(url, &response);
        Ok(response)
    }

    fn location(base: &str, response: &reqwest::Response) -> anyhow::Result<String> {
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("redirect without Location")?;
        Ok(reqwest::Url::parse(base)?.join(location)?.to_string())
    }

    /// Starts a sign-in at Tollgate (`/auth/login?<query>`); the IdP URL it sends to.
    pub async fn begin(&mut self, control_url: &str, query: &str) -> anyhow::Result<String> {
        let url = format!("{control_url}/auth/login{query}");
        let response = self.request(reqwest::Method::GET, &url, None).await?;
        if !response.status().is_redirection() {
            bail!(
                "login did not redirect: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        Self::location(&url, &response)
    }

    /// Goes through the IdP's pages from `auth_url` as `username` (password
    /// `pw-<username>`) and returns the URL it redirects back to (under `back_to`),
    /// without following it.
    pub async fn authorize(
        &mut self,
        auth_url: &str,
        back_to: &str,
        username: &str,
    ) -> anyhow::Result<String> {
        let mut url = auth_url.to_owned();
        for _ in 0..20 {
            if url.starts_with(back_to) {
                return Ok(url);
            }
            let response = self.request(reqwest::Method::GET, &url, None).await?;
            if response.status().is_redirection() {
                url = Self::location(&url, &response)?;
                continue;
            }
            let status = response.status();
            let page = response.text().await?;
            if status != 200 || !page.contains("id=\"username\"") {
                bail!("unexpected IdP page at {url}: {status} {page}");
            }
            let action = page
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .context("login form without action")?;
            let post_url = reqwest::Url::parse(&url)?.join(action)?.to_string();
            let password = format!("pw-{username}");
            let response = self
                .request(
                    reqwest::Method::POST,
                    &post_url,
                    Some(&[("username", username), ("password", &password)]),
                )
                .await?;
            if !response.status().is_redirection() {
                bail!(
                    "IdP login refused: {} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            url = Self::location(&post_url, &response)?;
        }
        bail!("too many redirects at the IdP")
    }

    /// Calls Tollgate's callback URL.
    pub async fn callback(&mut self, callback_url: &str) -> anyhow::Result<Callback> {
        let response = self
            .request(reqwest::Method::GET, callback_url, None)
            .await?;
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await?;
        Ok(Callback {
            status,
            location,
            body,
        })
    }

    /// A whole sign-in at Tollgate; the callback's outcome.
    pub async fn sign_in(
        &mut self,
        control_url: &str,
        query: &str,
        username: &str,
    ) -> anyhow::Result<Callback> {
        let auth_url = self.begin(control_url, query).await?;
        let callback = self.authorize(&auth_url, control_url, username).await?;
        self.callback(&callback).await
    }

    /// The session's CSRF token, from the account page.
    pub async fn csrf(&mut self, control_url: &str) -> anyhow::Result<String> {
        let page = self
            .request(
                reqwest::Method::GET,
                &format!("{control_url}/account"),
                None,
            )
            .await?
            .text()
            .await?;
        page.split("<span id=\"csrf\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .map(str::to_owned)
            .with_context(|| format!("no CSRF token on the page: {page}"))
    }
}

/// The environment that points a test control plane at `provider` as its platform IdP.
pub fn platform_env(provider: &Provider) -> Vec<(&'static str, String)> {
    vec![
        (
            "TOLLGATE_SIGN_IN__PUBLIC_URL",
            "http://127.0.0.1".to_owned(),
        ),
        ("TOLLGATE_SIGN_IN__ISSUER", provider.issuer.clone()),
        ("TOLLGATE_SIGN_IN__CLIENT_ID", CLIENT_ID.to_owned()),
        ("TOLLGATE_SIGN_IN__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        (
            "TOLLGATE_SIGN_IN__SCOPES",
            r#"["email", "profile", "groups"]"#.to_owned(),
        ),
        (
            "TOLLGATE_SIGN_IN__ADMIN_GROUPS",
            format!(r#"["{ADMIN_GROUP}"]"#),
        ),
    ]
}
