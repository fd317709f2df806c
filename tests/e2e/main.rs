//! The one cross-process test binary of the workspace. One `mod` per feature; every test
//! builds its own isolated resources (see `tollgate_tests::env`), so all run in parallel.

// A panic is how a test reports failure; helpers here are test code too.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod admin_rules;
mod browser;
mod compat;
mod config_push;
mod conformance;
mod control_plane;
mod dashboard;
mod deletes;
mod estimate;
mod freezes;
mod gateway;
mod grafana;
mod hardening;
mod isolation;
mod ledger;
mod messages;
mod mock_upstream;
mod providers;
mod responses;
mod rolling;
mod shared_budget;
mod shutdown;
mod sign_in;
mod telemetry;
mod telemetry_ingest;
mod telemetry_integrity;
mod traces;

use std::sync::Once;

/// An HTTP client for tests. reqwest is built without a default TLS crypto provider
/// (the workspace uses ring everywhere), so install it once per process first.
pub fn http() -> reqwest::Client {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        // A safety net against a hung test, not an assertion: generous on a loaded machine.
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("building the test HTTP client")
}

/// Splits an SSE body into `(event name, data)` pairs.
pub fn sse_events(body: &str) -> Vec<(Option<String>, String)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut event = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event: ") {
                    event = Some(name.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (event, data)
        })
        .collect()
}
