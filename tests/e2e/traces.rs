//! OpenTelemetry traces and JSON logs of the standalone gateway: spans exported over
//! OTLP to a receiver inside the test, `traceparent` carried from the client through
//! the gateway to the upstream and into the usage event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use crate::http;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A span as the receiver got it, ids in hex.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    service: String,
    attributes: Vec<(String, String)>,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal OTLP/gRPC trace collector on 127.0.0.1:0 that keeps every span.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref()))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                kept.push(Received {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    service: service.clone(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(a.value.as_ref())))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An attribute value as text (strings as they are, numbers and bools formatted).
fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match value.and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

impl Receiver {
    /// Serves until the test ends; returns the receiver and its `http://` endpoint.
    async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(receiver.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, endpoint)
    }

    /// Waits up to 10 s for spans matching `want` (spans are exported in batches).
    async fn wait_for(&self, what: &str, want: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if want(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} among the exported spans: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Setup {
    mock: MockUpstream,
    key: TestKey,
    gateway: GatewayProcess,
}

/// One org/team and model `chat` on the mock (as `upstream`), with `extra` settings TOML.
async fn setup(extra: &str, env: &[(&str, &str)], upstream: &str) -> Setup {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "{extra}\n\
         [[orgs]]\nid = \"acme\"\n[[teams]]\nid = \"search\"\norg = \"acme\"\n\
         [[models]]\nname = \"chat\"\ndefault_max_output_tokens = 100\n\
         [[deployments]]\nid = \"primary\"\nmodel = \"chat\"\nprovider = \"openai\"\nbase_url = \"{base}\"\nupstream_model = \"{upstream}\"\nprices = {{ input = 1000000, output = 2000000 }}\n\
         {entry}",
        base = mock.openai_base_url(),
        entry = key.entry("search", ""),
    );
    let gateway = GatewayProcess::start(&config, env).await.unwrap();
    Setup { mock, key, gateway }
}

impl Setup {
    async fn chat(&self, traceparent: Option<&str>) -> reqwest::Response {
        let mut request = http()
            .post(format!("{}/chat/completions", self.gateway.v1()))
            .bearer_auth(&self.key.full)
            .json(&json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}]}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send().await.unwrap()
    }
}

/// `00-<trace id>-<parent span id>-<flags>` → (trace id, parent span id).
fn parse_traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(parts[0], "00", "{value}");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[tokio::test]
async fn a_call_is_traced_from_the_client_through_the_gateway_to_the_upstream() {
    let (receiver, endpoint) = Receiver::start().await;
    let s = setup(
        &format!(
            "[tracing]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"gw-under-test\"\nexport_interval_ms = 100\n"
        ),
        &[],
        "mock-gpt-4o",
    )
    .await;

    let response = s
        .chat(Some(&format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")))
        .await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let spans = receiver
        .wait_for("server and upstream spans of the call", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Server as i32)
                && spans
                    .iter()
                    .any(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Client as i32)
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(
        server.parent_span_id, CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(server.name, "POST /v1/chat/completions");
    assert_eq!(server.service, "gw-under-test");
    assert_eq!(server.attribute("request_id"), Some(request_id.as_str()));
    assert_eq!(server.attribute("model"), Some("chat"));
    assert_eq!(server.attribute("key_id"), Some(s.key.public_id.as_str()));
    assert_eq!(server.attribute("org_id"), Some("acme"));
    assert_eq!(server.attribute("team_id"), Some("search"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));

    let upstream = spans
        .iter()
        .find(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(upstream.name, "upstream");
    assert_eq!(
        upstream.parent_span_id, server.span_id,
        "the upstream attempt is a child of the gateway's span"
    );
    assert_eq!(upstream.attribute("deployment"), Some("primary"));
    assert_eq!(upstream.attribute("attempt"), Some("1"));
    assert_eq!(upstream.attribute("http.response.status_code"), Some("200"));

    // The provider sees the attempt as its parent, in the client's trace.
    let sent = s.mock.requests();
    let (trace, parent) = parse_traceparent(sent[0].header("traceparent").unwrap());
    assert_eq!(trace, TRACE_ID);
    assert_eq!(parent, upstream.span_id);

    let events = s.gateway.usage_events(1).await;
    assert_eq!(events[0]["trace_id"], TRACE_ID);

    // Without a client traceparent the gateway starts the trace, and the usage event
    // names it.
    assert_eq!(s.chat(None).await.status(), 200);
    let events = s.gateway.usage_events(2).await;
    let started = events[1]["trace_id"].as_str().unwrap().to_owned();
    assert_eq!(started.len(), 32, "{started}");
    assert_ne!(started, TRACE_ID);
    let spans = receiver
        .wait_for("the gateway-started trace", |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == started && s.kind == SpanKind::Server as i32)
        })
        .await;
    let root = spans
        .iter()
        .find(|s| s.trace_id == started && s.kind == SpanKind::Server as i32)
        .unwrap();
    assert!(root.parent_span_id.is_empty(), "{root:?}");
    let (trace, _) = parse_traceparent(s.mock.requests()[1].header("traceparent").unwrap());
    assert_eq!(trace, started);
}

#[tokio::test]
async fn spans_still_batched_are_sent_at_shutdown() {
    let (receiver, endpoint) = Receiver::start().await;
    let mut s = setup(
        &format!("[tracing]\notlp_endpoint = \"{endpoint}\"\nexport_interval_ms = 600000\n"),
        &[],
        "mock-gpt-4o",
    )
    .await;
    assert_eq!(
        s.chat(Some(&format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")))
            .await
            .status(),
        200
    );
    assert!(s.gateway.stop().await.unwrap().success());
    let spans = receiver.spans.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Server as i32),
        "{spans:#?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == TRACE_ID && s.kind == SpanKind::Client as i32),
        "{spans:#?}"
    );
}

#[tokio::test]
async fn with_tracing_off_the_clients_traceparent_goes_upstream_unchanged() {
    let s = setup("", &[], "mock-gpt-4o").await;
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    assert_eq!(s.chat(Some(&traceparent)).await.status(), 200);
    assert_eq!(
        s.mock.requests()[0].header("traceparent"),
        Some(traceparent.as_str())
    );
    assert_eq!(s.gateway.usage_events(1).await[0]["trace_id"], TRACE_ID);

    assert_eq!(s.chat(None).await.status(), 200);
    assert_eq!(s.mock.requests()[1].header("traceparent"), None);
    assert_eq!(s.gateway.usage_events(2).await[1]["trace_id"], "");
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let s = setup(
        "[server]\nlog_format = \"json\"\n[routing]\nmax_attempts = 1\n",
        &[("RUST_LOG", "info")],
        "mock-gpt-4o+status=500",
    )
    .await;
    let response = s.chat(None).await;
    assert!(response.status().is_server_error());
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let lines: Vec<Value> = s
        .gateway
        .stderr()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "gateway ready"),
        "{lines:#?}"
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "upstream attempt failed")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["span"]["name"], "upstream");
    assert_eq!(
        failed["spans"][0]["request_id"],
        request_id.as_str(),
        "{failed}"
    );
    assert_eq!(failed["spans"][0]["model"], "chat", "{failed}");
}
