//! Turns a list of SSE events into a response body that follows the request's
//! behaviour: delays between events, breaking off, stalling, or an in-band error.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header;

use super::Behavior;

/// What a stream does once it has sent the events the behaviour allows.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Every event was sent.
    Complete,
    /// Break the connection off (the client sees an incomplete body).
    Cut,
    /// Send the in-band error event, then end normally.
    Error,
    /// Send nothing more and never end.
    Stall,
}

struct State {
    events: VecDeque<Bytes>,
    /// Events still allowed before `ending` applies.
    budget: usize,
    ending: Ending,
    error_event: Option<Bytes>,
    delay: Duration,
    sent: usize,
}

/// An SSE `200 OK` whose body yields `events` under `behavior`; `error_event` is what an
/// `error_after` stream sends in-band.
pub(super) fn sse_response(
    events: Vec<Bytes>,
    error_event: Bytes,
    behavior: &Behavior,
) -> Response {
    let limit = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    let (budget, ending) = if let Some(n) = behavior.cut_after {
        (limit(n), Ending::Cut)
    } else if let Some(n) = behavior.error_after {
        (limit(n), Ending::Error)
    } else if let Some(n) = behavior.stall_after {
        (limit(n), Ending::Stall)
    } else {
        (events.len(), Ending::Complete)
    };
    let state = State {
        events: events.into(),
        budget,
        ending,
        error_event: Some(error_event),
        delay: behavior.chunk_delay,
        sent: 0,
    };
    let body = futures_util::stream::unfold(state, |mut state| async move {
        if state.sent > 0 && !state.delay.is_zero() {
            tokio::time::sleep(state.delay).await;
        }
        if state.sent < state.budget {
            if let Some(event) = state.events.pop_front() {
                state.sent += 1;
                return Some((Ok::<Bytes, io::Error>(event), state));
            }
            return None;
        }
        match state.ending {
            Ending::Complete => None,
            Ending::Cut => {
                // Let hyper flush what was sent (it flushes when the body is pending), then
                // yield one error, after which it aborts the connection.
                tokio::task::yield_now().await;
                state.ending = Ending::Complete;
                state.budget = 0;
                Some((Err(io::Error::other("mock: stream cut on purpose")), state))
            }
            Ending::Error => {
                let event = state.error_event.take()?;
                Some((Ok(event), state))
            }
            Ending::Stall => std::future::pending().await,
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

/// `data: <json>\n\n`
pub(super) fn data(json: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {json}\n\n"))
}

/// `event: <name>\ndata: <json>\n\n` (Anthropic names every event).
pub(super) fn named(name: &str, json: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}
