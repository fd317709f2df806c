//! The lanes: client surfaces other than OpenAI's chat that the gateway meters through
//! the same eight steps — Anthropic's Messages API ([`messages`]) and OpenAI's Responses
//! API ([`responses`]). A lane passes through to the provider family that speaks it
//! natively (the client's bytes back unchanged) and is translated to and from chat for
//! every other provider, so a lane's client can use any model its key may use.
//!
//! Adapters answer a lane with a [`crate::providers::ChunkStream`] whose chunks are the
//! client's bytes as they go on the wire: one chunk for a JSON answer, one SSE frame per
//! chunk for a stream. Usage rides on the chunks as on chat.

pub mod frames;
pub mod messages;
pub mod responses;

use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::providers::{Endpoint, JsonRequest};

tokio::task_local! {
    /// The client's headers that a passthrough forwards (`anthropic-version`,
    /// `anthropic-beta`, `openai-beta`). Set around step 6 by the lane's handler: the
    /// adapters' signatures stay those of chat, which has no such headers to forward.
    static CLIENT_HEADERS: HeaderMap;
}

/// Headers a passthrough may forward; nothing else of the client's (least of all its
/// Tollgate key) goes upstream.
const FORWARDED: &[&str] = &["anthropic-version", "anthropic-beta", "openai-beta"];

/// Runs `step` (the forward step) with the client's forwardable headers at hand.
pub async fn with_client_headers<F: Future>(headers: &HeaderMap, step: F) -> F::Output {
    let mut kept = HeaderMap::new();
    for name in FORWARDED {
        for value in headers.get_all(*name) {
            kept.append(*name, value.clone());
        }
    }
    CLIENT_HEADERS.scope(kept, step).await
}

/// The client's value of a forwardable header, when called within [`with_client_headers`].
pub fn client_header(name: &str) -> Option<String> {
    CLIENT_HEADERS
        .try_with(|headers| {
            let values: Vec<&str> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(","))
        })
        .ok()
        .flatten()
}

/// A lane request as the chat prompt it amounts to, for the estimate (step 2): every
/// field the provider reads as prompt lands where [`crate::tokenize`] counts chat. The
/// view is lenient — a field a translation would refuse is still counted — since it
/// only has to bound the prompt, not be sent.
pub fn prompt_view(req: &JsonRequest, endpoint: Endpoint) -> Map<String, Value> {
    let body = &req.body;
    let mut messages = Vec::new();
    let mut view = Map::new();
    let (system, turns, extra): (&str, &str, &[&str]) = match endpoint {
        Endpoint::Messages => ("system", "messages", &["tools", "tool_choice"]),
        Endpoint::Responses => (
            "instructions",
            "input",
            &["tools", "tool_choice", "text", "prompt"],
        ),
        _ => return body.clone(),
    };
    if let Some(system) = body.get(system).filter(|s| !s.is_null()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    match body.get(turns) {
        Some(Value::Array(items)) => {
            for item in items {
                if item.get("content").is_some() {
                    messages.push(item.clone());
                } else {
                    // A Responses item that is not a message (a function call or its
                    // output): its JSON text.
                    messages.push(json!({"role": "user", "content": item.to_string()}));
                }
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => messages.push(json!({"role": "user", "content": other})),
    }
    view.insert("messages".into(), Value::Array(messages));
    for field in extra {
        if let Some(value) = body.get(*field) {
            // Under the chat names the tokenizer reads as prompt.
            let name = match *field {
                "text" => "response_format",
                "prompt" => "prediction",
                other => other,
            };
            view.insert(name.into(), value.clone());
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: Value) -> JsonRequest {
        JsonRequest {
            body: body.as_object().cloned().unwrap_or_default(),
            output_ceiling: None,
        }
    }

    #[test]
    fn a_messages_body_is_counted_as_its_chat_prompt() {
        let view = prompt_view(
            &req(json!({"model": "m", "max_tokens": 5, "system": "be brief",
                "messages": [{"role": "user", "content": "hello"}],
                "tools": [{"name": "t", "input_schema": {}}]})),
            Endpoint::Messages,
        );
        assert_eq!(
            view["messages"],
            json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}])
        );
        assert!(view.contains_key("tools"));
        assert!(!view.contains_key("max_tokens"));
    }

    #[test]
    fn responses_input_string_items_and_calls_are_all_counted() {
        let view = prompt_view(
            &req(json!({"model": "m", "instructions": "sys", "input": "hi"})),
            Endpoint::Responses,
        );
        assert_eq!(
            view["messages"][1],
            json!({"role": "user", "content": "hi"})
        );
        let view = prompt_view(
            &req(json!({"model": "m", "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call_output", "call_id": "c", "output": "42"}]})),
            Endpoint::Responses,
        );
        assert_eq!(view["messages"].as_array().map(Vec::len), Some(2));
        assert!(
            view["messages"][1]["content"]
                .as_str()
                .unwrap()
                .contains("42")
        );
    }
}
