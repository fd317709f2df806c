//! One representative streamed chunk of each upstream format — a one-token text delta, as
//! providers send most of a stream — for the hot-path benchmarks and the instruction-count
//! binary (`examples/chunk_cost.rs`), so both measure the same bytes.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};

use super::sse::SseEvent;

/// An OpenAI `chat.completion.chunk` (also what Azure and OpenAI-compatible servers send).
pub fn openai_event() -> SseEvent {
    SseEvent {
        event: "message".into(),
        data: r#"{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":" Paris"},"logprobs":null,"finish_reason":null}],"usage":null}"#.into(),
    }
}

/// Anthropic's `message_start` (sent once, before the deltas).
pub fn anthropic_start() -> SseEvent {
    SseEvent {
        event: "message_start".into(),
        data: r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#.into(),
    }
}

/// An Anthropic `content_block_delta`.
pub fn anthropic_event() -> SseEvent {
    SseEvent {
        event: "content_block_delta".into(),
        data: r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Paris"}}"#.into(),
    }
}

/// A `streamGenerateContent?alt=sse` event (Gemini API and Vertex AI).
pub fn gemini_event() -> SseEvent {
    SseEvent {
        event: "message".into(),
        data: r#"{"candidates":[{"content":{"parts":[{"text":" Paris"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1,"totalTokenCount":10},"modelVersion":"gemini-2.5-flash","responseId":"mock1"}"#.into(),
    }
}

/// A ConverseStream `contentBlockDelta` event, decoded.
pub fn bedrock_message() -> Message {
    Message::new(Bytes::from_static(
        br#"{"contentBlockIndex":0,"delta":{"text":" Paris"},"p":"abcdefghijklmnopqrstu"}"#,
    ))
    .add_header(Header::new(
        ":message-type",
        HeaderValue::String("event".into()),
    ))
    .add_header(Header::new(
        ":event-type",
        HeaderValue::String("contentBlockDelta".into()),
    ))
    .add_header(Header::new(
        ":content-type",
        HeaderValue::String("application/json".into()),
    ))
}

/// [`bedrock_message`] as it arrives: one binary event-stream frame.
pub fn bedrock_frame() -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a well-formed message into a Vec cannot fail.
    let _ = write_message_to(&bedrock_message(), &mut out);
    out
}

/// Decodes one whole frame (prelude and message CRCs checked), as the adapter does.
pub fn decode_frame(frame: &[u8]) -> Message {
    let mut buffer = BytesMut::from(frame);
    match MessageFrameDecoder::new().decode_frame(&mut buffer) {
        Ok(DecodedFrame::Complete(message)) => message,
        // The sample is a whole, valid frame; anything else is a broken benchmark.
        other => panic!("sample frame did not decode: {other:?}"),
    }
}
