//! What a single request asks the mock to do, parsed from directives in the model name
//! (`gpt-4o+ttfb=200+chunks=3`) and from `x-mock-<name>` headers (headers win).
//!
//! Directives travel inside the model name so that tests going *through* the gateway can
//! steer the mock: the gateway forwards the deployment's upstream model name, not the
//! client's headers.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

/// Every directive the mock understands, with its help text (used by `--help` and by
/// the parser's error message, so the two cannot drift apart).
pub const DIRECTIVES: &[(&str, &str)] = &[
    (
        "ttfb=<ms>",
        "wait this long before sending anything (status line included)",
    ),
    ("delay=<ms>", "wait this long between streamed events"),
    (
        "chunks=<n>",
        "completion length: n content pieces, one token each (default 8; capped by max_tokens)",
    ),
    (
        "status=<code>",
        "answer with this HTTP status and a provider-shaped error body (e.g. 429, 500, 503, 529)",
    ),
    (
        "retry_after=<s>",
        "Retry-After seconds sent with status=429/503 (default 1)",
    ),
    (
        "cut=<n>",
        "streaming: send n events, then break the connection off (no [DONE])",
    ),
    (
        "error_after=<n>",
        "streaming: send n events, then an in-band error event, then end",
    ),
    (
        "stall=<n>",
        "streaming: send n events, then send nothing more, ever",
    ),
    ("hang", "never answer at all (for timeout tests)"),
    (
        "no_usage",
        "leave usage out of the response and out of the stream",
    ),
    (
        "cache_read=<n>",
        "report n prompt tokens as read from the provider's cache",
    ),
    (
        "cache_write=<n>",
        "report n prompt tokens as written to the provider's cache (Anthropic)",
    ),
    (
        "thoughts=<n>",
        "report n thinking/reasoning tokens inside the output count, within the output limit \
         (Gemini thoughtsTokenCount, OpenAI reasoning_tokens, Anthropic and Bedrock output tokens)",
    ),
];

/// Prefix of the per-request override headers: `x-mock-ttfb: 200`.
pub const HEADER_PREFIX: &str = "x-mock-";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub ttfb: Duration,
    pub chunk_delay: Duration,
    pub chunks: u32,
    pub status: Option<StatusCode>,
    pub retry_after_secs: u32,
    pub cut_after: Option<u32>,
    pub error_after: Option<u32>,
    pub stall_after: Option<u32>,
    pub hang: bool,
    pub usage: bool,
    pub cache_read: u64,
    pub cache_write: u64,
    pub thoughts: u64,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            ttfb: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 8,
            status: None,
            retry_after_secs: 1,
            cut_after: None,
            error_after: None,
            stall_after: None,
            hang: false,
            usage: true,
            cache_read: 0,
            cache_write: 0,
            thoughts: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mock: bad directive `{directive}`: {reason}")]
pub struct BehaviorError {
    pub directive: String,
    pub reason: String,
}

impl Behavior {
    /// Directives from the model name first, then headers, so a header overrides.
    pub fn parse(model: &str, headers: &HeaderMap) -> Result<Self, BehaviorError> {
        let mut behavior = Self::default();
        for directive in model.split('+').skip(1) {
            let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
            behavior.apply(name, value)?;
        }
        for (name, value) in headers {
            if let Some(name) = name.as_str().strip_prefix(HEADER_PREFIX) {
                let value = value.to_str().map_err(|_| BehaviorError {
                    directive: name.to_owned(),
                    reason: "header value is not ASCII".into(),
                })?;
                behavior.apply(&name.replace('-', "_"), value)?;
            }
        }
        Ok(behavior)
    }

    fn apply(&mut self, name: &str, value: &str) -> Result<(), BehaviorError> {
        let number = |value: &str| -> Result<u64, BehaviorError> {
            value.parse().map_err(|_| BehaviorError {
                directive: format!("{name}={value}"),
                reason: "expected a non-negative integer".into(),
            })
        };
        let small = |value: &str| -> Result<u32, BehaviorError> {
            u32::try_from(number(value)?).map_err(|_| BehaviorError {
                directive: format!("{name}={value}"),
                reason: "number too large".into(),
            })
        };
        match name {
            "ttfb" => self.ttfb = Duration::from_millis(number(value)?),
            "delay" => self.chunk_delay = Duration::from_millis(number(value)?),
            "chunks" => self.chunks = small(value)?,
            "status" => {
                let code = u16::try_from(number(value)?).ok();
                let status = code.and_then(|c| StatusCode::from_u16(c).ok());
                self.status = Some(status.ok_or_else(|| BehaviorError {
                    directive: format!("status={value}"),
                    reason: "not an HTTP status code".into(),
                })?);
            }
            "retry_after" => self.retry_after_secs = small(value)?,
            "cut" => self.cut_after = Some(small(value)?),
            "error_after" => self.error_after = Some(small(value)?),
            "stall" => self.stall_after = Some(small(value)?),
            "hang" => self.hang = true,
            "no_usage" => self.usage = false,
            "cache_read" => self.cache_read = number(value)?,
            "cache_write" => self.cache_write = number(value)?,
            "thoughts" => self.thoughts = number(value)?,
            _ => {
                let known: Vec<&str> = DIRECTIVES.iter().map(|(d, _)| *d).collect();
                return Err(BehaviorError {
                    directive: name.to_owned(),
                    reason: format!("unknown; known directives: {}", known.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Completion tokens for a request that allows at most `max_tokens`.
    pub fn completion_tokens(&self, max_tokens: Option<u64>) -> u32 {
        match max_tokens {
            Some(max) => self.chunks.min(u32::try_from(max).unwrap_or(u32::MAX)),
            None => self.chunks,
        }
    }

    /// Thinking tokens reported beside an answer of `completion` tokens: `thoughts`, within
    /// what `max_tokens` leaves (every provider counts thinking inside its output limit).
    pub fn thinking_tokens(&self, max_tokens: Option<u64>, completion: u32) -> u64 {
        match max_tokens {
            Some(max) => self.thoughts.min(max.saturating_sub(u64::from(completion))),
            None => self.thoughts,
        }
    }

    /// True when `max_tokens` cut the answer short (finish reason "length").
    pub fn truncated(&self, max_tokens: Option<u64>) -> bool {
        self.completion_tokens(max_tokens) < self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_model_name_is_default_behaviour() {
        let b = Behavior::parse("gpt-4o", &HeaderMap::new()).unwrap();
        assert_eq!(b, Behavior::default());
    }

    #[test]
    fn directives_in_model_name_and_headers_combine_headers_winning() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-chunks", "5".parse().unwrap());
        headers.insert("x-mock-retry-after", "7".parse().unwrap());
        let b = Behavior::parse("m+chunks=3+status=429+hang+ttfb=20", &headers).unwrap();
        assert_eq!(b.chunks, 5);
        assert_eq!(b.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(b.retry_after_secs, 7);
        assert!(b.hang);
        assert_eq!(b.ttfb, Duration::from_millis(20));
    }

    #[test]
    fn unknown_or_malformed_directives_are_named() {
        let err = Behavior::parse("m+sloow=3", &HeaderMap::new()).unwrap_err();
        assert_eq!(err.directive, "sloow");
        let err = Behavior::parse("m+chunks=many", &HeaderMap::new()).unwrap_err();
        assert_eq!(err.directive, "chunks=many");
        let err = Behavior::parse("m+status=1000", &HeaderMap::new()).unwrap_err();
        assert_eq!(err.directive, "status=1000");
    }

    #[test]
    fn max_tokens_caps_completion() {
        let b = Behavior::default();
        assert_eq!(b.completion_tokens(Some(3)), 3);
        assert!(b.truncated(Some(3)));
        assert_eq!(b.completion_tokens(None), 8);
        assert!(!b.truncated(Some(8)));
    }
}
