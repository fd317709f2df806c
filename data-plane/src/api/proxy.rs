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
use time::OffsetDateTime;
use tollgate_proto::telemetry::UsageEvent;
use tracing::Instrument;

use super::RequestId;
use super::error::{GatewayError, rate_headers};
use crate::gateway::Gateway;
use crate::pipeline::authenticate::authenticate;
use crate::pipeline::authorize::authorize;
use crate::pipeline::forward::{Answer, Forwarder};
use crate::pipeline::limit::{RateInfo, limit};
use crate::pipeline::settle::CallGuard;
use crate::pipeline::{request, reserve, route};
use crate::providers::{Chunk, ChunkStream, Endpoint, ProviderError};
use crate::snapshot::now_ms;

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
struct Meta {
    deployment: String,
    rate: RateInfo,
    /// The output ceiling a clamping budget imposed, if it did.
    clamped: Option<u64>,
}

async fn handle(
    gw: Arc<Gateway>,
    endpoint: Endpoint,
    id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let event = UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        gateway_id: gw.gateway_id.clone(),
        region: gw.region.clone(),
        endpoint: endpoint.path().to_owned(),
        started_at_unix_ms: now_ms(),
        price_table_version: gw.prices.version.clone(),
        request_id: id.0.clone(),
        // The trace this call belongs to: the client's, or the one the gateway started.
        trace_id: crate::otel::trace_id(&tracing::Span::current())
            .or_else(|| trace_id(&headers))
            .unwrap_or_default(),
        ..UsageEvent::default()
    };
    let mut guard = CallGuard::new(
        gw.ledger.clone(),
        gw.tasks.clone(),
        gw.emitter.clone(),
        event,
    );
    match run(&gw, endpoint, &id, &headers, body, &mut guard).await {
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
            guard.fail(error.status.as_u16(), error.code_str(), error.upstream);
            error.into_response()
        }
    }
}

async fn run(
    gw: &Gateway,
    endpoint: Endpoint,
    id: &RequestId,
    headers: &HeaderMap,
    body: Body,
    guard: &mut CallGuard,
) -> Result<Success, GatewayError> {
    let mut req = request::read(body, gw.max_body_bytes, endpoint).await?;
    guard.event.model = req.model().to_owned();
    guard.event.streamed = req.stream();
    let snapshot = gw.live.load(); // one snapshot for the whole call

    let span = tracing::Span::current();
    let caller = authenticate(&snapshot, headers, gw.pepper(), now_ms())?;
    guard.event.key_id = caller.key.public_id.clone();
    guard.event.team_id = caller.team.id.clone();
    guard.event.org_id = caller.org.id.clone();
    guard.event.project_id = caller.project.map(|p| p.id.clone()).unwrap_or_default();
    span.record("key_id", caller.key.public_id.as_str());
    span.record("org_id", caller.org.id.as_str());
    span.record("team_id", caller.team.id.as_str());

    let grant = authorize(&snapshot, &caller, req.model())?;
    guard.event.model = grant.model.name.clone();
    span.record("model", grant.model.name.as_str());
    // Fail closed on ancient config: before anything is reserved.
    let staleness = Duration::from_millis(gw.live.staleness_ms(now_ms()));
    if !grant
        .model
        .deployments
        .iter()
        .any(|d| route::fresh_enough(d, staleness))
    {
        return Err(GatewayError::config_stale(staleness));
    }

    let estimate = reserve::estimate(&grant, &req, endpoint)?;
    if endpoint != Endpoint::Embeddings {
        req.output_ceiling = Some(estimate.max_output_tokens);
    }
    // The lease of everything this call holds: its longest possible duration + margin.
    let longest = grant
        .model
        .deployments
        .iter()
        .map(|d| d.timeouts.total)
        .max()
        .unwrap_or_default();
    let deadline_ms = now_ms()
        + i64::try_from((longest * gw.routing.max_attempts + gw.lease_margin).as_millis())
            .unwrap_or(i64::MAX);
    let tokens = estimate.tokens();
    let (permit, rate) = limit(
        &gw.limiter,
        &gw.ledger,
        &gw.tasks,
        &caller,
        tokens,
        now_ms(),
        deadline_ms,
    )
    .await?;
    guard.hold_permit(permit);

    let lines = reserve::budget_lines(&snapshot, &caller, OffsetDateTime::now_utc());
    let prices = reserve::max_prices(&grant);
    let reservation = reserve::reserve(&gw.ledger, lines, &estimate, &prices, deadline_ms)
        .await
        .inspect_err(|_| metrics::counter!("tollgate_reservations_refused_total").increment(1))?;
    // A clamping budget granted less than the worst case: lower max_tokens to match.
    let clamped = reservation
        .as_ref()
        .filter(|r| r.amount < estimate.amount)
        .map(|r| reserve::affordable_output(r.amount, &estimate, &prices));
    if let Some(tokens) = clamped {
        req.clamp_output(tokens);
    }
    guard.hold_reservation(reservation, estimate.prompt_tokens);

    let plan = route::plan(&grant.model, &gw.cooldowns, Instant::now(), staleness);
    let forwarder = Forwarder {
        http: &gw.http,
        cooldowns: &gw.cooldowns,
        routing: &gw.routing,
    };
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let forwarded = match forwarder
        .forward(&plan, endpoint, &req, &id.0, traceparent)
        .await
    {
        Ok(forwarded) => forwarded,
        Err(failure) => {
            guard.attempts(failure.attempts);
            if let Some(d) = &failure.deployment {
                guard.event.deployment_id = d.id.clone();
            }
            return Err(failure.error.into());
        }
    };
    let deployment = forwarded.deployment;
    guard.routed(&deployment.id, deployment.prices, forwarded.attempts);
    span.record("deployment", deployment.id.as_str());
    let meta = Meta {
        deployment: deployment.id.clone(),
        rate,
        clamped,
    };
    Ok(match forwarded.answer {
        Answer::Json(reply) => {
            match reply.usage {
                Some(usage) => guard.usage(usage),
                None => guard.streamed(answer_chars(&reply.body)),
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

fn decorate(headers: &mut HeaderMap, meta: &Meta) {
    if let Ok(value) = HeaderValue::from_str(&meta.deployment) {
        headers.insert("x-tollgate-deployment", value);
    }
    if let Some(tokens) = meta.clamped {
        headers.insert("x-tollgate-max-tokens-clamped", HeaderValue::from(tokens));
    }
    rate_headers(headers, &meta.rate);
}

/// Characters of generated text in a JSON answer, for estimating unreported usage.
fn answer_chars(body: &Value) -> usize {
    body.get("choices")
        .and_then(Value::as_array)
        .map_or(0, |choices| {
            choices
                .iter()
                .map(|c| {
                    let content = c
                        .pointer("/message/content")
                        .and_then(Value::as_str)
                        .map_or(0, str::len);
                    let text = c.get("text").and_then(Value::as_str).map_or(0, str::len);
                    content + text
                })
                .sum()
        })
}

/// The W3C trace id of an incoming `traceparent`, if well-formed.
fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then(|| trace.to_owned())
}

struct StreamState {
    first: Option<Chunk>,
    rest: ChunkStream,
    include_usage: bool,
    guard: CallGuard,
    done: bool,
    /// The call's span stays open (and current while polling) until the stream ends.
    span: tracing::Span,
}

/// The client's SSE body: chunks passed through one by one (never buffered), the usage
/// chunk dropped unless asked for, `[DONE]` at the end, an error event if the upstream
/// fails midway. The guard rides along, so whenever the body ends or is dropped (client
/// gone), the call settles with what was seen.
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
        guard,
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
            match item {
                None => {
                    s.done = true;
                    s.guard.finish(200);
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from_static(b"data: [DONE]\n\n")),
                        s,
                    ));
                }
                Some(Ok(chunk)) => {
                    if let Some(usage) = chunk.usage {
                        s.guard.usage(usage);
                    }
                    s.guard.streamed(chunk.text_chars);
                    if chunk.usage_only && !s.include_usage {
                        continue;
                    }
                    s.guard.first_byte();
                    return Some((Ok(frame(&chunk.data)), s));
                }
                Some(Err(error)) => {
                    s.done = true;
                    tracing::warn!(error = %error, "upstream stream failed after the first byte");
                    s.guard
                        .fail(StatusCode::BAD_GATEWAY.as_u16(), "upstream_error", true);
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
