//! The DHT record validator the node gives the network: signatures, key match,
//! and the owners this node already knows (trust on first use), so a record for
//! a known name signed by another key never enters the local DHT store.

use std::collections::HashMap;
use std::sync::RwLock;

use agora_core::{PackageName, PublicKey};
use agora_net::{CheckedRecord, RecordKey, RecordValidator, Rejection, check_record};

/// Validates records against signatures and known owners. The map holds, per
/// name the catalog knows, the keys that own or owned it as far as this node
/// has seen (at start: the signer of each stored index, from the catalog's
/// `packages.owner` column; then every key of each index stored). One entry per
/// known name, at most [`MAX_KEYS`] keys each, so it is bounded by the catalog
/// itself. It keeps raw key bytes: comparing needs no curve point, and loading
/// 100k owners at start stays cheap.
#[derive(Debug, Default)]
pub(crate) struct OwnerValidator {
    owners: RwLock<HashMap<PackageName, Vec<[u8; 32]>>>,
}

/// Most keys the validator remembers per name.
const MAX_KEYS: usize = 64;

impl OwnerValidator {
    pub(crate) fn new(owners: impl IntoIterator<Item = (PackageName, [u8; 32])>) -> Self {
        Self { owners: RwLock::new(owners.into_iter().map(|(name, owner)| (name, vec![owner])).collect()) }
    }

    /// Records keys of a name whose package the catalog stored (its owners
    /// ever, as the stored index records them).
    pub(crate) fn learn(&self, name: &PackageName, keys: &[PublicKey]) {
        let mut owners = self.owners.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = owners.entry(name.clone()).or_default();
        for key in keys {
            if known.len() < MAX_KEYS && !known.contains(key.as_bytes()) {
                known.push(*key.as_bytes());
            }
        }
    }

    /// Replaces the keys of a name (the user trusted another claim).
    pub(crate) fn replace(&self, name: &PackageName, keys: &[PublicKey]) {
        let keys = keys.iter().take(MAX_KEYS).map(|key| *key.as_bytes()).collect();
        self.owners.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.clone(), keys);
    }

    fn check_owner(&self, name: &PackageName, record: &CheckedRecord) -> Result<(), String> {
        let owners = self.owners.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(known) = owners.get(name) else { return Ok(()) };
        let vouched = |key: &PublicKey| known.contains(key.as_bytes());
        if vouched(&record.signer) || record.founder.as_ref().is_some_and(vouched) {
            return Ok(());
        }
        let known: Vec<String> = known.iter().map(hex::encode).collect();
        Err(format!("`{name}` is owned by {}, the record is signed by {}", known.join(", "), record.signer))
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
        self.check_owner(name, &record).map_err(Rejection::Contested)?;
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
        validator.learn(&name, &[owner.public_key()]);
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
