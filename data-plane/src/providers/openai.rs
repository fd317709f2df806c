//! OpenAI, and every server that speaks its API (`base_url` ends in `/v1`, e.g.
//! `https://api.openai.com/v1`, `http://vllm:8000/v1`, `https://api.groq.com/openai/v1`).
//! The request goes upstream as the client sent it, with the deployment's model name;
//! streams always ask for usage so the gateway can settle exactly.
//!
//! An `openai_compatible` deployment may name a [`super::preset`]: its server's quirks
//! (auth header, the output-limit field it honours, whether streams report usage, whether
//! `n` is served) are applied here, as data; nothing else differs.

use bytes::Bytes;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::patched::PatchedBody;
use super::preset::{AuthHeader, StreamUsage};
use super::sse::{self, SseEvent};
use super::{
    CallCx, Chunk, ChunkStream, Endpoint, JsonReply, JsonRequest, Provider, ProviderError,
    apply_output_cap, openai_usage, read_json, send,
};
use crate::snapshot::ProviderKind;

#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAi;

impl Provider for OpenAi {
    const KIND: &'static str = "openai";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "/chat/completions"), req, cx).await
    }

    async fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        stream_call(post(cx, "/chat/completions"), req, cx).await
    }

    async fn completions(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "/completions"), req, cx).await
    }

    async fn completions_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        stream_call(post(cx, "/completions"), req, cx).await
    }

    async fn embeddings(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<JsonReply, ProviderError> {
        json_call(post(cx, "/embeddings"), req, cx).await
    }

    /// OpenAI serves the Responses lane natively; OpenAI-compatible servers mostly do
    /// not, so they get it translated to chat.
    async fn responses(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        if cx.deployment.provider == ProviderKind::OpenAiCompatible {
            crate::lanes::responses::via_chat(self, req, cx).await
        } else {
            crate::lanes::responses::passthrough::call(req, cx).await
        }
    }
}

fn post(cx: CallCx<'_>, path: &str) -> reqwest::RequestBuilder {
    let base = &cx.deployment.base_url;
    let request = match cx.deployment.urls.get(base, path) {
        Some(url) => cx.http.post(url),
        None => cx.http.post(format!("{base}{path}")),
    };
    match (&cx.deployment.credential, cx.deployment.quirks().auth) {
        (Some(key), AuthHeader::Bearer) => request.bearer_auth(key.expose_secret()),
        (Some(key), AuthHeader::Named(header)) => request.header(header, key.expose_secret()),
        (None, _) => request,
    }
}

/// Refuses, before anything goes upstream, what the deployment's server cannot serve.
fn check_supported(req: &JsonRequest, cx: CallCx<'_>) -> Result<(), ProviderError> {
    let n = req.body.get("n").and_then(Value::as_u64).unwrap_or(1);
    match cx.deployment.preset {
        Some(preset) if n > 1 && !preset.quirks().supports_n => Err(ProviderError::Unsupported {
            provider: preset.name(),
            what: "n > 1 (several answers per call)",
        }),
        _ => Ok(()),
    }
}

/// The client's body with the deployment's model, and for streams `include_usage` on.
pub(super) fn upstream_body<'r>(
    req: &'r JsonRequest,
    cx: CallCx<'_>,
    model_field: bool,
) -> PatchedBody<'r> {
    let mut body = PatchedBody::new(&req.body);
    if model_field {
        body.insert("model", Value::String(cx.deployment.upstream_model.clone()));
    } else {
        // Azure names the model in the URL.
        body.remove("model");
    }
    let quirks = cx.deployment.quirks();
    if cx.deployment.preset.is_some() {
        // The server honours one field only: the cap goes there, the other is dropped.
        body.remove("max_completion_tokens");
        body.remove("max_tokens");
        if let Some(cap) = req.output_cap() {
            body.insert(quirks.max_tokens_field, cap.into());
        }
    } else {
        apply_output_cap(&mut body, req.output_cap(), cap_field(cx));
    }
    if req.stream() {
        match quirks.stream_usage {
            StreamUsage::WhenAsked => {
                let mut options = body
                    .get("stream_options")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                if let Some(fields) = options.as_object_mut() {
                    fields.insert("include_usage".into(), Value::Bool(true));
                }
                body.insert("stream_options", options);
            }
            // The gateway settles from the last chunk's usage, or counts the text.
            StreamUsage::Always | StreamUsage::Never => {
                body.remove("stream_options");
            }
        }
    }
    body
}

pub(super) async fn json_call(
    request: reqwest::RequestBuilder,
    req: &JsonRequest,
    cx: CallCx<'_>,
) -> Result<JsonReply, ProviderError> {
    check_supported(req, cx)?;
    let model_field = !request_is_azure(cx);
    let response = send(request.json(&upstream_body(req, cx, model_field)), cx).await?;
    let body = read_json(response, cx).await?;
    let usage = body.get("usage").and_then(openai_usage);
    Ok(JsonReply { body, usage })
}

pub(super) async fn stream_call(
    request: reqwest::RequestBuilder,
    req: &JsonRequest,
    cx: CallCx<'_>,
) -> Result<ChunkStream, ProviderError> {
    check_supported(req, cx)?;
    let model_field = !request_is_azure(cx);
    let deadline = Instant::now() + cx.deployment.timeouts.total;
    let response = send(request.json(&upstream_body(req, cx, model_field)), cx).await?;
    let chunks = sse::events(response, deadline)
        .map(|event| event.and_then(|e| chunk(&e)))
        // `[DONE]` ends the stream: the gateway writes its own terminator.
        .take_while(|item| std::future::ready(!matches!(item, Ok(None))))
        .filter_map(|item| std::future::ready(item.transpose()));
    Ok(Box::pin(chunks))
}

/// Where the output ceiling goes when the client named no limit. OpenAI and Azure
/// OpenAI refuse `max_tokens` for reasoning models and honour `max_completion_tokens`
/// for all chat models; OpenAI-compatible servers (vLLM, Ollama, Groq, …) and the legacy
/// completions endpoint only know `max_tokens`.
fn cap_field(cx: CallCx<'_>) -> &'static str {
    let chat = cx.endpoint == Endpoint::Chat;
    match cx.deployment.provider {
        ProviderKind::OpenAi | ProviderKind::AzureOpenAi if chat => "max_completion_tokens",
        _ => "max_tokens",
    }
}

fn request_is_azure(cx: CallCx<'_>) -> bool {
    cx.deployment.provider == ProviderKind::AzureOpenAi
}

/// One OpenAI SSE event → a [`Chunk`]; `Ok(None)` for the `[DONE]` terminator.
pub fn chunk(event: &SseEvent) -> Result<Option<Chunk>, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(None);
    }
    let json: Value = serde_json::from_str(data)
        .map_err(|e| ProviderError::Protocol(format!("stream chunk is not JSON: {e}")))?;
    if let Some(error) = json.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(ProviderError::InStream(message.to_owned()));
    }
    let usage = json.get("usage").and_then(openai_usage);
    let choices = json.get("choices").and_then(Value::as_array);
    let usage_only = usage.is_some() && choices.is_none_or(Vec::is_empty);
    let text_chars = choices.map_or(0, |choices| {
        choices
            .iter()
            .map(|c| {
                let delta = c.get("delta");
                let content = delta
                    .and_then(|d| d.get("content"))
                    .and_then(Value::as_str)
                    .map_or(0, str::len);
                let text = c.get("text").and_then(Value::as_str).map_or(0, str::len);
                let arguments = delta
                    .and_then(|d| d.get("tool_calls"))
                    .and_then(Value::as_array)
                    .map_or(0, |calls| {
                        calls
                            .iter()
                            .filter_map(|t| {
                                t.pointer("/function/arguments").and_then(Value::as_str)
                            })
                            .map(str::len)
                            .sum()
                    });
                content + text + arguments
            })
            .sum()
    });
    Ok(Some(Chunk {
        data: Bytes::copy_from_slice(data.as_bytes()),
        usage,
        usage_only,
        text_chars,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: &str) -> SseEvent {
        SseEvent {
            event: "message".into(),
            data: data.into(),
        }
    }

    #[test]
    fn content_chunks_pass_through_verbatim() {
        let data = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"héllo"}}]}"#;
        let chunk = chunk(&event(data)).unwrap().unwrap();
        assert_eq!(chunk.data, data.as_bytes());
        assert!(!chunk.usage_only);
        assert_eq!(chunk.text_chars, "héllo".len());
    }

    #[test]
    fn the_usage_chunk_is_recognised() {
        let data = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
        let chunk = chunk(&event(data)).unwrap().unwrap();
        assert!(chunk.usage_only);
        assert_eq!(chunk.usage.unwrap().output, 2);
    }

    #[test]
    fn done_ends_and_errors_surface() {
        assert!(chunk(&event("[DONE]")).unwrap().is_none());
        let err = chunk(&event(r#"{"error":{"message":"overloaded"}}"#)).unwrap_err();
        assert!(matches!(err, ProviderError::InStream(m) if m == "overloaded"));
        assert!(matches!(
            chunk(&event("{oops")),
            Err(ProviderError::Protocol(_))
        ));
    }
}
