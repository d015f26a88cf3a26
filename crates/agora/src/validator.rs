//! The DHT record validator the node gives the network: signatures, key match,
//! and the owners this node already knows (trust on first use), so a record for
//! a known name signed by another key never enters the local DHT store.

use std::collections::HashMap;
use std::sync::RwLock;

use agora_core::{PackageName, PublicKey};
use agora_net::{RecordKey, RecordValidator, Rejection, check_record};

/// Validates records against signatures and known owners. The owner map mirrors
/// the catalog's `packages.owner` column (one entry per known name, so it is
/// bounded by the catalog itself). It keeps raw key bytes: comparing needs no
/// curve point, and loading 100k owners at start stays cheap.
#[derive(Debug, Default)]
pub(crate) struct OwnerValidator {
    owners: RwLock<HashMap<PackageName, [u8; 32]>>,
}

impl OwnerValidator {
    pub(crate) fn new(owners: impl IntoIterator<Item = (PackageName, [u8; 32])>) -> Self {
        Self { owners: RwLock::new(owners.into_iter().collect()) }
    }

    /// Records the owner of a name the catalog accepted.
    pub(crate) fn learn(&self, name: &PackageName, owner: &PublicKey) {
        self.owners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.clone())
            .or_insert(*owner.as_bytes());
    }

    /// Replaces the owner of a name (the user trusted another claim).
    pub(crate) fn replace(&self, name: &PackageName, owner: &PublicKey) {
        self.owners.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.clone(), *owner.as_bytes());
    }

    fn check_owner(&self, name: &PackageName, signer: &PublicKey) -> Result<(), String> {
        let owners = self.owners.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match owners.get(name) {
            Some(owner) if owner != signer.as_bytes() => {
                Err(format!("`{name}` is owned by {}, the record is signed by {signer}", hex::encode(owner)))
            }
            _ => Ok(()),
        }
    }
}

impl RecordValidator for OwnerValidator {
    /// A forged or malformed record is invalid; a valid one signed by another key
    /// than the owner this node trusts for the name is contested: refused, but not
    /// held against the peer (two honest publishers can claim one name).
    fn validate(&self, key: &RecordKey, value: &[u8]) -> Result<u64, Rejection> {
        let record = check_record(key, value).map_err(Rejection::Invalid)?;
        let name = match key {
            RecordKey::Index(name) | RecordKey::Manifest(name, _) => name,
        };
        self.check_owner(name, &record.signer).map_err(Rejection::Contested)?;
        Ok(record.sequence)
    }
}

#[cfg(test)]
mod tests {
    use agora_core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};

    use super::*;

    #[test]
    fn known_owners_win_over_signatures_from_other_keys() {
        let owner = Publisher::new(SecretKey::generate());
        let thief = Publisher::new(SecretKey::generate());
        let name: PackageName = "claimed".parse().unwrap();
        let metadata = PackageMetadata::new(name.clone(), "1.0.0".parse().unwrap(), "x");
        let info = ArtifactInfo::compute(b"x", 4096).unwrap();
        let (_, stolen) = thief.publish(metadata, info, None, 1).unwrap();
        let validator = OwnerValidator::default();
        let key = RecordKey::Index(name.clone());
        assert_eq!(validator.validate(&key, &stolen.to_bytes()), Ok(1), "unknown names are trusted on first use");
        validator.learn(&name, &owner.public_key());
        let contested = validator.validate(&key, &stolen.to_bytes()).unwrap_err();
        assert!(matches!(&contested, Rejection::Contested(reason) if reason.contains("is owned by")), "{contested}");
        let other_key = RecordKey::Index("other".parse().unwrap());
        let misplaced = validator.validate(&other_key, &stolen.to_bytes()).unwrap_err();
        assert!(matches!(&misplaced, Rejection::Invalid(reason) if reason.contains("stored under the key")));
        let mut tampered = stolen.to_bytes();
        tampered[10] ^= 1;
        assert!(matches!(validator.validate(&key, &tampered), Err(Rejection::Invalid(_))));
    }
}
