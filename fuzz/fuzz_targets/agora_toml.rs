//! `agora::archive::parse_manifest`, the `agora.toml` parser (run by `agora
//! publish` locally and by the node on every upload).
//!
//! Asserts: errors, never panics; accepted metadata is valid; each dependency
//! requirement prints as text that parses back to it (the manifest encoding stores
//! it as text); a manifest built from it signs, and its wire form decodes on a
//! receiving node to the same value (whatever `agora.toml` accepts, peers accept);
//! written back out as `agora.toml`, it parses to the same metadata.

#![no_main]

use std::collections::BTreeMap;

use agora::archive::parse_manifest;
use agora_core::{PackageMetadata, SignedManifest, VersionReq};
use agora_fuzz::{fuzz_key, manifest_for};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(metadata) = parse_manifest(text) else { return };
    metadata.validate().expect("parsed metadata is valid");
    for requirement in metadata.dependencies.values() {
        let printed = requirement.to_string();
        assert_eq!(VersionReq::parse(&printed).ok().as_ref(), Some(requirement), "`{printed}` does not parse back");
    }
    let signed = manifest_for(metadata.clone(), b"").sign(&fuzz_key()).expect("accepted metadata signs");
    assert_eq!(SignedManifest::from_bytes(&signed.to_bytes()).ok().as_ref(), Some(&signed));

    let written = toml::to_string(&ManifestFile::from(&metadata)).expect("metadata writes as TOML");
    assert_eq!(parse_manifest(&written).ok().as_ref(), Some(&metadata), "does not read back:\n{written}");
});

/// `agora.toml` as written by hand.
#[derive(Serialize)]
struct ManifestFile {
    package: PackageTable,
    dependencies: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PackageTable {
    name: String,
    version: String,
    description: String,
    keywords: Vec<String>,
    categories: Vec<String>,
    license: Option<String>,
    authors: Vec<String>,
    homepage: Option<String>,
    repository: Option<String>,
}

impl From<&PackageMetadata> for ManifestFile {
    fn from(metadata: &PackageMetadata) -> Self {
        Self {
            package: PackageTable {
                name: metadata.name.to_string(),
                version: metadata.version.to_string(),
                description: metadata.description.clone(),
                keywords: metadata.keywords.clone(),
                categories: metadata.categories.clone(),
                license: metadata.license.clone(),
                authors: metadata.authors.clone(),
                homepage: metadata.homepage.clone(),
                repository: metadata.repository.clone(),
            },
            dependencies: metadata
                .dependencies
                .iter()
                .map(|(name, requirement)| (name.to_string(), requirement.to_string()))
                .collect(),
        }
    }
}
