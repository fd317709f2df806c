//! Google's Gemini API (`base_url` like `https://generativelanguage.googleapis.com/v1beta`,
//! key in `x-goog-api-key`): `models/{model}:generateContent`, `:streamGenerateContent`
//! (`alt=sse`), `:embedContent` and `:batchEmbedContents`, translated to and from OpenAI's
//! chat and embeddings formats. Vertex AI speaks the same format on other URLs
//! ([`super::vertex`] reuses [`request_body`], [`response_body`] and [`StreamTranslator`]).
//!
//! The translation, both ways:
//! - `system`/`developer` messages → `systemInstruction`; `assistant` → role `model`;
//!   tool results → `functionResponse` parts (named after the call they answer, since
//!   Gemini matches them by name); images → `inlineData` (data URLs) or `fileData`;
//! - `tools` → `functionDeclarations`, `tool_choice` → `functionCallingConfig`;
//! - `response_format` json_object / json_schema → `responseMimeType` (+ schema);
//! - the reserved output ceiling → `maxOutputTokens` (Gemini counts thinking within it);
//! - safety stops and blocked prompts → `finish_reason: "content_filter"`;
//! - `usageMetadata` → usage: cached prompt tokens apart, thinking tokens billed as output.
//!
//! Refused (400 before anything goes upstream): `logprobs`, audio output, the legacy
//! `functions`, and content parts other than text and images.

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
use crate::tokenize::{Counting, Encoding, Family};

#[derive(Debug, Clone, Copy, Default)]
pub struct Gemini;

/// One stream's translation state: Gemini sends whole `GenerateContentResponse`s, each
/// with the newest parts and the running `usageMetadata`.
#[derive(Debug)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    started: bool,
    usage: Option<Usage>,
    tool_calls: usize,
    /// A `finishReason` or an error arrived: nothing more is to be translated.
    pub ended: bool,
}

impl Provider for Gemini {
    const KIND: &'static str = "gemini";

    async fn chat(&self, req: &JsonRequest, cx: CallCx<'_>) -> Result<JsonReply, ProviderError> {
        let body = request_body(req)?;
        let response = send(post(cx, "generateContent").json(&body), cx).await?;
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
        if req.body.get("n").and_then(Value::as_u64).unwrap_or(1) > 1 {
            return Err(untranslatable(
                "n",
                "streamed Gemini answers carry one candidate: `n` must be 1",
            ));
        }
        let body = request_body(req)?;
        let deadline = Instant::now() + cx.deployment.timeouts.total;
        let request = post(cx, "streamGenerateContent?alt=sse");
        let response = send(request.json(&body), cx).await?;
        let model = cx.deployment.upstream_model.clone();
        Ok(Box::pin(translate_stream(
            sse::events(response, deadline),
            model,
        )))
    }

    async fn embeddings(
        &self,
        req: &JsonRequest,
        cx: CallCx<'_>,
    ) -> Result<JsonReply, ProviderError> {
        let (method, body) = embeddings_body(req, &cx.deployment.upstream_model)?;
        let response = send(post(cx, method).json(&body), cx).await?;
        embeddings_response(&read_json(response, cx).await?, req)
    }
}

fn post(cx: CallCx<'_>, method: &str) -> reqwest::RequestBuilder {
    let d = cx.deployment;
    // Model names are checked URL-safe when the snapshot is built.
    let request = cx.http.post(format!(
        "{}/models/{}:{method}",
        d.base_url, d.upstream_model
    ));
    match &d.credential {
        Some(key) => request.header("x-goog-api-key", key.expose_secret()),
        None => request,
    }
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
// Request: OpenAI chat → generateContent
// ---------------------------------------------------------------------------------------

/// The `generateContent` body for `req` (the model is in the URL, streaming in the method).
pub fn request_body(req: &JsonRequest) -> Result<Value, ProviderError> {
    let body = &req.body;
    refuse_untranslatable_fields(body)?;
    let (system, contents) = translate_messages(req.messages())?;
    let mut out = Map::new();
    if let Some(system) = system {
        out.insert(
            "systemInstruction".into(),
            json!({ "parts": [{ "text": system }] }),
        );
    }
    out.insert("contents".into(), contents.into());
    if let Some(tools) = tools(body.get("tools"))? {
        out.insert("tools".into(), json!([{ "functionDeclarations": tools }]));
    }
    if let Some(config) = tool_config(body.get("tool_choice"))? {
        out.insert("toolConfig".into(), config);
    }
    let mut generation = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            generation.insert(to.into(), v.clone());
        }
    }
    if let Some(cap) = req.output_cap() {
        generation.insert("maxOutputTokens".into(), cap.into());
    }
    match body.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            generation.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            generation.insert("stopSequences".into(), list.clone().into());
        }
        Some(_) => return Err(untranslatable("stop", "`stop` must be a string or strings")),
    }
    if let Some(format) = body.get("response_format").filter(|v| !v.is_null()) {
        match str_of(format, "type") {
            "text" => {}
            "json_object" => {
                generation.insert("responseMimeType".into(), "application/json".into());
            }
            "json_schema" => {
                let schema = format.pointer("/json_schema/schema").ok_or_else(|| {
                    untranslatable("response_format", "json_schema needs a `schema`")
                })?;
                generation.insert("responseMimeType".into(), "application/json".into());
                generation.insert("responseJsonSchema".into(), schema.clone());
            }
            other => {
                return Err(untranslatable(
                    "response_format",
                    format!("unknown response_format type {other:?}"),
                ));
            }
        }
    }
    if !generation.is_empty() {
        out.insert("generationConfig".into(), generation.into());
    }
    Ok(out.into())
}

fn refuse_untranslatable_fields(body: &Map<String, Value>) -> Result<(), ProviderError> {
    let set = |name: &str| body.get(name).is_some_and(|v| !v.is_null());
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) || set("top_logprobs") {
        return Err(untranslatable(
            "logprobs",
            "Gemini deployments do not return log probabilities here",
        ));
    }
    let wants_audio = body
        .get("modalities")
        .and_then(Value::as_array)
        .is_some_and(|m| m.iter().any(|m| m.as_str() == Some("audio")));
    if set("audio") || wants_audio {
        return Err(untranslatable(
            "modalities",
            "Gemini deployments do not produce audio here",
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

/// The system instruction and the `contents`. Consecutive messages of one role share a
/// turn, as Gemini wants user and model turns to alternate.
fn translate_messages(messages: &[Value]) -> Result<(Option<String>, Vec<Value>), ProviderError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Gemini answers a function call by the function's name, OpenAI by the call's id.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, parts) = match str_of(message, "role") {
            "system" | "developer" => {
                system.push(plain_text(message.get("content"), i)?);
                continue;
            }
            "user" => ("user", content_parts(message.get("content"), i)?),
            "assistant" => ("model", assistant_parts(message, i, &mut call_names)?),
            "tool" => ("user", vec![function_response(message, i, &call_names)?]),
            other => {
                return Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: unknown role {other:?}"),
                ));
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({ "role": role, "parts": parts }))
        .collect();
    Ok((system, contents))
}

fn plain_text(content: Option<&Value>, i: usize) -> Result<String, ProviderError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match str_of(p, "type") {
                "text" => Ok(str_of(p, "text")),
                _ => Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: system messages may hold text only"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.concat()),
        Some(_) => Err(bad_content(i)),
    }
}

fn content_parts(content: Option<&Value>, i: usize) -> Result<Vec<Value>, ProviderError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| !(str_of(p, "type") == "text" && str_of(p, "text").is_empty()))
            .map(|p| match str_of(p, "type") {
                "text" => Ok(json!({ "text": str_of(p, "text") })),
                "image_url" => image_part(p, i),
                other => Err(untranslatable(
                    "messages",
                    format!("messages[{i}]: content parts of type {other:?} are not supported"),
                )),
            })
            .collect(),
        Some(_) => Err(bad_content(i)),
    }
}

/// A data URL → `inlineData`; an http(s) or `gs://` URL → `fileData`.
fn image_part(part: &Value, i: usize) -> Result<Value, ProviderError> {
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
        let (mime_type, data) = rest
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
        return Ok(json!({ "inlineData": { "mimeType": mime_type, "data": data } }));
    }
    if ["https://", "http://", "gs://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        // Gemini wants a type; the URL's extension is the only hint without fetching it.
        let lower = url.to_ascii_lowercase();
        let mime_type = [
            (".png", "image/png"),
            (".webp", "image/webp"),
            (".gif", "image/gif"),
            (".heic", "image/heic"),
        ]
        .iter()
        .find(|(ext, _)| {
            lower
                .split(['?', '#'])
                .next()
                .is_some_and(|p| p.ends_with(ext))
        })
        .map_or("image/jpeg", |(_, t)| t);
        return Ok(json!({ "fileData": { "mimeType": mime_type, "fileUri": url } }));
    }
    Err(untranslatable(
        "messages",
        format!("messages[{i}]: image URLs must be http(s), gs:// or base64 data URLs"),
    ))
}

fn assistant_parts(
    message: &Value,
    i: usize,
    call_names: &mut HashMap<String, String>,
) -> Result<Vec<Value>, ProviderError> {
    let mut parts = content_parts(message.get("content"), i)?;
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let args: Value = serde_json::from_str(if arguments.trim().is_empty() {
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
        call_names.insert(str_of(call, "id").to_owned(), name.to_owned());
        parts.push(json!({ "functionCall": { "name": name, "args": args } }));
    }
    Ok(parts)
}

fn function_response(
    message: &Value,
    i: usize,
    call_names: &HashMap<String, String>,
) -> Result<Value, ProviderError> {
    let id = str_of(message, "tool_call_id");
    let name = call_names.get(id).ok_or_else(|| {
        untranslatable(
            "messages",
            format!(
                "messages[{i}]: tool result for {id:?}, which no earlier assistant message called"
            ),
        )
    })?;
    let text = plain_text(message.get("content"), i)?;
    // `response` must be an object: a JSON object result goes as is, anything else wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => json!({ "content": text }),
    };
    Ok(json!({ "functionResponse": { "name": name, "response": response } }))
}

fn bad_content(i: usize) -> ProviderError {
    untranslatable(
        "messages",
        format!("messages[{i}]: content must be a string or an array of parts"),
    )
}

fn tools(tools: Option<&Value>) -> Result<Option<Vec<Value>>, ProviderError> {
    let Some(list) = tools.filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or_else(|| untranslatable("tools", "`tools` must be an array"))?;
    if list.is_empty() {
        return Ok(None);
    }
    list.iter()
        .map(|tool| {
            if str_of(tool, "type") != "function" {
                return Err(untranslatable("tools", "only function tools are supported"));
            }
            let function = tool.get("function").unwrap_or(&Value::Null);
            let mut declaration = json!({ "name": str_of(function, "name") });
            if let Some(description) = function.get("description").filter(|d| d.is_string()) {
                declaration["description"] = description.clone();
            }
            if let Some(parameters) = function.get("parameters").filter(|p| p.is_object()) {
                // Gemini's `parametersJsonSchema` takes a JSON Schema as OpenAI does.
                declaration["parametersJsonSchema"] = parameters.clone();
            }
            Ok(declaration)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn tool_config(choice: Option<&Value>) -> Result<Option<Value>, ProviderError> {
    let config = |mode: &str| json!({ "functionCallingConfig": { "mode": mode } });
    Ok(match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => config("AUTO"),
            "none" => config("NONE"),
            "required" => config("ANY"),
            other => {
                return Err(untranslatable(
                    "tool_choice",
                    format!("unknown tool_choice {other:?}"),
                ));
            }
        }),
        Some(object) => {
            let name = object
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| untranslatable("tool_choice", "tool_choice names no function"))?;
            Some(json!({ "functionCallingConfig": {
                "mode": "ANY", "allowedFunctionNames": [name] } }))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Response: GenerateContentResponse → chat.completion
// ---------------------------------------------------------------------------------------

/// A whole `GenerateContentResponse` as a `chat.completion`, with its usage.
pub fn response_body(response: &Value, model: &str) -> Result<JsonReply, ProviderError> {
    let candidates = response
        .get("candidates")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let blocked = response
        .pointer("/promptFeedback/blockReason")
        .is_some_and(|r| !r.is_null());
    if candidates.is_empty() && !blocked {
        return Err(ProviderError::Protocol(
            "the response has neither candidates nor a block reason".into(),
        ));
    }
    let mut choices = Vec::new();
    let mut calls = 0;
    for (index, candidate) in candidates.iter().enumerate() {
        let (text, tool_calls, _) = parts_of(candidate, &mut calls);
        let mut message = json!({ "role": "assistant", "content": text, "refusal": null });
        if !tool_calls.is_empty() {
            message["tool_calls"] = tool_calls.into();
        }
        let finish = finish_reason(
            candidate.get("finishReason").and_then(Value::as_str),
            calls > 0,
        );
        choices.push(json!({
            "index": candidate.get("index").and_then(Value::as_u64).unwrap_or(index as u64),
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }));
    }
    if choices.is_empty() {
        // The prompt itself was blocked: an empty answer, filtered.
        choices.push(json!({
            "index": 0,
            "message": { "role": "assistant", "content": null, "refusal": null },
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let usage = response.get("usageMetadata").and_then(usage_of);
    let mut body = json!({
        "id": response.get("responseId").and_then(Value::as_str).map_or_else(|| "chatcmpl-gemini".to_owned(), |id| format!("chatcmpl-{id}")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": response.get("modelVersion").and_then(Value::as_str).unwrap_or(model),
        "choices": choices,
    });
    if let Some(usage) = &usage {
        body["usage"] = openai_usage_json(usage);
    }
    Ok(JsonReply { body, usage })
}

/// The text, tool calls (numbered from `*calls` on) and generated characters of a
/// candidate. Thought summaries (`thought: true`) are not part of the answer.
fn parts_of(candidate: &Value, calls: &mut usize) -> (Option<String>, Vec<Value>, usize) {
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    let mut chars = 0;
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for part in parts {
        if part.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            chars += t.len();
            text.get_or_insert_default().push_str(t);
        } else if let Some(call) = part.get("functionCall") {
            let arguments = call
                .get("args")
                .map_or_else(|| "{}".to_owned(), Value::to_string);
            chars += arguments.len();
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{calls}"), str::to_owned);
            tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": { "name": str_of(call, "name"), "arguments": arguments },
            }));
            *calls += 1;
        }
    }
    (text, tool_calls, chars)
}

/// Gemini's `finishReason` → OpenAI's `finish_reason` (`null` while still running).
fn finish_reason(reason: Option<&str>, called_tools: bool) -> Value {
    match reason {
        None | Some("FINISH_REASON_UNSPECIFIED") => Value::Null,
        Some("MAX_TOKENS") => "length".into(),
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
            | "LANGUAGE",
        ) => "content_filter".into(),
        // Gemini ends a turn with calls as STOP; OpenAI clients look for tool_calls.
        Some(_) if called_tools => "tool_calls".into(),
        Some(_) => "stop".into(),
    }
}

/// `usageMetadata` → [`Usage`]: `promptTokenCount` includes the cached tokens, and
/// thinking tokens (`thoughtsTokenCount`) are billed as output.
pub fn usage_of(metadata: &Value) -> Option<Usage> {
    let count = |name: &str| metadata.get(name).and_then(Value::as_u64).unwrap_or(0);
    metadata.get("promptTokenCount").and_then(Value::as_u64)?;
    let prompt = count("promptTokenCount");
    let cached = count("cachedContentTokenCount").min(prompt);
    Some(Usage {
        input: prompt - cached,
        output: count("candidatesTokenCount").saturating_add(count("thoughtsTokenCount")),
        cache_read: cached,
        cache_write: 0,
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
// Streaming: streamGenerateContent?alt=sse → chat.completion.chunk
// ---------------------------------------------------------------------------------------

/// Translates `events` until a candidate's `finishReason` (then one usage-only chunk) or
/// the first error; an upstream that ends before a `finishReason` cut the answer short.
pub fn translate_stream(
    events: impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
    model: String,
) -> impl Stream<Item = Result<Chunk, ProviderError>> + Send + 'static {
    let state = (
        Box::pin(events),
        StreamTranslator::new(model),
        VecDeque::new(),
    );
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
                    "the stream ended before a finishReason".into(),
                )),
            };
            match chunks {
                Ok(chunks) => pending.extend(chunks),
                Err(e) => return Some((Err(e), None)),
            }
        }
    })
}

impl StreamTranslator {
    pub fn new(model: String) -> Self {
        Self {
            id: String::new(),
            model,
            created: unix_now(),
            started: false,
            usage: None,
            tool_calls: 0,
            ended: false,
        }
    }

    /// The chunks one SSE event becomes. The one with a `finishReason` is followed by the
    /// usage-only chunk, and [`Self::ended`] is set.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<Vec<Chunk>, ProviderError> {
        let data: Value = serde_json::from_str(&event.data)
            .map_err(|e| ProviderError::Protocol(format!("stream event is not JSON: {e}")))?;
        if let Some(error) = data.get("error") {
            self.ended = true;
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(ProviderError::InStream(message.to_owned()));
        }
        if let Some(usage) = data.get("usageMetadata").and_then(usage_of) {
            self.usage = Some(usage);
        }
        let mut chunks = Vec::new();
        if !self.started {
            self.started = true;
            self.id = data.get("responseId").and_then(Value::as_str).map_or_else(
                || "chatcmpl-gemini".to_owned(),
                |id| format!("chatcmpl-{id}"),
            );
            if let Some(version) = data.get("modelVersion").and_then(Value::as_str) {
                self.model = version.to_owned();
            }
            chunks.push(self.chunk(
                json!({ "role": "assistant", "content": "" }),
                Value::Null,
                0,
            ));
        }
        let candidate = data.pointer("/candidates/0");
        let blocked = data
            .pointer("/promptFeedback/blockReason")
            .is_some_and(|r| !r.is_null());
        let Some(candidate) = candidate else {
            if blocked {
                chunks.push(self.chunk(json!({}), "content_filter".into(), 0));
                self.finish(&mut chunks);
            }
            return Ok(chunks);
        };
        let first_call = self.tool_calls;
        let (text, calls, chars) = parts_of(candidate, &mut self.tool_calls);
        let mut delta = Map::new();
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            delta.insert("content".into(), text.into());
        }
        if !calls.is_empty() {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, mut call)| {
                    call["index"] = (first_call + i).into();
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), calls.into());
        }
        let reason = finish_reason(
            candidate.get("finishReason").and_then(Value::as_str),
            self.tool_calls > 0,
        );
        if !delta.is_empty() || !reason.is_null() {
            let ends = !reason.is_null();
            chunks.push(self.chunk(delta.into(), reason, chars));
            if ends {
                self.finish(&mut chunks);
            }
        }
        Ok(chunks)
    }

    fn finish(&mut self, chunks: &mut Vec<Chunk>) {
        self.ended = true;
        let Some(usage) = self.usage else { return };
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai_usage_json(&usage),
        });
        chunks.push(Chunk {
            data: Bytes::from(body.to_string()),
            usage: Some(usage),
            usage_only: true,
            text_chars: 0,
        });
    }

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

// ---------------------------------------------------------------------------------------
// Embeddings: OpenAI → embedContent / batchEmbedContents
// ---------------------------------------------------------------------------------------

/// The method and body: one string → `embedContent`, several → `batchEmbedContents`.
pub fn embeddings_body(
    req: &JsonRequest,
    model: &str,
) -> Result<(&'static str, Value), ProviderError> {
    let dimensions = req.body.get("dimensions").and_then(Value::as_u64);
    if req
        .body
        .get("encoding_format")
        .and_then(Value::as_str)
        .is_some_and(|f| f != "float")
    {
        return Err(untranslatable(
            "encoding_format",
            "Gemini deployments return float embeddings only",
        ));
    }
    let request = |text: &str| {
        let mut r = json!({
            "model": format!("models/{model}"),
            "content": { "parts": [{ "text": text }] },
        });
        if let Some(d) = dimensions {
            r["outputDimensionality"] = d.into();
        }
        r
    };
    match req.body.get("input") {
        Some(Value::String(text)) => Ok(("embedContent", request(text))),
        Some(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => {
            let requests: Vec<Value> = items
                .iter()
                .filter_map(Value::as_str)
                .map(request)
                .collect();
            Ok(("batchEmbedContents", json!({ "requests": requests })))
        }
        _ => Err(untranslatable(
            "input",
            "Gemini deployments embed a string or an array of strings (not token arrays)",
        )),
    }
}

/// `{"embedding": …}` or `{"embeddings": [...]}` → OpenAI's list. Gemini reports no
/// token counts for embeddings, so the input is counted here, as the reservation counted
/// it: tiktoken scaled by the Gemini family's margin (an upper bound of Gemini's count).
pub fn embeddings_response(
    response: &Value,
    req: &JsonRequest,
) -> Result<JsonReply, ProviderError> {
    let vectors: Vec<&Value> = if let Some(one) = response.get("embedding") {
        vec![one]
    } else if let Some(many) = response.get("embeddings").and_then(Value::as_array) {
        many.iter().collect()
    } else {
        return Err(ProviderError::Protocol(
            "the response has no `embedding(s)`".into(),
        ));
    };
    let data = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let values = v
                .get("values")
                .filter(|v| v.is_array())
                .ok_or_else(|| ProviderError::Protocol("an embedding without `values`".into()))?;
            Ok(json!({ "object": "embedding", "index": index, "embedding": values }))
        })
        .collect::<Result<Vec<_>, ProviderError>>()?;
    let tokens = Encoding::O200k
        .embedding_prompt(&req.body, Counting::Exact)
        .text_tokens(Family::Gemini);
    Ok(JsonReply {
        body: json!({
            "object": "list",
            "data": data,
            "model": req.model(),
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        }),
        usage: Some(Usage {
            input: tokens,
            ..Usage::default()
        }),
    })
}

#[cfg(test)]
mod tests;
