//! OpenID Connect relying party: the authorization-code flow with PKCE (S256), `state`
//! and `nonce`, against any connection (the platform IdP or an org's).
//!
//! The ID token is verified by `openidconnect`: signature with the IdP's JWKS (fetched
//! again when a signature does not verify, so key rotation at the IdP just works),
//! issuer, audience, expiry and nonce. Only asymmetric algorithms are allowed — `none`
//! and HMAC (which would make the client secret a signing key) are refused, whatever
//! the IdP advertises. Claims beyond the standard ones (groups, or any claim a mapping
//! reads) are taken from the verified token's payload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreIdToken, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, IdTokenVerifier, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadata, RedirectUrl, Scope, TokenResponse,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::http_client::BackChannel;
use crate::store::sessions::LoginFlow;

/// Where Tollgate signs people in: the platform IdP (`org_id: None`) or an org's own.
#[derive(Clone)]
pub struct Connection {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The claim holding the person's groups.
    pub groups_claim: String,
    pub org_id: Option<Uuid>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("org_id", &self.org_id)
            .finish_non_exhaustive()
    }
}

/// Who the IdP says signed in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: String,
    /// Every claim of the token, for group mappings.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// The values of `claim`: a string is one value, a list of strings each of them.
    pub fn values(&self, claim: &str) -> Vec<&str> {
        match self.claims.get(claim) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(items)) => {
                items.iter().filter_map(serde_json::Value::as_str).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider discovery failed: {0}")]
    Discovery(String),
    #[error("identity provider configuration is unusable: {0}")]
    Config(String),
    #[error("code exchange refused: {0}")]
    Exchange(String),
    #[error("the token response has no ID token")]
    NoIdToken,
    #[error("ID token refused: {0}")]
    IdToken(String),
}

/// The provider metadata Tollgate reads: the standard fields plus the logout endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutMetadata {
    pub end_session_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for LogoutMetadata {}

type Metadata = ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// How long discovery documents (and their JWKS) are reused before being fetched again.
const METADATA_TTL: Duration = Duration::from_secs(300);

/// Signature algorithms an ID token may use: asymmetric only.
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// A client for `$connection` from its discovered metadata (a macro: the crate's client
/// type spells out every endpoint's state, and both callers want it as discovered).
macro_rules! client {
    ($oidc:expr, $connection:expr, $metadata:expr) => {
        CoreClient::from_provider_metadata(
            $metadata.as_ref().clone(),
            ClientId::new($connection.client_id.clone()),
            Some(ClientSecret::new(
                $connection.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri($oidc.redirect_url.clone())
    };
}

pub struct Oidc {
    http: BackChannel,
    redirect_url: RedirectUrl,
    scopes: Vec<String>,
    metadata: Mutex<HashMap<String, (Instant, Arc<Metadata>)>>,
}

impl Oidc {
    /// `redirect_url`: `<public_url>/auth/callback`.
    pub fn new(
        http: BackChannel,
        redirect_url: &str,
        scopes: Vec<String>,
    ) -> Result<Self, OidcError> {
        Ok(Self {
            http,
            redirect_url: RedirectUrl::new(redirect_url.to_owned())
                .map_err(|e| OidcError::Config(format!("redirect URL: {e}")))?,
            scopes,
            metadata: Mutex::new(HashMap::new()),
        })
    }

    pub fn redirect_url(&self) -> &str {
        self.redirect_url.as_str()
    }

    async fn metadata(&self, issuer: &str, fresh: bool) -> Result<Arc<Metadata>, OidcError> {
        if !fresh {
            let cache = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, metadata)) = cache.get(issuer)
                && at.elapsed() < METADATA_TTL
            {
                return Ok(metadata.clone());
            }
        }
        let url = IssuerUrl::new(issuer.to_owned())
            .map_err(|e| OidcError::Config(format!("issuer URL: {e}")))?;
        let metadata = Arc::new(
            Metadata::discover_async(url, &self.http)
                .await
                .map_err(|e| OidcError::Discovery(error_chain(&e)))?,
        );
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_owned(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// Where to send the browser, and what to keep until it comes back (`state` is the
    /// third value: the caller stores only its hash and binds it to the browser).
    pub async fn begin(
        &self,
        connection: &Connection,
    ) -> Result<(String, LoginFlow, String), OidcError> {
        let metadata = self.metadata(&connection.issuer, false).await?;
        let client = client!(self, connection, metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let flow = LoginFlow {
            issuer: connection.issuer.clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        };
        Ok((url.to_string(), flow, state.secret().clone()))
    }

    /// Exchanges `code` (with the flow's PKCE verifier) and verifies the ID token.
    pub async fn finish(
        &self,
        connection: &Connection,
        flow: &LoginFlow,
        code: &str,
    ) -> Result<Identity, OidcError> {
        let metadata = self.metadata(&connection.issuer, false).await?;
        let client = client!(self, connection, metadata);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let nonce = Nonce::new(flow.nonce.clone());
        match self.verify(connection, &metadata, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Perhaps the IdP rotated its keys since we fetched them: once more, fresh.
                let metadata = self.metadata(&connection.issuer, true).await?;
                self.verify(connection, &metadata, id_token, &nonce)
                    .map_err(|e| OidcError::IdToken(e.to_string()))?;
            }
            Err(e) => return Err(OidcError::IdToken(e.to_string())),
            Ok(()) => {}
        }
        identity_of(&connection.issuer, id_token)
    }

    fn verify(
        &self,
        connection: &Connection,
        metadata: &Metadata,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<(), ClaimsVerificationError> {
        // A public-client verifier holds no client secret, so an HMAC-signed token has
        // no key to verify with even if an algorithm list ever allowed one.
        let verifier: IdTokenVerifier<'_, CoreJsonWebKey> = IdTokenVerifier::new_public_client(
            ClientId::new(connection.client_id.clone()),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_allowed_algs(ALLOWED_ALGS);
        id_token.claims(&verifier, nonce).map(|_| ())
    }

    /// The IdP's logout endpoint, for RP-initiated logout, if it has one.
    pub async fn end_session_url(
        &self,
        connection: &Connection,
        post_logout: &str,
    ) -> Option<String> {
        let metadata = self.metadata(&connection.issuer, false).await.ok()?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut url = reqwest::Url::parse(&endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &connection.client_id)
            .append_pair("post_logout_redirect_uri", post_logout);
        Some(url.to_string())
    }
}

/// The identity in a verified ID token.
fn identity_of(issuer: &str, id_token: &CoreIdToken) -> Result<Identity, OidcError> {
    let jwt = id_token.to_string();
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|p| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&p).ok())
        .ok_or_else(|| OidcError::IdToken("payload is not a JSON object".into()))?;
    let text = |name: &str| {
        payload
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let subject = text("sub").ok_or_else(|| OidcError::IdToken("no sub claim".into()))?;
    Ok(Identity {
        issuer: issuer.to_owned(),
        subject,
        email: text("email"),
        // A string "true" is how some IdPs say it.
        email_verified: matches!(
            payload.get("email_verified"),
            Some(serde_json::Value::Bool(true))
        ) || text("email_verified").as_deref() == Some("true"),
        name: text("name").unwrap_or_default(),
        claims: payload,
    })
}

/// An error with its causes, for logs (never shown to the person signing in).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
