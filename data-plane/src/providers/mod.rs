//! Provider adapters: one module per provider behind one [`Provider`] trait, dispatched
//! through the closed [`Adapter`] enum. Adding a provider = one module, one variant, one
//! match arm per method.
//!
//! Adapters only translate and call. They know nothing of keys, budgets, Redis or
//! snapshots beyond the [`Deployment`] they are handed; they return OpenAI-shaped
//! results plus normalised [`Usage`], or a [`ProviderError`] that says whose fault it
//! was and whether trying elsewhere may help.
//!
//! OpenAI-compatible servers (vLLM, Ollama, Groq, Together, Mistral, DeepSeek,
//! OpenRouter, Gemini's OpenAI endpoint) use the [`openai`] adapter with their base URL:
//! speaking OpenAI's API is exactly what makes them compatible.

pub mod anthropic;
pub mod aws_sign;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod google_auth;
pub mod openai;
pub mod patched;
pub mod preset;
pub mod sse;
pub mod stream_samples;
pub mod urls;
pub mod vertex;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Map, Value};

use self::patched::PatchedBody;
use crate::money::Usage;
use crate::snapshot::{Deployment, ProviderKind};

/// Who caused a failure. Decides retry/fallback and the OpenAI error `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request itself is wrong; another deployment would refuse it too.
    Client,
    /// The provider failed or is overloaded; another attempt may succeed.
    Upstream,
    /// Tollgate itself is at fault (misconfiguration, a bug).
    Internal,
}

/// A validated OpenAI-shaped request body (chat, completions or embeddings). Adapters
/// read it and build what their provider wants; they never mutate the caller's copy.
#[derive(Debug, Clone)]
pub struct JsonRequest {
    pub body: Map<String, Value>,
    /// The output ceiling the budget reservation assumed, sent upstream when the client
    /// named no limit so that the reservation really is an upper bound.
    pub output_ceiling: Option<u64>,
}

impl JsonRequest {
    pub fn model(&self) -> &str {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// Did the client ask for the final usage chunk of a stream?
    pub fn include_usage(&self) -> bool {
        self.body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The output ceiling the reservation paid for: every adapter sends exactly this
    /// upstream (see [`apply_output_cap`]). The pipeline always sets it for generating
    /// endpoints; the client's own limit is only the fallback of requests built by hand.
    pub fn output_cap(&self) -> Option<u64> {
        self.output_ceiling.or_else(|| self.max_output_tokens())
    }

    /// `max_completion_tokens`, else `max_tokens`, else (the Responses API's)
    /// `max_output_tokens`, as the client sent them.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.body
            .get("max_completion_tokens")
            .or_else(|| self.body.get("max_tokens"))
            .or_else(|| self.body.get("max_output_tokens"))
            .and_then(Value::as_u64)
    }

    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
}

/// Writes the reserved output ceiling into an upstream body, so the provider can never
/// bill more output than was reserved: into each limit field the client used (a
/// clamping budget may have lowered it), or, when it named none, into `default_field`,
/// the one that provider honours. The one place adapters take their cap from.
pub fn apply_output_cap(body: &mut PatchedBody<'_>, cap: Option<u64>, default_field: &str) {
    let Some(cap) = cap else { return };
    let mut set = false;
    for field in ["max_completion_tokens", "max_tokens"] {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            body.insert(field, cap.into());
            set = true;
        } else {
            body.remove(field);
        }
    }
    if !set {
        body.insert(default_field, cap.into());
    }
}

/// What an adapter needs for one attempt.
#[derive(Debug, Clone, Copy)]
pub struct CallCx<'a> {
    /// Already configured with this deployment's connect timeout.
    pub http: &'a reqwest::Client,
    pub deployment: &'a Deployment,
    pub endpoint: Endpoint,
    /// Sent upstream as `x-request-id` so provider logs can be matched with ours.
    pub request_id: &'a str,
    /// W3C trace context to propagate, if the caller sent one.
    pub traceparent: Option<&'a str>,
}

/// A complete (non-streamed) answer in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct JsonReply {
    pub body: Value,
    /// `None` when the provider reported none (the gateway then estimates).
    pub usage: Option<Usage>,
}

/// One streamed event in OpenAI's chunk shape; on the lanes ([`Endpoint::Messages`],
/// [`Endpoint::Responses`]) one piece of the client's answer as it goes on the wire.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The JSON text that goes after `data: ` (no framing, no newline). On the lanes: the
    /// exact bytes the client receives (a whole SSE frame, or a whole JSON body).
    pub data: Bytes,
    /// Usage carried by this chunk, if any (normalised; for Anthropic the totals).
    pub usage: Option<Usage>,
    /// A chunk that only exists to carry usage (`"choices": []`); dropped when the
    /// client did not ask for `stream_options.include_usage`.
    pub usage_only: bool,
    /// Characters of generated text (content, tool-call arguments) in this chunk, for
    /// estimating output tokens when a provider reports no usage.
    pub text_chars: usize,
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, ProviderError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("upstream answered {status}: {message}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
        /// The provider's own error message (it is about the request, so the client may see it).
        message: String,
    },
    #[error("could not reach upstream")]
    Connect(#[source] reqwest::Error),
    #[error("upstream timed out before {0}")]
    Timeout(TimeoutPhase),
    #[error("upstream connection failed")]
    Transport(#[source] reqwest::Error),
    #[error("upstream sent something unexpected: {0}")]
    Protocol(String),
    #[error("upstream reported an error mid-stream: {0}")]
    InStream(String),
    #[error("{provider} deployments do not support {what}")]
    Unsupported {
        provider: &'static str,
        what: &'static str,
    },
    #[error("{message}")]
    Untranslatable {
        param: Option<String>,
        message: String,
    },
    /// The deployment's credential could not be turned into what the provider takes (a
    /// service-account key that does not parse, a token endpoint that refuses it).
    /// The message never quotes the credential.
    #[error("deployment credential unusable: {0}")]
    Credential(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    FirstByte,
    Completion,
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::FirstByte => "the first byte",
            Self::Completion => "the response completed",
        })
    }
}

impl ProviderError {
    pub fn fault(&self) -> Fault {
        match self {
            Self::Status { status, .. } => match status {
                // The provider refused Tollgate's credential for the deployment: a
                // misconfiguration of ours, never the tenant's fault.
                401 | 403 => Fault::Internal,
                408 | 409 | 429 => Fault::Upstream,
                400..=499 => Fault::Client,
                _ => Fault::Upstream,
            },
            Self::Connect(_)
            | Self::Timeout(_)
            | Self::Transport(_)
            | Self::Protocol(_)
            | Self::InStream(_) => Fault::Upstream,
            Self::Unsupported { .. } | Self::Untranslatable { .. } => Fault::Client,
            Self::Credential(_) => Fault::Internal,
        }
    }

    /// Worth trying again (here or on another deployment), before any byte reached the
    /// client: anything but the request's own fault (another deployment may hold a
    /// working credential).
    pub fn retryable(&self) -> bool {
        self.fault() != Fault::Client
    }

    /// The provider answered that the deployment's credential is bad.
    pub fn credential_refused(&self) -> bool {
        matches!(
            self,
            Self::Status {
                status: 401 | 403,
                ..
            }
        )
    }

    /// May the provider have billed the attempt? Yes unless it definitively answered
    /// with an error (which providers do not bill) or was never reached: a timeout, a
    /// connection lost mid-answer or an answer we could not read may all have been
    /// generated, and billed, in full.
    pub fn maybe_billed(&self) -> bool {
        match self {
            Self::Status { .. }
            | Self::Connect(_)
            | Self::Unsupported { .. }
            | Self::Untranslatable { .. }
            | Self::Credential(_) => false,
            Self::Timeout(_) | Self::Transport(_) | Self::Protocol(_) | Self::InStream(_) => true,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The one trait every adapter implements. Methods an adapter cannot serve keep the
/// default, which says so with [`ProviderError::Unsupported`].
pub trait Provider {
    const KIND: &'static str;

    fn chat(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> impl Future<Output = Result<JsonReply, ProviderError>> + Send;

    fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> impl Future<Output = Result<ChunkStream, ProviderError>> + Send;

    fn completions(
        &self,
        _req: &JsonRequest,
        _cx: CallCx<'_>,
    ) -> impl Future<Output = Result<JsonReply, ProviderError>> + Send {
        async {
            Err(ProviderError::Unsupported {
                provider: Self::KIND,
                what: "/v1/completions",
            })
        }
    }

    fn completions_stream(
        &self,
        _req: &JsonRequest,
        _cx: CallCx<'_>,
    ) -> impl Future<Output = Result<ChunkStream, ProviderError>> + Send {
        async {
            Err(ProviderError::Unsupported {
                provider: Self::KIND,
                what: "/v1/completions",
            })
        }
    }

    fn embeddings(
        &self,
        _req: &JsonRequest,
        _cx: CallCx<'_>,
    ) -> impl Future<Output = Result<JsonReply, ProviderError>> + Send {
        async {
            Err(ProviderError::Unsupported {
                provider: Self::KIND,
                what: "/v1/embeddings",
            })
        }
    }

    /// The Anthropic Messages lane; `req` is a Messages body. The answer's chunks are the
    /// client's bytes (see [`Chunk::data`]), one chunk for a JSON answer. By default the
    /// call is translated to chat and back, so every chat provider serves the lane;
    /// Anthropic's own adapter passes it through.
    fn messages(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> impl Future<Output = Result<ChunkStream, ProviderError>> + Send
    where
        Self: Sync,
    {
        crate::lanes::messages::via_chat(self, req, cx)
    }

    /// The OpenAI Responses lane; `req` is a Responses body, the answer as for
    /// [`Self::messages`]. By default translated to chat (stateless: stored-state fields
    /// are refused); OpenAI's and Azure's adapters pass it through.
    fn responses(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> impl Future<Output = Result<ChunkStream, ProviderError>> + Send
    where
        Self: Sync,
    {
        crate::lanes::responses::via_chat(self, req, cx)
    }
}

/// Which OpenAI endpoint a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic's Messages API.
    Messages,
    /// OpenAI's Responses API.
    Responses,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Self::Chat => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Messages => "/v1/messages",
            Self::Responses => "/v1/responses",
        }
    }
}

/// Closed set of adapters.
#[derive(Debug, Clone, Copy)]
pub enum Adapter {
    OpenAi(openai::OpenAi),
    Azure(azure::Azure),
    Anthropic(anthropic::Anthropic),
    Gemini(gemini::Gemini),
    Vertex(vertex::Vertex),
    Bedrock(bedrock::Bedrock),
}

/// An adapter's answer: a whole body, or a stream of chunks.
pub enum Reply {
    Json(JsonReply),
    Stream(ChunkStream),
}

impl Adapter {
    pub fn for_kind(kind: ProviderKind) -> Self {
        match kind {
            ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Self::OpenAi(openai::OpenAi),
            ProviderKind::AzureOpenAi => Self::Azure(azure::Azure),
            ProviderKind::Anthropic => Self::Anthropic(anthropic::Anthropic),
            ProviderKind::Gemini => Self::Gemini(gemini::Gemini),
            ProviderKind::Vertex => Self::Vertex(vertex::Vertex),
            ProviderKind::Bedrock => Self::Bedrock(bedrock::Bedrock),
        }
    }

    /// One attempt at `endpoint`, streamed when the request asks for it.
    pub async fn call(
        &self,
        endpoint: Endpoint,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<Reply, ProviderError> {
        macro_rules! dispatch {
            ($p:expr) => {
                match (endpoint, req.stream()) {
                    (Endpoint::Chat, false) => $p.chat(req, cx).await.map(Reply::Json),
                    (Endpoint::Chat, true) => $p.chat_stream(req, cx).await.map(Reply::Stream),
                    (Endpoint::Completions, false) => {
                        $p.completions(req, cx).await.map(Reply::Json)
                    }
                    (Endpoint::Completions, true) => {
                        $p.completions_stream(req, cx).await.map(Reply::Stream)
                    }
                    (Endpoint::Embeddings, _) => $p.embeddings(req, cx).await.map(Reply::Json),
                    (Endpoint::Messages, _) => $p.messages(req, cx).await.map(Reply::Stream),
                    (Endpoint::Responses, _) => $p.responses(req, cx).await.map(Reply::Stream),
                }
            };
        }
        match self {
            Self::OpenAi(p) => dispatch!(p),
            Self::Azure(p) => dispatch!(p),
            Self::Anthropic(p) => dispatch!(p),
            Self::Gemini(p) => dispatch!(p),
            Self::Vertex(p) => dispatch!(p),
            Self::Bedrock(p) => dispatch!(p),
        }
    }
}

/// Sends `request`, waiting at most the deployment's first-byte timeout for the
/// response head; maps transport failures and non-2xx answers to [`ProviderError`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    cx: CallCx<'_>,
) -> Result<reqwest::Response, ProviderError> {
    let mut request = request.header("x-request-id", cx.request_id);
    if let Some(traceparent) = cx.traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = tokio::time::timeout(cx.deployment.timeouts.first_byte, request.send())
        .await
        .map_err(|_| ProviderError::Timeout(TimeoutPhase::FirstByte))?
        .map_err(|e| {
            if e.is_connect() {
                ProviderError::Connect(e)
            } else if e.is_timeout() {
                ProviderError::Timeout(TimeoutPhase::FirstByte)
            } else {
                ProviderError::Transport(e)
            }
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The error body is small; a bounded wait keeps a trickling one from hanging us.
    let body = tokio::time::timeout(cx.deployment.timeouts.first_byte, response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| format!("upstream returned HTTP {}", status.as_u16()));
    Err(ProviderError::Status {
        status: status.as_u16(),
        retry_after,
        message,
    })
}

/// Reads a whole JSON body within the deployment's total timeout.
pub(crate) async fn read_json(
    response: reqwest::Response,
    cx: CallCx<'_>,
) -> Result<Value, ProviderError> {
    let bytes = tokio::time::timeout(cx.deployment.timeouts.total, response.bytes())
        .await
        .map_err(|_| ProviderError::Timeout(TimeoutPhase::Completion))?
        .map_err(ProviderError::Transport)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ProviderError::Protocol(format!("body is not JSON: {e}")))
}

/// The provider's message in an error body: OpenAI's `{"error": {"message": …}}`,
/// Anthropic's `{"type": "error", "error": {"message": …}}` and Google's put it in the
/// same place; AWS's JSON errors at the top (`{"message": …}`).
pub(crate) fn error_message(body: &Value) -> Option<String> {
    body.pointer("/error/message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// OpenAI's usage object → [`Usage`] (cached prompt tokens kept apart).
pub fn openai_usage(usage: &Value) -> Option<Usage> {
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64)?;
    let output = usage
        .get("completion_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(prompt);
    Some(Usage {
        input: prompt - cached,
        output,
        cache_read: cached,
        cache_write: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_usage_keeps_cached_tokens_apart() {
        let usage = openai_usage(&json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}}))
        .unwrap();
        assert_eq!(
            usage,
            Usage {
                input: 40,
                output: 7,
                cache_read: 60,
                cache_write: 0
            }
        );
        assert_eq!(openai_usage(&json!(null)), None);
    }

    #[test]
    fn faults_decide_retries() {
        let status = |status| ProviderError::Status {
            status,
            retry_after: None,
            message: String::new(),
        };
        assert!(status(429).retryable());
        assert!(status(503).retryable());
        assert!(status(500).retryable());
        assert!(!status(400).retryable());
        // Tollgate's own credential refused: fail over, it is not the caller's fault.
        assert!(status(401).retryable());
        assert_eq!(status(403).fault(), Fault::Internal);
        assert!(!status(500).maybe_billed());
        assert!(ProviderError::Timeout(TimeoutPhase::Completion).maybe_billed());
        assert_eq!(
            ProviderError::Timeout(TimeoutPhase::FirstByte).fault(),
            Fault::Upstream
        );
    }
}
