//! Runs the real `tollgate-control` binary for a test, on the test's own database and a
//! free port, and its operator commands (bootstrap, tokens).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::env::TestDb;
use crate::gateway::binary;

/// The webhook key of test control planes (webhook secrets derive from it).
pub const WEBHOOK_KEY: &str = "test-webhook-key-0123456789";

/// The command of the control-plane binary at `bin` (this build's, or another release's),
/// on the test's database with the test pepper and keys.
fn command_of(bin: &Path, db: &TestDb) -> anyhow::Result<Command> {
    let mut command = Command::new(bin);
    command
        .env("TOLLGATE_DATABASE__URL", &db.url)
        .env("TOLLGATE_SERVER__LISTEN", "127.0.0.1:0")
        // The same pepper as test gateways, so keys minted here work there.
        .env("TOLLGATE_AUTH__KEY_PEPPER", crate::gateway::PEPPER)
        .env("TOLLGATE_TELEMETRY__WEBHOOK_KEY", WEBHOOK_KEY)
        // Test webhook receivers listen on 127.0.0.1, which is refused unless allow-listed.
        .env(
            "TOLLGATE_TELEMETRY__WEBHOOK_ALLOW_HOSTS",
            r#"["127.0.0.1"]"#,
        )
        .env("TOLLGATE_SIGN_IN__MASTER_KEY", crate::oidc::MASTER_KEY)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    Ok(command)
}

/// Runs an operator command; its stdout on success, its stderr as the error otherwise.
pub async fn cli(db: &TestDb, args: &[&str]) -> anyhow::Result<String> {
    cli_of(
        &binary("tollgate-control", "TOLLGATE_CONTROL_BIN")?,
        db,
        args,
    )
    .await
}

/// As [`cli`], with the control-plane binary at `bin`.
pub async fn cli_of(bin: &Path, db: &TestDb, args: &[&str]) -> anyhow::Result<String> {
    let output = command_of(bin, db)?.args(args).output().await?;
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
    /// `127.0.0.1:<port>` of the config stream, when a signing key was configured.
    pub grpc: Option<String>,
    /// Holds `stderr.log`: a passing test prints nothing of the server's warnings.
    logs: tempfile::TempDir,
    child: Child,
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
        Self::serve(db, admin_token, env).await
    }

    /// Another server (a replica, or a restart) on `db`, which is bootstrapped already.
    pub async fn serve(
        db: &TestDb,
        admin_token: String,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let bin = binary("tollgate-control", "TOLLGATE_CONTROL_BIN")?;
        Self::serve_of(&bin, db, admin_token, env).await
    }

    /// The control-plane binary at `bin` (another release's, say): bootstraps
    /// `admin@example.com` with it and serves the API on `db`.
    pub async fn start_of(bin: &Path, db: &TestDb, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let admin_token =
            token_in(&cli_of(bin, db, &["bootstrap", "--email", "admin@example.com"]).await?)?;
        Self::serve_of(bin, db, admin_token, env).await
    }

    async fn serve_of(
        bin: &Path,
        db: &TestDb,
        admin_token: String,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let logs = tempfile::tempdir()?;
        let stderr = std::fs::File::create(logs.path().join("stderr.log"))?;
        let mut child = command_of(bin, db)?
            .arg("serve")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??;
        let url = match line {
            Some(line) if line.contains("listening on ") => {
                line.rsplit(' ').next().unwrap_or_default().to_owned()
            }
            other => bail!(
                "control plane did not start: {other:?}\n{}",
                std::fs::read_to_string(logs.path().join("stderr.log")).unwrap_or_default()
            ),
        };
        let signs = env.iter().any(|(k, _)| *k == "TOLLGATE_SIGNING__KEY_FILE");
        let grpc = if signs {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await??;
            match line {
                Some(line) if line.contains("config stream on ") => {
                    Some(line.rsplit(' ').next().unwrap_or_default().to_owned())
                }
                other => bail!("config stream did not start: {other:?}"),
            }
        } else {
            None
        };
        // Keep reading stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            url,
            admin_token,
            grpc,
            logs,
            child,
        })
    }

    /// What the server logged so far (for a failing test's message).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr.log")).unwrap_or_default()
    }

    /// Kills the server outright (SIGKILL).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the server gracefully (SIGTERM) and waits (up to a minute) for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        Ok(tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await??)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }
}

/// Exchanges `enrollment_token` for the credential of gateway `gateway_id` in `region`
/// (`ConfigService.Enroll` on the control plane's gRPC address `grpc`), as a gateway
/// does at start: what tests that speak gRPC themselves authenticate with.
pub async fn enroll(
    grpc: &str,
    enrollment_token: &str,
    gateway_id: &str,
    region: &str,
) -> Result<tollgate_proto::config::GatewayCredential, tonic::Status> {
    use tollgate_proto::config::config_service_client::ConfigServiceClient;
    let url = if grpc.contains("://") {
        grpc.to_owned()
    } else {
        format!("http://{grpc}")
    };
    let mut client = ConfigServiceClient::connect(url)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(tollgate_proto::config::EnrollRequest {
        gateway_id: gateway_id.to_owned(),
        region: region.to_owned(),
    });
    let bearer = format!("Bearer {enrollment_token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("token is not a header value"))?;
    request.metadata_mut().insert("authorization", bearer);
    Ok(client.enroll(request).await?.into_inner())
}

/// Callers of the route-table tests are strings: an admin API token (`tga_…`), or a
/// browser session made by [`session_caller`] (`session:<cookie value>:<csrf token>`).
pub const SESSION_CALLER: &str = "session:";

/// A browser session for the user with `email`, as a caller for [`authorize`]. Made
/// directly in the test database (signing in through an IdP is what `sign_in` tests):
/// what the route tables check with it is the session path of authentication — the
/// cookie, its CSRF token, and roles read afresh.
pub async fn session_caller(db: &TestDb, email: &str) -> anyhow::Result<String> {
    use sha2::Digest;
    let secret = format!(
        "{}{}",
        uuid::Uuid::now_v7().simple(),
        uuid::Uuid::now_v7().simple()
    );
    let pool = db.pool().await?;
    sqlx::query(
        "INSERT INTO sessions (id, secret_sha256, user_id, issuer, expires_at)
         SELECT $1, $2, id, 'test', now() + interval '1 day' FROM users WHERE email = lower($3)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(sha2::Sha256::digest(secret.as_bytes()).to_vec())
    .bind(email)
    .execute(&pool)
    .await?;
    pool.close().await;
    let csrf = tollgate_control_plane::auth::session::csrf_token(&secret);
    Ok(format!("{SESSION_CALLER}{secret}:{csrf}"))
}

/// `request` authenticated as `caller` (a token, or a [`session_caller`]).
pub fn authorize(request: reqwest::RequestBuilder, caller: &str) -> reqwest::RequestBuilder {
    match caller
        .strip_prefix(SESSION_CALLER)
        .and_then(|rest| rest.split_once(':'))
    {
        Some((secret, csrf)) => {
            // Test control planes have no plain-http public URL: the `__Host-` cookie.
            let name =
                tollgate_control_plane::auth::session::Cookies { secure: true }.session_name();
            request
                .header(http::header::COOKIE, format!("{name}={secret}"))
                .header("x-csrf-token", csrf)
        }
        None => request.bearer_auth(caller),
    }
}
