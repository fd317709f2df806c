//! The mock upstream: OpenAI-compatible (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models`, and Azure's `/openai/deployments/{name}/...`) and
//! Anthropic-compatible (`/v1/messages`), OpenAI's Responses API (`/v1/responses`,
//! Azure's `/openai/v1/responses`), Gemini (`/v1beta/models/{model}:{method}`, and
//! Vertex AI's `/v1/projects/…/publishers/google/models/…`), JSON and SSE.
//!
//! Each request picks its behaviour with [`behavior::DIRECTIVES`] in the model name or
//! `x-mock-*` headers. Usage numbers follow one fixed rule so tests can assert exact
//! costs: **prompt tokens = whitespace-separated words in the request's text fields**
//! (`content`, `text`, `system`, `prompt`, `input`; token-id arrays count one per id),
//! plus `cache_read`; completion tokens = `chunks` (default 8), capped by `max_tokens`.
//!
//! Every API request is recorded (bounded ring buffer) and counted (`in_flight`,
//! `max_in_flight`), readable in-process or over `GET /_mock/requests` and
//! `GET /_mock/stats` when the mock runs as its own process; responses are recorded
//! too, once their bodies end (`GET /_mock/responses`), for byte-exact comparisons.

pub mod anthropic;
pub mod bedrock;
pub mod behavior;
pub mod gemini;
pub mod openai;
pub mod responses;
mod stream;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use behavior::{Behavior, BehaviorError, DIRECTIVES};

/// Largest request body the mock accepts (bytes); bigger bodies get 413 like a real API.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How the mock is set up; per-request behaviour comes from directives instead.
#[derive(Debug, Clone)]
pub struct MockOptions {
    /// How many recent requests to keep for inspection; 0 records nothing (benchmarks).
    pub record_capacity: usize,
    /// When set, requests must carry this credential (`Authorization: Bearer`, `api-key`
    /// or `x-api-key`) or get the provider's 401.
    pub require_key: Option<String>,
    /// When set, `POST /token` is a Google OAuth2 token endpoint for this service
    /// account, and Vertex AI routes accept only the bearer tokens it minted.
    pub google_token: Option<gemini::TokenEndpoint>,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            record_capacity: 10_000,
            require_key: None,
            google_token: None,
        }
    }
}

/// One request as the mock received it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase; values that are not UTF-8 are replaced lossily.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it was not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One response as the mock sent it, recorded once its body has ended (so a stream's
/// whole transcript), for byte-exact comparison with what a client received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordedResponse {
    pub path: String,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// API requests received since start (or the last reset).
    pub requests: u64,
    /// Requests whose response has not finished (streams count until their last byte).
    pub in_flight: u64,
    /// Highest `in_flight` seen since start (or the last reset).
    pub max_in_flight: u64,
}

/// State shared by every handler of one mock server.
pub struct Shared {
    options: MockOptions,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    responses: Mutex<VecDeque<RecordedResponse>>,
    /// Responses API objects kept for `GET /v1/responses/{id}` (id → response, input).
    stored: Mutex<std::collections::HashMap<String, (Value, Value)>>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Source of unique response ids (`chatcmpl-mock-17`).
    ids: AtomicU64,
    /// Access tokens `POST /token` has minted.
    minted: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(options: MockOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            recorded: Mutex::new(VecDeque::new()),
            responses: Mutex::new(VecDeque::new()),
            stored: Mutex::new(std::collections::HashMap::new()),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            minted: Mutex::new(Vec::new()),
        })
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock_recorded().iter().cloned().collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Responses whose bodies have ended, oldest first.
    pub fn responses(&self) -> Vec<RecordedResponse> {
        self.lock_responses().iter().cloned().collect()
    }

    fn lock_responses(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedResponse>> {
        self.responses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record_response(&self, response: RecordedResponse) {
        let capacity = self.options.record_capacity;
        if capacity == 0 {
            return;
        }
        let mut responses = self.lock_responses();
        if responses.len() == capacity {
            responses.pop_front();
        }
        responses.push_back(response);
    }

    /// Forgets recorded requests and resets the counters (not requests in flight).
    pub fn reset(&self) {
        self.lock_recorded().clear();
        self.lock_responses().clear();
        self.requests.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn lock_recorded(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedRequest>> {
        // A panicking handler cannot leave the deque half-written, so poison is harmless.
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, request: RecordedRequest) {
        let capacity = self.options.record_capacity;
        if capacity == 0 {
            return;
        }
        let mut recorded = self.lock_recorded();
        if recorded.len() == capacity {
            recorded.pop_front();
        }
        recorded.push_back(request);
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Checks the configured credential; `None` means the request may proceed.
    fn unauthorized(&self, headers: &HeaderMap, flavor: Flavor) -> Option<Response> {
        let expected = self.options.require_key.as_deref()?;
        // AWS requests carry a SigV4 signature instead, checked by the Bedrock handlers.
        if flavor == Flavor::Aws {
            return None;
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let presented = header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| header("api-key"))
            .or_else(|| header("x-api-key"))
            .or_else(|| header("x-goog-api-key"));
        if presented == Some(expected) {
            return None;
        }
        Some(error_response(
            flavor,
            StatusCode::UNAUTHORIZED,
            "mock: incorrect API key provided",
            None,
        ))
    }
}

/// Counts a request as in flight until dropped (for streams: when the body ends).
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running in-process mock server; stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl MockUpstream {
    /// Starts on `127.0.0.1:0` with default options.
    pub async fn start() -> io::Result<Self> {
        Self::start_with(MockOptions::default()).await
    }

    pub async fn start_with(options: MockOptions) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new(options);
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = router(shared.clone());
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "mock upstream stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(shutdown),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`; OpenAI clients want [`Self::openai_base_url`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/v1`, what an OpenAI SDK takes as `base_url`.
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Responses sent whose bodies have ended, oldest first.
    pub fn responses(&self) -> Vec<RecordedResponse> {
        self.shared.responses()
    }

    /// [`Self::requests`] without those to the token endpoint: the calls themselves.
    pub fn api_requests(&self) -> Vec<RecordedRequest> {
        let mut requests = self.shared.requests();
        requests.retain(|r| r.path != "/token");
        requests
    }

    /// Requests to the token endpoint (`POST /token`).
    pub fn token_requests(&self) -> usize {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.path == "/token")
            .count()
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The whole mock as an axum router (the binary serves this directly).
pub fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/models", get(openai::models))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/responses", post(responses::responses))
        .route("/openai/v1/responses", post(responses::responses))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/v1/responses/{id}/cancel", post(responses::cancel))
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(openai::azure_chat),
        )
        .route(
            "/openai/deployments/{deployment}/completions",
            post(openai::azure_completions),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(openai::azure_embeddings),
        )
        .route("/v1beta/models/{call}", post(gemini::call))
        .route("/token", post(gemini::token))
        .route("/model/{model}/converse", post(bedrock::converse))
        .route(
            "/model/{model}/converse-stream",
            post(bedrock::converse_stream),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{call}",
            post(anthropic::vertex_messages),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/publishers/google/models/{call}",
            post(gemini::vertex_call),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), record));
    let control = Router::new()
        .route(
            "/_mock/requests",
            get(control_requests).delete(control_reset),
        )
        .route("/_mock/stats", get(control_stats).delete(control_reset))
        .route("/_mock/responses", get(control_responses));
    api.merge(control).with_state(shared)
}

/// Records the request and keeps it counted as in flight until its body is sent.
async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let guard = shared.enter();
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                Flavor::OpenAi,
                StatusCode::PAYLOAD_TOO_LARGE,
                "mock: request body too large",
                None,
            );
        }
    };
    shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let path = parts.uri.path().to_owned();
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let mut capture = Capture {
        shared: shared.clone(),
        path,
        status: parts.status.as_u16(),
        body: Vec::new(),
    };
    let body = body.into_data_stream().map(move |frame| {
        let _still_in_flight = &guard;
        if let Ok(bytes) = &frame {
            capture.body.extend_from_slice(bytes);
        }
        frame
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// A response body as it is sent; recorded when the body is done with (ended, or
/// dropped by a client that left).
struct Capture {
    shared: Arc<Shared>,
    path: String,
    status: u16,
    body: Vec<u8>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.record_response(RecordedResponse {
            path: std::mem::take(&mut self.path),
            status: self.status,
            body: String::from_utf8_lossy(&self.body).into_owned(),
        });
    }
}

async fn not_found() -> Response {
    error_response(
        Flavor::OpenAi,
        StatusCode::NOT_FOUND,
        "mock: no such endpoint",
        None,
    )
}

async fn control_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedRequest>> {
    Json(shared.requests())
}

async fn control_responses(State(shared): State<Arc<Shared>>) -> Json<Vec<RecordedResponse>> {
    Json(shared.responses())
}

async fn control_stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.stats())
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset();
    StatusCode::NO_CONTENT
}

/// Which provider's error and stream conventions a response follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
    Google,
    Aws,
}

/// The first steps every API handler shares: parse the body, read the model, parse the
/// behaviour, check the credential, wait `ttfb`, hang or fail when asked to.
/// `Err` is the complete response to send.
async fn prepare(
    shared: &Shared,
    flavor: Flavor,
    headers: &HeaderMap,
    body: &[u8],
    model_override: Option<&str>,
) -> Result<(Value, String, Behavior), Response> {
    let bad_request = |message: &str, param: Option<&str>| {
        error_response(flavor, StatusCode::BAD_REQUEST, message, param)
    };
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("mock: body is not valid JSON: {e}"), None))?;
    if !json.is_object() {
        return Err(bad_request("mock: body must be a JSON object", None));
    }
    let model = match model_override {
        Some(model) => model.to_owned(),
        None => json
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("mock: `model` is required", Some("model")))?
            .to_owned(),
    };
    let behavior =
        Behavior::parse(&model, headers).map_err(|e| bad_request(&e.to_string(), Some("model")))?;
    if let Some(response) = shared.unauthorized(headers, flavor) {
        return Err(response);
    }
    if !behavior.ttfb.is_zero() {
        tokio::time::sleep(behavior.ttfb).await;
    }
    if behavior.hang {
        std::future::pending::<()>().await;
    }
    if let Some(status) = behavior.status {
        let mut response = error_response(
            flavor,
            status,
            &format!("mock: injected {}", status.as_u16()),
            None,
        );
        if matches!(status.as_u16(), 429 | 503 | 529) {
            response
                .headers_mut()
                .insert("retry-after", behavior.retry_after_secs.into());
        }
        return Err(response);
    }
    Ok((json, model, behavior))
}

/// A provider-shaped error: OpenAI `{"error":{message,type,param,code}}` or Anthropic
/// `{"type":"error","error":{type,message}}`.
pub fn error_response(
    flavor: Flavor,
    status: StatusCode,
    message: &str,
    param: Option<&str>,
) -> Response {
    let body = match flavor {
        Flavor::OpenAi => {
            let (kind, code) = match status.as_u16() {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                404 => ("invalid_request_error", Some("model_not_found")),
                429 => ("requests", Some("rate_limit_exceeded")),
                500..=599 => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
        }
        Flavor::Anthropic => {
            let kind = match status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                500..=599 => "api_error",
                _ => "invalid_request_error",
            };
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Flavor::Google => gemini::error_body(status, message),
        Flavor::Aws => {
            let mut response =
                (status, Json(serde_json::json!({"message": message}))).into_response();
            response.headers_mut().insert(
                "x-amzn-errortype",
                http::HeaderValue::from_static(bedrock::error_parts(status)),
            );
            return response;
        }
    };
    (status, Json(body)).into_response()
}

/// Prompt tokens under the mock's fixed rule (see the module docs).
pub fn prompt_tokens(body: &Value) -> u64 {
    fn walk(value: &Value, counted: bool) -> u64 {
        match value {
            Value::String(s) if counted => s.split_whitespace().count() as u64,
            Value::Number(_) if counted => 1,
            Value::Array(items) => items.iter().map(|v| walk(v, counted)).sum(),
            Value::Object(fields) => fields
                .iter()
                .map(|(k, v)| {
                    let text = matches!(
                        k.as_str(),
                        "content" | "text" | "system" | "prompt" | "input"
                    );
                    walk(v, text)
                })
                .sum(),
            _ => 0,
        }
    }
    walk(body, false)
}

/// The i-th content piece of every mock answer; joined they read "w0 w1 w2 ...".
pub fn piece(i: u32) -> String {
    if i == 0 {
        "w0".to_owned()
    } else {
        format!(" w{i}")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The name of the tool the mock will "call", if the request offers tools and does not
/// forbid calling them. A named `tool_choice` wins over the first tool.
fn chosen_tool(body: &Value, flavor: Flavor) -> Option<String> {
    let tools = body.get("tools")?.as_array()?;
    let choice = body.get("tool_choice");
    let forbidden = match flavor {
        Flavor::OpenAi => choice.and_then(Value::as_str) == Some("none"),
        Flavor::Anthropic | Flavor::Google | Flavor::Aws => {
            choice.and_then(|c| c.get("type")).and_then(Value::as_str) == Some("none")
        }
    };
    if forbidden {
        return None;
    }
    let named = match flavor {
        Flavor::OpenAi => choice.and_then(|c| c.pointer("/function/name")),
        Flavor::Anthropic | Flavor::Google | Flavor::Aws => choice.and_then(|c| c.get("name")),
    };
    if let Some(name) = named.and_then(Value::as_str) {
        return Some(name.to_owned());
    }
    let first = tools.first()?;
    let name = match flavor {
        Flavor::OpenAi => first.pointer("/function/name"),
        Flavor::Anthropic | Flavor::Google | Flavor::Aws => first.get("name"),
    };
    name.and_then(Value::as_str).map(str::to_owned)
}

/// The arguments of every mock tool call, streamed in these two pieces.
const TOOL_ARGUMENTS: [&str; 2] = ["{\"ok\":", "true}"];
