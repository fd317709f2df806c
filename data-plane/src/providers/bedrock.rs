//! AWS Bedrock's Converse API (`POST {base_url}/model/{model}/converse`, and
//! `/converse-stream` whose body is AWS's binary event stream), SigV4-signed per request
//! ([`super::aws_sign`]) for the deployment's `cloud_region`. `base_url` is e.g.
//! `https://bedrock-runtime.us-east-1.amazonaws.com`; `upstream_model` a model or
//! inference-profile id (`anthropic.claude-3-5-haiku-20241022-v1:0`). Converse is one
//! format for every model family on Bedrock, Anthropic's included.
//!
//! Translated: system prompts, roles, text and base64 images, tools (`toolSpec`), tool
//! calls and results (`toolUse` / `toolResult`), the reserved output ceiling
//! (`inferenceConfig.maxTokens`), usage with cache reads and writes (`usage`, and the
//! stream's `metadata` event). Refused: `n` > 1, log probabilities, audio, legacy
//! `functions`, image URLs (Converse takes bytes only). Dropped as Anthropic's adapter
//! does: `response_format` (no JSON mode in Converse; the model still sees the
//! instructions) and tuning fields Converse has no place for.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::aws_sign::{AwsCredentials, Scope};
use super::{
    CallCx, Chunk, ChunkStream, JsonReply, JsonRequest, Provider, ProviderError, TimeoutPhase,
    read_json, send,
};
use crate::money::Usage;

#[derive(Debug, Clone, Copy, Default)]
pub struct Bedrock;

/// One ConverseStream's translation state.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    /// Converse content-block index → OpenAI `tool_calls` index.
    tool_calls: HashMap<u64, usize>,
    /// The `metadata` event (usage) or an exception arrived.
    pub ended: bool,
}

impl Provider for Bedrock {
    const KIND: &'static str = "bedrock";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        let body = request_body(req)?;
        let response = send(signed(cx, "converse", &body)?, cx).await?;
        response_body(
            &read_json(response, cx).await?,
            &cx.deployment.upstream_model,
        )
    }

    async fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        let body = request_body(req)?;
        let deadline = Instant::now() + cx.deployment.timeouts.total;
        let response = send(signed(cx, "converse-stream", &body)?, cx).await?;
        let model = cx.deployment.upstream_model.clone();
        Ok(Box::pin(translate_stream(
            messages(response, deadline),
            model,
        )))
    }
}

/// The request, signed: SigV4 covers the exact bytes sent, so the body is serialised once.
fn signed(
    cx: CallCx<'_>,
    operation: &str,
    body: &Value,
) -> Result<reqwest::RequestBuilder, ProviderError> {
    let d = cx.deployment;
    let credential = d.credential.as_ref().ok_or_else(|| {
        ProviderError::Credential("Bedrock deployments need AWS credentials".into())
    })?;
    let credentials = AwsCredentials::parse(credential.expose_secret())?;
    // The model id is one path segment; ':' (in every versioned id) must be escaped.
    let model: String = d
        .upstream_model
        .bytes()
        .map(|b| match b {
            b':' => "%3A".to_owned(),
            b => char::from(b).to_string(),
        })
        .collect();
    let url = format!("{}/model/{model}/{operation}", d.base_url);
    let bytes = serde_json::to_vec(body)
        .map_err(|e| ProviderError::Protocol(format!("request not serialisable: {e}")))?;
    let headers = [("content-type", "application/json")];
    let signature = credentials.sign(
        "POST",
        &url,
        &headers,
        &bytes,
        Scope {
            service: "bedrock",
            region: &d.cloud_region,
            time: SystemTime::now(),
        },
    )?;
    let mut request = cx
        .http
        .post(url)
        .header("content-type", "application/json")
        .body(bytes);
    for (name, value) in signature {
        request = request.header(name, value);
    }
    Ok(request)
}

fn untranslatable(param: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Untranslatable {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Request: OpenAI chat → Converse
// ---------------------------------------------------------------------------------------

pub fn request_body(req: &JsonRequest) -> Result<Value, ProviderError> {
    let body = &req.body;
    let set = |name: &str| body.get(name).is_some_and(|v| !v.is_null());
    if set("n") && body.get("n").and_then(Value::as_u64) != Some(1) {
        return Err(untranslatable(
            "n",
            "Bedrock Converse returns one choice: `n` must be 1",
        ));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) || set("top_logprobs") {
        return Err(untranslatable(
            "logprobs",
            "Bedrock Converse returns no log probabilities",
        ));
    }
    if set("audio") {
        return Err(untranslatable(
            "modalities",
            "Bedrock Converse produces no audio here",
        ));
    }
    for legacy in ["functions", "function_call"] {
        if set(legacy) {
            return Err(untranslatable(
                legacy,
                format!("`{legacy}` is not supported here; use `tools`"),
            ));
        }
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in req.messages().iter().enumerate() {
        let (role, blocks) = match str_of(message, "role") {
            "system" | "developer" => {
                for block in content_blocks(message.get("content"), i)? {
                    system.push(block);
                }
                continue;
            }
            "user" => ("user", content_blocks(message.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(message, i)?),
            "tool" => ("user", vec![tool_result(message, i)?]),
            other => {
                return Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: unknown role {other:?}"),
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let mut out = Map::new();
    out.insert(
        "messages".into(),
        turns
            .into_iter()
            .map(|(role, content)| json!({ "role": role, "content": content }))
            .collect::<Vec<_>>()
            .into(),
    );
    if !system.is_empty() {
        out.insert("system".into(), system.into());
    }
    let mut inference = Map::new();
    if let Some(cap) = req.output_cap() {
        inference.insert("maxTokens".into(), cap.into());
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = body.get(from).filter(|v| v.is_number()) {
            inference.insert(to.into(), v.clone());
        }
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            inference.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            inference.insert("stopSequences".into(), list.clone().into());
        }
        Some(_) => return Err(untranslatable("stop", "`stop` must be a string or strings")),
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), inference.into());
    }
    if let Some(config) = tool_config(body.get("tools"), body.get("tool_choice"))? {
        out.insert("toolConfig".into(), config);
    }
    Ok(out.into())
}

fn content_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ProviderError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| !(str_of(p, "type") == "text" && str_of(p, "text").is_empty()))
            .map(|p| match str_of(p, "type") {
                "text" => Ok(json!({ "text": str_of(p, "text") })),
                "image_url" => image_block(p, i),
                other => Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: content parts of type {other:?} are not supported"),
                )),
            })
            .collect(),
        Some(_) => Err(untranslatable(
            "messages",
            format!("messages[{i}]: content must be a string or an array of parts"),
        )),
    }
}

/// A base64 data URL → an image block; Converse takes no URLs to fetch.
fn image_block(part: &Value, i: usize) -> Result<Value, ProviderError> {
    let url = part
        .get("image_url")
        .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
        .unwrap_or_default();
    let refused = || {
        untranslatable(
            "messages",
            format!(
                "messages[{i}]: Bedrock takes images as base64 data URLs of png, jpeg, gif or webp"
            ),
        )
    };
    let (media_type, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(header, data)| Some((header.strip_suffix(";base64")?, data)))
        .ok_or_else(refused)?;
    let format = match media_type {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err(refused()),
    };
    Ok(json!({ "image": { "format": format, "source": { "bytes": data } } }))
}

fn assistant_blocks(message: &Value, i: usize) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = content_blocks(message.get("content"), i)?;
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let input: Value = serde_json::from_str(if arguments.trim().is_empty() {
            "{}"
        } else {
            arguments
        })
        .map_err(|_| {
            untranslatable(
                "messages",
                format!("messages[{i}]: tool call arguments are not JSON"),
            )
        })?;
        blocks.push(json!({ "toolUse": {
            "toolUseId": str_of(call, "id"),
            "name": call.pointer("/function/name").and_then(Value::as_str).unwrap_or_default(),
            "input": input,
        }}));
    }
    Ok(blocks)
}

fn tool_result(message: &Value, i: usize) -> Result<Value, ProviderError> {
    let text = match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().map(|p| str_of(p, "text")).collect(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(untranslatable(
                "messages",
                format!("messages[{i}]: bad tool result"),
            ));
        }
    };
    let content = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => json!([{ "json": object }]),
        _ => json!([{ "text": text }]),
    };
    Ok(json!({ "toolResult": {
        "toolUseId": str_of(message, "tool_call_id"),
        "content": content,
    }}))
}

fn tool_config(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<Option<Value>, ProviderError> {
    let Some(list) = tools.and_then(Value::as_array).filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    // Converse has no "none": offering no tools is how a call forbids them.
    if choice.and_then(Value::as_str) == Some("none") {
        return Ok(None);
    }
    let specs = list
        .iter()
        .map(|tool| {
            if str_of(tool, "type") != "function" {
                return Err(untranslatable("tools", "only function tools are supported"));
            }
            let f = tool.get("function").unwrap_or(&Value::Null);
            let mut spec = json!({
                "name": str_of(f, "name"),
                "inputSchema": { "json": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})) },
            });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                spec["description"] = d.clone();
            }
            Ok(json!({ "toolSpec": spec }))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = json!({ "tools": specs });
    match choice {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match s.as_str() {
            "auto" => config["toolChoice"] = json!({ "auto": {} }),
            "required" => config["toolChoice"] = json!({ "any": {} }),
            other => {
                return Err(untranslatable(
                    "tool_choice",
                    format!("unknown tool_choice {other:?}"),
                ));
            }
        },
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| untranslatable("tool_choice", "tool_choice names no function"))?;
            config["toolChoice"] = json!({ "tool": { "name": name } });
        }
    }
    Ok(Some(config))
}

// ---------------------------------------------------------------------------------------
// Response: Converse → chat.completion
// ---------------------------------------------------------------------------------------

pub fn response_body(response: &Value, model: &str) -> Result<JsonReply, ProviderError> {
    let blocks = response
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ProviderError::Protocol("the response has no output.message.content".into())
        })?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.get_or_insert_default().push_str(t);
        } else if let Some(call) = block.get("toolUse") {
            tool_calls.push(json!({
                "id": str_of(call, "toolUseId"),
                "type": "function",
                "function": {
                    "name": str_of(call, "name"),
                    "arguments": call.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            }));
        }
    }
    let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
    if !tool_calls.is_empty() {
        message["tool_calls"] = tool_calls.into();
    }
    let usage = response.get("usage").and_then(usage_of);
    let mut body = json!({
        "id": format!("chatcmpl-bedrock-{}", unix_now()),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(response.get("stopReason").and_then(Value::as_str)),
        }],
    });
    if let Some(usage) = &usage {
        body["usage"] = openai_usage_json(usage);
    }
    Ok(JsonReply { body, usage })
}

fn finish_reason(reason: Option<&str>) -> Value {
    match reason {
        None => Value::Null,
        Some("max_tokens" | "model_context_window_exceeded") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("guardrail_intervened" | "content_filtered") => "content_filter".into(),
        Some(_) => "stop".into(),
    }
}

/// Converse's `usage`: `inputTokens` excludes cache reads and writes, reported apart.
pub fn usage_of(usage: &Value) -> Option<Usage> {
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    usage.get("inputTokens").and_then(Value::as_u64)?;
    Some(Usage {
        input: count("inputTokens"),
        output: count("outputTokens"),
        cache_read: count("cacheReadInputTokens"),
        cache_write: count("cacheWriteInputTokens"),
    })
}

fn openai_usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_total(),
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": { "cached_tokens": usage.cache_read },
    })
}

// ---------------------------------------------------------------------------------------
// Streaming: application/vnd.amazon.eventstream → chat.completion.chunk
// ---------------------------------------------------------------------------------------

/// The event-stream messages of `response` (prelude and message CRCs checked by
/// `aws-smithy-eventstream`) until it ends, fails, or `deadline` passes.
fn messages(
    response: reqwest::Response,
    deadline: Instant,
) -> impl Stream<Item = Result<Message, ProviderError>> + Send {
    let state = (
        Box::pin(response.bytes_stream()),
        BytesMut::new(),
        MessageFrameDecoder::new(),
    );
    futures_util::stream::unfold(Some(state), move |state| async move {
        let (mut body, mut buffer, mut decoder) = state?;
        loop {
            match decoder.decode_frame(&mut buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    return Some((Ok(message), Some((body, buffer, decoder))));
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    return Some((
                        Err(ProviderError::Protocol(format!(
                            "bad event-stream frame: {e}"
                        ))),
                        None,
                    ));
                }
            }
            match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => {
                    return Some((Err(ProviderError::Timeout(TimeoutPhase::Completion)), None));
                }
                Ok(None) => return None,
                Ok(Some(Ok(bytes))) => buffer.extend_from_slice(&bytes),
                Ok(Some(Err(e))) => return Some((Err(ProviderError::Transport(e)), None)),
            }
        }
    })
}

/// Translates event-stream messages until `metadata` (usage) or an exception; a stream
/// that ends before `metadata` was cut short.
pub fn translate_stream(
    messages: impl Stream<Item = Result<Message, ProviderError>> + Send + 'static,
    model: String,
) -> impl Stream<Item = Result<Chunk, ProviderError>> + Send + 'static {
    let state = (
        Box::pin(messages),
        StreamTranslator::new(model),
        VecDeque::new(),
    );
    futures_util::stream::unfold(Some(state), |state| async move {
        let (mut messages, mut translator, mut pending) = state?;
        loop {
            if let Some(chunk) = pending.pop_front() {
                return Some((Ok(chunk), Some((messages, translator, pending))));
            }
            if translator.ended {
                return None;
            }
            let chunks = match messages.next().await {
                Some(Ok(message)) => translator.on_message(&message),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Protocol(
                    "the stream ended before its metadata event".into(),
                )),
            };
            match chunks {
                Ok(chunks) => pending.extend(chunks),
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

impl StreamTranslator {
    pub fn new(model: String) -> Self {
        Self {
            id: format!("chatcmpl-bedrock-{}", unix_now()),
            model,
            created: unix_now(),
            tool_calls: HashMap::new(),
            ended: false,
        }
    }

    pub fn on_message(&mut self, message: &Message) -> Result<Vec<Chunk>, ProviderError> {
        let data: Value = serde_json::from_slice(message.payload())
            .map_err(|e| ProviderError::Protocol(format!("event payload is not JSON: {e}")))?;
        if header(message, ":message-type") != Some("event") {
            self.ended = true;
            let kind = header(message, ":exception-type")
                .or_else(|| header(message, ":error-code"))
                .unwrap_or("exception");
            let text = data
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(ProviderError::InStream(format!("{kind}: {text}")));
        }
        let index = data
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(match header(message, ":event-type").unwrap_or_default() {
            "messageStart" => vec![self.chunk(
                json!({ "role": "assistant", "content": "" }),
                Value::Null,
                0,
            )],
            "contentBlockStart" => match data.pointer("/start/toolUse") {
                Some(call) => {
                    let ordinal = self.tool_calls.len();
                    self.tool_calls.insert(index, ordinal);
                    vec![self.chunk(
                        json!({ "tool_calls": [{ "index": ordinal, "id": str_of(call, "toolUseId"), "type": "function",
                            "function": { "name": str_of(call, "name"), "arguments": "" } }] }),
                        Value::Null,
                        0,
                    )]
                }
                None => Vec::new(),
            },
            "contentBlockDelta" => {
                let delta = data.get("delta").unwrap_or(&Value::Null);
                if let Some(text) = delta.get("text").and_then(Value::as_str) {
                    vec![self.chunk(json!({ "content": text }), Value::Null, text.len())]
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str)
                {
                    let ordinal = *self.tool_calls.get(&index).ok_or_else(|| {
                        ProviderError::Protocol(format!(
                            "tool input for block {index}, which is not a tool call"
                        ))
                    })?;
                    vec![self.chunk(
                        json!({ "tool_calls": [{ "index": ordinal, "function": { "arguments": input } }] }),
                        Value::Null,
                        input.len(),
                    )]
                } else {
                    Vec::new()
                }
            }
            "messageStop" => {
                let reason = finish_reason(data.get("stopReason").and_then(Value::as_str));
                vec![self.chunk(json!({}), reason, 0)]
            }
            "metadata" => {
                self.ended = true;
                let usage = data.get("usage").and_then(usage_of);
                match usage {
                    Some(usage) => {
                        let body = json!({
                            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": openai_usage_json(&usage),
                        });
                        vec![Chunk {
                            data: Bytes::from(body.to_string()),
                            usage: Some(usage),
                            usage_only: true,
                            text_chars: 0,
                        }]
                    }
                    None => Vec::new(),
                }
            }
            // contentBlockStop, and event types newer than this adapter.
            _ => Vec::new(),
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Value, text_chars: usize) -> Chunk {
        let body = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        });
        Chunk {
            data: Bytes::from(body.to_string()),
            usage: None,
            usage_only: false,
            text_chars,
        }
    }
}

#[cfg(test)]
mod tests;
