//! The publisher: turns changes in Postgres into signed, numbered snapshots per region,
//! and keeps every replica's view of the newest one current.
//!
//! - Writes wake it through the `tollgate_config_dirty` notification (a statement trigger
//!   on every table gateways depend on), debounced so a burst of writes is one version.
//! - Building runs under a Postgres advisory lock, in a repeatable-read transaction, so
//!   replicas never build concurrently and the version is `max + 1` of a stable view.
//!   An unchanged world (same content hash) publishes nothing.
//! - Every snapshot is validated with the gateways' own `Snapshot::from_proto` before it
//!   is signed: the control plane never publishes what a gateway would refuse. One org's
//!   bad data only sets that org aside ([`super::isolate`]); the region's other orgs are
//!   published, and the fleet view lists what was set aside (`config_errors`).
//! - A published version is announced on `tollgate_config_published`; every replica
//!   (including this one) loads the signed row and hands it to its streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prost::Message as _;
use sha2::{Digest, Sha256};
use sqlx::Connection as _;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tollgate_data_plane::prices::PriceTable;
use tollgate_data_plane::snapshot::{Credentials, Snapshot};
use tollgate_signing::SnapshotSigner;

use tollgate_proto::config as proto;
use uuid::Uuid;

use super::build::World;
use super::isolate::{Action, Isolated, isolate};
use crate::store::Pool;
use crate::store::config_errors::{self, Reported};

const DIRTY: &str = "tollgate_config_dirty";
const PUBLISHED: &str = "tollgate_config_published";
/// `pg_advisory_lock` key of the publisher ("tgpub").
const LOCK_KEY: i64 = 0x0074_6770_7562;
/// Published versions kept per region (older rows are pruned).
const KEEP_VERSIONS: i64 = 20;

/// `region_id, version, payload, signature, key_id` of `config_versions`.
type VersionRow = (String, i64, Vec<u8>, Vec<u8>, String);

/// One signed version, exactly as stored and as sent.
#[derive(Debug)]
pub struct Signed {
    pub region: String,
    pub version: u64,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub key_id: String,
}

/// The newest signed snapshot per region, as a watch channel streams subscribe to.
#[derive(Debug, Default)]
pub struct Latest {
    regions: Mutex<HashMap<String, watch::Sender<Option<Arc<Signed>>>>>,
}

impl Latest {
    fn sender(&self, region: &str) -> watch::Sender<Option<Arc<Signed>>> {
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        regions
            .entry(region.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    pub fn subscribe(&self, region: &str) -> watch::Receiver<Option<Arc<Signed>>> {
        self.sender(region).subscribe()
    }

    pub fn version(&self, region: &str) -> u64 {
        self.sender(region)
            .borrow()
            .as_ref()
            .map_or(0, |s| s.version)
    }

    /// Keeps `signed` if it is newer than what the region has; versions only go up.
    fn offer(&self, signed: Signed) {
        let region = signed.region.clone();
        let signed = Arc::new(signed);
        self.sender(&region).send_if_modified(|current| {
            if current
                .as_ref()
                .is_some_and(|c| c.version >= signed.version)
            {
                return false;
            }
            metrics::gauge!("tollgate_config_latest_version", "region" => region.clone())
                .set(signed.version as f64);
            *current = Some(signed.clone());
            true
        });
    }
}

pub struct Publisher {
    pool: Pool,
    signer: Arc<SnapshotSigner>,
    prices: PriceTable,
    latest: Arc<Latest>,
    debounce: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl Publisher {
    pub fn new(
        pool: Pool,
        signer: Arc<SnapshotSigner>,
        prices: PriceTable,
        latest: Arc<Latest>,
        debounce: Duration,
    ) -> Self {
        Self {
            pool,
            signer,
            prices,
            latest,
            debounce,
        }
    }

    /// Listens, publishes and loads until `shutdown`. A lost listener connection may have
    /// dropped notifications, so every (re)connect starts with a full publish + load.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.listen(&shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "config publisher lost Postgres; reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn listen(&self, shutdown: &CancellationToken) -> Result<(), PublishError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.ignore_pool_close_event(true);
        listener.listen_all([DIRTY, PUBLISHED]).await?;
        self.publish().await?;
        self.load_all().await?;
        // A safety net under the notifications: cheap, and bounds any missed one.
        let mut resync = tokio::time::interval(Duration::from_secs(30));
        resync.tick().await;
        loop {
            let notification = tokio::select! {
                n = listener.try_recv() => n?,
                _ = resync.tick() => {
                    self.load_all().await?;
                    continue;
                }
                () = shutdown.cancelled() => return Ok(()),
            };
            let Some(notification) = notification else {
                // The connection dropped and will be re-established by the next call.
                self.publish().await?;
                self.load_all().await?;
                continue;
            };
            if notification.channel() == PUBLISHED {
                self.load_announced(notification.payload()).await?;
                continue;
            }
            // Let the rest of a burst of writes land, then build once.
            tokio::time::sleep(self.debounce).await;
            while let Ok(Ok(Some(more))) =
                tokio::time::timeout(Duration::from_millis(1), listener.try_recv()).await
            {
                if more.channel() == PUBLISHED {
                    self.load_announced(more.payload()).await?;
                }
            }
            self.publish().await?;
        }
    }

    /// Builds every region's snapshot and publishes those that changed. Returns the
    /// `(region, version)` pairs published.
    pub async fn publish(&self) -> Result<Vec<(String, u64)>, PublishError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        let published = self.publish_locked(&mut conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LOCK_KEY)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // The lock dies with the session; make sure this one is not reused.
            drop(conn.detach());
        }
        published
    }

    async fn publish_locked(
        &self,
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<(String, u64)>, PublishError> {
        let started = Instant::now();
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
            .await?;
        let world = World::load(&mut tx).await?;
        let mut published = Vec::new();
        for region in &world.regions {
            let Some(mut snapshot) = self
                .checked(&mut tx, region, world.snapshot_for(region))
                .await?
            else {
                continue;
            };
            let content = Sha256::digest(snapshot.encode_to_vec()).to_vec();
            let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT version, content_sha256 FROM config_versions
                  WHERE region_id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(region)
            .fetch_optional(&mut *tx)
            .await?;
            if last.as_ref().is_some_and(|(_, hash)| *hash == content) {
                continue;
            }
            let version = last.map_or(1, |(v, _)| v + 1);
            snapshot.version = u64::try_from(version).unwrap_or(0);
            snapshot.generated_at_unix_ms = tollgate_data_plane::snapshot::now_ms();
            let payload = snapshot.encode_to_vec();
            let signature = self.signer.sign(&payload);
            sqlx::query(
                "INSERT INTO config_versions (region_id, version, content_sha256, payload, signature, key_id)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(region)
            .bind(version)
            .bind(&content)
            .bind(&payload)
            .bind(&signature)
            .bind(self.signer.key_id())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM config_versions WHERE region_id = $1 AND version <= $2")
                .bind(region)
                .bind(version - KEEP_VERSIONS)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(PUBLISHED)
                .bind(format!("{region}:{version}"))
                .execute(&mut *tx)
                .await?;
            tracing::info!(%region, version, bytes = payload.len(), "config published");
            published.push((region.clone(), snapshot_version(version)));
        }
        tx.commit().await?;
        metrics::histogram!("tollgate_config_publish_seconds").record(started.elapsed());
        Ok(published)
    }

    /// The region's snapshot as gateways will accept it: `built` itself when it
    /// validates with the gateways' own `Snapshot::from_proto`; otherwise with the orgs at
    /// fault set aside ([`isolate`]), or `None` when the platform part is at fault and the
    /// region keeps its previous version. What was set aside is logged, counted and
    /// recorded for the fleet view.
    async fn checked(
        &self,
        tx: &mut sqlx::PgConnection,
        region: &str,
        built: proto::Snapshot,
    ) -> Result<Option<proto::Snapshot>, PublishError> {
        let validate = |s: proto::Snapshot| {
            Snapshot::from_proto(s, &self.prices, &Credentials::form_only())
                .map(drop)
                .map_err(|e| e.0)
        };
        let isolated = match validate(built.clone()) {
            Ok(()) => Isolated {
                snapshot: Some(built),
                problems: Vec::new(),
            },
            Err(_) => {
                let previous: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT payload FROM config_versions
                      WHERE region_id = $1 ORDER BY version DESC LIMIT 1",
                )
                .bind(region)
                .fetch_optional(&mut *tx)
                .await?;
                let previous = previous.and_then(|p| proto::Snapshot::decode(p.as_slice()).ok());
                isolate(built, previous, &validate)
            }
        };
        let orgs = isolated
            .problems
            .iter()
            .filter(|p| p.org_id.is_some())
            .count();
        metrics::gauge!("tollgate_config_isolated_orgs", "region" => region.to_owned())
            .set(orgs as f64);
        for problem in &isolated.problems {
            let org = problem.org_id.as_deref().unwrap_or_default();
            let action = problem.action.as_str();
            if problem.action == Action::Held {
                metrics::counter!("tollgate_config_publish_refused_total", "region" => region.to_owned())
                    .increment(1);
                tracing::error!(%region, problems = %problem.message,
                    "config not published: the catalog would not validate on gateways; the region keeps its previous version");
            } else {
                metrics::counter!("tollgate_config_org_errors_total", "region" => region.to_owned(), "action" => action)
                    .increment(1);
                tracing::error!(%region, %org, action, problems = %problem.message,
                    "an org's config would not validate on gateways: it is set aside, the other orgs are published");
            }
        }
        let reported: Vec<Reported<'_>> = isolated
            .problems
            .iter()
            .map(|p| {
                let org = p.org_id.as_deref().and_then(|o| o.parse::<Uuid>().ok());
                (org, p.action.as_str(), p.message.as_str())
            })
            .collect();
        config_errors::replace(tx, region, &reported).await?;
        Ok(isolated.snapshot)
    }

    /// Loads the newest signed version of every region.
    async fn load_all(&self) -> Result<(), PublishError> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT DISTINCT ON (region_id) region_id, version, payload, signature, key_id
               FROM config_versions ORDER BY region_id, version DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            self.offer(row);
        }
        Ok(())
    }

    async fn load_announced(&self, payload: &str) -> Result<(), PublishError> {
        let Some((region, version)) = payload
            .rsplit_once(':')
            .and_then(|(r, v)| Some((r, v.parse::<i64>().ok()?)))
        else {
            tracing::warn!(payload, "ignoring a malformed config announcement");
            return Ok(());
        };
        if self.latest.version(region) >= snapshot_version(version) {
            return Ok(());
        }
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT region_id, version, payload, signature, key_id FROM config_versions
              WHERE region_id = $1 AND version = $2",
        )
        .bind(region)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = row {
            self.offer(row);
        }
        Ok(())
    }

    fn offer(&self, (region, version, payload, signature, key_id): VersionRow) {
        self.latest.offer(Signed {
            region,
            version: snapshot_version(version),
            payload,
            signature,
            key_id,
        });
    }
}

fn snapshot_version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
