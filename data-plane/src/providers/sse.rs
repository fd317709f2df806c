//! Server-sent events from an upstream response, as a stream that respects the
//! deployment's total deadline and maps transport failures to [`ProviderError`].

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::{ProviderError, TimeoutPhase};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` name; "message" when the server named none.
    pub event: String,
    pub data: String,
}

/// Events of `response` until it ends, fails, or `deadline` passes.
pub fn events(
    response: reqwest::Response,
    deadline: Instant,
) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    let inner = response.bytes_stream().eventsource();
    futures_util::stream::unfold(Some(Box::pin(inner)), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout_at(deadline, inner.next()).await {
            Err(_) => Some((Err(ProviderError::Timeout(TimeoutPhase::Completion)), None)),
            Ok(None) => None,
            Ok(Some(Ok(event))) => Some((
                Ok(SseEvent {
                    event: event.event,
                    data: event.data,
                }),
                Some(inner),
            )),
            Ok(Some(Err(e))) => {
                let error = match e {
                    eventsource_stream::EventStreamError::Transport(e) => {
                        ProviderError::Transport(e)
                    }
                    other => ProviderError::Protocol(other.to_string()),
                };
                Some((Err(error), None))
            }
        }
    })
}
