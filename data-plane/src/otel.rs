//! OpenTelemetry traces: the OTLP/gRPC exporter and W3C `traceparent` in and out.
//!
//! Off unless `[tracing] otlp_endpoint` is set. When off, nothing here runs: no exporter,
//! no propagator (the global one stays a no-op), and the client's `traceparent` goes
//! upstream unchanged. When on, the gateway's `tracing` spans under this crate become
//! OpenTelemetry spans: a server span per call whose parent is the client's
//! `traceparent`, and a client span per upstream attempt whose context is the
//! `traceparent` the provider receives.
//!
//! This module must never log span contents beyond ids, model and key *public* ids:
//! prompts, answers and credentials stay out of traces as they stay out of logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracingSettings;

/// The exporting half, kept by `main` until shutdown, when [`Exporting::shutdown`]
/// sends the spans still batched.
pub struct Exporting {
    provider: SdkTracerProvider,
}

/// Runs every export on the Tokio runtime it was built on.
///
/// The SDK's `BatchSpanProcessor` exports from its own OS thread, outside any runtime,
/// and the tonic exporter then panics ("there is no reactor running"). Spawning the
/// export onto the captured runtime and awaiting its `JoinHandle` works from any
/// executor, and fails (rather than hangs) once the runtime is gone.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("could not build the OTLP exporter for {endpoint}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Builds the exporter and tracer and installs the W3C TraceContext propagator. Must be
/// called inside a Tokio runtime (the gRPC channel lives on it); `None` when tracing is
/// off.
pub fn start(settings: &TracingSettings) -> Result<Option<(Exporting, SdkTracer)>, TracingError> {
    let Some(endpoint) = &settings.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(Duration::from_millis(settings.export_timeout_ms))
        .build()
        .map_err(|source| TracingError::Exporter {
            endpoint: endpoint.clone(),
            source,
        })?;
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        runtime: tokio::runtime::Handle::current(),
    };
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(settings.export_interval_ms))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batches)
                .build(),
        )
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("tollgate-gateway");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Some((Exporting { provider }, tracer)))
}

impl Exporting {
    /// Sends what is still batched and stops the exporter. Blocks: call it outside the
    /// runtime's worker threads (the runtime must still be alive).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not flush the last spans");
        }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.export(batch).await })
            .await
            .map_err(|e| OTelSdkError::InternalFailure(format!("span export task: {e}")))?
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        // Called once while the provider is built, before any export shares `inner`.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes the client's `traceparent` (if any) the parent of `span`. A no-op when tracing
/// is off: the global propagator is then the SDK's no-op one.
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        // Err only when no OpenTelemetry layer is installed, i.e. tracing is off.
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` naming `span` as the parent, when tracing is on (else `None`).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The trace id of `span` (32 hex digits), when tracing is on.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
