//! The virtual key format, `tg_<public id>_<secret>`, and its HMAC — one definition for
//! the control plane (which mints keys) and the gateways (which check them).
//!
//! The public id finds the key; the secret is only ever compared as
//! `HMAC-SHA256(pepper, secret)`, in constant time. Neither the secret nor the pepper is
//! logged or stored anywhere.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;

pub const KEY_PREFIX: &str = "tg_";
/// Base62 characters of the public id.
pub const PUBLIC_ID_LEN: usize = 12;
/// Base62 characters of the secret: 32 × log2(62) ≈ 190 bits (≥ 128 required).
pub const SECRET_LEN: usize = 32;
/// Secret characters shown in the display prefix (so people can tell keys apart).
const DISPLAY_SECRET_CHARS: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A key as presented by a client, split into its parts (borrowed from the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub public_id: &'a str,
    pub secret: &'a str,
}

/// Splits `tg_<public id>_<secret>`; `None` when the text is not shaped like a key.
pub fn parse(key: &str) -> Option<PresentedKey<'_>> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (public_id, secret) = rest.split_once('_')?;
    let base62 = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (base62(public_id) && base62(secret)).then_some(PresentedKey { public_id, secret })
}

/// `HMAC-SHA256(pepper, secret)`.
pub fn secret_hmac(pepper: &[u8], secret: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).unwrap_or_else(|_| unreachable_hmac());
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Constant-time check of `secret` against a stored HMAC.
pub fn verify(pepper: &[u8], secret: &str, expected: &[u8]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).unwrap_or_else(|_| unreachable_hmac());
    mac.update(secret.as_bytes());
    mac.verify_slice(expected).is_ok()
}

// HMAC accepts keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(&[0]).unwrap_or_else(|_| unreachable_hmac())
}

/// A freshly generated key: the full text is shown once, the rest goes into config.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub full: String,
    pub public_id: String,
    pub display_prefix: String,
    pub secret_hmac: [u8; 32],
}

pub fn generate(pepper: &[u8]) -> NewKey {
    let public_id = random_base62(PUBLIC_ID_LEN);
    let secret = random_base62(SECRET_LEN);
    NewKey {
        full: format!("{KEY_PREFIX}{public_id}_{secret}"),
        display_prefix: format!(
            "{KEY_PREFIX}{public_id}_{}",
            &secret[..DISPLAY_SECRET_CHARS]
        ),
        secret_hmac: secret_hmac(pepper, &secret),
        public_id,
    }
}

fn random_base62(len: usize) -> String {
    // ThreadRng is a CSPRNG (ChaCha, reseeded from the OS).
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate(b"pepper");
        let presented = parse(&key.full).unwrap();
        assert_eq!(presented.public_id, key.public_id);
        assert_eq!(presented.secret.len(), SECRET_LEN);
        assert!(verify(b"pepper", presented.secret, &key.secret_hmac));
        assert!(!verify(b"other pepper", presented.secret, &key.secret_hmac));
        assert!(key.full.starts_with(&key.display_prefix));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in [
            "",
            "tg_",
            "tg_abc",
            "tg__secret",
            "tg_abc_",
            "sk-abc_def",
            "tg_a-b_c",
            "tg_ab_c d",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_wrong_secret_does_not_verify() {
        let key = generate(b"p");
        assert!(!verify(b"p", "not-the-secret", &key.secret_hmac));
        assert!(!verify(b"p", "x", &[]));
    }
}
