//! Unit tests of batch layout, per-event checks and screening.

use super::*;
use crate::store::usage::{DeploymentPrices, KeyScope};

const KEY: &str = "abcdEFGH1234";

fn event(id: &str) -> proto::UsageEvent {
    proto::UsageEvent {
        event_id: id.to_owned(),
        org_id: Uuid::now_v7().to_string(),
        team_id: Uuid::now_v7().to_string(),
        key_id: KEY.into(),
        model: "gpt".into(),
        started_at_unix_ms: 1_700_000_000_000,
        cost_micros: 5,
        ..Default::default()
    }
}

fn batch(events: Vec<proto::UsageEvent>) -> proto::UsageBatch {
    proto::UsageBatch {
        seq: 7,
        gateway_id: "gw-1".into(),
        events,
    }
}

#[test]
fn a_good_batch_is_laid_out_in_columns() {
    let id = Uuid::now_v7().to_string();
    let mut anonymous = event(&Uuid::now_v7().to_string());
    anonymous.org_id.clear();
    anonymous.team_id.clear();
    anonymous.key_id.clear();
    anonymous.model = format!("a\0{}", "x".repeat(1000));
    let b = Batch::try_from(batch(vec![event(&id), anonymous])).unwrap();
    assert_eq!(b.seq, 7);
    assert_eq!(b.events.len(), 2);
    assert!(b.refused.is_empty());
    assert_eq!(b.events.event_id[0].to_string(), id);
    assert_eq!(b.events.org_id[1], None);
    assert_eq!(b.events.model[1].chars().count(), TEXT_CHARS);
    assert!(!b.events.model[1].contains('\0'));
    assert_eq!(
        b.events.started_at[0].unix_timestamp(),
        1_700_000_000,
        "ms → timestamptz"
    );
}

#[test]
fn malformed_events_are_set_aside_with_the_reason_and_the_rest_kept() {
    let good = || event(&Uuid::now_v7().to_string());
    let mut half = good();
    half.team_id.clear();
    let mut bad_key = good();
    bad_key.key_id = "tg_bad!".into();
    let mut epoch = good();
    epoch.started_at_unix_ms = 0;
    let mut negative = good();
    negative.cost_micros = -1;
    let mut nul = event("no\0pe");
    nul.model = "\0".into();
    let b = Batch::try_from(batch(vec![
        good(),
        event("nope"),
        half,
        bad_key,
        epoch,
        negative,
        nul,
        good(),
    ]))
    .unwrap();
    assert_eq!(b.events.len(), 2, "the well-formed ones");
    let details: Vec<&str> = b.refused.iter().map(|q| q.detail.as_str()).collect();
    assert_eq!(b.refused.len(), 6, "{details:?}");
    assert!(b.refused.iter().all(|q| q.reason == "malformed"));
    assert!(
        details[0].contains("event 1: event_id \"nope\""),
        "{details:?}"
    );
    assert!(details[1].contains("set together"), "{details:?}");
    assert!(details[2].contains("key_id"), "{details:?}");
    assert!(details[3].contains("started_at_unix_ms"), "{details:?}");
    assert!(
        details[4].contains("cost_micros is negative"),
        "{details:?}"
    );
    assert_eq!(b.refused[0].event["event_id"], "nope");
    // Postgres takes neither NUL in text nor \u0000 in jsonb.
    assert!(!b.refused[5].event_id.contains('\0'));
    assert!(!b.refused[5].event.to_string().contains("\\u0000"));
}

#[test]
fn only_what_is_wrong_with_the_batch_itself_refuses_it() {
    assert_eq!(
        Batch::try_from(batch(vec![proto::UsageEvent::default(); MAX_EVENTS + 1])).unwrap_err(),
        BatchError::TooLarge(MAX_EVENTS + 1)
    );
    let mut no_gateway = batch(vec![event(&Uuid::now_v7().to_string())]);
    no_gateway.gateway_id.clear();
    assert_eq!(
        Batch::try_from(no_gateway).unwrap_err(),
        BatchError::GatewayId
    );
}

/// One well-formed event of `KEY` in `org`/`team`, now, and the facts that know it.
fn setup() -> (proto::UsageEvent, Facts, Bounds) {
    let (org, team) = (Uuid::now_v7(), Uuid::now_v7());
    let deployment = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    let e = proto::UsageEvent {
        event_id: Uuid::now_v7().to_string(),
        org_id: org.to_string(),
        team_id: team.to_string(),
        key_id: KEY.into(),
        deployment_id: deployment.to_string(),
        started_at_unix_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap(),
        prompt_tokens: 1_000,
        completion_tokens: 500,
        cost_micros: 2_000,
        reserved_micros: 10_000,
        ..Default::default()
    };
    let mut facts = Facts::default();
    facts.keys.insert(
        KEY.into(),
        KeyScope {
            public_id: KEY.into(),
            org_id: org,
            team_id: team,
            project_id: None,
        },
    );
    facts.deployments.insert(
        deployment,
        DeploymentPrices {
            id: deployment,
            upstream_model: "gpt-4o".into(),
            // $2.50 / $10 per million tokens.
            input_price: Some(2_500_000),
            output_price: Some(10_000_000),
            cached_input_price: None,
            cache_write_price: None,
            price_tiers: Vec::new(),
        },
    );
    let ceiling = Ceiling::of(&facts, None);
    assert_eq!(
        ceiling,
        Ceiling {
            input: 2_500_000,
            output: 10_000_000
        }
    );
    let bounds = Bounds {
        now,
        retention_days: 90,
        ceiling,
    };
    (e, facts, bounds)
}

fn verdict(e: proto::UsageEvent, facts: &Facts, bounds: &Bounds) -> Result<(), Rejection> {
    let b = Batch::try_from(batch(vec![e])).unwrap();
    assert!(b.refused.is_empty(), "{:?}", b.refused);
    check(&b.events, 0, facts, "eu", bounds)
}

#[test]
fn events_are_checked_against_what_the_control_plane_knows() {
    let (e, facts, b) = setup();
    assert_eq!(verdict(e.clone(), &facts, &b), Ok(()));

    let mut unknown = e.clone();
    unknown.key_id = "zzzzZZZZ9999".into();
    assert_eq!(
        verdict(unknown, &facts, &b).unwrap_err().code(),
        "unknown_key"
    );
    for field in ["org", "team", "project"] {
        let mut other = e.clone();
        let id = Uuid::now_v7().to_string();
        match field {
            "org" => other.org_id = id,
            "team" => other.team_id = id,
            _ => other.project_id = id,
        }
        assert_eq!(
            verdict(other, &facts, &b).unwrap_err().code(),
            "key_scope",
            "{field}"
        );
    }
    let mut elsewhere = e.clone();
    elsewhere.deployment_id = Uuid::now_v7().to_string();
    assert_eq!(
        verdict(elsewhere, &facts, &b).unwrap_err().code(),
        "deployment_region"
    );
    let mut not_routed = e.clone();
    not_routed.deployment_id.clear();
    assert_eq!(verdict(not_routed, &facts, &b), Ok(()));
}

#[test]
fn times_outside_the_window_are_refused() {
    let (e, facts, b) = setup();
    let mut skewed = e.clone();
    skewed.started_at_unix_ms += 60_000;
    assert_eq!(
        verdict(skewed, &facts, &b),
        Ok(()),
        "a minute of skew is fine"
    );
    let mut future = e.clone();
    future.started_at_unix_ms += 3_600_000;
    assert_eq!(verdict(future, &facts, &b).unwrap_err().code(), "future");
    let mut old = e.clone();
    old.started_at_unix_ms -= 89 * 86_400_000;
    assert_eq!(verdict(old.clone(), &facts, &b), Ok(()));
    old.started_at_unix_ms -= 2 * 86_400_000;
    assert_eq!(verdict(old, &facts, &b).unwrap_err().code(), "too_old");
}

#[test]
fn costs_are_bounded_by_the_reservation_or_by_the_tokens() {
    let (e, facts, b) = setup();
    // Reserved 10_000: up to 15_000 + the one-cent margin.
    let mut at_bound = e.clone();
    at_bound.cost_micros = 25_000;
    assert_eq!(verdict(at_bound.clone(), &facts, &b), Ok(()));
    at_bound.cost_micros = 25_001;
    assert_eq!(
        verdict(at_bound, &facts, &b).unwrap_err(),
        Rejection::CostAboveReserved {
            cost: 25_001,
            reserved: 10_000,
            bound: 25_000
        }
    );
    let mut max = e.clone();
    max.cost_micros = i64::MAX;
    assert_eq!(
        verdict(max, &facts, &b).unwrap_err().code(),
        "cost_above_reserved"
    );
    let mut huge_reservation = e.clone();
    huge_reservation.reserved_micros = i64::MAX;
    huge_reservation.cost_micros = i64::MAX;
    assert_eq!(
        verdict(huge_reservation, &facts, &b).unwrap_err().code(),
        "reserved"
    );

    // Nothing reserved (no budget applied): 1000 in × $2.50 + 500 out × $10 = 7_500
    // µ$, doubled, plus the margin.
    let mut unreserved = e.clone();
    unreserved.reserved_micros = 0;
    unreserved.cost_micros = 25_000;
    assert_eq!(verdict(unreserved.clone(), &facts, &b), Ok(()));
    unreserved.cost_micros = 25_001;
    assert_eq!(
        verdict(unreserved, &facts, &b).unwrap_err(),
        Rejection::CostAboveTokens {
            cost: 25_001,
            bound: 25_000
        }
    );
    let mut tokens = e.clone();
    tokens.completion_tokens = u64::MAX;
    assert_eq!(verdict(tokens, &facts, &b).unwrap_err().code(), "tokens");
}

#[test]
fn the_ceiling_is_the_regions_highest_price_from_wherever_it_is_known() {
    let table = PriceTable::built_in().unwrap();
    let gpt4o = table.lookup("gpt-4o").unwrap();
    let deployment = |model: &str, input: Option<i64>, output: Option<i64>| DeploymentPrices {
        id: Uuid::now_v7(),
        upstream_model: model.into(),
        input_price: input,
        output_price: output,
        cached_input_price: None,
        cache_write_price: Some(input.unwrap_or(0) * 2),
        price_tiers: Vec::new(),
    };
    let facts = |ds: Vec<DeploymentPrices>| Facts {
        keys: Default::default(),
        deployments: ds.into_iter().map(|d| (d.id, d)).collect(),
    };
    // Own prices (a cache write above the input price counts as input).
    let own = facts(vec![deployment("x", Some(100), Some(300))]);
    assert_eq!(
        Ceiling::of(&own, Some(&table)),
        Ceiling {
            input: 200,
            output: 300
        }
    );
    // Only one price set: the table's for the upstream model.
    let table_priced = facts(vec![
        deployment("gpt-4o", Some(1), None),
        deployment("x", Some(100), Some(300)),
    ]);
    let ceiling = Ceiling::of(&table_priced, Some(&table));
    assert_eq!(ceiling.output, gpt4o.output.max(300));
    // A long-context tier, own or the table's, raises the ceiling to its rates.
    let mut tiered = deployment("x", Some(100), Some(300));
    tiered.price_tiers = vec![crate::store::deployments::PriceTier {
        above_prompt_tokens: 1_000,
        input_price: 400,
        output_price: 900,
        cached_input_price: Some(40),
        cache_write_price: None,
    }];
    assert_eq!(
        Ceiling::of(&facts(vec![tiered]), Some(&table)),
        Ceiling {
            input: 400,
            output: 900
        }
    );
    let pro = table.lookup("gemini-2.5-pro").unwrap();
    let long = Ceiling::of(
        &facts(vec![deployment("gemini-2.5-pro", None, None)]),
        Some(&table),
    );
    assert_eq!(long.output, pro.tiers[0].output);
    assert!(long.output > pro.output);
    // Unknown anywhere, or nothing to go by: the fallback.
    let unknown = facts(vec![deployment("no-such-model", None, None)]);
    assert_eq!(Ceiling::of(&unknown, Some(&table)).input, FALLBACK_PRICE);
    assert_eq!(Ceiling::of(&facts(vec![]), None).output, FALLBACK_PRICE);
}

#[test]
fn screening_keeps_the_good_events_in_order() {
    let (e, facts, b) = setup();
    let mut forged = e.clone();
    forged.event_id = Uuid::now_v7().to_string();
    forged.cost_micros = i64::MAX;
    let mut second = e.clone();
    second.event_id = Uuid::now_v7().to_string();
    second.cost_micros = 7;
    let mut batch =
        Batch::try_from(batch(vec![e.clone(), forged.clone(), second.clone()])).unwrap();
    batch.screen(&facts, "eu", &b);
    assert_eq!(batch.events.len(), 2);
    assert_eq!(batch.events.cost_micros, [2_000, 7]);
    assert_eq!(batch.events.event_id[1].to_string(), second.event_id);
    assert_eq!(batch.refused.len(), 1);
    assert_eq!(batch.refused[0].event_id, forged.event_id);
    assert_eq!(batch.refused[0].reason, "cost_above_reserved");
    assert_eq!(batch.refused[0].event["cost_micros"], i64::MAX);
}
