//! The Anthropic Messages lane (`POST /v1/messages`). To Anthropic deployments the call
//! passes through ([`passthrough`]): only `model` and `max_tokens` are rewritten, and the
//! answer, JSON or SSE, reaches the client byte for byte. To every other provider it is
//! translated to chat ([`to_chat`]) and the answer back into Anthropic's shapes and event
//! grammar ([`from_chat`]).

pub mod from_chat;
pub mod passthrough;
pub mod to_chat;

use serde_json::{Map, Value};

use crate::money::Usage;
use crate::pipeline::request::RequestError;
use crate::providers::{CallCx, ChunkStream, Endpoint, JsonRequest, Provider, ProviderError};

/// Checks a Messages body beyond what every body must be (`model`, `stream`): the
/// fields the API requires, so a bad request is refused before it is metered.
/// `count_only`: `count_tokens` takes no `max_tokens`.
pub fn check(body: &Map<String, Value>, count_only: bool) -> Result<(), RequestError> {
    let invalid = |message: String, param: &'static str| RequestError::Invalid {
        message,
        param: Some(param),
    };
    if !count_only && !body.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(invalid(
            "max_tokens: Field required (a non-negative integer)".into(),
            "max_tokens",
        ));
    }
    let Some(messages) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return Err(invalid(
            "messages: at least one message is required".into(),
            "messages",
        ));
    };
    for (i, message) in messages.iter().enumerate() {
        if !matches!(
            message.get("role").and_then(Value::as_str),
            Some("user" | "assistant")
        ) {
            return Err(invalid(
                format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                "messages",
            ));
        }
        match message.get("content") {
            Some(Value::String(_) | Value::Array(_)) => {}
            _ => {
                return Err(invalid(
                    format!(
                        "messages.{i}.content: Input should be a string or a list of content blocks"
                    ),
                    "messages",
                ));
            }
        }
    }
    match body.get("system") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => Ok(()),
        Some(_) => Err(invalid(
            "system: Input should be a string or a list of text blocks".into(),
            "system",
        )),
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
            from_chat::message(&reply, &model),
        ))))
    }
}

/// Anthropic's usage object (cumulative: every field it names replaces ours).
pub fn update_usage(usage: &mut Usage, reported: &Value) {
    let fields: [(&str, &mut u64); 4] = [
        ("input_tokens", &mut usage.input),
        ("output_tokens", &mut usage.output),
        ("cache_read_input_tokens", &mut usage.cache_read),
        ("cache_creation_input_tokens", &mut usage.cache_write),
    ];
    for (name, field) in fields {
        if let Some(value) = reported.get(name).and_then(Value::as_u64) {
            *field = value;
        }
    }
}

/// [`Usage`] in Anthropic's shape (`input_tokens` excludes the cache's).
pub fn usage_json(usage: &Usage) -> Value {
    serde_json::json!({
        "input_tokens": usage.input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(body: Value, count_only: bool) -> Option<&'static str> {
        match check(body.as_object().unwrap(), count_only) {
            Ok(()) => None,
            Err(RequestError::Invalid { param, .. }) => param,
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_fields_are_named() {
        let user = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            param(json!({"model": "m", "messages": user}), false),
            Some("max_tokens")
        );
        assert_eq!(param(json!({"model": "m", "messages": user}), true), None);
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 1, "messages": []}),
                false
            ),
            Some("messages")
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "system", "content": "x"}]}),
                false
            ),
            Some("messages")
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user"}]}),
                false
            ),
            Some("messages")
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 1, "messages": user, "system": 3}),
                false
            ),
            Some("system")
        );
        assert_eq!(
            param(
                json!({"model": "m", "max_tokens": 1, "messages": user}),
                false
            ),
            None
        );
    }

    #[test]
    fn usage_is_replaced_field_by_field() {
        let mut usage = Usage::default();
        update_usage(
            &mut usage,
            &json!({"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 1}),
        );
        update_usage(&mut usage, &json!({"output_tokens": 7}));
        assert_eq!(
            usage,
            Usage {
                input: 10,
                output: 7,
                cache_read: 4,
                cache_write: 0
            }
        );
    }
}
