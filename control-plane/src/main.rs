//! `tollgate-control`: the admin API server and the operator commands built on the same
//! store and audit log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tollgate_control_plane::MIGRATOR;
use tollgate_control_plane::api::{self, AppState};
use tollgate_control_plane::config::Settings;
use tollgate_control_plane::push;
use tollgate_control_plane::store::{self, audit, fleet, keys, orgs, teams, users};

const CONFIG_HELP: &str = "\
Configuration: a TOML file (--config) whose values TOLLGATE_<SECTION>__<FIELD> environment
variables override, e.g. TOLLGATE_DATABASE__URL=postgres://tollgate@db/tollgate.
  [server]    listen = \"127.0.0.1:8400\"   (port 0 picks one; printed on stdout)
              max_body_bytes = 1048576
  [database]  url = \"postgres://postgres@127.0.0.1:5432/tollgate\"   max_connections = 10
  [auth]      key_pepper = \"...\"   >= 16 bytes, the same on every gateway; prefer
              TOLLGATE_AUTH__KEY_PEPPER (the gateway reads the same variable)
  [budgets]   hierarchy = \"error\" | \"warn\"   a team budget above its org's (or a key's
              above its team's): refused (422) or created with a Warning header";

/// Tollgate control plane: the admin API over orgs, teams, members and the audit log.
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
    /// Mint an admin API token for an existing user (printed once).
    #[command(subcommand)]
    Tokens(TokensCommand),
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
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "cli")]
        name: String,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let text = match &cli.config {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    let settings = Settings::from_sources(text.as_deref(), std::env::vars())?;
    if let Command::SigningKey(command) = &cli.command {
        return signing_key(command);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli.command, settings))
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
            match push::load_signer(&settings.signing)? {
                Some(signer) => {
                    let running = push::start(
                        pool.clone(),
                        signer,
                        &settings.grpc,
                        std::time::Duration::from_millis(settings.signing.debounce_ms),
                        shutdown.clone(),
                    )
                    .await?;
                    report(&format!(
                        "tollgate-control config stream on {}",
                        running.addr
                    ));
                }
                None => {
                    tracing::warn!("signing.key_file is not set: no config is pushed to gateways")
                }
            }
            let key_pepper = settings.auth.key_pepper.clone();
            if key_pepper.is_none() {
                tracing::warn!(
                    "auth.key_pepper is not set (TOLLGATE_AUTH__KEY_PEPPER): creating keys will fail"
                );
            }
            let app = api::router(
                AppState {
                    pool,
                    key_pepper,
                    hierarchy: settings.budgets.hierarchy,
                },
                settings.server.max_body_bytes,
            )
            .route(
                "/metrics",
                axum::routing::get(move || std::future::ready(metrics.render())),
            );
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await?;
            shutdown.cancel();
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
            let token = users::create_token(&mut tx, user.id, "bootstrap").await?;
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
        Command::Tokens(TokensCommand::Create { email, name }) => {
            let user = users::find_by_email(&pool, &email)
                .await
                .with_context(|| format!("no user {email}"))?;
            let mut tx = pool.begin().await?;
            let token = users::create_token(&mut tx, user.id, &name).await?;
            let after = serde_json::json!({"name": name});
            audit::record(
                &mut tx,
                &cli_actor(),
                None,
                "create",
                "admin_token",
                &user.id.to_string(),
                None,
                Some(after),
            )
            .await?;
            tx.commit().await?;
            report(&token);
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
                allowed_models: &[],
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
        Command::SigningKey(_) => unreachable_signing(),
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
        Command::Teams(TeamsCommand::Create { org, slug, name }) => {
            let mut tx = pool.begin().await?;
            let team = teams::create(&mut tx, org, &slug, &name, &[])
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

/// `signing-key` commands need no database and run before it is opened.
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
