//! The three proxied endpoints. The handler reads top to bottom as the pipeline:
//! request → authenticate → authorize → limit → reserve → route → forward → settle →
//! emit, with settle and emit owned by the [`CallGuard`] so no path can skip them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tollgate_proto::telemetry::UsageEvent;
use tracing::Instrument;

use super::RequestId;
use super::error::{GatewayError, rate_headers};
use crate::gateway::Gateway;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::authorize;
use crate::pipeline::forward::{Answer, Forwarded, Forwarder};
use crate::pipeline::limit::{RateInfo, limit, limit_grant};
use crate::pipeline::reserve::reserve;
use crate::pipeline::settle::{CallGuard, RetryCover};
use crate::pipeline::{request, route};
use crate::providers::{Chunk, ChunkStream, Endpoint, JsonRequest, ProviderError};
use crate::snapshot::{Deployment, now_ms};
use crate::tokenize::Counting;

pub async fn chat(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, Endpoint::Chat, id, headers, body).await
}

pub async fn completions(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, Endpoint::Completions, id, headers, body).await
}

pub async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    Extension(id): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(gw, Endpoint::Embeddings, id, headers, body).await
}

/// What a successful pipeline hands to the response writer (owned, snapshot-free).
enum Success {
    Json {
        body: Value,
        meta: Meta,
    },
    Stream {
        first: Option<Chunk>,
        rest: ChunkStream,
        include_usage: bool,
        meta: Meta,
    },
}

/// What the response headers report about the call.
pub(super) struct Meta {
    pub(super) deployment: String,
    pub(super) rate: RateInfo,
    /// The output ceiling a clamping budget imposed, if it did.
    pub(super) clamped: Option<u64>,
}

/// The guard of one call, from its first moment: its usage event as far as the request
/// line and headers tell (the admission check and the pipeline both start here).
pub(super) fn call_guard(
    gw: &Gateway,
    endpoint: Endpoint,
    request_id: &str,
    headers: &HeaderMap,
) -> CallGuard {
    let event = UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        gateway_id: gw.gateway_id.clone(),
        region: gw.region.clone(),
        endpoint: endpoint.path().to_owned(),
        started_at_unix_ms: now_ms(),
        price_table_version: gw.prices.version.clone(),
        request_id: request_id.to_owned(),
        // The trace this call belongs to: the client's, or the one the gateway started.
        trace_id: crate::otel::trace_id(&tracing::Span::current())
            .or_else(|| trace_id(headers))
            .unwrap_or_default(),
        ..UsageEvent::default()
    };
    CallGuard::new(
        gw.ledger.clone(),
        gw.tasks.clone(),
        gw.emitter.clone(),
        event,
    )
}

async fn handle(
    gw: Arc<Gateway>,
    endpoint: Endpoint,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut guard = call_guard(&gw, endpoint, &id.0, &headers);
    // The call runs on the gateway's task tracker, not in this handler: a client that
    // hangs up drops the handler, but the call goes on to the provider's answer (which
    // the provider bills anyway) and settles with its usage. Shutdown drains the tracker.
    let call = {
        let gw = gw.clone();
        let id = id.clone();
        async move {
            let result = run(&gw, endpoint, &id, &headers, body, &mut guard).await;
            (guard, result)
        }
        .instrument(tracing::Span::current())
    };
    let (mut guard, result) = match gw.tasks.spawn(call).await {
        Ok(done) => done,
        Err(e) => {
            tracing::error!(request_id = %id.0, error = %e, "the call's task failed");
            return GatewayError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                Some("internal_error"),
                "The gateway failed while handling this call.",
            )
            .into_response();
        }
    };
    match result {
        Ok(Success::Json { body, meta }) => {
            guard.first_byte();
            guard.finish(200);
            let mut response = axum::Json(body).into_response();
            decorate(response.headers_mut(), &meta);
            response
        }
        Ok(Success::Stream {
            first,
            rest,
            include_usage,
            meta,
        }) => {
            let mut response = Response::new(sse_body(first, rest, include_usage, guard));
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
            decorate(h, &meta);
            response
        }
        Err(error) => {
            if error.status.is_server_error() {
                tracing::warn!(request_id = %id.0, status = %error.status, code = error.code_str(), "call failed");
            }
            guard.fail(error.status.as_u16(), error.code_str());
            error.into_response()
        }
    }
}

/// The pipeline, one line per step; settle (7) and emit (8) belong to the guard, which
/// does them whichever way the call ends.
async fn run(
    gw: &Gateway,
    endpoint: Endpoint,
    id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    guard: &mut CallGuard,
) -> Result<Success, GatewayError> {
    let mut req = request::read(body, gw.max_body_bytes, endpoint).await?;
    guard.requested(&req);
    let snapshot = gw.live.load(); // one snapshot for the whole call
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
    let plan = route::plan(&grant.model, &gw.cooldowns, Instant::now(), staleness)?;
    let forwarded = forward(gw, &plan, endpoint, &req, id, headers, guard).await?;

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
    Ok(match forwarded.answer {
        Answer::Json(reply) => {
            if let Some(usage) = reply.usage {
                guard.usage(usage);
            }
            Success::Json {
                body: reply.body,
                meta,
            }
        }
        Answer::Stream { first, rest } => Success::Stream {
            first,
            rest,
            include_usage: req.include_usage(),
            meta,
        },
    })
}

/// Step 6 as the guard sees it: an attempt's bill is unknown from the moment it is sent,
/// and a retry after one that may have been billed needs its own reservation.
pub(super) async fn forward(
    gw: &Gateway,
    plan: &[Arc<Deployment>],
    endpoint: Endpoint,
    req: &JsonRequest,
    id: &RequestId,
    headers: &HeaderMap,
    guard: &mut CallGuard,
) -> Result<Forwarded, GatewayError> {
    let forwarder = Forwarder {
        http: &gw.http,
        cooldowns: &gw.cooldowns,
        routing: &gw.routing,
    };
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    guard.sending();
    let result = forwarder
        .forward(
            plan,
            endpoint,
            req,
            &id.0,
            traceparent,
            &mut RetryCover {
                guard: &mut *guard,
                ledger: &gw.ledger,
            },
        )
        .await;
    result.map_err(|failure| {
        guard.attempts(failure.attempts);
        if let Some(d) = &failure.deployment {
            guard.event.deployment_id = d.id.clone();
        }
        if !failure.error.maybe_billed() {
            guard.answered();
        }
        failure.error.into()
    })
}

pub(super) fn decorate(headers: &mut HeaderMap, meta: &Meta) {
    if let Ok(value) = HeaderValue::from_str(&meta.deployment) {
        headers.insert("x-tollgate-deployment", value);
    }
    if let Some(tokens) = meta.clamped {
        headers.insert("x-tollgate-max-tokens-clamped", HeaderValue::from(tokens));
    }
    rate_headers(headers, &meta.rate);
}

/// The W3C trace id of an incoming `traceparent`, if well-formed.
pub(super) fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then(|| trace.to_owned())
}

struct StreamState {
    first: Option<Chunk>,
    rest: ChunkStream,
    include_usage: bool,
    /// Always `Some` while the body lives; taken by `Drop` when the client leaves early.
    guard: Option<CallGuard>,
    done: bool,
    /// The call's span stays open (and current while polling) until the stream ends.
    span: tracing::Span,
}

/// The client left before the end. The provider goes on generating (and billing) all
/// the same, so the rest of its stream is read — within the deployment's deadline,
/// which the stream carries — for the usage it reports at the end; the guard settles
/// with it, or at the worst case if none comes.
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
        let span = self.span.clone();
        tasks.spawn(
            async move {
                let mut next = first.map(Ok);
                loop {
                    let item = match next.take() {
                        Some(item) => item,
                        None => match rest.next().await {
                            Some(item) => item,
                            None => break,
                        },
                    };
                    let Ok(chunk) = item else { break };
                    if let Some(usage) = chunk.usage {
                        guard.usage(usage);
                    }
                }
                drop(guard);
            }
            .instrument(span),
        );
    }
}

/// The client's SSE body: chunks passed through one by one (never buffered), the usage
/// chunk dropped unless asked for, `[DONE]` at the end, an error event if the upstream
/// fails midway. The guard rides along, so whenever the body ends or is dropped (client
/// gone), the call settles (see the `Drop` of [`StreamState`]).
fn sse_body(
    first: Option<Chunk>,
    rest: ChunkStream,
    include_usage: bool,
    guard: CallGuard,
) -> Body {
    let state = StreamState {
        first,
        rest,
        include_usage,
        guard: Some(guard),
        done: false,
        span: tracing::Span::current(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| {
        let span = s.span.clone();
        async move {
            loop {
                if s.done {
                    return None;
                }
                let item = match s.first.take() {
                    Some(chunk) => Some(Ok(chunk)),
                    None => s.rest.next().await,
                };
                let guard = s.guard.as_mut()?;
                match item {
                    None => {
                        s.done = true;
                        guard.finish(200);
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from_static(
                                b"data: [DONE]\n\n",
                            )),
                            s,
                        ));
                    }
                    Some(Ok(chunk)) => {
                        if let Some(usage) = chunk.usage {
                            guard.usage(usage);
                        }
                            if chunk.usage_only && !s.include_usage {
                            continue;
                        }
                        guard.first_byte();
                        return Some((Ok(frame(&chunk.data)), s));
                    }
                    Some(Err(error)) => {
                        s.done = true;
                        tracing::warn!(error = %error, "upstream stream failed after the first byte");
                        guard.fail(StatusCode::BAD_GATEWAY.as_u16(), "upstream_error");
                        return Some((Ok(error_frame(&error)), s));
                    }
                }
            }
        }
        .instrument(span)
    });
    Body::from_stream(stream)
}

fn frame(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The in-band error OpenAI's SDKs raise on: `data: {"error": {...}}`.
fn error_frame(error: &ProviderError) -> Bytes {
    let body = json!({"error": {
        "message": format!("The provider's stream failed: {error}"),
        "type": "server_error", "param": null, "code": "upstream_error",
    }});
    frame(body.to_string().as_bytes())
}
