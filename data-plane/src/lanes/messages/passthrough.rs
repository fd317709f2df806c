//! The Messages lane to an Anthropic deployment: the client's request with only `model`
//! (the deployment's) and `max_tokens` (the reserved ceiling) rewritten, its
//! `anthropic-version` / `anthropic-beta` passed on, and the answer forwarded byte for
//! byte while its usage is read: from the body, or from `message_start` and
//! `message_delta` (running totals, so each report replaces the last — counted once).

use bytes::Bytes;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use super::update_usage;
use crate::lanes::client_header;
use crate::lanes::frames::{self, Frame};
use crate::money::Usage;
use crate::providers::patched::PatchedBody;
use crate::providers::{
    CallCx, Chunk, ChunkStream, JsonRequest, ProviderError, TimeoutPhase, apply_output_cap, send,
};

/// The version sent when the client names none (the one Anthropic's SDKs send).
const DEFAULT_VERSION: &str = "2023-06-01";

pub async fn call(req: &JsonRequest, cx: CallCx<'_>) -> Result<ChunkStream, ProviderError> {
    let mut body = PatchedBody::new(&req.body);
    body.insert("model", Value::String(cx.deployment.upstream_model.clone()));
    apply_output_cap(&mut body, req.output_cap(), "max_tokens");
    let version = client_header("anthropic-version").unwrap_or_else(|| DEFAULT_VERSION.into());
    let mut request = cx
        .http
        .post(format!("{}/messages", cx.deployment.base_url))
        .header("anthropic-version", version)
        .json(&body);
    if let Some(beta) = client_header("anthropic-beta") {
        request = request.header("anthropic-beta", beta);
    }
    if let Some(key) = &cx.deployment.credential {
        request = request.header("x-api-key", key.expose_secret());
    }
    let deadline = Instant::now() + cx.deployment.timeouts.total;
    let response = send(request, cx).await?;
    if !req.stream() {
        let bytes = tokio::time::timeout_at(deadline, response.bytes())
            .await
            .map_err(|_| ProviderError::Timeout(TimeoutPhase::Completion))?
            .map_err(ProviderError::Transport)?;
        let chunk = json_chunk(bytes)?;
        return Ok(Box::pin(futures_util::stream::once(std::future::ready(
            Ok(chunk),
        ))));
    }
    let frames = Box::pin(frames::of_response(response, deadline));
    // Ends right after `message_stop` (or an error event) is passed on, without waiting
    // for the upstream to close; an upstream that closes before it is cut short.
    let state = (frames, Usage::default());
    let chunks = futures_util::stream::unfold(Some(state), |state| async move {
        let (mut frames, mut usage) = state?;
        let item = match frames.next().await {
            Some(Ok(frame)) => stream_chunk(frame, &mut usage),
            Some(Err(e)) => Err(e),
            None => Err(ProviderError::Protocol(
                "the stream ended before `message_stop`".into(),
            )),
        };
        match item {
            Ok((chunk, last)) => Some((Ok(chunk), (!last).then_some((frames, usage)))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Box::pin(chunks))
}

/// A whole JSON answer, its bytes untouched, its usage read.
fn json_chunk(bytes: Bytes) -> Result<Chunk, ProviderError> {
    let message: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ProviderError::Protocol(format!("body is not JSON: {e}")))?;
    let usage = message.get("usage").filter(|u| u.is_object()).map(|u| {
        let mut usage = Usage::default();
        update_usage(&mut usage, u);
        usage
    });
    Ok(Chunk {
        data: bytes,
        usage,
        usage_only: false,
        text_chars: 0,
    })
}

/// One frame of the stream, passed on as it came, with the totals so far when it
/// reports usage; and whether it ends the stream (`message_stop`, or the `error` event —
/// the upstream's own error, forwarded as the client's SDK expects it).
fn stream_chunk(frame: Frame, usage: &mut Usage) -> Result<(Chunk, bool), ProviderError> {
    let mut reported = None;
    let mut last = false;
    match frame.event.as_str() {
        "message_start" | "message_delta" => {
            let data: Value = serde_json::from_str(&frame.data)
                .map_err(|e| ProviderError::Protocol(format!("event is not JSON: {e}")))?;
            let found = data
                .pointer("/message/usage")
                .or_else(|| data.get("usage"))
                .filter(|u| u.is_object());
            if let Some(found) = found {
                update_usage(usage, found);
                reported = Some(*usage);
            }
        }
        "message_stop" | "error" => last = true,
        _ => {}
    }
    Ok((
        Chunk {
            data: frame.raw,
            usage: reported,
            usage_only: false,
            text_chars: 0,
        },
        last,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: &str, data: &str) -> Frame {
        Frame::parse(Frame::encode(event, data))
    }

    #[test]
    fn usage_totals_replace_each_other_and_cache_tokens_stay_apart() {
        let mut usage = Usage::default();
        let (start, _) = stream_chunk(
            frame("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_creation_input_tokens":3,"cache_read_input_tokens":20,"output_tokens":1}}}"#),
            &mut usage,
        )
        .unwrap();
        assert_eq!(start.usage.unwrap().output, 1);
        let (ping, _) = stream_chunk(frame("ping", r#"{"type":"ping"}"#), &mut usage).unwrap();
        assert_eq!(ping.usage, None);
        let (delta, _) = stream_chunk(
            frame(
                "message_delta",
                r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":8}}"#,
            ),
            &mut usage,
        )
        .unwrap();
        assert_eq!(
            delta.usage,
            Some(Usage {
                input: 10,
                output: 8,
                cache_read: 20,
                cache_write: 3
            })
        );
        let (stop, last) = stream_chunk(
            frame("message_stop", r#"{"type":"message_stop"}"#),
            &mut usage,
        )
        .unwrap();
        assert!(last);
        // Bytes are the frame's own.
        assert_eq!(
            stop.data,
            Frame::encode("message_stop", r#"{"type":"message_stop"}"#)
        );
    }

    #[test]
    fn a_json_answer_keeps_its_bytes() {
        let bytes =
            Bytes::from_static(br#"{"id":"msg_1",  "usage":{"input_tokens":4,"output_tokens":2}}"#);
        let chunk = json_chunk(bytes.clone()).unwrap();
        assert_eq!(chunk.data, bytes);
        assert_eq!(chunk.usage.unwrap().input, 4);
        assert!(json_chunk(Bytes::from_static(b"nope")).is_err());
    }
}
