//! Provider kinds end to end (issue #17): one spelling through the admin API, the store,
//! the snapshot and the gateway; a kind a gateway cannot serve disables only that
//! deployment (reported in the fleet view) while the rest of the config, revocations
//! included, still applies; OpenAI-compatible presets apply their server's quirks; the
//! Gemini API's thinking tokens are billed as output.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tollgate_tests::gateway::{GatewayProcess, TestKey};
use tollgate_tests::mock::MockUpstream;

use prost::Message as _;
use tollgate_proto::config as proto;
use tollgate_signing::SnapshotSigner;

use crate::config_push::{Plane, call, inject, send, until_status};
use crate::http;

/// The seeded model `m` of [`Plane`].
const MODEL_M: &str = "00000000-0000-7000-8000-000000000002";

#[tokio::test]
async fn bedrock_deployments_must_name_their_signing_region() {
    let plane = Plane::start().await;
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let url = plane.cp.api(path);
        let token = plane.cp.admin_token.clone();
        async move { send(method, &url, &token, body).await }
    };
    let provider: Value = admin(
        Method::POST,
        "/providers",
        Some(json!({"kind": "bedrock", "name": "aws",
            "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com",
            "credential_ref": "env:TOLLGATE_PROVIDER_AWS_ACCESS_KEY_ID"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(provider["kind"], "bedrock", "{provider}");
    let deployment = json!({"model_id": MODEL_M, "region_id": "eu", "provider_id": provider["id"],
        "upstream_model": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "input_price": 1, "output_price": 1});
    let refused = admin(Method::POST, "/deployments", Some(deployment.clone())).await;
    assert_eq!(refused.status(), 422);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "cloud_region", "{problem}");
    let mut with_region = deployment;
    with_region["cloud_region"] = "us-east-1".into();
    let created = admin(Method::POST, "/deployments", Some(with_region)).await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["cloud_region"], "us-east-1");
    // The snapshot carries the region and the kind by its wire value.
    let pool = plane.db.pool().await.unwrap();
    let started = Instant::now();
    loop {
        let payload: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT payload FROM config_versions WHERE region_id = 'eu' ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        let snapshot = payload.map(|(p,)| proto::Snapshot::decode(p.as_slice()).unwrap());
        let bedrock = snapshot.and_then(|s| {
            s.deployments
                .into_iter()
                .find(|d| d.provider == proto::ProviderKind::Bedrock as i32)
        });
        if let Some(d) = bedrock {
            assert_eq!(d.cloud_region, "us-east-1");
            assert_eq!(d.credential_ref, "env:TOLLGATE_PROVIDER_AWS_ACCESS_KEY_ID");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_kind_from_a_newer_control_plane_is_disabled_reported_and_revocations_still_arrive() {
    let plane = Plane::start().await;
    let grpc = plane.cp.grpc.clone().unwrap();
    let token = plane.enrollment_token("eu").await;
    let gateway = plane
        .gateway("eu", "gw-kinds", &grpc, &token, "kinds.lkg")
        .await;
    let (key_id, key) = plane.create_key().await;
    until_status(&gateway, &key, "m", 200).await;

    // What a newer control plane would publish: model `m` gains a deployment of a
    // provider kind this gateway build has never heard of (wire value 99).
    let pool = plane.db.pool().await.unwrap();
    let (current, payload): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT version, payload FROM config_versions WHERE region_id = 'eu' ORDER BY version DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut snapshot = proto::Snapshot::decode(payload.as_slice()).unwrap();
    let version = current + 1;
    snapshot.version = version as u64;
    let mut future = snapshot
        .deployments
        .iter()
        .find(|d| d.model == "m")
        .unwrap()
        .clone();
    future.id = "future-kind".into();
    future.provider = 99;
    snapshot.deployments.push(future);
    let body = snapshot.encode_to_vec();
    let signer =
        SnapshotSigner::from_pem("k1", &std::fs::read_to_string(&plane.key_file).unwrap()).unwrap();
    inject(&plane, version, body.clone(), signer.sign(&body), "k1").await;

    // The gateway applies it without that deployment and says so in its Ack, which the
    // fleet view shows.
    let started = Instant::now();
    loop {
        let fleet = plane.fleet().await;
        if fleet[0]["applied_version"] == version {
            assert_eq!(
                fleet[0]["disabled_deployments"],
                json!(["future-kind: provider kind 99 is unknown to this gateway build"]),
                "{fleet:?}"
            );
            assert!(fleet[0]["last_nack_version"].is_null(), "{fleet:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never applied: {fleet:?}\n{}",
            gateway.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Model `m` keeps its other deployment...
    plane.mock.reset();
    for _ in 0..5 {
        assert_eq!(call(&gateway, &key, "m").await.status(), 200);
    }
    assert_eq!(plane.mock.requests().len(), 5);
    // ...and a revocation published after it still reaches the gateway.
    plane.revoke_key(&key_id).await;
    until_status(&gateway, &key, "m", 401).await;
}

#[tokio::test]
async fn kinds_and_presets_are_validated_by_the_api() {
    let plane = Plane::start().await;
    let create = |body: Value| {
        let url = plane.cp.api("/providers");
        let token = plane.cp.admin_token.clone();
        async move { send(Method::POST, &url, &token, Some(body)).await }
    };
    let unknown =
        create(json!({"kind": "openai-compatible", "name": "x", "base_url": "http://x"})).await;
    assert_eq!(unknown.status(), 422);
    let on_openai =
        create(json!({"kind": "openai", "preset": "groq", "name": "y", "base_url": "http://y"}))
            .await;
    assert_eq!(on_openai.status(), 422);
    let bad_preset = create(json!({"kind": "openai_compatible", "preset": "llamafile", "name": "z", "base_url": "http://z"})).await;
    assert_eq!(bad_preset.status(), 422);
    let groq = create(
        json!({"kind": "openai_compatible", "preset": "groq", "name": "groq",
        "base_url": "https://api.groq.com/openai/v1", "credential_ref": "env:GROQ_API_KEY"}),
    )
    .await;
    assert_eq!(groq.status(), 201);
    let groq: Value = groq.json().await.unwrap();
    assert_eq!(groq["preset"], "groq");
    for kind in ["gemini", "vertex"] {
        let created =
            create(json!({"kind": kind, "name": kind, "base_url": "https://x.googleapis.com"}))
                .await;
        assert_eq!(created.status(), 201, "{kind}");
    }
}

/// A gateway with one `openai_compatible` deployment of model `m` using `preset`.
async fn preset_gateway(mock: &MockUpstream, preset: &str) -> (GatewayProcess, TestKey) {
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"o\"\n[[teams]]\nid = \"t\"\norg = \"o\"\n\
         [[models]]\nname = \"m\"\ndefault_max_output_tokens = 64\n\
         [[deployments]]\nid = \"dep\"\nmodel = \"m\"\nprovider = \"openai_compatible\"\npreset = \"{preset}\"\n\
         base_url = \"{}\"\nupstream_model = \"mock-llm\"\nprices = {{ input = 1000000, output = 2000000 }}\n{}",
        mock.openai_base_url(),
        key.entry("t", "")
    );
    (GatewayProcess::start(&config, &[]).await.unwrap(), key)
}

async fn chat(gateway: &GatewayProcess, key: &TestKey, extra: Value) -> reqwest::Response {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    http()
        .post(format!("{}/chat/completions", gateway.v1()))
        .bearer_auth(&key.full)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_groq_preset_sends_its_limit_field_and_refuses_several_answers_before_upstream() {
    let mock = MockUpstream::start().await.unwrap();
    let (gateway, key) = preset_gateway(&mock, "groq").await;
    let response = chat(&gateway, &key, json!({"max_tokens": 5})).await;
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
    let sent = mock.requests()[0].json();
    assert_eq!(sent["max_completion_tokens"], 5, "{sent}");
    assert!(sent.get("max_tokens").is_none(), "{sent}");

    let refused = chat(&gateway, &key, json!({"n": 2})).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_endpoint", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("groq"),
        "{body}"
    );
    assert_eq!(mock.requests().len(), 1, "the refusal reached no upstream");
}

#[tokio::test]
async fn presets_ask_for_stream_usage_only_where_the_server_takes_it() {
    let mock = MockUpstream::start().await.unwrap();
    let stream = json!({"stream": true, "stream_options": {"include_usage": true}});
    let (vllm, key) = preset_gateway(&mock, "vllm").await;
    let text = chat(&vllm, &key, stream.clone())
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\":{"), "{text}");
    let sent = mock.requests()[0].json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    assert_eq!(
        sent["max_tokens"], 64,
        "the reserved ceiling, in vLLM's field"
    );

    // Mistral reports usage unasked and refuses fields it does not know.
    mock.reset();
    let (mistral, key) = preset_gateway(&mock, "mistral").await;
    let response = chat(&mistral, &key, stream).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await;
    let sent = mock.requests()[0].json();
    assert!(sent.get("stream_options").is_none(), "{sent}");
}

#[tokio::test]
async fn gemini_thinking_tokens_are_billed_as_output_within_the_reserved_ceiling() {
    let mock = MockUpstream::start().await.unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"o\"\n[[teams]]\nid = \"t\"\norg = \"o\"\n\
         [[models]]\nname = \"m\"\ndefault_max_output_tokens = 20\n\
         [[deployments]]\nid = \"dep\"\nmodel = \"m\"\nprovider = \"gemini\"\n\
         base_url = \"{}/v1beta\"\nupstream_model = \"gemini-2.5-flash+thoughts=100\"\n\
         prices = {{ input = 1000000, output = 2000000 }}\n{}",
        mock.url(),
        key.entry("t", "")
    );
    let gateway = GatewayProcess::start(&config, &[]).await.unwrap();
    let response = chat(&gateway, &key, json!({})).await;
    assert_eq!(response.status(), 200, "{}", gateway.stderr());
    let body: Value = response.json().await.unwrap();
    // 8 answer tokens; the mock thinks until the 20-token ceiling: 12 thinking tokens.
    assert_eq!(body["usage"]["completion_tokens"], 20, "{body}");
    let sent = mock.requests()[0].json();
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 20);
    let events = gateway.usage_events(1).await;
    assert_eq!(events[0]["completion_tokens"], 20, "{}", events[0]);
    // 2 prompt tokens × 1 µ$ + 20 output tokens × 2 µ$.
    assert_eq!(events[0]["cost_micros"], 42, "{}", events[0]);
}

#[tokio::test]
async fn vertex_tokens_are_minted_once_then_refreshed_in_the_background_before_expiry() {
    // Tokens live 200 s: inside the gateway's 300 s refresh window from the start, yet
    // well usable, so every call after the first starts a refresh without waiting on it.
    let mock = MockUpstream::start_with(tollgate_tests::mock::MockOptions {
        google_token: Some(tollgate_tests::mock::gemini::TokenEndpoint {
            public_key_pem: include_str!("../fixtures/google/test-service-account.pub.pem").into(),
            lifetime_secs: 200,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let key = TestKey::new();
    let config = format!(
        "[[orgs]]\nid = \"o\"\n[[teams]]\nid = \"t\"\norg = \"o\"\n\
         [[models]]\nname = \"m\"\n\
         [[deployments]]\nid = \"dep\"\nmodel = \"m\"\nprovider = \"vertex\"\n\
         base_url = \"{}/v1/projects/acme-ml/locations/europe-west4\"\nupstream_model = \"gemini-2.5-flash\"\n\
         credential = \"env:TOLLGATE_PROVIDER_VERTEX_SA\"\n{}",
        mock.url(),
        key.entry("t", "")
    );
    let account = crate::conformance::service_account(&format!("{}/token", mock.url()));
    let gateway = GatewayProcess::start(&config, &[("TOLLGATE_PROVIDER_VERTEX_SA", &account)])
        .await
        .unwrap();
    let bearer = |i: usize| {
        mock.api_requests()[i]
            .header("authorization")
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        chat(&gateway, &key, json!({})).await.status(),
        200,
        "{}",
        gateway.stderr()
    );
    assert_eq!(mock.token_requests(), 1);
    assert!(
        !gateway.stderr().contains("ya29."),
        "tokens are never logged"
    );
    // The second call goes out with the first token while the next one is minted.
    assert_eq!(chat(&gateway, &key, json!({})).await.status(), 200);
    assert_eq!(bearer(1), bearer(0));
    let started = Instant::now();
    while mock.token_requests() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once minted, the new token serves.
    let started = Instant::now();
    loop {
        assert_eq!(chat(&gateway, &key, json!({})).await.status(), 200);
        let latest = bearer(mock.api_requests().len() - 1);
        if latest != bearer(0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the refreshed token never served"
        );
    }
}

#[tokio::test]
async fn price_tiers_are_validated_by_the_api_published_in_the_snapshot_and_patched() {
    let plane = Plane::start().await;
    let admin = |method: Method, path: &str, body: Option<Value>| {
        let url = plane.cp.api(path);
        let token = plane.cp.admin_token.clone();
        async move { send(method, &url, &token, body).await }
    };
    let provider: Value = admin(
        Method::POST,
        "/providers",
        Some(json!({"kind": "gemini", "name": "gemini",
            "base_url": "https://generativelanguage.googleapis.com/v1beta",
            "credential_ref": "env:TOLLGATE_PROVIDER_GEMINI_KEY"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let tier = |above: i64, input: i64| json!({"above_prompt_tokens": above, "input_price": input, "output_price": 15_000_000});
    let deployment = |tiers: Value, own_prices: bool| {
        let mut d = json!({"model_id": MODEL_M, "region_id": "eu", "provider_id": provider["id"],
            "upstream_model": "gemini-2.5-pro", "price_tiers": tiers});
        if own_prices {
            d["input_price"] = 1_250_000.into();
            d["output_price"] = 10_000_000.into();
        }
        d
    };
    // Each bad tier list is a 422 naming the field.
    for (tiers, own_prices, field) in [
        (json!([tier(200_000, 2_500_000)]), false, "price_tiers"),
        (
            json!([tier(0, 2_500_000)]),
            true,
            "price_tiers[0].above_prompt_tokens",
        ),
        (
            json!([tier(200_000, 2_500_000), tier(200_000, 3_000_000)]),
            true,
            "price_tiers[1].above_prompt_tokens",
        ),
        (
            json!([tier(200_000, -1)]),
            true,
            "price_tiers[0].input_price",
        ),
        (
            json!((1..=9).map(|i| tier(i, 1)).collect::<Vec<_>>()),
            true,
            "price_tiers",
        ),
    ] {
        let refused = admin(
            Method::POST,
            "/deployments",
            Some(deployment(tiers.clone(), own_prices)),
        )
        .await;
        assert_eq!(refused.status(), 422, "{tiers}");
        let problem: Value = refused.json().await.unwrap();
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{tiers}: {problem}");
    }
    let created = admin(
        Method::POST,
        "/deployments",
        Some(deployment(json!([tier(200_000, 2_500_000)]), true)),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["price_tiers"][0]["above_prompt_tokens"], 200_000,
        "{created}"
    );
    let id = created["id"].as_str().unwrap().to_owned();

    // The snapshot carries the tier; absent cache prices are the tier's input price.
    let published_tiers = || async {
        let pool = plane.db.pool().await.unwrap();
        let started = Instant::now();
        loop {
            let payload: Option<(Vec<u8>,)> = sqlx::query_as(
                "SELECT payload FROM config_versions WHERE region_id = 'eu' ORDER BY version DESC LIMIT 1",
            )
            .fetch_optional(&pool)
            .await
            .unwrap();
            let snapshot = payload.map(|(p,)| proto::Snapshot::decode(p.as_slice()).unwrap());
            if let Some(d) = snapshot.and_then(|s| s.deployments.into_iter().find(|d| d.id == id)) {
                return d.prices.unwrap().tiers;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never published"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let tiers = published_tiers().await;
    assert_eq!(
        tiers,
        [proto::PriceTier {
            above_prompt_tokens: 200_000,
            input_micros_per_mtok: 2_500_000,
            output_micros_per_mtok: 15_000_000,
            cached_input_micros_per_mtok: 2_500_000,
            cache_write_micros_per_mtok: 2_500_000,
        }]
    );

    // PATCH: absent keeps the tiers, a bad list is refused, null removes them.
    let patch = |body: Value| admin(Method::PATCH, &format!("/deployments/{id}"), Some(body));
    let kept: Value = patch(json!({"weight": 2})).await.json().await.unwrap();
    assert_eq!(kept["price_tiers"].as_array().unwrap().len(), 1, "{kept}");
    let refused = patch(json!({"price_tiers": [tier(5, 1), tier(4, 1)]})).await;
    assert_eq!(refused.status(), 422);
    let cleared = patch(json!({"price_tiers": null})).await;
    assert_eq!(cleared.status(), 200);
    let cleared: Value = cleared.json().await.unwrap();
    assert_eq!(cleared["price_tiers"], json!([]), "{cleared}");
    let started = Instant::now();
    while !published_tiers().await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the removal was never published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
