//! Ed25519 signatures over config snapshots.
//!
//! The control plane holds one [`SnapshotSigner`] (a PKCS#8 PEM private key and the id
//! gateways know it by); gateways hold [`TrustedKeys`], several public keys at once, so
//! the signing key can be rotated without downtime: trust the new key everywhere, switch
//! the control plane to it, then drop the old one.
//!
//! Signatures are over the exact payload bytes (a prost-encoded snapshot), so nothing is
//! ever re-encoded before verification.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngExt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key id must be 1-64 characters of [A-Za-z0-9._-]")]
    BadKeyId,
    #[error("not a PKCS#8 PEM Ed25519 private key")]
    BadPrivateKey,
    #[error("public key {key_id:?}: not the base64 of 32 bytes of an Ed25519 public key")]
    BadPublicKey { key_id: String },
}

/// Why a signed payload was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("unsigned (no signature or no key id)")]
    Unsigned,
    #[error("signed by key id {0:?}, which this gateway does not trust")]
    UnknownKey(String),
    #[error("signature is not 64 bytes")]
    Malformed,
    #[error("signature does not verify with trusted key {0:?}")]
    BadSignature(String),
}

fn valid_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The control plane's signing key and the id it is published under.
pub struct SnapshotSigner {
    key_id: String,
    key: SigningKey,
}

impl fmt::Debug for SnapshotSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotSigner")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl SnapshotSigner {
    /// A fresh random key.
    pub fn generate(key_id: &str) -> Result<Self, KeyError> {
        let seed: [u8; 32] = rand::rng().random();
        Self::from_seed(key_id, &seed)
    }

    fn from_seed(key_id: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        if !valid_key_id(key_id) {
            return Err(KeyError::BadKeyId);
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A key as `openssl genpkey -algorithm ed25519` (or [`Self::to_pem`]) writes it.
    pub fn from_pem(key_id: &str, pem: &str) -> Result<Self, KeyError> {
        if !valid_key_id(key_id) {
            return Err(KeyError::BadKeyId);
        }
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::BadPrivateKey)?;
        Ok(Self {
            key_id: key_id.to_owned(),
            key,
        })
    }

    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|pem| pem.to_string())
            // Encoding 32 bytes of a valid key into PEM has no failure case in practice.
            .unwrap_or_default()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// What gateways put in their trusted keys for this signer.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key.verifying_key().as_bytes())
    }

    /// 64 bytes of Ed25519 signature over `payload`.
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        self.key.sign(payload).to_bytes().to_vec()
    }
}

/// The public keys a gateway accepts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// `(key id, base64 public key)` pairs; every bad entry is an error.
    pub fn parse<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        for (key_id, public) in entries {
            if !valid_key_id(key_id) {
                return Err(KeyError::BadKeyId);
            }
            let bad = || KeyError::BadPublicKey {
                key_id: key_id.to_owned(),
            };
            let bytes: [u8; 32] = BASE64
                .decode(public.trim())
                .map_err(|_| bad())?
                .try_into()
                .map_err(|_| bad())?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad())?;
            if key.is_weak() {
                return Err(bad());
            }
            keys.insert(key_id.to_owned(), key);
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// `Ok` only if `signature` is a valid strict Ed25519 signature over `payload` by the
    /// trusted key `key_id`.
    pub fn verify(
        &self,
        key_id: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        if key_id.is_empty() || signature.is_empty() {
            return Err(VerifyError::Unsigned);
        }
        let key = self
            .keys
            .get(key_id)
            .ok_or_else(|| VerifyError::UnknownKey(key_id.to_owned()))?;
        let signature = Signature::from_slice(signature).map_err(|_| VerifyError::Malformed)?;
        key.verify_strict(payload, &signature)
            .map_err(|_| VerifyError::BadSignature(key_id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(signer: &SnapshotSigner) -> TrustedKeys {
        let public = signer.public_key_base64();
        TrustedKeys::parse([(signer.key_id(), public.as_str())]).unwrap()
    }

    #[test]
    fn a_signature_verifies_only_for_its_payload_and_key() {
        let signer = SnapshotSigner::generate("k1").unwrap();
        let trusted = trust(&signer);
        let signature = signer.sign(b"snapshot v7");
        assert_eq!(trusted.verify("k1", b"snapshot v7", &signature), Ok(()));
        assert_eq!(
            trusted.verify("k1", b"snapshot v8", &signature),
            Err(VerifyError::BadSignature("k1".into()))
        );
        let mut flipped = signature.clone();
        flipped[10] ^= 1;
        assert!(trusted.verify("k1", b"snapshot v7", &flipped).is_err());
        assert_eq!(
            trusted.verify("k2", b"snapshot v7", &signature),
            Err(VerifyError::UnknownKey("k2".into()))
        );
        assert_eq!(
            trusted.verify("k1", b"snapshot v7", &[]),
            Err(VerifyError::Unsigned)
        );
        assert_eq!(
            trusted.verify("k1", b"snapshot v7", &signature[..63]),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn another_key_with_the_same_id_is_refused() {
        let real = SnapshotSigner::generate("k1").unwrap();
        let impostor = SnapshotSigner::generate("k1").unwrap();
        let signature = impostor.sign(b"payload");
        assert_eq!(
            trust(&real).verify("k1", b"payload", &signature),
            Err(VerifyError::BadSignature("k1".into()))
        );
    }

    #[test]
    fn pem_round_trips_and_rotation_trusts_two_keys() {
        let old = SnapshotSigner::generate("2026-01").unwrap();
        let pem = old.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
        let reloaded = SnapshotSigner::from_pem("2026-01", &pem).unwrap();
        assert_eq!(reloaded.public_key_base64(), old.public_key_base64());

        let new = SnapshotSigner::generate("2026-02").unwrap();
        let (a, b) = (old.public_key_base64(), new.public_key_base64());
        let trusted =
            TrustedKeys::parse([("2026-01", a.as_str()), ("2026-02", b.as_str())]).unwrap();
        assert_eq!(trusted.verify("2026-01", b"x", &old.sign(b"x")), Ok(()));
        assert_eq!(trusted.verify("2026-02", b"x", &new.sign(b"x")), Ok(()));
    }

    #[test]
    fn bad_keys_and_ids_are_named() {
        assert_eq!(
            SnapshotSigner::from_pem("k", "not pem").unwrap_err(),
            KeyError::BadPrivateKey
        );
        assert_eq!(
            SnapshotSigner::generate("has space").unwrap_err(),
            KeyError::BadKeyId
        );
        assert_eq!(
            TrustedKeys::parse([("k", "AAAA")]).unwrap_err(),
            KeyError::BadPublicKey { key_id: "k".into() }
        );
    }
}
