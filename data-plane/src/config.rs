//! The gateway's own settings (`Settings`), loaded from defaults → TOML (`--config`) →
//! `TOLLGATE_<SECTION>__<FIELD>` environment variables, plus — in standalone mode — the
//! snapshot sections of the same file.
//!
//! Runtime rules (keys, models, budgets) are not settings: they live in the snapshot,
//! which a control plane may replace at any time. Settings are fixed for the process.

use std::net::SocketAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
pub use tollgate_settings::LogFormat;

use crate::snapshot::file::StaticSnapshot;

/// Top-level tables that are settings; every other table belongs to the snapshot.
const SETTINGS_SECTIONS: &[&str] = &[
    "server",
    "auth",
    "routing",
    "ledger",
    "redis",
    "control",
    "telemetry",
    "tracing",
    "credentials",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub routing: RoutingSettings,
    #[serde(default)]
    pub ledger: LedgerSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    /// Set: config comes from a control plane. Absent: standalone (config in this file).
    pub control: Option<ControlSettings>,
    /// Usage shipping to the control plane (only with `[control]`).
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// OpenTelemetry traces over OTLP (off unless `otlp_endpoint` is set).
    #[serde(default)]
    pub tracing: TracingSettings,
    /// What a deployment's credential reference may read on this gateway.
    #[serde(default)]
    pub credentials: CredentialSettings,
}

/// The sources a snapshot's credential references (`env:NAME`, `file:PATH`) may name.
/// A snapshot is signed by the control plane, but what it may make this gateway send to
/// a provider is this gateway's decision: without an allow-list, one bad snapshot could
/// name `env:TOLLGATE_AUTH__KEY_PEPPER` and ship the pepper to any `base_url`. A
/// reference outside the list refuses the whole snapshot (Nack, naming the deployment).
/// The gateway's own settings (`TOLLGATE_*` other than `TOLLGATE_PROVIDER_*`) are never
/// readable, whatever the list says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialSettings {
    /// Environment variables `env:NAME` may name exactly.
    pub env_names: Vec<String>,
    /// ... or by prefix (e.g. every `TOLLGATE_PROVIDER_*` and `AWS_*` variable).
    pub env_prefixes: Vec<String>,
    /// `file:PATH` references read files inside this directory only (a relative PATH is
    /// taken from it; symlinks and `..` are resolved first, so neither escapes it).
    /// Absent: `file:` references are refused.
    pub file_dir: Option<std::path::PathBuf>,
}

impl Default for CredentialSettings {
    fn default() -> Self {
        Self {
            env_names: [
                "OPENAI_API_KEY",
                "AZURE_OPENAI_API_KEY",
                "ANTHROPIC_API_KEY",
                "GEMINI_API_KEY",
                "GOOGLE_API_KEY",
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GROQ_API_KEY",
                "MISTRAL_API_KEY",
                "DEEPSEEK_API_KEY",
                "XAI_API_KEY",
                "TOGETHER_API_KEY",
            ]
            .map(str::to_owned)
            .to_vec(),
            env_prefixes: vec!["TOLLGATE_PROVIDER_".to_owned(), "AWS_".to_owned()],
            file_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    /// OTLP/gRPC collector, `http://collector:4317` (plaintext: run a collector or agent
    /// beside the gateway for TLS). Absent: no spans are exported and the client's
    /// `traceparent` goes upstream unchanged.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Finished spans are batched and sent at least this often (ms).
    pub export_interval_ms: u64,
    /// One export attempt gives up after this long (ms); the batch is then dropped.
    pub export_timeout_ms: u64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "tollgate-gateway".into(),
            export_interval_ms: 5_000,
            export_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Usage waits here, fsynced, until the control plane acknowledged it.
    pub spool_dir: std::path::PathBuf,
    /// Beyond this the spool refuses new batches: they are dropped and counted
    /// (`tollgate_telemetry_dropped_total`).
    pub spool_max_mb: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            spool_dir: "tollgate-spool".into(),
            spool_max_mb: 1024,
        }
    }
}

/// The control plane this gateway takes its config from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// `https://host:8401` (TLS) or `http://…` (plaintext, loopback/tests only); or a
    /// list of them (`["https://cp-1:8401", "https://cp-2:8401"]`, or comma-separated in
    /// `TOLLGATE_CONTROL__URL`): when a stream drops, the gateway moves to the next.
    #[serde(deserialize_with = "one_or_more_urls")]
    pub url: Vec<String>,
    /// The region's enrollment token (`tge_…`), exchanged at start for a short-lived
    /// credential of this gateway id (kept in memory, renewed while running). Prefer
    /// TOLLGATE_CONTROL__ENROLLMENT_TOKEN.
    pub enrollment_token: SecretString,
    /// Key id → base64 Ed25519 public key. Snapshots signed by anything else are refused;
    /// list two while rotating the signing key.
    pub trusted_keys: std::collections::BTreeMap<String, String>,
    /// PEM CA bundle for the control plane's certificate (default: public web roots).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key, when the control plane requires mTLS.
    #[serde(default)]
    pub client_cert: Option<std::path::PathBuf>,
    #[serde(default)]
    pub client_key: Option<std::path::PathBuf>,
    /// Where the last verified snapshot is kept, to start from when the control plane is
    /// unreachable.
    #[serde(default = "default_lkg_path")]
    pub last_known_good: std::path::PathBuf,
    /// A stream that delivers no snapshot this long after connecting is dropped (ms).
    #[serde(default = "default_first_snapshot_ms")]
    pub first_snapshot_timeout_ms: u64,
    /// Longest wait between reconnect attempts (ms); jittered, doubling from 100 ms.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

/// A string (comma-separated for several, as an environment variable can only be) or a
/// list of strings.
fn one_or_more_urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMore {
        One(String),
        More(Vec<String>),
    }
    let urls: Vec<String> = match OneOrMore::deserialize(d)? {
        OneOrMore::One(s) => s.split(',').map(|u| u.trim().to_owned()).collect(),
        OneOrMore::More(v) => v.into_iter().map(|u| u.trim().to_owned()).collect(),
    };
    if urls.is_empty() || urls.iter().any(String::is_empty) {
        return Err(serde::de::Error::custom(
            "a URL or a list of URLs, none of them empty",
        ));
    }
    Ok(urls)
}

fn default_lkg_path() -> std::path::PathBuf {
    "tollgate-last-known-good.snapshot".into()
}
fn default_first_snapshot_ms() -> u64 {
    10_000
}
fn default_reconnect_max_ms() -> u64 {
    5_000
}

impl std::fmt::Debug for ControlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSettings")
            .field("url", &self.url)
            .field("enrollment_token", &"[redacted]")
            .field("trusted_keys", &self.trusted_keys.keys())
            .field("last_known_good", &self.last_known_good)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address the OpenAI-compatible API listens on. Port 0 picks a free port (printed).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; bigger bodies get 413.
    pub max_body_bytes: usize,
    /// Region this gateway serves (deployments of other regions are ignored).
    pub region: String,
    /// Identity in usage events and the fleet view.
    pub gateway_id: String,
    /// Usage events waiting to be shipped; when full, new events are dropped and counted.
    pub usage_queue_capacity: usize,
    /// Append every usage event as a JSON line to this file (a standalone spend record).
    pub usage_log: Option<std::path::PathBuf>,
    /// `text` or `json` (one object per line, with the call's `request_id`) on stderr.
    pub log_format: LogFormat,
    /// An HTTP/1 request head must be complete this long after the gateway started
    /// waiting for it (ms); a slower client (slowloris) is disconnected.
    pub header_read_timeout_ms: u64,
    /// A request body must be complete this long after its head (ms); a body still
    /// trickling in then gets 408 and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (ms). Longer than
    /// the clients' own pool idle time (the OpenAI SDKs: 5 s), so that clients close first.
    pub idle_timeout_ms: u64,
    /// Client connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Serve `GET /metrics` on this address instead of `listen` (e.g. a port only the
    /// Prometheus scraper can reach). Absent: `/metrics` is on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// On SIGTERM, `/readyz` answers 503 for this long while new calls are still served,
    /// so that load balancers stop sending before the listener closes (ms). SIGINT (a
    /// person's Ctrl-C) skips it.
    pub drain_delay_ms: u64,
    /// After the listener closed, calls and streams in flight get this long to finish
    /// (ms); then the gateway settles what it can and exits.
    pub shutdown_deadline_ms: u64,
}

impl ServerSettings {
    /// What each client connection is allowed.
    pub fn connection_limits(&self) -> tollgate_serve::Limits {
        tollgate_serve::Limits {
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: std::time::Duration::from_millis(self.body_read_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 * 1024 * 1024,
            region: "local".into(),
            gateway_id: "gateway-local".into(),
            usage_queue_capacity: 65_536,
            usage_log: None,
            log_format: LogFormat::Text,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_connections: 4_096,
            metrics_listen: None,
            drain_delay_ms: 5_000,
            shutdown_deadline_ms: 20_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Server-side secret mixed into every key's HMAC. The control plane and every gateway
    /// must share it. At least 16 bytes. Prefer setting it through TOLLGATE_AUTH__KEY_PEPPER.
    pub key_pepper: SecretString,
}

impl AuthSettings {
    pub fn key_pepper_bytes(&self) -> &[u8] {
        self.key_pepper.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("key_pepper", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// Attempts per call across all deployments of the model (1 = no retry).
    pub max_attempts: u32,
    /// First retry waits about this long (ms), doubling each time, with full jitter.
    pub backoff_base_ms: u64,
    /// Longest wait between attempts (ms), also caps an upstream's Retry-After.
    pub backoff_max_ms: u64,
    /// Consecutive failures after which a deployment is cooled down.
    pub cooldown_failures: u32,
    /// How long a cooled-down deployment is avoided (ms).
    pub cooldown_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_base_ms: 25,
            backoff_max_ms: 2_000,
            cooldown_failures: 3,
            cooldown_ms: 15_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// `memory`: budgets enforced inside this process (one gateway).
    /// `redis`: budgets shared by every gateway using the same Redis.
    pub kind: LedgerKind,
    /// What to do when Redis cannot be reached: `fail_closed` answers 503 without calling
    /// upstream; `fail_open` lets calls through up to `fail_open_cap_usd` per gateway.
    pub on_redis_error: FailurePolicy,
    /// Spend this gateway may allow while Redis is unreachable (USD, e.g. "5.00").
    pub fail_open_cap_usd: String,
    /// A reservation's lease: the call's longest possible duration plus this (ms); after
    /// it, any gateway's reaper may release a reservation that was never settled.
    pub lease_margin_ms: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            kind: LedgerKind::Memory,
            on_redis_error: FailurePolicy::FailClosed,
            fail_open_cap_usd: "0".into(),
            lease_margin_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    #[default]
    FailClosed,
    FailOpen,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:port/`.
    pub url: String,
    /// Talk to a Redis Cluster (keys are hash-tagged per org, so every script stays on one
    /// slot). The cluster is discovered from `cluster_nodes`, or from `url` if empty.
    pub cluster: bool,
    pub cluster_nodes: Vec<String>,
    /// Every key this gateway writes starts with it (then the org's hash tag).
    pub key_prefix: String,
    /// Per command (ms); a slower Redis counts as unreachable.
    pub timeout_ms: u64,
    /// How often health, queued settlements and expired leases are looked after (ms).
    pub maintenance_interval_ms: u64,
    /// Settlements kept while Redis is unreachable; beyond it they are dropped and counted.
    pub settle_queue_capacity: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/".into(),
            cluster: false,
            cluster_nodes: Vec::new(),
            key_prefix: "tg:".into(),
            timeout_ms: 500,
            maintenance_interval_ms: 1000,
            settle_queue_capacity: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Sources(#[from] tollgate_settings::SettingsError),
    #[error("invalid config ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// What a config file holds: settings, and the snapshot sections if any were given.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub snapshot: Option<StaticSnapshot>,
}

impl Settings {
    /// Defaults ← `toml` ← `env` (`TOLLGATE_SERVER__LISTEN=…`). Tests pass a map for
    /// `env`; nothing here reads or mutates the process environment.
    pub fn from_sources(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut table = tollgate_settings::layered(toml_text, env, SETTINGS_SECTIONS)?;
        let mut snapshot_table = toml::Table::new();
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            if !SETTINGS_SECTIONS.contains(&key.as_str())
                && let Some(value) = table.remove(&key)
            {
                snapshot_table.insert(key, value);
            }
        }
        let settings: Settings = tollgate_settings::deserialize(table)?;
        settings.validate()?;
        let snapshot = if snapshot_table.is_empty() {
            None
        } else {
            Some(tollgate_settings::deserialize(snapshot_table)?)
        };
        Ok(Loaded { settings, snapshot })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.auth.key_pepper.expose_secret().len() < 16 {
            problems.push("auth.key_pepper: must be at least 16 bytes".to_owned());
        }
        if self.server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes: must be at least 1024".to_owned());
        }
        if let Some(control) = &self.control {
            for url in &control.url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(format!(
                        "control.url: {url:?} must start with https:// (or http://)"
                    ));
                }
            }
            if control.trusted_keys.is_empty() {
                problems.push("control.trusted_keys: at least one key id = public key".to_owned());
            }
            let pairs = control
                .trusted_keys
                .iter()
                .map(|(id, key)| (id.as_str(), key.as_str()));
            if let Err(e) = tollgate_signing::TrustedKeys::parse(pairs) {
                problems.push(format!("control.trusted_keys: {e}"));
            }
            if control.client_cert.is_some() != control.client_key.is_some() {
                problems.push("control.client_cert and control.client_key go together".to_owned());
            }
        }
        if self.routing.max_attempts == 0 {
            problems.push("routing.max_attempts: must be at least 1".to_owned());
        }
        if let Err(e) = crate::snapshot::file::parse_usd(&self.ledger.fail_open_cap_usd) {
            problems.push(format!("ledger.fail_open_cap_usd: {e}"));
        }
        if self.redis.key_prefix.contains(['{', '}']) {
            problems.push(
                "redis.key_prefix: must not contain '{' or '}' (they delimit hash tags)".to_owned(),
            );
        }
        if let Some(endpoint) = &self.tracing.otlp_endpoint
            && !endpoint.starts_with("http://")
        {
            problems.push(
                "tracing.otlp_endpoint: must start with http:// (OTLP/gRPC in plaintext)"
                    .to_owned(),
            );
        }
        if self.tracing.export_interval_ms == 0 || self.tracing.export_timeout_ms == 0 {
            problems.push(
                "tracing.export_interval_ms and tracing.export_timeout_ms: must be at least 1"
                    .to_owned(),
            );
        }
        let server = &self.server;
        for (field, ms) in [
            ("header_read_timeout_ms", server.header_read_timeout_ms),
            ("body_read_timeout_ms", server.body_read_timeout_ms),
            ("idle_timeout_ms", server.idle_timeout_ms),
        ] {
            if ms == 0 {
                problems.push(format!("server.{field}: must be at least 1"));
            }
        }
        if server.max_connections == 0 {
            problems.push("server.max_connections: must be at least 1".to_owned());
        }
        if server.metrics_listen == Some(server.listen) && server.listen.port() != 0 {
            problems.push(
                "server.metrics_listen: must differ from server.listen (or be left out)".to_owned(),
            );
        }
        if self.credentials.env_prefixes.iter().any(String::is_empty) {
            problems.push(
                "credentials.env_prefixes: an empty prefix would allow every variable".to_owned(),
            );
        }
        if let Some(dir) = &self.credentials.file_dir
            && !dir.is_absolute()
        {
            problems.push("credentials.file_dir: must be an absolute path".to_owned());
        }
        if self.server.usage_queue_capacity == 0 {
            problems.push("server.usage_queue_capacity: must be at least 1".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEPPER: &str = "[auth]\nkey_pepper = \"0123456789abcdef0123\"\n";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let text = format!("{PEPPER}[server]\nlisten = \"127.0.0.1:9000\"\nregion = \"eu\"\n");
        let loaded = Settings::from_sources(
            Some(&text),
            env(&[
                ("TOLLGATE_SERVER__LISTEN", "127.0.0.1:9100"),
                ("TOLLGATE_ROUTING__MAX_ATTEMPTS", "5"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        let s = loaded.settings;
        assert_eq!(s.server.listen.port(), 9100);
        assert_eq!(s.server.region, "eu");
        assert_eq!(s.routing.max_attempts, 5);
        assert_eq!(
            s.routing.cooldown_failures,
            RoutingSettings::default().cooldown_failures
        );
        assert!(loaded.snapshot.is_none());
    }

    #[test]
    fn control_url_is_one_url_a_list_or_a_comma_separated_env_value() {
        let control = "[control]\nenrollment_token = \"tge_x\"\ntrusted_keys = { k = \"WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=\" }\n";
        let urls = |text: &str, pairs: &[(&str, &str)]| {
            Settings::from_sources(Some(&format!("{PEPPER}{control}{text}")), env(pairs))
                .map(|l| l.settings.control.map(|c| c.url).unwrap_or_default())
        };
        assert_eq!(
            urls("url = \"https://a:8401\"\n", &[]).unwrap(),
            ["https://a:8401"]
        );
        assert_eq!(
            urls("url = [\"https://a:8401\", \"https://b:8401\"]\n", &[]).unwrap(),
            ["https://a:8401", "https://b:8401"]
        );
        assert_eq!(
            urls(
                "url = \"https://a:8401\"\n",
                &[("TOLLGATE_CONTROL__URL", "https://b:8401, https://c:8401")]
            )
            .unwrap(),
            ["https://b:8401", "https://c:8401"]
        );
        let err = urls("url = []\n", &[]).unwrap_err();
        assert!(err.to_string().contains("control.url"), "{err}");
        let err = urls("url = [\"https://a:8401\", \"ftp://b\"]\n", &[]).unwrap_err();
        assert!(err.to_string().contains("ftp://b"), "{err}");
    }

    #[test]
    fn pepper_can_come_from_env_only() {
        let loaded = Settings::from_sources(
            None,
            env(&[("TOLLGATE_AUTH__KEY_PEPPER", "a-long-enough-pepper")]),
        )
        .unwrap();
        assert_eq!(
            loaded.settings.auth.key_pepper.expose_secret(),
            "a-long-enough-pepper"
        );
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let text = format!("{PEPPER}[server]\nlisen = \"x\"\n");
        let err = Settings::from_sources(Some(&text), env(&[])).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");

        let err = Settings::from_sources(Some(PEPPER), env(&[("TOLLGATE_SERVER__LISTEN", "nope")]))
            .unwrap_err();
        assert!(err.to_string().starts_with("server.listen"), "{err}");
    }

    #[test]
    fn every_invalid_setting_is_reported_at_once() {
        let text = "[auth]\nkey_pepper = \"short\"\n[routing]\nmax_attempts = 0\n";
        let ConfigError::Invalid(problems) =
            Settings::from_sources(Some(text), env(&[])).unwrap_err()
        else {
            panic!("expected Invalid")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_given() {
        let loaded = Settings::from_sources(Some(PEPPER), env(&[])).unwrap();
        assert!(loaded.settings.tracing.otlp_endpoint.is_none());
        assert_eq!(loaded.settings.server.log_format, LogFormat::Text);

        let loaded = Settings::from_sources(
            Some(PEPPER),
            env(&[
                ("TOLLGATE_TRACING__OTLP_ENDPOINT", "http://collector:4317"),
                ("TOLLGATE_SERVER__LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        let s = loaded.settings;
        assert_eq!(
            s.tracing.otlp_endpoint.as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(s.tracing.service_name, "tollgate-gateway");
        assert_eq!(s.server.log_format, LogFormat::Json);
        assert!(loaded.snapshot.is_none(), "[tracing] is a settings section");

        let text = format!("{PEPPER}[tracing]\notlp_endpoint = \"collector:4317\"\n");
        let err = Settings::from_sources(Some(&text), env(&[])).unwrap_err();
        assert!(err.to_string().contains("tracing.otlp_endpoint"), "{err}");
    }

    #[test]
    fn snapshot_sections_are_split_off() {
        let text = format!("{PEPPER}[[orgs]]\nid = \"acme\"\n");
        let loaded = Settings::from_sources(Some(&text), env(&[])).unwrap();
        assert_eq!(loaded.snapshot.unwrap().orgs[0].id, "acme");
    }

    #[test]
    fn the_pepper_never_shows_in_debug_output() {
        let loaded = Settings::from_sources(Some(PEPPER), env(&[])).unwrap();
        assert!(!format!("{:?}", loaded.settings).contains("0123456789abcdef"));
    }
}
