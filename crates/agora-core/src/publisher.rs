//! Building signed publications and yanks, and checking them on arrival.
//!
//! [`Publisher`] is the author side: it turns metadata and artifact digests into a
//! signed manifest plus the owner-signed successor index. [`Publication::check`] is
//! the receiving side, used by every backend before it stores anything.

use crate::{
    ArtifactData, ArtifactInfo, CrateEntry, Error, Manifest, OwnerChange, PackageIndex, PackageMetadata, PublicKey,
    Result, SecretKey, SignedManifest, SignedPackageIndex, Version, VersionEntry,
};

/// Everything a registry needs to accept a new version.
#[derive(Debug, Clone)]
pub struct Publication {
    /// The signed manifest of the new version.
    pub manifest: SignedManifest,
    /// The owner-signed index that lists it.
    pub index: SignedPackageIndex,
    /// The artifact bytes, in memory or in a file.
    pub artifact: ArtifactData,
}

impl Publication {
    /// Checks that `manifest` and `index` form a legal publication on top of
    /// `current` (the index the receiver holds for this name, if any): same name,
    /// signed by the owner, and the index adds exactly this version with the
    /// manifest's digest and size and changes nothing else.
    pub fn check(manifest: &SignedManifest, index: &SignedPackageIndex, current: Option<&PackageIndex>) -> Result<()> {
        let manifest = manifest.manifest();
        let index = index.index();
        let name = manifest.name();
        if &index.name != name {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!("the index is for `{}`", index.name),
            });
        }
        if manifest.publisher != index.owner {
            return Err(Error::NotOwner {
                name: name.clone(),
                owner: index.owner.to_hex(),
                signer: manifest.publisher.to_hex(),
            });
        }
        let Some(entry) = index.entry(manifest.version()) else {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!("the index does not list {}", manifest.version()),
            });
        };
        if index.publisher_of(entry) != manifest.publisher {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!("the index names another publisher for {}", manifest.version()),
            });
        }
        if entry.digest != manifest.artifact.digest || entry.size != manifest.artifact.size || entry.yanked {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!("the index entry for {} does not match the manifest", manifest.version()),
            });
        }
        let added = match current {
            Some(current) => {
                if let Some(existing) = current.entry(manifest.version()) {
                    return Err(Error::VersionExists {
                        name: name.clone(),
                        version: manifest.version().clone(),
                        existing: existing.digest,
                    });
                }
                let change = current.check_successor(index)?;
                if !change.yanked.is_empty() || !change.unyanked.is_empty() {
                    return Err(Error::IllegalUpdate {
                        name: name.clone(),
                        reason: "a publish cannot yank or unyank".into(),
                    });
                }
                change.added
            }
            None => index.versions.iter().map(|entry| entry.version.clone()).collect(),
        };
        if added != [manifest.version().clone()] {
            return Err(Error::IllegalUpdate {
                name: name.clone(),
                reason: format!("a publish adds exactly one version, this one adds {}", added.len()),
            });
        }
        Ok(())
    }
}

/// Signs publications and yanks with one key.
#[derive(Debug, Clone)]
pub struct Publisher {
    key: SecretKey,
}

impl Publisher {
    /// A publisher signing with `key`.
    pub fn new(key: SecretKey) -> Self {
        Self { key }
    }

    /// The key that will own what this publisher publishes first.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Signs a new version: its manifest, and the successor of `current` that lists it.
    pub fn publish(
        &self,
        metadata: PackageMetadata,
        artifact: ArtifactInfo,
        current: Option<&PackageIndex>,
        now: u64,
    ) -> Result<(SignedManifest, SignedPackageIndex)> {
        self.publish_unpacked(metadata, artifact, None, current, now)
    }

    /// [`Publisher::publish`], recording in the manifest how many bytes of file
    /// content the artifact unpacks to (shown before anyone downloads it).
    pub fn publish_unpacked(
        &self,
        metadata: PackageMetadata,
        artifact: ArtifactInfo,
        unpacked_size: Option<u64>,
        current: Option<&PackageIndex>,
        now: u64,
    ) -> Result<(SignedManifest, SignedPackageIndex)> {
        self.publish_manifest(self.manifest(metadata, artifact, unpacked_size, None, now), current, now)
    }

    /// [`Publisher::publish_unpacked`] for a crate: `metadata.name` is the crate's
    /// package name (`entry.name.package_name()`), and `entry` is signed with the
    /// manifest (a v3 manifest), so any node can serve its cargo index line.
    pub fn publish_crate(
        &self,
        metadata: PackageMetadata,
        artifact: ArtifactInfo,
        unpacked_size: Option<u64>,
        entry: CrateEntry,
        current: Option<&PackageIndex>,
        now: u64,
    ) -> Result<(SignedManifest, SignedPackageIndex)> {
        self.publish_manifest(self.manifest(metadata, artifact, unpacked_size, Some(entry), now), current, now)
    }

    /// The unsigned manifest of a publication by this publisher at `now`.
    fn manifest(
        &self,
        metadata: PackageMetadata,
        artifact: ArtifactInfo,
        unpacked_size: Option<u64>,
        cargo: Option<CrateEntry>,
        now: u64,
    ) -> Manifest {
        Manifest { metadata, artifact, published_at: now, publisher: self.public_key(), unpacked_size, cargo }
    }

    fn publish_manifest(
        &self,
        manifest: Manifest,
        current: Option<&PackageIndex>,
        now: u64,
    ) -> Result<(SignedManifest, SignedPackageIndex)> {
        manifest.validate()?;
        let entry = VersionEntry {
            version: manifest.version().clone(),
            digest: manifest.artifact.digest,
            size: manifest.artifact.size,
            yanked: false,
            // Named once the owners have changed (v2); implied by the sole owner before.
            publisher: current.filter(|index| !index.owners.is_empty()).map(|_| self.public_key()),
        };
        let index = match current {
            Some(current) => {
                self.check_owner(current)?;
                if let Some(existing) = current.entry(&entry.version) {
                    return Err(Error::VersionExists {
                        name: current.name.clone(),
                        version: entry.version,
                        existing: existing.digest,
                    });
                }
                let mut next = self.successor(current, now);
                let at = next.versions.partition_point(|other| other.version < entry.version);
                next.versions.insert(at, entry);
                next
            }
            None => PackageIndex::new(manifest.name().clone(), self.public_key(), 1, now, vec![entry]),
        };
        let signed_manifest = manifest.sign(&self.key)?;
        let signed_index = index.sign(&self.key)?;
        Ok((signed_manifest, signed_index))
    }

    /// Signs the successor of `current` with `version` yanked (or unyanked). `None`
    /// when the version is already in that state.
    pub fn set_yanked(
        &self,
        current: &PackageIndex,
        version: &Version,
        yanked: bool,
        now: u64,
    ) -> Result<Option<SignedPackageIndex>> {
        self.check_owner(current)?;
        let Some(entry) = current.entry(version) else {
            return Err(Error::VersionNotFound { name: current.name.clone(), version: version.clone() });
        };
        if entry.yanked == yanked {
            return Ok(None);
        }
        let mut next = self.successor(current, now);
        for entry in next.versions.iter_mut().filter(|entry| &entry.version == version) {
            entry.yanked = yanked;
        }
        next.sign(&self.key).map(Some)
    }

    /// Signs the successor of `current` whose owners are `owners`: adding a
    /// co-owner, removing one, or handing the name to a new key (rotation: the
    /// old key signs, and need not stay an owner). The change is recorded in the
    /// index, so a node that missed the updates in between still sees that the
    /// new owners descend from the old ones.
    pub fn change_owners(
        &self,
        current: &PackageIndex,
        owners: Vec<PublicKey>,
        now: u64,
    ) -> Result<SignedPackageIndex> {
        self.check_owner(current)?;
        if owners == current.current_owners() {
            return Err(Error::IllegalUpdate {
                name: current.name.clone(),
                reason: "the owners would not change".into(),
            });
        }
        let mut next = self.successor(current, now);
        if next.owners.is_empty() {
            // From now on the index names each version's publisher: the sole owner so far.
            for entry in &mut next.versions {
                entry.publisher = Some(current.owner);
            }
        }
        next.owner_changes.push(OwnerChange::sign(&current.name, next.sequence, owners.clone(), &self.key));
        next.owners = owners;
        next.sign(&self.key)
    }

    fn check_owner(&self, current: &PackageIndex) -> Result<()> {
        if !current.is_owner(&self.public_key()) {
            return Err(Error::NotOwner {
                name: current.name.clone(),
                owner: current.current_owners().iter().map(PublicKey::to_hex).collect::<Vec<_>>().join(", "),
                signer: self.public_key().to_hex(),
            });
        }
        Ok(())
    }

    fn successor(&self, current: &PackageIndex, now: u64) -> PackageIndex {
        PackageIndex {
            owner: self.public_key(),
            sequence: current.sequence + 1,
            updated_at: now.max(current.updated_at),
            ..current.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(version: &str) -> PackageMetadata {
        PackageMetadata::new("demo".parse().unwrap(), version.parse().unwrap(), "demo package")
    }

    fn artifact(content: &str) -> ArtifactInfo {
        ArtifactInfo::compute(content.as_bytes(), 4096).unwrap()
    }

    #[test]
    fn a_chain_of_publications_checks_out() {
        let publisher = Publisher::new(SecretKey::generate());
        let (first, index1) = publisher.publish(metadata("1.0.0"), artifact("a"), None, 10).unwrap();
        Publication::check(&first, &index1, None).unwrap();
        let (second, index2) = publisher.publish(metadata("1.1.0"), artifact("b"), Some(index1.index()), 11).unwrap();
        Publication::check(&second, &index2, Some(index1.index())).unwrap();
        assert_eq!(index2.index().sequence, 2);
        // Replaying the first publication on top of the second is refused.
        assert!(Publication::check(&first, &index1, Some(index2.index())).is_err());
    }

    #[test]
    fn a_crate_is_published_with_its_entry_and_its_spellings_share_an_owner() {
        let owner = Publisher::new(SecretKey::generate());
        let crate_metadata = |spelling: &str, version: &str| {
            let entry = crate::cargo::tests::sample_entry(spelling);
            (PackageMetadata::new(entry.name.package_name(), version.parse().unwrap(), "a crate"), entry)
        };
        let (metadata_one, entry) = crate_metadata("Serde-JSON", "1.0.0");
        let (manifest, index) =
            owner.publish_crate(metadata_one, artifact("a"), Some(10), entry.clone(), None, 10).unwrap();
        Publication::check(&manifest, &index, None).unwrap();
        assert_eq!(manifest.manifest().cargo.as_ref(), Some(&entry));
        assert_eq!(index.index().name.as_str(), "crates/serde_json");
        // `serde_json` is the same package: another key cannot take it.
        let thief = Publisher::new(SecretKey::generate());
        let (metadata_two, entry) = crate_metadata("serde_json", "1.0.1");
        assert!(matches!(
            thief.publish_crate(metadata_two.clone(), artifact("b"), None, entry.clone(), Some(index.index()), 11),
            Err(Error::NotOwner { .. })
        ));
        let (next, next_index) =
            owner.publish_crate(metadata_two, artifact("b"), None, entry, Some(index.index()), 11).unwrap();
        Publication::check(&next, &next_index, Some(index.index())).unwrap();
        // A crate's name without an entry, or an entry on a native name, is refused.
        let (metadata_three, entry) = crate_metadata("serde_json", "1.0.2");
        assert!(owner.publish(metadata_three, artifact("c"), Some(next_index.index()), 12).is_err());
        assert!(owner.publish_crate(metadata("1.0.0"), artifact("d"), None, entry, None, 12).is_err());
    }

    #[test]
    fn another_key_cannot_publish_or_yank_an_owned_name() {
        let owner = Publisher::new(SecretKey::generate());
        let thief = Publisher::new(SecretKey::generate());
        let (_, index) = owner.publish(metadata("1.0.0"), artifact("a"), None, 10).unwrap();
        assert!(matches!(
            thief.publish(metadata("1.1.0"), artifact("b"), Some(index.index()), 11),
            Err(Error::NotOwner { .. })
        ));
        assert!(matches!(
            thief.set_yanked(index.index(), &"1.0.0".parse().unwrap(), true, 11),
            Err(Error::NotOwner { .. })
        ));
        // A thief's fresh index for the name does not pass as a successor either.
        let (forged_manifest, forged_index) = thief.publish(metadata("1.1.0"), artifact("b"), None, 11).unwrap();
        assert!(matches!(
            Publication::check(&forged_manifest, &forged_index, Some(index.index())),
            Err(Error::NotOwner { .. })
        ));
    }

    #[test]
    fn the_same_version_cannot_be_published_twice() {
        let publisher = Publisher::new(SecretKey::generate());
        let (_, index) = publisher.publish(metadata("1.0.0"), artifact("a"), None, 10).unwrap();
        let error = publisher.publish(metadata("1.0.0"), artifact("b"), Some(index.index()), 11).unwrap_err();
        assert!(matches!(error, Error::VersionExists { .. }), "{error}");
    }

    #[test]
    fn yank_and_unyank() {
        let publisher = Publisher::new(SecretKey::generate());
        let version: Version = "1.0.0".parse().unwrap();
        let (_, index) = publisher.publish(metadata("1.0.0"), artifact("a"), None, 10).unwrap();
        let yanked = publisher.set_yanked(index.index(), &version, true, 11).unwrap().unwrap();
        assert!(yanked.index().entry(&version).unwrap().yanked);
        assert!(publisher.set_yanked(yanked.index(), &version, true, 12).unwrap().is_none());
        let change = index.index().check_successor(yanked.index()).unwrap();
        assert_eq!(change.yanked, vec![version.clone()]);
        assert!(matches!(
            publisher.set_yanked(index.index(), &"9.9.9".parse().unwrap(), true, 11),
            Err(Error::VersionNotFound { .. })
        ));
    }
}
