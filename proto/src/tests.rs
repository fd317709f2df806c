use prost::Message;

use crate::config::{
    ApiKey, Budget, BudgetPeriod, ClampPolicy, Deployment, Freeze, KeyStatus, Limits, Model,
    ModelMode, Org, Prices, Project, ProviderKind, Scope, ScopeKind, SignedSnapshot, Snapshot,
    Team, Timeouts,
};
use crate::telemetry::{CallStatus, UsageBatch, UsageEvent};

fn realistic_snapshot() -> Snapshot {
    let org = "0193a1c4-7a00-7000-8000-000000000001";
    let team = "0193a1c4-7a00-7000-8000-000000000002";
    let project = "0193a1c4-7a00-7000-8000-000000000003";
    Snapshot {
        version: 42,
        region: "eu-west".into(),
        generated_at_unix_ms: 1_795_000_000_000,
        orgs: vec![Org {
            id: org.into(),
            name: "Acme".into(),
            limits: Some(Limits {
                rpm: Some(10_000),
                tpm: None,
                max_concurrent: Some(500),
            }),
        }],
        teams: vec![Team {
            id: team.into(),
            org_id: org.into(),
            name: "Search".into(),
            allowed_models: vec!["gpt-4o".into(), "claude-sonnet-4".into()],
            limits: None,
            allowed_models_set: true,
        }],
        projects: vec![Project {
            id: project.into(),
            org_id: org.into(),
            team_id: team.into(),
            name: "ranker".into(),
            allowed_models: vec![],
            limits: Some(Limits {
                rpm: Some(600),
                tpm: Some(2_000_000),
                max_concurrent: None,
            }),
            allowed_models_set: false,
        }],
        keys: vec![ApiKey {
            public_id: "01JD3K9ZQ4".into(),
            display_prefix: "tg_01JD3K9ZQ4_x7Qa".into(),
            secret_hmac: (0u8..32).collect(),
            status: KeyStatus::Active as i32,
            expires_at_unix_ms: 0,
            org_id: org.into(),
            team_id: team.into(),
            project_id: project.into(),
            owner_user_id: String::new(),
            allowed_models: vec!["gpt-4o".into()],
            limits: Some(Limits {
                rpm: Some(60),
                tpm: Some(100_000),
                max_concurrent: Some(4),
            }),
            allowed_models_set: true,
            name: "ranker prod — ünïcode".into(),
        }],
        models: vec![Model {
            name: "gpt-4o".into(),
            aliases: vec!["gpt-4o-2024-08-06".into()],
            default_max_output_tokens: 4096,
            tokenizer: "o200k_base".into(),
            owned_by: "openai".into(),
            context_window: 128_000,
            max_output_tokens: 16_384,
            modes: vec![ModelMode::Chat as i32],
            max_n: 0,
        }],
        deployments: vec![Deployment {
            id: "dep-openai-eu".into(),
            model: "gpt-4o".into(),
            provider: ProviderKind::AzureOpenai as i32,
            base_url: "https://acme-eu.openai.azure.com".into(),
            upstream_model: "gpt4o-prod".into(),
            credential_ref: "env:AZURE_OPENAI_KEY".into(),
            api_version: "2024-10-21".into(),
            prices: Some(Prices {
                input_micros_per_mtok: 2_500_000,
                output_micros_per_mtok: 10_000_000,
                cached_input_micros_per_mtok: 1_250_000,
                cache_write_micros_per_mtok: 0,
                tiers: vec![crate::config::PriceTier {
                    above_prompt_tokens: 200_000,
                    input_micros_per_mtok: 5_000_000,
                    output_micros_per_mtok: 15_000_000,
                    cached_input_micros_per_mtok: 2_500_000,
                    cache_write_micros_per_mtok: 0,
                }],
            }),
            weight: 3,
            region: "eu-west".into(),
            timeouts: Some(Timeouts {
                connect_ms: 2_000,
                first_byte_ms: 30_000,
                total_ms: 600_000,
            }),
            max_staleness_ms: 3_600_000,
            preset: String::new(),
            cloud_region: String::new(),
        }],
        budgets: vec![Budget {
            id: "bud-1".into(),
            scope: Some(Scope {
                kind: ScopeKind::Team as i32,
                id: team.into(),
            }),
            org_id: org.into(),
            amount_micros: 500_000_000,
            period: BudgetPeriod::Month as i32,
            alert_thresholds_pct: vec![50, 80, 100],
            clamp: ClampPolicy::Clamp as i32,
        }],
        models_elsewhere: vec!["claude-elsewhere".into()],
        freezes: vec![Freeze {
            id: "frz-1".into(),
            scope: Some(Scope {
                kind: ScopeKind::Team as i32,
                id: team.into(),
            }),
            org_id: org.into(),
            reason: "incident".into(),
        }],
    }
}

#[test]
fn snapshot_round_trips_through_the_signed_envelope() {
    let snapshot = realistic_snapshot();
    let payload = snapshot.encode_to_vec();
    let envelope = SignedSnapshot {
        version: snapshot.version,
        nonce: 7,
        payload: payload.clone(),
        signature: vec![0xAB; 64],
        key_id: "cp-2026-11".into(),
    };

    let envelope_back =
        SignedSnapshot::decode(envelope.encode_to_vec().as_slice()).expect("envelope decodes");
    assert_eq!(envelope_back, envelope);
    let snapshot_back =
        Snapshot::decode(envelope_back.payload.as_slice()).expect("payload decodes");
    assert_eq!(snapshot_back, snapshot);
    // Enums survive as their typed values, not only as raw integers.
    assert_eq!(snapshot_back.keys[0].status(), KeyStatus::Active);
    assert_eq!(snapshot_back.budgets[0].period(), BudgetPeriod::Month);
    assert_eq!(
        snapshot_back.deployments[0].provider(),
        ProviderKind::AzureOpenai
    );
}

#[test]
fn unset_limits_stay_distinguishable_from_zero() {
    let mut snapshot = realistic_snapshot();
    snapshot.keys[0].limits = Some(Limits {
        rpm: Some(0),
        tpm: None,
        max_concurrent: None,
    });
    let back = Snapshot::decode(snapshot.encode_to_vec().as_slice()).expect("decodes");
    let limits = back.keys[0].limits.expect("limits present");
    assert_eq!(
        limits.rpm,
        Some(0),
        "an explicit 0 rpm must not read as 'no limit'"
    );
    assert_eq!(limits.tpm, None);
}

/// `Prices` as gateways before long-context tiers knew it.
#[derive(Clone, PartialEq, prost::Message)]
struct PricesBeforeTiers {
    #[prost(int64, tag = "1")]
    input_micros_per_mtok: i64,
    #[prost(int64, tag = "2")]
    output_micros_per_mtok: i64,
    #[prost(int64, tag = "3")]
    cached_input_micros_per_mtok: i64,
    #[prost(int64, tag = "4")]
    cache_write_micros_per_mtok: i64,
}

#[test]
fn an_older_reader_ignores_price_tiers_and_keeps_the_base_prices() {
    let prices = realistic_snapshot().deployments[0].prices.clone().unwrap();
    assert!(!prices.tiers.is_empty());
    let old = PricesBeforeTiers::decode(prices.encode_to_vec().as_slice()).unwrap();
    assert_eq!(old.input_micros_per_mtok, prices.input_micros_per_mtok);
    assert_eq!(old.output_micros_per_mtok, prices.output_micros_per_mtok);
    assert_eq!(
        old.cached_input_micros_per_mtok,
        prices.cached_input_micros_per_mtok
    );
}

#[test]
fn garbage_payload_is_an_error_not_a_panic() {
    let err = Snapshot::decode(&[0xFF, 0xFF, 0xFF, 0x01][..]);
    assert!(err.is_err());
}

#[test]
fn usage_batch_round_trips() {
    let batch = UsageBatch {
        seq: 9,
        gateway_id: "gw-a".into(),
        events: vec![UsageEvent {
            event_id: "0193a1c4-7a00-7000-8000-0000000000ff".into(),
            status: CallStatus::ClientDisconnected as i32,
            prompt_tokens: 120,
            completion_tokens: 37,
            cache_read_tokens: 64,
            cost_micros: 1_234,
            reserved_micros: 50_000,
            price_table_version: "2026-11-01".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            ..Default::default()
        }],
    };
    let back = UsageBatch::decode(batch.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(back, batch);
}
