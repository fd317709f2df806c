use super::file::StaticSnapshot;
use super::*;

const GOOD: &str = r#"
[[orgs]]
id = "acme"
[[teams]]
id = "search"
org = "acme"
allowed_models = ["gpt-4o"]
[[projects]]
id = "ranker"
team = "search"
[[keys]]
public_id = "AbC123"
secret_hmac = "0000000000000000000000000000000000000000000000000000000000000000"
team = "search"
project = "ranker"
expires_at = "2030-01-01T00:00:00Z"
[[models]]
name = "gpt-4o"
aliases = ["gpt-4o-2024-08-06"]
[[deployments]]
id = "oai"
model = "gpt-4o"
provider = "openai"
base_url = "https://api.openai.com/v1/"
credential = "env:OPENAI_API_KEY"
[[deployments]]
id = "az"
model = "gpt-4o"
provider = "azure"
base_url = "https://acme.openai.azure.com"
api_version = "2024-10-21"
prices = { input = 1, output = 2 }
weight = 3
[[budgets]]
scope = "team:search"
amount_usd = "25.50"
period = "month"
"#;

fn build(text: &str, env: &[(&str, &str)]) -> Result<Snapshot, SnapshotError> {
    let file: StaticSnapshot = toml::from_str(text).expect("parses");
    let wire = file.into_proto("local").map_err(SnapshotError)?;
    let credentials =
        Credentials::from_map(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Snapshot::from_proto(
        wire,
        &PriceTable::built_in().expect("price table"),
        &credentials,
    )
}

#[test]
fn a_complete_config_builds() {
    let snapshot = build(GOOD, &[("OPENAI_API_KEY", "sk-x")]).unwrap();
    let model = snapshot.model("gpt-4o-2024-08-06").unwrap();
    assert_eq!(model.name, "gpt-4o");
    assert_eq!(model.deployments.len(), 2);
    let openai = model.deployments.iter().find(|d| d.id == "oai").unwrap();
    assert_eq!(
        openai.base_url, "https://api.openai.com/v1",
        "trailing slash trimmed"
    );
    assert_eq!(openai.prices.input, 2_500_000, "from the price table");
    let azure = model.deployments.iter().find(|d| d.id == "az").unwrap();
    assert_eq!(
        azure.prices.output, 2,
        "deployment prices override the table"
    );
    let key = &snapshot.keys["AbC123"];
    assert_eq!(key.org_id, "acme", "org implied by the team");
    assert!(key.expires_at_ms.is_some());
    let budgets = &snapshot.budgets[&(ScopeKind::Team, "search".to_owned())];
    assert_eq!(budgets[0].amount, Micros(25_500_000));
    assert_eq!(budgets[0].alert_thresholds_pct, vec![50, 80, 100]);
}

#[test]
fn every_problem_is_reported_with_its_field() {
    let text = r#"
[[orgs]]
id = "acme"
[[teams]]
id = "search"
org = "nope"
allowed_models = ["gpt-5-typo"]
[[keys]]
public_id = "k-1"
secret_hmac = "00"
team = "ghost"
[[models]]
name = "lonely"
[[deployments]]
id = "d"
model = "undeclared"
provider = "azure"
base_url = "ftp://x"
credential = "vault:x"
prices = { input = 1, output = 1 }
[[budgets]]
scope = "team:ghost"
amount_usd = "5"
period = "day"
"#;
    let SnapshotError(problems) = build(text, &[]).unwrap_err();
    let expect = [
        "teams[0].org_id",
        "keys[0].public_id",
        "keys[0].secret_hmac",
        "keys[0].team_id",
        "models[0].name",
        "deployments[0].base_url",
        "deployments[0].api_version",
        "deployments[0].credential_ref",
        "deployments: model \"undeclared\"",
        "teams[search].allowed_models",
        "budgets[0].scope.id",
    ];
    for field in expect {
        assert!(
            problems.iter().any(|p| p.starts_with(field)),
            "missing {field} in {problems:#?}"
        );
    }
}

#[test]
fn a_missing_credential_variable_is_named() {
    let SnapshotError(problems) = build(GOOD, &[]).unwrap_err();
    assert_eq!(
        problems,
        vec!["deployments[0].credential_ref: environment variable OPENAI_API_KEY is not set"]
    );
}

#[test]
fn unpriced_models_are_refused() {
    let text = r#"
[[orgs]]
id = "acme"
[[models]]
name = "house-model"
[[deployments]]
id = "vllm"
model = "house-model"
upstream_model = "my-finetune"
provider = "openai_compatible"
base_url = "http://vllm:8000/v1"
"#;
    let SnapshotError(problems) = build(text, &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("deployments[0].prices: no price known for \"my-finetune\"")),
        "{problems:?}"
    );
}

#[test]
fn allow_lists_tell_not_set_from_empty_and_aliases_stand_for_their_model() {
    // GOOD's team lists "gpt-4o"; its project sets nothing; an empty key list allows none.
    let text = GOOD.replace(
        "project = \"ranker\"\nexpires_at",
        "project = \"ranker\"\nallowed_models = []\nexpires_at",
    );
    let snapshot = build(&text, &[("OPENAI_API_KEY", "sk-x")]).unwrap();
    let model = snapshot.model("gpt-4o").unwrap();
    assert!(snapshot.teams["search"].allowed_models.permits(model));
    assert_eq!(snapshot.projects["ranker"].allowed_models, AllowList::All);
    assert_eq!(
        snapshot.keys["AbC123"].allowed_models,
        AllowList::Only(HashSet::new())
    );
    assert!(!snapshot.keys["AbC123"].allowed_models.permits(model));
    let by_alias = AllowList::Only(["gpt-4o-2024-08-06".to_owned()].into());
    assert!(by_alias.permits(model), "an alias entry allows its model");
    // Snapshots from control planes older than `allowed_models_set`: empty = not set.
    assert_eq!(AllowList::from_wire(vec![], false), AllowList::All);
    assert_eq!(
        AllowList::from_wire(vec![], true),
        AllowList::Only(HashSet::new())
    );
}
