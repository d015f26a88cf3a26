//! DHT record keys and record validation.
//!
//! Keys: `/agora/v1/index/<name>` holds a `SignedPackageIndex`,
//! `/agora/v1/manifest/<name>/<version>` a `SignedManifest` (a crate's name has a
//! `/` of its own: `/agora/v1/manifest/crates/serde/1.0.0`). Provider records live
//! under the multihash of the artifact's SHA-256 (`0x12 0x20` + 32 bytes), as every
//! libp2p implementation expects.

use agora_core::{Digest, Manifest, PackageIndex, PackageName, PublicKey, SignedManifest, SignedPackageIndex, Version};
use libp2p::kad;

const INDEX_PREFIX: &str = "/agora/v1/index/";
const MANIFEST_PREFIX: &str = "/agora/v1/manifest/";

/// Largest record value accepted (an index with thousands of versions fits).
pub const MAX_RECORD_SIZE: usize = 1024 * 1024;

/// What a DHT record key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// The index of a package.
    Index(PackageName),
    /// The manifest of one version.
    Manifest(PackageName, Version),
}

impl RecordKey {
    /// The key bytes.
    pub fn to_kad(&self) -> kad::RecordKey {
        kad::RecordKey::new(&self.to_string())
    }

    /// Parses key bytes; `None` for anything that is not an Agora key.
    pub fn from_kad(key: &kad::RecordKey) -> Option<Self> {
        let text = std::str::from_utf8(key.as_ref()).ok()?;
        if let Some(name) = text.strip_prefix(INDEX_PREFIX) {
            return PackageName::parse(name).ok().map(Self::Index);
        }
        let rest = text.strip_prefix(MANIFEST_PREFIX)?;
        // A crate's name holds a `/` (`crates/serde`); a version never does.
        let (name, version_text) = rest.rsplit_once('/')?;
        let name = PackageName::parse(name).ok()?;
        let version = agora_core::parse_version(version_text).ok()?;
        // Only the canonical spelling is a key, so one version has one key.
        (version.to_string() == version_text).then_some(Self::Manifest(name, version))
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(name) => write!(f, "{INDEX_PREFIX}{name}"),
            Self::Manifest(name, version) => write!(f, "{MANIFEST_PREFIX}{name}/{version}"),
        }
    }
}

/// The provider key of an artifact: the multihash of its SHA-256.
pub fn provider_key(digest: &Digest) -> kad::RecordKey {
    let mut multihash = Vec::with_capacity(34);
    multihash.extend_from_slice(&[0x12, 0x20]);
    multihash.extend_from_slice(digest.as_bytes());
    kad::RecordKey::from(multihash)
}

/// The artifact digest of a provider key, if it is a SHA-256 multihash.
pub fn digest_of_provider_key(key: &kad::RecordKey) -> Option<Digest> {
    let bytes = key.as_ref();
    if bytes.len() != 34 || bytes[..2] != [0x12, 0x20] {
        return None;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes[2..]);
    Some(Digest::from_bytes(digest))
}

/// Decides whether a DHT record may be stored or used. The facade supplies one
/// (adding what it knows, such as the owners it has seen); [`SignatureValidator`]
/// checks what can be checked from the record alone.
pub trait RecordValidator: Send + Sync + 'static {
    /// Checks `value` for `key`. `Ok(sequence)` orders copies of the same key: the
    /// highest sequence wins. `Err` rejects the record; only a
    /// [`Rejection::Invalid`] one counts against the peer that sent it.
    fn validate(&self, key: &RecordKey, value: &[u8]) -> Result<u64, Rejection>;
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Forged, malformed, or against the rules: the sender misbehaved.
    Invalid(String),
    /// Validly signed, but it disagrees with what this node already trusts (another
    /// key's claim to a name it knows): honest disagreement, not kept, never
    /// held against the sender.
    Contested(String),
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(reason) | Self::Contested(reason) => f.write_str(reason),
        }
    }
}

/// What a well-formed record says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedRecord {
    /// The key that signed it: an index's owner, a manifest's publisher.
    pub signer: PublicKey,
    /// Orders copies of one key (the index sequence; 0 for immutable manifests).
    pub sequence: u64,
    /// For an index whose owners changed: the first owner, who signed the first
    /// change (the index's chain of changes from it checked out).
    pub founder: Option<PublicKey>,
}

/// Checks what can be checked from the record alone: size, signature, and that it
/// is the record of the key it is stored under.
pub fn check_record(key: &RecordKey, value: &[u8]) -> Result<CheckedRecord, String> {
    inspect(key, value, true)
}

/// [`check_record`] without the signature check, for records this node verified
/// before: ones its catalog accepted, or its DHT store already holds. Keeps
/// ed25519 verifications off the network task (re-verifying every record the
/// node re-stored there at start starved a 100k-package node's catalog sync).
pub(crate) fn check_trusted_record(key: &RecordKey, value: &[u8]) -> Result<CheckedRecord, String> {
    inspect(key, value, false)
}

fn inspect(key: &RecordKey, value: &[u8], verify: bool) -> Result<CheckedRecord, String> {
    if value.len() > MAX_RECORD_SIZE {
        return Err(format!("record of {} bytes exceeds {MAX_RECORD_SIZE}", value.len()));
    }
    match key {
        RecordKey::Index(name) => {
            let inner = if verify {
                SignedPackageIndex::from_bytes(value).map(SignedPackageIndex::into_index)
            } else {
                PackageIndex::from_trusted_bytes(value)
            }
            .map_err(|error| error.to_string())?;
            if &inner.name != name {
                return Err(format!("index of `{}` stored under the key of `{name}`", inner.name));
            }
            let founder = inner.owner_changes.first().map(|change| change.signer);
            Ok(CheckedRecord { signer: inner.owner, sequence: inner.sequence, founder })
        }
        RecordKey::Manifest(name, version) => {
            let inner = if verify {
                SignedManifest::from_bytes(value).map(SignedManifest::into_manifest)
            } else {
                Manifest::from_trusted_bytes(value)
            }
            .map_err(|error| error.to_string())?;
            if inner.name() != name || inner.version() != version {
                return Err(format!(
                    "manifest of {}@{} stored under the key of {name}@{version}",
                    inner.name(),
                    inner.version()
                ));
            }
            // Manifests are immutable: every valid copy is equally good.
            Ok(CheckedRecord { signer: inner.publisher, sequence: 0, founder: None })
        }
    }
}

/// Accepts every record [`check_record`] accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignatureValidator;

impl RecordValidator for SignatureValidator {
    fn validate(&self, key: &RecordKey, value: &[u8]) -> Result<u64, Rejection> {
        check_record(key, value).map(|record| record.sequence).map_err(Rejection::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use agora_core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};

    use super::*;

    #[test]
    fn keys_round_trip_for_native_packages_and_crates() {
        for name in ["serde-helpers", "crates/serde_json", "crates"] {
            let name: PackageName = name.parse().unwrap();
            let version: Version = "1.0.0-beta.1+build.5".parse().unwrap();
            for key in [RecordKey::Index(name.clone()), RecordKey::Manifest(name.clone(), version)] {
                assert_eq!(RecordKey::from_kad(&key.to_kad()), Some(key.clone()), "{key}");
            }
        }
        assert_eq!(
            RecordKey::Manifest("crates/serde".parse().unwrap(), "1.0.0".parse().unwrap()).to_string(),
            "/agora/v1/manifest/crates/serde/1.0.0"
        );
        for bad in ["/agora/v1/index/crates/Serde", "/agora/v1/manifest/a/b/1.0.0", "/agora/v1/manifest/crates/x/1.0"] {
            assert_eq!(RecordKey::from_kad(&kad::RecordKey::new(&bad)), None, "{bad}");
        }
    }

    #[test]
    fn trusted_records_skip_only_the_signature() {
        let publisher = Publisher::new(SecretKey::from_bytes(&[3; 32]));
        let name: PackageName = "held".parse().unwrap();
        let metadata = PackageMetadata::new(name.clone(), "1.2.0".parse().unwrap(), "held record");
        let (manifest, index) =
            publisher.publish(metadata, ArtifactInfo::compute(b"x", 4096).unwrap(), None, 1).unwrap();
        let index_key = RecordKey::Index(name.clone());
        let manifest_key = RecordKey::Manifest(name, "1.2.0".parse().unwrap());
        let mut forged = index.to_bytes();
        *forged.last_mut().unwrap() ^= 1;

        assert!(check_record(&index_key, &forged).is_err(), "the full check verifies the signature");
        assert_eq!(check_trusted_record(&index_key, &forged).unwrap().sequence, 1);
        assert_eq!(check_trusted_record(&manifest_key, &manifest.to_bytes()).unwrap().sequence, 0);
        // Structure, size and key are still checked.
        let other = RecordKey::Index("other".parse().unwrap());
        assert!(check_trusted_record(&other, &index.to_bytes()).unwrap_err().contains("stored under the key"));
        assert!(check_trusted_record(&manifest_key, &index.to_bytes()).is_err());
        assert!(check_trusted_record(&index_key, &vec![0; MAX_RECORD_SIZE + 1]).is_err());
    }
}
