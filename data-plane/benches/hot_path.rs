//! Criterion benchmarks of the gateway's per-call hot path: key lookup + HMAC, request
//! parsing, token counting + pricing, and per-chunk stream translation of each upstream
//! format (OpenAI pass-through, Anthropic SSE, Gemini SSE, Bedrock event stream).
//! Run: `cargo bench -p tollgate-data-plane --bench hot_path`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::json;
use tollgate_data_plane::money::{self, Prices, Usage};
use tollgate_data_plane::pipeline::authenticate::authenticate;
use tollgate_data_plane::pipeline::request;
use tollgate_data_plane::prices::PriceTable;
use tollgate_data_plane::providers::anthropic::StreamTranslator;
use tollgate_data_plane::providers::stream_samples as samples;
use tollgate_data_plane::providers::{Endpoint, openai};
use tollgate_data_plane::providers::{bedrock, gemini};
use tollgate_data_plane::snapshot::{Credentials, Snapshot};
use tollgate_data_plane::tokenize::{Counting, Encoding};
use tollgate_keys as keys;
use tollgate_proto::config as proto;

const PEPPER: &[u8] = b"bench-pepper-0123456789";

/// A snapshot with `n` keys in one team, and the full text of one of them.
fn snapshot_with_keys(n: usize) -> (Snapshot, String) {
    let mut wire = proto::Snapshot {
        version: 1,
        orgs: vec![proto::Org {
            id: "o".into(),
            ..Default::default()
        }],
        teams: vec![proto::Team {
            id: "t".into(),
            org_id: "o".into(),
            ..Default::default()
        }],
        models: vec![proto::Model {
            name: "gpt-4o".into(),
            ..Default::default()
        }],
        deployments: vec![proto::Deployment {
            id: "d".into(),
            model: "gpt-4o".into(),
            provider: proto::ProviderKind::Openai as i32,
            base_url: "http://127.0.0.1:1/v1".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut probe = String::new();
    for i in 0..n {
        let key = keys::generate(PEPPER);
        if i == n / 2 {
            probe = key.full.clone();
        }
        wire.keys.push(proto::ApiKey {
            public_id: key.public_id,
            secret_hmac: key.secret_hmac.to_vec(),
            status: proto::KeyStatus::Active as i32,
            org_id: "o".into(),
            team_id: "t".into(),
            ..Default::default()
        });
    }
    let prices = PriceTable::built_in().expect("price table");
    let snapshot =
        Snapshot::from_proto(wire, &prices, &Credentials::default()).expect("valid snapshot");
    (snapshot, probe)
}

fn bench_authenticate(c: &mut Criterion) {
    let (snapshot, key) = snapshot_with_keys(100_000);
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    c.bench_function("authenticate (100k keys, HMAC-SHA256 verify)", |b| {
        b.iter(|| {
            authenticate(black_box(&snapshot), black_box(&headers), PEPPER, 0).expect("valid key")
        })
    });
}

fn bench_request_and_pricing(c: &mut Criterion) {
    let body = serde_json::to_vec(&json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant that answers briefly."},
            {"role": "user", "content": "What is the capital of France, and why is it famous? Answer in two sentences."},
        ],
        "max_tokens": 256,
        "stream": true,
    }))
    .expect("json");
    c.bench_function("parse + validate chat request (300 B)", |b| {
        b.iter(|| request::parse(black_box(&body), Endpoint::Chat).expect("valid"))
    });
    let req = request::parse(&body, Endpoint::Chat).expect("valid");
    Encoding::O200k.warm_up();
    c.bench_function("count prompt tokens (o200k, 2 messages)", |b| {
        b.iter(|| Encoding::O200k.chat_prompt(black_box(&req.body), Counting::Exact))
    });
    c.bench_function("bound prompt tokens (UTF-8 bytes, 2 messages)", |b| {
        b.iter(|| Encoding::O200k.chat_prompt(black_box(&req.body), Counting::Bound))
    });
    let prices = Prices::flat(2_500_000, 10_000_000, 1_250_000, 0);
    let usage = Usage {
        input: 1234,
        output: 567,
        cache_read: 890,
        cache_write: 0,
    };
    c.bench_function("price a call (micro-USD)", |b| {
        b.iter(|| money::cost(black_box(&usage), black_box(&prices)))
    });
    let tiered = PriceTable::built_in()
        .expect("price table")
        .lookup("gemini-2.5-pro")
        .expect("priced");
    c.bench_function("price a call with a long-context tier (micro-USD)", |b| {
        b.iter(|| money::cost(black_box(&usage), black_box(&tiered)))
    });
}

fn bench_sse(c: &mut Criterion) {
    let chunk = samples::openai_event();
    c.bench_function("OpenAI SSE chunk pass-through (inspect + frame)", |b| {
        b.iter(|| openai::chunk(black_box(&chunk)).expect("chunk"))
    });
    let start = samples::anthropic_start();
    let delta = samples::anthropic_event();
    let mut translator = StreamTranslator::new();
    let _ = translator.on_event(&start).expect("start");
    c.bench_function("Anthropic SSE event -> OpenAI chunk", |b| {
        b.iter(|| translator.on_event(black_box(&delta)).expect("delta"))
    });
    let event = samples::gemini_event();
    let mut translator = gemini::StreamTranslator::new("gemini-2.5-flash".into());
    c.bench_function("Gemini SSE event -> OpenAI chunk", |b| {
        b.iter(|| translator.on_event(black_box(&event)).expect("event"))
    });
    let message = samples::bedrock_message();
    let mut translator = bedrock::StreamTranslator::new("claude".into());
    c.bench_function("Bedrock event-stream message -> OpenAI chunk", |b| {
        b.iter(|| translator.on_message(black_box(&message)).expect("message"))
    });
    let frame = samples::bedrock_frame();
    let mut translator = bedrock::StreamTranslator::new("claude".into());
    c.bench_function(
        "Bedrock event-stream frame (decode, CRCs) -> OpenAI chunk",
        |b| {
            b.iter(|| {
                let message = samples::decode_frame(black_box(&frame));
                translator.on_message(&message).expect("message")
            })
        },
    );
}

criterion_group!(
    benches,
    bench_authenticate,
    bench_request_and_pricing,
    bench_sse
);
criterion_main!(benches);
