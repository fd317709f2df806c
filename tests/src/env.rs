//! Per-test isolation on the real local services (STYLE: no fixed ports, no serial tests).
//!
//! - [`TestDb`]: a fresh `tg_test_<uuid>` Postgres database, dropped when the value is
//!   dropped — also while unwinding from a failed assertion.
//! - [`TestRedis`]: a key prefix `tgtest:<uuid>:` on the shared Redis; every key under it
//!   is unlinked on drop. A prefix rather than `SELECT n`, because Redis Cluster only
//!   has database 0.
//! - [`TestEnv`]: both, plus an in-process [`MockUpstream`].
//!
//! Where the services live comes from `TOLLGATE_TEST_DATABASE_URL` (an admin connection,
//! default `postgres://postgres@127.0.0.1:5432/postgres`) and `TOLLGATE_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`).

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection};

use crate::mock::MockUpstream;

pub const DEFAULT_ADMIN_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Database names this module creates start with this; nothing else is ever dropped.
pub const DB_NAME_PREFIX: &str = "tg_test_";

/// Redis prefixes this module hands out start with this.
pub const REDIS_PREFIX_ROOT: &str = "tgtest:";

fn admin_url() -> String {
    std::env::var("TOLLGATE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| DEFAULT_ADMIN_DATABASE_URL.to_owned())
}

fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

/// `postgres://user@host:port/<name>` from the admin URL, keeping its query string.
fn with_database(admin: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin, None),
    };
    let authority_start = base.find("://").context("database URL has no scheme")? + 3;
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// A Postgres database that exists for one test.
pub struct TestDb {
    pub name: String,
    /// Connection URL of this database, for handing to binaries.
    pub url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let name = format!("{DB_NAME_PREFIX}{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
            format!("connecting to Postgres at {admin_url} (is deploy/local/services running?)")
        })?;
        // The name is generated above (hex only), so quoting it is enough.
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await.ok();
        let url = with_database(&admin_url, &name)?;
        Ok(Self {
            name,
            url,
            admin_url,
        })
    }

    /// A small pool on this database.
    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        let options = PgConnectOptions::from_str(&self.url)?.disable_statement_logging();
        Ok(PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?)
    }

    /// True while a database of this name exists (to check teardown).
    pub async fn exists(name: &str) -> anyhow::Result<bool> {
        let mut admin = PgConnection::connect(&admin_url()).await?;
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut admin)
            .await?;
        Ok(found.is_some())
    }
}

/// Runs a teardown future to completion from `Drop`. Drop may run inside a runtime (or
/// while unwinding), so the work gets its own thread and runtime and can block there
/// without stalling anyone's executor. True when it succeeded.
fn tear_down<F, Fut>(work: F) -> bool
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let done = std::thread::spawn(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(work())
    })
    .join();
    matches!(done, Ok(Ok(())))
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = tear_down(move || async move {
            let mut admin = PgConnection::connect(&admin_url).await?;
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await?;
            anyhow::Ok(())
        });
        if !dropped {
            tracing::warn!(database = %self.name, "could not drop test database");
        }
    }
}

/// A Redis key prefix that belongs to one test.
pub struct TestRedis {
    pub url: String,
    /// `tgtest:<uuid>:`; every key a test writes must start with it.
    pub prefix: String,
}

impl TestRedis {
    pub async fn new() -> anyhow::Result<Self> {
        let this = Self {
            url: redis_url(),
            prefix: format!("{REDIS_PREFIX_ROOT}{}:", uuid::Uuid::now_v7().simple()),
        };
        // Fail here, with a clear message, rather than in the middle of a test.
        this.connection().await.with_context(|| {
            format!(
                "connecting to Redis at {} (is deploy/local/services running?)",
                this.url
            )
        })?;
        Ok(this)
    }

    pub async fn connection(&self) -> anyhow::Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())?;
        Ok(client.get_multiplexed_async_connection().await?)
    }

    /// Every key under this prefix.
    pub async fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut connection = self.connection().await?;
        scan_prefix(&mut connection, &self.prefix).await
    }
}

async fn scan_prefix(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let pattern = format!("{prefix}*");
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(connection)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let cleaned = tear_down(move || async move {
            let client = redis::Client::open(url.as_str())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            let keys = scan_prefix(&mut connection, &prefix).await?;
            for batch in keys.chunks(500) {
                redis::cmd("UNLINK")
                    .arg(batch)
                    .query_async::<()>(&mut connection)
                    .await?;
            }
            anyhow::Ok(())
        });
        if !cleaned {
            tracing::warn!(prefix = %self.prefix, "could not clean test Redis keys");
        }
    }
}

/// Everything one cross-process test needs, isolated from every other test.
pub struct TestEnv {
    pub db: TestDb,
    pub redis: TestRedis,
    pub upstream: MockUpstream,
}

impl TestEnv {
    pub async fn start() -> anyhow::Result<Self> {
        let (db, redis, upstream) = tokio::try_join!(TestDb::create(), TestRedis::new(), async {
            MockUpstream::start()
                .await
                .context("starting the mock upstream")
        })?;
        Ok(Self {
            db,
            redis,
            upstream,
        })
    }
}

/// A private `redis-server` on a free loopback port, for tests that stop and restart
/// Redis (they cannot do that to the shared one). Killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let mut server = Self { port, child: None };
        server.restart().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (its data is gone: nothing is persisted).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context(
                "starting redis-server (is it installed? deploy/local/services installs it)",
            )?;
        self.child = Some(child);
        wait_for_ping(&self.url()).await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A throwaway Redis Cluster of `n` masters on free loopback ports (created with
/// `redis-cli --cluster create`), for checking that the ledger's hash-tagged scripts run
/// on a cluster. Killed, with its files, on drop.
pub struct RedisCluster {
    pub nodes: Vec<String>,
    children: Vec<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut ports = Vec::new();
        while ports.len() < n {
            let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
                .local_addr()?
                .port();
            // The cluster bus listens on port + 10000.
            if port < 55_000 && !ports.contains(&port) {
                ports.push(port);
            }
        }
        let mut cluster = Self {
            nodes: Vec::new(),
            children: Vec::new(),
            _dir: dir,
        };
        for port in &ports {
            let child = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                ])
                .args([
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .current_dir(cluster._dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("starting redis-server for the cluster")?;
            cluster.children.push(child);
            cluster.nodes.push(format!("redis://127.0.0.1:{port}/"));
        }
        for node in &cluster.nodes {
            wait_for_ping(node).await?;
        }
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .context("running redis-cli --cluster create")?;
        anyhow::ensure!(
            created.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for node in &cluster.nodes {
            let client = redis::Client::open(node.as_str())?;
            let mut con = client.get_multiplexed_async_connection().await?;
            let mut ready = false;
            for _ in 0..200 {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut con)
                    .await?;
                if info.contains("cluster_state:ok") {
                    ready = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            anyhow::ensure!(ready, "cluster never became ready at {node}");
        }
        Ok(cluster)
    }
}

async fn wait_for_ping(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    for _ in 0..100 {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("{url} did not come up")
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_name_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "tg_test_1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/tg_test_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
    }
}
