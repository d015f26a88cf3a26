//! DHT records: `RecordKey::from_kad`, `digest_of_provider_key` and `check_record`
//! with each `RecordKey` kind (what the node's validator runs on every record a
//! peer puts or returns).
//!
//! Input: a mode byte, a key length byte, the key bytes, the value. Mode bit 0: the
//! value is the body of a record, signed here with the fuzz key; else it is used
//! as it is.
//!
//! Asserts: only the canonical spelling of a key parses (re-encoding gives the same
//! bytes), and a provider key's digest gives back the key; `check_record` accepts
//! exactly the values of at most `MAX_RECORD_SIZE` bytes that verify as the record
//! the key names (an index of that name, a manifest of that name and version) and
//! reports their signer and sequence (0 for manifests); `SignatureValidator` says
//! the same.

#![no_main]

use agora_core::{Manifest, PackageIndex, SignedManifest, SignedPackageIndex};
use agora_fuzz::{Input, signed_by_fuzz_key};
use agora_net::{
    CheckedRecord, MAX_RECORD_SIZE, RecordKey, RecordValidator, Rejection, SignatureValidator, check_record,
    digest_of_provider_key, provider_key,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::new(bytes);
    let Some((key_len, rest)) = input.data.split_first() else { return };
    let (key_bytes, value) = rest.split_at(usize::from(*key_len).min(rest.len()));
    let kad_key = libp2p::kad::RecordKey::new(&key_bytes);

    let parsed = RecordKey::from_kad(&kad_key);
    if let Some(key) = &parsed {
        assert_eq!(key.to_kad(), kad_key, "{key:?} parsed from a spelling that is not its own");
    }
    if let Some(digest) = digest_of_provider_key(&kad_key) {
        assert_eq!(provider_key(&digest), kad_key);
    }

    let value = if input.mode & 1 == 1 { signed_by_fuzz_key(value) } else { value.to_vec() };
    let mut keys: Vec<RecordKey> = parsed.into_iter().collect();
    if let Ok(index) = PackageIndex::from_trusted_bytes(&value) {
        keys.push(RecordKey::Index(index.name));
    }
    if let Ok(manifest) = Manifest::from_trusted_bytes(&value) {
        keys.push(RecordKey::Index(manifest.name().clone()));
        keys.push(RecordKey::Manifest(manifest.name().clone(), manifest.version().clone()));
        let mut other = manifest.version().clone();
        other.patch = other.patch.wrapping_add(1);
        keys.push(RecordKey::Manifest(manifest.name().clone(), other));
    }
    for key in &keys {
        let checked = check_record(key, &value);
        assert_eq!(
            checked.as_ref().ok(),
            expected(key, &value).as_ref(),
            "check_record({key:?}) is wrong: {checked:?}"
        );
        let verdict = SignatureValidator.validate(key, &value);
        assert_eq!(verdict, checked.map(|record| record.sequence).map_err(Rejection::Invalid));
    }
});

/// What `check_record` must say, from the record types' own decoders.
fn expected(key: &RecordKey, value: &[u8]) -> Option<CheckedRecord> {
    if value.len() > MAX_RECORD_SIZE {
        return None;
    }
    match key {
        RecordKey::Index(name) => {
            let index = SignedPackageIndex::from_bytes(value).ok()?.into_index();
            (&index.name == name).then_some(CheckedRecord {
                signer: index.owner,
                sequence: index.sequence,
                founder: index.owner_changes.first().map(|change| change.signer),
            })
        }
        RecordKey::Manifest(name, version) => {
            let manifest = SignedManifest::from_bytes(value).ok()?.into_manifest();
            (manifest.name() == name && manifest.version() == version).then_some(CheckedRecord {
                signer: manifest.publisher,
                sequence: 0,
                founder: None,
            })
        }
    }
}
