//! Config push: Postgres → signed snapshot per region ([`build`], [`publish`]) → every
//! connected gateway of the region over `ConfigService.Stream` ([`stream`]). One org's
//! invalid data sets only that org aside ([`isolate`]).

pub mod build;
pub mod identity;
pub mod isolate;
pub mod publish;
pub mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tollgate_proto::config::config_service_server::ConfigServiceServer;
use tollgate_signing::SnapshotSigner;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::{GrpcSettings, SigningSettings};
use crate::store::Pool;
use publish::{Latest, Publisher};
use stream::ConfigStreams;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("signing.key_file {path}: {source}")]
    Key {
        path: String,
        source: tollgate_signing::KeyError,
    },
    #[error("grpc.tls_cert and grpc.tls_key go together")]
    HalfTls,
    #[error(
        "grpc.listen {0} is not a loopback address: configure grpc.tls_cert/tls_key, or set grpc.allow_plaintext = true if TLS is terminated in front"
    )]
    PlaintextExposed(SocketAddr),
    #[error("price table: {0}")]
    Prices(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn read(path: &std::path::Path) -> Result<String, PushError> {
    std::fs::read_to_string(path).map_err(|source| PushError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub fn load_signer(settings: &SigningSettings) -> Result<Option<SnapshotSigner>, PushError> {
    let Some(path) = &settings.key_file else {
        return Ok(None);
    };
    SnapshotSigner::from_pem(&settings.key_id, &read(path)?)
        .map(Some)
        .map_err(|source| PushError::Key {
            path: path.display().to_string(),
            source,
        })
}

fn tls(settings: &GrpcSettings) -> Result<Option<ServerTlsConfig>, PushError> {
    let (cert, key) = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => (read(cert)?, read(key)?),
        (None, None) => return Ok(None),
        _ => return Err(PushError::HalfTls),
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &settings.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(config))
}

/// The running config push: its bound address and the newest versions it serves.
pub struct Running {
    pub addr: SocketAddr,
    pub latest: Arc<Latest>,
    /// One task per open config stream; after `shutdown`, wait on it so that every
    /// stream's disconnect is recorded before the process exits.
    pub sessions: tokio_util::task::TaskTracker,
}

/// Binds the gRPC port and starts the publisher, the gateways' revocation listener and
/// the stream server, which also serves `telemetry`; all stop when `shutdown` is
/// cancelled.
pub async fn start(
    pool: Pool,
    signer: SnapshotSigner,
    grpc: &GrpcSettings,
    debounce: Duration,
    telemetry: &crate::telemetry::Telemetry,
    shutdown: CancellationToken,
) -> Result<Running, PushError> {
    let tls = tls(grpc)?;
    if tls.is_none() && !grpc.allow_plaintext && !grpc.listen.ip().is_loopback() {
        return Err(PushError::PlaintextExposed(grpc.listen));
    }
    let prices = tollgate_data_plane::prices::PriceTable::built_in()
        .map_err(|e| PushError::Prices(e.to_string()))?;
    let latest = Arc::new(Latest::default());
    let publisher = Publisher::new(
        pool.clone(),
        Arc::new(signer),
        prices,
        latest.clone(),
        debounce,
    );
    tokio::spawn(publisher.run(shutdown.clone()));

    let listener = tokio::net::TcpListener::bind(grpc.listen)
        .await
        .map_err(|source| PushError::Bind {
            addr: grpc.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| PushError::Bind {
        addr: grpc.listen,
        source,
    })?;
    let replica = grpc.replica.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), std::process::id())
    });
    let auth = identity::GatewayAuth::start(
        pool.clone(),
        Duration::from_secs(grpc.credential_ttl_s),
        shutdown.clone(),
    );
    let telemetry = telemetry.service(auth.clone());
    let sessions = tokio_util::task::TaskTracker::new();
    let streams = ConfigStreams::new(
        pool,
        latest.clone(),
        auth,
        replica,
        shutdown.clone(),
        sessions.clone(),
    );
    let mut server = Server::builder()
        // Dead peers and silent middleboxes are found by HTTP/2 pings, not by waiting.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    } else {
        tracing::warn!(%addr, "config stream without TLS");
    }
    let router = server
        .add_service(ConfigServiceServer::new(streams))
        .add_service(telemetry);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        if let Err(e) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "config stream server stopped");
        }
    });
    Ok(Running {
        addr,
        latest,
        sessions,
    })
}
