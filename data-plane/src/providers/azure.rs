//! Azure OpenAI: OpenAI's wire format on deployment-scoped URLs
//! (`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=…`) with an
//! `api-key` header. `base_url` is the resource endpoint, e.g.
//! `https://acme-eu.openai.azure.com`; `upstream_model` is the Azure deployment name.

use secrecy::ExposeSecret;

use super::openai::{json_call, stream_call};
use super::{CallCx, ChunkStream, JsonReply, JsonRequest, Provider, ProviderError};

#[derive(Debug, Clone, Copy, Default)]
pub struct Azure;

impl Provider for Azure {
    const KIND: &'static str = "azure";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "chat/completions"), req, cx).await
    }

    async fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        stream_call(post(cx, "chat/completions"), req, cx).await
    }

    async fn completions(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "completions"), req, cx).await
    }

    async fn completions_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        stream_call(post(cx, "completions"), req, cx).await
    }

    async fn embeddings(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "embeddings"), req, cx).await
    }

    /// Azure OpenAI serves the Responses lane natively.
    async fn responses(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        crate::lanes::responses::passthrough::call(req, cx).await
    }
}

fn post(cx: CallCx<'_>, operation: &str) -> reqwest::RequestBuilder {
    let d = cx.deployment;
    // api-version values are validated to be URL-safe when the snapshot is built.
    let url = format!(
        "{}/openai/deployments/{}/{operation}?api-version={}",
        d.base_url, d.upstream_model, d.api_version
    );
    let request = cx.http.post(url);
    match &d.credential {
        Some(key) => request.header("api-key", key.expose_secret()),
        None => request,
    }
}
