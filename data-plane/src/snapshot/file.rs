//! The standalone config's snapshot sections (`[[orgs]]`, `[[teams]]`, `[[projects]]`,
//! `[[keys]]`, `[[models]]`, `[[deployments]]`, `[[budgets]]`) — the same content the
//! control plane pushes, written by hand. They become a `proto::Snapshot` here and are
//! then validated by [`super::Snapshot::from_proto`] like any pushed snapshot.
//!
//! Friendlier than the wire format where hand-editing needs it: enums are strings,
//! money is USD in a string (`"25.00"`), the HMAC is hex, expiry is RFC 3339, and a
//! project's or key's org is implied by its team.

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_proto::config as proto;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSnapshot {
    /// Bumping it is not required; a standalone gateway serves exactly this file.
    #[serde(default = "one")]
    pub version: u64,
    #[serde(default)]
    pub orgs: Vec<OrgEntry>,
    #[serde(default)]
    pub teams: Vec<TeamEntry>,
    #[serde(default)]
    pub projects: Vec<ProjectEntry>,
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
    #[serde(default)]
    pub models: Vec<ModelEntry>,
    #[serde(default)]
    pub deployments: Vec<DeploymentEntry>,
    #[serde(default)]
    pub budgets: Vec<BudgetEntry>,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsEntry {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgEntry {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub limits: Option<LimitsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamEntry {
    pub id: String,
    pub org: String,
    #[serde(default)]
    pub name: String,
    /// Absent = not set (as the level above); `[]` = no model.
    pub allowed_models: Option<Vec<String>>,
    pub limits: Option<LimitsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectEntry {
    pub id: String,
    pub team: String,
    #[serde(default)]
    pub name: String,
    /// Absent = not set (as the level above); `[]` = no model.
    pub allowed_models: Option<Vec<String>>,
    pub limits: Option<LimitsEntry>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatusEntry {
    #[default]
    Active,
    Revoked,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub public_id: String,
    #[serde(default)]
    pub display_prefix: String,
    /// Hex of HMAC-SHA256(pepper, secret), as printed by `tollgate-gateway keys new`.
    pub secret_hmac: String,
    pub team: String,
    pub project: Option<String>,
    #[serde(default)]
    pub status: KeyStatusEntry,
    /// RFC 3339, e.g. "2027-01-01T00:00:00Z".
    pub expires_at: Option<String>,
    /// Absent = not set (as the level above); `[]` = no model.
    pub allowed_models: Option<Vec<String>>,
    pub limits: Option<LimitsEntry>,
    #[serde(default)]
    pub name: String,
    pub owner_user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub default_max_output_tokens: u32,
    #[serde(default)]
    pub tokenizer: String,
    #[serde(default)]
    pub owned_by: String,
    /// Prompt tokens the model accepts; unset = unknown (not checked).
    pub context_window: Option<u32>,
    /// The largest `max_tokens` the model accepts; unset = unknown (not checked).
    pub max_output_tokens: Option<u32>,
    /// Endpoints it serves; empty = all of them.
    #[serde(default)]
    pub modes: Vec<ModeEntry>,
    /// The largest `n` a call may ask for (1 refuses n > 1); unset = 128.
    pub max_n: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModeEntry {
    Chat,
    Completions,
    Embeddings,
}

/// Micro-USD per 1M tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesEntry {
    pub input: i64,
    pub output: i64,
    #[serde(default)]
    pub cached_input: i64,
    #[serde(default)]
    pub cache_write: i64,
    /// Long-context tiers, ascending (see `prices/prices.toml`).
    #[serde(default)]
    pub tiers: Vec<TierEntry>,
}

/// The rates above a prompt size, micro-USD per 1M tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierEntry {
    pub above_prompt_tokens: u64,
    pub input: i64,
    pub output: i64,
    #[serde(default)]
    pub cached_input: i64,
    #[serde(default)]
    pub cache_write: i64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsEntry {
    #[serde(default)]
    pub connect_ms: u32,
    #[serde(default)]
    pub first_byte_ms: u32,
    #[serde(default)]
    pub total_ms: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentEntry {
    pub id: String,
    pub model: String,
    /// A provider kind's name (`openai`, `gemini`, `bedrock`, …; see
    /// `tollgate_proto::config::ProviderKind::name`).
    pub provider: String,
    pub base_url: String,
    /// OpenAI-compatible servers: whose quirks apply (`vllm`, `groq`, …).
    #[serde(default)]
    pub preset: String,
    /// Bedrock: the AWS region requests are signed for.
    #[serde(default)]
    pub cloud_region: String,
    #[serde(default)]
    pub upstream_model: String,
    /// `env:NAME`, or empty for servers that need no credential.
    #[serde(default)]
    pub credential: String,
    #[serde(default)]
    pub api_version: String,
    pub prices: Option<PricesEntry>,
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub region: String,
    pub timeouts: Option<TimeoutsEntry>,
    #[serde(default)]
    pub max_staleness_ms: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PeriodEntry {
    Day,
    Week,
    Month,
    Total,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClampEntry {
    #[default]
    Refuse,
    Clamp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetEntry {
    #[serde(default)]
    pub id: String,
    /// `org:<id>`, `team:<id>`, `project:<id>` or `key:<public id>`.
    pub scope: String,
    /// USD as a decimal string, e.g. "25.00" (never a float).
    pub amount_usd: String,
    pub period: PeriodEntry,
    #[serde(default)]
    pub alert_thresholds_pct: Vec<u32>,
    #[serde(default)]
    pub clamp: ClampEntry,
}

/// Parses `"12.345678"` USD into micro-USD exactly.
pub fn parse_usd(text: &str) -> Result<i64, String> {
    let text = text.trim().trim_start_matches('$');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 6 {
        return Err(format!(
            "{text:?} is not a USD amount like \"25.00\" (at most 6 decimals)"
        ));
    }
    let whole: i64 = whole
        .parse()
        .map_err(|_| format!("{text:?} is too large"))?;
    let fraction: i64 = format!("{fraction:0<6}")
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn limits(entry: Option<LimitsEntry>) -> Option<proto::Limits> {
    entry.map(|l| proto::Limits {
        rpm: l.rpm,
        tpm: l.tpm,
        max_concurrent: l.max_concurrent,
    })
}

impl StaticSnapshot {
    /// The wire snapshot this file describes; `Err` lists every problem the conversion
    /// itself finds (references are checked later, by `Snapshot::from_proto`).
    pub fn into_proto(self, region: &str) -> Result<proto::Snapshot, Vec<String>> {
        let mut problems = Vec::new();
        let team_org: std::collections::HashMap<&str, &str> = self
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.org.as_str()))
            .collect();
        let org_of_team = |team: &str| {
            team_org
                .get(team)
                .map(|o| (*o).to_owned())
                .unwrap_or_default()
        };
        let project_team: std::collections::HashMap<&str, &str> = self
            .projects
            .iter()
            .map(|p| (p.id.as_str(), p.team.as_str()))
            .collect();
        let key_team: std::collections::HashMap<&str, &str> = self
            .keys
            .iter()
            .map(|k| (k.public_id.as_str(), k.team.as_str()))
            .collect();

        let mut wire = proto::Snapshot {
            version: self.version,
            region: region.to_owned(),
            generated_at_unix_ms: super::now_ms(),
            ..Default::default()
        };
        wire.orgs = self
            .orgs
            .iter()
            .map(|o| proto::Org {
                id: o.id.clone(),
                name: o.name.clone(),
                limits: limits(o.limits),
            })
            .collect();
        wire.teams = self
            .teams
            .iter()
            .map(|t| proto::Team {
                id: t.id.clone(),
                org_id: t.org.clone(),
                name: t.name.clone(),
                allowed_models: t.allowed_models.clone().unwrap_or_default(),
                allowed_models_set: t.allowed_models.is_some(),
                limits: limits(t.limits),
            })
            .collect();
        wire.projects = self
            .projects
            .iter()
            .map(|p| proto::Project {
                id: p.id.clone(),
                org_id: org_of_team(&p.team),
                team_id: p.team.clone(),
                name: p.name.clone(),
                allowed_models: p.allowed_models.clone().unwrap_or_default(),
                allowed_models_set: p.allowed_models.is_some(),
                limits: limits(p.limits),
            })
            .collect();
        for (i, k) in self.keys.iter().enumerate() {
            let secret_hmac = hex::decode(&k.secret_hmac).unwrap_or_else(|_| {
                problems.push(format!("keys[{i}].secret_hmac: not hex"));
                Vec::new()
            });
            let expires_at_unix_ms = match &k.expires_at {
                None => 0,
                Some(text) => match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(t) => {
                        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
                    }
                    Err(e) => {
                        problems.push(format!(
                            "keys[{i}].expires_at: {text:?} is not RFC 3339: {e}"
                        ));
                        0
                    }
                },
            };
            wire.keys.push(proto::ApiKey {
                public_id: k.public_id.clone(),
                display_prefix: k.display_prefix.clone(),
                secret_hmac,
                status: match k.status {
                    KeyStatusEntry::Active => proto::KeyStatus::Active,
                    KeyStatusEntry::Revoked => proto::KeyStatus::Revoked,
                } as i32,
                expires_at_unix_ms,
                org_id: org_of_team(&k.team),
                team_id: k.team.clone(),
                project_id: k.project.clone().unwrap_or_default(),
                owner_user_id: k.owner_user.clone().unwrap_or_default(),
                allowed_models: k.allowed_models.clone().unwrap_or_default(),
                allowed_models_set: k.allowed_models.is_some(),
                limits: limits(k.limits),
                name: k.name.clone(),
            });
        }
        wire.models = self
            .models
            .into_iter()
            .map(|m| proto::Model {
                name: m.name,
                aliases: m.aliases,
                default_max_output_tokens: m.default_max_output_tokens,
                tokenizer: m.tokenizer,
                owned_by: m.owned_by,
                context_window: m.context_window.unwrap_or(0),
                max_output_tokens: m.max_output_tokens.unwrap_or(0),
                modes: m
                    .modes
                    .iter()
                    .map(|mode| match mode {
                        ModeEntry::Chat => proto::ModelMode::Chat,
                        ModeEntry::Completions => proto::ModelMode::Completions,
                        ModeEntry::Embeddings => proto::ModelMode::Embeddings,
                    } as i32)
                    .collect(),
                max_n: m.max_n.unwrap_or(0),
            })
            .collect();
        let mut kind = |i: usize, name: &str| match proto::ProviderKind::from_name(name) {
            Some(kind) => kind as i32,
            None => {
                problems.push(format!(
                    "deployments[{i}].provider: unknown provider kind {name:?} (known: {})",
                    proto::ProviderKind::names().collect::<Vec<_>>().join(", ")
                ));
                proto::ProviderKind::Unspecified as i32
            }
        };
        wire.deployments = self
            .deployments
            .into_iter()
            .enumerate()
            .map(|(i, d)| proto::Deployment {
                id: d.id,
                model: d.model,
                provider: kind(i, &d.provider),
                base_url: d.base_url,
                preset: d.preset,
                cloud_region: d.cloud_region,
                upstream_model: d.upstream_model,
                credential_ref: d.credential,
                api_version: d.api_version,
                prices: d.prices.map(|p| proto::Prices {
                    input_micros_per_mtok: p.input,
                    output_micros_per_mtok: p.output,
                    cached_input_micros_per_mtok: p.cached_input,
                    cache_write_micros_per_mtok: p.cache_write,
                    tiers: p
                        .tiers
                        .iter()
                        .map(|t| proto::PriceTier {
                            above_prompt_tokens: t.above_prompt_tokens,
                            input_micros_per_mtok: t.input,
                            output_micros_per_mtok: t.output,
                            cached_input_micros_per_mtok: t.cached_input,
                            cache_write_micros_per_mtok: t.cache_write,
                        })
                        .collect(),
                }),
                weight: d.weight,
                region: if d.region.is_empty() {
                    region.to_owned()
                } else {
                    d.region
                },
                timeouts: d.timeouts.map(|t| proto::Timeouts {
                    connect_ms: t.connect_ms,
                    first_byte_ms: t.first_byte_ms,
                    total_ms: t.total_ms,
                }),
                max_staleness_ms: d.max_staleness_ms,
            })
            .collect();
        for (i, b) in self.budgets.into_iter().enumerate() {
            let Some((kind, id)) = b.scope.split_once(':') else {
                problems.push(format!(
                    "budgets[{i}].scope: {:?} is not kind:id (org:, team:, project:, key:)",
                    b.scope
                ));
                continue;
            };
            let (kind, org_id) = match kind {
                "org" => (proto::ScopeKind::Org, id.to_owned()),
                "team" => (proto::ScopeKind::Team, org_of_team(id)),
                "project" => (
                    proto::ScopeKind::Project,
                    org_of_team(project_team.get(id).copied().unwrap_or("")),
                ),
                "key" => (
                    proto::ScopeKind::Key,
                    org_of_team(key_team.get(id).copied().unwrap_or("")),
                ),
                other => {
                    problems.push(format!(
                        "budgets[{i}].scope: unknown scope kind {other:?} (org, team, project, key)"
                    ));
                    continue;
                }
            };
            let amount_micros = parse_usd(&b.amount_usd).unwrap_or_else(|e| {
                problems.push(format!("budgets[{i}].amount_usd: {e}"));
                0
            });
            wire.budgets.push(proto::Budget {
                id: if b.id.is_empty() {
                    format!("{}-{}", b.scope, i)
                } else {
                    b.id
                },
                scope: Some(proto::Scope {
                    kind: kind as i32,
                    id: id.to_owned(),
                }),
                org_id,
                amount_micros,
                period: match b.period {
                    PeriodEntry::Day => proto::BudgetPeriod::Day,
                    PeriodEntry::Week => proto::BudgetPeriod::Week,
                    PeriodEntry::Month => proto::BudgetPeriod::Month,
                    PeriodEntry::Total => proto::BudgetPeriod::Total,
                } as i32,
                alert_thresholds_pct: if b.alert_thresholds_pct.is_empty() {
                    vec![50, 80, 100]
                } else {
                    b.alert_thresholds_pct
                },
                clamp: match b.clamp {
                    ClampEntry::Refuse => proto::ClampPolicy::Refuse,
                    ClampEntry::Clamp => proto::ClampPolicy::Clamp,
                } as i32,
            });
        }
        if problems.is_empty() {
            Ok(wire)
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_usd;

    #[test]
    fn usd_strings_become_exact_micros() {
        assert_eq!(parse_usd("25.00"), Ok(25_000_000));
        assert_eq!(parse_usd("$0.000001"), Ok(1));
        assert_eq!(parse_usd("7"), Ok(7_000_000));
        assert_eq!(parse_usd("1.5"), Ok(1_500_000));
        assert!(parse_usd("1.0000001").is_err());
        assert!(parse_usd("-3").is_err());
        assert!(parse_usd("abc").is_err());
        assert!(parse_usd("99999999999999999").is_err());
    }
}
