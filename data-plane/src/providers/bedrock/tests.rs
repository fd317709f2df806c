use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue};
use serde_json::json;

use super::*;

const TEXT: &str = include_str!("../../../tests/fixtures/bedrock/converse_text.json");
const TOOL_USE: &str = include_str!("../../../tests/fixtures/bedrock/converse_tool_use.json");

fn request(body: Value) -> JsonRequest {
    JsonRequest {
        body: body.as_object().cloned().unwrap_or_default(),
        output_ceiling: Some(128),
    }
}

fn event(kind: &str, payload: Value) -> Message {
    Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(kind.to_owned().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
}

fn framed(messages: &[Message]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        write_message_to(m, &mut out).unwrap();
    }
    out
}

#[test]
fn chat_becomes_converse() {
    let body = request_body(&request(json!({
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                "function": {"name": "look", "arguments": "{\"x\":1}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "{\"seen\": \"cat\"}"}
        ],
        "temperature": 0.5,
        "stop": ["END"],
        "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
        "tool_choice": "required"
    })))
    .unwrap();
    assert_eq!(body["system"], json!([{"text": "Be brief."}]));
    assert_eq!(
        body["messages"][0]["content"][1],
        json!({"image": {"format": "jpeg", "source": {"bytes": "/9j/4AAQ"}}})
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "look", "input": {"x": 1}}}]})
    );
    assert_eq!(
        body["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": "t1", "content": [{"json": {"seen": "cat"}}]}})
    );
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 128, "temperature": 0.5, "stopSequences": ["END"]})
    );
    assert_eq!(body["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"],
        json!({"json": {"type": "object"}})
    );
}

#[test]
fn what_converse_cannot_do_is_refused() {
    let refused = |body: Value| match request_body(&request(body)) {
        Err(ProviderError::Untranslatable { param, .. }) => param.unwrap_or_default(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refused(json!({"messages": [], "n": 3})), "n");
    assert_eq!(
        refused(json!({"messages": [], "logprobs": true})),
        "logprobs"
    );
    assert_eq!(
        refused(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})),
        "messages"
    );
}

#[test]
fn converse_answers_become_chat_completions_with_cache_tokens_apart() {
    let reply = response_body(&serde_json::from_str(TEXT).unwrap(), "m").unwrap();
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "Hello from Bedrock."
    );
    assert_eq!(reply.body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        reply.usage,
        Some(Usage {
            input: 12,
            output: 6,
            cache_read: 20,
            cache_write: 10
        })
    );
    assert_eq!(reply.body["usage"]["prompt_tokens"], 42);
    let reply = response_body(&serde_json::from_str(TOOL_USE).unwrap(), "m").unwrap();
    let call = &reply.body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(call["function"]["arguments"], "{\"sign\":\"WZPZ\"}");
    assert_eq!(reply.body["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn an_event_stream_decodes_into_chunks_and_usage_from_metadata() {
    let bytes = framed(&[
        event("messageStart", json!({"role": "assistant"})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "lo"}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t9", "name": "look"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"x\":"}}}),
        ),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}}),
        ),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13, "cacheReadInputTokens": 2}, "metrics": {"latencyMs": 5}}),
        ),
    ]);
    // Split the bytes mid-frame, as TCP may.
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = BytesMut::new();
    let mut decoded = Vec::new();
    for piece in bytes.chunks(7) {
        buffer.extend_from_slice(piece);
        while let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buffer).unwrap() {
            decoded.push(Ok(m));
        }
    }
    assert_eq!(decoded.len(), 9);
    let chunks: Vec<_> = translate_stream(futures_util::stream::iter(decoded), "m".into())
        .collect()
        .await;
    let chunks: Vec<Chunk> = chunks.into_iter().map(Result::unwrap).collect();
    let json: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_slice(&c.data).unwrap())
        .collect();
    let text: String = json
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(text, "Hello");
    let args: String = json
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(args, "{\"x\":1}");
    assert_eq!(json[3]["choices"][0]["delta"]["tool_calls"][0]["id"], "t9");
    let last = chunks.last().unwrap();
    assert!(last.usage_only);
    assert_eq!(
        last.usage,
        Some(Usage {
            input: 9,
            output: 4,
            cache_read: 2,
            cache_write: 0
        })
    );
}

#[test]
fn a_corrupted_frame_is_refused_by_its_crc() {
    let mut bytes = framed(&[event("messageStart", json!({"role": "assistant"}))]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = BytesMut::from(&bytes[..]);
    assert!(decoder.decode_frame(&mut buffer).is_err());
}

#[test]
fn exceptions_fail_the_stream_in_band() {
    let exception = Message::new(Bytes::from(
        json!({"message": "Too many requests"}).to_string(),
    ))
    .add_header(Header::new(
        ":message-type",
        HeaderValue::String("exception".into()),
    ))
    .add_header(Header::new(
        ":exception-type",
        HeaderValue::String("throttlingException".into()),
    ));
    let mut translator = StreamTranslator::new("m".into());
    assert!(matches!(
        translator.on_message(&exception),
        Err(ProviderError::InStream(m)) if m == "throttlingException: Too many requests"
    ));
    assert!(translator.ended);
}
