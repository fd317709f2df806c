//! `tollgate-control`: the admin API server and the operator commands built on the same
//! store and audit log.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tollgate_control_plane::MIGRATOR;
use tollgate_control_plane::api::deployments::NewDeployment;
use tollgate_control_plane::api::error::ApiError;
use tollgate_control_plane::api::models::NewModel;
use tollgate_control_plane::api::providers::NewProvider;
use tollgate_control_plane::api::regions::NewRegion;
use tollgate_control_plane::api::{self, AppState, health};
use tollgate_control_plane::config::Settings;
use tollgate_control_plane::push;
use tollgate_control_plane::store::{
    self, audit, fleet, keys, models, orgs, providers, teams, users,
};
use tollgate_control_plane::telemetry::Telemetry;

const CONFIG_HELP: &str = "\
Configuration: a TOML file (--config) whose values TOLLGATE_<SECTION>__<FIELD> environment
variables override, e.g. TOLLGATE_DATABASE__URL=postgres://tollgate@db/tollgate.
  [server]    listen = \"127.0.0.1:8400\"   (port 0 picks one; printed on stdout)
              max_body_bytes = 1048576   log_format = \"text\" | \"json\" (stderr, one object per line)
              header_read_timeout_ms = 10000   body_read_timeout_ms = 30000   idle_timeout_ms = 75000
              max_connections = 1024   (slow clients are cut off; more connections wait)
  [database]  url = \"postgres://postgres@127.0.0.1:5432/tollgate\"   max_connections = 10
  [auth]      key_pepper = \"...\"   >= 16 bytes, the same on every gateway; prefer
              TOLLGATE_AUTH__KEY_PEPPER (the gateway reads the same variable)
  [budgets]   hierarchy = \"error\" | \"warn\"   a team budget above its org's (or a key's
              above its team's): refused (422) or created with a Warning header
  [signing]   key_file = \"signing.pem\"   Ed25519 PKCS#8 PEM (`signing-key new`); without it
              no config is pushed.   key_id = \"default\"   debounce_ms = 20
  [grpc]      listen = \"127.0.0.1:8401\"   config stream and usage ingest (port 0 picks one)
              tls_cert, tls_key (PEM; TLS)   client_ca (PEM; gateways need a client cert)
              allow_plaintext = false   (plaintext is refused on non-loopback addresses)
              replica = \"<host>:<pid>\"   this replica's name in GET /api/v1/gateways
              credential_ttl_s = 3600   lifetime of a gateway's credential (renewed halfway)
  [telemetry] retention_days = 90   days of usage events kept (rollups are kept forever)
              webhook_key = \"...\"   >= 16 bytes; webhook secrets derive from it, so it
              must stay the same on every replica; prefer TOLLGATE_TELEMETRY__WEBHOOK_KEY
              webhook_attempts = 5   webhook_backoff_ms = 1000 (doubled per retry)
              webhook_timeout_ms = 10000
              webhook_allow_hosts = []   hosts webhooks may reach although they are
              internal (loopback, private, link-local, metadata ranges are refused otherwise)
  [sign_in]   browser sign-in with OpenID Connect (README \"Signing in\")
              public_url = \"https://tollgate.example.com\"   where people reach this server;
              register <public_url>/auth/callback at every IdP. https only, except
              http://localhost or http://127.0.0.1 (without a port: the listen port)
              issuer = \"https://idp.example.com\"   the platform IdP (discovery document at
              <issuer>/.well-known/openid-configuration)   client_id = \"tollgate\"
              client_secret = \"...\"   prefer TOLLGATE_SIGN_IN__CLIENT_SECRET
              scopes = [\"email\", \"profile\"]   asked for besides openid (add \"groups\" where
              the IdP needs a scope for the groups claim)
              groups_claim = \"groups\"   admin_groups = []   platform IdP groups whose
              members are platform admins (no org IdP can make one)
              master_key = \"<32 bytes, base64>\"   seals orgs' IdP client secrets
              (AES-256-GCM); the same on every replica; prefer TOLLGATE_SIGN_IN__MASTER_KEY
              session_idle_s = 28800   session_absolute_s = 604800   (8 h idle, 7 days at most)
              membership_max_age_s = 2592000   roles an IdP granted lapse unless a sign-in
              renews them within this age (30 days); roles granted by hand never lapse
              attempts_per_ip_per_minute = 30   attempts_per_connection_per_minute = 600";

/// Tollgate control plane: the admin API over the platform catalog (regions, providers,
/// models, deployments) and each org's teams, projects, members, keys, budgets and rate
/// limits, with the audit log. Operator commands write through the same checks and audit
/// log as the API (actor `cli`).
#[derive(Debug, Parser)]
#[command(name = "tollgate-control", version, after_help = CONFIG_HELP)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short, env = "TOLLGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the admin API (runs pending migrations first).
    Serve {
        /// Do not run migrations (when a deploy step runs `migrate`).
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create the first platform admin and print a one-time admin API token.
    Bootstrap {
        #[arg(long)]
        email: String,
        /// Also when a platform admin exists already (e.g. the token was lost).
        #[arg(long)]
        force: bool,
    },
    /// Admin API tokens: mint (printed once, expires), list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Memberships (roles in orgs and teams).
    #[command(subcommand)]
    Members(MembersCommand),
    /// Operator helpers for orgs.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Operator helpers for teams.
    #[command(subcommand)]
    Teams(TeamsCommand),
    /// Operator helpers for virtual keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The Ed25519 key config snapshots are signed with.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Tokens a region's gateways connect to the config stream with.
    #[command(subcommand)]
    EnrollmentTokens(EnrollmentTokensCommand),
    /// Operator helpers for regions (where gateway fleets run).
    #[command(subcommand)]
    Regions(RegionsCommand),
    /// Operator helpers for provider accounts.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// Operator helpers for the model catalog.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Operator helpers for deployments (a model through a provider in a region).
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// Probe a running control plane (a container's HEALTHCHECK: the image has no shell):
    /// exit 0 when its `/readyz` answers 2xx, 1 otherwise. Needs no database.
    Healthcheck {
        /// What to probe; default `http://<server.listen>/readyz` from the settings.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// Write a new private key (PKCS#8 PEM, mode 0600) and print the public key gateways
    /// must trust: `[control] trusted_keys = { <key id> = "<public key>" }`.
    New {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "default")]
        key_id: String,
    },
    /// Print the public key of an existing private key file.
    Public {
        #[arg(long)]
        key_file: PathBuf,
        #[arg(long, default_value = "default")]
        key_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum EnrollmentTokensCommand {
    /// Mint a token for a region's gateways (printed once).
    Create {
        #[arg(long)]
        region: String,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RegionsCommand {
    /// Add a region; prints its id.
    Create {
        /// Slug that gateways name in `server.region`, e.g. eu-west.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProvidersCommand {
    /// Add a provider account; prints its id.
    Create {
        /// openai, azure, anthropic, openai_compatible, gemini, vertex or bedrock.
        #[arg(long)]
        kind: String,
        /// openai_compatible only: vllm, ollama, groq, mistral, deepseek, xai or together.
        #[arg(long)]
        preset: Option<String>,
        /// Unique name, used by `deployments create --provider`.
        #[arg(long)]
        name: String,
        /// The provider's API root, e.g. https://api.openai.com/v1.
        #[arg(long)]
        base_url: String,
        /// env:NAME, the variable holding the secret on every gateway (Tollgate never
        /// stores provider secrets). Omit for a provider that needs none.
        #[arg(long)]
        credential_ref: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Add a model to the catalog; prints its id.
    Create {
        /// What callers send as `model`.
        #[arg(long)]
        name: String,
        /// Another name for it (repeat for more).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// max_tokens assumed when a call does not say (tokens).
        #[arg(long, default_value_t = 4096)]
        max_output_tokens: i32,
        /// o200k_base or cl100k_base.
        #[arg(long, default_value = "o200k_base")]
        tokenizer: String,
        /// Shown in the gateway's GET /v1/models.
        #[arg(long, default_value = "")]
        owned_by: String,
        /// Prompt tokens the model accepts (unset = unknown, not checked).
        #[arg(long)]
        context_window: Option<i32>,
        /// The largest max_tokens the model accepts (unset = unknown, not checked).
        #[arg(long)]
        output_limit: Option<i32>,
        /// An endpoint it serves: chat, completions or embeddings (repeat; default all).
        #[arg(long = "mode")]
        modes: Vec<String>,
        /// The largest n a call may ask for (1 refuses n > 1).
        #[arg(long, default_value_t = 128)]
        max_n: i32,
    },
}

#[derive(Debug, Subcommand)]
enum DeploymentsCommand {
    /// Deploy a model through a provider account in a region; prints its id.
    Create {
        /// The model's name, an alias or its id.
        #[arg(long)]
        model: String,
        /// The region's id.
        #[arg(long)]
        region: String,
        /// The provider's name or id.
        #[arg(long)]
        provider: String,
        /// The model name the provider knows (Azure: the deployment name).
        #[arg(long)]
        upstream_model: String,
        /// Azure's api-version (required for azure providers).
        #[arg(long, default_value = "")]
        api_version: String,
        /// Micro-USD per 1M input tokens (default: the gateway's price table).
        #[arg(long)]
        input_price: Option<i64>,
        /// Micro-USD per 1M output tokens.
        #[arg(long)]
        output_price: Option<i64>,
        /// Micro-USD per 1M cached input tokens.
        #[arg(long)]
        cached_input_price: Option<i64>,
        /// Micro-USD per 1M tokens written to the provider's cache.
        #[arg(long)]
        cache_write_price: Option<i64>,
        /// Share of the model's traffic in the region.
        #[arg(long, default_value_t = 1)]
        weight: i32,
        /// Connect timeout (ms).
        #[arg(long, default_value_t = 5_000)]
        connect_ms: i32,
        /// Time to the answer's first byte (ms).
        #[arg(long, default_value_t = 120_000)]
        first_byte_ms: i32,
        /// The whole call (ms).
        #[arg(long, default_value_t = 600_000)]
        total_ms: i32,
        /// Gateways refuse calls to it when their config is older than this (ms); 0 = never.
        #[arg(long, default_value_t = 0)]
        max_staleness_ms: i64,
        /// Bedrock: the AWS region requests are signed for (e.g. us-east-1).
        #[arg(long, default_value = "")]
        cloud_region: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a team key; prints the full key once (needs TOLLGATE_AUTH__KEY_PEPPER).
    Create {
        #[arg(long)]
        org: uuid::Uuid,
        #[arg(long)]
        team: uuid::Uuid,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Mint an admin API token for a user; prints it once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token expires (1–3650).
        #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u16).range(1..=3650))]
        expires_days: u16,
    },
    /// List tokens (all, or one user's): id, prefix, state, expiry; never a secret.
    List {
        #[arg(long)]
        email: Option<String>,
    },
    /// Revoke a token by id; it is refused from the next request on.
    Revoke {
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Remove a membership (a role in an org or team) by id.
    Remove {
        #[arg(long)]
        org: uuid::Uuid,
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TeamsCommand {
    Create {
        #[arg(long)]
        org: uuid::Uuid,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let text = match &cli.config {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let settings = Settings::from_sources(text.as_deref(), std::env::vars())?;
    init_logs(settings.server.log_format);
    if let Command::SigningKey(command) = &cli.command {
        return signing_key(command);
    }
    if let Command::Healthcheck { url, timeout_ms } = &cli.command {
        let url = url
            .clone()
            .unwrap_or_else(|| tollgate_serve::probe::local_url(settings.server.listen, "/readyz"));
        return match tollgate_serve::probe::probe(
            &url,
            std::time::Duration::from_millis(*timeout_ms),
        ) {
            Ok(body) => {
                report(&body);
                Ok(())
            }
            Err(e) => {
                eprintln!("unhealthy: {e}");
                std::process::exit(1);
            }
        };
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli.command, settings))
}

/// Logs to stderr as text or JSON lines (`[server] log_format`), filtered by `RUST_LOG`
/// (default `info`).
fn init_logs(format: tollgate_settings::LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        tollgate_settings::LogFormat::Text => builder.init(),
        tollgate_settings::LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn signing_key(command: &SigningKeyCommand) -> anyhow::Result<()> {
    let signer = match command {
        SigningKeyCommand::New { out, key_id } => {
            let signer = tollgate_signing::SnapshotSigner::generate(key_id)?;
            write_private(out, &signer.to_pem())
                .with_context(|| format!("writing {}", out.display()))?;
            signer
        }
        SigningKeyCommand::Public { key_file, key_id } => {
            let pem = std::fs::read_to_string(key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            tollgate_signing::SnapshotSigner::from_pem(key_id, &pem)?
        }
    };
    report(&format!(
        "{} = \"{}\"",
        signer.key_id(),
        signer.public_key_base64()
    ));
    Ok(())
}

/// Creates `path` (never overwrites) readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// What `[sign_in]` gives the API: sign-in itself (if configured), the session policy,
/// and the sealer of orgs' IdP client secrets (if a master key is set).
type SignInSetup = (
    Option<std::sync::Arc<tollgate_control_plane::auth::sign_in::SignIn>>,
    api::SessionPolicy,
    Option<std::sync::Arc<tollgate_control_plane::auth::sealing::Sealer>>,
);

/// Browser sign-in from `[sign_in]`: the platform connection, the sealer for orgs'
/// connections, throttles and the session policy. A loopback public URL without a port
/// takes the port actually listened on (so `listen = "127.0.0.1:0"` works locally).
fn sign_in_setup(
    s: &tollgate_control_plane::config::SignInSettings,
    listening: std::net::SocketAddr,
) -> anyhow::Result<SignInSetup> {
    use tollgate_control_plane::auth::{http_client, oidc, sealing, session, sign_in};
    let public_url = s.public_url.as_deref().map(|url| {
        let url = url.trim_end_matches('/');
        let host_only = url
            .strip_prefix("http://")
            .is_some_and(|rest| rest == "localhost" || rest == "127.0.0.1");
        if host_only {
            format!("{url}:{}", listening.port())
        } else {
            url.to_owned()
        }
    });
    let policy = api::SessionPolicy {
        cookies: session::Cookies {
            secure: !public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://")),
        },
        idle_s: s.session_idle_s,
        absolute_s: s.session_absolute_s,
        membership_max_age_s: s.membership_max_age_s,
        public_url: public_url.clone(),
    };
    let sealer = s
        .master_key
        .as_ref()
        .map(sealing::Sealer::from_base64)
        .transpose()
        .context("sign_in.master_key")?
        .map(std::sync::Arc::new);
    let Some(public_url) = public_url else {
        return Ok((None, policy, sealer));
    };
    let platform = match (&s.issuer, &s.client_secret) {
        (Some(issuer), Some(secret)) => Some(oidc::Connection {
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id: s.client_id.clone(),
            client_secret: secret.clone(),
            groups_claim: s.groups_claim.clone(),
            org_id: None,
        }),
        (Some(_), None) => anyhow::bail!("sign_in.issuer is set but sign_in.client_secret is not"),
        _ => None,
    };
    let http = http_client::BackChannel::new(std::time::Duration::from_secs(10))
        .context("building the sign-in HTTP client")?;
    let mut scopes = s.scopes.clone();
    scopes.retain(|scope| scope != "openid");
    let oidc = oidc::Oidc::new(http, &format!("{public_url}/auth/callback"), scopes)?;
    Ok((
        Some(std::sync::Arc::new(sign_in::SignIn {
            oidc,
            platform,
            sealer: sealer.clone(),
            admin_groups: s.admin_groups.clone(),
            per_ip: sign_in::Throttle::new(s.attempts_per_ip_per_minute),
            per_connection: sign_in::Throttle::new(s.attempts_per_connection_per_minute),
        })),
        policy,
        sealer,
    ))
}

/// The actor of operator commands in the audit log.
fn cli_actor() -> audit::Actor {
    audit::Actor {
        user_id: None,
        name: "cli".into(),
        request_id: String::new(),
        source_ip: "local".into(),
    }
}

#[expect(
    clippy::print_stdout,
    reason = "tokens, ids and the listen address are this binary's output"
)]
fn report(text: &str) {
    println!("{text}");
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(&settings.database.url).context("database.url")?;
    let pool = PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .connect_with(options)
        .await
        .context("connecting to Postgres")?;
    match command {
        Command::Migrate => {
            MIGRATOR.run(&pool).await?;
            report("migrations applied");
        }
        Command::Serve { no_migrate } => {
            if !no_migrate {
                MIGRATOR.run(&pool).await?;
            }
            let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .context("installing the metrics recorder")?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let listener = tokio::net::TcpListener::bind(settings.server.listen).await?;
            report(&format!(
                "tollgate-control listening on http://{}",
                listener.local_addr()?
            ));
            let telemetry =
                Telemetry::start(pool.clone(), &settings.telemetry, shutdown.clone()).await;
            let mut streams = None;
            match push::load_signer(&settings.signing)? {
                Some(signer) => {
                    let running = push::start(
                        pool.clone(),
                        signer,
                        &settings.grpc,
                        std::time::Duration::from_millis(settings.signing.debounce_ms),
                        &telemetry,
                        shutdown.clone(),
                    )
                    .await?;
                    report(&format!(
                        "tollgate-control config stream on {}",
                        running.addr
                    ));
                    streams = Some(running.sessions);
                }
                None => tracing::warn!(
                    "signing.key_file is not set: no config is pushed to gateways and no usage is taken in"
                ),
            }
            let health_pool = pool.clone();
            let key_pepper = settings.auth.key_pepper.clone();
            if key_pepper.is_none() {
                tracing::warn!(
                    "auth.key_pepper is not set (TOLLGATE_AUTH__KEY_PEPPER): creating keys will fail"
                );
            }
            let local_addr = listener.local_addr()?;
            let (sign_in, sessions, sealer) = sign_in_setup(&settings.sign_in, local_addr)?;
            let app = api::router(
                AppState {
                    sign_in,
                    sessions,
                    sealer,
                    pool,
                    key_pepper,
                    hierarchy: settings.budgets.hierarchy,
                    webhook_key: settings.telemetry.webhook_key.clone(),
                    webhook_destinations:
                        tollgate_control_plane::telemetry::destination::Destinations::new(
                            &settings.telemetry.webhook_allow_hosts,
                        ),
                },
                settings.server.max_body_bytes,
            )
            .route(
                "/metrics",
                axum::routing::get(move || std::future::ready(metrics.render())),
            )
            .merge(health::router(health_pool, shutdown.clone()));
            // At the signal the config streams end at once (gateways move to another
            // replica) and /readyz turns 503; HTTP calls in flight still finish.
            let stopping = shutdown.clone();
            tollgate_serve::serve(
                listener,
                app,
                settings.server.connection_limits(),
                async move {
                    shutdown_signal().await;
                    tracing::info!("shutting down: ending config streams, finishing API calls");
                    stopping.cancel();
                },
            )
            .await;
            shutdown.cancel();
            if let Some(streams) = streams {
                streams.close();
                if tokio::time::timeout(std::time::Duration::from_secs(10), streams.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("some config streams did not record their end before exit");
                }
            }
        }
        Command::Bootstrap { email, force } => {
            MIGRATOR.run(&pool).await?;
            if users::platform_admin_exists(&pool).await? && !force {
                anyhow::bail!(
                    "a platform admin exists already; pass --force to add another (and a new token)"
                );
            }
            let mut tx = pool.begin().await?;
            let user = users::upsert(&mut tx, &email, true).await?;
            let expires_at = time::OffsetDateTime::now_utc() + users::DEFAULT_TOKEN_LIFETIME;
            let (_, token) =
                users::create_token(&mut tx, user.id, "bootstrap", expires_at, false).await?;
            let after = serde_json::json!({"email": user.email, "is_platform_admin": true});
            audit::record(
                &mut tx,
                &cli_actor(),
                None,
                "create",
                "platform_admin",
                &user.id.to_string(),
                None,
                Some(after),
            )
            .await?;
            tx.commit().await?;
            report(&format!(
                "Admin API token for {} (shown once):\n\n  {token}\n",
                user.email
            ));
        }
        Command::Tokens(TokensCommand::Create {
            email,
            name,
            expires_days,
        }) => {
            let user = users::find_by_email(&pool, &email)
                .await
                .with_context(|| format!("no user {email}"))?;
            let expires_at =
                time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(expires_days));
            let mut tx = pool.begin().await?;
            let (row, token) =
                users::create_token(&mut tx, user.id, &name, expires_at, false).await?;
            audit::record(
                &mut tx,
                &cli_actor(),
                None,
                "create",
                "admin_token",
                &row.id.to_string(),
                None,
                Some(serde_json::to_value(&row)?),
            )
            .await?;
            tx.commit().await?;
            report(&token);
        }
        Command::Tokens(TokensCommand::List { email }) => {
            let whose = match email {
                Some(email) => Some(
                    users::find_by_email(&pool, &email)
                        .await
                        .with_context(|| format!("no user {email}"))?
                        .id,
                ),
                None => None,
            };
            let now = time::OffsetDateTime::now_utc();
            let mut lines = Vec::new();
            for t in users::list_tokens(&pool, whose).await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                lines.push(format!(
                    "{}  {}…  {state}  expires {}  {}  {}",
                    t.id, t.prefix, t.expires_at, t.email, t.name
                ));
            }
            report(&lines.join("\n"));
        }
        Command::Tokens(TokensCommand::Revoke { id }) => {
            let mut tx = pool.begin().await?;
            let before = users::get_token(&mut tx, id).await.map_err(describe)?;
            let after = users::revoke_token(&mut tx, id).await.map_err(describe)?;
            audit::record(
                &mut tx,
                &cli_actor(),
                None,
                "update",
                "admin_token",
                &id.to_string(),
                Some(serde_json::to_value(&before)?),
                Some(serde_json::to_value(&after)?),
            )
            .await?;
            tx.commit().await?;
            report(&format!("revoked {id}"));
        }
        Command::Members(MembersCommand::Remove { org, id }) => {
            let mut tx = pool.begin().await?;
            let before = users::remove_membership(&mut tx, org, id)
                .await
                .map_err(describe)?;
            audit::record(
                &mut tx,
                &cli_actor(),
                Some(org),
                "delete",
                "membership",
                &id.to_string(),
                Some(serde_json::to_value(&before)?),
                None,
            )
            .await?;
            tx.commit().await?;
            report(&format!("removed membership {id}"));
        }
        Command::Orgs(OrgsCommand::Create { slug, name }) => {
            let mut tx = pool.begin().await?;
            let org = orgs::create(&mut tx, &slug, &name)
                .await
                .map_err(describe)?;
            let after = serde_json::to_value(&org)?;
            audit::record(
                &mut tx,
                &cli_actor(),
                Some(org.id),
                "create",
                "org",
                &org.id.to_string(),
                None,
                Some(after),
            )
            .await?;
            tx.commit().await?;
            report(&org.id.to_string());
        }
        Command::Keys(KeysCommand::Create { org, team, name }) => {
            let pepper = settings.auth.key_pepper.as_ref().context(
                "auth.key_pepper is not set (TOLLGATE_AUTH__KEY_PEPPER): keys cannot be minted",
            )?;
            let minted =
                tollgate_keys::generate(secrecy::ExposeSecret::expose_secret(pepper).as_bytes());
            let row = keys::NewKeyRow {
                org_id: org,
                team_id: team,
                project_id: None,
                owner_user_id: None,
                name: &name,
                allowed_models: None,
                expires_at: None,
                rotated_from: None,
            };
            let mut tx = pool.begin().await?;
            let key = keys::create(&mut tx, &row, &minted)
                .await
                .map_err(describe)?;
            let after = serde_json::to_value(&key)?;
            audit::record(
                &mut tx,
                &cli_actor(),
                Some(org),
                "create",
                "key",
                &key.id.to_string(),
                None,
                Some(after),
            )
            .await?;
            tx.commit().await?;
            report(&minted.full);
        }
        Command::SigningKey(_) | Command::Healthcheck { .. } => unreachable_signing(),
        Command::EnrollmentTokens(EnrollmentTokensCommand::Create { region, name }) => {
            let mut tx = pool.begin().await?;
            let (row, token) = fleet::create_token(&mut tx, &region, &name)
                .await
                .map_err(describe)
                .with_context(|| format!("region {region:?}"))?;
            audit::record(
                &mut tx,
                &cli_actor(),
                None,
                "create",
                "enrollment_token",
                &row.id.to_string(),
                None,
                Some(serde_json::to_value(&row)?),
            )
            .await?;
            tx.commit().await?;
            report(&token);
        }
        Command::Regions(RegionsCommand::Create { id, name }) => {
            let mut tx = pool.begin().await?;
            let new = NewRegion {
                id,
                name,
                public_url: None,
            };
            let region = api::regions::create(&mut tx, &cli_actor(), &new)
                .await
                .map_err(refused)?;
            tx.commit().await?;
            report(&region.id);
        }
        Command::Providers(ProvidersCommand::Create {
            kind,
            preset,
            name,
            base_url,
            credential_ref,
        }) => {
            let new = NewProvider {
                kind,
                preset,
                name,
                base_url,
                credential_ref,
            };
            let mut tx = pool.begin().await?;
            let provider = api::providers::create(&mut tx, &cli_actor(), &new)
                .await
                .map_err(refused)?;
            tx.commit().await?;
            report(&provider.id.to_string());
        }
        Command::Models(ModelsCommand::Create {
            name,
            aliases,
            max_output_tokens,
            tokenizer,
            owned_by,
            context_window,
            output_limit,
            modes,
            max_n,
        }) => {
            let modes = if modes.is_empty() {
                api::models::MODES.iter().map(|m| (*m).to_owned()).collect()
            } else {
                modes
            };
            let new = NewModel {
                name,
                aliases,
                default_max_output_tokens: max_output_tokens,
                tokenizer,
                owned_by,
                context_window,
                max_output_tokens: output_limit,
                modes,
                max_n,
            };
            let mut tx = pool.begin().await?;
            let model = api::models::create(&mut tx, &cli_actor(), &new)
                .await
                .map_err(refused)?;
            tx.commit().await?;
            report(&model.id.to_string());
        }
        Command::Deployments(DeploymentsCommand::Create {
            model,
            region,
            provider,
            upstream_model,
            api_version,
            input_price,
            output_price,
            cached_input_price,
            cache_write_price,
            weight,
            connect_ms,
            first_byte_ms,
            total_ms,
            max_staleness_ms,
            cloud_region,
        }) => {
            let model_id = match model.parse() {
                Ok(id) => id,
                Err(_) => {
                    models::resolve(&pool, &model)
                        .await
                        .with_context(|| format!("no model or alias {model}"))?
                        .id
                }
            };
            let provider_id = match provider.parse() {
                Ok(id) => id,
                Err(_) => {
                    providers::find_by_name(&pool, &provider)
                        .await
                        .with_context(|| format!("no provider named {provider}"))?
                        .id
                }
            };
            let new = NewDeployment {
                model_id,
                region_id: region,
                provider_id,
                upstream_model,
                api_version,
                input_price,
                output_price,
                cached_input_price,
                cache_write_price,
                price_tiers: Vec::new(),
                weight,
                connect_ms,
                first_byte_ms,
                total_ms,
                max_staleness_ms,
                cloud_region,
            };
            let mut tx = pool.begin().await?;
            let deployment = api::deployments::create(&mut tx, &cli_actor(), &new)
                .await
                .map_err(refused)?;
            tx.commit().await?;
            report(&deployment.id.to_string());
        }
        Command::Teams(TeamsCommand::Create { org, slug, name }) => {
            let mut tx = pool.begin().await?;
            let team = teams::create(&mut tx, org, &slug, &name, None)
                .await
                .map_err(describe)?;
            let after = serde_json::to_value(&team)?;
            audit::record(
                &mut tx,
                &cli_actor(),
                Some(org),
                "create",
                "team",
                &team.id.to_string(),
                None,
                Some(after),
            )
            .await?;
            tx.commit().await?;
            report(&team.id.to_string());
        }
    }
    Ok(())
}

/// `signing-key` and `healthcheck` need no database and run before it is opened.
fn unreachable_signing() {}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn describe(e: store::StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// What the API would have answered, as the command's error.
fn refused(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({}): {e}", e.title, e.status.as_u16())
}
