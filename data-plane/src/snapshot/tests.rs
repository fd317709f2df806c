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

const METADATA: &str = r#"
[[orgs]]
id = "acme"
[[models]]
name = "claude"
context_window = 200000
max_output_tokens = 1000
modes = ["chat"]
max_n = 1
[[models]]
name = "embed"
modes = ["embeddings"]
[[deployments]]
id = "a"
model = "claude"
provider = "anthropic"
base_url = "https://api.anthropic.com"
upstream_model = "claude-sonnet-4-5"
[[deployments]]
id = "e"
model = "embed"
provider = "openai"
base_url = "https://api.openai.com/v1"
upstream_model = "text-embedding-3-small"
"#;

#[test]
fn model_metadata_arrives_with_its_defaults() {
    let snapshot = build(METADATA, &[]).unwrap();
    let claude = snapshot.model("claude").unwrap();
    assert_eq!(claude.context_window, Some(200_000));
    assert_eq!(claude.max_output_tokens, Some(1000));
    assert_eq!(
        claude.default_max_output_tokens, 1000,
        "the 4096 default is lowered to what the model can give"
    );
    assert_eq!(
        claude.modes,
        Modes {
            chat: true,
            completions: false,
            embeddings: false
        }
    );
    assert_eq!(claude.max_n, 1);
    assert_eq!(claude.families, vec![Family::Anthropic]);
    let embed = snapshot.model("embed").unwrap();
    assert_eq!(embed.context_window, None, "unset = unknown");
    assert_eq!(embed.max_output_tokens, None);
    assert_eq!(embed.max_n, MAX_N, "unset = the gateway's limit");
    assert_eq!(embed.families, vec![Family::OpenAi]);
}

#[test]
fn bad_model_metadata_is_named() {
    let mut wire = {
        let file: StaticSnapshot = toml::from_str(METADATA).expect("parses");
        file.into_proto("local").expect("converts")
    };
    wire.models[0].default_max_output_tokens = 2000;
    wire.models[0].max_n = 129;
    wire.models[1].modes = vec![0, 7];
    let SnapshotError(problems) = Snapshot::from_proto(
        wire,
        &PriceTable::built_in().expect("price table"),
        &Credentials::form_only(),
    )
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "models[0].default_max_output_tokens: 2000 is above the model's max_output_tokens 1000",
            "models[0].max_n: must be at most 128",
            "models[1].modes: unknown mode 0",
            "models[1].modes: unknown mode 7",
        ]
    );
}

#[test]
fn an_empty_mode_list_serves_every_endpoint() {
    let snapshot = build(GOOD, &[("OPENAI_API_KEY", "sk-x")]).unwrap();
    assert_eq!(snapshot.model("gpt-4o").unwrap().modes, Modes::ALL);
}
