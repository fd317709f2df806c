//! Step 8: emit. One usage event per call goes into a bounded queue; the request path
//! never waits on it. When the queue is full the event is dropped **and counted**
//! (`tollgate_usage_events_dropped_total`), never silently.
//!
//! The consumer hands events in batches to the telemetry spool (when a control plane is
//! configured; see [`crate::telemetry`]) and, when `server.usage_log` is set, appends each
//! event as a JSON line to that file — which also gives a standalone gateway a spend
//! record.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tollgate_proto::telemetry::{CallStatus, UsageEvent};

use crate::snapshot::live::Live;

/// The `model` label of calls naming no model of the catalog.
pub const UNKNOWN_MODEL: &str = "unknown";

#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<UsageEvent>,
    /// The catalog metric labels are checked against.
    live: Arc<Live>,
}

impl Emitter {
    pub fn new(capacity: usize, live: Arc<Live>) -> (Self, mpsc::Receiver<UsageEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, live }, rx)
    }

    /// The `model` label for a call: the catalog name of the model it named (an alias
    /// counts as its model), else [`UNKNOWN_MODEL`]. Never the client's text as such, or
    /// any client could mint unbounded label values (one time series each).
    pub fn model_label(&self, requested: &str) -> String {
        self.live
            .load()
            .model(requested)
            .map_or_else(|| UNKNOWN_MODEL.to_owned(), |m| m.name.clone())
    }

    pub fn emit(&self, event: UsageEvent) {
        let status = CallStatus::try_from(event.status).map_or("unknown", |s| s.as_str_name());
        let model = self.model_label(&event.model);
        metrics::counter!("tollgate_requests_total",
            "endpoint" => event.endpoint.clone(), "model" => model.clone(),
            "status" => event.http_status.to_string())
        .increment(1);
        metrics::histogram!("tollgate_request_duration_seconds", "endpoint" => event.endpoint.clone())
            .record(f64::from(event.latency_ms) / 1000.0);
        if event.ttfb_ms > 0 {
            metrics::histogram!("tollgate_time_to_first_token_seconds", "model" => model.clone())
                .record(f64::from(event.ttfb_ms) / 1000.0);
        }
        if event.status == CallStatus::UpstreamError as i32 {
            metrics::counter!("tollgate_upstream_errors_total",
                "deployment" => event.deployment_id.clone(), "code" => event.error_code.clone())
            .increment(1);
        }
        if event.prompt_tokens + event.completion_tokens > 0 {
            metrics::counter!("tollgate_tokens_total", "kind" => "prompt")
                .increment(event.prompt_tokens);
            metrics::counter!("tollgate_tokens_total", "kind" => "completion")
                .increment(event.completion_tokens);
        }
        if event.cost_micros > 0 {
            metrics::counter!("tollgate_cost_micros_total", "model" => model)
                .increment(u64::try_from(event.cost_micros).unwrap_or(0));
        }
        if let Err(e) = self.tx.try_send(event) {
            metrics::counter!("tollgate_usage_events_dropped_total").increment(1);
            tracing::warn!(status, reason = %e, "usage event dropped: queue full or closed");
        }
    }
}

/// Largest batch handed to the spool at once.
const BATCH_MAX: usize = 1_000;
/// How long a batch may wait for more events before it is spooled.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// Consumes the queue until every sender is gone.
pub async fn run_consumer(
    mut rx: mpsc::Receiver<UsageEvent>,
    log_path: Option<PathBuf>,
    spooler: Option<crate::telemetry::Spooler>,
) {
    let mut file = match &log_path {
        Some(path) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
        {
            Ok(f) => Some(tokio::io::BufWriter::new(f)),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the usage log; events are only counted");
                None
            }
        },
        None => None,
    };
    // A batch is whatever queued up while the last one was made durable, plus what
    // arrives within LINGER: few fsyncs when traffic is light, big batches under load.
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut batch, BATCH_MAX).await > 0 {
        if spooler.is_some() && batch.len() < BATCH_MAX {
            // Let a few more arrive: at most one fsync per LINGER instead of one per call.
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
        }
        metrics::gauge!("tollgate_usage_queue_depth").set(rx.len() as f64);
        if let Some(f) = file.as_mut() {
            let mut lines = String::new();
            for event in &batch {
                lines.push_str(&to_json(event).to_string());
                lines.push('\n');
            }
            let written = f.write_all(lines.as_bytes()).await;
            let flushed = f.flush().await;
            if let Err(e) = written.and(flushed) {
                metrics::counter!("tollgate_usage_events_dropped_total")
                    .increment(batch.len() as u64);
                tracing::error!(error = %e, "could not write the usage log");
            }
        }
        match &spooler {
            Some(spooler) => spooler.store(std::mem::take(&mut batch)).await,
            None => batch.clear(),
        }
    }
    if let Some(f) = file.as_mut() {
        let _ = f.flush().await;
    }
}

/// The event as one JSON object (the usage log's line format).
pub fn to_json(e: &UsageEvent) -> serde_json::Value {
    let status =
        CallStatus::try_from(e.status).map_or("CALL_STATUS_UNSPECIFIED", |s| s.as_str_name());
    json!({
        "event_id": e.event_id, "gateway_id": e.gateway_id, "region": e.region,
        "org_id": e.org_id, "team_id": e.team_id, "project_id": e.project_id, "key_id": e.key_id,
        "model": e.model, "deployment_id": e.deployment_id, "endpoint": e.endpoint,
        "status": status, "http_status": e.http_status, "error_code": e.error_code,
        "streamed": e.streamed, "started_at_unix_ms": e.started_at_unix_ms,
        "ttfb_ms": e.ttfb_ms, "latency_ms": e.latency_ms,
        "prompt_tokens": e.prompt_tokens, "completion_tokens": e.completion_tokens,
        "cache_read_tokens": e.cache_read_tokens, "cache_write_tokens": e.cache_write_tokens,
        "cost_micros": e.cost_micros, "reserved_micros": e.reserved_micros,
        "price_table_version": e.price_table_version, "request_id": e.request_id,
        "trace_id": e.trace_id, "attempts": e.attempts,
    })
}
