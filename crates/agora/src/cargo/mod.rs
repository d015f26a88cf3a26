//! Cargo's side of Agora: the pure functions a Cargo registry gateway is made of.
//!
//! A crate version enters Agora in one of two ways. `cargo publish` sends a body
//! of JSON and `.crate` bytes ([`parse_publish_body`]); the JSON becomes a
//! [`CrateEntry`] ([`entry_from_publish`]) that must agree with the one the
//! `.crate` file's own `Cargo.toml` gives ([`read_crate_toml`],
//! [`entry_from_toml`], [`check_agreement`]): [`prepare_publish`] does all of it.
//! An existing `.crate` file (`agora cargo import`) is described by its
//! `Cargo.toml` alone: [`prepare_import`]. Either way the result is a
//! [`PreparedCrate`]: the Agora [`PackageMetadata`] ([`package_metadata`]), the
//! crate entry and the unpacked size, ready for
//! [`Publisher::publish_crate`](agora_core::Publisher::publish_crate) with the
//! `.crate` bytes as the artifact. Going out, [`index_line`] renders a signed
//! manifest as the line of cargo's sparse index, whose `cksum` is the artifact's
//! SHA-256. Errors are [`CargoError`]s, whose Display is what a cargo user reads.
//!
//! What this module is not: no node, no store, no network, no HTTP, no clock.
//! Which names exist, who owns them and whether a version is yanked are the
//! node's to know; these functions take what they need as arguments.

mod agreement;
mod crate_file;
mod error;
mod index_line;
mod metadata;
mod publish;

pub use agora_core::{CrateDependency, CrateEntry, CrateName, DependencyKind};
pub use agreement::check_agreement;
pub use crate_file::{
    CARGO_TOML, CrateLimits, CratePackage, CrateToml, MAX_CARGO_TOML, entry_from_toml, read_crate_toml,
};
pub use error::CargoError;
pub use index_line::{index_file, index_line};
pub use metadata::{CrateMetadata, MetadataOrigin, package_metadata};
pub use publish::{MAX_PUBLISH_JSON, PublishDependency, PublishRequest, entry_from_publish, parse_publish_body};

use agora_core::PackageMetadata;

/// A crate version checked and described, ready to be signed and stored with
/// its `.crate` bytes as the artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCrate {
    /// The Agora metadata: name `crates/<canonical>`, valid by Agora's rules.
    pub metadata: PackageMetadata,
    /// What cargo's index line says, signed with the manifest.
    pub entry: CrateEntry,
    /// Bytes of file content the `.crate` unpacks to.
    pub unpacked_size: u64,
}

/// Everything `PUT /api/v1/crates/new` needs before signing: splits the body
/// (a `.crate` of at most `max_artifact_size` bytes), reads the `.crate` file
/// within [`CrateLimits::for_crate`], checks that the request and the
/// `Cargo.toml` agree (name, version, [`check_agreement`]) and builds the
/// metadata (a description is required). The entry is the request's (its
/// `registry` fields are what cargo means). Returns the `.crate` bytes too.
///
/// # Errors
///
/// Those of [`parse_publish_body`], [`read_crate_toml`], [`entry_from_publish`],
/// [`entry_from_toml`], [`check_agreement`] (also for a version that differs)
/// and [`package_metadata`].
pub fn prepare_publish(body: &[u8], max_artifact_size: u64) -> Result<(PreparedCrate, &[u8]), CargoError> {
    let max_crate_bytes = usize::try_from(max_artifact_size).unwrap_or(usize::MAX);
    let (request, crate_bytes) = parse_publish_body(body, max_crate_bytes)?;
    let json_entry = entry_from_publish(&request)?;
    let version = request.version()?;
    let crate_toml = read_crate_toml(crate_bytes, CrateLimits::for_crate(crate_bytes.len() as u64, max_artifact_size))?;
    let toml_entry = entry_from_toml(&crate_toml)?;
    check_agreement(&json_entry, &toml_entry)?;
    if crate_toml.package.metadata.version != version {
        return Err(CargoError::Disagreement(format!(
            "the publish request is for version {version}, the .crate file's Cargo.toml says {}",
            crate_toml.package.metadata.version
        )));
    }
    let metadata = package_metadata(&request.metadata()?, MetadataOrigin::Publish)?;
    Ok((PreparedCrate { metadata, entry: json_entry, unpacked_size: crate_toml.unpacked_size }, crate_bytes))
}

/// Everything `agora cargo import` needs before signing an existing `.crate`
/// file of at most `max_artifact_size` bytes: its `Cargo.toml` read within
/// [`CrateLimits::for_crate`], the entry from it, the metadata with a fallback
/// description.
///
/// # Errors
///
/// [`CargoError::TooLarge`] for a file over `max_artifact_size`, and those of
/// [`read_crate_toml`], [`entry_from_toml`] and [`package_metadata`].
pub fn prepare_import(crate_bytes: &[u8], max_artifact_size: u64) -> Result<PreparedCrate, CargoError> {
    let size = crate_bytes.len() as u64;
    if size > max_artifact_size {
        return Err(CargoError::TooLarge { what: "the .crate file", size, limit: max_artifact_size });
    }
    let crate_toml = read_crate_toml(crate_bytes, CrateLimits::for_crate(size, max_artifact_size))?;
    let entry = entry_from_toml(&crate_toml)?;
    let metadata = package_metadata(&crate_toml.metadata(), MetadataOrigin::Import)?;
    Ok(PreparedCrate { metadata, entry, unpacked_size: crate_toml.unpacked_size })
}

/// Refuses a new version spelled differently from the crate's published one
/// (`existing`, the name in its current crate entry): `Foo_Bar` and `foo-bar`
/// are one crate, published under the spelling it was first published with, as
/// on crates.io.
///
/// # Errors
///
/// [`CargoError::NearDuplicate`] when the spellings differ.
pub fn check_spelling(existing: &CrateName, requested: &CrateName) -> Result<(), CargoError> {
    if existing == requested {
        return Ok(());
    }
    Err(CargoError::NearDuplicate { existing: existing.to_string(), requested: requested.to_string() })
}

#[cfg(test)]
mod tests {
    use agora_core::{ArtifactInfo, Publisher, SecretKey, SignedManifest};

    use super::*;
    use crate::cargo::crate_file::tests::{cached_crates, demo_crate, file, gzip, tar_of};
    use crate::cargo::publish::tests::CARGO_JSON;

    fn demo_body() -> Vec<u8> {
        let request: PublishRequest = serde_json::from_str(CARGO_JSON).unwrap();
        request.to_body(&demo_crate())
    }

    #[test]
    fn a_publish_becomes_a_signed_crate_and_its_index_line() {
        let body = demo_body();
        let (prepared, crate_bytes) = prepare_publish(&body, 1 << 20).unwrap();
        assert_eq!(crate_bytes, demo_crate().as_slice());
        assert_eq!(prepared.metadata.name.as_str(), "crates/demo_lib");
        assert_eq!(prepared.metadata.categories, ["development-tools/testing"]);
        assert_eq!(prepared.entry.deps[0].registry.as_deref(), Some("https://github.com/rust-lang/crates.io-index"));
        let publisher = Publisher::new(SecretKey::from_bytes(&[9; 32]));
        let artifact = ArtifactInfo::compute(crate_bytes, ArtifactInfo::DEFAULT_CHUNK_SIZE).unwrap();
        let (manifest, _index) = publisher
            .publish_crate(prepared.metadata, artifact, Some(prepared.unpacked_size), prepared.entry, None, 1)
            .unwrap();
        // Any node decodes it and renders the same line, with the .crate's SHA-256.
        let received = SignedManifest::from_bytes(&manifest.to_bytes()).unwrap();
        let line: serde_json::Value = serde_json::from_str(&index_line(received.manifest(), false).unwrap()).unwrap();
        assert_eq!(line["name"], "Demo-Lib");
        assert_eq!(line["vers"], "0.3.1");
        assert_eq!(line["cksum"], agora_core::Digest::of(crate_bytes).to_hex());
        assert_eq!(line["v"], 2);
        assert_eq!(line["features2"]["json"], serde_json::json!(["dep:serde", "rng?/serde"]));
        assert_eq!(line["deps"][1]["name"], "rng");
        assert_eq!(line["deps"][1]["package"], "rand");
    }

    #[test]
    fn a_publish_whose_cargo_toml_disagrees_is_refused() {
        let mut request: PublishRequest = serde_json::from_str(CARGO_JSON).unwrap();
        request.deps[0].optional = false;
        let error = prepare_publish(&request.to_body(&demo_crate()), 1 << 20).unwrap_err().to_string();
        assert_eq!(
            error,
            "the .crate file's Cargo.toml says dependency `serde` is optional, the publish request says it is not"
        );
        let mut request: PublishRequest = serde_json::from_str(CARGO_JSON).unwrap();
        request.vers = "0.3.2".into();
        let error = prepare_publish(&request.to_body(&demo_crate()), 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "the publish request is for version 0.3.2, the .crate file's Cargo.toml says 0.3.1");
        let mut request: PublishRequest = serde_json::from_str(CARGO_JSON).unwrap();
        request.description = None;
        let error = prepare_publish(&request.to_body(&demo_crate()), 1 << 20).unwrap_err().to_string();
        assert_eq!(error, "missing or empty metadata fields: description");
        let error = prepare_publish(&demo_body(), 100).unwrap_err();
        assert!(matches!(error, CargoError::TooLarge { what: "the .crate file", .. }), "{error}");
    }

    #[test]
    fn an_import_needs_only_the_crate_file() {
        let text = "[package]\nname = \"bare\"\nversion = \"0.1.0\"\n[dependencies]\nlog = \"0.4\"\n";
        let crate_bytes = gzip(&tar_of(&[file("bare-0.1.0/Cargo.toml", text.as_bytes())]));
        let prepared = prepare_import(&crate_bytes, 1 << 20).unwrap();
        assert_eq!(prepared.metadata.description, "bare 0.1.0");
        assert_eq!(prepared.entry.deps[0].registry, None, "crates.io's, which a mirror serves as its own");
        assert_eq!(prepared.unpacked_size, text.len() as u64);
        assert!(matches!(prepare_import(&crate_bytes, 10), Err(CargoError::TooLarge { .. })));
    }

    #[test]
    fn a_near_duplicate_spelling_is_refused() {
        let existing = CrateName::parse("Foo_Bar").unwrap();
        check_spelling(&existing, &CrateName::parse("Foo_Bar").unwrap()).unwrap();
        let error = check_spelling(&existing, &CrateName::parse("foo-bar").unwrap()).unwrap_err().to_string();
        assert_eq!(
            error,
            "crate `foo-bar` is already published as `Foo_Bar`; crate names are case-insensitive and treat `-` and \
             `_` alike, so publish it as `Foo_Bar`"
        );
    }

    /// One crate's lines in cargo's local sparse-index cache
    /// (`~/.cargo/registry/index/*/.cache/<index path>`): a header (a version
    /// byte, a `u32`, a NUL-terminated revision) then NUL-terminated pairs of
    /// version and JSON line.
    fn cached_index_line(crate_path: &std::path::Path, name: &CrateName, version: &str) -> Option<serde_json::Value> {
        let cache = crate_path.parent()?.parent()?.parent()?.join("index");
        let registry = crate_path.parent()?.file_name()?;
        let bytes = std::fs::read(cache.join(registry).join(".cache").join(name.index_path())).ok()?;
        let body = bytes.get(5..)?;
        let mut fields = body.split(|byte| *byte == 0).skip(1);
        while let (Some(listed), Some(json)) = (fields.next(), fields.next()) {
            if listed == version.as_bytes() {
                return serde_json::from_slice(json).ok();
            }
        }
        None
    }

    /// The crate entry crates.io's index line describes (features and
    /// features2 merged), to hold against the one read from the `.crate` file.
    fn entry_from_index_line(line: &serde_json::Value) -> CrateEntry {
        let mut entry = CrateEntry::new(CrateName::parse(line["name"].as_str().unwrap()).unwrap());
        let strings = |value: &serde_json::Value| -> Vec<String> {
            value.as_array().into_iter().flatten().filter_map(|item| item.as_str().map(str::to_owned)).collect()
        };
        for dep in line["deps"].as_array().into_iter().flatten() {
            let mut dependency = CrateDependency::new(dep["name"].as_str().unwrap(), dep["req"].as_str().unwrap());
            dependency.package = dep["package"].as_str().map(str::to_owned);
            dependency.features = strings(&dep["features"]);
            dependency.optional = dep["optional"].as_bool().unwrap_or(false);
            dependency.default_features = dep["default_features"].as_bool().unwrap_or(true);
            dependency.target = dep["target"].as_str().map(str::to_owned);
            dependency.kind = dep["kind"].as_str().and_then(DependencyKind::parse).unwrap_or_default();
            entry.deps.push(dependency);
        }
        for key in ["features", "features2"] {
            for (feature, values) in line[key].as_object().into_iter().flatten() {
                entry.features.insert(feature.clone(), strings(values));
            }
        }
        entry.links = line["links"].as_str().map(str::to_owned);
        entry.rust_version = line["rust_version"].as_str().map(str::to_owned);
        entry
    }

    /// Every `.crate` in the machine's cargo cache imports, and what its
    /// `Cargo.toml` says agrees with crates.io's own index line for it (when
    /// cargo's index cache has it): the same comparison a publish makes.
    #[test]
    fn the_cargo_cache_imports_and_agrees_with_crates_io() {
        let crates = cached_crates();
        assert!(
            !crates.is_empty(),
            "no .crate files in the cargo cache (~/.cargo/registry/cache): building the workspace fills it"
        );
        let (mut compared, mut failures) = (0, Vec::new());
        for path in &crates {
            let bytes = std::fs::read(path).unwrap();
            let prepared = match prepare_import(&bytes, 256 << 20) {
                Ok(prepared) => prepared,
                Err(error) => {
                    failures.push(format!("{}: {error}", path.display()));
                    continue;
                }
            };
            prepared.metadata.validate().unwrap();
            let version = prepared.metadata.version.to_string();
            let Some(line) = cached_index_line(path, &prepared.entry.name, &version) else { continue };
            let crates_io = entry_from_index_line(&line);
            if let Err(error) = check_agreement(&crates_io, &prepared.entry) {
                failures.push(format!("{}: {error}", path.display()));
            }
            // Our line for it: the same checksum (the artifact digest is cargo's
            // `cksum`), the same split of features into `features`/`features2`.
            let publisher = Publisher::new(SecretKey::from_bytes(&[9; 32]));
            let artifact = ArtifactInfo::compute(&bytes, ArtifactInfo::DEFAULT_CHUNK_SIZE).unwrap();
            let (manifest, _) = publisher
                .publish_crate(prepared.metadata, artifact, Some(prepared.unpacked_size), prepared.entry, None, 1)
                .unwrap();
            let ours: serde_json::Value =
                serde_json::from_str(&index_line(manifest.manifest(), false).unwrap()).unwrap();
            let empty = serde_json::json!({});
            for key in ["name", "vers", "cksum", "features", "v", "links", "rust_version"] {
                if ours.get(key) != line.get(key).filter(|value| !value.is_null()) {
                    failures.push(format!(
                        "{}: `{key}` is {:?}, crates.io says {:?}",
                        path.display(),
                        ours.get(key),
                        line.get(key)
                    ));
                }
            }
            if ours.get("features2").unwrap_or(&empty)
                != line.get("features2").filter(|v| !v.is_null()).unwrap_or(&empty)
            {
                failures.push(format!("{}: `features2` differs from crates.io's", path.display()));
            }
            compared += 1;
        }
        println!("{} cached crates imported, {compared} compared with crates.io's index", crates.len());
        assert!(failures.is_empty(), "{} of {}:\n{}", failures.len(), crates.len(), failures.join("\n"));
    }
}
