//! `GatewayError`: the gateway's one error response, in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}`, with the status codes the OpenAI
//! SDKs map to their exception classes. Every step error converts into it here (and only
//! here). A 5xx never echoes internals; the cause is logged where it happens.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::ledger::ReserveError;
use crate::pipeline::authenticate::AuthError;
use crate::pipeline::authorize::AuthzError;
use crate::pipeline::limit::{LimitError, RateInfo};
use crate::pipeline::request::RequestError;
use crate::pipeline::reserve::{BudgetError, EstimateError};
use crate::pipeline::route::RouteError;
use crate::providers::{Fault, ProviderError, TimeoutPhase};

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub status: StatusCode,
    /// OpenAI's `type`.
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<Duration>,
    pub rate: Option<RateInfo>,
    /// Whose fault the failure is: decides what the usage event records, and the
    /// OpenAI `type` of the failures that are not the caller's.
    pub fault: Fault,
}

impl GatewayError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            rate: None,
            fault: if status.is_server_error() {
                Fault::Internal
            } else {
                Fault::Client
            },
        }
    }

    pub fn not_found_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            format!(
                "Unknown request URL: {path}. Tollgate serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/messages, /v1/responses and /v1/models."
            ),
        )
    }

    /// Every deployment of the model allows less config staleness than this gateway has.
    pub fn config_stale(staleness: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            Some("config_stale"),
            format!(
                "This gateway has not heard from its control plane for {} s, longer than this model's deployments allow; try again shortly.",
                staleness.as_secs()
            ),
        )
    }

    pub fn code_str(&self) -> &'static str {
        self.code.unwrap_or(self.kind)
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(rate) = self.rate {
            rate_headers(headers, &rate);
        }
        response
    }
}

/// OpenAI's `x-ratelimit-*` headers.
pub fn rate_headers(headers: &mut http::HeaderMap, rate: &RateInfo) {
    let reset = format!("{}s", rate.reset.as_secs().max(1));
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    if let Some((limit, remaining)) = rate.requests {
        put("x-ratelimit-limit-requests", limit.to_string());
        put("x-ratelimit-remaining-requests", remaining.to_string());
        put("x-ratelimit-reset-requests", reset.clone());
    }
    if let Some((limit, remaining)) = rate.tokens {
        put("x-ratelimit-limit-tokens", limit.to_string());
        put("x-ratelimit-remaining-tokens", remaining.to_string());
        put("x-ratelimit-reset-tokens", reset);
    }
}

impl From<RequestError> for GatewayError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::TooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                e.to_string(),
            ),
            RequestError::TimedOut { .. } => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                Some("request_timeout"),
                e.to_string(),
            ),
            RequestError::Unreadable => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                e.to_string(),
            ),
            RequestError::Invalid { message, param } => Self {
                param: param.map(str::to_owned),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    message,
                )
            },
        }
    }
}

impl From<EstimateError> for GatewayError {
    /// Every estimate refusal is the client's: a 400 naming the field, as OpenAI answers.
    fn from(e: EstimateError) -> Self {
        debug_assert_eq!(e.fault(), Fault::Client);
        Self {
            param: Some(e.param().to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                e.code(),
                e.to_string(),
            )
        }
    }
}

impl From<AuthError> for GatewayError {
    fn from(e: AuthError) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            e.to_string(),
        )
    }
}

impl From<AuthzError> for GatewayError {
    fn from(e: AuthzError) -> Self {
        let param = Some("model".to_owned());
        match e {
            AuthzError::Unfit(e) => e.into(),
            AuthzError::UnknownModel(_) => Self {
                param,
                ..Self::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    Some("model_not_found"),
                    e.to_string(),
                )
            },
            AuthzError::Frozen { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                Some("frozen"),
                e.to_string(),
            ),
            AuthzError::NotAllowed(_) => Self {
                param,
                ..Self::new(
                    StatusCode::FORBIDDEN,
                    "invalid_request_error",
                    Some("model_not_allowed"),
                    e.to_string(),
                )
            },
        }
    }
}

impl From<Box<LimitError>> for GatewayError {
    fn from(e: Box<LimitError>) -> Self {
        Self {
            retry_after: Some(e.retry_after),
            rate: Some(e.info),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                Some("rate_limit_exceeded"),
                e.to_string(),
            )
        }
    }
}

impl From<RouteError> for GatewayError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::ConfigStale(staleness) => Self::config_stale(staleness),
        }
    }
}

impl From<BudgetError> for GatewayError {
    fn from(e: BudgetError) -> Self {
        match e {
            BudgetError::Insufficient { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                format!("You exceeded your current quota: {e}."),
            ),
            BudgetError::Ledger(e) => e.into(),
        }
    }
}

impl From<ReserveError> for GatewayError {
    fn from(e: ReserveError) -> Self {
        match e {
            ReserveError::Insufficient { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                format!("You exceeded your current quota: {e}."),
            ),
            // Fail closed: without the ledger no call may spend.
            ReserveError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("ledger_unavailable"),
                "The budget ledger is unavailable, so the call was not forwarded. Please retry shortly.",
            ),
        }
    }
}

impl From<ProviderError> for GatewayError {
    fn from(e: ProviderError) -> Self {
        let upstream = |status, code, message: String| Self {
            fault: Fault::Upstream,
            ..Self::new(status, "server_error", Some(code), message)
        };
        match &e {
            // Tollgate's provider credential is bad: the gateway's fault, never the
            // tenant's 401 (which would also echo the provider's masked key).
            ProviderError::Status { status, .. } if e.credential_refused() => Self {
                fault: Fault::Internal,
                ..Self::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    Some("upstream_auth_failed"),
                    format!(
                        "The provider refused Tollgate's credential for this model's deployment (HTTP {status}) on every deployment tried; the platform team must fix the provider account."
                    ),
                )
            },
            ProviderError::Status {
                status,
                retry_after,
                message,
            } if e.fault() == Fault::Client => Self {
                fault: Fault::Client,
                retry_after: *retry_after,
                ..Self::new(
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    "invalid_request_error",
                    None,
                    format!("The provider rejected the request: {message}"),
                )
            },
            ProviderError::Status {
                status: 429,
                retry_after,
                ..
            } => Self {
                fault: Fault::Upstream,
                retry_after: *retry_after,
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "requests",
                    Some("rate_limit_exceeded"),
                    "Every deployment of this model is rate limited by its provider. Please retry shortly.",
                )
            },
            ProviderError::Status { status, .. } => upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("The provider failed (HTTP {status}) on every attempt."),
            ),
            ProviderError::Connect(_) => upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                "No deployment of this model could be reached.".into(),
            ),
            ProviderError::Timeout(phase) => upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "The provider did not answer in time ({}).",
                    match phase {
                        TimeoutPhase::FirstByte => "no first byte",
                        TimeoutPhase::Completion => "response not completed",
                    }
                ),
            ),
            ProviderError::Transport(_)
            | ProviderError::Protocol(_)
            | ProviderError::InStream(_) => upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "The provider's response failed.".into(),
            ),
            ProviderError::Credential(_) => Self {
                fault: Fault::Internal,
                ..Self::new(
                    StatusCode::BAD_GATEWAY,
                    "server_error",
                    Some("upstream_auth_failed"),
                    "Tollgate could not authenticate to this model's provider; the platform team must fix the deployment's credential.",
                )
            },
            ProviderError::Unsupported { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unsupported_endpoint"),
                e.to_string(),
            ),
            ProviderError::Untranslatable { param, message } => Self {
                param: param.clone(),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    None,
                    message.clone(),
                )
            },
        }
    }
}
