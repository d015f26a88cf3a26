//! Regressions found by the `signed_manifest` fuzz target (`fuzz/`): a manifest
//! body that is not in canonical form must not decode, even when it carries a
//! valid signature over the canonical form. Before the fix, dependencies out of
//! order (or repeated) and requirements spelled other than they print (`1.2` for
//! `^1.2`) decoded, re-encoded to other bytes, and so verified against a signature
//! over bytes that were not the ones received.

#![allow(clippy::unwrap_used)]

use agora_core::{ArtifactInfo, Manifest, PackageMetadata, SecretKey, SignedManifest};

fn manifest(key: &SecretKey) -> Manifest {
    let mut metadata = PackageMetadata::new("demo".parse().unwrap(), "1.0.0".parse().unwrap(), "two dependencies");
    metadata.dependencies.insert("dep-a".parse().unwrap(), "^1.2".parse().unwrap());
    metadata.dependencies.insert("dep-b".parse().unwrap(), "=0.3.1".parse().unwrap());
    Manifest {
        metadata,
        artifact: ArtifactInfo::compute(b"demo", 4096).unwrap(),
        published_at: 1,
        publisher: key.public_key(),
        unpacked_size: None,
        cargo: None,
    }
}

/// A length-prefixed string as the canonical encoding writes it.
fn field(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack.windows(from.len()).position(|window| window == from).expect("the pattern is in the bytes");
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

/// `body` with a signature over the canonical bytes: what a publisher could send.
fn with_signature(body: &[u8], key: &SecretKey, canonical: &[u8]) -> Vec<u8> {
    [body, key.sign(canonical).as_bytes()].concat()
}

#[test]
fn dependencies_out_of_order_do_not_decode() {
    let key = SecretKey::from_bytes(&[9; 32]);
    let canonical = manifest(&key).canonical_bytes();
    let first = [field("dep-a"), field("^1.2")].concat();
    let second = [field("dep-b"), field("=0.3.1")].concat();
    let sorted = [first.clone(), second.clone()].concat();
    let swapped = replace(&canonical, &sorted, &[second, first.clone()].concat());
    let repeated = replace(&canonical, &sorted, &[first.clone(), first].concat());
    for body in [swapped, repeated] {
        let wire = with_signature(&body, &key, &canonical);
        let error = Manifest::from_trusted_bytes(&wire).unwrap_err().to_string();
        assert!(error.contains("out of order or repeated"), "{error}");
        assert!(SignedManifest::from_bytes(&wire).is_err());
    }
    assert!(SignedManifest::from_bytes(&with_signature(&canonical, &key, &canonical)).is_ok());
}

#[test]
fn requirements_in_another_spelling_do_not_decode() {
    let key = SecretKey::from_bytes(&[9; 32]);
    let canonical = manifest(&key).canonical_bytes();
    for spelling in ["1.2", " ^1.2", "^1.2.x"] {
        let body = replace(&canonical, &field("^1.2"), &field(spelling));
        let wire = with_signature(&body, &key, &canonical);
        let error = Manifest::from_trusted_bytes(&wire).unwrap_err().to_string();
        assert!(error.contains("canonical form `^1.2`"), "{spelling:?}: {error}");
        assert!(SignedManifest::from_bytes(&wire).is_err());
    }
}
