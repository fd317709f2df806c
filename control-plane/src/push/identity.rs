//! Gateway identity: `ConfigService.Enroll` and `Renew`, and who is calling on every
//! other gateway RPC.
//!
//! A gateway process starts with its region's enrollment token (`tge_…`) and exchanges
//! it for a credential (`tgc_…`) bound to its gateway id and region, valid for
//! `grpc.credential_ttl_s` and renewed by the gateway while it runs; the secret lives in
//! the gateway's memory only, so gateways stay stateless pods. `Stream`, `Report` and
//! `Spent` take only that credential: an event can then only ever be recorded as the
//! gateway id the credential names, and a region's token cannot speak for another
//! region's gateway.
//!
//! Revoking a credential or the enrollment token it was minted with ends the streams
//! that use it within about a second on every replica: a Postgres notification
//! (`tollgate_gateway_auth`, from a trigger) makes each open stream check its credential
//! again, as does the credential's expiry and a 30 s safety net.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tollgate_proto::config as proto;
use tonic::Status;
use tonic::metadata::MetadataMap;
use uuid::Uuid;

use crate::store::fleet::ENROLLMENT_PREFIX;
use crate::store::gateway_credentials::{self as credentials, CREDENTIAL_PREFIX};
use crate::store::{Pool, StoreError};

/// Notified (by triggers) whenever a credential or enrollment token is revoked.
const CHANNEL: &str = "tollgate_gateway_auth";
/// Streams re-check their credential at least this often, in case a notification was
/// missed while the listener reconnected.
const RECHECK: Duration = Duration::from_secs(30);

/// A caller that presented a live credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub credential_id: Uuid,
    pub gateway_id: String,
    pub region: String,
    pub expires_at: OffsetDateTime,
}

/// Checks credentials and tells open streams when theirs stopped counting.
pub struct GatewayAuth {
    pool: Pool,
    ttl: Duration,
    /// Bumped on every revocation notification (and on every listener reconnect).
    revocations: watch::Sender<u64>,
}

pub fn valid_gateway_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn bearer(metadata: &MetadataMap) -> Option<&str> {
    metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn unavailable(e: &StoreError) -> Status {
    tracing::error!(error = %e, "gateway authentication failed");
    Status::unavailable("control plane database unavailable")
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl GatewayAuth {
    /// Starts the revocation listener (until `shutdown`); credentials last `ttl`.
    pub fn start(pool: Pool, ttl: Duration, shutdown: CancellationToken) -> Arc<Self> {
        let auth = Arc::new(Self {
            pool,
            ttl,
            revocations: watch::channel(0).0,
        });
        tokio::spawn(auth.clone().listen(shutdown));
        auth
    }

    async fn listen(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    listener.ignore_pool_close_event(true);
                    if let Err(e) = listener.listen(CHANNEL).await {
                        tracing::warn!(error = %e, "cannot listen for gateway revocations");
                    } else {
                        // Whatever was revoked while nobody listened is found now.
                        self.revocations.send_modify(|n| *n += 1);
                        loop {
                            tokio::select! {
                                got = listener.try_recv() => match got {
                                    Ok(Some(_)) => self.revocations.send_modify(|n| *n += 1),
                                    Ok(None) => self.revocations.send_modify(|n| *n += 1),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "gateway revocation listener failed");
                                        break;
                                    }
                                },
                                () = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for gateway revocations"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn credential(
        &self,
        credential: &credentials::GatewayCredential,
        secret: String,
    ) -> proto::GatewayCredential {
        proto::GatewayCredential {
            credential: secret,
            id: credential.id.to_string(),
            expires_at_unix_ms: unix_ms(credential.expires_at),
        }
    }

    /// `Enroll`: the enrollment token in `metadata` for a credential of `request`'s
    /// gateway id.
    pub async fn enroll(
        &self,
        metadata: &MetadataMap,
        request: &proto::EnrollRequest,
    ) -> Result<proto::GatewayCredential, Status> {
        let token = bearer(metadata)
            .filter(|t| t.starts_with(ENROLLMENT_PREFIX))
            .ok_or_else(|| {
                Status::unauthenticated("missing enrollment token (authorization: Bearer tge_…)")
            })?;
        let enrollment = match credentials::enrollment(&self.pool, token).await {
            Ok(enrollment) => enrollment,
            Err(StoreError::NotFound) => {
                return Err(Status::unauthenticated(
                    "unknown or revoked enrollment token",
                ));
            }
            Err(e) => return Err(unavailable(&e)),
        };
        if request.region != enrollment.region_id {
            return Err(Status::permission_denied(format!(
                "this enrollment token is for region {:?}, not {:?}",
                enrollment.region_id, request.region
            )));
        }
        if !valid_gateway_id(&request.gateway_id) {
            return Err(Status::invalid_argument(
                "gateway_id must be 1-128 characters of [A-Za-z0-9._:-]",
            ));
        }
        match credentials::issue(&self.pool, &enrollment, &request.gateway_id, self.ttl).await {
            Ok((row, secret)) => {
                tracing::info!(gateway = %row.gateway_id, region = %row.region_id, credential = %row.id, "gateway enrolled");
                metrics::counter!("tollgate_gateway_enrollments_total").increment(1);
                Ok(self.credential(&row, secret))
            }
            Err(StoreError::Conflict { .. }) => Err(Status::permission_denied(format!(
                "gateway id {:?} belongs to another region",
                request.gateway_id
            ))),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// `Renew`: the calling credential, extended.
    pub async fn renew(&self, metadata: &MetadataMap) -> Result<proto::GatewayCredential, Status> {
        let secret = bearer(metadata)
            .filter(|t| t.starts_with(CREDENTIAL_PREFIX))
            .ok_or_else(|| {
                Status::unauthenticated("missing credential (authorization: Bearer tgc_…)")
            })?;
        match credentials::renew(&self.pool, secret, self.ttl).await {
            Ok(row) => Ok(self.credential(&row, secret.to_owned())),
            Err(StoreError::NotFound) => Err(Status::unauthenticated(
                "unknown, expired or revoked credential: enroll again",
            )),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// The gateway whose live credential `metadata` carries.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Gateway, Status> {
        let Some(secret) = bearer(metadata) else {
            return Err(Status::unauthenticated(
                "missing credential (authorization: Bearer tgc_…, from ConfigService.Enroll)",
            ));
        };
        if secret.starts_with(ENROLLMENT_PREFIX) {
            return Err(Status::unauthenticated(
                "an enrollment token is exchanged with ConfigService.Enroll first; this call takes the credential it returns",
            ));
        }
        match credentials::authenticate(&self.pool, secret).await {
            Ok(v) => Ok(Gateway {
                credential_id: v.id,
                gateway_id: v.gateway_id,
                region: v.region_id,
                expires_at: v.expires_at,
            }),
            Err(StoreError::NotFound) => Err(Status::unauthenticated(
                "unknown, expired or revoked credential",
            )),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Resolves once `gateway`'s credential no longer counts (revoked, its enrollment
    /// token revoked, or expired without renewal). A database outage is not a
    /// revocation: the check is retried.
    pub fn revoked(
        self: &Arc<Self>,
        gateway: &Gateway,
    ) -> impl Future<Output = ()> + Send + 'static {
        let auth = self.clone();
        let id = gateway.credential_id;
        let mut expires_at = gateway.expires_at;
        let mut revocations = self.revocations.subscribe();
        async move {
            loop {
                let left = (expires_at - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                tokio::select! {
                    changed = revocations.changed() => if changed.is_err() {
                        tokio::time::sleep(RECHECK).await;
                    },
                    () = tokio::time::sleep(left.min(RECHECK)) => {}
                }
                match credentials::live_until(&auth.pool, id).await {
                    Ok(Some(until)) => expires_at = until,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(credential = %id, error = %e, "could not re-check a gateway credential");
                        expires_at = OffsetDateTime::now_utc() + RECHECK;
                    }
                }
            }
        }
    }
}
