//! Reading a `.crate` file: the gzip-compressed tar `cargo package` makes, every
//! entry under `<name>-<version>/`, whose `Cargo.toml` is the normalized manifest
//! (workspace inheritance resolved, path-only dependencies removed).
//!
//! [`read_crate_toml`] reads the whole tar once, with bounded work: at most
//! [`CrateLimits::max_unpacked_bytes`] of uncompressed tar, at most
//! [`CrateLimits::max_entries`] entries and a `Cargo.toml` of at most
//! [`CrateLimits::max_cargo_toml_bytes`], so a gzip bomb or an entry flood costs
//! nothing much. It extracts nothing: it checks that every entry path is a
//! plain relative path inside the one top directory, that the directory is the
//! `<name>-<version>` of the `Cargo.toml` in it, sums the regular files' sizes
//! and parses the `Cargo.toml` into a [`CrateToml`]. Links and other entry types
//! are allowed (cargo's own crates.io tarballs can hold them) since nothing is
//! written to disk.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::rc::Rc;

use agora_core::{CrateDependency, CrateEntry, CrateName, DependencyKind};
use flate2::read::GzDecoder;
use tar::EntryType;

use super::error::CargoError;
use super::metadata::CrateMetadata;
use super::publish::parse_version;
use crate::archive;
use crate::bounded::BoundedReader;

/// The manifest's file name inside a `.crate`'s top directory.
pub const CARGO_TOML: &str = "Cargo.toml";

/// The largest `Cargo.toml` read from a `.crate` file: 1 MiB.
pub const MAX_CARGO_TOML: u64 = 1 << 20;

/// How much work reading one `.crate` file may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrateLimits {
    /// Uncompressed tar bytes (contents, headers, padding) read at most.
    pub max_unpacked_bytes: u64,
    /// Entries (files, directories, links) at most.
    pub max_entries: usize,
    /// Size of `Cargo.toml` at most.
    pub max_cargo_toml_bytes: u64,
}

impl CrateLimits {
    /// The limits a node with `max_artifact_size` applies to a `.crate` of
    /// `crate_len` bytes: the unpacked size rule of Agora's own archives
    /// ([`archive::unpacked_limit`]), [`archive::MAX_ENTRIES`] entries, a 1 MiB
    /// `Cargo.toml`.
    pub fn for_crate(crate_len: u64, max_artifact_size: u64) -> Self {
        Self { max_unpacked_bytes: archive::unpacked_limit(crate_len, max_artifact_size), ..Self::default() }
    }
}

impl Default for CrateLimits {
    /// 1 GiB unpacked, [`archive::MAX_ENTRIES`] entries, a 1 MiB `Cargo.toml`.
    fn default() -> Self {
        Self { max_unpacked_bytes: 1 << 30, max_entries: archive::MAX_ENTRIES, max_cargo_toml_bytes: MAX_CARGO_TOML }
    }
}

/// The normalized `Cargo.toml` of a `.crate` file, in the parts Agora uses, and
/// what the file unpacks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateToml {
    /// `[package]` (or the `[project]` of very old crates).
    pub package: CratePackage,
    /// `[features]`.
    pub features: BTreeMap<String, Vec<String>>,
    /// `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]`, then the
    /// same tables of each `[target.'<cfg>']` (in the order of their keys);
    /// dependencies without a version (path or git only) are left out, as cargo
    /// leaves them out of what it publishes. `registry` is the table's
    /// `registry-index` (none = the registry the crate is served from).
    pub dependencies: Vec<CrateDependency>,
    /// Bytes of regular-file content in the `.crate` file.
    pub unpacked_size: u64,
}

/// `[package]` of a `Cargo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CratePackage {
    /// The descriptive fields: `name`, `version`, `description`, `keywords`,
    /// `categories`, `license`, `authors`, `homepage`, `repository`.
    pub metadata: CrateMetadata,
    /// `links`.
    pub links: Option<String>,
    /// `rust-version` (absent in crates older than Rust 1.56).
    pub rust_version: Option<String>,
    /// `edition` (absent in crates older than the 2018 edition).
    pub edition: Option<String>,
}

impl CrateToml {
    /// The descriptive fields, for [`package_metadata`](super::package_metadata).
    pub fn metadata(&self) -> CrateMetadata {
        self.package.metadata.clone()
    }
}

/// Reads the `<name>-<version>/Cargo.toml` of a `.crate` file, checking the whole
/// tar on the way (see the module documentation).
///
/// # Errors
///
/// [`CargoError::BadCrateFile`] for anything that is not a well-formed gzip tar
/// (never a panic), [`CargoError::UnsafePath`] for entries outside the top
/// directory or with `..`, absolute or non-UTF-8 paths, a duplicate `Cargo.toml`,
/// or a top directory other than `<name>-<version>`; [`CargoError::TooLarge`] and
/// [`CargoError::TooManyEntries`] past the limits;
/// [`CargoError::MissingCargoToml`]; [`CargoError::InvalidCargoToml`],
/// [`CargoError::InvalidName`] and [`CargoError::InvalidVersion`] for a
/// `Cargo.toml` that does not parse.
pub fn read_crate_toml(crate_bytes: &[u8], limits: CrateLimits) -> Result<CrateToml, CargoError> {
    if !crate_bytes.starts_with(&GZIP_MAGIC) {
        return Err(CargoError::BadCrateFile("it does not start like gzip data".into()));
    }
    let over_limit = Rc::new(Cell::new(false));
    let stream = BoundedReader::new(GzDecoder::new(crate_bytes), limits.max_unpacked_bytes, Rc::clone(&over_limit));
    let classify = |error: io::Error| {
        if over_limit.get() {
            CargoError::TooLarge {
                what: "the unpacked .crate file",
                size: limits.max_unpacked_bytes.saturating_add(1),
                limit: limits.max_unpacked_bytes,
            }
        } else {
            CargoError::BadCrateFile(format!("it is corrupt or truncated ({error})"))
        }
    };
    let mut tar = tar::Archive::new(stream);
    let mut top: Option<String> = None;
    let mut cargo_toml: Option<Vec<u8>> = None;
    let mut entries = 0usize;
    let mut unpacked_size = 0u64;
    for entry in tar.entries().map_err(classify)? {
        let mut entry = entry.map_err(classify)?;
        let entry_type = entry.header().entry_type();
        if entry_type == EntryType::XGlobalHeader {
            continue;
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(CargoError::TooManyEntries { limit: limits.max_entries });
        }
        let components = entry_components(&entry.path_bytes())?;
        let top = match &top {
            None => top.insert(components[0].clone()),
            Some(top) if *top != components[0] => {
                return Err(CargoError::UnsafePath(format!(
                    "`{}` is outside `{top}/`; a .crate file keeps everything under `<name>-<version>/`",
                    components.join("/")
                )));
            }
            Some(top) => top,
        };
        let is_file = matches!(entry_type, EntryType::Regular | EntryType::Continuous);
        if is_file {
            if components.len() == 1 {
                return Err(CargoError::UnsafePath(format!("`{top}` is a file, not the crate's directory")));
            }
            unpacked_size = unpacked_size.saturating_add(entry.size());
        }
        if components.len() == 2 && components[1] == CARGO_TOML {
            let origin = format!("`{top}/{CARGO_TOML}`");
            if cargo_toml.is_some() {
                return Err(CargoError::UnsafePath(format!("{origin} appears twice")));
            }
            if !is_file {
                return Err(CargoError::InvalidCargoToml { origin, message: "it is not a regular file".into() });
            }
            if entry.size() > limits.max_cargo_toml_bytes {
                return Err(CargoError::TooLarge {
                    what: "the .crate file's Cargo.toml",
                    size: entry.size(),
                    limit: limits.max_cargo_toml_bytes,
                });
            }
            let mut bytes = Vec::new();
            (&mut entry).take(limits.max_cargo_toml_bytes).read_to_end(&mut bytes).map_err(classify)?;
            cargo_toml = Some(bytes);
        }
    }
    // Read the rest of the gzip stream, so its checksum is verified too.
    io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(classify)?;

    let Some(top) = top else {
        return Err(CargoError::BadCrateFile("it holds no files".into()));
    };
    let origin = format!("`{top}/{CARGO_TOML}`");
    let Some(bytes) = cargo_toml else {
        return Err(CargoError::MissingCargoToml(origin));
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| CargoError::InvalidCargoToml { origin: origin.clone(), message: "it is not UTF-8".into() })?;
    let (package, features, dependencies) = parse_cargo_toml(&text, &origin)?;
    let CrateMetadata { name, version, .. } = &package.metadata;
    let expected = format!("{name}-{version}");
    if top != expected {
        return Err(CargoError::UnsafePath(format!(
            "its files are under `{top}/`, but its Cargo.toml describes {name} {version}: expected `{expected}/`"
        )));
    }
    Ok(CrateToml { package, features, dependencies, unpacked_size })
}

/// The crate entry a `.crate` file's `Cargo.toml` describes: its dependencies in
/// [`CrateToml::dependencies`] order, `registry` from `registry-index` (none =
/// the registry the crate is served from, which is right for a crate imported
/// into a crates.io mirror).
///
/// # Errors
///
/// [`CargoError::Invalid`] when the entry breaks the crate-entry rules
/// ([`CrateEntry::validate`]).
pub fn entry_from_toml(crate_toml: &CrateToml) -> Result<CrateEntry, CargoError> {
    let package = &crate_toml.package;
    let entry = CrateEntry {
        name: package.metadata.name.clone(),
        deps: crate_toml.dependencies.clone(),
        features: crate_toml.features.clone(),
        links: package.links.clone(),
        rust_version: package.rust_version.clone(),
    };
    entry.validate()?;
    Ok(entry)
}

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The dependency tables of a manifest or a `[target.'<cfg>']` table, and their
/// kinds; the second spelling is the deprecated one, read only without the first.
const DEPENDENCY_TABLES: [(&str, &str, DependencyKind); 3] = [
    ("dependencies", "dependencies", DependencyKind::Normal),
    ("dev-dependencies", "dev_dependencies", DependencyKind::Dev),
    ("build-dependencies", "build_dependencies", DependencyKind::Build),
];

/// The components of an entry path: UTF-8, relative, no `..`; empty and `.`
/// components are skipped. Never empty.
fn entry_components(raw: &[u8]) -> Result<Vec<String>, CargoError> {
    let shown = String::from_utf8_lossy(raw).chars().take(200).collect::<String>();
    let Ok(path) = std::str::from_utf8(raw) else {
        return Err(CargoError::UnsafePath(format!("`{shown}` is not UTF-8")));
    };
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(CargoError::UnsafePath(format!("`{shown}` is absolute")));
    }
    let mut components = Vec::new();
    for component in path.split('/').filter(|component| !component.is_empty() && *component != ".") {
        if component == ".." || component.split('\\').any(|part| part == "..") {
            return Err(CargoError::UnsafePath(format!("`{shown}` contains `..`")));
        }
        if component.contains('\0') || (components.is_empty() && component.contains(':')) {
            return Err(CargoError::UnsafePath(format!("`{shown}` is not a plain relative path")));
        }
        components.push(component.to_owned());
    }
    if components.is_empty() {
        return Err(CargoError::UnsafePath(format!("`{shown}` is an empty path")));
    }
    Ok(components)
}

type ParsedToml = (CratePackage, BTreeMap<String, Vec<String>>, Vec<CrateDependency>);

fn parse_cargo_toml(text: &str, origin: &str) -> Result<ParsedToml, CargoError> {
    let invalid = |message: String| CargoError::InvalidCargoToml { origin: origin.to_owned(), message };
    let manifest: toml::Table = toml::from_str(text).map_err(|error| invalid(error.to_string().trim().to_owned()))?;
    let fields = Fields { origin };
    let Some(package) = manifest.get("package").or_else(|| manifest.get("project")) else {
        return Err(invalid("there is no [package] table".into()));
    };
    let package = fields.table(package, "package")?;
    let Some(name) = fields.opt_str(package, "package", "name")? else {
        return Err(invalid("`package.name` is missing".into()));
    };
    let Some(version) = fields.opt_str(package, "package", "version")? else {
        return Err(invalid("`package.version` is missing".into()));
    };
    let package_fields = CratePackage {
        metadata: CrateMetadata {
            name: CrateName::parse(&name)?,
            version: parse_version(&version)?,
            description: fields.opt_str(package, "package", "description")?,
            keywords: fields.strs(package, "package", "keywords")?,
            categories: fields.strs(package, "package", "categories")?,
            license: fields.opt_str(package, "package", "license")?,
            authors: fields.strs(package, "package", "authors")?,
            homepage: fields.opt_str(package, "package", "homepage")?,
            repository: fields.opt_str(package, "package", "repository")?,
        },
        links: fields.opt_str(package, "package", "links")?,
        rust_version: fields.opt_str(package, "package", "rust-version")?,
        edition: fields.opt_str(package, "package", "edition")?,
    };
    let mut features = BTreeMap::new();
    if let Some(table) = manifest.get("features") {
        for (feature, values) in fields.table(table, "features")? {
            features.insert(feature.clone(), fields.str_list(values, &format!("features.{feature}"))?);
        }
    }
    let mut dependencies = Vec::new();
    fields.dependencies(&manifest, "", None, &mut dependencies)?;
    if let Some(targets) = manifest.get("target") {
        for (target, table) in fields.table(targets, "target")? {
            let place = format!("target.'{target}'.");
            let table = fields.table(table, &format!("target.'{target}'"))?;
            fields.dependencies(table, &place, Some(target), &mut dependencies)?;
        }
    }
    Ok((package_fields, features, dependencies))
}

/// Typed access to a TOML table with errors that name the field.
struct Fields<'a> {
    origin: &'a str,
}

impl Fields<'_> {
    fn invalid(&self, message: String) -> CargoError {
        CargoError::InvalidCargoToml { origin: self.origin.to_owned(), message }
    }

    fn table<'t>(&self, value: &'t toml::Value, place: &str) -> Result<&'t toml::Table, CargoError> {
        value.as_table().ok_or_else(|| self.invalid(format!("`{place}` must be a table")))
    }

    fn opt_str(&self, table: &toml::Table, place: &str, key: &str) -> Result<Option<String>, CargoError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.invalid(format!("`{place}.{key}` must be a string"))),
        }
    }

    fn opt_bool(&self, table: &toml::Table, place: &str, key: &str) -> Result<Option<bool>, CargoError> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(flag)) => Ok(Some(*flag)),
            Some(_) => Err(self.invalid(format!("`{place}.{key}` must be true or false"))),
        }
    }

    fn strs(&self, table: &toml::Table, place: &str, key: &str) -> Result<Vec<String>, CargoError> {
        match table.get(key) {
            None => Ok(Vec::new()),
            Some(value) => self.str_list(value, &format!("{place}.{key}")),
        }
    }

    fn str_list(&self, value: &toml::Value, place: &str) -> Result<Vec<String>, CargoError> {
        let not_strings = || self.invalid(format!("`{place}` must be an array of strings"));
        value
            .as_array()
            .ok_or_else(not_strings)?
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_strings))
            .collect()
    }

    /// Appends the dependencies of the three dependency tables of `table`.
    fn dependencies(
        &self,
        table: &toml::Table,
        prefix: &str,
        target: Option<&String>,
        out: &mut Vec<CrateDependency>,
    ) -> Result<(), CargoError> {
        for (key, deprecated, kind) in DEPENDENCY_TABLES {
            let Some((key, value)) = table.get_key_value(key).or_else(|| table.get_key_value(deprecated)) else {
                continue;
            };
            let place = format!("{prefix}{key}");
            for (name, spec) in self.table(value, &place)? {
                if let Some(mut dependency) = self.dependency(name, spec, &format!("{place}.{name}"))? {
                    dependency.kind = kind;
                    dependency.target = target.cloned();
                    out.push(dependency);
                }
            }
        }
        Ok(())
    }

    /// One dependency: a requirement string or a table; `None` without a version.
    fn dependency(&self, name: &str, spec: &toml::Value, place: &str) -> Result<Option<CrateDependency>, CargoError> {
        let table = match spec {
            toml::Value::String(req) => return Ok(Some(CrateDependency::new(name, req.clone()))),
            toml::Value::Table(table) => table,
            _ => return Err(self.invalid(format!("`{place}` must be a version string or a table"))),
        };
        let Some(req) = self.opt_str(table, place, "version")? else {
            return Ok(None);
        };
        let mut dependency = CrateDependency::new(name, req);
        dependency.package = self.opt_str(table, place, "package")?;
        dependency.optional = self.opt_bool(table, place, "optional")?.unwrap_or(false);
        let default_features = match self.opt_bool(table, place, "default-features")? {
            Some(flag) => Some(flag),
            None => self.opt_bool(table, place, "default_features")?,
        };
        dependency.default_features = default_features.unwrap_or(true);
        dependency.features = self.strs(table, place, "features")?;
        dependency.registry = self.opt_str(table, place, "registry-index")?;
        Ok(Some(dependency))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;
    use std::path::Path;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    /// The normalized `Cargo.toml` cargo writes for the library of
    /// `publish::tests::CARGO_JSON` (shape as `cargo package` writes it).
    pub(crate) const CARGO_TOML_TEXT: &str = r#"
# THIS FILE IS AUTOMATICALLY GENERATED BY CARGO
[package]
edition = "2021"
rust-version = "1.70"
name = "Demo-Lib"
version = "0.3.1"
authors = ["Alice <a@example.com>"]
build = false
autobins = false
description = "a demo library"
homepage = "https://example.org"
readme = "README.md"
keywords = ["demo"]
categories = ["development-tools::testing"]
license = "MIT"

[lib]
name = "demo_lib"
path = "src/lib.rs"

[dependencies.serde]
version = "1.0.100"
features = ["derive"]
optional = true
default-features = false

[dependencies.local-only]
path = "../local-only"

[dev-dependencies.tempfile]
version = "3"

[features]
default = ["std"]
json = ["dep:serde", "rng?/serde"]
std = []

[target."cfg(unix)".dependencies.rng]
version = "0.8"
package = "rand"
"#;

    /// A tar entry: a path (written raw, so `..` and absolute paths can be
    /// tested), a type and contents.
    pub(crate) struct TestEntry<'a> {
        pub(crate) path: &'a [u8],
        pub(crate) kind: EntryType,
        pub(crate) contents: &'a [u8],
    }

    pub(crate) fn file<'a>(path: &'a str, contents: &'a [u8]) -> TestEntry<'a> {
        TestEntry { path: path.as_bytes(), kind: EntryType::Regular, contents }
    }

    pub(crate) fn tar_of(entries: &[TestEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_gnu();
            header.as_old_mut().name[..entry.path.len()].copy_from_slice(entry.path);
            header.set_entry_type(entry.kind);
            header.set_size(entry.contents.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append(&header, entry.contents).unwrap();
        }
        builder.into_inner().unwrap()
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A `.crate` file as `cargo package` makes it for `CARGO_TOML_TEXT`.
    pub(crate) fn demo_crate() -> Vec<u8> {
        gzip(&tar_of(&[
            file("Demo-Lib-0.3.1/Cargo.toml", CARGO_TOML_TEXT.as_bytes()),
            file("Demo-Lib-0.3.1/Cargo.toml.orig", b"[package]\nname = \"Demo-Lib\"\n"),
            file("Demo-Lib-0.3.1/src/lib.rs", b"pub fn demo() {}\n"),
            file("Demo-Lib-0.3.1/README.md", b"I am the README"),
        ]))
    }

    #[test]
    fn a_crate_file_is_read_into_its_typed_cargo_toml() {
        let crate_toml = read_crate_toml(&demo_crate(), CrateLimits::default()).unwrap();
        let package = &crate_toml.package;
        assert_eq!(
            (package.metadata.name.as_str(), package.metadata.version.to_string().as_str()),
            ("Demo-Lib", "0.3.1")
        );
        assert_eq!(package.rust_version.as_deref(), Some("1.70"));
        assert_eq!(package.edition.as_deref(), Some("2021"));
        assert_eq!(package.metadata.categories, ["development-tools::testing"]);
        assert_eq!(crate_toml.unpacked_size, (CARGO_TOML_TEXT.len() + 28 + 17 + 15) as u64);
        let deps: Vec<(&str, Option<&str>, DependencyKind, Option<&str>)> = crate_toml
            .dependencies
            .iter()
            .map(|d| (d.name.as_str(), d.package.as_deref(), d.kind, d.target.as_deref()))
            .collect();
        assert_eq!(
            deps,
            [
                ("serde", None, DependencyKind::Normal, None),
                ("tempfile", None, DependencyKind::Dev, None),
                ("rng", Some("rand"), DependencyKind::Normal, Some("cfg(unix)")),
            ],
            "the path-only dependency is dropped"
        );
        let serde = &crate_toml.dependencies[0];
        assert!(serde.optional && !serde.default_features);
        assert_eq!((serde.req.as_str(), serde.features.as_slice()), ("1.0.100", ["derive".to_owned()].as_slice()));
        let entry = entry_from_toml(&crate_toml).unwrap();
        assert_eq!(entry.features["json"], ["dep:serde", "rng?/serde"]);
        assert_eq!(entry.rust_version.as_deref(), Some("1.70"));
        assert_eq!(crate_toml.metadata().description.as_deref(), Some("a demo library"));
    }

    #[test]
    fn old_spellings_and_missing_fields_are_understood() {
        let text = r#"
[project]
name = "old"
version = "0.1.0"
authors = []
[dev_dependencies]
log = "0.3"
[build_dependencies.gcc]
version = "0.3"
default_features = false
registry-index = "https://example.org/index"
[target.x86_64-pc-windows-gnu.dependencies]
winapi = "0.2"
"#;
        let crate_bytes = gzip(&tar_of(&[file("old-0.1.0/Cargo.toml", text.as_bytes())]));
        let crate_toml = read_crate_toml(&crate_bytes, CrateLimits::default()).unwrap();
        assert_eq!((crate_toml.package.rust_version.as_ref(), crate_toml.package.edition.as_ref()), (None, None));
        assert_eq!(crate_toml.package.metadata.description, None);
        let kinds: Vec<(DependencyKind, Option<&str>)> =
            crate_toml.dependencies.iter().map(|d| (d.kind, d.target.as_deref())).collect();
        assert_eq!(
            kinds,
            [
                (DependencyKind::Dev, None),
                (DependencyKind::Build, None),
                (DependencyKind::Normal, Some("x86_64-pc-windows-gnu"))
            ]
        );
        let gcc = &crate_toml.dependencies[1];
        assert!(!gcc.default_features);
        assert_eq!(gcc.registry.as_deref(), Some("https://example.org/index"));
    }

    #[test]
    fn bad_crate_files_are_refused_with_their_reason() {
        let toml = CARGO_TOML_TEXT.as_bytes();
        let cargo = "Demo-Lib-0.3.1/Cargo.toml";
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("not gzip", b"PK\x03\x04 a zip".to_vec(), "does not start like gzip data"),
            ("truncated gzip", demo_crate()[..40].to_vec(), "corrupt or truncated"),
            ("empty tar", gzip(&[0; 1024]), "it holds no files"),
            (
                "traversal",
                gzip(&tar_of(&[file(cargo, toml), file("Demo-Lib-0.3.1/../../etc/passwd", b"x")])),
                "contains `..`",
            ),
            ("absolute", gzip(&tar_of(&[file("/Demo-Lib-0.3.1/Cargo.toml", toml)])), "is absolute"),
            (
                "second top directory",
                gzip(&tar_of(&[file(cargo, toml), file("other-1.0.0/src/lib.rs", b"")])),
                "`other-1.0.0/src/lib.rs` is outside `Demo-Lib-0.3.1/`",
            ),
            ("wrong prefix", gzip(&tar_of(&[file("demo-lib-0.3.1/Cargo.toml", toml)])), "expected `Demo-Lib-0.3.1/`"),
            (
                "missing Cargo.toml",
                gzip(&tar_of(&[file("Demo-Lib-0.3.1/src/lib.rs", b"")])),
                "the .crate file has no `Demo-Lib-0.3.1/Cargo.toml`",
            ),
            ("nested Cargo.toml only", gzip(&tar_of(&[file("Demo-Lib-0.3.1/sub/Cargo.toml", toml)])), "has no"),
            ("two Cargo.toml", gzip(&tar_of(&[file(cargo, toml), file(cargo, toml)])), "appears twice"),
            (
                "Cargo.toml a link",
                gzip(&tar_of(&[TestEntry { path: cargo.as_bytes(), kind: EntryType::Symlink, contents: b"" }])),
                "it is not a regular file",
            ),
            ("top is a file", gzip(&tar_of(&[file("Demo-Lib-0.3.1", b"")])), "is a file"),
            (
                "not UTF-8 path",
                gzip(&tar_of(&[TestEntry { path: b"Demo\xff/x", kind: EntryType::Regular, contents: b"" }])),
                "not UTF-8",
            ),
            ("bad toml", gzip(&tar_of(&[file(cargo, b"[package\nname = 1")])), "Cargo.toml` is invalid"),
            ("no package", gzip(&tar_of(&[file(cargo, b"[lib]\n")])), "there is no [package] table"),
            (
                "wrong type",
                gzip(&tar_of(&[file(cargo, b"[package]\nname = \"a\"\nversion = \"1.0.0\"\nkeywords = \"x\"\n")])),
                "`package.keywords` must be an array of strings",
            ),
            (
                "bad dependency",
                gzip(&tar_of(&[file(cargo, b"[package]\nname = \"a\"\nversion = \"1.0.0\"\n[dependencies]\nx = 1\n")])),
                "`dependencies.x` must be a version string or a table",
            ),
            (
                "bad name",
                gzip(&tar_of(&[file("1a-1.0.0/Cargo.toml", b"[package]\nname = \"1a\"\nversion = \"1.0.0\"\n")])),
                "invalid crate name `1a`",
            ),
            (
                "bad version",
                gzip(&tar_of(&[file("a-1.0/Cargo.toml", b"[package]\nname = \"a\"\nversion = \"1.0\"\n")])),
                "invalid version `1.0`",
            ),
        ];
        for (case, bytes, expected) in cases {
            let error = read_crate_toml(&bytes, CrateLimits::default()).unwrap_err().to_string();
            assert!(error.contains(expected), "{case}: expected `{expected}` in `{error}`");
        }
    }

    #[test]
    fn limits_bound_the_work() {
        // A gzip bomb: 64 MiB of zeros in a few KiB, far past a 1 MiB limit.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let mut header = tar::Header::new_gnu();
        header.set_path("bomb-1.0.0/zeros").unwrap();
        header.set_size(64 << 20);
        header.set_cksum();
        encoder.write_all(header.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 512 * 1024, "{} bytes", bomb.len());
        let limits = CrateLimits::for_crate(bomb.len() as u64, 256 << 20);
        assert!(limits.max_unpacked_bytes < 64 << 20);
        let error = read_crate_toml(&bomb, limits).unwrap_err();
        assert!(matches!(error, CargoError::TooLarge { what: "the unpacked .crate file", .. }), "{error}");

        let many: Vec<String> = (0..20).map(|i| format!("Demo-Lib-0.3.1/f{i}")).collect();
        let mut entries = vec![file("Demo-Lib-0.3.1/Cargo.toml", CARGO_TOML_TEXT.as_bytes())];
        entries.extend(many.iter().map(|path| file(path, b"")));
        let limits = CrateLimits { max_entries: 10, ..CrateLimits::default() };
        let error = read_crate_toml(&gzip(&tar_of(&entries)), limits).unwrap_err();
        assert_eq!(error, CargoError::TooManyEntries { limit: 10 });

        let limits = CrateLimits { max_cargo_toml_bytes: 100, ..CrateLimits::default() };
        let error = read_crate_toml(&demo_crate(), limits).unwrap_err().to_string();
        assert!(error.contains("the .crate file's Cargo.toml is"), "{error}");
    }

    #[test]
    fn a_damaged_gzip_checksum_is_noticed() {
        let mut crate_bytes = demo_crate();
        let crc_at = crate_bytes.len() - 8;
        crate_bytes[crc_at] ^= 0xff;
        let error = read_crate_toml(&crate_bytes, CrateLimits::default()).unwrap_err();
        assert!(matches!(error, CargoError::BadCrateFile(_)), "{error}");
    }

    /// The `.crate` files of the machine's cargo cache (`~/.cargo/registry/cache/*/`), if any.
    pub(crate) fn cached_crates() -> Vec<std::path::PathBuf> {
        let Some(home) = std::env::var_os("CARGO_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        else {
            return Vec::new();
        };
        let mut crates = Vec::new();
        for registry in std::fs::read_dir(home.join("registry/cache")).into_iter().flatten().flatten() {
            for file in std::fs::read_dir(registry.path()).into_iter().flatten().flatten() {
                if file.path().extension().is_some_and(|extension| extension == "crate") {
                    crates.push(file.path());
                }
            }
        }
        crates.sort();
        crates
    }

    #[test]
    fn real_crates_from_the_cargo_cache_are_read() {
        let crates = cached_crates();
        let wanted: Vec<&std::path::PathBuf> = crates
            .iter()
            .filter(|path| {
                let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
                ["serde-1", "tokio-1", "toml-0", "libc-0"].iter().any(|prefix| name.starts_with(prefix))
            })
            .collect();
        if wanted.is_empty() {
            println!("note: no serde, tokio, toml or libc .crate in the cargo cache; skipping the real-crate check");
            return;
        }
        for path in wanted {
            let bytes = std::fs::read(path).unwrap();
            let limits = CrateLimits::for_crate(bytes.len() as u64, 256 << 20);
            let crate_toml =
                read_crate_toml(&bytes, limits).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            let file_name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            assert_eq!(
                format!("{}-{}.crate", crate_toml.package.metadata.name, crate_toml.package.metadata.version),
                file_name
            );
            assert!(crate_toml.unpacked_size > bytes.len() as u64);
            entry_from_toml(&crate_toml).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        }
    }
}
