//! The gateway's identity toward the control plane: at start it exchanges its region's
//! enrollment token for a short-lived credential bound to its gateway id
//! (`ConfigService.Enroll`), renews it halfway through its life (`Renew`) for as long as
//! it runs, and enrolls again when the control plane no longer takes it (revoked,
//! expired). The config stream, the usage link and `Spent` use the credential, never the
//! enrollment token. The credential lives in memory only: a restarted gateway simply
//! enrolls again, so gateways stay stateless.

use std::sync::Arc;
use std::time::Duration;

use crate::snapshot::remote::ControlPlanes;
use rand::RngExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tollgate_proto::config as proto;
use tollgate_proto::config::config_service_client::ConfigServiceClient;

/// Shortest wait before a renewal, whatever the credential's lifetime.
const MIN_RENEW_WAIT: Duration = Duration::from_millis(500);

/// The current credential, for whoever talks to the control plane. Cloning is cheap.
#[derive(Clone)]
pub struct Credential {
    current: watch::Receiver<Option<Arc<str>>>,
    /// Poked when the control plane refused the credential: renew (or enroll) now.
    refused: Arc<Notify>,
}

impl Credential {
    /// The credential, waiting until there is one.
    pub async fn wait(&self) -> Arc<str> {
        let mut current = self.current.clone();
        loop {
            if let Some(c) = current.borrow_and_update().clone() {
                return c;
            }
            if current.changed().await.is_err() {
                // The enroller is gone (shutdown): nothing will ever come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// As [`Self::authorize`] with the credential held now, without waiting for one (for
    /// callers that must not wait, such as the ledger's upkeep loop).
    pub fn authorize_now<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        let now = self
            .current
            .borrow()
            .clone()
            .ok_or_else(|| "not enrolled with the control plane (yet)".to_owned())?;
        authorized(message, &now)
    }

    /// Tells the enroller that the control plane refused the credential (an
    /// `UNAUTHENTICATED` answer), so it gets a new one instead of waiting for the
    /// renewal time.
    pub fn refused(&self) {
        self.refused.notify_one();
    }

    /// A request carrying the credential as `authorization: Bearer …`.
    pub async fn authorize<T>(&self, message: T) -> Result<tonic::Request<T>, String> {
        authorized(message, &self.wait().await)
    }
}

fn authorized<T>(message: T, bearer: &str) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {bearer}")
        .parse()
        .map_err(|_| "the credential has characters a header cannot carry".to_owned())?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Keeps a [`Credential`] current until shutdown.
pub struct Enroller {
    endpoint: ControlPlanes,
    enrollment_token: String,
    gateway_id: String,
    region: String,
    reconnect_max: Duration,
    current: watch::Sender<Option<Arc<str>>>,
    refused: Arc<Notify>,
}

/// A credential held: its secret and when the control plane said it expires.
struct Held {
    secret: Arc<str>,
    expires_at_unix_ms: i64,
}

fn now_ms() -> i64 {
    crate::snapshot::now_ms()
}

impl Enroller {
    pub fn new(
        endpoint: ControlPlanes,
        enrollment_token: String,
        gateway_id: String,
        region: String,
        reconnect_max: Duration,
    ) -> (Self, Credential) {
        let (current, rx) = watch::channel(None);
        let refused = Arc::new(Notify::new());
        let credential = Credential {
            current: rx,
            refused: refused.clone(),
        };
        (
            Self {
                endpoint,
                enrollment_token,
                gateway_id,
                region,
                reconnect_max,
                current,
                refused,
            },
            credential,
        )
    }

    async fn client(
        &self,
    ) -> Result<ConfigServiceClient<tonic::transport::Channel>, tonic::Status> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connecting: {e}")))?;
        Ok(ConfigServiceClient::new(channel))
    }

    async fn enroll(&self) -> Result<proto::GatewayCredential, tonic::Status> {
        let request = authorized(
            proto::EnrollRequest {
                gateway_id: self.gateway_id.clone(),
                region: self.region.clone(),
            },
            &self.enrollment_token,
        )
        .map_err(tonic::Status::invalid_argument)?;
        Ok(self.client().await?.enroll(request).await?.into_inner())
    }

    async fn renew(&self, secret: &str) -> Result<proto::GatewayCredential, tonic::Status> {
        let request =
            authorized(proto::RenewRequest {}, secret).map_err(tonic::Status::invalid_argument)?;
        Ok(self.client().await?.renew(request).await?.into_inner())
    }

    /// Enrolls, then renews halfway through each lifetime; enrolls again when a renewal
    /// is refused or the credential ran out while the control plane was unreachable.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut held: Option<Held> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if held
                .as_ref()
                .is_some_and(|h| h.expires_at_unix_ms <= now_ms())
            {
                held = None;
                self.current.send_replace(None);
            }
            let answer = tokio::select! {
                answer = async {
                    match &held {
                        Some(h) => self.renew(&h.secret).await,
                        None => self.enroll().await,
                    }
                } => answer,
                () = shutdown.cancelled() => return,
            };
            let wait = match answer {
                Ok(credential) => {
                    backoff = Duration::from_millis(100);
                    if held.is_none() {
                        tracing::info!(credential = %credential.id, "enrolled with the control plane");
                    }
                    metrics::gauge!("tollgate_credential_expires_at_seconds")
                        .set(credential.expires_at_unix_ms as f64 / 1000.0);
                    let secret: Arc<str> = Arc::from(credential.credential.as_str());
                    self.current.send_replace(Some(secret.clone()));
                    let left = credential.expires_at_unix_ms.saturating_sub(now_ms());
                    held = Some(Held {
                        secret,
                        expires_at_unix_ms: credential.expires_at_unix_ms,
                    });
                    Duration::from_millis(u64::try_from(left / 2).unwrap_or(0)).max(MIN_RENEW_WAIT)
                }
                Err(status) => {
                    let refused = matches!(
                        status.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    );
                    if held.is_some() && refused {
                        tracing::warn!(%status, "the control plane refused to renew the credential; enrolling again");
                        held = None;
                        self.current.send_replace(None);
                        continue;
                    }
                    tracing::error!(code = ?status.code(), message = status.message(), "enrolling with the control plane failed");
                    let wait = rand::rng().random_range(backoff / 2..=backoff);
                    backoff = (backoff * 2).min(self.reconnect_max);
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                // A stream was refused: the credential may be revoked; renewing says so.
                () = self.refused.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enroller() -> (Enroller, Credential) {
        Enroller::new(
            ControlPlanes::new(vec![tonic::transport::Endpoint::from_static(
                "http://127.0.0.1:9",
            )]),
            "tge_x".into(),
            "gw".into(),
            "eu".into(),
            Duration::from_millis(100),
        )
    }

    #[tokio::test]
    async fn callers_wait_for_a_credential_and_the_upkeep_loop_never_does() {
        let (enroller, credential) = enroller();
        let err = credential.authorize_now(()).unwrap_err();
        assert!(err.contains("not enrolled"), "{err}");
        let waiting = tokio::spawn({
            let credential = credential.clone();
            async move { credential.authorize(()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no credential yet");
        enroller.current.send_replace(Some(Arc::from("tgc_abc")));
        let request = waiting.await.unwrap().unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer tgc_abc"
        );
        assert_eq!(
            credential
                .authorize_now(())
                .unwrap()
                .metadata()
                .get("authorization")
                .unwrap(),
            "Bearer tgc_abc"
        );
    }

    #[tokio::test]
    async fn an_unreachable_control_plane_is_retried_and_shutdown_ends_it() {
        let (enroller, credential) = enroller();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(enroller.run(shutdown.clone()));
        // Several attempts (100 ms backoff cap), none of which gets a credential.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(credential.authorize_now(()).is_err());
        shutdown.cancel();
        run.await.unwrap();
    }
}
