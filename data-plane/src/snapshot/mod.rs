//! The domain snapshot: everything a gateway needs to serve calls, validated.
//!
//! It arrives as a `tollgate_proto::config::Snapshot` (from the control plane, or built
//! from the standalone TOML by [`file`]) and becomes a [`Snapshot`] only through
//! [`Snapshot::from_proto`], which checks every reference and reports **every** problem
//! at once, each with its field path. Nothing downstream re-validates.
//!
//! A snapshot is immutable; [`live::Live`] swaps whole snapshots atomically.

pub mod file;
pub mod live;
pub mod remote;
pub mod signed;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use tollgate_proto::config as proto;

use crate::config::CredentialSettings;
use crate::money::{self, Micros, PriceTier, Prices};
use crate::prices::PriceTable;
use crate::providers::aws_sign;
use crate::providers::preset::{self, Preset, Quirks};
use crate::providers::urls::UpstreamUrls;

use crate::tokenize::image::ImageRule;
use crate::tokenize::{self, Encoding, Family};

/// Where deployment credentials come from, and which sources a reference may name.
/// The environment is captured once (tests pass a map), so that resolving never reads or
/// mutates the live process environment mid-flight; `file:` references are read when a
/// snapshot is validated (off the async workers), so a rotated file is picked up by the
/// next snapshot.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    env: HashMap<String, String>,
    policy: CredentialSettings,
    /// Check only the form of references; their values live on the gateways (used by the
    /// control plane to validate a snapshot before publishing it).
    form_only: bool,
}

/// Largest credential file read (a key, a token, a service-account JSON).
const MAX_CREDENTIAL_FILE_BYTES: u64 = 64 * 1024;

impl Credentials {
    pub fn from_env() -> Self {
        Self::from_map(std::env::vars())
    }

    /// `env` with the default allow-list (see [`CredentialSettings`]).
    pub fn from_map(env: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            env: env.into_iter().collect(),
            policy: CredentialSettings::default(),
            form_only: false,
        }
    }

    /// The same environment, with this gateway's allow-list.
    pub fn with_policy(mut self, policy: &CredentialSettings) -> Self {
        self.policy = policy.clone();
        self
    }

    /// References are checked for form but not resolved.
    pub fn form_only() -> Self {
        Self {
            form_only: true,
            ..Self::default()
        }
    }

    /// Bedrock's credential: a `file:` reference is a shared credentials file, read as
    /// is; `env:<prefix>ACCESS_KEY_ID` takes the standard trio under that prefix (the
    /// secret must be set too, the session token is optional), each variable allowed.
    fn resolve_aws(&self, reference: &str) -> Result<Option<SecretString>, String> {
        let Some(name) = reference.strip_prefix("env:") else {
            return self.resolve(reference);
        };
        let (secret_name, token_name) = aws_sign::from_env_names(name).ok_or_else(|| {
            format!("Bedrock credentials are env:<prefix>ACCESS_KEY_ID (e.g. env:AWS_ACCESS_KEY_ID) or a file:, not env:{name}")
        })?;
        let Some(key) = self.resolve(reference)? else {
            return Ok(None);
        };
        let Some(secret) = self.resolve(&format!("env:{secret_name}"))? else {
            return Ok(None);
        };
        let token = match self.env.get(&token_name) {
            Some(t) if !t.is_empty() && self.env_allowed(&token_name) => Some(t.as_str()),
            _ => None,
        };
        Ok(Some(SecretString::from(aws_sign::credentials_file(
            key.expose_secret(),
            secret.expose_secret(),
            token,
        ))))
    }

    /// `""` → no credential; `env:NAME` → that variable, which must be allowed and set;
    /// `file:PATH` → that file's text (without its final newline), which must lie inside
    /// `credentials.file_dir`.
    fn resolve(&self, reference: &str) -> Result<Option<SecretString>, String> {
        if reference.is_empty() {
            return Ok(None);
        }
        if let Some(name) = reference.strip_prefix("env:") {
            if name.is_empty() {
                return Err("env: names no variable".to_owned());
            }
            if self.form_only {
                return Ok(None);
            }
            if !self.env_allowed(name) {
                return Err(format!(
                    "environment variable {name} is not one this gateway lets credentials name \
                     (credentials.env_names / env_prefixes)"
                ));
            }
            return match self.env.get(name) {
                Some(value) if !value.is_empty() => Ok(Some(SecretString::from(value.clone()))),
                _ => Err(format!("environment variable {name} is not set")),
            };
        }
        if let Some(path) = reference.strip_prefix("file:") {
            if path.is_empty() || path.contains('\0') {
                return Err("file: names no path".to_owned());
            }
            if self.form_only {
                return Ok(None);
            }
            return self
                .read_file(path)
                .map(|text| Some(SecretString::from(text)));
        }
        Err(format!(
            "unsupported credential reference {reference:?}; use \"env:NAME\" or \"file:PATH\""
        ))
    }

    fn env_allowed(&self, name: &str) -> bool {
        // The gateway's own settings (the pepper, the enrollment token) are never a
        // provider's credential, whatever the allow-list says.
        if name.starts_with("TOLLGATE_") && !name.starts_with("TOLLGATE_PROVIDER_") {
            return false;
        }
        self.policy.env_names.iter().any(|n| n == name)
            || self
                .policy
                .env_prefixes
                .iter()
                .any(|p| !p.is_empty() && name.starts_with(p.as_str()))
    }

    fn read_file(&self, path: &str) -> Result<String, String> {
        use std::io::Read;
        let Some(dir) = &self.policy.file_dir else {
            return Err(
                "file: references are not allowed on this gateway (set credentials.file_dir)"
                    .to_owned(),
            );
        };
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| format!("credentials.file_dir {}: {e}", dir.display()))?;
        // Symlinks and `..` resolved: what is opened is what was checked.
        let real = std::fs::canonicalize(dir.join(path)).map_err(|e| format!("{path}: {e}"))?;
        if !real.starts_with(&dir) || real == dir {
            return Err(format!(
                "{path} is outside credentials.file_dir {}",
                dir.display()
            ));
        }
        let file = std::fs::File::open(&real).map_err(|e| format!("{path}: {e}"))?;
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            return Err(format!("{path} is not a regular file"));
        }
        let mut text = String::new();
        file.take(MAX_CREDENTIAL_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{path}: {e}"))?;
        if text.len() as u64 > MAX_CREDENTIAL_FILE_BYTES {
            return Err(format!(
                "{path} is larger than {MAX_CREDENTIAL_FILE_BYTES} bytes"
            ));
        }
        let trimmed = text
            .strip_suffix('\n')
            .map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
        if trimmed.is_empty() {
            return Err(format!("{path} is empty"));
        }
        Ok(trimmed.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Org,
    Team,
    Project,
    Key,
}

impl fmt::Display for ScopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Org => "org",
            Self::Team => "team",
            Self::Project => "project",
            Self::Key => "key",
        })
    }
}

/// Rate limits of one scope; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }
}

/// Which models a team, project or key may call. "Not set" and "empty" are different
/// things: an empty list allows nothing, so emptying a list can never widen access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowList {
    /// Not set: whatever the level above allows.
    All,
    /// Only these names or aliases (possibly none).
    Only(HashSet<String>),
}

impl AllowList {
    /// From the wire: `set` is the `allowed_models_set` flag, which control planes from
    /// before it never send; for them an empty list meant "not set".
    pub fn from_wire(models: Vec<String>, set: bool) -> Self {
        if set || !models.is_empty() {
            Self::Only(models.into_iter().collect())
        } else {
            Self::All
        }
    }

    /// Does this list let `model` through? An entry may name the model or any of its
    /// aliases: an alias stands for the model it names.
    pub fn permits(&self, model: &Model) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => {
                names.contains(&model.name) || model.aliases.iter().any(|a| names.contains(a))
            }
        }
    }

    /// The names listed (none for [`AllowList::All`]).
    pub fn names(&self) -> impl Iterator<Item = &String> {
        match self {
            Self::All => None,
            Self::Only(names) => Some(names.iter()),
        }
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone)]
pub struct Freeze {
    pub id: String,
    /// Why calls are stopped, as the admin wrote it; quoted in the refusal.
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct Team {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub allowed_models: AllowList,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub team_id: String,
    pub name: String,
    pub allowed_models: AllowList,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub public_id: String,
    pub display_prefix: String,
    pub secret_hmac: Vec<u8>,
    pub revoked: bool,
    /// Unix ms; `None` = never.
    pub expires_at_ms: Option<i64>,
    pub org_id: String,
    pub team_id: String,
    pub project_id: Option<String>,
    pub owner_user_id: Option<String>,
    pub allowed_models: AllowList,
    pub limits: Limits,
    pub name: String,
}

/// The provider kinds this build serves. Names come from the one list in
/// `tollgate_proto` (the API, the store and the TOML use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    OpenAi,
    AzureOpenAi,
    Anthropic,
    OpenAiCompatible,
    Gemini,
    Vertex,
    Bedrock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        self.to_wire().name().unwrap_or_default()
    }

    pub fn to_wire(self) -> proto::ProviderKind {
        match self {
            Self::OpenAi => proto::ProviderKind::Openai,
            Self::AzureOpenAi => proto::ProviderKind::AzureOpenai,
            Self::Anthropic => proto::ProviderKind::Anthropic,
            Self::OpenAiCompatible => proto::ProviderKind::OpenaiCompatible,
            Self::Gemini => proto::ProviderKind::Gemini,
            Self::Vertex => proto::ProviderKind::Vertex,
            Self::Bedrock => proto::ProviderKind::Bedrock,
        }
    }

    /// `Err` for a value this build does not know (a newer control plane's kind) and
    /// for `Unspecified`.
    pub fn from_wire(value: i32) -> Result<Self, UnknownKind> {
        Ok(match proto::ProviderKind::try_from(value) {
            Ok(proto::ProviderKind::Openai) => Self::OpenAi,
            Ok(proto::ProviderKind::AzureOpenai) => Self::AzureOpenAi,
            Ok(proto::ProviderKind::Anthropic) => Self::Anthropic,
            Ok(proto::ProviderKind::OpenaiCompatible) => Self::OpenAiCompatible,
            Ok(proto::ProviderKind::Gemini) => Self::Gemini,
            Ok(proto::ProviderKind::Vertex) => Self::Vertex,
            Ok(proto::ProviderKind::Bedrock) => Self::Bedrock,
            Err(_) => return Err(UnknownKind::Newer(value)),
            Ok(proto::ProviderKind::Unspecified) => return Err(UnknownKind::Unspecified),
        })
    }
}

/// Why a deployment's provider kind is not one this gateway can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKind {
    /// The snapshot is malformed: every deployment must name its kind.
    Unspecified,
    /// Added after this build: the deployment is disabled, the rest applies.
    Newer(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(120),
            total: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
pub struct Deployment {
    pub id: String,
    pub model: String,
    pub provider: ProviderKind,
    /// Without a trailing slash.
    pub base_url: String,
    pub upstream_model: String,
    pub credential: Option<SecretString>,
    pub api_version: String,
    /// OpenAI-compatible servers: whose quirks apply ([`Deployment::quirks`]).
    pub preset: Option<Preset>,
    /// The cloud region requests are signed for (Bedrock); empty otherwise.
    pub cloud_region: String,
    pub prices: Prices,
    pub weight: u32,
    pub region: String,
    pub timeouts: Timeouts,
    pub max_staleness: Option<Duration>,
    /// Upstream URLs parsed so far.
    pub urls: UpstreamUrls,
}

impl Deployment {
    /// How the deployment's server departs from OpenAI's API ([`preset::OPENAI`] if at all).
    pub fn quirks(&self) -> Quirks {
        self.preset.map_or(preset::OPENAI, Preset::quirks)
    }
}

/// The endpoints a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub chat: bool,
    pub completions: bool,
    pub embeddings: bool,
}

impl Modes {
    pub const ALL: Self = Self {
        chat: true,
        completions: true,
        embeddings: true,
    };
}

/// The most answers one call may ask for (`n`, `best_of`): OpenAI's own limit on `n`.
pub const MAX_N: u32 = 128;

#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub aliases: Vec<String>,
    /// Output ceiling for reservations when the request names none (tokens); never above
    /// `max_output_tokens` (validated).
    pub default_max_output_tokens: u32,
    pub encoding: Encoding,
    pub owned_by: String,
    /// Prompt tokens the model accepts; `None` = unknown (not checked).
    pub context_window: Option<u32>,
    /// The largest `max_tokens` one answer may have; `None` = unknown (not checked).
    pub max_output_tokens: Option<u32>,
    pub modes: Modes,
    /// The largest `n`/`best_of` a call may ask for, 1..=[`MAX_N`].
    pub max_n: u32,
    /// How its providers count prompts, derived from its deployments: the estimate
    /// follows the family that counts the most.
    pub families: Vec<Family>,
    /// How its deployments' upstream models bill images: the estimate follows the rule
    /// that bills the most.
    pub image_rules: Vec<ImageRule>,
    /// Never empty (validated).
    pub deployments: Vec<Arc<Deployment>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClampPolicy {
    Refuse,
    Clamp,
}

#[derive(Debug, Clone)]
pub struct Budget {
    pub id: String,
    pub scope: ScopeKind,
    pub scope_id: String,
    pub org_id: String,
    pub amount: Micros,
    pub period: Period,
    pub alert_thresholds_pct: Vec<u32>,
    pub clamp: ClampPolicy,
}

/// A validated, immutable view of the config. Lookups are by id (keys by public id,
/// models by name or alias).
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub region: String,
    pub generated_at_ms: i64,
    pub price_table_version: String,
    pub orgs: HashMap<String, Org>,
    pub teams: HashMap<String, Team>,
    pub projects: HashMap<String, Project>,
    pub keys: HashMap<String, ApiKey>,
    /// Name and every alias → the model.
    pub models: HashMap<String, Arc<Model>>,
    /// Canonical model names in config order (for `GET /v1/models`).
    pub model_names: Vec<String>,
    /// Scope id → budgets on it.
    pub budgets: HashMap<(ScopeKind, String), Vec<Budget>>,
    /// Active emergency stops by scope (a key by its public id).
    pub freezes: HashMap<(ScopeKind, String), Freeze>,
    /// Deployments left out because this build does not know their provider kind, each
    /// as `"id: why"` (reported in the Ack, so the fleet view shows them). Models left
    /// without a deployment are left out too, and listed here.
    pub disabled: Vec<String>,
}

/// Every problem found in a snapshot, one line per field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid config ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
pub struct SnapshotError(pub Vec<String>);

impl Snapshot {
    /// An empty snapshot (version 0): every key is unknown, every model too.
    pub fn empty() -> Self {
        Self {
            version: 0,
            region: String::new(),
            generated_at_ms: 0,
            price_table_version: String::new(),
            orgs: HashMap::new(),
            teams: HashMap::new(),
            projects: HashMap::new(),
            keys: HashMap::new(),
            models: HashMap::new(),
            model_names: Vec::new(),
            budgets: HashMap::new(),
            freezes: HashMap::new(),
            disabled: Vec::new(),
        }
    }

    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }

    /// Validates `wire` and builds the domain snapshot; `Err` lists every problem.
    pub fn from_proto(
        wire: proto::Snapshot,
        prices: &PriceTable,
        credentials: &Credentials,
    ) -> Result<Self, SnapshotError> {
        let mut problems = Vec::new();
        let mut snapshot = Self::empty();
        snapshot.version = wire.version;
        snapshot.region = wire.region;
        snapshot.generated_at_ms = wire.generated_at_unix_ms;
        snapshot.price_table_version = prices.version.clone();

        for (i, org) in wire.orgs.into_iter().enumerate() {
            if org.id.is_empty() {
                problems.push(format!("orgs[{i}].id: must not be empty"));
                continue;
            }
            if snapshot.orgs.contains_key(&org.id) {
                problems.push(format!("orgs[{i}].id: duplicate org {:?}", org.id));
            }
            let limits = limits(org.limits);
            snapshot.orgs.insert(
                org.id.clone(),
                Org {
                    id: org.id,
                    name: org.name,
                    limits,
                },
            );
        }

        for (i, team) in wire.teams.into_iter().enumerate() {
            if team.id.is_empty() {
                problems.push(format!("teams[{i}].id: must not be empty"));
                continue;
            }
            if !snapshot.orgs.contains_key(&team.org_id) {
                problems.push(format!("teams[{i}].org_id: unknown org {:?}", team.org_id));
            }
            if snapshot.teams.contains_key(&team.id) {
                problems.push(format!("teams[{i}].id: duplicate team {:?}", team.id));
            }
            snapshot.teams.insert(
                team.id.clone(),
                Team {
                    id: team.id,
                    org_id: team.org_id,
                    name: team.name,
                    allowed_models: AllowList::from_wire(
                        team.allowed_models,
                        team.allowed_models_set,
                    ),
                    limits: limits(team.limits),
                },
            );
        }

        for (i, project) in wire.projects.into_iter().enumerate() {
            if project.id.is_empty() {
                problems.push(format!("projects[{i}].id: must not be empty"));
                continue;
            }
            match snapshot.teams.get(&project.team_id) {
                None => problems.push(format!(
                    "projects[{i}].team_id: unknown team {:?}",
                    project.team_id
                )),
                Some(team) if team.org_id != project.org_id => problems.push(format!(
                    "projects[{i}].org_id: {:?} is not the org of team {:?}",
                    project.org_id, project.team_id
                )),
                Some(_) => {}
            }
            if snapshot.projects.contains_key(&project.id) {
                problems.push(format!(
                    "projects[{i}].id: duplicate project {:?}",
                    project.id
                ));
            }
            snapshot.projects.insert(
                project.id.clone(),
                Project {
                    id: project.id,
                    org_id: project.org_id,
                    team_id: project.team_id,
                    name: project.name,
                    allowed_models: AllowList::from_wire(
                        project.allowed_models,
                        project.allowed_models_set,
                    ),
                    limits: limits(project.limits),
                },
            );
        }

        let mut deployments_by_model: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        // Models with a deployment disabled for its unknown kind.
        let mut disabled_models: HashSet<String> = HashSet::new();
        let mut deployment_ids = HashSet::new();
        for (i, d) in wire.deployments.into_iter().enumerate() {
            let at = |field: &str| format!("deployments[{i}].{field}");
            if d.id.is_empty() {
                problems.push(format!("{}: must not be empty", at("id")));
            } else if !deployment_ids.insert(d.id.clone()) {
                problems.push(format!("{}: duplicate deployment {:?}", at("id"), d.id));
            }
            let provider = match ProviderKind::from_wire(d.provider) {
                Ok(kind) => Some(kind),
                Err(UnknownKind::Newer(value)) => {
                    // A newer control plane's provider must not stop revocations and
                    // budgets reaching this gateway: serve everything else.
                    tracing::warn!(deployment = %d.id, kind = value, "provider kind unknown to this build; deployment disabled");
                    snapshot.disabled.push(format!(
                        "{}: provider kind {value} is unknown to this gateway build",
                        d.id
                    ));
                    disabled_models.insert(d.model.clone());
                    continue;
                }
                Err(UnknownKind::Unspecified) => {
                    problems.push(format!("{}: must name a provider kind", at("provider")));
                    None
                }
            };
            let preset = match (provider, d.preset.as_str()) {
                (_, "") => None,
                (Some(ProviderKind::OpenAiCompatible), name) => match Preset::from_name(name) {
                    Some(p) => Some(p),
                    None => {
                        problems.push(format!(
                            "{}: unknown preset {name:?} (known: {})",
                            at("preset"),
                            Preset::ALL.map(Preset::name).join(", ")
                        ));
                        None
                    }
                },
                (_, _) => {
                    problems.push(format!(
                        "{}: only openai_compatible deployments take a preset",
                        at("preset")
                    ));
                    None
                }
            };
            if provider == Some(ProviderKind::Bedrock) && d.cloud_region.is_empty() {
                problems.push(format!(
                    "{}: Bedrock deployments need the AWS region they sign for",
                    at("cloud_region")
                ));
            }
            if !d
                .cloud_region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                problems.push(format!(
                    "{}: {:?} is not a region name",
                    at("cloud_region"),
                    d.cloud_region
                ));
            }
            if let Err(e) = check_base_url(&d.base_url) {
                problems.push(format!(
                    "{}: deployment {:?}: {e}, got {:?}",
                    at("base_url"),
                    d.id,
                    d.base_url
                ));
            }
            if provider == Some(ProviderKind::AzureOpenAi) && d.api_version.is_empty() {
                problems.push(format!(
                    "{}: Azure deployments need an api-version",
                    at("api_version")
                ));
            }
            let url_safe = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            };
            if !url_safe(&d.api_version) {
                problems.push(format!(
                    "{}: {:?} is not a valid api-version",
                    at("api_version"),
                    d.api_version
                ));
            }
            let resolved = if provider == Some(ProviderKind::Bedrock) {
                credentials.resolve_aws(&d.credential_ref)
            } else {
                credentials.resolve(&d.credential_ref)
            };
            let credential = resolved
                .map_err(|e| {
                    problems.push(format!(
                        "{}: deployment {:?}: {e}",
                        at("credential_ref"),
                        d.id
                    ));
                })
                .ok()
                .flatten();
            let upstream_model = if d.upstream_model.is_empty() {
                d.model.clone()
            } else {
                d.upstream_model
            };
            // These adapters put the model in the URL's path: one segment, nothing that
            // would change the path or start a query.
            let in_path = matches!(
                provider,
                Some(
                    ProviderKind::AzureOpenAi
                        | ProviderKind::Gemini
                        | ProviderKind::Vertex
                        | ProviderKind::Bedrock
                )
            );
            if in_path
                && !upstream_model
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/?#%\\".contains(&b))
            {
                problems.push(format!(
                    "{}: {upstream_model:?} cannot be a URL path segment (no spaces, / ? # % \\)",
                    at("upstream_model")
                ));
            }
            let deployment_prices = match d.prices {
                Some(p) => {
                    let tiers: Vec<PriceTier> = p
                        .tiers
                        .iter()
                        .map(|t| PriceTier {
                            above_prompt_tokens: t.above_prompt_tokens,
                            input: t.input_micros_per_mtok,
                            output: t.output_micros_per_mtok,
                            cached_input: t.cached_input_micros_per_mtok,
                            cache_write: t.cache_write_micros_per_mtok,
                        })
                        .collect();
                    if let Err(e) = money::check_tiers(&tiers) {
                        problems.push(format!("{}: {e}", at("prices.tiers")));
                    }
                    Some(Prices {
                        tiers: tiers.into(),
                        ..Prices::flat(
                            p.input_micros_per_mtok,
                            p.output_micros_per_mtok,
                            p.cached_input_micros_per_mtok,
                            p.cache_write_micros_per_mtok,
                        )
                    })
                }
                None => prices
                    .lookup(&upstream_model)
                    .or_else(|| prices.lookup(&d.model)),
            };
            let Some(deployment_prices) = deployment_prices else {
                problems.push(format!(
                    "{}: no price known for {:?} in price table {}; set prices on the deployment",
                    at("prices"),
                    upstream_model,
                    prices.version
                ));
                continue;
            };
            let p = &deployment_prices;
            if [p.input, p.output, p.cached_input, p.cache_write]
                .iter()
                .any(|p| *p < 0)
            {
                problems.push(format!("{}: prices must not be negative", at("prices")));
            }
            let timeouts = d.timeouts.map_or_else(Timeouts::default, |t| {
                let default = Timeouts::default();
                let ms = |v: u32, fallback: Duration| {
                    if v == 0 {
                        fallback
                    } else {
                        Duration::from_millis(u64::from(v))
                    }
                };
                Timeouts {
                    connect: ms(t.connect_ms, default.connect),
                    first_byte: ms(t.first_byte_ms, default.first_byte),
                    total: ms(t.total_ms, default.total),
                }
            });
            let Some(provider) = provider else { continue };
            let deployment = Deployment {
                id: d.id,
                model: d.model.clone(),
                provider,
                base_url: d.base_url.trim_end_matches('/').to_owned(),
                upstream_model,
                credential,
                api_version: d.api_version,
                preset,
                cloud_region: d.cloud_region,
                prices: deployment_prices,
                weight: if d.weight == 0 { 1 } else { d.weight },
                region: d.region,
                timeouts,
                max_staleness: (d.max_staleness_ms > 0)
                    .then(|| Duration::from_millis(d.max_staleness_ms)),
                urls: UpstreamUrls::default(),
            };
            deployments_by_model
                .entry(d.model)
                .or_default()
                .push(Arc::new(deployment));
        }

        for (i, m) in wire.models.into_iter().enumerate() {
            let at = |field: &str| format!("models[{i}].{field}");
            if m.name.is_empty() {
                problems.push(format!("{}: must not be empty", at("name")));
                continue;
            }
            let encoding = match Encoding::from_name(&m.tokenizer) {
                Some(e) => e,
                None => {
                    problems.push(format!(
                        "{}: unknown tokenizer {:?} (known: o200k_base, cl100k_base)",
                        at("tokenizer"),
                        m.tokenizer
                    ));
                    Encoding::O200k
                }
            };
            let deployments = deployments_by_model.remove(&m.name).unwrap_or_default();
            if deployments.is_empty() && disabled_models.contains(&m.name) {
                snapshot.disabled.push(format!(
                    "model {}: every deployment is disabled, so it is not served",
                    m.name
                ));
                continue;
            }
            if deployments.is_empty() {
                problems.push(format!(
                    "{}: model {:?} has no deployment",
                    at("name"),
                    m.name
                ));
            }
            let context_window = (m.context_window > 0).then_some(m.context_window);
            let max_output_tokens = (m.max_output_tokens > 0).then_some(m.max_output_tokens);
            let default_max_output_tokens = match (m.default_max_output_tokens, max_output_tokens) {
                (0, limit) => limit.map_or(4096, |l| l.min(4096)),
                (d, Some(limit)) if d > limit => {
                    problems.push(format!(
                        "{}: {d} is above the model's max_output_tokens {limit}",
                        at("default_max_output_tokens")
                    ));
                    limit
                }
                (d, _) => d,
            };
            let max_n = match m.max_n {
                0 => MAX_N,
                n if n > MAX_N => {
                    problems.push(format!("{}: must be at most {MAX_N}", at("max_n")));
                    MAX_N
                }
                n => n,
            };
            let modes = modes(&m.modes, &at("modes"), &mut problems);
            let mut families: Vec<Family> = deployments
                .iter()
                .map(|d| Family::of(d.provider, &d.upstream_model))
                .collect();
            families.sort_unstable();
            families.dedup();
            let mut image_rules: Vec<ImageRule> = Vec::new();
            for d in &deployments {
                for rule in tokenize::image_rules(d.provider, &d.upstream_model) {
                    if !image_rules.contains(rule) {
                        image_rules.push(*rule);
                    }
                }
            }
            let model = Arc::new(Model {
                name: m.name.clone(),
                aliases: m.aliases.clone(),
                default_max_output_tokens,
                encoding,
                owned_by: m.owned_by,
                context_window,
                max_output_tokens,
                modes,
                max_n,
                families,
                image_rules,
                deployments,
            });
            for name in std::iter::once(&m.name).chain(&m.aliases) {
                if snapshot
                    .models
                    .insert(name.clone(), model.clone())
                    .is_some()
                {
                    problems.push(format!(
                        "{}: the name {name:?} is used by two models",
                        at("aliases")
                    ));
                }
            }
            snapshot.model_names.push(m.name);
        }
        let mut orphans: Vec<_> = deployments_by_model.into_keys().collect();
        orphans.sort();
        for model in orphans {
            problems.push(format!(
                "deployments: model {model:?} is not declared in models"
            ));
        }

        for (i, key) in wire.keys.into_iter().enumerate() {
            let at = |field: &str| format!("keys[{i}].{field}");
            if key.public_id.is_empty() || !key.public_id.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                problems.push(format!(
                    "{}: must be non-empty base62, got {:?}",
                    at("public_id"),
                    key.public_id
                ));
            }
            if key.secret_hmac.len() != 32 {
                problems.push(format!(
                    "{}: must be 32 bytes (HMAC-SHA256), got {}",
                    at("secret_hmac"),
                    key.secret_hmac.len()
                ));
            }
            match snapshot.teams.get(&key.team_id) {
                None => problems.push(format!("{}: unknown team {:?}", at("team_id"), key.team_id)),
                Some(team) if team.org_id != key.org_id => problems.push(format!(
                    "{}: {:?} is not the org of team {:?}",
                    at("org_id"),
                    key.org_id,
                    key.team_id
                )),
                Some(_) => {}
            }
            if !key.project_id.is_empty() {
                match snapshot.projects.get(&key.project_id) {
                    None => problems.push(format!(
                        "{}: unknown project {:?}",
                        at("project_id"),
                        key.project_id
                    )),
                    Some(p) if p.team_id != key.team_id => problems.push(format!(
                        "{}: project {:?} is not in team {:?}",
                        at("project_id"),
                        key.project_id,
                        key.team_id
                    )),
                    Some(_) => {}
                }
            }
            let revoked = match proto::KeyStatus::try_from(key.status) {
                Ok(proto::KeyStatus::Active) => false,
                Ok(proto::KeyStatus::Revoked) => true,
                _ => {
                    problems.push(format!(
                        "{}: unknown key status {}",
                        at("status"),
                        key.status
                    ));
                    true
                }
            };
            if snapshot.keys.contains_key(&key.public_id) {
                problems.push(format!(
                    "{}: duplicate key {:?}",
                    at("public_id"),
                    key.public_id
                ));
            }
            snapshot.keys.insert(
                key.public_id.clone(),
                ApiKey {
                    public_id: key.public_id,
                    display_prefix: key.display_prefix,
                    secret_hmac: key.secret_hmac,
                    revoked,
                    expires_at_ms: (key.expires_at_unix_ms != 0).then_some(key.expires_at_unix_ms),
                    org_id: key.org_id,
                    team_id: key.team_id,
                    project_id: (!key.project_id.is_empty()).then_some(key.project_id),
                    owner_user_id: (!key.owner_user_id.is_empty()).then_some(key.owner_user_id),
                    allowed_models: AllowList::from_wire(
                        key.allowed_models,
                        key.allowed_models_set,
                    ),
                    limits: limits(key.limits),
                    name: key.name,
                },
            );
        }

        // Allow-lists may only name models that exist (here, or deployed in another
        // region), or typos silently lock people out.
        let elsewhere: HashSet<String> = wire.models_elsewhere.into_iter().collect();
        // The label is only formatted when there is a problem: 100k keys must not pay
        // for 100k `format!`s.
        let check_allowed =
            |what: &dyn Fn() -> String, allowed: &AllowList, problems: &mut Vec<String>| {
                let mut unknown: Vec<_> = allowed
                    .names()
                    .filter(|m| {
                        !snapshot.models.contains_key(*m)
                            && !elsewhere.contains(*m)
                            && !disabled_models.contains(*m)
                    })
                    .collect();
                unknown.sort();
                for model in unknown {
                    problems.push(format!(
                        "{}.allowed_models: unknown model {model:?}",
                        what()
                    ));
                }
            };
        for team in snapshot.teams.values() {
            check_allowed(
                &|| format!("teams[{}]", team.id),
                &team.allowed_models,
                &mut problems,
            );
        }
        for project in snapshot.projects.values() {
            check_allowed(
                &|| format!("projects[{}]", project.id),
                &project.allowed_models,
                &mut problems,
            );
        }
        for key in snapshot.keys.values() {
            check_allowed(
                &|| format!("keys[{}]", key.public_id),
                &key.allowed_models,
                &mut problems,
            );
        }

        for (i, b) in wire.budgets.into_iter().enumerate() {
            let at = |field: &str| format!("budgets[{i}].{field}");
            let Some(scope) = b.scope else {
                problems.push(format!("{}: missing", at("scope")));
                continue;
            };
            let kind = match proto::ScopeKind::try_from(scope.kind) {
                Ok(proto::ScopeKind::Org) => ScopeKind::Org,
                Ok(proto::ScopeKind::Team) => ScopeKind::Team,
                Ok(proto::ScopeKind::Project) => ScopeKind::Project,
                Ok(proto::ScopeKind::Key) => ScopeKind::Key,
                _ => {
                    problems.push(format!(
                        "{}: unknown scope kind {}",
                        at("scope.kind"),
                        scope.kind
                    ));
                    continue;
                }
            };
            let owner_org = match kind {
                ScopeKind::Org => snapshot.orgs.get(&scope.id).map(|o| o.id.clone()),
                ScopeKind::Team => snapshot.teams.get(&scope.id).map(|t| t.org_id.clone()),
                ScopeKind::Project => snapshot.projects.get(&scope.id).map(|p| p.org_id.clone()),
                ScopeKind::Key => snapshot.keys.get(&scope.id).map(|k| k.org_id.clone()),
            };
            match owner_org {
                None => problems.push(format!("{}: unknown {kind} {:?}", at("scope.id"), scope.id)),
                Some(org) if org != b.org_id => problems.push(format!(
                    "{}: {:?} is not the org of {kind} {:?}",
                    at("org_id"),
                    b.org_id,
                    scope.id
                )),
                Some(_) => {}
            }
            if b.amount_micros < 0 {
                problems.push(format!("{}: must not be negative", at("amount_micros")));
            }
            let period = match proto::BudgetPeriod::try_from(b.period) {
                Ok(proto::BudgetPeriod::Day) => Period::Day,
                Ok(proto::BudgetPeriod::Week) => Period::Week,
                Ok(proto::BudgetPeriod::Month) => Period::Month,
                Ok(proto::BudgetPeriod::Total) => Period::Total,
                _ => {
                    problems.push(format!("{}: unknown period {}", at("period"), b.period));
                    continue;
                }
            };
            let clamp = match proto::ClampPolicy::try_from(b.clamp) {
                Ok(proto::ClampPolicy::Clamp) => ClampPolicy::Clamp,
                _ => ClampPolicy::Refuse,
            };
            snapshot
                .budgets
                .entry((kind, scope.id.clone()))
                .or_default()
                .push(Budget {
                    id: b.id,
                    scope: kind,
                    scope_id: scope.id,
                    org_id: b.org_id,
                    amount: Micros(b.amount_micros),
                    period,
                    alert_thresholds_pct: b.alert_thresholds_pct,
                    clamp,
                });
        }

        // A freeze may name a scope this snapshot does not hold (the builder keeps freezes
        // out of per-org isolation so they always apply): it has nothing to refuse then.
        for (i, f) in wire.freezes.into_iter().enumerate() {
            let at = |field: &str| format!("freezes[{i}].{field}");
            let Some(scope) = f.scope else {
                problems.push(format!("{}: missing", at("scope")));
                continue;
            };
            let kind = match proto::ScopeKind::try_from(scope.kind) {
                Ok(proto::ScopeKind::Org) => ScopeKind::Org,
                Ok(proto::ScopeKind::Team) => ScopeKind::Team,
                Ok(proto::ScopeKind::Project) => ScopeKind::Project,
                Ok(proto::ScopeKind::Key) => ScopeKind::Key,
                _ => {
                    problems.push(format!(
                        "{}: unknown scope kind {}",
                        at("scope.kind"),
                        scope.kind
                    ));
                    continue;
                }
            };
            snapshot.freezes.insert(
                (kind, scope.id),
                Freeze {
                    id: f.id,
                    reason: f.reason,
                },
            );
        }

        if problems.is_empty() {
            Ok(snapshot)
        } else {
            Err(SnapshotError(problems))
        }
    }
}

/// A provider's API root must be an origin and a path only: the adapters append paths
/// to it and send it the credential, so a query (`?api-key=`), a fragment or a
/// `user:password@` riding along is refused.
fn check_base_url(url: &str) -> Result<(), &'static str> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err("must be an http(s) URL");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("must name a host");
    }
    if host.contains('@') {
        return Err("must not carry user:password@");
    }
    if url.contains(['?', '#']) {
        return Err("must not have a query or a fragment");
    }
    if url.contains(|c: char| c.is_whitespace() || c.is_control() || c == '\\') {
        return Err("must not contain spaces, control characters or backslashes");
    }
    Ok(())
}

/// The wire's mode list; empty = every endpoint (a control plane from before the field).
fn modes(wire: &[i32], at: &str, problems: &mut Vec<String>) -> Modes {
    if wire.is_empty() {
        return Modes::ALL;
    }
    let mut modes = Modes {
        chat: false,
        completions: false,
        embeddings: false,
    };
    for &mode in wire {
        match proto::ModelMode::try_from(mode) {
            Ok(proto::ModelMode::Chat) => modes.chat = true,
            Ok(proto::ModelMode::Completions) => modes.completions = true,
            Ok(proto::ModelMode::Embeddings) => modes.embeddings = true,
            _ => problems.push(format!("{at}: unknown mode {mode}")),
        }
    }
    modes
}

fn limits(wire: Option<proto::Limits>) -> Limits {
    wire.map_or_else(Limits::default, |l| Limits {
        rpm: l.rpm,
        tpm: l.tpm,
        max_concurrent: l.max_concurrent,
    })
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
