//! Isolation against the gateways' own validation (`Snapshot::from_proto`).

use tollgate_data_plane::prices::PriceTable;
use tollgate_data_plane::snapshot::{Credentials, Snapshot};

use super::*;

const A: &str = "0192d2a4-0000-7000-8000-00000000000a";
const B: &str = "0192d2a4-0000-7000-8000-00000000000b";

fn validate(s: proto::Snapshot) -> Result<(), Vec<String>> {
    let prices = PriceTable::built_in().unwrap();
    Snapshot::from_proto(s, &prices, &Credentials::form_only())
        .map(drop)
        .map_err(|e| e.0)
}

fn org(id: &str) -> proto::Org {
    proto::Org {
        id: id.into(),
        name: id.into(),
        limits: None,
    }
}

fn team(id: &str, org: &str, allowed: &[&str]) -> proto::Team {
    proto::Team {
        id: id.into(),
        org_id: org.into(),
        name: id.into(),
        allowed_models: allowed.iter().map(|m| (*m).to_owned()).collect(),
        ..Default::default()
    }
}

fn key(public_id: &str, org: &str, team: &str) -> proto::ApiKey {
    proto::ApiKey {
        public_id: public_id.into(),
        secret_hmac: vec![0; 32],
        status: proto::KeyStatus::Active.into(),
        org_id: org.into(),
        team_id: team.into(),
        ..Default::default()
    }
}

fn key_budget(org: &str, public_id: &str) -> proto::Budget {
    proto::Budget {
        id: format!("budget-{public_id}"),
        scope: Some(proto::Scope {
            kind: proto::ScopeKind::Key.into(),
            id: public_id.into(),
        }),
        org_id: org.into(),
        amount_micros: 1,
        period: proto::BudgetPeriod::Day.into(),
        ..Default::default()
    }
}

/// Model `m` deployed in `eu`, orgs A and B with a team and a key each.
fn world() -> proto::Snapshot {
    proto::Snapshot {
        region: "eu".into(),
        models: vec![proto::Model {
            name: "m".into(),
            tokenizer: "o200k_base".into(),
            ..Default::default()
        }],
        deployments: vec![proto::Deployment {
            id: "d1".into(),
            model: "m".into(),
            provider: proto::ProviderKind::OpenaiCompatible.into(),
            base_url: "http://127.0.0.1:1".into(),
            prices: Some(proto::Prices {
                input_micros_per_mtok: 1,
                output_micros_per_mtok: 1,
                cached_input_micros_per_mtok: 1,
                cache_write_micros_per_mtok: 1,
                tiers: Vec::new(),
            }),
            weight: 1,
            region: "eu".into(),
            ..Default::default()
        }],
        orgs: vec![org(A), org(B)],
        teams: vec![team("ta", A, &["m"]), team("tb", B, &["m"])],
        keys: vec![key("keya1", A, "ta"), key("keyb1", B, "tb")],
        ..Default::default()
    }
}

fn public_ids(s: &proto::Snapshot) -> Vec<&str> {
    let mut ids: Vec<&str> = s.keys.iter().map(|k| k.public_id.as_str()).collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_bad_org_without_previous_content_is_omitted_and_the_others_published() {
    let mut built = world();
    // B's team names a model that does not exist: B alone is at fault.
    built.teams[1].allowed_models = vec!["gone".into()];
    built.keys.push(key("keya2", A, "ta"));
    assert!(
        validate(built.clone()).is_err(),
        "the whole would be refused"
    );

    let out = isolate(built, None, &validate);
    let snapshot = out.snapshot.expect("published");
    assert_eq!(public_ids(&snapshot), ["keya1", "keya2"]);
    assert!(snapshot.orgs.iter().all(|o| o.id == A));
    assert!(validate(snapshot).is_ok());
    assert_eq!(out.problems.len(), 1, "{:?}", out.problems);
    assert_eq!(out.problems[0].org_id.as_deref(), Some(B));
    assert_eq!(out.problems[0].action, Action::Omitted);
    assert!(
        out.problems[0].message.contains("\"gone\""),
        "{:?}",
        out.problems
    );
}

#[test]
fn a_bad_org_serves_its_previous_content_without_keys_revoked_since() {
    let mut previous = world();
    previous.keys.push(key("keyb2", B, "tb"));
    previous.budgets.push(key_budget(B, "keyb2"));
    previous.budgets.push(key_budget(B, "keyb1"));
    let mut built = world();
    built.teams[1].allowed_models = vec!["gone".into()];
    // keyb2 was revoked since (gone from the active keys); keyb3 is new in the bad org.
    built.keys.push(key("keyb3", B, "tb"));
    built.keys.push(key("keya2", A, "ta"));

    let out = isolate(built, Some(previous), &validate);
    let snapshot = out.snapshot.expect("published");
    assert_eq!(
        public_ids(&snapshot),
        ["keya1", "keya2", "keyb1"],
        "A's new key is live, B is frozen, B's revocation applies"
    );
    let budgets: Vec<&str> = snapshot.budgets.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        budgets,
        ["budget-keyb1"],
        "the revoked key's budget went with it"
    );
    let tb = snapshot.teams.iter().find(|t| t.id == "tb").unwrap();
    assert_eq!(tb.allowed_models, ["m"], "B's previous team");
    assert_eq!(out.problems.len(), 1);
    assert_eq!(out.problems[0].action, Action::Previous);
}

#[test]
fn previous_content_that_no_longer_fits_the_catalog_is_omitted() {
    let mut previous = world();
    previous.teams[1].allowed_models = vec!["old".into()];
    let mut built = world();
    built.teams[1].allowed_models = vec!["gone".into()];
    let out = isolate(built, Some(previous), &validate);
    let snapshot = out.snapshot.expect("published");
    assert_eq!(public_ids(&snapshot), ["keya1"]);
    assert_eq!(out.problems[0].action, Action::Omitted);
}

#[test]
fn a_bad_catalog_holds_the_region_back() {
    let mut built = world();
    built.deployments[0].base_url = "ftp://nowhere".into();
    let out = isolate(built, Some(world()), &validate);
    assert!(out.snapshot.is_none());
    assert_eq!(out.problems.len(), 1);
    assert_eq!(out.problems[0].org_id, None);
    assert_eq!(out.problems[0].action, Action::Held);
    assert!(out.problems[0].message.contains("base_url"));
}

#[test]
fn long_problem_lists_are_cut() {
    let problems: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    let m = message(&problems);
    assert_eq!(m.lines().count(), MAX_LINES + 1);
    assert!(m.ends_with("(and 10 more)"));
}
