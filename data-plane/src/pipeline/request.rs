//! Step 0: read and check the request body before anything else looks at it.

use axum::body::Body;
use serde_json::{Map, Value};

use crate::providers::{Endpoint, JsonRequest};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("could not read the request body")]
    Unreadable,
    /// The body trickled in slower than `server.body_read_timeout_ms` allows.
    #[error("the request body did not arrive within {} ms", .limit_ms)]
    TimedOut { limit_ms: u128 },
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
}

fn invalid(message: impl Into<String>, param: &'static str) -> RequestError {
    RequestError::Invalid {
        message: message.into(),
        param: Some(param),
    }
}

/// Reads at most `limit` bytes of `body` and parses it as `endpoint` expects.
pub async fn read(
    body: Body,
    limit: usize,
    endpoint: Endpoint,
) -> Result<JsonRequest, RequestError> {
    parse(&read_bytes(body, limit).await?, endpoint)
}

/// Reads at most `limit` bytes of `body`.
pub async fn read_bytes(body: Body, limit: usize) -> Result<bytes::Bytes, RequestError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // axum reports an over-long body as a length-limit error somewhere in the chain.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return RequestError::TooLarge { limit };
            }
            if let Some(timeout) = err.downcast_ref::<tollgate_serve::BodyTimeout>() {
                return RequestError::TimedOut {
                    limit_ms: timeout.0.as_millis(),
                };
            }
            source = err.source();
        }
        RequestError::Unreadable
    })
}

pub fn parse(bytes: &[u8], endpoint: Endpoint) -> Result<JsonRequest, RequestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| RequestError::Invalid {
        message: format!("We could not parse the JSON body of your request: {e}"),
        param: None,
    })?;
    let Value::Object(body) = value else {
        return Err(RequestError::Invalid {
            message: "The request body must be a JSON object.".into(),
            param: None,
        });
    };
    match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(Value::String(_)) | None => {
            return Err(invalid("you must provide a model parameter", "model"));
        }
        Some(_) => return Err(invalid("model must be a string", "model")),
    }
    check_optional(&body, "stream", Value::is_boolean, "a boolean")?;
    for field in ["max_tokens", "max_completion_tokens", "max_output_tokens"] {
        check_optional(&body, field, Value::is_u64, "a non-negative integer")?;
    }
    match endpoint {
        Endpoint::Chat => check_messages(&body)?,
        Endpoint::Completions => {
            if body.get("prompt").is_none() {
                return Err(invalid("you must provide a prompt parameter", "prompt"));
            }
        }
        Endpoint::Embeddings => match body.get("input") {
            Some(Value::String(_)) => {}
            Some(Value::Array(items)) if !items.is_empty() => {}
            Some(_) => {
                return Err(invalid(
                    "input must be a non-empty string or array",
                    "input",
                ));
            }
            None => return Err(invalid("you must provide an input parameter", "input")),
        },
        Endpoint::Messages => crate::lanes::messages::check(&body, false)?,
        Endpoint::Responses => crate::lanes::responses::check(&body)?,
    }
    if body.get("stream_options").is_some()
        && body.get("stream").and_then(Value::as_bool) != Some(true)
    {
        return Err(invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    Ok(JsonRequest {
        body,
        output_ceiling: None,
    })
}

fn check_optional(
    body: &Map<String, Value>,
    field: &'static str,
    ok: fn(&Value) -> bool,
    what: &str,
) -> Result<(), RequestError> {
    match body.get(field) {
        Some(v) if !v.is_null() && !ok(v) => Err(invalid(format!("{field} must be {what}"), field)),
        _ => Ok(()),
    }
}

fn check_messages(body: &Map<String, Value>) -> Result<(), RequestError> {
    let Some(messages) = body.get("messages") else {
        return Err(invalid("you must provide a messages parameter", "messages"));
    };
    let Some(messages) = messages.as_array().filter(|m| !m.is_empty()) else {
        return Err(invalid("messages must be a non-empty array", "messages"));
    };
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(
            role,
            Some("system" | "developer" | "user" | "assistant" | "tool" | "function")
        ) {
            return Err(RequestError::Invalid {
                message: format!(
                    "messages[{i}].role must be one of system, developer, user, assistant, tool"
                ),
                param: Some("messages"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(result: Result<JsonRequest, RequestError>) -> Option<&'static str> {
        match result {
            Err(RequestError::Invalid { param, .. }) => param,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn valid_chat_parses() {
        let req = parse(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            Endpoint::Chat,
        )
        .unwrap();
        assert_eq!(req.model(), "m");
        assert!(req.stream());
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            param(parse(br#"{"messages":[]}"#, Endpoint::Chat)),
            Some("model")
        );
        assert_eq!(
            param(parse(br#"{"model":"m"}"#, Endpoint::Chat)),
            Some("messages")
        );
        assert_eq!(
            param(parse(br#"{"model":"m","messages":[]}"#, Endpoint::Chat)),
            Some("messages")
        );
        assert_eq!(
            param(parse(
                br#"{"model":"m","messages":[{"role":"robot"}]}"#,
                Endpoint::Chat
            )),
            Some("messages")
        );
        assert_eq!(
            param(parse(
                br#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#,
                Endpoint::Chat
            )),
            Some("max_tokens")
        );
        assert_eq!(
            param(parse(
                br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                Endpoint::Chat
            )),
            Some("stream")
        );
        assert_eq!(
            param(parse(br#"{"model":"m"}"#, Endpoint::Embeddings)),
            Some("input")
        );
        assert_eq!(
            param(parse(br#"{"model":"m"}"#, Endpoint::Completions)),
            Some("prompt")
        );
        assert_eq!(
            param(parse(br#"{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":true}}"#, Endpoint::Chat)),
            Some("stream_options")
        );
    }

    #[test]
    fn malformed_json_is_a_clear_error() {
        assert!(matches!(
            parse(b"{nope", Endpoint::Chat),
            Err(RequestError::Invalid { param: None, .. })
        ));
        assert!(matches!(
            parse(b"[1]", Endpoint::Chat),
            Err(RequestError::Invalid { param: None, .. })
        ));
    }
}
