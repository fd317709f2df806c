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
        vec![
            "deployments[0].credential_ref: deployment \"oai\": environment variable OPENAI_API_KEY is not set"
        ]
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

/// `GOOD` with the `oai` deployment's credential and base URL replaced.
fn with_oai(credential: &str, base_url: &str) -> String {
    GOOD.replace(
        "credential = \"env:OPENAI_API_KEY\"",
        &format!("credential = {credential:?}"),
    )
    .replace("https://api.openai.com/v1/", base_url)
}

fn build_with(
    text: &str,
    env: &[(&str, &str)],
    policy: &CredentialSettings,
) -> Result<Snapshot, SnapshotError> {
    let file: StaticSnapshot = toml::from_str(text).expect("parses");
    let wire = file.into_proto("local").map_err(SnapshotError)?;
    let credentials =
        Credentials::from_map(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
            .with_policy(policy);
    Snapshot::from_proto(
        wire,
        &PriceTable::built_in().expect("price table"),
        &credentials,
    )
}

fn oai_credential(snapshot: &Snapshot) -> String {
    use secrecy::ExposeSecret;
    let model = snapshot.model("gpt-4o").unwrap();
    let oai = model.deployments.iter().find(|d| d.id == "oai").unwrap();
    oai.credential.as_ref().unwrap().expose_secret().to_owned()
}

#[test]
fn credentials_name_only_allowed_variables_never_the_gateways_own() {
    let env = [
        ("TOLLGATE_AUTH__KEY_PEPPER", "the-pepper"),
        ("TOLLGATE_CONTROL__ENROLLMENT_TOKEN", "tge_secret"),
        ("TOLLGATE_PROVIDER_OPENAI", "sk-provider"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
        ("HOME", "/root"),
        ("DATABASE_URL", "postgres://secret"),
    ];
    let default = CredentialSettings::default();
    for allowed in ["env:TOLLGATE_PROVIDER_OPENAI", "env:AWS_SECRET_ACCESS_KEY"] {
        let snapshot = build_with(
            &with_oai(allowed, "https://api.openai.com/v1"),
            &env,
            &default,
        )
        .unwrap_or_else(|e| panic!("{allowed}: {e}"));
        assert!(!oai_credential(&snapshot).is_empty());
    }
    // Even an allow-list that names them cannot reach the gateway's own settings.
    let reckless = CredentialSettings {
        env_names: vec!["TOLLGATE_AUTH__KEY_PEPPER".into()],
        env_prefixes: vec!["TOLLGATE_".into(), "D".into()],
        file_dir: None,
    };
    for (refused, policy) in [
        ("env:TOLLGATE_AUTH__KEY_PEPPER", &default),
        ("env:TOLLGATE_CONTROL__ENROLLMENT_TOKEN", &default),
        ("env:HOME", &default),
        ("env:DATABASE_URL", &default),
        ("env:TOLLGATE_AUTH__KEY_PEPPER", &reckless),
        ("env:TOLLGATE_CONTROL__ENROLLMENT_TOKEN", &reckless),
    ] {
        let err = build_with(
            &with_oai(refused, "https://api.openai.com/v1"),
            &env,
            policy,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("deployments[0].credential_ref: deployment \"oai\"")
                && text.contains("not one this gateway lets credentials name"),
            "{refused}: {text}"
        );
        assert!(
            !text.contains("the-pepper") && !text.contains("tge_secret"),
            "{text}"
        );
    }
    // An operator's own list works.
    let own = CredentialSettings {
        env_names: vec!["DATABASE_URL".into()],
        ..CredentialSettings::default()
    };
    let snapshot = build_with(
        &with_oai("env:DATABASE_URL", "https://x.example"),
        &env,
        &own,
    )
    .unwrap();
    assert_eq!(oai_credential(&snapshot), "postgres://secret");
}

#[test]
fn file_credentials_stay_inside_their_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("secrets");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("openai"), "sk-from-file\n").unwrap();
    std::fs::write(dir.join("crlf"), "sk-crlf\r\n").unwrap();
    std::fs::write(dir.join("empty"), "\n").unwrap();
    std::fs::write(root.path().join("outside"), "the-pepper\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.path().join("outside"), dir.join("link")).unwrap();
    let policy = CredentialSettings {
        file_dir: Some(dir.clone()),
        ..CredentialSettings::default()
    };
    let url = "https://api.openai.com/v1";
    let absolute = format!("file:{}", dir.join("openai").display());
    for (reference, want) in [
        ("file:openai", "sk-from-file"),
        (absolute.as_str(), "sk-from-file"),
        ("file:crlf", "sk-crlf"),
    ] {
        let snapshot = build_with(&with_oai(reference, url), &[], &policy).unwrap();
        assert_eq!(oai_credential(&snapshot), want, "{reference}");
    }
    let outside = format!("file:{}", root.path().join("outside").display());
    for (reference, why) in [
        ("file:../outside", "outside credentials.file_dir"),
        (outside.as_str(), "outside credentials.file_dir"),
        ("file:link", "outside credentials.file_dir"),
        ("file:.", "outside credentials.file_dir"),
        ("file:empty", "is empty"),
        ("file:missing", "missing"),
    ] {
        let text = build_with(&with_oai(reference, url), &[], &policy)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("deployment \"oai\"") && text.contains(why),
            "{reference}: {text}"
        );
        assert!(!text.contains("the-pepper"), "{text}");
    }
    // Without a directory, no file is readable at all.
    let text = build_with(
        &with_oai("file:openai", url),
        &[],
        &CredentialSettings::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(text.contains("credentials.file_dir"), "{text}");
    // The control plane checks the form only.
    let file: StaticSnapshot = toml::from_str(&with_oai("file:openai", url)).unwrap();
    let wire = file.into_proto("local").unwrap();
    Snapshot::from_proto(
        wire,
        &PriceTable::built_in().unwrap(),
        &Credentials::form_only(),
    )
    .unwrap();
}

#[test]
fn base_urls_are_an_origin_and_a_path_only() {
    let env = [("OPENAI_API_KEY", "sk-x")];
    let default = CredentialSettings::default();
    for bad in [
        "https://api.openai.com/v1?api-key=x",
        "https://api.openai.com/v1#x",
        "https://user:pw@api.openai.com/v1",
        "https://evil@api.openai.com",
        "https:///v1",
        "ftp://api.openai.com",
    ] {
        let text = build_with(&with_oai("env:OPENAI_API_KEY", bad), &env, &default)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("deployments[0].base_url: deployment \"oai\""),
            "{bad}: {text}"
        );
    }
    build_with(
        &with_oai("env:OPENAI_API_KEY", "http://10.0.0.5:8000/v1"),
        &env,
        &default,
    )
    .unwrap();
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

fn wire(text: &str) -> proto::Snapshot {
    let file: StaticSnapshot = toml::from_str(text).expect("parses");
    file.into_proto("local").expect("valid TOML snapshot")
}

fn from_wire(wire: proto::Snapshot) -> Result<Snapshot, SnapshotError> {
    let credentials = Credentials::from_map([("OPENAI_API_KEY".to_owned(), "sk-x".to_owned())]);
    Snapshot::from_proto(
        wire,
        &PriceTable::built_in().expect("price table"),
        &credentials,
    )
}

const SECOND_MODEL: &str = r#"
[[models]]
name = "gpt-4o-mini"
[[deployments]]
id = "future"
model = "gpt-4o-mini"
provider = "openai"
base_url = "https://api.openai.com/v1"
"#;

#[test]
fn a_kind_this_build_does_not_know_disables_its_deployment_and_the_rest_applies() {
    let text = format!(
        "{}{SECOND_MODEL}",
        GOOD.replace(
            "allowed_models = [\"gpt-4o\"]",
            "allowed_models = [\"gpt-4o\", \"gpt-4o-mini\"]",
        )
    );
    let mut wire = wire(&text);
    for d in &mut wire.deployments {
        // "az" shares its model with "oai"; "future" is its model's only deployment.
        if d.id == "az" || d.id == "future" {
            d.provider = 99;
        }
    }
    let snapshot = from_wire(wire).expect("the rest of the snapshot applies");
    let gpt_4o = snapshot.model("gpt-4o").unwrap();
    assert_eq!(gpt_4o.deployments.len(), 1);
    assert_eq!(gpt_4o.deployments[0].id, "oai");
    assert!(
        snapshot.model("gpt-4o-mini").is_none(),
        "a model with no deployment left is not served"
    );
    assert!(snapshot.keys.contains_key("AbC123"), "keys still arrive");
    assert_eq!(
        snapshot.disabled,
        vec![
            "az: provider kind 99 is unknown to this gateway build".to_owned(),
            "future: provider kind 99 is unknown to this gateway build".to_owned(),
            "model gpt-4o-mini: every deployment is disabled, so it is not served".to_owned(),
        ]
    );
}

#[test]
fn an_unspecified_kind_is_a_malformed_snapshot() {
    let mut wire = wire(GOOD);
    wire.deployments[0].provider = 0;
    let SnapshotError(problems) = from_wire(wire).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("deployments[0].provider: must name a provider kind")),
        "{problems:#?}"
    );
}

#[test]
fn an_unknown_kind_name_in_toml_is_refused_never_taken_for_openai_compatible() {
    let text = GOOD.replace("provider = \"openai\"", "provider = \"openai-compatible\"");
    let file: StaticSnapshot = toml::from_str(&text).expect("parses");
    let problems = file.into_proto("local").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(
            "deployments[0].provider: unknown provider kind \"openai-compatible\" (known: openai, azure, anthropic, openai_compatible, gemini, vertex, bedrock)"
        ),
        "{problems:#?}"
    );
}

#[test]
fn presets_name_known_servers_on_openai_compatible_deployments_only() {
    use crate::providers::preset::{Preset, StreamUsage};
    let compatible = |preset: &str| {
        GOOD.replace(
            "provider = \"openai\"",
            &format!("provider = \"openai_compatible\"\npreset = \"{preset}\""),
        )
    };
    let snapshot = build(&compatible("mistral"), &[("OPENAI_API_KEY", "sk-x")]).unwrap();
    let oai = &snapshot.model("gpt-4o").unwrap().deployments[0];
    assert_eq!(oai.preset, Some(Preset::Mistral));
    assert_eq!(oai.quirks().stream_usage, StreamUsage::Always);
    let SnapshotError(problems) =
        build(&compatible("llamafile"), &[("OPENAI_API_KEY", "sk-x")]).unwrap_err();
    assert!(
        problems[0].starts_with("deployments[0].preset: unknown preset \"llamafile\""),
        "{problems:#?}"
    );
    let on_openai = GOOD.replace(
        "provider = \"openai\"",
        "provider = \"openai\"\npreset = \"groq\"",
    );
    let SnapshotError(problems) = build(&on_openai, &[("OPENAI_API_KEY", "sk-x")]).unwrap_err();
    assert!(
        problems[0].starts_with("deployments[0].preset: only openai_compatible"),
        "{problems:#?}"
    );
}

#[test]
fn models_that_go_into_a_url_path_must_be_one_segment() {
    let text = GOOD
        .replace("provider = \"openai\"", "provider = \"gemini\"")
        .replace("aliases = [\"gpt-4o-2024-08-06\"]", "")
        .replace(
            "credential = \"env:OPENAI_API_KEY\"",
            "credential = \"env:OPENAI_API_KEY\"\nupstream_model = \"../files?x\"\nprices = { input = 1, output = 1 }",
        );
    let SnapshotError(problems) = build(&text, &[("OPENAI_API_KEY", "k")]).unwrap_err();
    assert!(
        problems[0].starts_with("deployments[0].upstream_model"),
        "{problems:#?}"
    );
}

fn freeze(kind: proto::ScopeKind, id: &str, reason: &str) -> proto::Freeze {
    proto::Freeze {
        id: format!("f-{id}"),
        scope: Some(proto::Scope {
            kind: kind as i32,
            id: id.into(),
        }),
        org_id: "acme".into(),
        reason: reason.into(),
    }
}

#[test]
fn a_freeze_refuses_every_caller_under_its_scope_naming_the_broadest() {
    use crate::pipeline::authenticate::Caller;
    use crate::pipeline::authorize::{AuthzError, not_frozen};

    let caller_of = |snapshot: &Snapshot| -> Result<(), AuthzError> {
        let key = &snapshot.keys["AbC123"];
        let caller = Caller {
            key,
            team: &snapshot.teams["search"],
            org: &snapshot.orgs["acme"],
            project: Some(&snapshot.projects["ranker"]),
        };
        not_frozen(snapshot, &caller)
    };
    let unfrozen = from_wire(wire(GOOD)).unwrap();
    assert_eq!(caller_of(&unfrozen), Ok(()));

    for (kind, id) in [
        (proto::ScopeKind::Key, "AbC123"),
        (proto::ScopeKind::Project, "ranker"),
        (proto::ScopeKind::Team, "search"),
        (proto::ScopeKind::Org, "acme"),
    ] {
        let mut w = wire(GOOD);
        w.freezes.push(freeze(kind, id, "incident 7"));
        // A freeze on a scope this snapshot does not hold is accepted and refuses nothing.
        w.freezes
            .push(freeze(proto::ScopeKind::Team, "elsewhere", "other org"));
        let snapshot = from_wire(w).unwrap();
        match caller_of(&snapshot) {
            Err(AuthzError::Frozen {
                id: got, reason, ..
            }) => {
                assert_eq!(got, id);
                assert_eq!(reason, "incident 7");
            }
            other => panic!("{kind:?} {id}: {other:?}"),
        }
    }

    // Key and org both frozen: the org is named (lifting the key alone would not help).
    let mut w = wire(GOOD);
    w.freezes
        .push(freeze(proto::ScopeKind::Key, "AbC123", "key leaked"));
    w.freezes
        .push(freeze(proto::ScopeKind::Org, "acme", "org incident"));
    let err = caller_of(&from_wire(w).unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("org `") && err.to_string().contains("org incident"),
        "{err}"
    );

    let mut w = wire(GOOD);
    w.freezes.push(proto::Freeze {
        scope: Some(proto::Scope {
            kind: 99,
            id: "x".into(),
        }),
        ..Default::default()
    });
    let problems = from_wire(w).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("freezes[0].scope.kind")),
        "{problems:?}"
    );
}
