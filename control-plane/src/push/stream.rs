//! `ConfigService.Stream`: one long-lived stream per gateway (and the unary `Enroll` and
//! `Renew`, see [`super::identity`]).
//!
//! The gateway authenticates with the credential it enrolled for (`authorization: Bearer
//! tgc_…`), opens with a `Hello` naming that credential's gateway id and region, and from
//! then on gets every version of its region newer than what it runs. Each send carries a
//! fresh nonce; only an Ack/Nack echoing the latest nonce counts (a stale one is
//! ignored). A refused (NACKed) version is never sent again — only a newer one. The
//! stream ends with `UNAUTHENTICATED` once the credential stops counting (revoked, its
//! enrollment token revoked, expired).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tollgate_proto::config as proto;
use tollgate_proto::config::config_service_server::ConfigService;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::identity::{GatewayAuth, valid_gateway_id};
use super::publish::Latest;
use crate::store::{Pool, StoreError, fleet};

/// How long a gateway has to say Hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a quiet stream refreshes the gateway's `last_seen`.
const HEARTBEAT: Duration = Duration::from_secs(10);

pub struct ConfigStreams {
    pool: Pool,
    latest: Arc<Latest>,
    auth: Arc<GatewayAuth>,
    /// Cancelled when this replica shuts down: every stream ends at once, so gateways
    /// reconnect to another replica instead of waiting on a closing one.
    stopping: tokio_util::sync::CancellationToken,
    sessions: tokio_util::task::TaskTracker,
    /// This control-plane process, as shown in the fleet view.
    replica: String,
}

impl ConfigStreams {
    pub fn new(
        pool: Pool,
        latest: Arc<Latest>,
        auth: Arc<GatewayAuth>,
        replica: String,
        stopping: tokio_util::sync::CancellationToken,
        sessions: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            pool,
            latest,
            auth,
            replica,
            stopping,
            sessions,
        }
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<proto::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigService for ConfigStreams {
    type StreamStream = ControlStream;

    async fn stream(
        &self,
        request: Request<Streaming<proto::GatewayMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        if self.stopping.is_cancelled() {
            return Err(Status::unavailable(
                "this control-plane replica is shutting down; connect to another",
            ));
        }
        let gateway = self.auth.authenticate(request.metadata()).await?;
        let region = gateway.region.clone();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(proto::GatewayMessage {
                msg: Some(proto::gateway_message::Msg::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => return Err(Status::invalid_argument("the first message must be Hello")),
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        if hello.region != region {
            return Err(Status::permission_denied(format!(
                "this credential is for region {region:?}, not {:?}",
                hello.region
            )));
        }
        if !valid_gateway_id(&hello.gateway_id) {
            return Err(Status::invalid_argument(
                "gateway_id must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
        }
        if hello.gateway_id != gateway.gateway_id {
            return Err(Status::permission_denied(format!(
                "this credential is for gateway {:?}, not {:?}",
                gateway.gateway_id, hello.gateway_id
            )));
        }
        let session = Session {
            pool: self.pool.clone(),
            id: hello.gateway_id.clone(),
            session: Uuid::now_v7(),
            applied: hello.last_applied_version,
        };
        fleet::connected(
            &self.pool,
            &session.id,
            &region,
            &hello.build,
            &self.replica,
            session.session,
            session.applied,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => Status::permission_denied(format!(
                "gateway id {:?} belongs to another region",
                session.id
            )),
            e => {
                tracing::error!(error = %e, "recording a gateway failed");
                Status::unavailable("control plane database unavailable")
            }
        })?;
        tracing::info!(gateway = %session.id, %region, build = %hello.build, applied = session.applied, "gateway connected");
        metrics::gauge!("tollgate_gateways_connected", "region" => region.clone()).increment(1.0);

        let (tx, rx) = mpsc::channel(2);
        let updates = self.latest.subscribe(&region);
        let revoked = self.auth.revoked(&gateway);
        let stopping = self.stopping.clone();
        self.sessions.spawn(async move {
            session.run(inbound, updates, revoked, stopping, tx).await;
            metrics::gauge!("tollgate_gateways_connected", "region" => region).decrement(1.0);
        });
        let out =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        Ok(Response::new(Box::pin(out)))
    }

    async fn enroll(
        &self,
        request: Request<proto::EnrollRequest>,
    ) -> Result<Response<proto::GatewayCredential>, Status> {
        self.auth
            .enroll(request.metadata(), request.get_ref())
            .await
            .map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<proto::RenewRequest>,
    ) -> Result<Response<proto::GatewayCredential>, Status> {
        self.auth.renew(request.metadata()).await.map(Response::new)
    }
}

struct Session {
    pool: Pool,
    id: String,
    session: Uuid,
    applied: u64,
}

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<proto::GatewayMessage>,
        mut updates: tokio::sync::watch::Receiver<Option<Arc<super::publish::Signed>>>,
        revoked: impl std::future::Future<Output = ()> + Send,
        stopping: tokio_util::sync::CancellationToken,
        tx: mpsc::Sender<Result<proto::ControlMessage, Status>>,
    ) {
        tokio::pin!(revoked);
        // Highest version sent (or already running there): nothing at or below it is sent.
        let mut sent = self.applied;
        let mut nonce = 0u64;
        let mut awaiting: Option<u64> = None;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.tick().await;
        loop {
            let newest = updates.borrow_and_update().clone();
            if let Some(signed) = newest.filter(|s| s.version > sent) {
                nonce += 1;
                let message = proto::ControlMessage {
                    msg: Some(proto::control_message::Msg::Snapshot(
                        proto::SignedSnapshot {
                            version: signed.version,
                            nonce,
                            payload: signed.payload.clone(),
                            signature: signed.signature.clone(),
                            key_id: signed.key_id.clone(),
                        },
                    )),
                };
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
                sent = signed.version;
                awaiting = Some(nonce);
            }
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { break },
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.answer(message, &mut awaiting).await,
                    Ok(None) | Err(_) => break,
                },
                _ = heartbeat.tick() => self.record(None).await,
                () = tx.closed() => break,
                () = stopping.cancelled() => {
                    let _ = tx.send(Err(Status::unavailable("this control-plane replica is shutting down; reconnect"))).await;
                    break;
                }
                () = &mut revoked => {
                    tracing::warn!(gateway = %self.id, "credential revoked or expired: ending the config stream");
                    let _ = tx.send(Err(Status::unauthenticated("credential revoked or expired"))).await;
                    break;
                }
            }
        }
        if let Err(e) = fleet::disconnected(&self.pool, &self.id, self.session).await {
            tracing::warn!(gateway = %self.id, error = %e, "could not record a disconnect");
        }
        tracing::info!(gateway = %self.id, applied = self.applied, "gateway disconnected");
    }

    async fn answer(&mut self, message: proto::GatewayMessage, awaiting: &mut Option<u64>) {
        use proto::gateway_message::Msg;
        let (nonce, applied, nack) = match message.msg {
            Some(Msg::Ack(ack)) => (ack.nonce, ack.version, None),
            Some(Msg::Nack(nack)) => (
                nack.nonce,
                nack.applied_version,
                Some((nack.version, nack.error)),
            ),
            Some(Msg::Hello(_)) | None => {
                tracing::debug!(gateway = %self.id, "ignoring an unexpected message");
                return;
            }
        };
        if *awaiting != Some(nonce) {
            tracing::debug!(gateway = %self.id, nonce, "ignoring a stale answer");
            return;
        }
        *awaiting = None;
        self.applied = applied;
        if let Some((version, error)) = &nack {
            metrics::counter!("tollgate_config_nacks_total").increment(1);
            tracing::warn!(gateway = %self.id, version, error = %error, applied, "gateway refused a config version");
        }
        self.record(nack.as_ref().map(|(v, e)| (*v, e.as_str())))
            .await;
    }

    async fn record(&self, nack: Option<(u64, &str)>) {
        if let Err(e) = fleet::heard(&self.pool, &self.id, self.session, self.applied, nack).await {
            tracing::warn!(gateway = %self.id, error = %e, "could not record what a gateway said");
        }
    }
}
