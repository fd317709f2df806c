//! `Settings` of `tollgate-control`: defaults ← TOML (`--config`) ← `TOLLGATE_*` env.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

const SECTIONS: &[&str] = &[
    "server",
    "database",
    "auth",
    "budgets",
    "grpc",
    "signing",
    "telemetry",
    "sign_in",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    /// Same section and field as the gateway's, so one TOLLGATE_AUTH__KEY_PEPPER serves both.
    #[serde(default)]
    pub auth: KeySettings,
    #[serde(default)]
    pub budgets: BudgetSettings,
    #[serde(default)]
    pub grpc: GrpcSettings,
    #[serde(default)]
    pub signing: SigningSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub sign_in: SignInSettings,
}

/// Browser sign-in with OpenID Connect (authorization code + PKCE), sessions and the
/// platform's own identity provider. Without `public_url` and `issuer` nobody signs in
/// (bearer tokens still work).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignInSettings {
    /// Where people reach this control plane, e.g. `https://tollgate.example.com`; the
    /// redirect URI registered at every IdP is `<public_url>/auth/callback`. Must be
    /// https, except `http://localhost` / `http://127.0.0.1` for local use.
    pub public_url: Option<String>,
    /// The platform IdP's issuer URL (its discovery document is
    /// `<issuer>/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    /// Tollgate's client id at the platform IdP.
    pub client_id: String,
    /// Tollgate's client secret at the platform IdP; prefer TOLLGATE_SIGN_IN__CLIENT_SECRET.
    pub client_secret: Option<secrecy::SecretString>,
    /// Scopes asked for besides `openid` (every connection).
    pub scopes: Vec<String>,
    /// The platform ID token claim holding the person's groups (a string or a list).
    pub groups_claim: String,
    /// Platform IdP groups whose members are platform admins (only the platform IdP can
    /// make one).
    pub admin_groups: Vec<String>,
    /// 32 bytes, base64: seals orgs' IdP client secrets in Postgres (AES-256-GCM). The
    /// same on every replica; prefer TOLLGATE_SIGN_IN__MASTER_KEY. Needed for org
    /// connections.
    pub master_key: Option<secrecy::SecretString>,
    /// A session unused this long ends (seconds; default 8 h).
    pub session_idle_s: i64,
    /// A session ends this long after sign-in, used or not (seconds; default 7 days).
    pub session_absolute_s: i64,
    /// Roles an IdP granted lapse unless a sign-in renews them within this age
    /// (seconds; default 30 days). Roles granted by hand never lapse.
    pub membership_max_age_s: i64,
    /// Sign-in attempts allowed per client IP per minute.
    pub attempts_per_ip_per_minute: u32,
    /// Sign-in attempts allowed per IdP connection per minute.
    pub attempts_per_connection_per_minute: u32,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            issuer: None,
            client_id: String::new(),
            client_secret: None,
            scopes: vec!["email".into(), "profile".into()],
            groups_claim: "groups".into(),
            admin_groups: Vec::new(),
            master_key: None,
            session_idle_s: 8 * 3600,
            session_absolute_s: 7 * 24 * 3600,
            membership_max_age_s: 30 * 24 * 3600,
            attempts_per_ip_per_minute: 30,
            attempts_per_connection_per_minute: 600,
        }
    }
}

impl std::fmt::Debug for SignInSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<secrecy::SecretString>| s.as_ref().map(|_| "[redacted]");
        f.debug_struct("SignInSettings")
            .field("public_url", &self.public_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("scopes", &self.scopes)
            .field("groups_claim", &self.groups_claim)
            .field("admin_groups", &self.admin_groups)
            .field("master_key", &redacted(&self.master_key))
            .field("session_idle_s", &self.session_idle_s)
            .field("session_absolute_s", &self.session_absolute_s)
            .field("membership_max_age_s", &self.membership_max_age_s)
            .field(
                "attempts_per_ip_per_minute",
                &self.attempts_per_ip_per_minute,
            )
            .field(
                "attempts_per_connection_per_minute",
                &self.attempts_per_connection_per_minute,
            )
            .finish()
    }
}

impl SignInSettings {
    /// `public_url` is acceptable: https, or plain http on localhost for local use.
    pub fn public_url_ok(url: &str) -> bool {
        let Some(rest) = url.strip_prefix("http://") else {
            return url.starts_with("https://") && url.len() > "https://".len();
        };
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        host == "localhost" || host == "127.0.0.1"
    }
}

/// Usage ingest, its retention, and budget alert webhooks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// How long usage events are kept (days, at least 1): older day partitions are
    /// dropped. The hourly and daily rollups are kept forever (lifetime budgets sum them).
    pub retention_days: u32,
    /// Webhook signing secrets are derived from it (HMAC-SHA256(key, webhook id)), so
    /// none is stored. At least 16 bytes; prefer TOLLGATE_TELEMETRY__WEBHOOK_KEY. Needed
    /// to create webhooks and to deliver alerts; the same on every replica.
    pub webhook_key: Option<secrecy::SecretString>,
    /// Attempts per alert and webhook before the delivery is given up (1–20).
    pub webhook_attempts: u32,
    /// Wait before the second attempt (ms); doubled for each further one.
    pub webhook_backoff_ms: u64,
    /// Time one attempt may take, connect to last byte (ms).
    pub webhook_timeout_ms: u64,
    /// Webhook hosts that may be internal (matched exactly against the URL's host, e.g.
    /// `["127.0.0.1", "alerts.internal"]`). Every other destination must resolve to
    /// public addresses only, checked at creation and at every delivery.
    pub webhook_allow_hosts: Vec<String>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            retention_days: 90,
            webhook_key: None,
            webhook_attempts: 5,
            webhook_backoff_ms: 1_000,
            webhook_timeout_ms: 10_000,
            webhook_allow_hosts: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TelemetrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetrySettings")
            .field("retention_days", &self.retention_days)
            .field(
                "webhook_key",
                &self.webhook_key.as_ref().map(|_| "[redacted]"),
            )
            .field("webhook_attempts", &self.webhook_attempts)
            .field("webhook_backoff_ms", &self.webhook_backoff_ms)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_allow_hosts", &self.webhook_allow_hosts)
            .finish()
    }
}

/// The config stream gateways connect to (`ConfigService.Stream`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSettings {
    /// Its own port, apart from the admin API. Port 0 picks one (printed on stdout).
    pub listen: SocketAddr,
    /// PEM certificate chain and private key: TLS. Both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: gateways must also present a client certificate it signed (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Without TLS the stream is refused on anything but a loopback address unless this
    /// is set (e.g. behind a TLS-terminating mesh).
    pub allow_plaintext: bool,
    /// This replica's name in the fleet view (default: host name and process id).
    pub replica: Option<String>,
    /// Lifetime of the credential a gateway gets for its enrollment token (seconds); the
    /// gateway renews it halfway through while it runs.
    pub credential_ttl_s: u64,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8401)),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            allow_plaintext: false,
            replica: None,
            credential_ttl_s: 3600,
        }
    }
}

/// The Ed25519 key config snapshots are signed with. Without a key file, no config is
/// pushed (the admin API still works).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSettings {
    /// PKCS#8 PEM private key (`tollgate-control signing-key new` or
    /// `openssl genpkey -algorithm ed25519`).
    pub key_file: Option<PathBuf>,
    /// The id gateways trust this key under.
    pub key_id: String,
    /// How long to let a burst of writes land before building one new version.
    pub debounce_ms: u64,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: "default".into(),
            debounce_ms: 20,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    /// What a budget above its enclosing one (team over org, key over team) gets:
    /// `error` (422, the default) or `warn` (created, with a `Warning` header).
    pub hierarchy: HierarchyPolicy,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HierarchyPolicy {
    #[default]
    Error,
    Warn,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// The secret mixed into every virtual key's HMAC; every gateway must have the same.
    /// At least 16 bytes. Prefer TOLLGATE_AUTH__KEY_PEPPER. Needed to mint keys.
    pub key_pepper: Option<secrecy::SecretString>,
}

impl std::fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySettings")
            .field(
                "key_pepper",
                &self.key_pepper.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address of the admin API. Port 0 picks a free port (printed on stdout).
    pub listen: SocketAddr,
    /// Largest request body accepted (bytes); bigger ones get 413.
    pub max_body_bytes: usize,
    /// `text` or `json` (one object per line) on stderr.
    pub log_format: tollgate_settings::LogFormat,
    /// An HTTP/1 request head must be complete this long after the server started
    /// waiting for it (ms); a slower client (slowloris) is disconnected.
    pub header_read_timeout_ms: u64,
    /// A request body must be complete this long after its head (ms).
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (ms).
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl ServerSettings {
    /// What each client connection of the admin API is allowed.
    pub fn connection_limits(&self) -> tollgate_serve::Limits {
        tollgate_serve::Limits {
            header_read_timeout: std::time::Duration::from_millis(
                self.header_read_timeout_ms.max(1),
            ),
            body_read_timeout: std::time::Duration::from_millis(self.body_read_timeout_ms.max(1)),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8400)),
            max_body_bytes: 1024 * 1024,
            log_format: tollgate_settings::LogFormat::Text,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 75_000,
            max_connections: 1_024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user@host:port/database`.
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/tollgate".into(),
            max_connections: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Sources(#[from] tollgate_settings::SettingsError),
    #[error("auth.key_pepper: must be at least 16 bytes")]
    ShortPepper,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
}

impl Settings {
    pub fn from_sources(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let settings: Self =
            tollgate_settings::deserialize(tollgate_settings::layered(toml_text, env, SECTIONS)?)?;
        if settings
            .auth
            .key_pepper
            .as_ref()
            .is_some_and(|p| secrecy::ExposeSecret::expose_secret(p).len() < 16)
        {
            return Err(ConfigError::ShortPepper);
        }
        let telemetry = &settings.telemetry;
        let invalid = |field, message| Err(ConfigError::Invalid { field, message });
        if settings.grpc.credential_ttl_s == 0 {
            return invalid("grpc.credential_ttl_s", "must be at least 1");
        }
        if telemetry.retention_days == 0 {
            return invalid("telemetry.retention_days", "must be at least 1");
        }
        if telemetry
            .webhook_key
            .as_ref()
            .is_some_and(|k| secrecy::ExposeSecret::expose_secret(k).len() < 16)
        {
            return invalid("telemetry.webhook_key", "must be at least 16 bytes");
        }
        if !(1..=20).contains(&telemetry.webhook_attempts) {
            return invalid("telemetry.webhook_attempts", "must be between 1 and 20");
        }
        if telemetry.webhook_timeout_ms == 0 {
            return invalid("telemetry.webhook_timeout_ms", "must be at least 1");
        }
        let sign_in = &settings.sign_in;
        if sign_in
            .public_url
            .as_deref()
            .is_some_and(|u| !SignInSettings::public_url_ok(u))
        {
            return invalid(
                "sign_in.public_url",
                "must be https (plain http only on localhost or 127.0.0.1)",
            );
        }
        if sign_in.issuer.is_some()
            && (sign_in.client_id.is_empty() || sign_in.public_url.is_none())
        {
            return invalid(
                "sign_in.issuer",
                "needs sign_in.client_id and sign_in.public_url as well",
            );
        }
        if sign_in.session_idle_s < 1 || sign_in.session_absolute_s < 1 {
            return invalid(
                "sign_in.session_idle_s",
                "session timeouts must be at least 1 s",
            );
        }
        if sign_in.membership_max_age_s < 1 {
            return invalid("sign_in.membership_max_age_s", "must be at least 1");
        }
        if sign_in.attempts_per_ip_per_minute == 0
            || sign_in.attempts_per_connection_per_minute == 0
        {
            return invalid(
                "sign_in.attempts_per_ip_per_minute",
                "sign-in limits must be at least 1",
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults() {
        let s = Settings::from_sources(
            None,
            [(
                "TOLLGATE_DATABASE__URL".to_owned(),
                "postgres://x/y".to_owned(),
            )],
        )
        .unwrap();
        assert_eq!(s.database.url, "postgres://x/y");
        assert_eq!(s.server.listen.port(), 8400);
        assert_eq!(s.telemetry.retention_days, 90);
    }

    #[test]
    fn sign_in_needs_a_safe_public_url() {
        for ok in [
            "https://tg.example.com",
            "http://localhost:8400",
            "http://127.0.0.1",
        ] {
            assert!(SignInSettings::public_url_ok(ok), "{ok}");
        }
        for bad in [
            "http://tg.example.com",
            "http://localhost.evil.com",
            "ftp://x",
            "https://",
        ] {
            assert!(!SignInSettings::public_url_ok(bad), "{bad}");
        }
        let env = |k: &str, v: &str| [(k.to_owned(), v.to_owned())];
        assert!(
            Settings::from_sources(
                None,
                env("TOLLGATE_SIGN_IN__PUBLIC_URL", "http://tg.example.com")
            )
            .is_err()
        );
        let s = Settings::from_sources(
            Some("[sign_in]\nissuer = \"https://idp.example.com\"\nclient_id = \"tg\"\npublic_url = \"https://tg.example.com\"\nclient_secret = \"very-secret\""),
            [],
        )
        .unwrap();
        assert_eq!(s.sign_in.session_idle_s, 8 * 3600);
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn telemetry_settings_are_checked() {
        let env = |k: &str, v: &str| [(k.to_owned(), v.to_owned())];
        assert!(
            Settings::from_sources(None, env("TOLLGATE_TELEMETRY__WEBHOOK_KEY", "short")).is_err()
        );
        assert!(
            Settings::from_sources(None, env("TOLLGATE_TELEMETRY__RETENTION_DAYS", "0")).is_err()
        );
        let s = Settings::from_sources(
            Some("[telemetry]\nretention_days = 7\nwebhook_key = \"0123456789abcdef\""),
            [],
        )
        .unwrap();
        assert_eq!(s.telemetry.retention_days, 7);
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        let s = Settings::from_sources(
            None,
            env(
                "TOLLGATE_TELEMETRY__WEBHOOK_ALLOW_HOSTS",
                r#"["127.0.0.1", "hooks.internal"]"#,
            ),
        )
        .unwrap();
        assert_eq!(
            s.telemetry.webhook_allow_hosts,
            ["127.0.0.1", "hooks.internal"]
        );
    }
}
