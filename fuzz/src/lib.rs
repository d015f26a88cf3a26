//! Shared pieces of Agora's fuzz targets (`fuzz_targets/*.rs`) and of the seed
//! generator (`examples/seeds.rs`).
//!
//! - [`fuzz_key`]: the fixed key the targets sign with. The fuzzer cannot forge
//!   signatures, so a target that only fed its input to `SignedManifest::from_bytes`
//!   would never get past the signature check; instead it also signs the input's
//!   body with this key and decodes that, which reaches everything behind the check
//!   for any record whose `publisher`/`owner` field holds this key's public half
//!   (the seeds do).
//! - [`Input`]: splits a fuzz input into a mode byte and the rest.
//! - [`gzip`], [`Trickle`]: archive helpers.
//! - [`sample_publications`]: the signed records the seeds encode.
//!
//! What this crate is not: a test suite for stable. It is built only by
//! `cargo +nightly fuzz` (and the seed generator), never by the main workspace.

pub mod frames;
pub mod signed;

use std::io::{self, Read, Write};

use agora_core::{
    ArtifactInfo, CrateDependency, CrateEntry, CrateName, DependencyKind, Manifest, PackageIndex, PackageMetadata,
    Publisher, SecretKey, SignedManifest, SignedPackageIndex,
};

/// The seed of [`fuzz_key`].
pub const FUZZ_KEY_SEED: [u8; 32] = [0x5a; 32];

/// The fixed key fuzz targets sign with, and that owns every seed record.
pub fn fuzz_key() -> SecretKey {
    SecretKey::from_bytes(&FUZZ_KEY_SEED)
}

/// `body` followed by [`fuzz_key`]'s signature over it: a wire form whose
/// signature verifies exactly when `body` is the canonical encoding of a record
/// signed by that key.
pub fn signed_by_fuzz_key(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    bytes.extend_from_slice(fuzz_key().sign(body).as_bytes());
    bytes
}

/// A fuzz input as a mode byte (which way to feed the rest) and the data.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The first byte (0 for an empty input).
    pub mode: u8,
    /// Everything after it.
    pub data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        match bytes.split_first() {
            Some((mode, data)) => Self { mode: *mode, data },
            None => Self { mode: 0, data: &[] },
        }
    }

    /// The input as the seed generator writes it.
    pub fn encode(mode: u8, data: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        bytes.push(mode);
        bytes.extend_from_slice(data);
        bytes
    }
}

/// Gzips `data` the way `agora publish` frames a tar (one member, mtime 0), at the
/// fastest level: the fuzzer mutates the tar, the target wraps it, so the gzip
/// checksum is always right and the tar reader gets to see the mutations.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// A reader that hands out at most `step` bytes per call (at least 1), to check
/// that a parser does not depend on how its input is split into reads.
#[derive(Debug)]
pub struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    /// Reads `data` in pieces of at most `step` bytes.
    pub fn new(data: &'a [u8], step: usize) -> Self {
        Self { data, step: step.max(1) }
    }
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len().min(self.step).min(self.data.len());
        let (head, tail) = self.data.split_at(len);
        buf[..len].copy_from_slice(head);
        self.data = tail;
        Ok(len)
    }
}

/// Metadata exercising every field of `agora.toml` and of the manifest encoding.
pub fn full_metadata() -> PackageMetadata {
    let mut metadata = PackageMetadata::new(parse("fuzz-full"), version("1.2.3-rc.1+build.5"), "every field set");
    metadata.keywords = vec!["fuzz".into(), "test-data".into()];
    metadata.categories = vec!["development/testing".into()];
    metadata.license = Some("MIT OR Apache-2.0".into());
    metadata.authors = vec!["A. Author <a@example.org>".into(), "B".into()];
    metadata.homepage = Some("https://example.org".into());
    metadata.repository = Some("http://example.org/repo".into());
    metadata.dependencies.insert(parse("dep-a"), requirement("^1.2"));
    metadata.dependencies.insert(parse("dep_b"), requirement(">=0.3, <0.5"));
    metadata
}

/// A crate entry using every field: a renamed, optional, target-specific, build
/// and dev dependency, features old and new (`dep:`, `?/`), `links`,
/// `rust_version`.
pub fn full_crate_entry() -> CrateEntry {
    let mut entry = CrateEntry::new(crate_name("Fuzz-Crate"));
    let mut serde = CrateDependency::new("serde", "^1.0.100");
    serde.features = vec!["derive".into()];
    serde.optional = true;
    let mut rng = CrateDependency::new("rng", "0.8");
    rng.package = Some("rand".into());
    rng.default_features = false;
    rng.target = Some("cfg(unix)".into());
    let mut cc = CrateDependency::new("cc", ">=1.0, <2");
    cc.kind = DependencyKind::Build;
    cc.registry = Some("https://github.com/rust-lang/crates.io-index".into());
    let mut tempfile = CrateDependency::new("tempfile", "3");
    tempfile.kind = DependencyKind::Dev;
    entry.deps = vec![serde, rng, cc, tempfile];
    entry.features.insert("default".into(), vec!["std".into()]);
    entry.features.insert("std".into(), vec![]);
    entry.features.insert("json".into(), vec!["dep:serde".into(), "rng?/serde".into()]);
    entry.links = Some("z".into());
    entry.rust_version = Some("1.70".into());
    entry
}

/// A few signed publications by [`fuzz_key`]: the smallest, one with every field,
/// one with several chunks and a successor index listing three versions, one of
/// them yanked, and a crate (a v3 manifest).
pub fn sample_publications() -> Vec<(SignedManifest, SignedPackageIndex)> {
    let publisher = Publisher::new(fuzz_key());
    let mut out = Vec::new();
    let small = PackageMetadata::new(parse("a"), version("0.0.1"), "x");
    if let Ok(pair) = publisher.publish(small, artifact(b"", 4096), None, 0) {
        out.push(pair);
    }
    if let Ok(pair) = publisher.publish(full_metadata(), artifact(b"full", 4096), None, 1_700_000_000) {
        out.push(pair);
    }
    let mut current: Option<PackageIndex> = None;
    for (at, number) in ["0.1.0", "0.2.0", "1.0.0"].into_iter().enumerate() {
        let metadata = PackageMetadata::new(parse("multi"), version(number), "three versions");
        let content = vec![at as u8; 9000];
        let Ok((manifest, index)) = publisher.publish(metadata, artifact(&content, 4096), current.as_ref(), at as u64)
        else {
            break;
        };
        current = Some(index.index().clone());
        out.push((manifest, index));
    }
    if let Some(index) = current {
        let first = index.versions[0].version.clone();
        if let Ok(Some(yanked)) = publisher.set_yanked(&index, &first, true, 10) {
            let last = out.last().map(|(manifest, _)| manifest.clone());
            if let Some(manifest) = last {
                out.push((manifest, yanked.clone()));
            }
            // v2 records: the owners change (a co-owner joins), the co-owner
            // publishes with the unpacked size recorded.
            let partner = Publisher::new(SecretKey::from_bytes(&[2; 32]));
            let owners = vec![publisher.public_key(), partner.public_key()];
            if let Ok(shared) = publisher.change_owners(yanked.index(), owners, 11) {
                let metadata = PackageMetadata::new(parse("multi"), version("1.1.0"), "by a co-owner");
                let info = artifact(b"co-owned", 4096);
                if let Ok(pair) = partner.publish_unpacked(metadata, info, Some(8), Some(shared.index()), 12) {
                    out.push(pair);
                }
            }
        }
    }
    let entry = full_crate_entry();
    let mut metadata = PackageMetadata::new(entry.name.package_name(), version("0.3.1"), "a crate");
    metadata.keywords = vec!["fuzz".into()];
    if let Ok(pair) = publisher.publish_crate(metadata, artifact(b"crate", 4096), Some(5), entry, None, 13) {
        out.push(pair);
    }
    out
}

/// An unsigned manifest whose publisher is [`fuzz_key`], for tests that sign it.
pub fn manifest_for(metadata: PackageMetadata, content: &[u8]) -> Manifest {
    Manifest {
        metadata,
        artifact: artifact(content, 4096),
        published_at: 0,
        publisher: fuzz_key().public_key(),
        unpacked_size: None,
        cargo: None,
    }
}

fn artifact(content: &[u8], chunk_size: u32) -> ArtifactInfo {
    match ArtifactInfo::compute(content, chunk_size) {
        Ok(info) => info,
        Err(error) => panic!("hashing a sample artifact: {error}"),
    }
}

fn parse(name: &str) -> agora_core::PackageName {
    match name.parse() {
        Ok(name) => name,
        Err(error) => panic!("a sample name: {error}"),
    }
}

fn version(text: &str) -> agora_core::Version {
    match agora_core::parse_version(text) {
        Ok(version) => version,
        Err(error) => panic!("a sample version: {error}"),
    }
}

fn requirement(text: &str) -> agora_core::VersionReq {
    match agora_core::VersionReq::parse(text) {
        Ok(requirement) => requirement,
        Err(error) => panic!("a sample requirement: {error}"),
    }
}

fn crate_name(text: &str) -> CrateName {
    match CrateName::parse(text) {
        Ok(name) => name,
        Err(error) => panic!("a sample crate name: {error}"),
    }
}
