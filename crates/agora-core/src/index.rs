//! The package index: the owner-signed list of every version of one name.
//!
//! The index is what makes a name *owned*. Its rules, enforced by
//! [`PackageIndex::check_successor`], are the registry's invariants: only a
//! current owner signs the next index, the owners change only through an
//! [`OwnerChange`] signed by a current owner (so a package outlives a lost key:
//! a co-owner replaces it, or the old key hands over to a new one), the sequence
//! strictly grows, a published version never disappears and never changes
//! digest or size, and the only mutable bit is `yanked`.
//!
//! Two encodings: `agora/index/v1`, a sole owner that never changed (what every
//! index was before owner lists; such records keep verifying), and
//! `agora/index/v2`, with the owner list, the history of owner changes and the
//! publisher of each version. An index is encoded in v1 exactly when it can be,
//! so every index has one canonical encoding.

use serde::{Deserialize, Serialize};

use crate::encoding::{Decoder, Encoder};
use crate::manifest::{Manifest, split_signature};
use crate::{Digest, Error, PackageName, PublicKey, Result, SecretKey, Signature, Version, VersionReq};

const INDEX_DOMAIN: &str = "agora/index/v1";
const INDEX_DOMAIN_V2: &str = "agora/index/v2";
const OWNER_CHANGE_DOMAIN: &str = "agora/owners/v1";

/// Most versions one index may list.
pub(crate) const MAX_VERSIONS: usize = 10_000;
/// Most owners one name may have at once.
pub const MAX_OWNERS: usize = 8;
/// Most owner changes one index may record: a key rotation a year for decades.
pub const MAX_OWNER_CHANGES: usize = 32;

/// A change of a name's owners, signed by one of the owners before it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OwnerChange {
    /// The index sequence the change took effect at.
    pub sequence: u64,
    /// The owners from then on.
    pub owners: Vec<PublicKey>,
    /// The owner that made the change.
    pub signer: PublicKey,
    /// `signer`'s signature over the change (see [`OwnerChange::signed_bytes`]).
    pub signature: Signature,
}

impl OwnerChange {
    /// Signs a change of `name`'s owners to `owners`, effective at `sequence`.
    pub fn sign(name: &PackageName, sequence: u64, owners: Vec<PublicKey>, key: &SecretKey) -> Self {
        let signature = key.sign(&Self::signed_bytes(name, sequence, &owners));
        Self { sequence, owners, signer: key.public_key(), signature }
    }

    /// What the signature covers: the name, the sequence and the new owners.
    pub fn signed_bytes(name: &PackageName, sequence: u64, owners: &[PublicKey]) -> Vec<u8> {
        let mut encoder = Encoder::new(OWNER_CHANGE_DOMAIN);
        encoder.str(name.as_str());
        encoder.u64(sequence);
        encoder.len(owners.len());
        for owner in owners {
            encoder.public_key(owner);
        }
        encoder.finish()
    }

    fn verify(&self, name: &PackageName) -> Result<()> {
        check_owner_list(name, &self.owners)?;
        if self.signer.verify(&Self::signed_bytes(name, self.sequence, &self.owners), &self.signature) {
            Ok(())
        } else {
            Err(Error::InvalidSignature { what: format!("owner change of `{name}` at sequence {}", self.sequence) })
        }
    }
}

fn check_owner_list(name: &PackageName, owners: &[PublicKey]) -> Result<()> {
    if owners.is_empty() || owners.len() > MAX_OWNERS {
        return Err(Error::InvalidIndex(format!("`{name}` needs 1 to {MAX_OWNERS} owners, found {}", owners.len())));
    }
    for (at, owner) in owners.iter().enumerate() {
        if owners[..at].contains(owner) {
            return Err(Error::InvalidIndex(format!("`{name}` lists owner {owner} twice")));
        }
    }
    Ok(())
}

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
    /// The key that signed its manifest, when it is not the index's sole,
    /// never-changed owner (always set once the owners changed; `None` in v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<PublicKey>,
}

/// All versions of one package, owned by one key or a few.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageIndex {
    /// Package name.
    pub name: PackageName,
    /// The key that signed this index: one of `owners`, or the owner that
    /// handed the name over in the change this index records.
    pub owner: PublicKey,
    /// Strictly increasing with every update.
    pub sequence: u64,
    /// Unix seconds of the last update.
    pub updated_at: u64,
    /// Versions in ascending order.
    pub versions: Vec<VersionEntry>,
    /// The keys that may sign the next index. Empty means `[owner]`: a sole
    /// owner that never changed (see [`PackageIndex::current_owners`]); set once
    /// the owners change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<PublicKey>,
    /// Every change of the owners, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_changes: Vec<OwnerChange>,
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
    /// The bytes every v2-encoded index (one whose owners changed) starts with.
    pub const V2_PREFIX: &'static [u8] = b"\x00\x00\x00\x0eagora/index/v2";

    /// An index with a sole owner that never changed.
    pub fn new(
        name: PackageName,
        owner: PublicKey,
        sequence: u64,
        updated_at: u64,
        versions: Vec<VersionEntry>,
    ) -> Self {
        Self { name, owner, sequence, updated_at, versions, owners: Vec::new(), owner_changes: Vec::new() }
    }

    /// The keys that may sign the next index.
    pub fn current_owners(&self) -> &[PublicKey] {
        if self.owners.is_empty() { std::slice::from_ref(&self.owner) } else { &self.owners }
    }

    /// True when `key` is one of the current owners.
    pub fn is_owner(&self, key: &PublicKey) -> bool {
        self.current_owners().contains(key)
    }

    /// The key that signed the manifest of `entry`.
    pub fn publisher_of(&self, entry: &VersionEntry) -> PublicKey {
        entry.publisher.unwrap_or(self.owner)
    }

    /// Every key that owns or ever owned the name as far as this index records:
    /// the first owner, every owner set since, and this index's signer.
    pub fn known_keys(&self) -> Vec<PublicKey> {
        let mut keys = vec![self.owner];
        let mut add = |key: &PublicKey| {
            if !keys.contains(key) {
                keys.push(*key);
            }
        };
        for change in &self.owner_changes {
            add(&change.signer);
            change.owners.iter().for_each(&mut add);
        }
        self.current_owners().iter().for_each(&mut add);
        keys
    }

    /// True when `other` belongs to the same claim to the name as `self`: a newer
    /// index whose owner changes lead from `self`'s owners to its signer, or an
    /// index (of any sequence) signed by a key this index knows as an owner. False
    /// means another key's claim (see [`crate::NameClaims`]).
    pub fn same_claim(&self, other: &PackageIndex) -> bool {
        if other.sequence > self.sequence {
            return self.owners_lead_to(other).is_ok();
        }
        self.known_keys().contains(&other.owner)
    }

    /// Checks that `next`'s owner history extends this one's and that its new
    /// changes, each signed by an owner of its time, lead to owners that include
    /// (or were handed over by) `next`'s signer.
    fn owners_lead_to(&self, next: &PackageIndex) -> Result<()> {
        let not_owner = |signer: &PublicKey| Error::NotOwner {
            name: self.name.clone(),
            owner: self.current_owners().iter().map(PublicKey::to_hex).collect::<Vec<_>>().join(", "),
            signer: signer.to_hex(),
        };
        let known = self.owner_changes.len();
        if next.owner_changes.len() < known || next.owner_changes[..known] != self.owner_changes[..] {
            // Another history: another claim, unless its signer is an owner here.
            return if self.is_owner(&next.owner) {
                Err(Error::IllegalUpdate {
                    name: self.name.clone(),
                    reason: "the update rewrites the history of owner changes".into(),
                })
            } else {
                Err(not_owner(&next.owner))
            };
        }
        let mut owners = self.current_owners().to_vec();
        let mut last_signer = None;
        for change in &next.owner_changes[known..] {
            if change.sequence <= self.sequence {
                return Err(Error::IllegalUpdate {
                    name: self.name.clone(),
                    reason: format!(
                        "an owner change at sequence {} predates the current {}",
                        change.sequence, self.sequence
                    ),
                });
            }
            if !owners.contains(&change.signer) {
                return Err(not_owner(&change.signer));
            }
            owners.clone_from(&change.owners);
            last_signer = Some((change.sequence, change.signer));
        }
        let handed_over =
            last_signer.is_some_and(|(sequence, signer)| sequence == next.sequence && signer == next.owner);
        if owners.contains(&next.owner) || handed_over { Ok(()) } else { Err(not_owner(&next.owner)) }
    }

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
        self.validate_owners()
    }

    /// The owner rules: a v1 index has a sole owner and no per-version
    /// publishers; otherwise the owner list is explicit, the changes are signed,
    /// in order and chained (each signed by an owner the previous one named), the
    /// last one names the current owners, and every version's publisher was an
    /// owner at some point.
    fn validate_owners(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidIndex(format!("`{}`: {reason}", self.name)));
        if self.owners.is_empty() {
            if !self.owner_changes.is_empty() {
                return invalid("owner changes without an owner list".into());
            }
            if self.versions.iter().any(|entry| entry.publisher.is_some()) {
                return invalid("per-version publishers without an owner list".into());
            }
            return Ok(());
        }
        check_owner_list(&self.name, &self.owners)?;
        if self.owner_changes.is_empty() {
            return invalid("an owner list but no owner change".into());
        }
        if self.owner_changes.len() > MAX_OWNER_CHANGES {
            return invalid(format!("at most {MAX_OWNER_CHANGES} owner changes, found {}", self.owner_changes.len()));
        }
        let mut previous: Option<&OwnerChange> = None;
        for change in &self.owner_changes {
            change.verify(&self.name)?;
            if change.sequence > self.sequence || previous.is_some_and(|before| change.sequence <= before.sequence) {
                return invalid(format!("owner change at sequence {} is out of order", change.sequence));
            }
            if previous.is_some_and(|before| !before.owners.contains(&change.signer)) {
                return invalid(format!("owner change at sequence {} is not signed by an owner", change.sequence));
            }
            previous = Some(change);
        }
        let last = &self.owner_changes[self.owner_changes.len() - 1];
        if last.owners != self.owners {
            return invalid("the owner list is not the one the last owner change set".into());
        }
        let handed_over = last.sequence == self.sequence && last.signer == self.owner;
        if !self.owners.contains(&self.owner) && !handed_over {
            return invalid(format!("signed by {}, which is not an owner", self.owner));
        }
        let known = self.known_keys();
        for entry in &self.versions {
            match &entry.publisher {
                None => return invalid(format!("version {} names no publisher", entry.version)),
                Some(key) if !known.contains(key) => {
                    return invalid(format!("version {} is published by {key}, never an owner", entry.version));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks that `next` may replace `self`, and says what it changes.
    pub fn check_successor(&self, next: &PackageIndex) -> Result<IndexChange> {
        let illegal = |reason: String| Err(Error::IllegalUpdate { name: self.name.clone(), reason });
        if next.name != self.name {
            return illegal(format!("the update is for `{}`", next.name));
        }
        if next.sequence > self.sequence {
            self.owners_lead_to(next)?;
        } else if !self.known_keys().contains(&next.owner) {
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
            if new.digest != old.digest || new.size != old.size || next.publisher_of(new) != self.publisher_of(old) {
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
        let Some(entry) = self.entry(version) else {
            if !self.known_keys().contains(&manifest.publisher) {
                return Err(Error::NotOwner {
                    name: name.clone(),
                    owner: self.owner.to_hex(),
                    signer: manifest.publisher.to_hex(),
                });
            }
            return Err(Error::VersionNotFound { name: name.clone(), version: version.clone() });
        };
        let publisher = self.publisher_of(entry);
        if manifest.publisher != publisher {
            return Err(Error::NotOwner {
                name: name.clone(),
                owner: publisher.to_hex(),
                signer: manifest.publisher.to_hex(),
            });
        }
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

    /// The canonical encoding the signature covers: v1 for a sole owner that
    /// never changed, v2 otherwise.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let v2 = !self.owners.is_empty();
        let mut encoder = Encoder::new(if v2 { INDEX_DOMAIN_V2 } else { INDEX_DOMAIN });
        encoder.str(self.name.as_str());
        encoder.public_key(&self.owner);
        encoder.u64(self.sequence);
        encoder.u64(self.updated_at);
        if v2 {
            encoder.len(self.owners.len());
            self.owners.iter().for_each(|owner| encoder.public_key(owner));
            encoder.len(self.owner_changes.len());
            for change in &self.owner_changes {
                encoder.u64(change.sequence);
                encoder.public_key(&change.signer);
                encoder.len(change.owners.len());
                change.owners.iter().for_each(|owner| encoder.public_key(owner));
                encoder.raw(change.signature.as_bytes());
            }
        }
        encoder.len(self.versions.len());
        for entry in &self.versions {
            encoder.str(&entry.version.to_string());
            encoder.digest(&entry.digest);
            encoder.u64(entry.size);
            encoder.bool(entry.yanked);
            if v2 {
                encoder.public_key(&self.publisher_of(entry));
            }
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
        let v2 = bytes.starts_with(Self::V2_PREFIX);
        let mut decoder = Decoder::new("package index", if v2 { INDEX_DOMAIN_V2 } else { INDEX_DOMAIN }, bytes)?;
        let name = PackageName::parse(decoder.str()?)?;
        let owner = decoder.public_key()?;
        let sequence = decoder.u64()?;
        let updated_at = decoder.u64()?;
        let (mut owners, mut owner_changes) = (Vec::new(), Vec::new());
        if v2 {
            let count = decoder.count(MAX_OWNERS, 32)?;
            owners = (0..count).map(|_| decoder.public_key()).collect::<Result<_>>()?;
            if owners.is_empty() {
                return Err(decoder.error("a v2 index lists its owners; a sole unchanged owner is encoded as v1"));
            }
            let count = decoder.count(MAX_OWNER_CHANGES, 8 + 32 + 4 + 64)?;
            for _ in 0..count {
                let sequence = decoder.u64()?;
                let signer = decoder.public_key()?;
                let listed = decoder.count(MAX_OWNERS, 32)?;
                let owners = (0..listed).map(|_| decoder.public_key()).collect::<Result<_>>()?;
                let signature = Signature::from_bytes(decoder.array()?);
                owner_changes.push(OwnerChange { sequence, owners, signer, signature });
            }
        }
        let count = decoder.count(MAX_VERSIONS, 4 + 32 + 8 + 1)?;
        let mut versions = Vec::with_capacity(count);
        for _ in 0..count {
            let version = crate::parse_version(decoder.str()?)?;
            let digest = decoder.digest()?;
            let size = decoder.u64()?;
            let yanked = decoder.bool()?;
            let publisher = if v2 { Some(decoder.public_key()?) } else { None };
            versions.push(VersionEntry { version, digest, size, yanked, publisher });
        }
        decoder.finish()?;
        let index = PackageIndex { name, owner, sequence, updated_at, versions, owners, owner_changes };
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
        VersionEntry {
            version: version.parse().unwrap(),
            digest: Digest::of(version.as_bytes()),
            size: 10,
            yanked,
            publisher: None,
        }
    }

    fn index(owner: &SecretKey, sequence: u64, versions: Vec<VersionEntry>) -> PackageIndex {
        PackageIndex::new("demo".parse().unwrap(), owner.public_key(), sequence, 1, versions)
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

    fn published(
        key: &SecretKey,
        version: &str,
        current: Option<&PackageIndex>,
    ) -> (crate::SignedManifest, PackageIndex) {
        let metadata = crate::PackageMetadata::new("demo".parse().unwrap(), version.parse().unwrap(), "demo");
        let artifact = crate::ArtifactInfo::compute(version.as_bytes(), 4096).unwrap();
        let (manifest, index) = crate::Publisher::new(key.clone()).publish(metadata, artifact, current, 1).unwrap();
        (manifest, index.into_index())
    }

    fn owners_changed(key: &SecretKey, current: &PackageIndex, owners: &[&SecretKey]) -> PackageIndex {
        let owners = owners.iter().map(|key| key.public_key()).collect();
        crate::Publisher::new(key.clone()).change_owners(current, owners, 2).unwrap().into_index()
    }

    fn reencoded(index: &PackageIndex, key: &SecretKey) -> PackageIndex {
        let signed = index.clone().sign(key).unwrap();
        SignedPackageIndex::from_bytes(&signed.to_bytes()).unwrap().into_index()
    }

    #[test]
    fn a_co_owner_publishes_and_a_node_that_missed_the_change_follows() {
        let (founder, partner) = (SecretKey::generate(), SecretKey::generate());
        let (_, v1) = published(&founder, "1.0.0", None);
        assert!(v1.canonical_bytes().starts_with(&Encoder::new(INDEX_DOMAIN).finish()), "a sole owner stays v1");

        let shared = owners_changed(&founder, &v1, &[&founder, &partner]);
        assert!(shared.canonical_bytes().starts_with(&Encoder::new(INDEX_DOMAIN_V2).finish()));
        assert_eq!(reencoded(&shared, &founder), shared, "v2 round-trips");
        assert_eq!(shared.entry(&"1.0.0".parse().unwrap()).unwrap().publisher, Some(founder.public_key()));
        let (manifest, by_partner) = published(&partner, "1.1.0", Some(&shared));
        assert_eq!(by_partner.owner, partner.public_key());
        by_partner.check_vouches_for(manifest.manifest()).unwrap();
        assert!(by_partner.check_vouches_for(published(&founder, "1.1.0", None).0.manifest()).is_err());

        // A node still at v1 accepts the partner's index: the change in it is signed by the founder.
        assert!(v1.same_claim(&by_partner));
        let change = v1.check_successor(&by_partner).unwrap();
        assert_eq!(change.added, ["1.1.0".parse::<Version>().unwrap()]);

        // An owner removes the other; a removed owner's later index is another claim.
        let alone = owners_changed(&partner, &by_partner, &[&partner]);
        let (_, stray) = published(&founder, "9.0.0", None);
        let stray = PackageIndex { sequence: alone.sequence + 1, ..stray };
        assert!(!alone.same_claim(&stray));
        assert!(matches!(alone.check_successor(&stray), Err(Error::NotOwner { .. })));
        // But an older index the founder signed is just an older copy of this claim.
        assert!(alone.same_claim(&v1));
    }

    #[test]
    fn the_v2_prefix_is_the_encoded_domain_tag() {
        assert_eq!(PackageIndex::V2_PREFIX, Encoder::new(INDEX_DOMAIN_V2).finish());
    }

    #[test]
    fn a_key_hands_the_name_over_and_keeps_nothing() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let (_, v1) = published(&old, "1.0.0", None);
        let rotated = owners_changed(&old, &v1, &[&new]);
        assert_eq!(rotated.owner, old.public_key(), "the old key signs the hand-over");
        assert_eq!(rotated.current_owners(), [new.public_key()]);
        assert_eq!(reencoded(&rotated, &old), rotated);
        assert!(v1.same_claim(&rotated));
        v1.check_successor(&rotated).unwrap();

        // The new key publishes; the old one no longer can.
        let (manifest, next) = published(&new, "2.0.0", Some(&rotated));
        next.check_vouches_for(manifest.manifest()).unwrap();
        v1.check_successor(&next).unwrap();
        let refused = crate::Publisher::new(old.clone()).publish(
            crate::PackageMetadata::new("demo".parse().unwrap(), "3.0.0".parse().unwrap(), "demo"),
            crate::ArtifactInfo::compute(b"x", 4096).unwrap(),
            Some(&next),
            3,
        );
        assert!(matches!(refused, Err(Error::NotOwner { .. })));
        // The old key's own rewrite of history (another hand-over at the same point) is another claim.
        let forked = owners_changed(&old, &v1, &[&old, &SecretKey::generate()]);
        let forked = PackageIndex { sequence: next.sequence + 1, ..forked };
        assert!(!next.same_claim(&forked));
    }

    #[test]
    fn forged_owner_histories_do_not_validate() {
        let (founder, partner, thief) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
        let (_, v1) = published(&founder, "1.0.0", None);
        let shared = owners_changed(&founder, &v1, &[&founder, &partner]);

        // The thief adds itself with a change it signs: not an owner of its time.
        let mut grabbed = shared.clone();
        grabbed.sequence += 1;
        grabbed.owner_changes.push(OwnerChange::sign(
            &grabbed.name,
            grabbed.sequence,
            vec![thief.public_key()],
            &thief,
        ));
        grabbed.owners = vec![thief.public_key()];
        grabbed.owner = thief.public_key();
        assert!(grabbed.clone().sign(&thief).is_err());

        // A tampered change signature, a list that disagrees with the last change, too many owners.
        let mut tampered = shared.clone();
        tampered.owner_changes[0].owners.reverse();
        assert!(matches!(tampered.validate(), Err(Error::InvalidSignature { .. })));
        let mut disagreeing = shared.clone();
        disagreeing.owners = vec![founder.public_key()];
        assert!(disagreeing.validate().is_err());
        let many: Vec<SecretKey> = (0..=MAX_OWNERS).map(|_| SecretKey::generate()).collect();
        let too_many = crate::Publisher::new(founder.clone()).change_owners(
            &v1,
            many.iter().map(SecretKey::public_key).collect(),
            2,
        );
        assert!(too_many.is_err());

        // A v2 encoding of what v1 can say is not canonical.
        let mut v2_bytes = Encoder::new(INDEX_DOMAIN_V2).finish();
        v2_bytes.extend_from_slice(&v1.canonical_bytes()[Encoder::new(INDEX_DOMAIN).finish().len()..]);
        assert!(PackageIndex::decode(&v2_bytes).is_err());
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
