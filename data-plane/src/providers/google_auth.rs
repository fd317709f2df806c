//! Google OAuth2 access tokens for Vertex AI, minted from a service-account key: an RS256
//! JWT assertion (`jsonwebtoken`, ring underneath, like the rest of the gateway) sent to
//! the key's `token_uri` (RFC 7523 `jwt-bearer` grant).
//!
//! Tokens are cached per service account until shortly before they expire. Inside the
//! refresh window a call keeps using the current token while one background task mints
//! the next, so no call waits on Google's token endpoint except the very first (or one
//! after the token has really expired). The key and tokens are secrets: never logged.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::ProviderError;

/// The scope Vertex AI accepts.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh this long before expiry, in the background.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);
/// Never use a token closer than this to its expiry (a call must finish within it).
const USABLE_MARGIN: Duration = Duration::from_secs(30);

/// The fields of a service-account key file this module uses.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: SecretString,
    #[serde(default)]
    pub private_key_id: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A minted token and when it stops being usable.
#[derive(Clone)]
pub struct AccessToken {
    pub secret: SecretString,
    pub expires: Instant,
}

#[derive(Default)]
struct Entry {
    token: Option<AccessToken>,
    /// A background refresh is running: nobody starts another.
    refreshing: bool,
}

/// Tokens by service account (`client_email` + `token_uri` + key id).
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
}

/// What [`TokenCache::get`] decided.
enum Plan {
    Use(SecretString),
    UseAndRefresh(SecretString),
    Mint,
}

impl ServiceAccount {
    /// Parses a key file's JSON; the error never quotes the file (it holds the key).
    pub fn from_json(text: &str) -> Result<Self, ProviderError> {
        serde_json::from_str(text).map_err(|e| {
            ProviderError::Credential(format!(
                "the Vertex credential is not a service-account key file (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }

    fn cache_key(&self) -> String {
        format!(
            "{}\n{}\n{}",
            self.client_email, self.token_uri, self.private_key_id
        )
    }

    /// The signed assertion for a token request at `now` (Unix seconds).
    pub fn assertion(&self, now: u64) -> Result<String, ProviderError> {
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
                .map_err(|_| {
                    ProviderError::Credential(
                        "the service account's private_key is not an RSA PEM key".into(),
                    )
                })?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        if !self.private_key_id.is_empty() {
            header.kid = Some(self.private_key_id.clone());
        }
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|_| ProviderError::Credential("could not sign the token assertion".into()))
    }

    /// Exchanges a fresh assertion for an access token at `token_uri`.
    pub async fn mint(&self, http: &reqwest::Client) -> Result<AccessToken, ProviderError> {
        let asked = Instant::now();
        let assertion = self.assertion(unix_now())?;
        // Both values are URL-safe already (a JWT is base64url and dots) but the grant's.
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let response = http
            .post(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Credential(format!(
                    "the token endpoint is unreachable: {}",
                    without_url(&e)
                ))
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ProviderError::Credential(format!(
                "the token endpoint refused the service account (HTTP {})",
                status.as_u16()
            )));
        }
        let token: TokenResponse = response.json().await.map_err(|_| {
            ProviderError::Credential("the token endpoint's answer is not a token".into())
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        Ok(AccessToken {
            secret: token.access_token,
            expires: asked + lifetime,
        })
    }
}

/// The error's kind without its URL (which may carry nothing secret, but is noise).
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connection refused"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "transport error"
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The process's cache: deployments come and go with snapshots, service accounts stay.
pub static TOKENS: LazyLock<TokenCache> = LazyLock::new(TokenCache::default);

impl TokenCache {
    fn entry(&self, key: &str) -> Arc<tokio::sync::Mutex<Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.entry(key.to_owned()).or_default().clone()
    }

    /// A usable token for `account`: the cached one, refreshed in the background inside
    /// the refresh window; minted (and waited for) only when there is none usable.
    pub async fn get(
        &self,
        account: &ServiceAccount,
        http: &reqwest::Client,
    ) -> Result<SecretString, ProviderError> {
        let key = account.cache_key();
        let entry = self.entry(&key);
        let mut guard = entry.lock().await;
        let plan = match &guard.token {
            Some(t) if Instant::now() + USABLE_MARGIN < t.expires => {
                if Instant::now() + REFRESH_BEFORE >= t.expires && !guard.refreshing {
                    Plan::UseAndRefresh(t.secret.clone())
                } else {
                    Plan::Use(t.secret.clone())
                }
            }
            _ => Plan::Mint,
        };
        match plan {
            Plan::Use(secret) => Ok(secret),
            Plan::UseAndRefresh(secret) => {
                guard.refreshing = true;
                drop(guard);
                let account = ServiceAccount {
                    client_email: account.client_email.clone(),
                    private_key: account.private_key.clone(),
                    private_key_id: account.private_key_id.clone(),
                    token_uri: account.token_uri.clone(),
                };
                let http = http.clone();
                // Not a call's work: nothing is billed or settled here, and shutdown need
                // not wait for it (a lost refresh is redone by the next call).
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    let minted = account.mint(&http).await;
                    let mut guard = entry.lock().await;
                    guard.refreshing = false;
                    match minted {
                        Ok(token) => guard.token = Some(token),
                        Err(e) => {
                            tracing::warn!(account = %account.client_email, error = %e, "background token refresh failed; the current token serves on")
                        }
                    }
                });
                Ok(secret)
            }
            // Holding the entry's lock while minting makes concurrent first calls wait for
            // one token request instead of each sending their own.
            Plan::Mint => {
                let token = account.mint(http).await?;
                let secret = token.secret.clone();
                guard.token = Some(token);
                Ok(secret)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../../tests/fixtures/google/test-service-account.json");
    const PUBLIC: &str =
        include_str!("../../../tests/fixtures/google/test-service-account.pub.pem");

    #[derive(Deserialize, Debug)]
    struct Decoded {
        iss: String,
        scope: String,
        aud: String,
        iat: u64,
        exp: u64,
    }

    #[test]
    fn the_assertion_is_an_rs256_jwt_google_accepts() {
        let account = ServiceAccount::from_json(KEY).unwrap();
        let jwt = account.assertion(1_800_000_000).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["https://oauth2.googleapis.com/token"]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<Decoded>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap(),
            &validation,
        )
        .expect("verifies with the account's public key");
        let c = decoded.claims;
        assert_eq!(c.iss, "gateway@tollgate-test.iam.gserviceaccount.com");
        assert_eq!(c.scope, SCOPE);
        assert_eq!(c.aud, "https://oauth2.googleapis.com/token");
        assert_eq!((c.iat, c.exp), (1_800_000_000, 1_800_003_600));
        assert_eq!(
            decoded.header.kid.as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
    }

    #[test]
    fn a_bad_key_file_is_refused_without_quoting_it() {
        let err = ServiceAccount::from_json("{\"private_key\": \"sekrit\"").unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
        let mut account = ServiceAccount::from_json(KEY).unwrap();
        account.private_key = SecretString::from("-----BEGIN PRIVATE KEY-----\nsekrit\n");
        let err = account.assertion(0).unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
        assert!(!format!("{account:?}").contains("PRIVATE"));
    }
}
