//! The browser session cookie and its CSRF token.
//!
//! The cookie holds a 256-bit random secret; Postgres keeps only its SHA-256
//! (`store::sessions`). Over https it is `__Host-tollgate_session; Secure; HttpOnly;
//! SameSite=Lax; Path=/`. On a plain-http localhost URL (local use only) `Secure` and
//! with it the `__Host-` prefix are dropped, as browsers would refuse the cookie.
//!
//! CSRF: every state-changing request made with the cookie must carry the session's
//! token in `X-CSRF-Token` (or a `csrf_token` form field), derived from the secret with
//! a domain-separated SHA-256 — bound to the session, and nothing to store.

use base64::Engine;
use http::HeaderMap;
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf_token";

/// How cookies are written for this deployment.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// `false` only for a plain-http localhost public URL.
    pub secure: bool,
}

impl Cookies {
    pub fn session_name(&self) -> &'static str {
        if self.secure {
            "__Host-tollgate_session"
        } else {
            "tollgate_session"
        }
    }

    /// The cookie binding a sign-in under way to this browser (its `state`).
    pub fn login_name(&self) -> &'static str {
        if self.secure {
            "__Host-tollgate_login"
        } else {
            "tollgate_login"
        }
    }

    fn attributes(&self) -> &'static str {
        if self.secure {
            "Path=/; HttpOnly; Secure; SameSite=Lax"
        } else {
            "Path=/; HttpOnly; SameSite=Lax"
        }
    }

    pub fn set(&self, name: &str, value: &str, max_age_s: i64) -> String {
        format!("{name}={value}; Max-Age={max_age_s}; {}", self.attributes())
    }

    pub fn clear(&self, name: &str) -> String {
        format!("{name}=; Max-Age=0; {}", self.attributes())
    }
}

/// A fresh 256-bit secret, base64url (for session ids).
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The CSRF token of the session whose cookie value is `secret`.
pub fn csrf_token(secret: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"tollgate csrf v1\0");
    hash.update(secret.as_bytes());
    hex::encode(hash.finalize())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_matches(secret: &str, presented: Option<&str>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    csrf_token(secret)
        .as_bytes()
        .ct_eq(presented.trim().as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(csrf_matches(&a, Some(&csrf_token(&a))));
        assert!(!csrf_matches(&a, Some(&csrf_token(&b))));
        assert!(!csrf_matches(&a, None));
        assert!(!csrf_matches(&a, Some("")));
        assert_ne!(csrf_token(&a), a, "the token is not the session id");
    }

    #[test]
    fn cookies_are_host_prefixed_and_secure_except_on_local_http() {
        let https = Cookies { secure: true };
        let set = https.set(https.session_name(), "v", 60);
        assert!(set.starts_with("__Host-tollgate_session=v;"));
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Domain"));
        let local = Cookies { secure: false };
        assert!(!local.set(local.session_name(), "v", 60).contains("Secure"));
    }

    #[test]
    fn cookie_values_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "a=1; tollgate_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&headers, "tollgate_session"), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
