//! Sealing secrets at rest (orgs' IdP client secrets) with AES-256-GCM under the master
//! key from the environment (`sign_in.master_key`). A sealed value is
//! `nonce (12 bytes) ‖ ciphertext ‖ tag`, bound to what it belongs to (the associated
//! data, e.g. the org id), so a sealed secret copied onto another row does not open.

use base64::Engine;
use rand::RngExt;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sign_in.master_key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("sealed value is damaged or belongs to another key or object")]
    Damaged,
}

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

impl Sealer {
    pub fn from_base64(key: &SecretString) -> Result<Self, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| SealError::BadKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn seal(&self, plaintext: &str, bound_to: &[u8]) -> Vec<u8> {
        // 96 random bits per value: collisions are negligible at the number of secrets
        // stored here (a handful per org).
        let nonce: [u8; NONCE_LEN] = rand::rng().random();
        let mut data = plaintext.as_bytes().to_vec();
        // Sealing fails only for inputs beyond GCM's ~64 GB limit.
        let sealed = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(bound_to),
            &mut data,
        );
        debug_assert!(sealed.is_ok());
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    pub fn open(&self, sealed: &[u8], bound_to: &[u8]) -> Result<SecretString, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(bound_to), &mut data)
            .map_err(|_| SealError::Damaged)?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        Sealer::from_base64(&SecretString::from(key)).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_binding() {
        let s = sealer();
        let sealed = s.seal("client-secret", b"org-a");
        assert!(!sealed.windows(6).any(|w| w == b"client"));
        assert_eq!(
            s.open(&sealed, b"org-a").unwrap().expose_secret(),
            "client-secret"
        );
        assert!(s.open(&sealed, b"org-b").is_err(), "bound to its org");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(s.open(&tampered, b"org-a").is_err());
        let other = Sealer::from_base64(&SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
        ))
        .unwrap();
        assert!(other.open(&sealed, b"org-a").is_err());
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        for bad in ["", "not base64!", "AAAA"] {
            assert!(
                Sealer::from_base64(&SecretString::from(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
