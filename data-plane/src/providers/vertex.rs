//! Google Vertex AI. `base_url` is the regional API root of a project and location, e.g.
//! `https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-ml/locations/europe-west4`;
//! the credential is a service-account key file (`file:` or `env:` reference) from which
//! [`google_auth`] mints bearer tokens.
//!
//! Two model families, chosen by the upstream model's publisher:
//! - Gemini (`publishers/google/models/{model}:generateContent` /
//!   `:streamGenerateContent?alt=sse`): the Gemini API's format, translated by
//!   [`super::gemini`]; embeddings through the same module's `embedContent` shape are
//!   not served here (Vertex embeds through `:predict`), so they keep the opt-out;
//! - Anthropic's Claude (`claude-…`, `publishers/anthropic/models/{model}:rawPredict` /
//!   `:streamRawPredict`): Anthropic's Messages format without `model` and with
//!   `anthropic_version: "vertex-2023-10-16"`, translated by [`super::anthropic`].

use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use super::google_auth::{ServiceAccount, TOKENS};
use super::{
    CallCx, ChunkStream, JsonReply, JsonRequest, Provider, ProviderError, anthropic, gemini,
    read_json, send, sse,
};

/// The Messages version Vertex's Anthropic endpoint speaks.
const ANTHROPIC_VERTEX_VERSION: &str = "vertex-2023-10-16";

#[derive(Debug, Clone, Copy, Default)]
pub struct Vertex;

impl Provider for Vertex {
    const KIND: &'static str = "vertex";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        let model = &cx.deployment.upstream_model;
        if is_claude(model) {
            let body = claude_body(req, false)?;
            let response = send(post(cx, "anthropic", "rawPredict").await?.json(&body), cx).await?;
            return anthropic::response_body(&read_json(response, cx).await?);
        }
        let body = gemini::request_body(req)?;
        let response = send(post(cx, "google", "generateContent").await?.json(&body), cx).await?;
        gemini::response_body(&read_json(response, cx).await?, model)
    }

    async fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        let model = &cx.deployment.upstream_model;
        let deadline = Instant::now() + cx.deployment.timeouts.total;
        if is_claude(model) {
            let body = claude_body(req, true)?;
            let request = post(cx, "anthropic", "streamRawPredict").await?;
            let response = send(request.json(&body), cx).await?;
            return Ok(Box::pin(anthropic::translate_stream(sse::events(
                response, deadline,
            ))));
        }
        if req.body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
            return Err(ProviderError::Untranslatable {
                param: Some("n".into()),
                message: "streamed Gemini answers carry one candidate: `n` must be 1".into(),
            });
        }
        let body = gemini::request_body(req)?;
        let request = post(cx, "google", "streamGenerateContent?alt=sse").await?;
        let response = send(request.json(&body), cx).await?;
        Ok(Box::pin(gemini::translate_stream(
            sse::events(response, deadline),
            model.clone(),
        )))
    }
}

/// Claude models are published by Anthropic on Vertex (`claude-sonnet-4@20250514`).
fn is_claude(model: &str) -> bool {
    model.to_ascii_lowercase().starts_with("claude")
}

fn claude_body(
    req: &JsonRequest,
    stream: bool,
) -> Result<serde_json::Map<String, Value>, ProviderError> {
    let mut body = anthropic::request_body(req, "", stream)?;
    // The model is in the URL; Vertex refuses it in the body.
    body.remove("model");
    body.insert("anthropic_version".into(), ANTHROPIC_VERTEX_VERSION.into());
    Ok(body)
}

/// `POST {base_url}/publishers/{publisher}/models/{model}:{method}` with a bearer token
/// minted from the deployment's service account.
async fn post(
    cx: CallCx<'_>,
    publisher: &str,
    method: &str,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let d = cx.deployment;
    let credential = d.credential.as_ref().ok_or_else(|| {
        ProviderError::Credential("Vertex deployments need a service-account key".into())
    })?;
    let account = ServiceAccount::from_json(credential.expose_secret())?;
    let token = TOKENS.get(&account, cx.http).await?;
    Ok(cx
        .http
        .post(format!(
            "{}/publishers/{publisher}/models/{}:{method}",
            d.base_url, d.upstream_model
        ))
        .bearer_auth(token.expose_secret()))
}
