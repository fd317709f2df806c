//! The back-channel HTTP client of sign-in (discovery, JWKS, token endpoint): reqwest 0.13
//! adapted to `openidconnect`'s [`AsyncHttpClient`] (its own `reqwest` feature would pull
//! a second reqwest). It never follows redirects — a redirect from an IdP's token endpoint
//! could otherwise carry the authorization code or client secret elsewhere (the crate's
//! docs ask for this) — and every request has a deadline.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Largest response read from an IdP (discovery documents and JWKS are small).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct BackChannel {
    client: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum BackChannelError {
    #[error("identity provider unreachable")]
    Transport(#[source] reqwest::Error),
    #[error("identity provider response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("identity provider response could not be read")]
    Http(#[source] http::Error),
}

impl BackChannel {
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()?;
        Ok(Self { client })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, BackChannelError> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(BackChannelError::Transport)?;
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
        {
            return Err(BackChannelError::TooLarge);
        }
        let body = response
            .bytes()
            .await
            .map_err(BackChannelError::Transport)?;
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(BackChannelError::TooLarge);
        }
        builder.body(body.to_vec()).map_err(BackChannelError::Http)
    }
}

impl<'c> AsyncHttpClient<'c> for BackChannel {
    type Error = BackChannelError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
