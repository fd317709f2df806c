//! Server-sent events as the raw frames they arrived in, for passthrough lanes: each
//! frame (up to and including its blank line) is forwarded byte for byte while its
//! `event:` and `data:` are read for usage.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::providers::{ProviderError, TimeoutPhase};

/// One SSE frame: its bytes exactly as received, and what they say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub raw: Bytes,
    /// `event:`; empty when the frame names none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl Frame {
    pub fn parse(raw: Bytes) -> Self {
        let text = String::from_utf8_lossy(&raw);
        let mut event = String::new();
        let mut data: Vec<&str> = Vec::new();
        for line in text.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => value.clone_into(&mut event),
                "data" => data.push(value),
                _ => {}
            }
        }
        Self {
            event,
            data: data.join("\n"),
            raw,
        }
    }

    /// A frame of our own making (translated lanes).
    pub fn encode(event: &str, data: &str) -> Bytes {
        Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
    }
}

/// The end of the first frame in `buf`: the index just past its blank line.
fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b'\n' if buf.get(i + 1) == Some(&b'\n') => return Some(i + 2),
            b'\n' if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') => {
                return Some(i + 3);
            }
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `bytes` into frames until it ends, fails, or `deadline` passes. A last frame
/// without its blank line is still a frame (its bytes reached us; they go on).
pub fn frames<S, E>(bytes: S, deadline: Instant) -> impl Stream<Item = Result<Frame, ProviderError>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<ProviderError>,
{
    let state = (Box::pin(bytes), BytesMut::new(), false);
    futures_util::stream::unfold(Some(state), move |state| async move {
        let (mut bytes, mut buf, mut ended) = state?;
        loop {
            if let Some(end) = frame_end(&buf) {
                let raw = buf.split_to(end).freeze();
                return Some((Ok(Frame::parse(raw)), Some((bytes, buf, ended))));
            }
            if ended {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                let raw = buf.split().freeze();
                return Some((Ok(Frame::parse(raw)), None));
            }
            match tokio::time::timeout_at(deadline, bytes.next()).await {
                Err(_) => {
                    return Some((Err(ProviderError::Timeout(TimeoutPhase::Completion)), None));
                }
                Ok(None) => ended = true,
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk),
                Ok(Some(Err(e))) => return Some((Err(e.into()), None)),
            }
        }
    })
}

/// The frames of an upstream response.
pub fn of_response(
    response: reqwest::Response,
    deadline: Instant,
) -> impl Stream<Item = Result<Frame, ProviderError>> + Send {
    frames(
        response.bytes_stream().map(|r| r.map_err(Transport)),
        deadline,
    )
}

/// reqwest's error as a [`ProviderError`], for [`frames`].
struct Transport(reqwest::Error);

impl From<Transport> for ProviderError {
    fn from(e: Transport) -> Self {
        Self::Transport(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn split(pieces: &[&'static str]) -> Vec<Frame> {
        let stream = futures_util::stream::iter(
            pieces
                .iter()
                .map(|p| Ok::<_, Transport>(Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        frames(stream, deadline).map(Result::unwrap).collect().await
    }

    #[tokio::test]
    async fn frames_keep_their_bytes_across_any_split() {
        let frames = split(&[
            "event: a\nda",
            "ta: {\"x\":1}\n",
            "\nevent: b\r\ndata: 2\r\n\r\n",
            ": c",
        ])
        .await;
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].raw, "event: a\ndata: {\"x\":1}\n\n");
        assert_eq!(
            (frames[0].event.as_str(), frames[0].data.as_str()),
            ("a", "{\"x\":1}")
        );
        assert_eq!(frames[1].raw, "event: b\r\ndata: 2\r\n\r\n");
        assert_eq!(
            (frames[1].event.as_str(), frames[1].data.as_str()),
            ("b", "2")
        );
        // A trailing comment without its blank line still goes on.
        assert_eq!(frames[2].raw, ": c");
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.raw.to_vec()).collect();
        assert_eq!(
            joined,
            b"event: a\ndata: {\"x\":1}\n\nevent: b\r\ndata: 2\r\n\r\n: c"
        );
    }

    #[test]
    fn multi_line_data_is_joined() {
        let frame = Frame::parse(Bytes::from_static(b"data: a\ndata: b\n\n"));
        assert_eq!(frame.data, "a\nb");
        assert_eq!(frame.event, "");
    }
}
