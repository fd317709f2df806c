//! `ConfigService.Stream`: one long-lived stream per gateway.
//!
//! The gateway authenticates with its region's enrollment token (`authorization: Bearer
//! tge_…`), opens with `Hello`, and from then on gets every version of its region newer
//! than what it runs. Each send carries a fresh nonce; only an Ack/Nack echoing the
//! latest nonce counts (a stale one is ignored). A refused (NACKed) version is never sent
//! again — only a newer one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tollgate_proto::config as proto;
use tollgate_proto::config::config_service_server::ConfigService;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use super::publish::Latest;
use crate::store::{Pool, StoreError, fleet};

/// How long a gateway has to say Hello after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a quiet stream refreshes the gateway's `last_seen`.
const HEARTBEAT: Duration = Duration::from_secs(10);

pub struct ConfigStreams {
    pool: Pool,
    latest: Arc<Latest>,
    /// This control-plane process, as shown in the fleet view.
    replica: String,
}

impl ConfigStreams {
    pub fn new(pool: Pool, latest: Arc<Latest>, replica: String) -> Self {
        Self {
            pool,
            latest,
            replica,
        }
    }
}

type ControlStream = Pin<Box<dyn Stream<Item = Result<proto::ControlMessage, Status>> + Send>>;

fn valid_gateway_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

#[tonic::async_trait]
impl ConfigService for ConfigStreams {
    type StreamStream = ControlStream;

    async fn stream(
        &self,
        request: Request<Streaming<proto::GatewayMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("missing enrollment token (authorization: Bearer tge_…)")
            })?
            .to_owned();
        let region = match fleet::region_for_token(&self.pool, &token).await {
            Ok(region) => region,
            Err(StoreError::NotFound) => {
                return Err(Status::unauthenticated(
                    "unknown or revoked enrollment token",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "enrollment check failed");
                return Err(Status::unavailable("control plane database unavailable"));
            }
        };
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
                "this enrollment token is for region {region:?}, not {:?}",
                hello.region
            )));
        }
        if !valid_gateway_id(&hello.gateway_id) {
            return Err(Status::invalid_argument(
                "gateway_id must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
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
        .map_err(|e| {
            tracing::error!(error = %e, "recording a gateway failed");
            Status::unavailable("control plane database unavailable")
        })?;
        tracing::info!(gateway = %session.id, %region, build = %hello.build, applied = session.applied, "gateway connected");
        metrics::gauge!("tollgate_gateways_connected", "region" => region.clone()).increment(1.0);

        let (tx, rx) = mpsc::channel(2);
        let updates = self.latest.subscribe(&region);
        tokio::spawn(async move {
            session.run(inbound, updates, tx).await;
            metrics::gauge!("tollgate_gateways_connected", "region" => region).decrement(1.0);
        });
        let out =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        Ok(Response::new(Box::pin(out)))
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
        tx: mpsc::Sender<Result<proto::ControlMessage, Status>>,
    ) {
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
