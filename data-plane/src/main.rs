//! `tollgate-gateway`: serve the OpenAI-compatible API, check a config, or mint a key.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::PrometheusBuilder;
use opentelemetry_sdk::trace::SdkTracer;
use tollgate_data_plane::api;
use tollgate_data_plane::config::LedgerKind;
use tollgate_data_plane::config::LogFormat;
use tollgate_data_plane::config::{Loaded, Settings};
use tollgate_data_plane::gateway::Gateway;
use tollgate_data_plane::identity::{Credential, Enroller};
use tollgate_data_plane::ledger::redis::RedisLedger;
use tollgate_data_plane::ledger::{Ledgers, memory::MemoryLedger};
use tollgate_data_plane::money::Micros;
use tollgate_data_plane::otel;
use tollgate_data_plane::pipeline::emit::{Emitter, run_consumer};
use tollgate_data_plane::pipeline::reserve::all_budget_lines;
use tollgate_data_plane::prices::PriceTable;
use tollgate_data_plane::snapshot::file::parse_usd;
use tollgate_data_plane::snapshot::live::Live;
use tollgate_data_plane::snapshot::now_ms;
use tollgate_data_plane::snapshot::remote::{self, Checker, ConfigClient};
use tollgate_data_plane::snapshot::signed::read_last_known_good;
use tollgate_data_plane::snapshot::{Credentials, Snapshot};
use tollgate_data_plane::telemetry::Spooler;
use tollgate_data_plane::telemetry::ship::{ControlSpend, Shipper};
use tollgate_data_plane::telemetry::spool::Spool;
use tollgate_keys as keys;

const CONFIG_HELP: &str = "\
Configuration: a TOML file (--config) whose values TOLLGATE_<SECTION>__<FIELD> environment
variables override, e.g. TOLLGATE_SERVER__LISTEN=0.0.0.0:8080.

Settings (all optional except auth.key_pepper):
  [server]  listen = \"127.0.0.1:8080\"   address; port 0 picks one (printed on stdout)
            max_body_bytes = 8388608     larger bodies get 413
            region = \"local\"             gateway_id = \"gateway-local\"
            usage_queue_capacity = 65536 usage_log = \"usage.jsonl\" (one JSON line per call)
            log_format = \"text\" | \"json\"  stderr logs; json lines carry the call's request_id
            header_read_timeout_ms = 10000  body_read_timeout_ms = 60000 (then 408)
            idle_timeout_ms = 75000  max_connections = 4096 (more wait in the listen backlog)
            metrics_listen = \"127.0.0.1:9090\"  serve /metrics there instead of on listen
            drain_delay_ms = 5000   on SIGTERM /readyz says 503 this long before the listener closes
            shutdown_deadline_ms = 20000   then calls in flight get this long to finish
  [auth]    key_pepper = \"...\"           >= 16 bytes; the secret in every key's HMAC.
                                         Prefer TOLLGATE_AUTH__KEY_PEPPER.
  [routing] max_attempts = 3  backoff_base_ms = 25  backoff_max_ms = 2000
            cooldown_failures = 3  cooldown_ms = 15000
  [ledger]  kind = \"memory\" | \"redis\"    in this process, or shared by every gateway
            on_redis_error = \"fail_closed\" | \"fail_open\"   fail_open_cap_usd = \"0\"
            lease_margin_ms = 60000      a reservation's lease beyond the call's longest time
  [redis]   url = \"redis://127.0.0.1:6379/\"  key_prefix = \"tg:\"  timeout_ms = 500
            cluster = false  cluster_nodes = [\"redis://node1:6379/\", ...]
            maintenance_interval_ms = 1000  settle_queue_capacity = 100000

  [control] url = \"https://control:8401\"    take config from a control plane (else: standalone);
            or a list [\"https://cp-1:8401\", \"https://cp-2:8401\"] (env: comma-separated):
            the next replica is tried when a stream drops or a replica is unreachable
            enrollment_token = \"tge_...\"  the region's token; prefer TOLLGATE_CONTROL__ENROLLMENT_TOKEN
                      (exchanged at start for a short-lived credential of this gateway_id, kept in memory)
            trusted_keys = { key_id = \"<base64 Ed25519 public key>\", ... }   list two while rotating
            last_known_good = \"tollgate-last-known-good.snapshot\"   verified copy to start from
            ca_file, client_cert, client_key   TLS roots / mTLS identity (PEM)
            first_snapshot_timeout_ms = 10000  reconnect_max_ms = 5000
  [tracing] otlp_endpoint = \"http://collector:4317\"   export OpenTelemetry spans over OTLP/gRPC
                                         (absent: off; the client's traceparent goes upstream as is)
            service_name = \"tollgate-gateway\"  export_interval_ms = 5000  export_timeout_ms = 10000
  [credentials] what deployments' credential references may read (a snapshot naming
            anything else is refused): env_names = [\"OPENAI_API_KEY\", \"ANTHROPIC_API_KEY\", ...]
            env_prefixes = [\"TOLLGATE_PROVIDER_\", \"AWS_\"]   file_dir = \"/run/secrets/tollgate\"
            (file:PATH only inside it; absent: file: refused). TOLLGATE_* settings never.

Standalone mode: the same file holds the config a control plane would push:
  [[orgs]] id, name, limits = { rpm, tpm, max_concurrent }
  [[teams]] id, org, name, allowed_models = [..] (absent: every model; []: none), limits
  [[projects]] id, team, name, allowed_models, limits
  [[keys]] public_id, display_prefix, secret_hmac (hex), team, project, status, expires_at,
           allowed_models, limits, name          <- printed by `tollgate-gateway keys new`
  [[models]] name, aliases, default_max_output_tokens, tokenizer (o200k_base|cl100k_base),
           context_window, max_output_tokens (tokens; unset = unknown),
           modes = [chat|completions|embeddings] (default all), max_n (1 refuses n > 1)
  [[deployments]] id, model, provider (openai|azure|anthropic|openai_compatible), base_url,
           upstream_model, credential (\"env:NAME\" | \"file:PATH\"), api_version, weight,
           prices = { input, output, cached_input, cache_write } (micro-USD per 1M tokens),
           timeouts = { connect_ms, first_byte_ms, total_ms }
  [[budgets]] scope (\"org:ID\"|\"team:ID\"|\"project:ID\"|\"key:PUBLIC_ID\"), amount_usd = \"25.00\",
           period (day|week|month|total), alert_thresholds_pct, clamp (refuse|clamp)
See deploy/local/gateway.example.toml for a complete example.";

/// Tollgate gateway: one OpenAI-compatible endpoint with per-team keys, limits and budgets.
#[derive(Debug, Parser)]
#[command(name = "tollgate-gateway", version, after_help = CONFIG_HELP)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short, env = "TOLLGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Validate the config and exit: every problem is listed, exit code 1 if any.
    Check,
    /// Manage virtual keys of a standalone gateway.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Probe a running gateway (a container's HEALTHCHECK: the image has no shell): exit 0
    /// when its `/readyz` answers 2xx, 1 otherwise.
    Healthcheck {
        /// What to probe; default `http://<server.listen>/readyz` from the config.
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a key: the [[keys]] entry goes to stdout (so `>> gateway.toml` appends valid
    /// TOML), the key itself to stderr, once.
    New {
        /// Team the key belongs to.
        #[arg(long)]
        team: String,
        /// Project within the team, if any.
        #[arg(long)]
        project: Option<String>,
        /// A human-readable name.
        #[arg(long, default_value = "")]
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let loaded = load(cli.config.as_deref())?;
    let log_format = loaded.settings.server.log_format;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // The exporter's gRPC channel lives on this runtime.
            let traces = {
                let _on_runtime = runtime.enter();
                otel::start(&loaded.settings.tracing)?
            };
            let (exporting, tracer) = traces.unzip();
            init_logs(log_format, tracer);
            let served = runtime.block_on(serve(loaded));
            // Outside the runtime's workers, which stay up to carry the last export.
            if let Some(exporting) = exporting {
                exporting.shutdown();
            }
            served
        }
        Command::Check => {
            init_logs(log_format, None);
            if let Some(control) = &loaded.settings.control {
                remote::trusted_keys(control)?;
                report(&format!(
                    "settings ok: config comes from the control plane at {}",
                    control.url.join(", ")
                ));
                return Ok(());
            }
            let snapshot = build_snapshot(loaded)?.1;
            report(&format!(
                "config ok: {} keys, {} models, {} budgets",
                snapshot.keys.len(),
                snapshot.model_names.len(),
                snapshot.budgets.values().map(Vec::len).sum::<usize>()
            ));
            Ok(())
        }
        Command::Healthcheck { url, timeout_ms } => {
            let url = url.unwrap_or_else(|| {
                tollgate_serve::probe::local_url(loaded.settings.server.listen, "/readyz")
            });
            match tollgate_serve::probe::probe(&url, Duration::from_millis(timeout_ms)) {
                Ok(body) => {
                    report(&body);
                    Ok(())
                }
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Keys(KeysCommand::New {
            team,
            project,
            name,
        }) => {
            init_logs(log_format, None);
            let key = keys::generate(loaded.settings.auth.key_pepper_bytes());
            let mut entry = format!(
                "[[keys]]\npublic_id = \"{}\"\ndisplay_prefix = \"{}\"\nsecret_hmac = \"{}\"\nteam = \"{team}\"\n",
                key.public_id,
                key.display_prefix,
                hex::encode(key.secret_hmac)
            );
            if let Some(project) = project {
                entry.push_str(&format!("project = \"{project}\"\n"));
            }
            if !name.is_empty() {
                entry.push_str(&format!("name = {name:?}\n"));
            }
            // The entry alone on stdout, so that `keys new >> gateway.toml` keeps the file
            // TOML; the secret where a person sees it and a redirect does not catch it.
            eprintln!(
                "Your new key (shown once, store it now):\n\n  {}\n\nIts [[keys]] entry (on stdout):\n",
                key.full
            );
            report(entry.trim_end());
            Ok(())
        }
    }
}

/// Logs to stderr as text or JSON lines, filtered by `RUST_LOG` (default `info`); with a
/// tracer, this crate's spans are also exported as OpenTelemetry spans, whatever
/// `RUST_LOG` says.
fn init_logs(format: LogFormat, tracer: Option<SdkTracer>) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("tollgate_data_plane", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
}

#[expect(
    clippy::print_stdout,
    reason = "the key, the check result and the listen address are this binary's output"
)]
fn report(text: &str) {
    println!("{text}");
}

fn load(path: Option<&Path>) -> anyhow::Result<Loaded> {
    let text = match path {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        None => None,
    };
    Ok(Settings::from_sources(text.as_deref(), std::env::vars())?)
}

fn build_snapshot(loaded: Loaded) -> anyhow::Result<(Settings, Snapshot, PriceTable)> {
    let prices = PriceTable::built_in()?;
    let Some(file) = loaded.snapshot else {
        anyhow::bail!(
            "the config has no [[orgs]], [[keys]], [[models]] or [[deployments]]; a standalone gateway needs them, \
             or a [control] section to take its config from a control plane"
        );
    };
    let wire = file
        .into_proto(&loaded.settings.server.region)
        .map_err(|problems| anyhow::anyhow!("invalid config:\n  {}", problems.join("\n  ")))?;
    let credentials = Credentials::from_env().with_policy(&loaded.settings.credentials);
    let snapshot = Snapshot::from_proto(wire, &prices, &credentials)?;
    Ok((loaded.settings, snapshot, prices))
}

/// The config source: a control plane (starting from the last-known-good snapshot when
/// there is a verified one) or the standalone file.
struct Source {
    live: Arc<Live>,
    client: Option<ConfigClient>,
    /// With a control plane: what keeps the gateway's credential current, and the
    /// credential its links present.
    identity: Option<(Enroller, Credential)>,
}

fn source(loaded: Loaded) -> anyhow::Result<(Settings, Source, PriceTable)> {
    let Some(control) = &loaded.settings.control else {
        let (settings, snapshot, prices) = build_snapshot(loaded)?;
        for model in snapshot.models.values() {
            model.encoding.warm_up();
        }
        let live = Arc::new(Live::new(snapshot));
        return Ok((
            settings,
            Source {
                live,
                client: None,
                identity: None,
            },
            prices,
        ));
    };
    if loaded.snapshot.is_some() {
        anyhow::bail!(
            "this config has a [control] section and also [[orgs]]/[[keys]]/... sections: a gateway takes its config \
             from the control plane or from the file, not both"
        );
    }
    let prices = PriceTable::built_in()?;
    let checker = Arc::new(Checker {
        trusted: remote::trusted_keys(control)?,
        prices: prices.clone(),
        credentials: Credentials::from_env().with_policy(&loaded.settings.credentials),
        region: loaded.settings.server.region.clone(),
    });
    let path = &control.last_known_good;
    let start = match read_last_known_good(path, &checker.acceptance(0)) {
        Ok(Some((snapshot, _))) => {
            tracing::warn!(path = %path.display(), version = snapshot.version, "starting from the last-known-good config until the control plane answers");
            snapshot
        }
        Ok(None) => Snapshot::empty(),
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                error = %e,
                "REFUSING the last-known-good config file (tampered, corrupt or signed by an untrusted key); not ready until the control plane sends a verified snapshot"
            );
            Snapshot::empty()
        }
    };
    let live = Arc::new(Live::detached(start));
    let (enroller, credential) = Enroller::new(
        remote::endpoint(control)?,
        secrecy::ExposeSecret::expose_secret(&control.enrollment_token).to_owned(),
        loaded.settings.server.gateway_id.clone(),
        loaded.settings.server.region.clone(),
        Duration::from_millis(control.reconnect_max_ms.max(100)),
    );
    let client = ConfigClient::new(
        control,
        loaded.settings.server.gateway_id.clone(),
        credential.clone(),
        checker,
        live.clone(),
    )?;
    Ok((
        loaded.settings,
        Source {
            live,
            client: Some(client),
            identity: Some((enroller, credential)),
        },
        prices,
    ))
}

async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    let (settings, mut source, prices) = source(loaded)?;
    let (enroller, credential) = match source.identity.take() {
        Some((enroller, credential)) => (Some(enroller), Some(credential)),
        None => (None, None),
    };
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    // With a control plane: usage goes through the spool to it, and Redis counters are
    // restored from its durable spend after Redis lost them.
    let link = match (&settings.control, credential) {
        (Some(control), Some(credential)) => {
            let endpoint = remote::endpoint(control)?;
            let spool = Arc::new(
                Spool::open(
                    &settings.telemetry.spool_dir,
                    settings.telemetry.spool_max_mb * 1024 * 1024,
                    &settings.server.gateway_id,
                )
                .with_context(|| {
                    format!(
                        "opening the usage spool {}",
                        settings.telemetry.spool_dir.display()
                    )
                })?,
            );
            let spooler = Spooler {
                spool: spool.clone(),
                wake: Arc::new(tokio::sync::Notify::new()),
            };
            let shipper = Shipper::new(
                endpoint.clone(),
                credential.clone(),
                spool,
                spooler.wake.clone(),
                Duration::from_millis(control.reconnect_max_ms.max(100)),
            );
            Some((
                spooler,
                shipper,
                ControlSpend {
                    endpoint,
                    credential,
                },
            ))
        }
        _ => None,
    };
    let (spooler, shipper, spend) = match link {
        Some((spooler, shipper, spend)) => (Some(spooler), Some(shipper), Some(spend)),
        None => (None, None, None),
    };
    let (emitter, events) = Emitter::new(settings.server.usage_queue_capacity, source.live.clone());
    let consumer = tokio::spawn(run_consumer(
        events,
        settings.server.usage_log.clone(),
        spooler,
    ));
    let ledger = match settings.ledger.kind {
        LedgerKind::Memory => Ledgers::Memory(MemoryLedger::default()),
        LedgerKind::Redis => {
            let cap =
                Micros(parse_usd(&settings.ledger.fail_open_cap_usd).map_err(anyhow::Error::msg)?);
            Ledgers::Redis(Box::new(RedisLedger::new(
                &settings.redis,
                settings.ledger.on_redis_error,
                cap,
            )?))
        }
    };
    let version = source.live.version();
    let gateway = Arc::new(Gateway::new(
        &settings,
        source.live,
        ledger,
        prices,
        emitter,
        metrics,
    ));

    if let Some(enroller) = enroller {
        gateway.tasks.spawn(enroller.run(gateway.shutdown.clone()));
    }
    if let Some(client) = source.client {
        gateway.tasks.spawn(client.run(gateway.shutdown.clone()));
    }
    if let Some(shipper) = shipper {
        gateway.tasks.spawn(shipper.run(gateway.shutdown.clone()));
    }

    if matches!(*gateway.ledger, Ledgers::Redis(_)) {
        let interval = Duration::from_millis(settings.redis.maintenance_interval_ms.max(50));
        let upkeep = gateway.clone();
        gateway.tasks.spawn(async move {
            loop {
                if let Ledgers::Redis(ledger) = &*upkeep.ledger {
                    let snapshot = upkeep.live.load();
                    let orgs: Vec<String> = snapshot.orgs.keys().cloned().collect();
                    ledger.maintain(&orgs, now_ms()).await;
                    if let Some(spend) = &spend
                        && snapshot.version > 0
                        && matches!(ledger.seeded().await, Ok(false))
                    {
                        let lines = all_budget_lines(&snapshot, time::OffsetDateTime::now_utc());
                        match ledger.reseed_all(spend, &lines).await {
                            Ok(()) => tracing::warn!(budgets = lines.len(), "Redis had no spend record: budget counters restored from the control plane"),
                            Err(e) => tracing::error!(error = %e, "restoring budget counters from the control plane failed; retrying"),
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    () = upkeep.shutdown.cancelled() => break,
                }
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(settings.server.listen)
        .await
        .with_context(|| format!("binding {}", settings.server.listen))?;
    let addr = listener.local_addr()?;
    let limits = settings.server.connection_limits();
    // `/metrics` on its own address when one is set; it stops with the API.
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    let metrics_server = match settings.server.metrics_listen {
        Some(metrics_addr) => {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("binding server.metrics_listen {metrics_addr}"))?;
            // Logged, not printed: stdout carries one line, the API's address (a reader
            // of just that line may close the pipe; a second line would then fail).
            tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
            let stop = stop_metrics.clone();
            Some(tokio::spawn(tollgate_serve::serve(
                metrics_listener,
                api::metrics_router(gateway.clone()),
                limits,
                async move { stop.cancelled().await },
            )))
        }
        None => None,
    };
    tracing::info!(%addr, config_version = version, "gateway ready");
    report(&format!("tollgate-gateway listening on http://{addr}"));

    // Shutdown in three stages: draining (readyz 503, calls still taken), closing (no new
    // connections, calls in flight finish), and past the deadline (whatever is still
    // open is abandoned; its reservation expires with its lease).
    let closing = tokio_util::sync::CancellationToken::new();
    let serving = tollgate_serve::serve(
        listener,
        api::router(gateway.clone(), metrics_server.is_none()),
        limits,
        closing.clone().cancelled_owned(),
    );
    let drain_delay = Duration::from_millis(settings.server.drain_delay_ms);
    let deadline = Duration::from_millis(settings.server.shutdown_deadline_ms);
    let stages = async {
        let signal = shutdown_signal().await;
        gateway.draining.cancel();
        if signal == Signal::Terminate && !drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "draining: /readyz answers 503, calls are still served"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("closing the listener: finishing calls in flight");
        closing.cancel();
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        () = serving => {}
        () = stages => tracing::error!(
            deadline_ms = deadline.as_millis() as u64,
            "calls still in flight at the shutdown deadline were cut off"
        ),
    }
    stop_metrics.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }

    // Settle what is still open before exiting; settlements are quick.
    gateway.shutdown.cancel();
    if let Ledgers::Redis(ledger) = &*gateway.ledger {
        // One last chance for settlements queued while Redis was away.
        ledger.maintain(&[], now_ms()).await;
        let left = ledger.pending_settlements();
        if left > 0 {
            tracing::error!(left, "settlements could not reach Redis before exit");
        }
    }
    gateway.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), gateway.tasks.wait())
        .await
        .is_err()
    {
        tracing::error!("some settlements did not finish before shutdown");
    }
    drop(gateway);
    let _ = tokio::time::timeout(Duration::from_secs(5), consumer).await;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// SIGINT: a person at a terminal, who wants the process gone now.
    Interrupt,
    /// SIGTERM: an orchestrator, whose load balancer needs time to notice.
    Terminate,
}

async fn shutdown_signal() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return Signal::Interrupt;
                }
            };
        tokio::select! {
            _ = ctrl_c => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        Signal::Interrupt
    }
}
