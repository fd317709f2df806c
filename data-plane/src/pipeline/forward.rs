//! Step 6: call the planned deployments until one answers. Retries with full-jitter
//! exponential backoff (honouring the upstream's `Retry-After`, capped), moving to the
//! next deployment of the plan on every retryable failure. For streams the first chunk
//! is awaited inside the attempt, so a stream that dies before its first byte is
//! retried too; once a byte has gone to the client nothing is retried.
//!
//! Each attempt runs in an `upstream` client span. With tracing on, that span's context
//! is the `traceparent` the provider receives (so its spans nest under the attempt);
//! with tracing off the client's own `traceparent` is passed through unchanged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::RngExt;
use tracing::Instrument;
use tracing::field::Empty;

use super::route::Cooldowns;
use crate::config::RoutingSettings;
use crate::providers::{
    Adapter, CallCx, Chunk, ChunkStream, Endpoint, JsonReply, JsonRequest, ProviderError, Reply,
};
use crate::snapshot::Deployment;

/// An HTTP client per distinct connect timeout (usually one or two), since reqwest sets
/// the connect timeout per client.
#[derive(Debug, Default)]
pub struct HttpClients {
    clients: std::sync::RwLock<Vec<(Duration, reqwest::Client)>>,
}

impl HttpClients {
    pub fn for_connect_timeout(
        &self,
        timeout: Duration,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let read = self
            .clients
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = read.iter().find(|(t, _)| *t == timeout) {
            return Ok(client.clone());
        }
        drop(read);
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // Redirects would re-send credentials to wherever an upstream points.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut write = self
            .clients
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        write.push((timeout, client.clone()));
        Ok(client)
    }
}

/// A successful attempt.
pub enum Answer {
    Json(JsonReply),
    /// The first chunk (already received) and the rest of the stream.
    Stream {
        first: Option<Chunk>,
        rest: ChunkStream,
    },
}

pub struct Forwarded {
    pub answer: Answer,
    pub deployment: Arc<Deployment>,
    pub attempts: u32,
}

pub struct ForwardFailure {
    /// The last attempt's error ([`ProviderError::maybe_billed`] says whether the
    /// provider may have billed it).
    pub error: ProviderError,
    pub deployment: Option<Arc<Deployment>>,
    pub attempts: u32,
}

/// Asked before each retry whether it may go ahead (the budget step's say in routing).
pub trait BeforeRetry {
    /// `previous_maybe_billed`: the provider may have billed the failed attempt.
    fn before_retry(&mut self, previous_maybe_billed: bool) -> impl Future<Output = bool> + Send;
}

pub struct Forwarder<'a> {
    pub http: &'a HttpClients,
    pub cooldowns: &'a Cooldowns,
    pub routing: &'a RoutingSettings,
}

impl Forwarder<'_> {
    /// Tries the plan. `retries` is asked before every retry; when it says no (the
    /// budget cannot cover another attempt while the last one's bill is unknown), the
    /// last failure is the answer.
    pub async fn forward(
        &self,
        plan: &[Arc<Deployment>],
        endpoint: Endpoint,
        req: &JsonRequest,
        request_id: &str,
        traceparent: Option<&str>,
        retries: &mut impl BeforeRetry,
    ) -> Result<Forwarded, ForwardFailure> {
        let mut last: Option<(ProviderError, Arc<Deployment>)> = None;
        let mut attempts = 0;
        for attempt in 0..self.routing.max_attempts {
            let Some(deployment) = plan.get(attempt as usize % plan.len().max(1)) else {
                break;
            };
            if let Some((error, _)) = &last {
                if !retries.before_retry(error.maybe_billed()).await {
                    break;
                }
                tokio::time::sleep(self.backoff(attempt, error.retry_after())).await;
            }
            attempts += 1;
            let span = tracing::info_span!(
                "upstream",
                otel.kind = "client",
                otel.status_code = Empty,
                deployment = %deployment.id,
                attempt = attempts,
                http.response.status_code = Empty,
            );
            // The provider's parent is this attempt when tracing is on, else the client.
            let own = crate::otel::traceparent(&span);
            let sent = own.as_deref().or(traceparent);
            let result = self
                .attempt(deployment, endpoint, req, request_id, sent)
                .instrument(span.clone())
                .await;
            let status = match &result {
                // Adapters only succeed on a 2xx.
                Ok(_) => Some(200),
                Err(ProviderError::Status { status, .. }) => Some(*status),
                Err(_) => None,
            };
            if let Some(status) = status {
                span.record("http.response.status_code", status);
            }
            if result.is_err() {
                span.record("otel.status_code", "ERROR");
            }
            match result {
                Ok(answer) => {
                    self.cooldowns.record_success(&deployment.id);
                    return Ok(Forwarded {
                        answer,
                        deployment: deployment.clone(),
                        attempts,
                    });
                }
                Err(error) => {
                    // Logged inside the attempt's span: the failure is an event of it.
                    let _attempt = span.enter();
                    let retry = error.retryable();
                    metrics::counter!("tollgate_upstream_errors_total", "deployment" => deployment.id.clone()).increment(1);
                    if error.credential_refused() {
                        // Tollgate's own provider credential is wrong: no retry there helps.
                        self.cooldowns.cool_down(&deployment.id, Instant::now());
                        tracing::error!(deployment = %deployment.id, "the provider refused this deployment's credential; deployment cooled down");
                    } else if retry
                        && self
                            .cooldowns
                            .record_failure(&deployment.id, Instant::now())
                    {
                        tracing::warn!(deployment = %deployment.id, "deployment cooled down after repeated failures");
                    }
                    tracing::info!(deployment = %deployment.id, attempt, error = %error, retry, "upstream attempt failed");
                    last = Some((error, deployment.clone()));
                    if !retry {
                        break;
                    }
                }
            }
        }
        let (error, deployment) = match last {
            Some((error, deployment)) => (error, Some(deployment)),
            None => (
                ProviderError::Protocol("model has no deployment".into()),
                None,
            ),
        };
        Err(ForwardFailure {
            error,
            deployment,
            attempts,
        })
    }

    async fn attempt(
        &self,
        deployment: &Arc<Deployment>,
        endpoint: Endpoint,
        req: &JsonRequest,
        request_id: &str,
        traceparent: Option<&str>,
    ) -> Result<Answer, ProviderError> {
        let http = self
            .http
            .for_connect_timeout(deployment.timeouts.connect)
            .map_err(ProviderError::Transport)?;
        let cx = CallCx {
            http: &http,
            deployment,
            endpoint,
            request_id,
            traceparent,
        };
        match Adapter::for_kind(deployment.provider)
            .call(endpoint, req, cx)
            .await?
        {
            Reply::Json(reply) => Ok(Answer::Json(reply)),
            Reply::Stream(mut rest) => {
                let first =
                    match tokio::time::timeout(deployment.timeouts.first_byte, rest.next()).await {
                        Err(_) => {
                            return Err(ProviderError::Timeout(
                                crate::providers::TimeoutPhase::FirstByte,
                            ));
                        }
                        Ok(Some(Err(e))) => return Err(e),
                        Ok(Some(Ok(chunk))) => Some(chunk),
                        Ok(None) => None,
                    };
                Ok(Answer::Stream { first, rest })
            }
        }
    }

    /// Full jitter: uniform in [0, min(max, base × 2^(attempt-1))], but at least the
    /// upstream's Retry-After when it gave one (capped at max).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let max = Duration::from_millis(self.routing.backoff_max_ms);
        let ceiling = Duration::from_millis(
            self.routing
                .backoff_base_ms
                .saturating_mul(1 << attempt.min(16)),
        )
        .min(max);
        let jittered = ceiling.mul_f64(rand::rng().random_range(0.0..=1.0));
        retry_after.map_or(jittered, |r| r.min(max).max(jittered))
    }
}
