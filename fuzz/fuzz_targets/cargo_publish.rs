//! The Cargo gateway's input side: `agora::cargo::parse_publish_body` (the body of
//! `PUT /cargo/api/v1/crates/new`), and for the `.crate` bytes `read_crate_toml`,
//! `entry_from_toml`, `prepare_import` and the index line of what would be signed.
//!
//! Mode byte: bit 0 clear, the data is a publish body as cargo sends it; set, the
//! data is a tar, gzipped here (so the gzip checksum holds and mutations reach the
//! tar reader and the `Cargo.toml` parser), used as the `.crate` file and also
//! wrapped, with a publish request made from its own `Cargo.toml`, into a body.
//!
//! Asserts: errors, never panics; an accepted body's crate part is within the
//! limit and the request re-encodes to a body that parses to the same request and
//! crate bytes; an accepted `.crate` unpacks to at most the limit and its entry is
//! valid, agrees with itself (unless it lists a dependency twice), signs as a v3
//! manifest that decodes to itself on a peer, and renders as one line of JSON
//! with the artifact's digest as `cksum`; `prepare_import` accepts exactly what
//! `read_crate_toml` + `entry_from_toml` accept (with valid metadata and the same
//! entry); and a crate whose own `Cargo.toml` is turned into the publish request
//! is accepted by `prepare_publish` (given a description) with that entry: a
//! crate always agrees with itself.

#![no_main]

use agora::cargo::{
    CrateLimits, CrateToml, PublishDependency, PublishRequest, check_agreement, entry_from_toml, index_line,
    parse_publish_body, prepare_import, prepare_publish, read_crate_toml,
};
use agora_core::{ArtifactInfo, CrateEntry, Publisher, SignedManifest};
use agora_fuzz::{Input, fuzz_key, gzip};
use libfuzzer_sys::fuzz_target;

/// The node's `max_artifact_size` here: small, so the size bounds are reachable.
const MAX_ARTIFACT_SIZE: u64 = 64 * 1024;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::new(bytes);
    if input.mode & 1 == 0 {
        let Ok((request, crate_bytes)) = parse_publish_body(input.data, MAX_ARTIFACT_SIZE as usize) else { return };
        assert!(crate_bytes.len() as u64 <= MAX_ARTIFACT_SIZE);
        let again = request.to_body(crate_bytes);
        let reparsed = parse_publish_body(&again, MAX_ARTIFACT_SIZE as usize).expect("our own body parses");
        assert_eq!(reparsed, (request.clone(), crate_bytes));
        check_crate(crate_bytes);
        let _ = prepare_publish(input.data, MAX_ARTIFACT_SIZE);
    } else {
        let crate_bytes = gzip(input.data);
        let Some((crate_toml, entry)) = check_crate(&crate_bytes) else { return };
        let mut request = request_from(&crate_toml, &entry);
        request.description = Some("a fuzzed crate".into());
        let body = request.to_body(&crate_bytes);
        let publishable = crate_bytes.len() as u64 <= MAX_ARTIFACT_SIZE
            && request.version().is_ok_and(|version| version.to_string().len() <= 64)
            && check_agreement(&entry, &entry).is_ok();
        if publishable {
            let (prepared, _) = prepare_publish(&body, MAX_ARTIFACT_SIZE).expect("a crate agrees with itself");
            assert_eq!(prepared.entry, entry);
        }
    }
});

/// Reads `crate_bytes` as a `.crate` and checks what comes out.
fn check_crate(crate_bytes: &[u8]) -> Option<(CrateToml, CrateEntry)> {
    let limits = CrateLimits::for_crate(crate_bytes.len() as u64, MAX_ARTIFACT_SIZE);
    let read = read_crate_toml(crate_bytes, limits).and_then(|crate_toml| {
        let entry = entry_from_toml(&crate_toml)?;
        Ok((crate_toml, entry))
    });
    let imported = prepare_import(crate_bytes, MAX_ARTIFACT_SIZE);
    let (crate_toml, entry) = match (read, imported) {
        (Ok(read), Ok(prepared)) => {
            assert_eq!(prepared.entry, read.1);
            prepared.metadata.validate().expect("imported metadata is valid");
            read
        }
        (Ok(read), Err(error)) => {
            // Only the size limit or metadata Agora cannot hold (a long version) may
            // refuse what reads.
            let too_large = crate_bytes.len() as u64 > MAX_ARTIFACT_SIZE;
            let long_version = read.0.package.metadata.version.to_string().len() > 64;
            assert!(too_large || long_version, "read but not imported: {error}");
            return None;
        }
        (Err(_), Ok(_)) => panic!("imported what does not read"),
        (Err(_), Err(_)) => return None,
    };
    assert!(crate_toml.unpacked_size <= limits.max_unpacked_bytes);
    entry.validate().expect("the entry from a Cargo.toml is valid");
    // An entry agrees with itself, unless it lists one dependency twice (the same
    // name, kind and target up to whitespace), which a publish refuses.
    if let Err(error) = check_agreement(&entry, &entry) {
        assert!(error.to_string().contains(" twice"), "an entry disagrees with itself: {error}");
    }

    let metadata = agora::cargo::package_metadata(&crate_toml.metadata(), agora::cargo::MetadataOrigin::Import).ok()?;
    let artifact = ArtifactInfo::compute(crate_bytes, 4096).expect("hashing");
    let publisher = Publisher::new(fuzz_key());
    let (manifest, _) = publisher
        .publish_crate(metadata, artifact, Some(crate_toml.unpacked_size), entry.clone(), None, 1)
        .expect("an accepted crate signs");
    let received = SignedManifest::from_bytes(&manifest.to_bytes()).expect("a peer decodes it");
    assert_eq!(received, manifest);
    let line = index_line(received.manifest(), false).expect("a crate has an index line");
    assert!(!line.contains('\n'));
    let json: serde_json::Value = serde_json::from_str(&line).expect("the line is JSON");
    assert_eq!(json["cksum"].as_str(), Some(received.manifest().artifact.digest.to_hex().as_str()));
    assert_eq!(json["name"].as_str(), Some(entry.name.as_str()));
    Some((crate_toml, entry))
}

/// The publish request cargo would send for `crate_toml`.
fn request_from(crate_toml: &CrateToml, entry: &CrateEntry) -> PublishRequest {
    let package = &crate_toml.package;
    let mut request = PublishRequest::new(package.metadata.name.as_str(), package.metadata.version.to_string());
    request.deps = entry
        .deps
        .iter()
        .map(|dependency| {
            let mut sent = PublishDependency::new(dependency.crate_name(), dependency.req.clone());
            sent.explicit_name_in_toml = dependency.package.as_ref().map(|_| dependency.name.clone());
            sent.features = dependency.features.clone();
            sent.optional = dependency.optional;
            sent.default_features = dependency.default_features;
            sent.target = dependency.target.clone();
            sent.kind = Some(dependency.kind.as_str().to_owned());
            sent.registry = dependency.registry.clone();
            sent
        })
        .collect();
    request.features = entry.features.clone();
    request.links = entry.links.clone();
    request.rust_version = entry.rust_version.clone();
    request
}
