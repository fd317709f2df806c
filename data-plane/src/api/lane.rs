//! The pipeline of a lane (`/v1/messages`, `/v1/responses`): the same steps as chat's
//! in the same order, with the answer written as the lane's own bytes (the adapters
//! return them ready, see [`crate::lanes`]) and errors in the lane's own shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tracing::Instrument;

use super::RequestId;
use super::error::GatewayError;
use super::proxy::{Meta, call_guard, decorate, forward};
use crate::gateway::Gateway;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::authorize;
use crate::pipeline::forward::Answer;
use crate::pipeline::limit::{limit, limit_grant};
use crate::pipeline::reserve::reserve;
use crate::pipeline::settle::CallGuard;
use crate::pipeline::{request, route};
use crate::providers::{Chunk, ChunkStream, Endpoint, ProviderError};
use crate::snapshot::now_ms;
use crate::tokenize::Counting;

/// How one lane speaks to its clients.
#[derive(Clone, Copy)]
pub(super) struct Lane {
    pub endpoint: Endpoint,
    /// An error answer in the lane's shape.
    pub error: fn(GatewayError) -> Response,
    /// The in-band error event that ends a stream the provider broke off.
    pub stream_error: fn(&ProviderError) -> Bytes,
}

struct Answered {
    first: Option<Chunk>,
    rest: ChunkStream,
    stream: bool,
    meta: Meta,
}

pub(super) async fn handle(
    gw: Arc<Gateway>,
    lane: Lane,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut guard = call_guard(&gw, lane.endpoint, &id.0, &headers);
    // As on chat: the call runs on the tracker, so a client that hangs up does not stop
    // it from settling at the provider's usage.
    let call = {
        let gw = gw.clone();
        let id = id.clone();
        async move {
            let result = run(&gw, lane.endpoint, &id, &headers, body, &mut guard).await;
            (guard, result)
        }
        .instrument(tracing::Span::current())
    };
    let (mut guard, result) = match gw.tasks.spawn(call).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(request_id = %id.0, error = %e, "the call's task failed");
            return (lane.error)(GatewayError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("internal_error"),
                "The gateway failed while handling this call.",
            ));
        }
    };
    match result {
        Ok(answered) if !answered.stream => json_answer(answered, guard, lane).await,
        Ok(answered) => {
            let mut response = Response::new(sse_body(
                answered.first,
                answered.rest,
                guard,
                lane.stream_error,
            ));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            decorate(h, &answered.meta);
            response
        }
        Err(error) => {
            if error.status.is_server_error() {
                tracing::warn!(request_id = %id.0, status = %error.status, code = error.code_str(), "call failed");
            }
            guard.fail(error.status.as_u16(), error.code_str());
            (lane.error)(error)
        }
    }
}

/// A JSON answer: the adapter's one chunk (already read in full), as it is.
async fn json_answer(answered: Answered, mut guard: CallGuard, lane: Lane) -> Response {
    let mut body = Vec::new();
    let mut rest = answered.rest;
    let mut next = answered.first.map(Ok);
    loop {
        let item = match next.take() {
            Some(item) => item,
            None => match rest.next().await {
                Some(item) => item,
                None => break,
            },
        };
        match item {
            Ok(chunk) => {
                if let Some(usage) = chunk.usage {
                    guard.usage(usage);
                }
                body.extend_from_slice(&chunk.data);
            }
            Err(error) => {
                tracing::warn!(error = %error, "upstream answer failed while read");
                let error = GatewayError::from(error);
                guard.fail(error.status.as_u16(), error.code_str());
                return (lane.error)(error);
            }
        }
    }
    guard.first_byte();
    guard.finish(200);
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    decorate(response.headers_mut(), &answered.meta);
    response
}

/// Steps 0–6, as on chat; settle and emit belong to the guard.
async fn run(
    gw: &Gateway,
    endpoint: Endpoint,
    id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    guard: &mut CallGuard,
) -> Result<Answered, GatewayError> {
    let mut req = request::read(body, gw.max_body_bytes, endpoint).await?;
    guard.requested(&req);
    let snapshot = gw.live.load();
    let now = now_ms();

    let caller = authenticate(&snapshot, headers, gw.pepper(), now)?;
    guard.caller(&caller);
    let mut grant = authorize(&snapshot, &caller, &req, endpoint, Counting::Bound)?;
    guard.granted(&grant);
    let deadline_ms = gw.lease_deadline_ms(&grant.model, now);
    let (permit, rate) = limit_grant(&mut grant, &req, endpoint, |tokens| {
        limit(
            &gw.limiter,
            &gw.ledger,
            &gw.tasks,
            &caller,
            tokens,
            now,
            deadline_ms,
        )
    })
    .await?;
    guard.hold_permit(permit);
    let mut hold = reserve(
        &gw.ledger,
        &snapshot,
        &caller,
        &grant,
        &req,
        endpoint,
        deadline_ms,
    )
    .await?;
    req.output_ceiling = hold.ceiling;
    guard.hold(&mut hold);
    let staleness = Duration::from_millis(gw.live.staleness_ms(now));
    let mut plan = route::plan(&grant.model, &gw.cooldowns, Instant::now(), staleness)?;
    if endpoint == Endpoint::Responses {
        super::responses::follow_pin(gw, caller.org.id.as_str(), &req, &mut plan).await?;
    }
    let forwarded = crate::lanes::with_client_headers(
        headers,
        forward(gw, &plan, endpoint, &req, id, headers, guard),
    )
    .await?;

    let deployment = forwarded.deployment;
    guard.routed(
        &deployment.id,
        deployment.prices.clone(),
        forwarded.attempts,
    );
    tracing::Span::current().record("deployment", deployment.id.as_str());
    let meta = Meta {
        deployment: deployment.id.clone(),
        rate,
        clamped: hold.clamped,
    };
    let (first, rest) = match forwarded.answer {
        Answer::Stream { first, rest } => {
            if endpoint == Endpoint::Responses {
                super::responses::pin(gw, caller.org.id.as_str(), &deployment, first.as_ref())
                    .await;
            }
            (first, rest)
        }
        // Lanes answer with chunks; a whole body would be a bug in an adapter.
        Answer::Json(_) => {
            return Err(GatewayError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("internal_error"),
                "The gateway failed while handling this call.",
            ));
        }
    };
    Ok(Answered {
        first,
        rest,
        stream: req.stream(),
        meta,
    })
}

struct StreamState {
    first: Option<Chunk>,
    rest: ChunkStream,
    guard: Option<CallGuard>,
    stream_error: fn(&ProviderError) -> Bytes,
    done: bool,
    span: tracing::Span,
}

/// As on chat: a client that leaves early does not stop the provider's bill, so the
/// rest of the stream is read for its usage before the guard settles.
impl Drop for StreamState {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let first = self.first.take();
        let mut rest = std::mem::replace(&mut self.rest, Box::pin(futures_util::stream::empty()));
        let tasks = guard.tasks().clone();
        tasks.spawn(
            async move {
                if let Some(usage) = first.and_then(|c| c.usage) {
                    guard.usage(usage);
                }
                while let Some(Ok(chunk)) = rest.next().await {
                    if let Some(usage) = chunk.usage {
                        guard.usage(usage);
                    }
                }
                drop(guard);
            }
            .instrument(self.span.clone()),
        );
    }
}

/// The lane's SSE body: the adapter's frames written as they are, one by one; the
/// lane's error event if the provider fails midway.
fn sse_body(
    first: Option<Chunk>,
    rest: ChunkStream,
    guard: CallGuard,
    stream_error: fn(&ProviderError) -> Bytes,
) -> Body {
    let state = StreamState {
        first,
        rest,
        guard: Some(guard),
        stream_error,
        done: false,
        span: tracing::Span::current(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| {
        let span = s.span.clone();
        async move {
            if s.done {
                return None;
            }
            let item = match s.first.take() {
                Some(chunk) => Some(Ok(chunk)),
                None => s.rest.next().await,
            };
            if item.is_none() {
                // The end: the guard leaves the state finished, and settles as it drops.
                if let Some(mut guard) = s.guard.take() {
                    guard.finish(200);
                }
                return None;
            }
            let guard = s.guard.as_mut()?;
            match item {
                None => None,
                Some(Ok(chunk)) => {
                    if let Some(usage) = chunk.usage {
                        guard.usage(usage);
                    }
                    guard.first_byte();
                    Some((Ok::<_, std::convert::Infallible>(chunk.data), s))
                }
                Some(Err(error)) => {
                    s.done = true;
                    tracing::warn!(error = %error, "upstream stream failed after the first byte");
                    guard.fail(StatusCode::BAD_GATEWAY.as_u16(), "upstream_error");
                    let frame = (s.stream_error)(&error);
                    Some((Ok(frame), s))
                }
            }
        }
        .instrument(span)
    });
    Body::from_stream(stream)
}
