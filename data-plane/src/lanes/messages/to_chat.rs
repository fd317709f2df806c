//! Request: Anthropic Messages → OpenAI chat. System prompt, turns of text, images
//! (base64 and URL), `tool_use` / `tool_result`, tools and tool choice, sampling and stop
//! sequences. What chat cannot express is refused with a 400 naming the field, never
//! dropped silently — except hints a chat model does without (`top_k`, `thinking`,
//! `cache_control`, `service_tier`), whose absence changes no answer's meaning.

use serde_json::{Map, Value, json};

use crate::providers::{JsonRequest, ProviderError};

fn refuse(param: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Untranslatable {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

/// The chat request for a Messages request. The output ceiling carries over as the
/// request's ceiling (the chat adapter writes it into the field its provider honours).
pub fn request(req: &JsonRequest) -> Result<JsonRequest, ProviderError> {
    let body = &req.body;
    for field in ["mcp_servers", "container"] {
        if body.get(field).is_some_and(|v| !v.is_null()) {
            return Err(refuse(
                field,
                format!("`{field}` is only served by Anthropic deployments of this model"),
            ));
        }
    }
    let mut chat = Map::new();
    chat.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    let mut messages = Vec::new();
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        messages.push(json!({"role": "system", "content": system_text(system)?}));
    }
    for (i, message) in req.messages().iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("assistant") => messages.push(assistant(message, i)?),
            _ => user(message, i, &mut messages)?,
        }
    }
    chat.insert("messages".into(), messages.into());
    for field in ["temperature", "top_p", "stream"] {
        if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
            chat.insert(field.into(), value.clone());
        }
    }
    if let Some(stop) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        chat.insert("stop".into(), stop.clone());
    }
    if let Some(user) = body
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .filter(|v| v.is_string())
    {
        chat.insert("user".into(), user.clone());
    }
    if let Some(tools) = body.get("tools").filter(|v| !v.is_null()) {
        chat.insert("tools".into(), self::tools(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        let (choice, parallel) = tool_choice(choice)?;
        chat.insert("tool_choice".into(), choice);
        if parallel == Some(false) {
            chat.insert("parallel_tool_calls".into(), false.into());
        }
    }
    Ok(JsonRequest {
        body: chat,
        output_ceiling: req.output_cap(),
    })
}

/// `system`: a string, or text blocks joined by blank lines.
fn system_text(system: &Value) -> Result<String, ProviderError> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b.get("type").and_then(Value::as_str) {
                Some("text") => Ok(text_of(b).to_owned()),
                _ => Err(refuse("system", "system blocks must be text blocks")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n\n")),
        _ => Err(refuse("system", "system must be a string or text blocks")),
    }
}

fn text_of(block: &Value) -> &str {
    block
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A user turn: its tool results become `tool` messages (which chat wants right after
/// the assistant's calls), the rest one user message.
fn user(message: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ProviderError> {
    let blocks = match message.get("content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(refuse(
                "messages",
                format!("messages.{i}.content is missing"),
            ));
        }
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": text_of(block)})),
            Some("image") => parts.push(image(block, i)?),
            Some("tool_result") => out.push(tool_result(block, i)?),
            other => return Err(unsupported(other, i)),
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

fn unsupported(kind: Option<&str>, i: usize) -> ProviderError {
    refuse(
        "messages",
        format!(
            "messages.{i}: content blocks of type `{}` are only served by Anthropic deployments of this model",
            kind.unwrap_or("(none)")
        ),
    )
}

/// An image block → an `image_url` part (base64 as a data URL).
fn image(block: &Value, i: usize) -> Result<Value, ProviderError> {
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            let data = source.get("data").and_then(Value::as_str);
            let (Some(media), Some(data)) = (media, data) else {
                return Err(refuse(
                    "messages",
                    format!("messages.{i}: a base64 image needs `media_type` and `data`"),
                ));
            };
            format!("data:{media};base64,{data}")
        }
        Some("url") => source
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                refuse(
                    "messages",
                    format!("messages.{i}: an image source needs `url`"),
                )
            })?
            .to_owned(),
        _ => {
            return Err(refuse(
                "messages",
                format!("messages.{i}: only base64 and url image sources can be translated"),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `tool_result` block → a `tool` message (its text; an error flagged in the text,
/// since chat has no such flag).
fn tool_result(block: &Value, i: usize) -> Result<Value, ProviderError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                "messages",
                format!("messages.{i}: tool_result needs `tool_use_id`"),
            )
        })?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(text_of(p)),
                _ => Err(refuse(
                    "messages",
                    format!("messages.{i}: only text tool results can be translated"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join("\n"),
        Some(_) => {
            return Err(refuse(
                "messages",
                format!("messages.{i}: bad tool_result content"),
            ));
        }
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text = format!("Error: {text}");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// An assistant turn: text joined, `tool_use` blocks as `tool_calls`; thinking blocks
/// (the assistant's own earlier reasoning) are not chat's to replay.
fn assistant(message: &Value, i: usize) -> Result<Value, ProviderError> {
    let blocks = match message.get("content") {
        Some(Value::String(s)) => return Ok(json!({"role": "assistant", "content": s})),
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(refuse(
                "messages",
                format!("messages.{i}.content is missing"),
            ));
        }
    };
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(text_of(block)),
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or_default(),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            Some("thinking" | "redacted_thinking") => {}
            other => return Err(unsupported(other, i)),
        }
    }
    let mut turn = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        turn["tool_calls"] = calls.into();
    }
    Ok(turn)
}

/// Client tools → functions. Anthropic's own tools (`web_search_…`, `bash_…`) run on
/// Anthropic's side and have no chat equivalent.
fn tools(tools: &Value) -> Result<Value, ProviderError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| refuse("tools", "tools must be an array"))?;
    tools
        .iter()
        .map(|tool| {
            if tool.get("type").and_then(Value::as_str).is_some_and(|t| t != "custom") {
                return Err(refuse(
                    "tools",
                    "Anthropic's built-in tools are only served by Anthropic deployments of this model",
                ));
            }
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| refuse("tools", "every tool needs a `name`"))?;
            let mut function = json!({"name": name});
            if let Some(description) = tool.get("description") {
                function["description"] = description.clone();
            }
            function["parameters"] = tool
                .get("input_schema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            Ok(json!({"type": "function", "function": function}))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// `tool_choice` → chat's, and whether parallel calls are allowed.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ProviderError> {
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disabled| !disabled);
    let chat = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice.get("name").and_then(Value::as_str).ok_or_else(|| {
                refuse("tool_choice", "tool_choice of type `tool` needs a `name`")
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(refuse(
                "tool_choice",
                "tool_choice.type must be auto, any, tool or none",
            ));
        }
    };
    Ok((chat, parallel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, ProviderError> {
        let req = JsonRequest {
            body: body.as_object().cloned().unwrap_or_default(),
            output_ceiling: Some(50),
        };
        request(&req).map(|r| {
            assert_eq!(r.output_ceiling, Some(50));
            Value::Object(r.body)
        })
    }

    fn refused(body: Value) -> String {
        match translate(body) {
            Err(ProviderError::Untranslatable { param, .. }) => param.unwrap_or_default(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn system_text_and_sampling_translate() {
        let chat = translate(json!({"model": "m", "max_tokens": 9,
            "system": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "b"}],
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_k": 3, "stop_sequences": ["x"], "stream": true,
            "metadata": {"user_id": "u1"}}))
        .unwrap();
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "a\n\nb"})
        );
        assert_eq!(
            chat["messages"][1],
            json!({"role": "user", "content": "hi"})
        );
        assert_eq!(chat["temperature"], 0.5);
        assert_eq!(chat["stop"], json!(["x"]));
        assert_eq!(chat["user"], "u1");
        assert_eq!(chat["stream"], true);
        // The ceiling travels beside the body; the adapter writes its own field.
        assert!(chat.get("max_tokens").is_none());
        assert!(chat.get("top_k").is_none());
    }

    #[test]
    fn tool_use_and_results_round_trip_into_chat_order() {
        let chat = translate(json!({"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "cold"}]},
                {"type": "text", "text": "thanks"}]}],
            "tools": [{"name": "weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}}))
        .unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(
            messages[1]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(messages[1]["content"], "checking");
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "cold"})
        );
        assert_eq!(messages[3]["content"][0]["text"], "thanks");
        assert_eq!(
            chat["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["parallel_tool_calls"], false);
    }

    #[test]
    fn images_become_image_url_parts() {
        let chat = translate(json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}))
        .unwrap();
        assert_eq!(
            chat["messages"][0]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
        assert_eq!(
            chat["messages"][0]["content"][1]["image_url"]["url"],
            "https://x/y.png"
        );
    }

    #[test]
    fn what_chat_cannot_say_is_refused_by_name() {
        let user = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            refused(json!({"model": "m", "messages": user, "mcp_servers": []})),
            "mcp_servers"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
            ),
            "tools"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]})
            ),
            "messages"
        );
        assert_eq!(
            refused(json!({"model": "m", "messages": user, "tool_choice": {"type": "tool"}})),
            "tool_choice"
        );
    }
}
