//! Answer: OpenAI chat → OpenAI Responses. A `chat.completion` becomes a `response`
//! object; a chunk stream becomes the Responses event sequence: `response.created`,
//! `response.in_progress`, per output item `response.output_item.added`, its text
//! (`response.content_part.added`, `response.output_text.delta`…, `…done`) or its
//! arguments (`response.function_call_arguments.delta`…, `…done`),
//! `response.output_item.done`, and `response.completed` (or `response.incomplete`
//! when the output limit cut it) with the usage.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::lanes::frames::Frame;
use crate::money::Usage;
use crate::providers::{Chunk, ChunkStream, JsonReply, ProviderError};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// [`Usage`] in the Responses API's shape (input includes cached tokens).
pub fn usage_json(usage: &Usage) -> Value {
    let input = usage.prompt_total();
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": usage.cache_read},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input.saturating_add(usage.output),
    })
}

/// What a response echoes of its request, and the fields every response has.
#[derive(Debug, Clone)]
pub struct Echo {
    pub model: String,
    pub id: String,
    pub created_at: u64,
}

impl Echo {
    pub fn new(model: String) -> Self {
        Self {
            model,
            id: new_id("resp"),
            created_at: now(),
        }
    }

    fn response(&self, status: &str, output: Value, usage: Option<&Usage>) -> Value {
        json!({
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "output": output,
            "usage": usage.map_or(Value::Null, usage_json),
            "error": null,
            "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
            "previous_response_id": null, "store": false, "parallel_tool_calls": true,
            "tool_choice": "auto", "tools": [], "text": {"format": {"type": "text"}},
        })
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn status_of(finish_reason: Option<&str>) -> &'static str {
    if finish_reason == Some("length") {
        "incomplete"
    } else {
        "completed"
    }
}

/// A complete chat answer as one Responses JSON body.
pub fn response(reply: &JsonReply, model: &str) -> Result<Chunk, ProviderError> {
    let choice = reply
        .body
        .pointer("/choices/0")
        .ok_or_else(|| ProviderError::Protocol("the chat answer has no choice".into()))?;
    let mut output = Vec::new();
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str)
        && !text.is_empty()
    {
        output.push(message_item(&new_id("msg"), text, "completed"));
    }
    let calls = choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        output.push(json!({"type": "function_call", "id": new_id("fc"),
            "call_id": call.get("id").cloned().unwrap_or_default(),
            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
            "arguments": call.pointer("/function/arguments").cloned().unwrap_or_else(|| json!("{}")),
            "status": "completed"}));
    }
    let status = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let body = Echo::new(model.to_owned()).response(status, output.into(), reply.usage.as_ref());
    Ok(Chunk {
        data: Bytes::from(body.to_string()),
        usage: reply.usage,
        usage_only: false,
        text_chars: 0,
    })
}

/// The output item being streamed.
#[derive(Debug)]
enum Open {
    Text {
        id: String,
        text: String,
    },
    /// A function call, by chat's `tool_calls` index.
    Call {
        index: u64,
        item: Value,
    },
}

/// One stream's translation state.
#[derive(Debug)]
pub struct Translator {
    echo: Echo,
    started: bool,
    seq: u64,
    open: Option<Open>,
    done: Vec<Value>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
    pub ended: bool,
}

impl Translator {
    pub fn new(model: String) -> Self {
        Self {
            echo: Echo::new(model),
            started: false,
            seq: 0,
            open: None,
            done: Vec::new(),
            finish_reason: None,
            usage: None,
            ended: false,
        }
    }

    fn event(&mut self, name: &str, mut data: Value, out: &mut Vec<Chunk>) {
        data["type"] = name.into();
        data["sequence_number"] = self.seq.into();
        self.seq += 1;
        out.push(Chunk {
            data: Frame::encode(name, &data.to_string()),
            usage: None,
            usage_only: false,
            text_chars: 0,
        });
    }

    fn start(&mut self, out: &mut Vec<Chunk>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.echo.response("in_progress", json!([]), None);
        self.event("response.created", json!({"response": response}), out);
        let response = self.echo.response("in_progress", json!([]), None);
        self.event("response.in_progress", json!({"response": response}), out);
    }

    fn close(&mut self, out: &mut Vec<Chunk>) {
        let index = self.done.len();
        let item = match self.open.take() {
            None => return,
            Some(Open::Text { id, text }) => {
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut done = base.clone();
                done["text"] = text.clone().into();
                self.event("response.output_text.done", done, out);
                let mut part = base;
                part["part"] = json!({"type": "output_text", "text": text, "annotations": []});
                self.event("response.content_part.done", part, out);
                message_item(&id, &text, "completed")
            }
            Some(Open::Call { mut item, .. }) => {
                item["status"] = "completed".into();
                let done = json!({"item_id": item["id"], "output_index": index, "arguments": item["arguments"]});
                self.event("response.function_call_arguments.done", done, out);
                item
            }
        };
        self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
        self.done.push(item);
    }

    /// The events one chat chunk becomes.
    pub fn on_chunk(&mut self, chunk: &Chunk) -> Result<Vec<Chunk>, ProviderError> {
        let data: Value = serde_json::from_slice(&chunk.data)
            .map_err(|e| ProviderError::Protocol(format!("stream chunk is not JSON: {e}")))?;
        let mut out = Vec::new();
        self.start(&mut out);
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
            if !matches!(self.open, Some(Open::Text { .. })) {
                self.close(&mut out);
                let id = new_id("msg");
                let index = self.done.len();
                let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
                self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                    &mut out,
                );
                self.event(
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                    "part": {"type": "output_text", "text": "", "annotations": []}}),
                    &mut out,
                );
                self.open = Some(Open::Text {
                    id,
                    text: String::new(),
                });
            }
            let index = self.done.len();
            if let Some(Open::Text { id, text: so_far }) = &mut self.open {
                so_far.push_str(text);
                let id = id.clone();
                self.event(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": index,
                    "content_index": 0, "delta": text, "logprobs": []}),
                    &mut out,
                );
            }
        }
        let calls = delta.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if !matches!(self.open, Some(Open::Call { index: open, .. }) if open == index) {
                self.close(&mut out);
                let item = json!({"type": "function_call", "id": new_id("fc"),
                    "call_id": call.get("id").cloned().unwrap_or_default(),
                    "name": call.pointer("/function/name").cloned().unwrap_or_default(),
                    "arguments": "", "status": "in_progress"});
                let output_index = self.done.len();
                self.event(
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item.clone()}),
                    &mut out,
                );
                self.open = Some(Open::Call { index, item });
            }
            let arguments = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if arguments.is_empty() {
                continue;
            }
            let output_index = self.done.len();
            if let Some(Open::Call { item, .. }) = &mut self.open {
                let so_far = format!(
                    "{}{arguments}",
                    item["arguments"].as_str().unwrap_or_default()
                );
                item["arguments"] = so_far.into();
                let item_id = item["id"].clone();
                self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": output_index, "delta": arguments}),
                    &mut out,
                );
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        Ok(out)
    }

    /// The closing events once chat's stream has ended; the usage rides on the last.
    pub fn finish(&mut self) -> Vec<Chunk> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        let status = status_of(self.finish_reason.as_deref());
        let response = self
            .echo
            .response(status, self.done.clone().into(), self.usage.as_ref());
        self.event(
            &format!("response.{status}"),
            json!({"response": response}),
            &mut out,
        );
        if let Some(last) = out.last_mut() {
            last.usage = self.usage;
        }
        self.ended = true;
        out
    }
}

/// Chat chunks → the Responses event sequence.
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

    fn chunk(data: Value, usage: Option<Usage>) -> Chunk {
        Chunk {
            data: Bytes::from(data.to_string()),
            usage,
            usage_only: usage.is_some(),
            text_chars: 0,
        }
    }

    fn run(chunks: Vec<Chunk>) -> Vec<(String, Value, Option<Usage>)> {
        let mut t = Translator::new("m".into());
        let mut out = Vec::new();
        for c in &chunks {
            out.extend(t.on_chunk(c).unwrap());
        }
        out.extend(t.finish());
        out.into_iter()
            .map(|c| {
                let f = Frame::parse(c.data.clone());
                (f.event, serde_json::from_str(&f.data).unwrap(), c.usage)
            })
            .collect()
    }

    #[test]
    fn a_chat_answer_becomes_a_response() {
        let reply = JsonReply {
            body: json!({"choices": [{"message": {"content": "hi", "tool_calls": [
                {"id": "call_1", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}),
            usage: Some(Usage {
                input: 3,
                output: 2,
                cache_read: 1,
                cache_write: 0,
            }),
        };
        let body: Value =
            serde_json::from_slice(&response(&reply, "claude").unwrap().data).unwrap();
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["output"][0]["content"][0]["text"], "hi");
        assert_eq!(body["output"][1]["call_id"], "call_1");
        assert_eq!(body["usage"]["input_tokens"], 4);
        assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 1);
    }

    #[test]
    fn a_text_stream_becomes_the_event_sequence_with_usage_once_at_the_end() {
        let usage = Usage {
            input: 4,
            output: 2,
            ..Usage::default()
        };
        let events = run(vec![
            chunk(
                json!({"choices": [{"index": 0, "delta": {"content": "he"}}]}),
                None,
            ),
            chunk(
                json!({"choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": "length"}]}),
                None,
            ),
            chunk(json!({"choices": [], "usage": {}}), Some(usage)),
        ]);
        let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.incomplete"
            ]
        );
        let last = &events.last().unwrap().1;
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "hello");
        assert_eq!(last["response"]["usage"]["output_tokens"], 2);
        let seqs: Vec<u64> = events
            .iter()
            .map(|(_, v, _)| v["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..10).collect::<Vec<_>>());
        assert_eq!(
            events.iter().filter_map(|(_, _, u)| *u).collect::<Vec<_>>(),
            [usage]
        );
    }

    #[test]
    fn tool_calls_stream_as_function_call_items() {
        let events = run(vec![
            chunk(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
                None,
            ),
            chunk(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
                None,
            ),
        ]);
        let done = events
            .iter()
            .find(|(n, _, _)| n == "response.output_item.done")
            .unwrap();
        assert_eq!(done.1["item"]["arguments"], "{\"a\":1}");
        assert_eq!(done.1["item"]["call_id"], "call_1");
        assert_eq!(events.last().unwrap().0, "response.completed");
    }
}
