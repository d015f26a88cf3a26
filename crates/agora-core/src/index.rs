//! The package index: the owner-signed list of every version of one name.
//!
//! The index is what makes a name *owned*. Its rules, enforced by
//! [`PackageIndex::check_successor`], are the registry's invariants: the owner never
//! changes, the sequence strictly grows, a published version never disappears and
//! never changes digest or size, and the only mutable bit is `yanked`.

use serde::{Deserialize, Serialize};

use crate::encoding::{Decoder, Encoder};
use crate::manifest::{Manifest, split_signature};
use crate::{Digest, Error, PackageName, PublicKey, Result, SecretKey, Signature, Version, VersionReq};

const INDEX_DOMAIN: &str = "agora/index/v1";

/// Most versions one index may list.
pub(crate) const MAX_VERSIONS: usize = 10_000;

/// One version as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionEntry {
    /// The version.
    pub version: Version,
    /// SHA-256 of its artifact.
    pub digest: Digest,
    /// Artifact size in bytes.
    pub size: u64,
    /// Whether the owner has yanked it (still fetchable, no longer chosen by default).
    pub yanked: bool,
}

/// All versions of one package, owned by one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageIndex {
    /// Package name.
    pub name: PackageName,
    /// The key that owns the name.
    pub owner: PublicKey,
    /// Strictly increasing with every update.
    pub sequence: u64,
    /// Unix seconds of the last update.
    pub updated_at: u64,
    /// Versions in ascending order.
    pub versions: Vec<VersionEntry>,
}

/// What an index update changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexChange {
    /// Versions that are new.
    pub added: Vec<Version>,
    /// Versions newly yanked.
    pub yanked: Vec<Version>,
    /// Versions no longer yanked.
    pub unyanked: Vec<Version>,
}

impl IndexChange {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.yanked.is_empty() && self.unyanked.is_empty()
    }
}

impl PackageIndex {
    /// The entry for `version`.
    pub fn entry(&self, version: &Version) -> Option<&VersionEntry> {
        self.versions.binary_search_by(|entry| entry.version.cmp(version)).ok().map(|at| &self.versions[at])
    }

    /// The version a user gets by default: the highest non-yanked release, else the
    /// highest non-yanked pre-release.
    pub fn latest(&self) -> Option<&VersionEntry> {
        let live = || self.versions.iter().rev().filter(|entry| !entry.yanked);
        live().find(|entry| entry.version.pre.is_empty()).or_else(|| live().next())
    }

    /// The highest non-yanked version matching `requirement`.
    pub fn matching(&self, requirement: &VersionReq) -> Option<&VersionEntry> {
        self.versions.iter().rev().find(|entry| !entry.yanked && requirement.matches(&entry.version))
    }

    /// Checks structure: versions strictly ascending and within the limit.
    pub fn validate(&self) -> Result<()> {
        if self.versions.len() > MAX_VERSIONS {
            return Err(Error::InvalidIndex(format!("at most {MAX_VERSIONS} versions, found {}", self.versions.len())));
        }
        if let Some(pair) = self.versions.windows(2).find(|pair| pair[0].version >= pair[1].version) {
            return Err(Error::InvalidIndex(format!(
                "versions must be strictly ascending, found {} before {}",
                pair[0].version, pair[1].version
            )));
        }
        if let Some(entry) =
            self.versions.iter().find(|entry| entry.version.to_string().len() > crate::name::MAX_VERSION_LEN)
        {
            return Err(Error::InvalidIndex(format!("version {} is too long", entry.version)));
        }
        Ok(())
    }

    /// Checks that `next` may replace `self`, and says what it changes.
    pub fn check_successor(&self, next: &PackageIndex) -> Result<IndexChange> {
        let illegal = |reason: String| Err(Error::IllegalUpdate { name: self.name.clone(), reason });
        if next.name != self.name {
            return illegal(format!("the update is for `{}`", next.name));
        }
        if next.owner != self.owner {
            return Err(Error::NotOwner {
                name: self.name.clone(),
                owner: self.owner.to_hex(),
                signer: next.owner.to_hex(),
            });
        }
        if next.sequence <= self.sequence {
            return Err(Error::StaleSequence {
                name: self.name.clone(),
                current: self.sequence,
                offered: next.sequence,
            });
        }
        let mut change = IndexChange::default();
        for old in &self.versions {
            let Some(new) = next.entry(&old.version) else {
                return illegal(format!(
                    "version {} would be removed; published versions are permanent, yank it instead",
                    old.version
                ));
            };
            if new.digest != old.digest || new.size != old.size {
                return Err(Error::VersionExists {
                    name: self.name.clone(),
                    version: old.version.clone(),
                    existing: old.digest,
                });
            }
            match (old.yanked, new.yanked) {
                (false, true) => change.yanked.push(old.version.clone()),
                (true, false) => change.unyanked.push(old.version.clone()),
                _ => {}
            }
        }
        change.added = next
            .versions
            .iter()
            .filter(|new| self.entry(&new.version).is_none())
            .map(|new| new.version.clone())
            .collect();
        Ok(change)
    }

    /// Checks that this index vouches for `manifest`: the same name, signed by
    /// the index's owner, for a version the index lists with the same artifact
    /// digest and size. [`Error::NotOwner`] for another signer (a claim of its
    /// own, not a lie), [`Error::VersionNotFound`] for an unlisted version (a
    /// newer index may list it), [`Error::IllegalUpdate`] otherwise.
    pub fn check_vouches_for(&self, manifest: &Manifest) -> Result<()> {
        let (name, version) = (manifest.name(), manifest.version());
        if name != &self.name {
            return Err(Error::IllegalUpdate {
                name: self.name.clone(),
                reason: format!("a manifest of `{name}` came with the index of `{}`", self.name),
            });
        }
        if manifest.publisher != self.owner {
            return Err(Error::NotOwner {
                name: name.clone(),
                owner: self.owner.to_hex(),
                signer: manifest.publisher.to_hex(),
            });
        }
        let Some(entry) = self.entry(version) else {
            return Err(Error::VersionNotFound { name: name.clone(), version: version.clone() });
        };
        let artifact = &manifest.artifact;
        if entry.digest != artifact.digest || entry.size != artifact.size {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!(
                    "the manifest of {version} promises an artifact of {} bytes with digest {}, \
                     but the index lists {} bytes with digest {}",
                    artifact.size, artifact.digest, entry.size, entry.digest
                ),
            });
        }
        Ok(())
    }

    /// The canonical encoding the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut encoder = Encoder::new(INDEX_DOMAIN);
        encoder.str(self.name.as_str());
        encoder.public_key(&self.owner);
        encoder.u64(self.sequence);
        encoder.u64(self.updated_at);
        encoder.len(self.versions.len());
        for entry in &self.versions {
            encoder.str(&entry.version.to_string());
            encoder.digest(&entry.digest);
            encoder.u64(entry.size);
            encoder.bool(entry.yanked);
        }
        encoder.finish()
    }

    /// Signs with `key`, which must be the owner.
    pub fn sign(self, key: &SecretKey) -> Result<SignedPackageIndex> {
        self.validate()?;
        if key.public_key() != self.owner {
            return Err(Error::NotOwner {
                name: self.name.clone(),
                owner: self.owner.to_hex(),
                signer: key.public_key().to_hex(),
            });
        }
        let signature = key.sign(&self.canonical_bytes());
        Ok(SignedPackageIndex { index: self, signature })
    }

    /// Decodes the index inside a signed wire form ([`SignedPackageIndex::to_bytes`])
    /// **without checking the signature**. Only for bytes this program verified
    /// before it stored them (a store reading its own rows back); anything from
    /// elsewhere goes through [`SignedPackageIndex::from_bytes`]. The structure is
    /// still decoded and validated in full.
    pub fn from_trusted_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, _) = split_signature("signed package index", bytes)?;
        Self::decode(body)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut decoder = Decoder::new("package index", INDEX_DOMAIN, bytes)?;
        let name = PackageName::parse(decoder.str()?)?;
        let owner = decoder.public_key()?;
        let sequence = decoder.u64()?;
        let updated_at = decoder.u64()?;
        let count = decoder.count(MAX_VERSIONS, 4 + 32 + 8 + 1)?;
        let mut versions = Vec::with_capacity(count);
        for _ in 0..count {
            let version = crate::parse_version(decoder.str()?)?;
            let digest = decoder.digest()?;
            let size = decoder.u64()?;
            let yanked = decoder.bool()?;
            versions.push(VersionEntry { version, digest, size, yanked });
        }
        decoder.finish()?;
        let index = PackageIndex { name, owner, sequence, updated_at, versions };
        index.validate()?;
        Ok(index)
    }
}

/// A package index with a verified signature by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedSignedIndex")]
pub struct SignedPackageIndex {
    index: PackageIndex,
    signature: Signature,
}

impl SignedPackageIndex {
    /// The index.
    pub fn index(&self) -> &PackageIndex {
        &self.index
    }

    /// The owner's signature over [`PackageIndex::canonical_bytes`].
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Re-checks structure and signature.
    pub fn verify(&self) -> Result<()> {
        self.index.validate()?;
        if self.index.owner.verify(&self.index.canonical_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(Error::InvalidSignature { what: format!("package index of `{}`", self.index.name) })
        }
    }

    /// The wire form: the canonical index followed by the 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.index.canonical_bytes();
        bytes.extend_from_slice(self.signature.as_bytes());
        bytes
    }

    /// Decodes and verifies the wire form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, signature) = split_signature("signed package index", bytes)?;
        let signed = Self { index: PackageIndex::decode(body)?, signature };
        signed.verify()?;
        Ok(signed)
    }

    /// Takes the index out.
    pub fn into_index(self) -> PackageIndex {
        self.index
    }
}

#[derive(Deserialize)]
struct UncheckedSignedIndex {
    index: PackageIndex,
    signature: Signature,
}

impl TryFrom<UncheckedSignedIndex> for SignedPackageIndex {
    type Error = Error;

    fn try_from(unchecked: UncheckedSignedIndex) -> Result<Self> {
        let signed = SignedPackageIndex { index: unchecked.index, signature: unchecked.signature };
        signed.verify()?;
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(version: &str, yanked: bool) -> VersionEntry {
        VersionEntry { version: version.parse().unwrap(), digest: Digest::of(version.as_bytes()), size: 10, yanked }
    }

    fn index(owner: &SecretKey, sequence: u64, versions: Vec<VersionEntry>) -> PackageIndex {
        PackageIndex { name: "demo".parse().unwrap(), owner: owner.public_key(), sequence, updated_at: 1, versions }
    }

    #[test]
    fn trusted_decoding_skips_only_the_signature() {
        let owner = SecretKey::generate();
        let signed = index(&owner, 3, vec![entry("1.0.0", false)]).sign(&owner).unwrap();
        let mut bytes = signed.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(SignedPackageIndex::from_bytes(&bytes).is_err());
        assert_eq!(&PackageIndex::from_trusted_bytes(&bytes).unwrap(), signed.index());
        bytes[0] ^= 1;
        assert!(PackageIndex::from_trusted_bytes(&bytes).is_err());
    }

    #[test]
    fn successor_rules() {
        let owner = SecretKey::generate();
        let current = index(&owner, 1, vec![entry("1.0.0", false)]);

        let next = index(&owner, 2, vec![entry("1.0.0", true), entry("1.1.0", false)]);
        let change = current.check_successor(&next).unwrap();
        assert_eq!(change.added, vec!["1.1.0".parse::<Version>().unwrap()]);
        assert_eq!(change.yanked, vec!["1.0.0".parse::<Version>().unwrap()]);

        let stale = index(&owner, 1, vec![entry("1.0.0", true)]);
        assert!(matches!(current.check_successor(&stale), Err(Error::StaleSequence { .. })));

        let thief = index(&SecretKey::generate(), 2, vec![entry("1.0.0", true)]);
        assert!(matches!(current.check_successor(&thief), Err(Error::NotOwner { .. })));

        let removed = index(&owner, 2, vec![entry("1.1.0", false)]);
        assert!(matches!(current.check_successor(&removed), Err(Error::IllegalUpdate { .. })));

        let mut rewritten = index(&owner, 2, vec![entry("1.0.0", false)]);
        rewritten.versions[0].digest = Digest::of(b"other");
        assert!(matches!(current.check_successor(&rewritten), Err(Error::VersionExists { .. })));
    }

    #[test]
    fn latest_prefers_releases_and_skips_yanked() {
        let owner = SecretKey::generate();
        let idx = index(&owner, 1, vec![entry("1.0.0", false), entry("1.1.0", true), entry("2.0.0-rc.1", false)]);
        assert_eq!(idx.latest().map(|e| e.version.to_string()), Some("1.0.0".into()));
        let only_pre = index(&owner, 1, vec![entry("2.0.0-rc.1", false)]);
        assert_eq!(only_pre.latest().map(|e| e.version.to_string()), Some("2.0.0-rc.1".into()));
        let all_yanked = index(&owner, 1, vec![entry("1.0.0", true)]);
        assert!(all_yanked.latest().is_none());
        assert_eq!(idx.matching(&"^1".parse().unwrap()).map(|e| e.version.to_string()), Some("1.0.0".into()));
    }

    #[test]
    fn unsorted_versions_are_rejected() {
        let owner = SecretKey::generate();
        let unsorted = index(&owner, 1, vec![entry("2.0.0", false), entry("1.0.0", false)]);
        assert!(unsorted.sign(&owner).is_err());
    }

    #[test]
    fn only_the_owner_signs() {
        let owner = SecretKey::generate();
        assert!(matches!(index(&owner, 1, vec![]).sign(&SecretKey::generate()), Err(Error::NotOwner { .. })));
    }

    proptest! {
        #[test]
        fn round_trips_and_any_flipped_byte_breaks_it(
            count in 0usize..20,
            flags in proptest::collection::vec(any::<bool>(), 20),
            index_at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let owner = SecretKey::generate();
            let versions = (0..count).map(|i| entry(&format!("1.{i}.0"), flags[i])).collect();
            let signed = index(&owner, 7, versions).sign(&owner).unwrap();
            let mut bytes = signed.to_bytes();
            prop_assert_eq!(SignedPackageIndex::from_bytes(&bytes).unwrap(), signed.clone());
            let json = serde_json::to_string(&signed).unwrap();
            prop_assert_eq!(serde_json::from_str::<SignedPackageIndex>(&json).unwrap(), signed);
            let at = index_at.index(bytes.len());
            bytes[at] ^= 1 << bit;
            prop_assert!(SignedPackageIndex::from_bytes(&bytes).is_err());
        }
    }
}
