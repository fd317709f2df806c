//! Runs the real `tollgate-control` binary for a test, on the test's own database and a
//! free port, and its operator commands (bootstrap, tokens).

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::env::TestDb;
use crate::gateway::binary;

fn command(db: &TestDb) -> anyhow::Result<Command> {
    let mut command = Command::new(binary("tollgate-control", "TOLLGATE_CONTROL_BIN")?);
    command
        .env("TOLLGATE_DATABASE__URL", &db.url)
        .env("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0")
        // The same pepper as test gateways, so keys minted here work there.
        .env("TOLLGATE_AUTH__KEY_PEPPER", crate::gateway::PEPPER)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    Ok(command)
}

/// Runs an operator command; its stdout on success, its stderr as the error otherwise.
pub async fn cli(db: &TestDb, args: &[&str]) -> anyhow::Result<String> {
    let output = command(db)?.args(args).output().await?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The token line of `bootstrap` / `tokens create` output.
pub fn token_in(output: &str) -> anyhow::Result<String> {
    output
        .split_whitespace()
        .find(|w| w.starts_with("tga_"))
        .map(str::to_owned)
        .context("no token in output")
}

pub struct ControlPlane {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// A platform admin's token.
    pub admin_token: String,
    _child: Child,
}

impl ControlPlane {
    /// Bootstraps `admin@example.com` and serves the API on `db`.
    pub async fn start(db: &TestDb) -> anyhow::Result<Self> {
        Self::start_with(db, &[]).await
    }

    /// As [`Self::start`], with extra environment (settings) for the server.
    pub async fn start_with(db: &TestDb, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let admin_token =
            token_in(&cli(db, &["bootstrap", "--email", "admin@example.com"]).await?)?;
        let mut child = command(db)?
            .arg("serve")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await??;
        let url = match line {
            Some(line) if line.contains("listening on ") => {
                line.rsplit(' ').next().unwrap_or_default().to_owned()
            }
            other => bail!("control plane did not start: {other:?}"),
        };
        Ok(Self {
            url,
            admin_token,
            _child: child,
        })
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }
}
