//! Runs the real `tollgate-gateway` binary for a test: writes its config to a temp dir,
//! starts it on port 0, and reads back its address and usage log.
//!
//! The binary is looked up beside the test executable's build directory
//! (`<target>/debug/tollgate-gateway`) or at `TOLLGATE_GATEWAY_BIN`; `deploy/local/test`
//! builds every binary before running the tests.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The pepper every test gateway uses (tests mint keys with it).
pub const PEPPER: &str = "test-pepper-0123456789abcdef";

/// A key minted for a test: the full text for the client, the entry for the config.
#[derive(Debug, Clone)]
pub struct TestKey {
    pub full: String,
    pub public_id: String,
    pub hmac_hex: String,
}

impl TestKey {
    pub fn new() -> Self {
        let key = tollgate_keys::generate(PEPPER.as_bytes());
        Self {
            full: key.full,
            public_id: key.public_id,
            hmac_hex: hex::encode(key.secret_hmac),
        }
    }

    /// A `[[keys]]` block for `team`, with optional extra lines (`project = "p"` ...).
    pub fn entry(&self, team: &str, extra: &str) -> String {
        format!(
            "[[keys]]\npublic_id = \"{}\"\nsecret_hmac = \"{}\"\nteam = \"{team}\"\n{extra}\n",
            self.public_id, self.hmac_hex
        )
    }
}

impl Default for TestKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Path of a workspace binary built next to the running test executable (or next to
/// the running benchmark binary).
pub fn binary(name: &str, override_var: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(override_var) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let own_dir = exe.parent().context("executable has no parent dir")?;
    // A test: <target>/debug/deps/e2e-<hash> → <target>/debug/<name>. A binary such as a
    // benchmark: <target>/release/<bench> → <target>/release/<name>.
    let candidates = [
        own_dir.parent().map(|d| d.join(name)),
        Some(own_dir.join(name)),
    ];
    let found = candidates.iter().flatten().find(|path| path.exists());
    match found {
        Some(path) => Ok(path.clone()),
        None => bail!(
            "{name} is missing beside {}: build it first with `cargo build --workspace --bins` (deploy/local/test does)",
            exe.display()
        ),
    }
}

pub struct GatewayProcess {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl GatewayProcess {
    /// Starts a gateway with `config` (TOML) and extra environment variables; the listen
    /// address (port 0), the usage log and the pepper are set through the environment.
    /// Logs go to `stderr.log` at `RUST_LOG=warn` unless `env` says otherwise.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin = binary("tollgate-gateway", "TOLLGATE_GATEWAY_BIN")?;
        Self::start_of(&bin, config, env).await
    }

    /// As [`Self::start`], with the gateway binary at `bin` (another release's, say).
    pub async fn start_of(
        bin: &std::path::Path,
        config: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let usage_log = dir.path().join("usage.jsonl");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config)?;
        let stderr = std::fs::File::create(dir.path().join("stderr.log"))?;
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&config_path)
            // Relative defaults (the usage spool, the last-known-good file) land here.
            .current_dir(dir.path())
            // Through the environment, so a test's config may still have its own [server].
            .env("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0")
            .env("TOLLGATE_SERVER__USAGE_LOG", &usage_log)
            .env("TOLLGATE_AUTH__KEY_PEPPER", PEPPER)
            .env("RUST_LOG", "warn")
            // Tests stop gateways often; one that studies the drain delay sets its own.
            .env("TOLLGATE_SERVER__DRAIN_DELAY_MS", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let url = match line {
            Ok(Ok(Some(line))) if line.contains("listening on ") => {
                line.rsplit(' ').next().unwrap_or_default().to_owned()
            }
            _ => {
                let log =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                bail!("gateway did not start:\n{log}");
            }
        };
        Ok(Self { url, dir, child })
    }

    /// `http://127.0.0.1:<port>/v1`
    pub fn v1(&self) -> String {
        format!("{}/v1", self.url)
    }

    /// Usage events written so far, waiting up to 30 s for at least `expected` of them.
    pub async fn usage_events(&self, expected: usize) -> Vec<Value> {
        let path = self.dir.path().join("usage.jsonl");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events: Vec<Value> = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            if events.len() >= expected || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Kills the gateway outright (SIGKILL): no graceful shutdown, nothing settled.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the gateway gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.terminate().await;
        self.wait().await
    }

    /// Sends SIGTERM (a graceful shutdown begins) without waiting for the exit.
    pub async fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }

    /// Waits (up to a minute) for the process to exit.
    pub async fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Ok(tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??)
    }
}
