//! A signed snapshot on its way in: signature → decode → version and region → validate.
//! The same steps run for a snapshot from the stream and for the last-known-good file,
//! which is the signed envelope exactly as received (so it is re-verified on every start
//! and a tampered file is refused).

use std::io::Write;
use std::path::Path;

use prost::Message as _;
use tollgate_proto::config as proto;
use tollgate_signing::TrustedKeys;

use super::{Credentials, Snapshot};
use crate::prices::PriceTable;

/// Why a signed snapshot was refused; the text goes into the Nack and the log.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("signature: {0}")]
    Signature(#[from] tollgate_signing::VerifyError),
    #[error("payload is not a snapshot: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("envelope says version {envelope} but the signed payload says {signed}")]
    VersionMismatch { envelope: u64, signed: u64 },
    #[error("snapshot is for region {got:?}, this gateway serves {want:?}")]
    WrongRegion { got: String, want: String },
    #[error("version {version} is not newer than the applied version {applied}")]
    NotNewer { version: u64, applied: u64 },
    #[error("{0}")]
    Invalid(#[from] super::SnapshotError),
}

/// What must hold for a snapshot to be applied.
pub struct Acceptance<'a> {
    pub trusted: &'a TrustedKeys,
    pub prices: &'a PriceTable,
    pub credentials: &'a Credentials,
    pub region: &'a str,
    /// The version running now; only newer ones are accepted.
    pub applied: u64,
}

impl Acceptance<'_> {
    /// The domain snapshot, if `signed` passes every check. CPU-heavy for big snapshots:
    /// call it off the async workers.
    pub fn accept(&self, signed: &proto::SignedSnapshot) -> Result<Snapshot, Refused> {
        self.trusted
            .verify(&signed.key_id, &signed.payload, &signed.signature)?;
        let wire = proto::Snapshot::decode(signed.payload.as_slice())?;
        if wire.version != signed.version {
            return Err(Refused::VersionMismatch {
                envelope: signed.version,
                signed: wire.version,
            });
        }
        if wire.region != self.region {
            return Err(Refused::WrongRegion {
                got: wire.region,
                want: self.region.to_owned(),
            });
        }
        if wire.version <= self.applied {
            return Err(Refused::NotNewer {
                version: wire.version,
                applied: self.applied,
            });
        }
        let snapshot = Snapshot::from_proto(wire, self.prices, self.credentials)?;
        for model in snapshot.models.values() {
            model.encoding.warm_up();
        }
        Ok(snapshot)
    }
}

/// Writes the envelope to `path` atomically: a crash leaves the old file or the new one,
/// never half of one. The file is mode 0600 (it lists every key's HMAC): written to an
/// `O_EXCL` temp file with a fresh name in `path`'s directory (so nothing planted there
/// is written through), fsynced, then renamed over `path`.
pub fn write_last_known_good(path: &Path, signed: &proto::SignedSnapshot) -> std::io::Result<()> {
    let envelope = proto::SignedSnapshot {
        nonce: 0,
        ..signed.clone()
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "last-known-good".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |bytes: &[u8]| -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    let written = write(&envelope.encode_to_vec());
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum LastKnownGoodError {
    #[error("reading: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a signed snapshot envelope: {0}")]
    Envelope(#[from] prost::DecodeError),
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// The last-known-good snapshot at `path`, verified like one from the stream. `Ok(None)`
/// when there is no file.
pub fn read_last_known_good(
    path: &Path,
    acceptance: &Acceptance<'_>,
) -> Result<Option<(Snapshot, proto::SignedSnapshot)>, LastKnownGoodError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let signed = proto::SignedSnapshot::decode(bytes.as_slice())?;
    let snapshot = acceptance.accept(&signed)?;
    Ok(Some((snapshot, signed)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_signing::SnapshotSigner;

    fn signed(signer: &SnapshotSigner, version: u64, region: &str) -> proto::SignedSnapshot {
        let payload = proto::Snapshot {
            version,
            region: region.into(),
            ..Default::default()
        }
        .encode_to_vec();
        proto::SignedSnapshot {
            version,
            nonce: 1,
            signature: signer.sign(&payload),
            payload,
            key_id: signer.key_id().into(),
        }
    }

    #[test]
    fn every_check_refuses_with_its_reason() {
        let signer = SnapshotSigner::generate("k1").unwrap();
        let public = signer.public_key_base64();
        let trusted = TrustedKeys::parse([("k1", public.as_str())]).unwrap();
        let prices = PriceTable::built_in().unwrap();
        let credentials = Credentials::default();
        let acceptance = Acceptance {
            trusted: &trusted,
            prices: &prices,
            credentials: &credentials,
            region: "eu",
            applied: 5,
        };
        assert_eq!(
            acceptance
                .accept(&signed(&signer, 6, "eu"))
                .unwrap()
                .version,
            6
        );
        let older = acceptance.accept(&signed(&signer, 5, "eu")).unwrap_err();
        assert!(
            matches!(
                older,
                Refused::NotNewer {
                    version: 5,
                    applied: 5
                }
            ),
            "{older}"
        );
        let elsewhere = acceptance.accept(&signed(&signer, 7, "us")).unwrap_err();
        assert!(
            matches!(elsewhere, Refused::WrongRegion { .. }),
            "{elsewhere}"
        );

        let mut relabelled = signed(&signer, 7, "eu");
        relabelled.version = 9;
        assert!(matches!(
            acceptance.accept(&relabelled).unwrap_err(),
            Refused::VersionMismatch {
                envelope: 9,
                signed: 7
            }
        ));
        let mut tampered = signed(&signer, 7, "eu");
        tampered.payload.push(0);
        assert!(matches!(
            acceptance.accept(&tampered).unwrap_err(),
            Refused::Signature(_)
        ));
        let stranger = SnapshotSigner::generate("k2").unwrap();
        assert!(matches!(
            acceptance.accept(&signed(&stranger, 7, "eu")).unwrap_err(),
            Refused::Signature(tollgate_signing::VerifyError::UnknownKey(_))
        ));
    }

    #[test]
    fn last_known_good_round_trips_and_refuses_a_flipped_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lkg");
        let signer = SnapshotSigner::generate("k1").unwrap();
        let public = signer.public_key_base64();
        let trusted = TrustedKeys::parse([("k1", public.as_str())]).unwrap();
        let prices = PriceTable::built_in().unwrap();
        let credentials = Credentials::default();
        let acceptance = Acceptance {
            trusted: &trusted,
            prices: &prices,
            credentials: &credentials,
            region: "eu",
            applied: 0,
        };
        assert!(read_last_known_good(&path, &acceptance).unwrap().is_none());
        write_last_known_good(&path, &signed(&signer, 3, "eu")).unwrap();
        let (snapshot, _) = read_last_known_good(&path, &acceptance).unwrap().unwrap();
        assert_eq!(snapshot.version, 3);

        let bytes = std::fs::read(&path).unwrap();
        let mut envelope = proto::SignedSnapshot::decode(bytes.as_slice()).unwrap();
        let at = envelope.payload.len() - 1;
        envelope.payload[at] ^= 0x01;
        std::fs::write(&path, envelope.encode_to_vec()).unwrap();
        let refused = read_last_known_good(&path, &acceptance).unwrap_err();
        assert!(
            matches!(refused, LastKnownGoodError::Refused(Refused::Signature(_))),
            "{refused}"
        );
        std::fs::write(&path, b"garbage").unwrap();
        assert!(read_last_known_good(&path, &acceptance).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn last_known_good_is_private_and_replaces_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lkg");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let signer = SnapshotSigner::generate("k1").unwrap();
        write_last_known_good(&path, &signed(&signer, 3, "eu")).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(!meta.file_type().is_symlink());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        // Written again (a newer snapshot): still 0600, and no temp file is left behind.
        write_last_known_good(&path, &signed(&signer, 4, "eu")).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "{left:?}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
