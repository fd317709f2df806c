//! The gateway's config client: one `ConfigService.Stream` to the control plane, kept up
//! for the life of the process.
//!
//! Hello (with the version running now) → for every `SignedSnapshot`: verify, decode,
//! validate, refuse anything not newer, swap atomically, write last-known-good, Ack; any
//! refusal is a Nack with the reason and the version kept. Reconnects with jittered
//! exponential backoff; HTTP/2 keepalive pings find a dead stream within ~20 s. The
//! stream presents the gateway's enrolled credential ([`crate::identity`]); a stream
//! refused or ended as `UNAUTHENTICATED` makes the enroller get a new one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_proto::config as proto;
use tollgate_proto::config::config_service_client::ConfigServiceClient;
use tollgate_signing::TrustedKeys;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::live::Live;
use super::now_ms;
use super::signed::{Acceptance, write_last_known_good};
use super::{Credentials, Snapshot};
use crate::config::ControlSettings;
use crate::identity::Credential;
use crate::prices::PriceTable;

/// Snapshots of 100k keys are tens of MB; the default 4 MiB limit would refuse them.
const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("control.url {0:?}: {1}")]
    Url(String, String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("control.trusted_keys: {0}")]
    Keys(#[from] tollgate_signing::KeyError),
    #[error("TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// Everything needed to check a snapshot, owned so it can move to a blocking thread.
pub struct Checker {
    pub trusted: TrustedKeys,
    pub prices: PriceTable,
    pub credentials: Credentials,
    pub region: String,
}

impl Checker {
    pub fn acceptance(&self, applied: u64) -> Acceptance<'_> {
        Acceptance {
            trusted: &self.trusted,
            prices: &self.prices,
            credentials: &self.credentials,
            region: &self.region,
            applied,
        }
    }
}

pub fn trusted_keys(settings: &ControlSettings) -> Result<TrustedKeys, ClientError> {
    Ok(TrustedKeys::parse(
        settings
            .trusted_keys
            .iter()
            .map(|(id, key)| (id.as_str(), key.as_str())),
    )?)
}

/// The control plane's replicas, as gRPC endpoints (TLS, keepalives), shared by the
/// config stream, enrollment and telemetry. `connect` starts at the replica that last
/// worked and tries each in turn; [`ControlPlanes::advance`] moves on after a stream
/// dropped, so a replica that is shutting down (and still accepts connections) is left
/// at once.
#[derive(Clone)]
pub struct ControlPlanes {
    endpoints: Arc<[Endpoint]>,
    current: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for ControlPlanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.endpoints.iter().map(Endpoint::uri))
            .finish()
    }
}

impl ControlPlanes {
    /// Replicas in the order they are tried; at least one.
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints: endpoints.into(),
            current: Arc::default(),
        }
    }

    /// A channel to the first replica, from the current one on, that accepts a connection.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        self.connect_to().await.map(|(channel, _)| channel)
    }

    /// As [`Self::connect`], with the index of the replica reached (for [`Self::left`]).
    pub async fn connect_to(&self) -> Result<(Channel, usize), tonic::transport::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.current.load(Relaxed);
        let mut last = None;
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            match self.endpoints[at].connect().await {
                Ok(channel) => {
                    self.current.store(at, Relaxed);
                    return Ok((channel, at));
                }
                Err(e) => {
                    if self.endpoints.len() > 1 {
                        tracing::warn!(control_plane = %self.endpoints[at].uri(), error = %e, "control plane unreachable; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one control-plane URL (checked by the settings)"))
    }

    /// A stream to replica `at` dropped: the next connect starts at the replica after it
    /// — unless another link (telemetry, enrollment) has moved on already, so that two
    /// links leaving the same replica do not skip past the next one.
    pub fn left(&self, at: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let next = (at + 1) % self.endpoints.len();
        let _ = self.current.compare_exchange(at, next, Relaxed, Relaxed);
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

pub fn endpoint(settings: &ControlSettings) -> Result<ControlPlanes, ClientError> {
    let endpoints = settings
        .url
        .iter()
        .map(|url| one_endpoint(settings, url))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ControlPlanes::new(endpoints))
}

fn one_endpoint(settings: &ControlSettings, url: &str) -> Result<Endpoint, ClientError> {
    let bad = |e: &dyn std::fmt::Display| ClientError::Url(url.to_owned(), e.to_string());
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(&e))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &settings.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    Ok(endpoint)
}

pub struct ConfigClient {
    endpoint: ControlPlanes,
    credential: Credential,
    gateway_id: String,
    build: String,
    last_known_good: PathBuf,
    first_snapshot_timeout: Duration,
    reconnect_max: Duration,
    checker: Arc<Checker>,
    live: Arc<Live>,
}

fn read(path: &std::path::Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl ConfigClient {
    pub fn new(
        settings: &ControlSettings,
        gateway_id: String,
        credential: Credential,
        checker: Arc<Checker>,
        live: Arc<Live>,
    ) -> Result<Self, ClientError> {
        let endpoint = endpoint(settings)?;
        Ok(Self {
            endpoint,
            credential,
            gateway_id,
            build: concat!("tollgate-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            last_known_good: settings.last_known_good.clone(),
            first_snapshot_timeout: Duration::from_millis(settings.first_snapshot_timeout_ms),
            reconnect_max: Duration::from_millis(settings.reconnect_max_ms.max(100)),
            checker,
            live,
        })
    }

    /// Streams until `shutdown`, reconnecting as needed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        // A drop moves to the next replica at once, but only once in a row: replicas that
        // all refuse the stream still get the backoff.
        let mut moved_at_once = false;
        loop {
            metrics::gauge!("tollgate_config_connected").set(0.0);
            let mut reached = None;
            let outcome = tokio::select! {
                outcome = self.session(&mut reached) => outcome,
                () = shutdown.cancelled() => return,
            };
            self.live.set_detached(now_ms());
            match outcome {
                // The stream worked for a while: start the backoff over.
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => tracing::warn!(error = %e, "config stream to the control plane failed"),
            }
            metrics::counter!("tollgate_config_reconnects_total").increment(1);
            if let Some(at) = reached {
                self.endpoint.left(at);
                if self.endpoint.len() > 1 && !moved_at_once {
                    moved_at_once = true;
                    continue;
                }
            }
            moved_at_once = false;
            let wait = rand::rng().random_range(backoff / 2..=backoff);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(self.reconnect_max);
        }
    }

    /// One stream, from connect to its end. `Ok` if it got going before it ended;
    /// `reached` says which replica it connected to.
    async fn session(&self, reached: &mut Option<usize>) -> Result<(), String> {
        let (channel, at): (Channel, usize) = self
            .endpoint
            .connect_to()
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        *reached = Some(at);
        let mut client =
            ConfigServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        let (tx, rx) = mpsc::channel::<proto::GatewayMessage>(4);
        let hello = proto::Hello {
            gateway_id: self.gateway_id.clone(),
            region: self.checker.region.clone(),
            build: self.build.clone(),
            last_applied_version: self.live.version(),
        };
        tx.send(message(proto::gateway_message::Msg::Hello(hello)))
            .await
            .map_err(|_| "stream closed before Hello".to_owned())?;
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let request = self.credential.authorize(outbound).await?;
        let mut inbound = client
            .stream(request)
            .await
            .map_err(|status| {
                if status.code() == tonic::Code::Unauthenticated {
                    self.credential.refused();
                }
                format!(
                    "control plane refused the stream: {:?}: {}",
                    status.code(),
                    status.message()
                )
            })?
            .into_inner();
        tracing::info!(applied = self.live.version(), "config stream connected");
        metrics::gauge!("tollgate_config_connected").set(1.0);
        self.live.set_in_sync(now_ms());
        loop {
            // Without any config yet, a silent control plane is a failed stream.
            let next = if self.live.version() == 0 {
                tokio::time::timeout(self.first_snapshot_timeout, inbound.message())
                    .await
                    .map_err(|_| "no snapshot within the first-snapshot timeout".to_owned())?
            } else {
                inbound.message().await
            };
            let signed = match next {
                Ok(Some(proto::ControlMessage {
                    msg: Some(proto::control_message::Msg::Snapshot(signed)),
                })) => signed,
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(status) => {
                    if status.code() == tonic::Code::Unauthenticated {
                        self.credential.refused();
                    }
                    return Err(format!("stream ended: {status}"));
                }
            };
            let answer = self.apply(signed).await;
            if tx.send(answer).await.is_err() {
                return Ok(());
            }
        }
    }

    /// Checks and swaps in `signed`; the answer to send back.
    async fn apply(&self, signed: proto::SignedSnapshot) -> proto::GatewayMessage {
        let applied = self.live.version();
        let (version, nonce) = (signed.version, signed.nonce);
        let checker = self.checker.clone();
        let started = std::time::Instant::now();
        let checked = tokio::task::spawn_blocking(move || {
            let result = checker.acceptance(applied).accept(&signed);
            (result, signed)
        })
        .await;
        let (result, signed) = match checked {
            Ok(pair) => pair,
            Err(e) => {
                return nack(version, nonce, applied, format!("checking panicked: {e}"));
            }
        };
        match result {
            Ok(snapshot) => {
                let keys = snapshot.keys.len();
                self.swap(snapshot);
                tracing::info!(
                    version,
                    keys,
                    took_ms = started.elapsed().as_millis() as u64,
                    "config applied"
                );
                metrics::histogram!("tollgate_config_apply_seconds").record(started.elapsed());
                let path = self.last_known_good.clone();
                let written =
                    tokio::task::spawn_blocking(move || write_last_known_good(&path, &signed))
                        .await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::error!(path = %self.last_known_good.display(), "could not write the last-known-good snapshot; a restart without the control plane would not have it");
                }
                message(proto::gateway_message::Msg::Ack(proto::Ack {
                    version,
                    nonce,
                }))
            }
            Err(refused) => {
                metrics::counter!("tollgate_config_nacks_total").increment(1);
                tracing::error!(version, applied, reason = %refused, "config refused; keeping the one in force");
                nack(version, nonce, applied, refused.to_string())
            }
        }
    }

    fn swap(&self, snapshot: Snapshot) {
        let old = self.live.store(snapshot);
        tokio::task::spawn_blocking(move || drop(old));
        self.live.set_in_sync(now_ms());
        metrics::gauge!("tollgate_config_version").set(self.live.version() as f64);
    }
}

fn message(msg: proto::gateway_message::Msg) -> proto::GatewayMessage {
    proto::GatewayMessage { msg: Some(msg) }
}

fn nack(version: u64, nonce: u64, applied: u64, error: String) -> proto::GatewayMessage {
    message(proto::gateway_message::Msg::Nack(proto::Nack {
        version,
        nonce,
        applied_version: applied,
        error,
    }))
}
