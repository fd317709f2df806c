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
    if let Some(cap) = req.output_cap() {
        fit_thinking_budget(&mut body, cap);
    }
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

/// Anthropic's least thinking budget.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Extended thinking is billed as output and counted inside `max_tokens`, which
/// Anthropic requires to be above `thinking.budget_tokens`. When a clamping budget lowered
/// `max_tokens` to or below the client's thinking budget, the thinking budget is lowered
/// to fit (the answer's output stays within the reservation either way; this keeps the
/// call from being refused for it). Below Anthropic's least budget it is left as sent:
/// the provider's refusal says why better than a silent change would.
fn fit_thinking_budget(body: &mut PatchedBody<'_>, cap: u64) {
    let Some(thinking) = body.get("thinking").and_then(Value::as_object) else {
        return;
    };
    let Some(budget) = thinking.get("budget_tokens").and_then(Value::as_u64) else {
        return;
    };
    if budget >= cap && cap > MIN_THINKING_BUDGET {
        let mut thinking = thinking.clone();
        thinking.insert("budget_tokens".into(), (cap - 1).into());
        body.insert("thinking", Value::Object(thinking));
    }
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
    fn a_thinking_budget_at_or_above_a_clamped_ceiling_is_lowered_below_it() {
        let body = |budget: u64| {
            serde_json::json!({"max_tokens": 8000, "thinking": {"type": "enabled", "budget_tokens": budget}})
                .as_object()
                .unwrap()
                .clone()
        };
        let fitted = |budget, cap| {
            let base = body(budget);
            let mut b = PatchedBody::new(&base);
            apply_output_cap(&mut b, Some(cap), "max_tokens");
            fit_thinking_budget(&mut b, cap);
            let sent = serde_json::to_value(&b).unwrap();
            (
                sent["max_tokens"].as_u64().unwrap(),
                sent["thinking"]["budget_tokens"].as_u64().unwrap(),
            )
        };
        assert_eq!(fitted(6000, 8000), (8000, 6000), "fits: untouched");
        assert_eq!(fitted(6000, 3000), (3000, 2999), "clamped: lowered");
        assert_eq!(
            fitted(3000, 3000),
            (3000, 2999),
            "equal is refused upstream"
        );
        assert_eq!(
            fitted(2000, 1024),
            (1024, 2000),
            "below the least budget: as sent"
        );
        let base = serde_json::json!({"thinking": {"type": "disabled"}})
            .as_object()
            .unwrap()
            .clone();
        let mut disabled = PatchedBody::new(&base);
        fit_thinking_budget(&mut disabled, 10);
        assert_eq!(
            serde_json::to_value(&disabled).unwrap()["thinking"],
            serde_json::json!({"type": "disabled"})
        );
    }

    #[test]
    fn thinking_tokens_are_inside_output_tokens_and_billed_as_output() {
        // Anthropic counts a response's thinking blocks in `output_tokens`.
        let mut usage = Usage::default();
        let body = r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"output_tokens":1500}}"#;
        let (delta, _) = stream_chunk(frame("message_delta", body), &mut usage).unwrap();
        assert_eq!(delta.usage.unwrap().output, 1500);
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
