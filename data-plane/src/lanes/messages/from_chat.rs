//! Answer: OpenAI chat → Anthropic Messages. A `chat.completion` becomes a `message`; a
//! chunk stream becomes Anthropic's event grammar — `message_start`, per content block
//! `content_block_start` / `content_block_delta`… / `content_block_stop`, then
//! `message_delta` with the stop reason and the usage (once, at the end, where chat
//! reports it), and `message_stop`.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use super::usage_json;
use crate::lanes::frames::Frame;
use crate::money::Usage;
use crate::providers::{Chunk, ChunkStream, JsonReply, ProviderError};

/// Chat's `finish_reason` → Anthropic's `stop_reason`.
pub fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Tool-call arguments as the `input` object (chat sends them as JSON text; text that
/// is not an object is kept whole under `arguments` rather than lost).
fn input_of(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ if arguments.trim().is_empty() => json!({}),
        _ => json!({"arguments": arguments}),
    }
}

fn message_id(chat_id: Option<&str>) -> String {
    match chat_id {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => format!("msg_{id}"),
        _ => format!("msg_{}", uuid::Uuid::now_v7().simple()),
    }
}

/// A complete chat answer as one Messages JSON body (the lane's one chunk).
pub fn message(reply: &JsonReply, model: &str) -> Result<Chunk, ProviderError> {
    let choice = reply
        .body
        .pointer("/choices/0")
        .ok_or_else(|| ProviderError::Protocol("the chat answer has no choice".into()))?;
    let mut content = Vec::new();
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str)
        && !text.is_empty()
    {
        content.push(json!({"type": "text", "text": text}));
    }
    let calls = choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or_default(),
            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
            "input": input_of(call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default()),
        }));
    }
    let usage = reply.usage.unwrap_or_default();
    let body = json!({
        "id": message_id(reply.body.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason").and_then(Value::as_str)),
        "stop_sequence": null,
        "usage": usage_json(&usage),
    });
    Ok(Chunk {
        data: Bytes::from(body.to_string()),
        usage: reply.usage,
        usage_only: false,
        text_chars: 0,
    })
}

/// The open content block of a translated stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    /// A tool call, by chat's `tool_calls` index.
    Tool(u64),
}

/// One stream's translation state.
#[derive(Debug)]
pub struct Translator {
    model: String,
    started: bool,
    /// Index of the next content block.
    next_block: u64,
    open: Open,
    stop_reason: &'static str,
    usage: Option<Usage>,
    pub ended: bool,
}

impl Translator {
    pub fn new(model: String) -> Self {
        Self {
            model,
            started: false,
            next_block: 0,
            open: Open::None,
            stop_reason: "end_turn",
            usage: None,
            ended: false,
        }
    }

    fn frame(event: &str, data: &Value) -> Chunk {
        Chunk {
            data: Frame::encode(event, &data.to_string()),
            usage: None,
            usage_only: false,
            text_chars: 0,
        }
    }

    fn close(&mut self, out: &mut Vec<Chunk>) {
        if self.open != Open::None {
            let index = self.next_block - 1;
            out.push(Self::frame(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            self.open = Open::None;
        }
    }

    fn open(&mut self, open: Open, block: Value, out: &mut Vec<Chunk>) {
        self.close(out);
        out.push(Self::frame(
            "content_block_start",
            &json!({"type": "content_block_start", "index": self.next_block, "content_block": block}),
        ));
        self.next_block += 1;
        self.open = open;
    }

    /// The events one chat chunk becomes.
    pub fn on_chunk(&mut self, chunk: &Chunk) -> Result<Vec<Chunk>, ProviderError> {
        let data: Value = serde_json::from_slice(&chunk.data)
            .map_err(|e| ProviderError::Protocol(format!("stream chunk is not JSON: {e}")))?;
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push(Self::frame(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": message_id(data.get("id").and_then(Value::as_str)),
                    "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": usage_json(&Usage::default()),
                }}),
            ));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let Some(choice) = data.pointer("/choices/0") else {
            return Ok(out);
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.open != Open::Text {
                self.open(Open::Text, json!({"type": "text", "text": ""}), &mut out);
            }
            out.push(Self::frame(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": self.next_block - 1,
                    "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(index) {
                let block = json!({"type": "tool_use",
                    "id": call.get("id").cloned().unwrap_or_default(),
                    "name": call.pointer("/function/name").cloned().unwrap_or_default(),
                    "input": {}});
                self.open(Open::Tool(index), block, &mut out);
            }
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !arguments.is_empty() {
                out.push(Self::frame(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": self.next_block - 1,
                        "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                ));
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_reason(Some(reason));
        }
        Ok(out)
    }

    /// The closing events, once chat's stream has ended; the usage rides on
    /// `message_delta`.
    pub fn finish(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        if !self.started {
            // Nothing came at all: still a well-formed (empty) message.
            self.started = true;
            out.push(Self::frame(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": message_id(None), "type": "message", "role": "assistant",
                    "model": self.model, "content": [], "stop_reason": null,
                    "stop_sequence": null, "usage": usage_json(&Usage::default()),
                }}),
            ));
        }
        self.close(&mut out);
        let usage = self.usage.unwrap_or_default();
        let mut delta = Self::frame(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": null},
                "usage": usage_json(&usage)}),
        );
        delta.usage = self.usage;
        out.push(delta);
        out.push(Self::frame(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
        self.ended = true;
        out
    }
}

/// Chat chunks → Anthropic's events.
pub fn stream(
    chunks: ChunkStream,
    model: String,
) -> impl Stream<Item = Result<Chunk, ProviderError>> + Send + 'static {
    let state = (chunks, Translator::new(model), VecDeque::new());
    futures_util::stream::unfold(Some(state), |state| async move {
        let (mut chunks, mut translator, mut pending) = state?;
        loop {
            if let Some(chunk) = pending.pop_front() {
                return Some((Ok(chunk), Some((chunks, translator, pending))));
            }
            if translator.ended {
                return None;
            }
            match chunks.next().await {
                Some(Ok(chunk)) => match translator.on_chunk(&chunk) {
                    Ok(events) => pending.extend(events),
                    Err(e) => return Some((Err(e), None)),
                },
                Some(Err(e)) => return Some((Err(e), None)),
                None => pending.extend(translator.finish()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lanes::frames::Frame;

    fn chunk(data: Value, usage: Option<Usage>) -> Chunk {
        Chunk {
            data: Bytes::from(data.to_string()),
            usage,
            usage_only: usage.is_some(),
            text_chars: 0,
        }
    }

    fn run(chunks: Vec<Chunk>) -> Vec<(String, Value, Option<Usage>)> {
        let mut translator = Translator::new("m".into());
        let mut out = Vec::new();
        for c in &chunks {
            out.extend(translator.on_chunk(c).unwrap());
        }
        out.extend(translator.finish());
        out.into_iter()
            .map(|c| {
                let frame = Frame::parse(c.data.clone());
                (
                    frame.event,
                    serde_json::from_str(&frame.data).unwrap(),
                    c.usage,
                )
            })
            .collect()
    }

    #[test]
    fn a_chat_answer_becomes_a_message() {
        let reply = JsonReply {
            body: json!({"id": "chatcmpl-1", "choices": [{"message": {"content": "hi",
                "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
                "finish_reason": "tool_calls"}]}),
            usage: Some(Usage {
                input: 5,
                output: 2,
                cache_read: 3,
                cache_write: 0,
            }),
        };
        let chunk = message(&reply, "claude-x").unwrap();
        let body: Value = serde_json::from_slice(&chunk.data).unwrap();
        assert_eq!(body["id"], "msg_chatcmpl-1");
        assert_eq!(body["model"], "claude-x");
        assert_eq!(body["content"][0], json!({"type": "text", "text": "hi"}));
        assert_eq!(body["content"][1]["input"], json!({"a": 1}));
        assert_eq!(body["stop_reason"], "tool_use");
        assert_eq!(body["usage"]["input_tokens"], 5);
        assert_eq!(body["usage"]["cache_read_input_tokens"], 3);
        assert_eq!(chunk.usage, reply.usage);
    }

    #[test]
    fn a_text_stream_follows_anthropics_grammar_with_usage_once_at_the_end() {
        let usage = Usage {
            input: 4,
            output: 2,
            cache_read: 0,
            cache_write: 0,
        };
        let events = run(vec![
            chunk(
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                None,
            ),
            chunk(
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "he"}}]}),
                None,
            ),
            chunk(
                json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": "length"}]}),
                None,
            ),
            chunk(json!({"id": "c1", "choices": [], "usage": {}}), Some(usage)),
        ]);
        let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[3].1["delta"]["text"], "llo");
        assert_eq!(events[5].1["delta"]["stop_reason"], "max_tokens");
        assert_eq!(events[5].1["usage"]["output_tokens"], 2);
        let with_usage: Vec<_> = events.iter().filter_map(|(_, _, u)| *u).collect();
        assert_eq!(with_usage, [usage]);
    }

    #[test]
    fn tool_calls_stream_as_tool_use_blocks() {
        let events = run(vec![
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
                None,
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_9", "function": {"name": "f", "arguments": ""}}]}}]}),
                None,
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\""}}]}}]}),
                None,
            ),
            chunk(
                json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
                None,
            ),
        ]);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|(n, _, _)| n == "content_block_start")
            .map(|(_, v, _)| v)
            .collect();
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["id"], "call_9");
        let json: String = events
            .iter()
            .filter_map(|(_, v, _)| v.pointer("/delta/partial_json").and_then(Value::as_str))
            .collect();
        assert_eq!(json, "{\"a\":1}");
        assert_eq!(
            events
                .iter()
                .filter(|(n, _, _)| n == "content_block_stop")
                .count(),
            2
        );
        assert!(
            events
                .iter()
                .any(|(n, v, _)| n == "message_delta" && v["delta"]["stop_reason"] == "tool_use")
        );
    }
}
