//! Anthropic's Messages API (`POST {base_url}/messages`, `base_url` like
//! `https://api.anthropic.com/v1`), translated to and from OpenAI's chat format.
//!
//! This module owns the whole translation, both ways: the OpenAI chat request becomes a
//! Messages request ([`request_body`]), a message becomes a `chat.completion`
//! ([`response_body`]), and Anthropic's typed SSE events become `chat.completion.chunk`s
//! ([`StreamTranslator`]). Only chat is served: Anthropic has no embeddings endpoint and
//! its legacy Text Completions API is deprecated, so those keep the trait's `Unsupported`
//! defaults.
//!
//! What is deliberately not translated:
//! - refused, because dropping them would silently change what the client gets back:
//!   `n` other than 1, `logprobs`/`top_logprobs`, audio output, the legacy
//!   `functions`/`function_call`, and content parts other than text and images;
//! - dropped, because they only tune or decorate the answer and Anthropic has no
//!   equivalent: `frequency_penalty`, `presence_penalty`, `logit_bias`, `seed`,
//!   `service_tier`, `store`, `stream_options` (Anthropic always reports usage),
//!   `reasoning_effort`, `prediction`, and `response_format` (json_object/json_schema
//!   would need Anthropic's beta structured outputs; the model still sees the client's
//!   instructions, the schema is simply not enforced). Any other field is dropped too:
//!   Anthropic rejects fields it does not know.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::sse::{self, SseEvent};
use super::{
    CallCx, Chunk, ChunkStream, JsonReply, JsonRequest, Provider, ProviderError, read_json, send,
};
use crate::money::Usage;

/// Sent when the request names no output limit, because Anthropic requires one. 4096 is
/// within every current Claude model's output ceiling, so it is never refused as too large.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The API version whose formats this module speaks.
const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug, Clone, Copy, Default)]
pub struct Anthropic;

/// One stream's translation state. Anthropic names the message id and model only in
/// `message_start`, numbers content blocks across text and tools, and reports usage as
/// running totals, so every chunk depends on what came before.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    started: bool,
    /// Latest totals; each field is replaced, never added to.
    usage: Usage,
    /// Anthropic content-block index → OpenAI `tool_calls` index (tools counted alone).
    tool_calls: HashMap<u64, usize>,
    /// `message_stop` or an error arrived: nothing more is to be translated.
    pub ended: bool,
}

/// One Anthropic turn being assembled; consecutive messages of a role share one.
#[derive(Debug)]
struct Turn {
    role: &'static str,
    content: Vec<Value>,
}

impl Provider for Anthropic {
    const KIND: &'static str = "anthropic";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        let body = request_body(req, &cx.deployment.upstream_model, false)?;
        let response = send(post(cx).json(&body), cx).await?;
        response_body(&read_json(response, cx).await?)
    }

    async fn chat_stream(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        let body = request_body(req, &cx.deployment.upstream_model, true)?;
        let deadline = Instant::now() + cx.deployment.timeouts.total;
        let response = send(post(cx).json(&body), cx).await?;
        Ok(Box::pin(translate_stream(sse::events(response, deadline))))
    }

    /// Anthropic speaks the Messages lane natively: passed through.
    async fn messages(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<ChunkStream, ProviderError> {
        crate::lanes::messages::passthrough::call(req, cx).await
    }
}

fn post(cx: CallCx<'_>) -> reqwest::RequestBuilder {
    // `.json()` adds `content-type: application/json`.
    let request = cx
        .http
        .post(format!("{}/messages", cx.deployment.base_url))
        .header("anthropic-version", ANTHROPIC_VERSION);
    match &cx.deployment.credential {
        Some(key) => request.header("x-api-key", key.expose_secret()),
        None => request,
    }
}

fn untranslatable(param: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Untranslatable {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

/// The `type` tag of a part, block or event.
fn kind_of(value: &Value) -> Option<&str> {
    value.get("type").and_then(Value::as_str)
}

/// The string at `key`; empty when absent, as a missing text or name is nothing to send.
fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------------------------------
// Request: OpenAI chat → Anthropic Messages
// ---------------------------------------------------------------------------------------

/// The Messages request for `req`, naming `model`; `stream` is the caller's decision, not
/// the body's, so a JSON call can never be answered with SSE.
pub fn request_body(
    req: &JsonRequest,
    model: &str,
    stream: bool,
) -> Result<Map<String, Value>, ProviderError> {
    let body = &req.body;
    refuse_untranslatable_fields(body)?;

    let (system, messages) = translate_messages(req.messages())?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    out.insert(
        "max_tokens".into(),
        req.output_cap().unwrap_or(DEFAULT_MAX_TOKENS).into(),
    );
    if let Some(system) = system {
        out.insert("system".into(), system.into());
    }
    out.insert("messages".into(), messages.into());

    if let Some(temperature) = body.get("temperature").and_then(Value::as_f64) {
        // OpenAI's scale goes to 2, Anthropic's to 1 (it refuses more); the top of one
        // range is the closest meaning of anything above 1 on the other.
        out.insert("temperature".into(), temperature.clamp(0.0, 1.0).into());
    }
    if let Some(top_p) = body.get("top_p").filter(|v| v.is_number()) {
        out.insert("top_p".into(), top_p.clone());
    }
    if let Some(stop) = stop_sequences(body.get("stop"))? {
        out.insert("stop_sequences".into(), stop.into());
    }
    if let Some(tools) = tools(body.get("tools"))? {
        // A tool choice without tools means nothing, and Anthropic refuses it.
        let parallel = body.get("parallel_tool_calls").and_then(Value::as_bool);
        if let Some(choice) = tool_choice(body.get("tool_choice"), parallel)? {
            out.insert("tool_choice".into(), choice);
        }
        out.insert("tools".into(), tools.into());
    }
    let user = body.get("user").and_then(Value::as_str).or_else(|| {
        body.get("metadata")
            .and_then(|m| m.get("user"))
            .and_then(Value::as_str)
    });
    if let Some(user) = user {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    if stream {
        out.insert("stream".into(), true.into());
    }
    Ok(out)
}

/// Fields whose loss would change the answer's shape or meaning are refused up front.
fn refuse_untranslatable_fields(body: &Map<String, Value>) -> Result<(), ProviderError> {
    let set = |name: &str| body.get(name).is_some_and(|v| !v.is_null());
    if set("n") && body.get("n").and_then(Value::as_u64) != Some(1) {
        return Err(untranslatable(
            "n",
            "Anthropic returns one choice per request: `n` must be 1",
        ));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) || set("top_logprobs") {
        return Err(untranslatable(
            "logprobs",
            "Anthropic does not return log probabilities",
        ));
    }
    let wants_audio = body
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m.as_str() == Some("audio")));
    if set("audio") || wants_audio {
        return Err(untranslatable(
            "modalities",
            "Anthropic models do not produce audio",
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
    Ok(())
}

/// The system prompt and the alternating turns. Anthropic takes the system prompt apart
/// from the conversation and requires user and assistant turns to alternate.
fn translate_messages(messages: &[Value]) -> Result<(Option<String>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = str_of(message, "role");
        let (role, content) = match role {
            "system" | "developer" => {
                let text = plain_text(message.get("content"), i)?;
                if !text.is_empty() {
                    system.push(text);
                }
                continue;
            }
            "user" => ("user", content_blocks(message.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(message, i)?),
            // Anthropic carries tool results inside the user's turn.
            "tool" => ("user", vec![tool_result(message, i)?]),
            other => {
                return Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: role `{other}` cannot be sent to Anthropic"),
                ));
            }
        };
        // Anthropic refuses empty turns; a message with nothing to say adds nothing.
        if content.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => turns.push(Turn { role, content }),
        }
    }
    if !turns.iter().any(|t| t.role == "user") {
        return Err(untranslatable(
            "messages",
            "at least one user message with content is required",
        ));
    }
    let turns = turns
        .into_iter()
        .map(|mut turn| {
            // Anthropic wants a user turn's tool results before anything else in it (the
            // sort is stable, so the order within each group is kept).
            turn.content
                .sort_by_key(|block| kind_of(block) != Some("tool_result"));
            json!({ "role": turn.role, "content": turn.content })
        })
        .collect();
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    Ok((system, turns))
}

/// The text of a system message: a string, or text parts read as one text (as OpenAI does).
fn plain_text(content: Option<&Value>, i: usize) -> Result<String, ProviderError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match kind_of(part) {
                Some("text") => Ok(str_of(part, "text")),
                other => Err(unsupported_part(other, i)),
            })
            .collect(),
        Some(_) => Err(bad_content(i)),
    }
}

/// User (or tool-result) content as Anthropic blocks: text and images.
fn content_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ProviderError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text_block(text).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                match kind_of(part) {
                    Some("text") => {
                        blocks.extend(text_block(str_of(part, "text")));
                    }
                    Some("image_url") => blocks.push(image_block(part, i)?),
                    other => return Err(unsupported_part(other, i)),
                }
            }
            Ok(blocks)
        }
        Some(_) => Err(bad_content(i)),
    }
}

/// Anthropic refuses empty text blocks, so empty text yields none.
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// `image_url` (a data URL or an http(s) URL) → an image block.
fn image_block(part: &Value, i: usize) -> Result<Value, ProviderError> {
    // The spec makes `image_url` an object; some clients send the bare URL string.
    let url = part
        .get("image_url")
        .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
        .ok_or_else(|| {
            untranslatable(
                "messages",
                format!("messages[{i}]: image part without a URL"),
            )
        })?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest
            .split_once(',')
            .and_then(|(header, data)| Some((header.strip_suffix(";base64")?, data)))
            .ok_or_else(|| {
                untranslatable(
                    "messages",
                    format!(
                        "messages[{i}]: image data URLs must be base64 (`data:<type>;base64,…`)"
                    ),
                )
            })?;
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(untranslatable(
        "messages",
        format!("messages[{i}]: image URLs must be http(s) or base64 data URLs"),
    ))
}

/// An assistant message: its text, then its tool calls as `tool_use` blocks.
fn assistant_blocks(message: &Value, i: usize) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = match message.get("content") {
        Some(Value::Array(parts)) => {
            let mut blocks = Vec::with_capacity(parts.len());
            for part in parts {
                // A refusal the model gave earlier is, to Anthropic, just what it said.
                let text = match kind_of(part) {
                    Some("text") => part.get("text"),
                    Some("refusal") => part.get("refusal"),
                    other => return Err(unsupported_part(other, i)),
                };
                blocks.extend(text_block(text.and_then(Value::as_str).unwrap_or_default()));
            }
            blocks
        }
        other => content_blocks(other, i)?,
    };
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => return Err(bad_content(i)),
    };
    for call in calls {
        let id = call.get("id").and_then(Value::as_str);
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let (Some(id), Some(name)) = (id, name) else {
            return Err(untranslatable(
                "messages",
                format!("messages[{i}]: every tool call needs an `id` and a `function.name`"),
            ));
        };
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Clients send "" for a call without arguments; Anthropic wants an object.
        let input = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(arguments)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    untranslatable(
                        "messages",
                        format!(
                            "messages[{i}]: the arguments of tool call `{id}` are not a JSON object"
                        ),
                    )
                })?
        };
        blocks.push(json!({ "type": "tool_use", "id": id, "name": name, "input": input }));
    }
    Ok(blocks)
}

/// A `tool` message → a `tool_result` block.
fn tool_result(message: &Value, i: usize) -> Result<Value, ProviderError> {
    let id = message
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            untranslatable(
                "messages",
                format!("messages[{i}]: tool message without `tool_call_id`"),
            )
        })?;
    let mut block = json!({ "type": "tool_result", "tool_use_id": id });
    // A result may be empty (the tool printed nothing), but an empty text block may not.
    let content = match message.get("content") {
        Some(Value::String(text)) => (!text.is_empty()).then(|| Value::from(text.as_str())),
        other => Some(content_blocks(other, i)?)
            .filter(|blocks| !blocks.is_empty())
            .map(Value::from),
    };
    if let Some(content) = content {
        block["content"] = content;
    }
    Ok(block)
}

fn unsupported_part(kind: Option<&str>, i: usize) -> ProviderError {
    untranslatable(
        "messages",
        format!(
            "messages[{i}]: content parts of type `{}` cannot be sent to Anthropic",
            kind.unwrap_or("(none)")
        ),
    )
}

fn bad_content(i: usize) -> ProviderError {
    untranslatable(
        "messages",
        format!("messages[{i}]: `content` must be a string or an array of parts"),
    )
}

/// `stop` (a string or strings) → `stop_sequences`; nothing when there are none.
fn stop_sequences(stop: Option<&Value>) -> Result<Option<Vec<Value>>, ProviderError> {
    let sequences = match stop {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => vec![Value::from(s.as_str())],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.clone(),
        Some(_) => {
            return Err(untranslatable(
                "stop",
                "`stop` must be a string or an array of strings",
            ));
        }
    };
    Ok((!sequences.is_empty()).then_some(sequences))
}

/// OpenAI function tools → Anthropic tools; nothing when there are none.
fn tools(tools: Option<&Value>) -> Result<Option<Vec<Value>>, ProviderError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(untranslatable("tools", "`tools` must be an array")),
    };
    let translated = tools
        .iter()
        .map(|tool| {
            let name = tool
                .pointer("/function/name")
                .and_then(Value::as_str)
                .filter(|_| kind_of(tool) == Some("function"))
                .ok_or_else(|| {
                    untranslatable(
                        "tools",
                        "only `function` tools with a name can be sent to Anthropic",
                    )
                })?;
            let mut out = json!({
                "name": name,
                // Anthropic requires a schema; a function without parameters takes none.
                "input_schema": tool
                    .pointer("/function/parameters")
                    .cloned()
                    .unwrap_or_else(|| json!({ "type": "object", "properties": {} })),
            });
            if let Some(description) = tool
                .pointer("/function/description")
                .and_then(Value::as_str)
            {
                out["description"] = description.into();
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    Ok((!translated.is_empty()).then_some(translated))
}

/// `tool_choice` and `parallel_tool_calls` → Anthropic's `tool_choice`, which holds both.
fn tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<Option<Value>, ProviderError> {
    let mut out = match choice {
        // Only an explicit "no parallel calls" needs a choice when the client named none.
        None | Some(Value::Null) if parallel == Some(false) => json!({ "type": "auto" }),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => json!({ "type": "auto" }),
            "required" => json!({ "type": "any" }),
            "none" => json!({ "type": "none" }),
            other => {
                return Err(untranslatable(
                    "tool_choice",
                    format!("unknown tool_choice `{other}`"),
                ));
            }
        },
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .filter(|_| kind_of(choice) == Some("function"))
                .ok_or_else(|| {
                    untranslatable("tool_choice", "`tool_choice` must name a function")
                })?;
            json!({ "type": "tool", "name": name })
        }
    };
    // `none` forbids tool calls, so there is nothing to parallelise (and Anthropic's `none`
    // takes no such field).
    if parallel == Some(false) && kind_of(&out) != Some("none") {
        out["disable_parallel_tool_use"] = true.into();
    }
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------
// Response: Anthropic message → OpenAI chat.completion
// ---------------------------------------------------------------------------------------

/// A complete Anthropic message as a `chat.completion`, with its usage.
pub fn response_body(message: &Value) -> Result<JsonReply, ProviderError> {
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| ProviderError::Protocol("the message has no `content` array".into()))?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        match kind_of(block) {
            Some("text") => text
                .get_or_insert_default()
                .push_str(str_of(block, "text")),
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or_default(),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            // Thinking and server-tool blocks are never requested, so never expected.
            _ => {}
        }
    }
    let mut reply = json!({ "role": "assistant", "content": text, "refusal": null });
    if !tool_calls.is_empty() {
        reply["tool_calls"] = tool_calls.into();
    }
    let usage = message.get("usage").filter(|u| u.is_object()).map(|u| {
        let mut usage = Usage::default();
        update_usage(&mut usage, u);
        usage
    });
    let mut body = json!({
        "id": message.get("id").cloned().unwrap_or_default(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": message.get("model").cloned().unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish_reason(message.get("stop_reason").and_then(Value::as_str)),
        }],
    });
    if let Some(usage) = &usage {
        body["usage"] = openai_usage_json(usage);
    }
    Ok(JsonReply { body, usage })
}

/// Anthropic's `stop_reason` → OpenAI's `finish_reason` (`null` while still running).
fn finish_reason(stop_reason: Option<&str>) -> Value {
    match stop_reason {
        None => Value::Null,
        Some("max_tokens" | "model_context_window_exceeded") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some("refusal") => "content_filter".into(),
        // end_turn, stop_sequence, pause_turn, and reasons added later: the model stopped.
        Some(_) => "stop".into(),
    }
}

/// Takes the latest value of every field `usage` reports. Anthropic's numbers are running
/// totals, so adding them up would count tokens twice.
fn update_usage(usage: &mut Usage, reported: &Value) {
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

/// [`Usage`] in OpenAI's shape, where prompt tokens include cached ones.
fn openai_usage_json(usage: &Usage) -> Value {
    let prompt = usage.prompt_total();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": { "cached_tokens": usage.cache_read },
    })
}

// ---------------------------------------------------------------------------------------
// Streaming: Anthropic SSE events → OpenAI chat.completion.chunk
// ---------------------------------------------------------------------------------------

/// Translates `events` until `message_stop` or the first error. Built with `unfold` so the
/// stream ends the moment `message_stop` is translated, without waiting for the upstream
/// to close; an upstream that ends before it is reported, since the answer is cut short.
pub(super) fn translate_stream(
    events: impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
) -> impl Stream<Item = Result<Chunk, ProviderError>> + Send + 'static {
    let state = (Box::pin(events), StreamTranslator::new(), VecDeque::new());
    futures_util::stream::unfold(Some(state), |state| async move {
        let (mut events, mut translator, mut pending) = state?;
        loop {
            if let Some(chunk) = pending.pop_front() {
                return Some((Ok(chunk), Some((events, translator, pending))));
            }
            if translator.ended {
                return None;
            }
            let chunks = match events.next().await {
                Some(Ok(event)) => translator.on_event(&event),
                Some(Err(e)) => Err(e),
                None => Err(ProviderError::Protocol(
                    "the stream ended before `message_stop`".into(),
                )),
            };
            match chunks {
                Ok(chunks) => pending.extend(chunks),
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

impl Default for StreamTranslator {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamTranslator {
    pub fn new() -> Self {
        Self {
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            started: false,
            usage: Usage::default(),
            tool_calls: HashMap::new(),
            ended: false,
        }
    }

    /// The chunks one event becomes (often none). After `message_stop` the last one is the
    /// usage-only chunk and [`Self::ended`] is set.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, ProviderError> {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Protocol(format!("stream event is not JSON: {e}")))?;
        let kind = kind_of(&data).unwrap_or(&event.event);
        if !self.started && !matches!(kind, "message_start" | "error" | "ping") {
            return Err(ProviderError::Protocol(format!(
                "`{kind}` arrived before `message_start`"
            )));
        }
        match kind {
            "message_start" => {
                let message = data.get("message").unwrap_or(&Value::Null);
                self.id = str_of(message, "id").to_owned();
                self.model = str_of(message, "model").to_owned();
                if let Some(usage) = message.get("usage") {
                    update_usage(&mut self.usage, usage);
                }
                self.started = true;
                Ok(vec![self.chunk(
                    json!({ "role": "assistant", "content": "" }),
                    Value::Null,
                    0,
                )])
            }
            "content_block_start" => {
                let block = data.get("content_block").unwrap_or(&Value::Null);
                // Text blocks start nothing: their deltas carry everything.
                if kind_of(block) != Some("tool_use") {
                    return Ok(Vec::new());
                }
                let index = block_index(&data)?;
                let ordinal = self.tool_calls.len();
                self.tool_calls.insert(index, ordinal);
                let call = json!({
                    "index": ordinal,
                    "id": block.get("id").cloned().unwrap_or_default(),
                    "type": "function",
                    "function": { "name": block.get("name").cloned().unwrap_or_default(), "arguments": "" },
                });
                Ok(vec![self.chunk(
                    json!({ "tool_calls": [call] }),
                    Value::Null,
                    0,
                )])
            }
            "content_block_delta" => self.on_delta(&data),
            "message_delta" => {
                if let Some(usage) = data.get("usage") {
                    update_usage(&mut self.usage, usage);
                }
                let reason =
                    finish_reason(data.pointer("/delta/stop_reason").and_then(Value::as_str));
                Ok(vec![self.chunk(json!({}), reason, 0)])
            }
            "message_stop" => {
                self.ended = true;
                let body = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": openai_usage_json(&self.usage),
                });
                Ok(vec![Chunk {
                    data: Bytes::from(body.to_string()),
                    usage: Some(self.usage),
                    usage_only: true,
                    text_chars: 0,
                }])
            }
            "error" => {
                self.ended = true;
                let message = data
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                Err(ProviderError::InStream(message.to_owned()))
            }
            // `ping`, `content_block_stop`, and event types newer than this adapter:
            // Anthropic's versioning policy asks clients to tolerate new ones.
            _ => Ok(Vec::new()),
        }
    }

    fn on_delta(&mut self, data: &Value) -> Result<Vec<Chunk>, ProviderError> {
        let delta = data.get("delta").unwrap_or(&Value::Null);
        match kind_of(delta) {
            Some("text_delta") => {
                let text = str_of(delta, "text");
                if text.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(vec![self.chunk(
                    json!({ "content": text }),
                    Value::Null,
                    text.len(),
                )])
            }
            Some("input_json_delta") => {
                let partial = str_of(delta, "partial_json");
                let index = block_index(data)?;
                let ordinal = *self.tool_calls.get(&index).ok_or_else(|| {
                    ProviderError::Protocol(format!(
                        "tool input for content block {index}, which is not a tool call"
                    ))
                })?;
                // Anthropic opens every tool input with an empty piece; it says nothing.
                if partial.is_empty() {
                    return Ok(Vec::new());
                }
                let call = json!({ "index": ordinal, "function": { "arguments": partial } });
                Ok(vec![self.chunk(
                    json!({ "tool_calls": [call] }),
                    Value::Null,
                    partial.len(),
                )])
            }
            // Thinking, signature and citation deltas belong to features never requested.
            _ => Ok(Vec::new()),
        }
    }

    /// A one-choice chunk sharing the id, creation time and model of `message_start`.
    fn chunk(&self, delta: Value, finish_reason: Value, text_chars: usize) -> Chunk {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
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

fn block_index(data: &Value) -> Result<u64, ProviderError> {
    data.get("index")
        .and_then(Value::as_u64)
        .ok_or_else(|| ProviderError::Protocol("content block event without an `index`".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE_TEXT: &str = include_str!("../../tests/fixtures/anthropic/message_text.json");
    const MESSAGE_TOOL_USE: &str =
        include_str!("../../tests/fixtures/anthropic/message_tool_use.json");
    const MESSAGE_CACHE: &str = include_str!("../../tests/fixtures/anthropic/message_cache.json");
    const ERROR: &str = include_str!("../../tests/fixtures/anthropic/error.json");
    const STREAM_TEXT: &str = include_str!("../../tests/fixtures/anthropic/stream_text.sse");
    const STREAM_TOOL_USE: &str =
        include_str!("../../tests/fixtures/anthropic/stream_tool_use.sse");
    const STREAM_ERROR: &str = include_str!("../../tests/fixtures/anthropic/stream_error.sse");

    fn request(body: Value) -> JsonRequest {
        JsonRequest {
            output_ceiling: None,
            body: body.as_object().unwrap().clone(),
        }
    }

    fn translate(body: Value) -> Result<Value, ProviderError> {
        request_body(&request(body), "claude-test", false).map(Value::Object)
    }

    fn refused_param(body: Value) -> String {
        match translate(body) {
            Err(ProviderError::Untranslatable { param, .. }) => param.unwrap(),
            other => panic!("expected Untranslatable, got {other:?}"),
        }
    }

    fn user(text: &str) -> Value {
        json!({"role": "user", "content": text})
    }

    /// A recorded SSE transcript as the events `sse::events` would yield.
    fn events(transcript: &str) -> Vec<SseEvent> {
        transcript
            .split("\n\n")
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let mut event = "message".to_owned();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_owned();
                    } else if let Some(line) = line.strip_prefix("data:") {
                        data.push(line.strip_prefix(' ').unwrap_or(line));
                    }
                }
                SseEvent {
                    event,
                    data: data.join("\n"),
                }
            })
            .collect()
    }

    fn run(transcript: &str) -> (Vec<Chunk>, Vec<Value>) {
        let mut translator = StreamTranslator::new();
        let chunks: Vec<Chunk> = events(transcript)
            .iter()
            .flat_map(|event| translator.on_event(event).unwrap())
            .collect();
        assert!(translator.ended);
        let json = chunks
            .iter()
            .map(|c| serde_json::from_slice(&c.data).unwrap())
            .collect();
        (chunks, json)
    }

    // --- request -------------------------------------------------------------------------

    #[test]
    fn system_and_developer_messages_become_the_system_prompt() {
        let body = translate(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Answer in "}, {"type": "text", "text": "French."}]},
        ]}))
        .unwrap();
        assert_eq!(body["system"], "Be brief.\n\nAnswer in French.");
        assert_eq!(body["model"], "claude-test");
        assert_eq!(
            body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
        assert!(body.get("stream").is_none());

        let without = translate(json!({"messages": [user("Hi")]})).unwrap();
        assert!(without.get("system").is_none());
    }

    #[test]
    fn consecutive_turns_of_a_role_are_merged_and_empty_ones_dropped() {
        let body = translate(json!({"messages": [
            user("one"),
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
            user("five"),
        ]}))
        .unwrap();
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
                {"role": "user", "content": [{"type": "text", "text": "five"}]},
            ])
        );
    }

    #[test]
    fn tool_calls_and_results_become_tool_use_and_tool_result_blocks() {
        let body = translate(json!({"messages": [
            user("Weather in SF and Paris?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"SF\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
            user("Thanks! And tomorrow?"),
        ]}))
        .unwrap();
        assert_eq!(
            body["messages"][1],
            json!({"role": "assistant", "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "SF"}},
                {"type": "tool_use", "id": "call_2", "name": "now", "input": {}},
            ]})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"type": "text", "text": "Thanks! And tomorrow?"},
            ]})
        );
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn tool_results_lead_their_user_turn() {
        let body = translate(json!({"messages": [
            user("go"),
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            user("(the result follows)"),
            {"role": "tool", "tool_call_id": "c", "content": ""},
        ]}))
        .unwrap();
        assert_eq!(
            body["messages"][2]["content"],
            json!([{"type": "tool_result", "tool_use_id": "c"}, {"type": "text", "text": "(the result follows)"}])
        );
    }

    #[test]
    fn unparseable_tool_arguments_are_refused() {
        let call = |arguments: &str| {
            json!({"messages": [user("x"), {"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]}]})
        };
        assert_eq!(refused_param(call("{\"city\":")), "messages");
        assert_eq!(refused_param(call("[1, 2]")), "messages");
        let missing_id = json!({"messages": [user("x"), {"role": "tool", "content": "r"}]});
        assert_eq!(refused_param(missing_id), "messages");
    }

    #[test]
    fn images_become_base64_or_url_sources() {
        let body = translate(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "Compare these"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}))
        .unwrap();
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "Compare these"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ])
        );
        let image = |url: &str| json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]});
        assert_eq!(refused_param(image("data:image/png,rawbytes")), "messages");
        assert_eq!(
            refused_param(image("ftp://example.com/cat.jpg")),
            "messages"
        );
        let audio = json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]});
        assert_eq!(refused_param(audio), "messages");
    }

    #[test]
    fn tools_and_tool_choice_are_mapped() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "now"}},
        ]);
        let with = |choice: Value, parallel: Value| {
            translate(json!({"messages": [user("x")], "tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}))
                .unwrap()
        };
        let body = with(Value::Null, Value::Null);
        assert_eq!(
            body["tools"],
            json!([
                {"name": "get_weather", "description": "Weather by city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}},
            ])
        );
        assert!(body.get("tool_choice").is_none());

        let cases = [
            (json!("auto"), Value::Null, json!({"type": "auto"})),
            (json!("required"), Value::Null, json!({"type": "any"})),
            (json!("none"), Value::Null, json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "now"}}),
                Value::Null,
                json!({"type": "tool", "name": "now"}),
            ),
            (
                json!("required"),
                json!(false),
                json!({"type": "any", "disable_parallel_tool_use": true}),
            ),
            (
                Value::Null,
                json!(false),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            ),
            (json!("none"), json!(false), json!({"type": "none"})),
            (json!("auto"), json!(true), json!({"type": "auto"})),
        ];
        for (choice, parallel, expected) in cases {
            assert_eq!(
                with(choice.clone(), parallel.clone())["tool_choice"],
                expected,
                "{choice} / {parallel}"
            );
        }

        // Without tools a choice means nothing and is left out.
        let bare = translate(json!({"messages": [user("x")], "tool_choice": "required"})).unwrap();
        assert!(bare.get("tool_choice").is_none() && bare.get("tools").is_none());
        let custom = json!({"messages": [user("x")], "tools": [{"type": "custom", "custom": {"name": "x"}}]});
        assert_eq!(refused_param(custom), "tools");
    }

    #[test]
    fn max_tokens_is_always_sent() {
        let max = |extra: Value| {
            let mut body = json!({"messages": [user("x")]});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            translate(body).unwrap()["max_tokens"].clone()
        };
        assert_eq!(max(json!({})), DEFAULT_MAX_TOKENS);
        assert_eq!(max(json!({"max_tokens": 300})), 300);
        assert_eq!(
            max(json!({"max_tokens": 300, "max_completion_tokens": 200})),
            200
        );
    }

    #[test]
    fn sampling_stop_user_and_stream_are_translated() {
        let body = request_body(
            &request(
                json!({"messages": [user("x")], "temperature": 0.4, "top_p": 0.9, "stop": "END",
                "user": "user-42", "stream": true, "stream_options": {"include_usage": true}}),
            ),
            "claude-test",
            true,
        )
        .unwrap();
        assert_eq!(body["temperature"], 0.4);
        assert_eq!(body["top_p"], 0.9);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none());

        let body = translate(
            json!({"messages": [user("x")], "temperature": 1.7, "stop": ["a", "b"],
            "metadata": {"user": "u-7"}}),
        )
        .unwrap();
        assert_eq!(body["temperature"], 1.0);
        assert_eq!(body["stop_sequences"], json!(["a", "b"]));
        assert_eq!(body["metadata"], json!({"user_id": "u-7"}));
    }

    #[test]
    fn openai_only_tuning_fields_are_dropped() {
        let body = translate(json!({"messages": [user("x")], "n": 1, "seed": 7, "frequency_penalty": 0.5,
            "presence_penalty": 0.5, "logit_bias": {"50256": -100}, "logprobs": false,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}}}))
        .unwrap();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["max_tokens", "messages", "model"]);
    }

    #[test]
    fn requests_anthropic_cannot_answer_are_refused() {
        assert_eq!(refused_param(json!({"messages": [user("x")], "n": 2})), "n");
        assert_eq!(
            refused_param(json!({"messages": [user("x")], "logprobs": true})),
            "logprobs"
        );
        assert_eq!(
            refused_param(json!({"messages": [user("x")], "modalities": ["text", "audio"]})),
            "modalities"
        );
        assert_eq!(
            refused_param(json!({"messages": [user("x")], "functions": [{"name": "f"}]})),
            "functions"
        );
        assert_eq!(refused_param(json!({"messages": []})), "messages");
        assert_eq!(
            refused_param(
                json!({"messages": [{"role": "system", "content": "only a system prompt"}]})
            ),
            "messages"
        );
        assert_eq!(refused_param(json!({"messages": [user("")]})), "messages");
        assert_eq!(
            refused_param(json!({"messages": [{"role": "function", "name": "f", "content": "x"}]})),
            "messages"
        );
    }

    // --- response ------------------------------------------------------------------------

    #[test]
    fn a_text_message_becomes_a_chat_completion() {
        let reply = response_body(&serde_json::from_str(MESSAGE_TEXT).unwrap()).unwrap();
        let body = &reply.body;
        assert_eq!(body["id"], "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "claude-sonnet-4-5-20250929");
        assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
        let choice = &body["choices"][0];
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(
            choice["message"]["content"],
            "Paris is the capital of France."
        );
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 31,
                "prompt_tokens_details": {"cached_tokens": 0}})
        );
        assert_eq!(
            reply.usage,
            Some(Usage {
                input: 21,
                output: 10,
                cache_read: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn tool_use_blocks_become_tool_calls() {
        let reply = response_body(&serde_json::from_str(MESSAGE_TOOL_USE).unwrap()).unwrap();
        let choice = &reply.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["content"],
            "I'll check the current weather in San Francisco for you."
        );
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["id"], "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let arguments: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(
            arguments,
            json!({"location": "San Francisco, CA", "unit": "celsius"})
        );

        let only_tool = json!({"id": "m", "model": "c", "stop_reason": "tool_use",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]});
        let reply = response_body(&only_tool).unwrap();
        assert_eq!(reply.body["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(reply.usage, None);
    }

    #[test]
    fn cache_tokens_count_as_prompt_tokens_and_stay_apart_in_usage() {
        let reply = response_body(&serde_json::from_str(MESSAGE_CACHE).unwrap()).unwrap();
        assert_eq!(reply.body["choices"][0]["finish_reason"], "length");
        assert_eq!(
            reply.body["usage"],
            json!({"prompt_tokens": 2062, "completion_tokens": 32, "total_tokens": 2094,
                "prompt_tokens_details": {"cached_tokens": 1800}})
        );
        assert_eq!(
            reply.usage,
            Some(Usage {
                input: 14,
                output: 32,
                cache_read: 1800,
                cache_write: 248
            })
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        let cases = [
            (Some("end_turn"), json!("stop")),
            (Some("stop_sequence"), json!("stop")),
            (Some("max_tokens"), json!("length")),
            (Some("tool_use"), json!("tool_calls")),
            (Some("refusal"), json!("content_filter")),
            (None, Value::Null),
        ];
        for (reason, expected) in cases {
            assert_eq!(finish_reason(reason), expected, "{reason:?}");
        }
        assert!(matches!(
            response_body(&json!({"type": "message"})),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn error_bodies_yield_their_message() {
        let error: Value = serde_json::from_str(ERROR).unwrap();
        assert_eq!(
            crate::providers::error_message(&error).as_deref(),
            Some("max_tokens: Field required")
        );
        assert_eq!(
            crate::providers::error_message(&json!({"detail": "nope"})),
            None
        );
    }

    // --- stream --------------------------------------------------------------------------

    #[test]
    fn a_text_stream_becomes_openai_chunks() {
        let (chunks, json) = run(STREAM_TEXT);
        assert_eq!(json.len(), 5, "{json:#?}");
        for chunk in &json {
            assert_eq!(chunk["id"], "msg_01NzMBkEy1Fq3ePqD6pK8PVb");
            assert_eq!(chunk["model"], "claude-sonnet-4-5-20250929");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], json[0]["created"]);
        }
        assert_eq!(
            json[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(json[1]["choices"][0]["delta"], json!({"content": "Hello"}));
        assert_eq!(
            json[2]["choices"][0]["delta"],
            json!({"content": ", wörld!"})
        );
        assert_eq!(chunks[2].text_chars, ", wörld!".len());
        assert_eq!(json[3]["choices"][0]["delta"], json!({}));
        assert_eq!(json[3]["choices"][0]["finish_reason"], "stop");
        assert!(
            chunks[..4]
                .iter()
                .all(|c| !c.usage_only && c.usage.is_none())
        );
    }

    #[test]
    fn stream_usage_is_counted_once_in_a_final_usage_only_chunk() {
        // message_start says output 1, message_delta 15: the total is 15, not 16.
        let (chunks, json) = run(STREAM_TEXT);
        let last = chunks.last().unwrap();
        assert!(last.usage_only);
        assert_eq!(
            last.usage,
            Some(Usage {
                input: 25,
                output: 15,
                cache_read: 1024,
                cache_write: 0
            })
        );
        let last = json.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["id"], "msg_01NzMBkEy1Fq3ePqD6pK8PVb");
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 1049, "completion_tokens": 15, "total_tokens": 1064,
                "prompt_tokens_details": {"cached_tokens": 1024}})
        );

        // message_delta repeating the input and cache numbers replaces them too.
        let (chunks, _) = run(STREAM_TOOL_USE);
        assert_eq!(
            chunks.last().unwrap().usage,
            Some(Usage {
                input: 472,
                output: 89,
                cache_read: 0,
                cache_write: 96
            })
        );
    }

    #[test]
    fn tool_use_streams_become_tool_call_deltas() {
        let (chunks, json) = run(STREAM_TOOL_USE);
        let deltas: Vec<&Value> = json.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(json.len(), 9, "{json:#?}");
        assert_eq!(
            *deltas[1],
            json!({"content": "Okay, let's check the weather in both cities:"})
        );
        assert_eq!(
            *deltas[2],
            json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            *deltas[3],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]})
        );
        assert_eq!(chunks[3].text_chars, "{\"location\":".len());
        assert_eq!(
            *deltas[4],
            json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]})
        );
        // The second tool is block 2 upstream but tool call 1 for OpenAI.
        assert_eq!(deltas[5]["tool_calls"][0]["index"], 1);
        assert_eq!(
            deltas[5]["tool_calls"][0]["id"],
            "toolu_01QvBxN9KzE5gEoE7VmQXhSq"
        );
        assert_eq!(
            *deltas[6],
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"location\": \"Paris\"}"}}]})
        );
        assert_eq!(json[7]["choices"][0]["finish_reason"], "tool_calls");
        assert!(chunks[8].usage_only);
        assert_eq!(
            json.iter()
                .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
                .collect::<Vec<_>>(),
            ["tool_calls"]
        );
    }

    #[test]
    fn an_error_event_fails_the_stream_in_band() {
        let mut translator = StreamTranslator::new();
        let mut results = events(STREAM_ERROR)
            .iter()
            .map(|e| translator.on_event(e))
            .collect::<Vec<_>>();
        let error = results.pop().unwrap().unwrap_err();
        assert!(
            matches!(&error, ProviderError::InStream(m) if m == "Overloaded"),
            "{error:?}"
        );
        assert!(translator.ended);
        assert!(results.into_iter().all(|r| r.is_ok()));
    }

    #[test]
    fn events_before_message_start_are_a_protocol_error() {
        let mut translator = StreamTranslator::new();
        let delta = &events(STREAM_TEXT)[3];
        assert!(matches!(
            translator.on_event(delta),
            Err(ProviderError::Protocol(_))
        ));
        let junk = SseEvent {
            event: "message".into(),
            data: "{oops".into(),
        };
        assert!(matches!(
            translator.on_event(&junk),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn the_stream_ends_at_message_stop_and_reports_a_cut() {
        // Anything after message_stop is never read: the stream is over.
        let mut upstream: Vec<Result<SseEvent, ProviderError>> =
            events(STREAM_TEXT).into_iter().map(Ok).collect();
        upstream.push(Err(ProviderError::Protocol("never reached".into())));
        let chunks: Vec<_> = translate_stream(futures_util::stream::iter(upstream))
            .collect()
            .await;
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(Result::is_ok));

        let cut: Vec<_> = events(STREAM_TEXT).into_iter().take(4).map(Ok).collect();
        let chunks: Vec<_> = translate_stream(futures_util::stream::iter(cut))
            .collect()
            .await;
        assert_eq!(chunks.len(), 3);
        assert!(matches!(
            chunks.last(),
            Some(Err(ProviderError::Protocol(_)))
        ));

        let failing: Vec<_> = events(STREAM_ERROR).into_iter().map(Ok).collect();
        let chunks: Vec<_> = translate_stream(futures_util::stream::iter(failing))
            .collect()
            .await;
        assert!(matches!(
            chunks.last(),
            Some(Err(ProviderError::InStream(_)))
        ));
    }

    #[test]
    fn usage_near_u64_max_saturates_instead_of_panicking() {
        // Crash inputs of the `response_json` and `stream_anthropic` fuzz targets: a
        // provider's token counts are its to choose, and adding them up overflowed.
        let message =
            json!({"content": [], "usage": {"input_tokens": u64::MAX, "output_tokens": 5}});
        let reply = response_body(&message).unwrap();
        assert_eq!(reply.body["usage"]["total_tokens"], u64::MAX);

        let mut translator = StreamTranslator::new();
        let event = |data: Value| SseEvent {
            event: "message".into(),
            data: data.to_string(),
        };
        translator
            .on_event(&event(json!({"type": "message_start", "message": {"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 7}}})))
            .unwrap();
        translator
            .on_event(&event(
                json!({"type": "message_delta", "delta": {}, "usage": {"output_tokens": u64::MAX}}),
            ))
            .unwrap();
        let last = translator
            .on_event(&event(json!({"type": "message_stop"})))
            .unwrap();
        assert_eq!(last[0].usage.unwrap().total(), u64::MAX);
    }
}
