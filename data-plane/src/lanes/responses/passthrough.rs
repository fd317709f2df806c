//! The Responses lane to OpenAI and Azure OpenAI: the client's request with only
//! `model` (the deployment's) and `max_output_tokens` (the reserved ceiling) rewritten,
//! and the answer forwarded byte for byte while its usage is read: from the body, or
//! from the terminal event — `response.completed`, `response.incomplete` or
//! `response.failed` — which carries the whole response and its usage, once.
//!
//! Azure is called on its v1 API (`{base_url}/openai/v1/responses`, `api-key`), where the
//! deployment name goes in `model` as on OpenAI.

use bytes::Bytes;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::lanes::client_header;
use crate::lanes::frames::{self, Frame};
use crate::money::Usage;
use crate::providers::{
    CallCx, Chunk, ChunkStream, JsonRequest, ProviderError, TimeoutPhase, send,
};
use crate::snapshot::ProviderKind;

/// The events that end a response, each carrying its final usage.
const TERMINAL: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

pub async fn call(req: &JsonRequest, cx: CallCx<'_>) -> Result<ChunkStream, ProviderError> {
    let mut body = req.body.clone();
    let d = cx.deployment;
    body.insert("model".into(), Value::String(d.upstream_model.clone()));
    if let Some(cap) = req.output_cap() {
        body.insert("max_output_tokens".into(), cap.into());
    }
    let mut request = match d.provider {
        ProviderKind::AzureOpenAi => {
            let request = cx.http.post(format!("{}/openai/v1/responses", d.base_url));
            match &d.credential {
                Some(key) => request.header("api-key", key.expose_secret()),
                None => request,
            }
        }
        _ => {
            let request = cx.http.post(format!("{}/responses", d.base_url));
            match &d.credential {
                Some(key) => request.bearer_auth(key.expose_secret()),
                None => request,
            }
        }
    };
    if let Some(beta) = client_header("openai-beta") {
        request = request.header("openai-beta", beta);
    }
    let deadline = Instant::now() + d.timeouts.total;
    let response = send(request.json(&body), cx).await?;
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
    let chunks = futures_util::stream::unfold(Some(frames), |frames| async move {
        let mut frames = frames?;
        let item = match frames.next().await {
            Some(Ok(frame)) => stream_chunk(frame),
            Some(Err(e)) => Err(e),
            None => Err(ProviderError::Protocol(
                "the stream ended before the response did".into(),
            )),
        };
        match item {
            Ok((chunk, last)) => Some((Ok(chunk), (!last).then_some(frames))),
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(Box::pin(chunks))
}

/// The Responses API's usage object → [`Usage`]: cached input apart; reasoning tokens
/// are inside `output_tokens`, billed at the output price.
pub fn usage_of(usage: &Value) -> Option<Usage> {
    let input = usage.get("input_tokens").and_then(Value::as_u64)?;
    let cached = usage
        .pointer("/input_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(input);
    Some(Usage {
        input: input - cached,
        output: usage
            .get("output_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        cache_read: cached,
        cache_write: 0,
    })
}

fn json_chunk(bytes: Bytes) -> Result<Chunk, ProviderError> {
    let response: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ProviderError::Protocol(format!("body is not JSON: {e}")))?;
    Ok(Chunk {
        usage: response.get("usage").and_then(usage_of),
        data: bytes,
        usage_only: false,
        text_chars: 0,
    })
}

/// One frame as it came; the terminal event's usage; whether it ends the stream (a
/// terminal event, or the upstream's `error` event, forwarded as its SDKs expect).
fn stream_chunk(frame: Frame) -> Result<(Chunk, bool), ProviderError> {
    let terminal = TERMINAL.contains(&frame.event.as_str());
    let usage = if terminal {
        let data: Value = serde_json::from_str(&frame.data)
            .map_err(|e| ProviderError::Protocol(format!("event is not JSON: {e}")))?;
        data.pointer("/response/usage").and_then(usage_of)
    } else {
        None
    };
    let last = terminal || frame.event == "error";
    Ok((
        Chunk {
            data: frame.raw,
            usage,
            usage_only: false,
            text_chars: 0,
        },
        last,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_keeps_cached_input_apart_and_reasoning_in_output() {
        let usage = usage_of(
            &json!({"input_tokens": 30, "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}}),
        )
        .unwrap();
        assert_eq!(
            usage,
            Usage {
                input: 10,
                output: 9,
                cache_read: 20,
                cache_write: 0
            }
        );
        assert_eq!(usage_of(&json!(null)), None);
    }

    #[test]
    fn only_terminal_events_carry_usage_and_end_the_stream() {
        let frame =
            |event: &str, data: Value| Frame::parse(Frame::encode(event, &data.to_string()));
        let (delta, last) =
            stream_chunk(frame("response.output_text.delta", json!({"delta": "hi"}))).unwrap();
        assert!(delta.usage.is_none() && !last);
        for event in TERMINAL {
            let (end, last) = stream_chunk(frame(
                event,
                json!({"response": {"usage": {"input_tokens": 3, "output_tokens": 2}}}),
            ))
            .unwrap();
            assert!(last);
            assert_eq!(end.usage.unwrap().output, 2);
        }
        let (_, last) = stream_chunk(frame("error", json!({"message": "x"}))).unwrap();
        assert!(last);
    }
}
