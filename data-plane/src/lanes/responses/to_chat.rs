//! Request: OpenAI Responses → OpenAI chat, for providers that only speak chat.
//! `instructions`, `input` (a string, or messages with text and image parts, function
//! calls and their outputs), function tools and tool choice, sampling, `text.format`.
//! Stored state and built-in tools are refused with a 400 naming the field: Tollgate
//! stores no prompts or answers, and a chat provider runs no OpenAI-side tools.

use serde_json::{Map, Value, json};

use crate::providers::{JsonRequest, ProviderError};

fn refuse(param: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Untranslatable {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

/// Fields that need state stored at the provider, and when they do.
fn refuse_stored_state(body: &Map<String, Value>) -> Result<(), ProviderError> {
    let set = |field: &str| body.get(field).is_some_and(|v| !v.is_null());
    for field in ["previous_response_id", "conversation", "prompt"] {
        if set(field) {
            return Err(refuse(
                field,
                format!(
                    "`{field}` needs state stored by the provider, which this model's deployment (a chat provider, translated by Tollgate) does not keep; send the whole conversation in `input` instead"
                ),
            ));
        }
    }
    if body.get("store").and_then(Value::as_bool) == Some(true) {
        return Err(refuse(
            "store",
            "`store: true` cannot be honoured: this model's deployment is a chat provider translated by Tollgate, which stores no responses; send `store: false`",
        ));
    }
    Ok(())
}

pub fn request(req: &JsonRequest) -> Result<JsonRequest, ProviderError> {
    let body = &req.body;
    refuse_stored_state(body)?;
    let mut chat = Map::new();
    chat.insert(
        "model".into(),
        body.get("model").cloned().unwrap_or_default(),
    );
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(item, i, &mut messages)?;
            }
        }
        _ => {
            return Err(refuse(
                "input",
                "input must be a string or an array of items",
            ));
        }
    }
    chat.insert("messages".into(), messages.into());
    for field in [
        "temperature",
        "top_p",
        "stream",
        "parallel_tool_calls",
        "user",
    ] {
        if let Some(value) = body.get(field).filter(|v| !v.is_null()) {
            chat.insert(field.into(), value.clone());
        }
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array)
        && !tools.is_empty()
    {
        chat.insert("tools".into(), self::tools(tools)?);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        chat.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(format) = body
        .get("text")
        .and_then(|t| t.get("format"))
        .filter(|v| !v.is_null())
        && let Some(format) = response_format(format)?
    {
        chat.insert("response_format".into(), format);
    }
    Ok(JsonRequest {
        body: chat,
        output_ceiling: req.output_cap(),
    })
}

/// One `input` item onto the chat messages. Consecutive function calls share one
/// assistant message, as chat wants them.
fn input_item(item: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), ProviderError> {
    let kind = item.get("type").and_then(Value::as_str);
    match kind {
        None | Some("message") => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(role @ ("user" | "assistant" | "system" | "developer")) => role,
                _ => {
                    return Err(refuse(
                        "input",
                        format!("input[{i}].role must be user, assistant, system or developer"),
                    ));
                }
            };
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => content_parts(parts, i, role)?,
                _ => {
                    return Err(refuse(
                        "input",
                        format!("input[{i}].content must be a string or an array of parts"),
                    ));
                }
            };
            out.push(json!({"role": role, "content": content}));
        }
        Some("function_call") => {
            let call = json!({
                "id": item.get("call_id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": item.get("name").cloned().unwrap_or_default(),
                    "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
                },
            });
            let merge = out.last_mut().filter(|m| {
                m.get("role").and_then(Value::as_str) == Some("assistant")
                    && m.get("tool_calls").is_some()
            });
            match merge {
                Some(last) => {
                    if let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        calls.push(call);
                    }
                }
                None => {
                    out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}))
                }
            }
        }
        Some("function_call_output") => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            out.push(json!({"role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or_default(), "content": output}));
        }
        Some("item_reference") => {
            return Err(refuse(
                "input",
                format!(
                    "input[{i}]: item references need stored state, which a translated deployment does not keep"
                ),
            ));
        }
        Some(other) => {
            return Err(refuse(
                "input",
                format!(
                    "input[{i}]: items of type `{other}` are only served by OpenAI deployments of this model"
                ),
            ));
        }
    }
    Ok(())
}

fn content_parts(parts: &[Value], i: usize, role: &str) -> Result<Value, ProviderError> {
    let mut out = Vec::new();
    let mut text_only = String::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                let text = part.get("text").and_then(Value::as_str).unwrap_or_default();
                text_only.push_str(text);
                out.push(json!({"type": "text", "text": text}));
            }
            Some("input_image") => {
                let url = part.get("image_url").and_then(Value::as_str).ok_or_else(|| {
                    refuse("input", format!("input[{i}]: only images given by `image_url` can be translated (not `file_id`)"))
                })?;
                let mut image = json!({"url": url});
                if let Some(detail) = part.get("detail").filter(|d| d.as_str() != Some("auto")) {
                    image["detail"] = detail.clone();
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some("refusal") => {}
            other => {
                return Err(refuse(
                    "input",
                    format!(
                        "input[{i}]: content parts of type `{}` are only served by OpenAI deployments of this model",
                        other.unwrap_or("(none)")
                    ),
                ));
            }
        }
    }
    // Chat takes an assistant's turn as text, not parts.
    Ok(if role == "assistant" {
        text_only.into()
    } else {
        out.into()
    })
}

fn tools(tools: &[Value]) -> Result<Value, ProviderError> {
    tools
        .iter()
        .map(|tool| match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = json!({"name": tool.get("name").cloned().unwrap_or_default()});
                for field in ["description", "parameters", "strict"] {
                    if let Some(value) = tool.get(field).filter(|v| !v.is_null()) {
                        function[field] = value.clone();
                    }
                }
                Ok(json!({"type": "function", "function": function}))
            }
            other => Err(refuse("tools", format!(
                "the built-in tool `{}` runs at OpenAI and is only served by OpenAI deployments of this model; use function tools",
                other.unwrap_or("(none)")
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn tool_choice(choice: &Value) -> Result<Value, ProviderError> {
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(_) if choice.get("type").and_then(Value::as_str) == Some("function") => Ok(
            json!({"type": "function", "function": {"name": choice.get("name").cloned().unwrap_or_default()}}),
        ),
        _ => Err(refuse(
            "tool_choice",
            "tool_choice must be auto, none, required or a function",
        )),
    }
}

/// `text.format` → chat's `response_format` (`None` for plain text).
fn response_format(format: &Value) -> Result<Option<Value>, ProviderError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema =
                json!({"name": format.get("name").cloned().unwrap_or_else(|| json!("response"))});
            for field in ["schema", "strict", "description"] {
                if let Some(value) = format.get(field).filter(|v| !v.is_null()) {
                    schema[field] = value.clone();
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(refuse(
            "text",
            "text.format.type must be text, json_object or json_schema",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, ProviderError> {
        let req = JsonRequest {
            body: body.as_object().cloned().unwrap_or_default(),
            output_ceiling: Some(40),
        };
        request(&req).map(|r| {
            assert_eq!(r.output_ceiling, Some(40));
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
    fn instructions_and_a_string_input_become_two_messages() {
        let chat = translate(json!({"model": "m", "instructions": "be brief", "input": "hi", "stream": true, "temperature": 0.2})).unwrap();
        assert_eq!(
            chat["messages"],
            json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        );
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["temperature"], 0.2);
    }

    #[test]
    fn items_with_images_calls_and_outputs_translate_in_order() {
        let chat = translate(json!({"model": "m", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"}],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}})).unwrap();
        let messages = chat["messages"].as_array().unwrap();
        assert_eq!(
            messages[0]["content"][1]["image_url"],
            json!({"url": "data:image/png;base64,AA", "detail": "low"})
        );
        assert_eq!(messages[1]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "c1", "content": "one"})
        );
        assert_eq!(chat["tools"][0]["function"]["name"], "f");
        assert_eq!(chat["tool_choice"]["function"]["name"], "f");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "x");
    }

    #[test]
    fn stored_state_and_built_in_tools_are_refused_by_name() {
        assert_eq!(
            refused(json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"})),
            "previous_response_id"
        );
        assert_eq!(
            refused(json!({"model": "m", "input": "hi", "store": true})),
            "store"
        );
        assert!(translate(json!({"model": "m", "input": "hi", "store": false})).is_ok());
        assert_eq!(
            refused(json!({"model": "m", "input": "hi", "conversation": "conv_1"})),
            "conversation"
        );
        assert_eq!(
            refused(json!({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})),
            "tools"
        );
        assert_eq!(
            refused(json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})),
            "input"
        );
        assert_eq!(
            refused(
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})
            ),
            "input"
        );
    }
}
