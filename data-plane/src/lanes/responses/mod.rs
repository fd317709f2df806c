//! The OpenAI Responses lane (`POST /v1/responses`). To OpenAI and Azure deployments
//! the call passes through ([`passthrough`]); to chat-only providers (Anthropic,
//! OpenAI-compatible servers) it is translated ([`to_chat`], [`from_chat`]) for text,
//! images, function tools and streaming. Tollgate stores no prompts or answers, so a
//! translated call refuses what needs stored state (`previous_response_id`, `store:
//! true`, `conversation`) and the provider-side built-in tools, naming the field.
//!
//! `background: true` is refused on every deployment: its usage arrives after the call
//! has ended, when nothing would meter it (no unmetered passthrough).

pub mod from_chat;
pub mod passthrough;
pub mod to_chat;

use serde_json::{Map, Value};

use crate::pipeline::request::RequestError;
use crate::providers::{CallCx, ChunkStream, Endpoint, JsonRequest, Provider, ProviderError};

/// Checks a Responses body beyond what every body must be: `input` is required.
pub fn check(body: &Map<String, Value>) -> Result<(), RequestError> {
    if body.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(RequestError::Invalid {
            message: "background: true is not supported by this gateway: a background response's usage arrives after the call, where it could not be metered. Call without `background`.".into(),
            param: Some("background"),
        });
    }
    match body.get("input") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(items)) if !items.is_empty() => Ok(()),
        _ => Err(RequestError::Invalid {
            message: "input must be a string or a non-empty array of input items".into(),
            param: Some("input"),
        }),
    }
}

/// The lane over a chat provider: the request translated to chat, the answer back.
pub async fn via_chat<P: Provider + Sync + ?Sized>(
    provider: &P,
    req: &JsonRequest,
    cx: CallCx<'_>,
) -> Result<ChunkStream, ProviderError> {
    let chat = to_chat::request(req)?;
    let cx = CallCx {
        endpoint: Endpoint::Chat,
        ..cx
    };
    let model = req.model().to_owned();
    if req.stream() {
        let chunks = provider.chat_stream(&chat, cx).await?;
        Ok(Box::pin(from_chat::stream(chunks, model)))
    } else {
        let reply = provider.chat(&chat, cx).await?;
        Ok(Box::pin(futures_util::stream::once(std::future::ready(
            from_chat::response(&reply, &model),
        ))))
    }
}
