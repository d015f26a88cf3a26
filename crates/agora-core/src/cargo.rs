//! Crates: what cargo needs to resolve a crate version, signed as part of its
//! manifest.
//!
//! A crate `Serde-JSON` is the Agora package `crates/serde_json`: the crate
//! namespace's prefix and the crate's canonical name ([`CrateName::canonical`]:
//! lowercased, `-` turned into `_`), so two spellings crates.io treats as one
//! crate are one Agora name and the usual ownership rules (trust on first use,
//! contested names) apply to them unchanged. The [`CrateEntry`] of a version is
//! everything of cargo's index line that the manifest does not already hold (the
//! version, the checksum = the artifact digest, `yanked` = the index flag): the
//! name as spelled, the dependencies, the features, `links`, `rust_version`.
//! A manifest carrying one is encoded as `agora/manifest/v3` (`docs/PROTOCOL.md`).
//!
//! This module checks shapes and bounds only. It does not read `.crate` files,
//! parse cargo's JSON or render index lines (the facade's `cargo` module does), and
//! it does not know reserved names.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding::{Decoder, Encoder};
use crate::{Error, PackageName, Result, VersionReq};

/// The longest crate name (crates.io's limit), and the longest dependency name.
pub const MAX_CRATE_NAME_LEN: usize = 64;
/// Most dependencies one crate version may list (all kinds and targets together).
pub const MAX_CRATE_DEPENDENCIES: usize = 1024;
/// Most features one crate version may define.
pub const MAX_CRATE_FEATURES: usize = 2048;
/// Most values one feature may list, and most features a dependency may enable.
pub const MAX_FEATURE_VALUES: usize = 512;
/// Longest string in a crate entry (a feature, a requirement, a registry URL…)
/// but a target.
pub const MAX_CRATE_STRING: usize = 256;
/// Longest dependency target. `cfg(...)` expressions can be long: rustix 1.1
/// (in nearly every dependency tree) has one of 802 bytes.
pub const MAX_CRATE_TARGET: usize = 4096;
/// Largest encoded crate entry.
pub const MAX_CRATE_ENTRY_SIZE: usize = 256 * 1024;

/// A crate name that breaks crates.io's naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid crate name `{name}`: {reason}")]
pub struct CrateNameError {
    /// The offending input (at most 80 characters of it).
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl From<CrateNameError> for Error {
    fn from(error: CrateNameError) -> Self {
        Error::InvalidName { name: error.name, reason: error.reason }
    }
}

/// A crate's name as its author spells it: 1–64 ASCII letters, digits, `-` and
/// `_`, starting with a letter (crates.io's rule). Case and `-`/`_` are kept;
/// [`CrateName::canonical`] folds them for comparison.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CrateName(String);

impl CrateName {
    /// Checks `input` against crates.io's naming rules.
    pub fn parse(input: &str) -> Result<Self, CrateNameError> {
        let invalid = |reason| Err(CrateNameError { name: input.chars().take(80).collect(), reason });
        let Some(first) = input.chars().next() else {
            return invalid("a crate name cannot be empty");
        };
        if input.len() > MAX_CRATE_NAME_LEN {
            return invalid("a crate name is at most 64 characters");
        }
        if !first.is_ascii_alphabetic() {
            return invalid("a crate name starts with an ASCII letter");
        }
        if !input.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return invalid("a crate name holds only ASCII letters, digits, `-` and `_`");
        }
        Ok(Self(input.to_owned()))
    }

    /// The name as spelled.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name crates.io compares for collisions: ASCII-lowercased, `-` → `_`.
    pub fn canonical(&self) -> String {
        self.0.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_lowercase() }).collect()
    }

    /// The Agora package this crate is: `crates/<canonical>`.
    pub fn package_name(&self) -> PackageName {
        PackageName::for_crate(&self.canonical())
    }

    /// The path of this crate's file in cargo's sparse index, from the lowercased
    /// name (`-` kept): `1/a`, `2/ab`, `3/a/abc`, `ab/cd/abcd…`.
    pub fn index_path(&self) -> String {
        let lower = self.0.to_ascii_lowercase();
        match lower.len() {
            1 => format!("1/{lower}"),
            2 => format!("2/{lower}"),
            3 => format!("3/{}/{lower}", &lower[..1]),
            _ => format!("{}/{}/{lower}", &lower[..2], &lower[2..4]),
        }
    }

    /// The crate name a sparse-index path asks for, if `path` is exactly the
    /// [`index_path`](Self::index_path) of a valid, lowercase name (cargo asks in
    /// lowercase). The name comes back as requested, which may differ from the
    /// spelling a publisher chose in case or `-`/`_`.
    pub fn from_index_path(path: &str) -> Result<Self, CrateNameError> {
        let file = path.rsplit('/').next().unwrap_or_default();
        let name = Self::parse(file)?;
        if file != file.to_ascii_lowercase() || name.index_path() != path {
            return Err(CrateNameError {
                name: path.chars().take(80).collect(),
                reason: "not the sparse-index path of a lowercase crate name",
            });
        }
        Ok(name)
    }
}

impl fmt::Display for CrateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CrateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CrateName({})", self.0)
    }
}

impl FromStr for CrateName {
    type Err = CrateNameError;

    fn from_str(input: &str) -> Result<Self, CrateNameError> {
        Self::parse(input)
    }
}

impl AsRef<str> for CrateName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for CrateName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CrateName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// When cargo needs a dependency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyKind {
    /// `[dependencies]`.
    #[default]
    Normal,
    /// `[dev-dependencies]`.
    Dev,
    /// `[build-dependencies]`.
    Build,
}

impl DependencyKind {
    /// The name cargo's JSON uses: `normal`, `dev`, `build`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Dev => "dev",
            Self::Build => "build",
        }
    }

    /// The kind cargo's JSON names, if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "normal" => Some(Self::Normal),
            "dev" => Some(Self::Dev),
            "build" => Some(Self::Build),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Normal => 0,
            Self::Dev => 1,
            Self::Build => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        [Self::Normal, Self::Dev, Self::Build].into_iter().find(|kind| kind.code() == code)
    }
}

impl fmt::Display for DependencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One dependency of a crate version, as cargo's index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CrateDependency {
    /// The name the depending crate uses in code: the rename when renamed.
    pub name: String,
    /// The real crate name when the dependency is renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The version requirement as written; must parse as a [`VersionReq`].
    pub req: String,
    /// Features it enables on the dependency.
    #[serde(default)]
    pub features: Vec<String>,
    /// Whether it is optional (enabled by a feature).
    #[serde(default)]
    pub optional: bool,
    /// Whether the dependency's default features are on.
    #[serde(default = "default_true")]
    pub default_features: bool,
    /// The platform it is for (`cfg(windows)`, a target triple); `None` for all.
    #[serde(default)]
    pub target: Option<String>,
    /// Normal, dev or build.
    #[serde(default)]
    pub kind: DependencyKind,
    /// The index URL of the registry it comes from; `None` for the same registry.
    #[serde(default)]
    pub registry: Option<String>,
}

impl CrateDependency {
    /// A normal dependency on `name` with `req`, default features, no rename.
    pub fn new(name: impl Into<String>, req: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            package: None,
            req: req.into(),
            features: Vec::new(),
            optional: false,
            default_features: true,
            target: None,
            kind: DependencyKind::Normal,
            registry: None,
        }
    }

    /// The crate depended on: `package` when renamed, else `name`.
    pub fn crate_name(&self) -> &str {
        self.package.as_deref().unwrap_or(&self.name)
    }

    /// The requirement, parsed.
    pub fn version_req(&self) -> Result<VersionReq> {
        VersionReq::parse(&self.req)
            .map_err(|error| Error::InvalidVersion { input: self.req.clone(), reason: error.to_string() })
    }
}

/// Everything cargo needs to resolve one crate version beyond what its manifest
/// already holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CrateEntry {
    /// The crate's name as spelled by its author.
    pub name: CrateName,
    /// Its dependencies, in the order published.
    #[serde(default)]
    pub deps: Vec<CrateDependency>,
    /// All its features (`[features]`), whatever their syntax; an index line
    /// splits them into `features` and `features2` when rendered.
    #[serde(default)]
    pub features: BTreeMap<String, Vec<String>>,
    /// The native library it links (`package.links`).
    #[serde(default)]
    pub links: Option<String>,
    /// Its minimum supported Rust version (`package.rust-version`).
    #[serde(default)]
    pub rust_version: Option<String>,
}

impl CrateEntry {
    /// An entry with no dependencies, features, `links` or `rust_version`.
    pub fn new(name: CrateName) -> Self {
        Self { name, deps: Vec::new(), features: BTreeMap::new(), links: None, rust_version: None }
    }

    /// Checks names, counts, lengths, requirements and the encoded size.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidManifest(format!("crate `{}`: {message}", self.name)));
        if self.deps.len() > MAX_CRATE_DEPENDENCIES {
            return invalid(format!("{} dependencies, over the limit of {MAX_CRATE_DEPENDENCIES}", self.deps.len()));
        }
        for (position, dependency) in self.deps.iter().enumerate() {
            if let Err(message) = check_dependency(dependency) {
                return invalid(format!("dependency #{} `{}`: {message}", position + 1, shown(&dependency.name)));
            }
        }
        if self.features.len() > MAX_CRATE_FEATURES {
            return invalid(format!("{} features, over the limit of {MAX_CRATE_FEATURES}", self.features.len()));
        }
        for (feature, values) in &self.features {
            if let Err(message) = check_text(feature, MAX_CRATE_STRING) {
                return invalid(format!("feature name `{}` {message}", shown(feature)));
            }
            if let Err(message) = check_list(values) {
                return invalid(format!("feature `{feature}`: {message}"));
            }
        }
        if let Some(links) = &self.links
            && let Err(message) = check_text(links, MAX_CRATE_STRING)
        {
            return invalid(format!("`links` {message}"));
        }
        if let Some(rust_version) = &self.rust_version
            && !is_rust_version(rust_version)
        {
            return invalid(format!(
                "`rust_version` `{}` is not a version like `1.70` or `1.70.0`",
                shown(rust_version)
            ));
        }
        let size = self.encoded_len();
        if size > MAX_CRATE_ENTRY_SIZE {
            return invalid(format!("the entry encodes to {size} bytes, over the limit of {MAX_CRATE_ENTRY_SIZE}"));
        }
        Ok(())
    }

    /// Appends the canonical encoding (`docs/PROTOCOL.md`, manifest v3).
    pub(crate) fn encode(&self, encoder: &mut Encoder) {
        encoder.str(self.name.as_str());
        encoder.len(self.deps.len());
        for dependency in &self.deps {
            encoder.str(&dependency.name);
            encoder.opt_str(dependency.package.as_deref());
            encoder.str(&dependency.req);
            encoder.strs(&dependency.features);
            encoder.bool(dependency.optional);
            encoder.bool(dependency.default_features);
            encoder.opt_str(dependency.target.as_deref());
            encoder.u8(dependency.kind.code());
            encoder.opt_str(dependency.registry.as_deref());
        }
        encoder.len(self.features.len());
        for (feature, values) in &self.features {
            encoder.str(feature);
            encoder.strs(values);
        }
        encoder.opt_str(self.links.as_deref());
        encoder.opt_str(self.rust_version.as_deref());
    }

    /// Reads what [`CrateEntry::encode`] wrote. Strict: features in ascending
    /// order, once each, so that re-encoding gives the same bytes. Does not
    /// [`validate`](Self::validate); the manifest's decoder does.
    pub(crate) fn decode(decoder: &mut Decoder<'_>) -> Result<Self> {
        let name = CrateName::parse(decoder.str()?)?;
        // The smallest dependency: name (4 + 1), no package (1), requirement
        // (4 + 1), no features (4), two flags, no target (1), kind, no registry (1).
        let dependency_count = decoder.count(MAX_CRATE_DEPENDENCIES, 19)?;
        let mut deps = Vec::with_capacity(dependency_count);
        for _ in 0..dependency_count {
            let name = decoder.string()?;
            let package = decoder.opt_string()?;
            let req = decoder.string()?;
            let features = decoder.strings(MAX_FEATURE_VALUES)?;
            let optional = decoder.bool()?;
            let default_features = decoder.bool()?;
            let target = decoder.opt_string()?;
            let code = decoder.u8()?;
            let Some(kind) = DependencyKind::from_code(code) else {
                return Err(decoder.error(format!("unknown dependency kind {code}")));
            };
            let registry = decoder.opt_string()?;
            deps.push(CrateDependency {
                name,
                package,
                req,
                features,
                optional,
                default_features,
                target,
                kind,
                registry,
            });
        }
        let feature_count = decoder.count(MAX_CRATE_FEATURES, 8)?;
        let mut features = BTreeMap::new();
        for _ in 0..feature_count {
            let feature = decoder.string()?;
            let values = decoder.strings(MAX_FEATURE_VALUES)?;
            if features.last_key_value().is_some_and(|(last, _): (&String, _)| *last >= feature) {
                return Err(decoder.error(format!("feature `{}` is out of order or repeated", shown(&feature))));
            }
            features.insert(feature, values);
        }
        let links = decoder.opt_string()?;
        let rust_version = decoder.opt_string()?;
        Ok(Self { name, deps, features, links, rust_version })
    }

    fn encoded_len(&self) -> usize {
        let empty = Encoder::new("").finish().len();
        let mut encoder = Encoder::new("");
        self.encode(&mut encoder);
        encoder.finish().len() - empty
    }
}

fn default_true() -> bool {
    true
}

/// At most 80 characters of `text`, for messages.
fn shown(text: &str) -> String {
    text.chars().take(80).collect::<String>().escape_debug().to_string()
}

fn check_dependency(dependency: &CrateDependency) -> Result<(), String> {
    check_dependency_name(&dependency.name).map_err(|message| format!("the name {message}"))?;
    if let Some(package) = &dependency.package {
        check_dependency_name(package).map_err(|message| format!("the package `{}` {message}", shown(package)))?;
    }
    check_text(&dependency.req, MAX_CRATE_STRING).map_err(|message| format!("the requirement {message}"))?;
    if let Err(error) = VersionReq::parse(&dependency.req) {
        return Err(format!("the requirement `{}` is not a version requirement: {error}", shown(&dependency.req)));
    }
    check_list(&dependency.features).map_err(|message| format!("its features: {message}"))?;
    if let Some(target) = &dependency.target {
        check_text(target, MAX_CRATE_TARGET).map_err(|message| format!("the target {message}"))?;
    }
    if let Some(registry) = &dependency.registry {
        check_text(registry, MAX_CRATE_STRING).map_err(|message| format!("the registry {message}"))?;
    }
    Ok(())
}

/// A dependency's name or real crate name: 1–64 ASCII letters, digits, `-` and
/// `_`, starting with a letter or `_` (cargo accepts `_` first in a rename).
fn check_dependency_name(name: &str) -> Result<(), String> {
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if name.is_empty()
        || name.len() > MAX_CRATE_NAME_LEN
        || !starts_well
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "must be 1 to {MAX_CRATE_NAME_LEN} ASCII letters, digits, `-` and `_`, starting with a letter or `_`"
        ));
    }
    Ok(())
}

fn check_list(values: &[String]) -> Result<(), String> {
    if values.len() > MAX_FEATURE_VALUES {
        return Err(format!("{} values, over the limit of {MAX_FEATURE_VALUES}", values.len()));
    }
    for value in values {
        check_text(value, MAX_CRATE_STRING).map_err(|message| format!("`{}` {message}", shown(value)))?;
    }
    Ok(())
}

fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
        return Err(format!("must be 1 to {max} bytes of printable text"));
    }
    Ok(())
}

/// `1`, `1.70` or `1.70.0`: what cargo accepts as `rust-version`.
fn is_rust_version(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() <= 3
        && parts.iter().all(|part| !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A crate entry using every field.
    pub(crate) fn sample_entry(name: &str) -> CrateEntry {
        let mut entry = CrateEntry::new(CrateName::parse(name).unwrap());
        let mut serde = CrateDependency::new("serde", "^1.0.100");
        serde.features = vec!["derive".into()];
        serde.optional = true;
        let mut rand = CrateDependency::new("rng", "0.8");
        rand.package = Some("rand".into());
        rand.default_features = false;
        rand.target = Some("cfg(unix)".into());
        let mut cc = CrateDependency::new("cc", ">=1.0, <2");
        cc.kind = DependencyKind::Build;
        cc.registry = Some("https://github.com/rust-lang/crates.io-index".into());
        let mut tempfile = CrateDependency::new("tempfile", "3");
        tempfile.kind = DependencyKind::Dev;
        entry.deps = vec![serde, rand, cc, tempfile];
        entry.features.insert("default".into(), vec!["std".into()]);
        entry.features.insert("std".into(), vec![]);
        entry.features.insert("serde".into(), vec!["dep:serde".into(), "rng?/serde".into()]);
        entry.links = Some("z".into());
        entry.rust_version = Some("1.70".into());
        entry
    }

    fn encode(entry: &CrateEntry) -> Vec<u8> {
        let mut encoder = Encoder::new("t");
        entry.encode(&mut encoder);
        encoder.finish()
    }

    fn decode(bytes: &[u8]) -> Result<CrateEntry> {
        let mut decoder = Decoder::new("crate entry", "t", bytes)?;
        let entry = CrateEntry::decode(&mut decoder)?;
        decoder.finish()?;
        Ok(entry)
    }

    #[test]
    fn crate_names_follow_crates_io() {
        for good in ["a", "Serde-JSON", "serde_json", "x1", "A_b-C", &"a".repeat(64)] {
            assert!(CrateName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "-a", "_a", "a b", "a.b", "a/b", "héllo", "a+b", &"a".repeat(65)] {
            assert!(CrateName::parse(bad).is_err(), "{bad}");
        }
        let error = CrateName::parse("a.b").unwrap_err().to_string();
        assert_eq!(error, "invalid crate name `a.b`: a crate name holds only ASCII letters, digits, `-` and `_`");
    }

    #[test]
    fn spellings_crates_io_treats_as_one_are_one_package() {
        let names =
            ["Serde-JSON", "serde_json", "serde-json", "SERDE_json"].map(|name| CrateName::parse(name).unwrap());
        for name in &names {
            assert_eq!(name.canonical(), "serde_json");
            assert_eq!(name.package_name().as_str(), "crates/serde_json");
            assert!(name.package_name().is_crate());
        }
        assert_eq!(names[0].as_str(), "Serde-JSON", "the spelling is kept");
        assert_ne!(CrateName::parse("serde").unwrap().package_name(), names[0].package_name());
    }

    #[test]
    fn index_paths_follow_cargo() {
        let cases = [
            ("a", "1/a"),
            ("Ab", "2/ab"),
            ("abc", "3/a/abc"),
            ("ABCD", "ab/cd/abcd"),
            ("cargo", "ca/rg/cargo"),
            ("Serde-JSON", "se/rd/serde-json"),
        ];
        for (name, path) in cases {
            let crate_name = CrateName::parse(name).unwrap();
            assert_eq!(crate_name.index_path(), path, "{name}");
            assert_eq!(CrateName::from_index_path(path).unwrap().as_str(), name.to_ascii_lowercase());
        }
        for bad in ["", "1/ab", "2/a", "3/b/abc", "ab/ce/abcd", "ab/cd/ABCD", "1/1", "x/1/a", "se/rd/serde json"] {
            assert!(CrateName::from_index_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_encoding_round_trips_and_is_strict() {
        let entry = sample_entry("Demo-Crate");
        entry.validate().unwrap();
        let bytes = encode(&entry);
        assert_eq!(decode(&bytes).unwrap(), entry);
        // Features out of order do not decode.
        let mut swapped = Encoder::new("t");
        swapped.str("demo");
        swapped.len(0);
        swapped.len(2);
        swapped.str("b");
        swapped.strs::<String>(&[]);
        swapped.str("a");
        swapped.strs::<String>(&[]);
        swapped.opt_str(None);
        swapped.opt_str(None);
        let error = decode(&swapped.finish()).unwrap_err().to_string();
        assert!(error.contains("out of order"), "{error}");
        // An unknown kind does not decode.
        let mut broken = Encoder::new("t");
        broken.str("demo");
        broken.len(1);
        broken.str("x");
        broken.opt_str(None);
        broken.str("1");
        broken.strs::<String>(&[]);
        broken.bool(false);
        broken.bool(true);
        broken.opt_str(None);
        broken.u8(3);
        broken.opt_str(None);
        broken.len(0);
        broken.opt_str(None);
        broken.opt_str(None);
        let error = decode(&broken.finish()).unwrap_err().to_string();
        assert!(error.contains("unknown dependency kind 3"), "{error}");
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode(&trailing).is_err(), "trailing bytes");
    }

    #[test]
    fn validation_names_what_is_wrong() {
        type Mutation = Box<dyn Fn(&mut CrateEntry)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("1025 dependencies", Box::new(|e| e.deps = vec![CrateDependency::new("a", "1"); 1025])),
            ("dependency #1 `a b`: the name", Box::new(|e| e.deps[0].name = "a b".into())),
            ("the package", Box::new(|e| e.deps[1].package = Some(String::new()))),
            ("is not a version requirement", Box::new(|e| e.deps[0].req = "one".into())),
            ("the target", Box::new(|e| e.deps[0].target = Some("x".repeat(4097)))),
            ("the registry", Box::new(|e| e.deps[0].registry = Some("a\nb".into()))),
            ("its features", Box::new(|e| e.deps[0].features = vec![String::new()])),
            ("513 values", Box::new(|e| e.deps[0].features = vec!["f".into(); 513])),
            ("2049 features", Box::new(|e| e.features = (0..2049).map(|i| (format!("f{i}"), vec![])).collect())),
            ("feature name", Box::new(|e| drop(e.features.insert("x".repeat(257), vec![])))),
            ("feature `std`", Box::new(|e| drop(e.features.insert("std".into(), vec!["v".into(); 513])))),
            ("`links`", Box::new(|e| e.links = Some(String::new()))),
            ("`rust_version`", Box::new(|e| e.rust_version = Some("1.70-beta".into()))),
            (
                "over the limit of 262144",
                Box::new(|e| {
                    e.features = (0..1100).map(|i| (format!("f{i:04}"), vec!["v".repeat(250); 2])).collect();
                }),
            ),
        ];
        for (expected, mutate) in cases {
            let mut entry = sample_entry("demo");
            mutate(&mut entry);
            let error = entry.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "expected `{expected}` in `{error}`");
            assert!(error.starts_with("invalid manifest: crate `demo`: "), "{error}");
        }
        for good in ["1", "1.70", "1.70.0"] {
            let entry = CrateEntry { rust_version: Some(good.into()), ..sample_entry("demo") };
            assert!(entry.validate().is_ok(), "{good}");
        }
        let mut renamed = sample_entry("demo");
        renamed.deps[0].name = "_private".into();
        assert!(renamed.validate().is_ok(), "a rename may start with `_`");
    }

    #[test]
    fn json_form_uses_cargo_words() {
        let entry = sample_entry("demo");
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["deps"][2]["kind"], "build");
        assert_eq!(json["deps"][1]["package"], "rand");
        assert!(json["deps"][0].get("package").is_none());
        assert_eq!(serde_json::from_value::<CrateEntry>(json).unwrap(), entry);
        assert!(serde_json::from_str::<CrateEntry>(r#"{"name":"1bad"}"#).is_err());
    }

    fn dependency() -> impl Strategy<Value = CrateDependency> {
        (
            "[a-z_][a-z0-9_-]{0,20}",
            proptest::option::of("[a-z][a-z0-9_-]{0,20}"),
            prop_oneof![Just("1"), Just("^0.3.1"), Just(">=1, <2"), Just("*"), Just("~1.2")],
            proptest::collection::vec("[a-z][a-z0-9/?:_-]{0,12}", 0..4),
            any::<(bool, bool)>(),
            proptest::option::of(prop_oneof![Just("cfg(unix)".to_owned()), Just("x86_64-pc-windows-msvc".to_owned())]),
            0u8..3,
            proptest::option::of(Just("https://github.com/rust-lang/crates.io-index".to_owned())),
        )
            .prop_map(
                |(name, package, req, features, (optional, default_features), target, kind, registry)| {
                    CrateDependency {
                        name,
                        package,
                        req: req.to_owned(),
                        features,
                        optional,
                        default_features,
                        target,
                        kind: DependencyKind::from_code(kind).unwrap_or_default(),
                        registry,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_valid_entry_round_trips(
            name in "[A-Za-z][A-Za-z0-9_-]{0,30}",
            deps in proptest::collection::vec(dependency(), 0..6),
            features in proptest::collection::btree_map(
                "[a-z][a-z0-9_-]{0,12}",
                proptest::collection::vec("(dep:)?[a-z][a-z0-9?/_-]{0,12}", 0..4),
                0..6,
            ),
            links in proptest::option::of("[a-z]{1,8}"),
            rust_version in proptest::option::of("1\\.[0-9]{1,2}(\\.[0-9])?"),
        ) {
            let entry = CrateEntry { name: CrateName::parse(&name).unwrap(), deps, features, links, rust_version };
            prop_assert!(entry.validate().is_ok());
            let bytes = encode(&entry);
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, &entry);
            prop_assert_eq!(encode(&decoded), bytes);
            let json = serde_json::to_string(&entry).unwrap();
            prop_assert_eq!(serde_json::from_str::<CrateEntry>(&json).unwrap(), entry);
        }

        #[test]
        fn canonical_names_are_valid_crate_package_names(name in "[A-Za-z][A-Za-z0-9_-]{0,63}") {
            let crate_name = CrateName::parse(&name).unwrap();
            let package = PackageName::parse(&format!("crates/{}", crate_name.canonical())).unwrap();
            prop_assert_eq!(&crate_name.package_name(), &package);
            let requested = CrateName::from_index_path(&crate_name.index_path()).unwrap();
            prop_assert_eq!(requested.as_str(), name.to_ascii_lowercase());
        }
    }
}
