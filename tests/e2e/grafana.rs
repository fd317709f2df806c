//! The Grafana dashboard (`deploy/grafana/tollgate.json`) queries only what the binaries
//! export: a real control plane and a real gateway on the Redis ledger serve calls of
//! every kind (plain, streamed, upstream error, refused by a budget), their `/metrics`
//! are scraped, and every metric name in every panel query must be among the names
//! scraped.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::env::TestRedis;

use crate::config_push::{Plane, call, send, until_status};
use crate::http;

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/tollgate.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Every PromQL expression of the dashboard's panels (rows nest panels too).
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "panel {title:?} has a target without expr"
                );
                out.push((title.clone(), expr.to_owned()));
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// The `tollgate_*` metric names a PromQL expression reads. Label values and strings
/// are quoted in PromQL, so quoted parts are skipped.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("tollgate_"))
        .map(str::to_owned)
        .collect()
}

/// Sample names in a Prometheus text exposition (`name{labels} value` or `name value`).
fn exported(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(url: &str) -> BTreeSet<String> {
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    exported(&response.text().await.unwrap())
}

#[test]
fn metric_names_are_read_from_promql_without_labels_or_functions() {
    assert_eq!(
        metric_names(
            r#"sum by (status) (rate(tollgate_requests_total{status=~"tollgate_5.."}[5m])) / clamp_min(sum(rate(tollgate_request_duration_seconds_count[1m])), 1e-9)"#
        ),
        BTreeSet::from([
            "tollgate_request_duration_seconds_count".to_owned(),
            "tollgate_requests_total".to_owned()
        ])
    );
    assert_eq!(
        exported(
            "# TYPE tollgate_x counter\ntollgate_x{a=\"1\"} 2\ntollgate_y 3\n\ntollgate_z_sum 1\n"
        ),
        BTreeSet::from([
            "tollgate_x".to_owned(),
            "tollgate_y".to_owned(),
            "tollgate_z_sum".to_owned()
        ])
    );
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_by_the_binaries() {
    let dashboard = dashboard();
    let queries = expressions(&dashboard);
    let mut wanted = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "panel {title:?} queries no Tollgate metric: {expr}"
        );
        wanted.extend(names);
    }
    // Not vacuous: the dashboard covers traffic, spend, ledger, config and telemetry.
    assert!(
        queries.len() >= 15 && wanted.len() >= 20,
        "{} queries, {} metrics",
        queries.len(),
        wanted.len()
    );

    let plane = Plane::start().await;
    let redis = TestRedis::new().await.unwrap();
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let ledger = format!(
        "[ledger]\nkind = \"redis\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\nmaintenance_interval_ms = 100\n",
        redis.url, redis.prefix
    );
    let gateway = plane
        .gateway_full(
            "eu",
            "gw-grafana",
            &format!("http://{grpc}"),
            &token,
            "grafana.lkg",
            "",
            &ledger,
        )
        .await;
    let (_, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    // Calls of every kind the dashboard shows.
    for _ in 0..3 {
        assert_eq!(call(&gateway, &key, "m").await.status(), 200);
    }
    let streamed = http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key)
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 200);
    streamed.text().await.unwrap();
    assert!(
        call(&gateway, &key, "broken")
            .await
            .status()
            .is_server_error()
    );
    // A budget of one micro-dollar on the team: once it reaches the gateway, calls are
    // refused before any provider is asked.
    let budget = send(
        Method::POST,
        &plane.cp.api(&format!("/orgs/{}/budgets", plane.org)),
        &plane.cp.admin_token,
        Some(json!({"scope_kind": "team", "scope_id": plane.team, "amount_micros": 1, "period": "month"})),
    )
    .await;
    assert_eq!(budget.status(), 201, "{}", budget.text().await.unwrap());
    let started = Instant::now();
    loop {
        let status = call(&gateway, &key, "m").await.status();
        if status.is_client_error() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "calls still answer {status} 30 s after the budget was set"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Usage reaches the control plane asynchronously: scrape until every name shows up
    // (or the generous deadline passes), then say which ones never did.
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let mut seen = scrape(&format!("{}/metrics", gateway.url)).await;
        seen.extend(scrape(&format!("{}/metrics", plane.cp.url)).await);
        let missing: Vec<_> = wanted.difference(&seen).cloned().collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics neither binary exports: {missing:?}\ngateway log:\n{}",
        gateway.stderr()
    );
}
