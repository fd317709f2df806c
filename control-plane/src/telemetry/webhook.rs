//! Alert delivery to webhooks: signed JSON POSTs with retries and exponential backoff,
//! every attempt in the delivery log.
//!
//! Signing: a webhook's secret is `whsec_` + hex(HMAC-SHA256(`[telemetry] webhook_key`,
//! webhook id)), shown once when the webhook is created and never stored; each body is
//! sent with `X-Tollgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. Receivers
//! should compare in constant time and may dedupe on `X-Tollgate-Delivery` (an attempt
//! that timed out after the receiver got it is sent again).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::destination::Destinations;
use crate::config::TelemetrySettings;
use crate::store::Pool;
use crate::store::alerts::{self, Attempt, Due, FiredAlert, Next};

/// The event type of budget alert deliveries.
pub const EVENT: &str = "budget.threshold_crossed";
/// Deliveries one worker tries at once.
const BATCH: i64 = 16;
/// How often the outbox is looked at when nothing woke the worker (retries, and alerts
/// another replica fired).
const POLL: Duration = Duration::from_millis(500);

fn hmac_hex(key: &[u8], data: &[u8]) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// The signing secret of webhook `id`.
pub fn secret(webhook_key: &SecretString, id: Uuid) -> String {
    format!(
        "whsec_{}",
        hmac_hex(
            webhook_key.expose_secret().as_bytes(),
            id.to_string().as_bytes()
        )
    )
}

/// The `X-Tollgate-Signature` value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(secret.as_bytes(), body))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The JSON body a webhook receives for `alert`.
pub fn payload(alert: &FiredAlert) -> serde_json::Value {
    json!({
        "type": EVENT,
        "alert_id": alert.id,
        "fired_at": rfc3339(alert.fired_at),
        "org_id": alert.org_id,
        "team_id": alert.team_id,
        "budget_id": alert.budget_id,
        "scope": {"kind": alert.scope_kind, "id": alert.scope_id},
        "period": {"kind": alert.period, "start": rfc3339(alert.period_start)},
        "threshold_pct": alert.threshold_pct,
        "spent_micros": alert.spent_micros,
        "amount_micros": alert.amount_micros,
    })
}

/// Delivers due notifications until shutdown.
pub struct Deliverer {
    pool: Pool,
    http: reqwest::Client,
    destinations: Destinations,
    key: SecretString,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

impl Deliverer {
    /// `None` (with the reason logged) when alerts cannot be delivered from here.
    pub fn new(pool: Pool, settings: &TelemetrySettings) -> Option<Self> {
        let destinations = Destinations::new(&settings.webhook_allow_hosts);
        let Some(key) = settings.webhook_key.clone() else {
            tracing::warn!(
                "telemetry.webhook_key is not set: budget alerts are recorded but not delivered from this replica"
            );
            return None;
        };
        let timeout = Duration::from_millis(settings.webhook_timeout_ms);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // A receiver answers itself; following a redirect could send the signed body
            // somewhere nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            // Resolution and the inside-address check are one step, so what is connected
            // to is what was checked; a proxy would resolve (and connect) on its own.
            .dns_resolver(destinations.resolver())
            .no_proxy()
            .user_agent(concat!("tollgate-control/", env!("CARGO_PKG_VERSION")))
            .build();
        let http = match http {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "no HTTP client for webhooks: alerts are not delivered");
                return None;
            }
        };
        Some(Self {
            pool,
            http,
            destinations,
            key,
            attempts: settings.webhook_attempts,
            backoff: Duration::from_millis(settings.webhook_backoff_ms),
            timeout,
        })
    }

    /// Wait before attempt `attempt + 1`: the backoff, doubled per attempt made.
    fn retry_after(&self, attempt: i32) -> Duration {
        let doublings = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(16);
        self.backoff.saturating_mul(1 << doublings)
    }

    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let this = Arc::new(self);
        // Long enough for the attempt and its bookkeeping; a worker that dies holding a
        // claim only delays that delivery by this much.
        let lease_ms =
            i64::try_from((this.timeout + Duration::from_secs(30)).as_millis()).unwrap_or(i64::MAX);
        // The soonest retry this worker scheduled: it sleeps no longer than that.
        let mut next_retry: Option<Instant> = None;
        loop {
            let due = match alerts::claim_due(&this.pool, BATCH, lease_ms).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming webhook deliveries failed");
                    Vec::new()
                }
            };
            if due.is_empty() {
                let poll = Instant::now() + POLL;
                let until = next_retry.take().map_or(poll, |at| at.min(poll));
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = shutdown.cancelled() => return,
                }
                continue;
            }
            let attempts = due.into_iter().map(|d| {
                let this = this.clone();
                async move { this.deliver(d).await }
            });
            let retries = futures_util::future::join_all(attempts).await;
            let soonest = retries.into_iter().flatten().min();
            // A little after it is due by the database's clock too.
            let soonest = soonest.map(|wait| Instant::now() + wait + Duration::from_millis(20));
            next_retry = match (next_retry, soonest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// POSTs the signed body; the receiver's status, or why nothing was received
    /// (with the causes, e.g. a destination refused by the resolver).
    async fn send(
        &self,
        due: &Due,
        body: Vec<u8>,
        signature: String,
    ) -> Result<http::StatusCode, String> {
        self.http
            .post(&due.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-tollgate-signature", signature)
            .header("x-tollgate-event", EVENT)
            .header(
                "x-tollgate-delivery",
                format!("{}.{}", due.alert.id, due.webhook_id),
            )
            .header("x-tollgate-attempt", due.attempt.to_string())
            .body(body)
            .send()
            .await
            .map(|response| response.status())
            .map_err(|e| {
                // Never the URL: its path may be the receiver's secret.
                let e = e.without_url();
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    text.push_str(": ");
                    text.push_str(&cause.to_string());
                    source = cause.source();
                }
                text
            })
    }

    /// One attempt; the wait before the next one, if there is to be one.
    async fn deliver(&self, due: Due) -> Option<Duration> {
        let body = payload(&due.alert).to_string().into_bytes();
        let signature = signature(&secret(&self.key, due.webhook_id), &body);
        let started = Instant::now();
        // Address literals never reach the client's resolver: check them here (names
        // are checked by the resolver, at connect time).
        let sent = match self.destinations.check_literal(&due.url) {
            Err(refused) => Err(refused.to_string()),
            Ok(()) => self.send(&due, body, signature).await,
        };
        let (status_code, error) = match sent {
            Ok(status) if status.is_success() => (Some(i32::from(status.as_u16())), None),
            Ok(status) => (
                Some(i32::from(status.as_u16())),
                Some(format!("the receiver answered {status}")),
            ),
            Err(e) => (None, Some(e)),
        };
        let retry = (error.is_some()
            && u32::try_from(due.attempt).unwrap_or(u32::MAX) < self.attempts)
            .then(|| self.retry_after(due.attempt));
        let next = match (&error, retry) {
            (None, _) => Next::Delivered,
            (Some(_), Some(wait)) => {
                Next::RetryInMs(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
            }
            (Some(_), None) => Next::GiveUp,
        };
        let outcome = match next {
            Next::Delivered => "delivered",
            Next::RetryInMs(_) => "retry",
            Next::GiveUp => "failed",
        };
        metrics::counter!("tollgate_webhook_attempts_total", "outcome" => outcome).increment(1);
        if next != Next::Delivered {
            tracing::warn!(webhook = %due.webhook_id, alert = %due.alert.id, attempt = due.attempt,
                error = error.as_deref().unwrap_or_default(), outcome, "webhook delivery failed");
        }
        let attempt = Attempt {
            status_code,
            error,
            duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
            next,
        };
        if let Err(e) = alerts::record_attempt(&self.pool, &due, &attempt).await {
            tracing::warn!(error = %e, webhook = %due.webhook_id, "recording a webhook attempt failed");
        }
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_signatures_are_hmac_sha256() {
        let key = SecretString::from("0123456789abcdef".to_owned());
        let id = Uuid::parse_str("0192d2a4-7c1e-7000-8000-000000000001").unwrap();
        let s = secret(&key, id);
        assert!(s.starts_with("whsec_") && s.len() == 6 + 64);
        assert_eq!(s, secret(&key, id), "derived, so the same on every replica");
        assert_ne!(s, secret(&key, Uuid::now_v7()));
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
