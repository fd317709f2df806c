//! The HTTP accept loop both Tollgate servers (the gateway and the control plane's admin
//! API) run their axum router on, so that slow or hostile clients cannot hold them.
//!
//! `axum::serve` has no timeouts and no connection cap. Here every connection is bounded:
//!
//! - **connection cap** — a semaphore of [`Limits::max_connections`] permits is taken
//!   *before* `accept`, so beyond the cap new connections wait in the kernel's listen
//!   backlog (and are refused by it once that is full) instead of costing memory here;
//! - **header read timeout** — an HTTP/1 request head must arrive completely within
//!   [`Limits::header_read_timeout`] (hyper's own timer, started when the server starts
//!   waiting for a head), so a slowloris sending one header byte a second is cut off;
//! - **body read timeout** — a request body must arrive completely within
//!   [`Limits::body_read_timeout`] of its head; a body still trickling then fails with
//!   [`BodyTimeout`] (handlers find it in the error's source chain);
//! - **idle timeout** — a connection with no request in flight (no handler running, no
//!   response body being sent) for [`Limits::idle_timeout`] is closed. This covers idle
//!   keep-alive connections, HTTP/2 connections and clients that connect and never send
//!   a byte; a long response (a slow upstream, a stream) is never idle.
//!
//! Shutdown stops accepting, asks every connection to finish what is in flight
//! (HTTP/1 keep-alive off, HTTP/2 GOAWAY) and returns when all are closed.
//!
//! This crate knows nothing of Tollgate's routes, errors or settings: callers pass the
//! router and the limits.

pub mod probe;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What one server allows each client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An HTTP/1 request head must be complete this long after the server started
    /// waiting for it.
    pub header_read_timeout: Duration,
    /// A request body must be complete this long after its head arrived.
    pub body_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// A request body that did not arrive within [`Limits::body_read_timeout`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(pub Duration);

impl BodyTimeout {
    /// The `BodyTimeout` somewhere in `error`'s source chain, if any (axum wraps body
    /// errors a few times before a handler sees them).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<Self>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets the
/// open connections finish what they are doing and returns once all are closed.
/// Handlers get the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);

    loop {
        // The permit first: beyond the cap, connections stay in the backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; but if it were, stop serving
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small SSE writes must leave at once, not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let builder = builder.clone();
        let app = app.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            metrics::gauge!("tollgate_http_connections").increment(1.0);
            serve_connection(&builder, tcp, peer, app, limits, stop).await;
            metrics::gauge!("tollgate_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}

/// Connection errors (the client went away during the handshake) are routine; anything
/// else (out of file descriptors) is logged, and accepting pauses so as not to spin.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed; pausing for 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    // Requests in flight on this connection: a handler running or a body being sent.
    let (in_flight, mut watch_in_flight) = watch::channel(0_usize);
    let in_flight = Arc::new(in_flight);
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let guard = InFlight::enter(in_flight.clone());
        let mut request = request
            .map(|body| axum::body::Body::new(Deadline::new(body, limits.body_read_timeout)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let Ok(response) = app.oneshot(request).await;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        }
    });
    let connection = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            finished = connection.as_mut() => {
                if let Err(e) = finished {
                    // Header timeouts, resets, malformed requests: the client's business.
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = idle(&mut watch_in_flight, limits.idle_timeout) => {
                // Nothing is in flight, so dropping the connection loses no answer.
                metrics::counter!("tollgate_http_idle_closed_total").increment(1);
                tracing::debug!(%peer, "closing an idle connection");
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Completes once no request has been in flight for `timeout`.
async fn idle(in_flight: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if in_flight.wait_for(|n| *n == 0).await.is_err() {
            // The service is gone, so is the connection: nothing to time out.
            return std::future::pending().await;
        }
        match tokio::time::timeout(timeout, in_flight.changed()).await {
            Err(_) => return,
            Ok(Ok(())) => continue,
            Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

/// Counts one request as in flight from its head until its response body is dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn enter(counter: Arc<watch::Sender<usize>>) -> Self {
        counter.send_modify(|n| *n += 1);
        Self(counter)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct Tracked<B> {
    body: B,
    _guard: InFlight,
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyTimeout`] when it is not complete by a deadline.
struct Deadline<B> {
    body: B,
    limit: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Deadline<B> {
    fn new(body: B, limit: Duration) -> Self {
        Self {
            body,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        // The body first: what has arrived is delivered even at the deadline.
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout(this.limit).into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that never yields a frame (a client that stopped sending).
    struct Stalled;

    impl HttpBody for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    // Real (short) time: tokio's `test-util` clock is not enabled in this workspace, and
    // turning it on would rebuild tokio's dependents for every test build.
    #[tokio::test]
    async fn a_stalled_body_fails_at_its_deadline_with_a_findable_error() {
        let body = axum::body::Body::new(Deadline::new(Stalled, Duration::from_millis(100)));
        let started = std::time::Instant::now();
        let error = axum::body::to_bytes(body, 1024).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
        let found = BodyTimeout::find(&error).expect("BodyTimeout in the source chain");
        assert_eq!(found.0, Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_complete_body_is_untouched_by_the_deadline() {
        let inner = http_body_util::Full::new(Bytes::from_static(b"hello"));
        let body = Deadline::new(inner, Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn idle_waits_for_the_last_request_to_end() {
        let (tx, mut rx) = watch::channel(0_usize);
        let tx = Arc::new(tx);
        let guard = InFlight::enter(tx.clone());
        let idle = tokio::spawn(async move { idle(&mut rx, Duration::from_millis(100)).await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!idle.is_finished(), "a request in flight is not idle");
        let released = std::time::Instant::now();
        drop(guard);
        idle.await.unwrap();
        let took = released.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
