//! The body of cargo's `PUT /api/v1/crates/new`: a little-endian `u32` length,
//! that much JSON ([`PublishRequest`]), a little-endian `u32` length, that much
//! `.crate` file, and nothing after.
//!
//! The JSON is parsed as the Cargo reference's "Registry Web API" describes it:
//! unknown fields are ignored and a missing or `null` field means its empty
//! value, so older and newer cargos are both understood. Nothing is trusted yet:
//! the request must agree with the `.crate` file's own `Cargo.toml`
//! ([`check_agreement`](super::check_agreement)).

use std::collections::BTreeMap;

use agora_core::{CrateDependency, CrateEntry, CrateName, DependencyKind, Version};
use serde::{Deserialize, Deserializer, Serialize};

use super::error::CargoError;
use super::metadata::CrateMetadata;

/// The largest publish JSON accepted: 1 MiB (it carries the README).
pub const MAX_PUBLISH_JSON: usize = 1 << 20;

/// The metadata cargo sends with `cargo publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The crate's name as spelled in its `Cargo.toml`.
    pub name: String,
    /// The version being published.
    pub vers: String,
    /// Its dependencies, every kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deps: Vec<PublishDependency>,
    /// The `[features]` table.
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: BTreeMap<String, Vec<String>>,
    /// `package.authors`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub authors: Vec<String>,
    /// `package.description`.
    #[serde(default)]
    pub description: Option<String>,
    /// `package.documentation`.
    #[serde(default)]
    pub documentation: Option<String>,
    /// `package.homepage`.
    #[serde(default)]
    pub homepage: Option<String>,
    /// The README's content.
    #[serde(default)]
    pub readme: Option<String>,
    /// The README's path in the crate.
    #[serde(default)]
    pub readme_file: Option<String>,
    /// `package.keywords`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub keywords: Vec<String>,
    /// `package.categories`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub categories: Vec<String>,
    /// `package.license`.
    #[serde(default)]
    pub license: Option<String>,
    /// `package.license-file`.
    #[serde(default)]
    pub license_file: Option<String>,
    /// `package.repository`.
    #[serde(default)]
    pub repository: Option<String>,
    /// `[badges]`: badge name → attributes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub badges: BTreeMap<String, BTreeMap<String, String>>,
    /// `package.links`.
    #[serde(default)]
    pub links: Option<String>,
    /// `package.rust-version`.
    #[serde(default)]
    pub rust_version: Option<String>,
}

/// One dependency in a publish request. Unlike the index, `name` is the real
/// crate name and `explicit_name_in_toml` the rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishDependency {
    /// Whether it is optional.
    #[serde(default, deserialize_with = "null_as_default")]
    pub optional: bool,
    /// Whether its default features are on.
    #[serde(default = "yes", deserialize_with = "null_as_true")]
    pub default_features: bool,
    /// The real crate name.
    pub name: String,
    /// Features it enables.
    #[serde(default, deserialize_with = "null_as_default")]
    pub features: Vec<String>,
    /// The version requirement.
    pub version_req: String,
    /// The platform it is for, if not all.
    #[serde(default)]
    pub target: Option<String>,
    /// `normal`, `dev` or `build`; missing means `normal`.
    #[serde(default)]
    pub kind: Option<String>,
    /// The index URL of its registry; `None` for the registry published to.
    #[serde(default)]
    pub registry: Option<String>,
    /// The name the depending crate uses, when renamed.
    #[serde(default)]
    pub explicit_name_in_toml: Option<String>,
}

impl PublishDependency {
    /// A normal dependency on `name` with `version_req`, default features.
    pub fn new(name: impl Into<String>, version_req: impl Into<String>) -> Self {
        Self {
            optional: false,
            default_features: true,
            name: name.into(),
            features: Vec::new(),
            version_req: version_req.into(),
            target: None,
            kind: Some(DependencyKind::Normal.as_str().to_owned()),
            registry: None,
            explicit_name_in_toml: None,
        }
    }
}

impl PublishRequest {
    /// A request for `name`@`vers` with nothing else set.
    pub fn new(name: impl Into<String>, vers: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            vers: vers.into(),
            deps: Vec::new(),
            features: BTreeMap::new(),
            authors: Vec::new(),
            description: None,
            documentation: None,
            homepage: None,
            readme: None,
            readme_file: None,
            keywords: Vec::new(),
            categories: Vec::new(),
            license: None,
            license_file: None,
            repository: None,
            badges: BTreeMap::new(),
            links: None,
            rust_version: None,
        }
    }

    /// The crate name, checked.
    pub fn crate_name(&self) -> Result<CrateName, CargoError> {
        Ok(CrateName::parse(&self.name)?)
    }

    /// The version, checked.
    pub fn version(&self) -> Result<Version, CargoError> {
        parse_version(&self.vers)
    }

    /// The descriptive fields, for [`package_metadata`](super::package_metadata).
    pub fn metadata(&self) -> Result<CrateMetadata, CargoError> {
        Ok(CrateMetadata {
            name: self.crate_name()?,
            version: self.version()?,
            description: self.description.clone(),
            keywords: self.keywords.clone(),
            categories: self.categories.clone(),
            authors: self.authors.clone(),
            license: self.license.clone(),
            homepage: self.homepage.clone(),
            repository: self.repository.clone(),
        })
    }

    /// The wire form cargo sends (for tests and tools that publish like cargo).
    pub fn to_body(&self, crate_bytes: &[u8]) -> Vec<u8> {
        // Serializing this struct to JSON cannot fail: string keys, no floats.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut body = Vec::with_capacity(8 + json.len() + crate_bytes.len());
        body.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
        body.extend_from_slice(&json);
        body.extend_from_slice(&u32::try_from(crate_bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        body.extend_from_slice(crate_bytes);
        body
    }
}

/// Splits a publish body into its request and its `.crate` bytes.
///
/// # Errors
///
/// [`CargoError::MalformedBody`] when a length is missing, says more than the
/// body holds, or bytes follow the `.crate` file; [`CargoError::TooLarge`] for
/// JSON over [`MAX_PUBLISH_JSON`] or a `.crate` file over `max_crate_bytes`
/// (both checked from the length prefix, before reading); and
/// [`CargoError::InvalidJson`] when the JSON is not cargo's publish metadata.
pub fn parse_publish_body(body: &[u8], max_crate_bytes: usize) -> Result<(PublishRequest, &[u8]), CargoError> {
    let (json_len, rest) = length_prefix(body, "the JSON length")?;
    if json_len > MAX_PUBLISH_JSON {
        return Err(CargoError::TooLarge {
            what: "the publish request's JSON",
            size: json_len as u64,
            limit: MAX_PUBLISH_JSON as u64,
        });
    }
    let Some((json, rest)) = rest.split_at_checked(json_len) else {
        return Err(CargoError::MalformedBody(format!(
            "the JSON length says {json_len} bytes, but only {} bytes follow",
            rest.len()
        )));
    };
    let (crate_len, rest) = length_prefix(rest, "the .crate file's length")?;
    if crate_len > max_crate_bytes {
        return Err(CargoError::TooLarge {
            what: "the .crate file",
            size: crate_len as u64,
            limit: max_crate_bytes as u64,
        });
    }
    if rest.len() < crate_len {
        return Err(CargoError::MalformedBody(format!(
            "the .crate file's length says {crate_len} bytes, but only {} bytes follow",
            rest.len()
        )));
    }
    if rest.len() > crate_len {
        return Err(CargoError::MalformedBody(format!(
            "{} bytes follow the .crate file; the body ends with it",
            rest.len() - crate_len
        )));
    }
    let request = serde_json::from_slice(json).map_err(|error| CargoError::InvalidJson(error.to_string()))?;
    Ok((request, rest))
}

/// The crate entry the publish request describes: dependencies in its order,
/// renamed ones under the name used in code with `package` the real crate, the
/// `registry` of each as given (`None` = the registry published to).
///
/// # Errors
///
/// [`CargoError::InvalidName`] for the crate's name, [`CargoError::Invalid`]
/// for an unknown dependency kind or an entry that breaks the crate-entry rules
/// ([`CrateEntry::validate`]).
pub fn entry_from_publish(request: &PublishRequest) -> Result<CrateEntry, CargoError> {
    let mut entry = CrateEntry::new(request.crate_name()?);
    for dependency in &request.deps {
        let kind = match dependency.kind.as_deref() {
            None => DependencyKind::Normal,
            Some(text) => DependencyKind::parse(text).ok_or_else(|| {
                CargoError::Invalid(format!(
                    "dependency `{}` has the unknown kind `{}`; expected normal, dev or build",
                    dependency.name,
                    text.chars().take(80).collect::<String>()
                ))
            })?,
        };
        let (name, package) = match &dependency.explicit_name_in_toml {
            Some(rename) => (rename.clone(), Some(dependency.name.clone())),
            None => (dependency.name.clone(), None),
        };
        entry.deps.push(CrateDependency {
            name,
            package,
            req: dependency.version_req.clone(),
            features: dependency.features.clone(),
            optional: dependency.optional,
            default_features: dependency.default_features,
            target: dependency.target.clone(),
            kind,
            registry: dependency.registry.clone(),
        });
    }
    entry.features = request.features.clone();
    entry.links = request.links.clone();
    entry.rust_version = request.rust_version.clone();
    entry.validate()?;
    Ok(entry)
}

pub(crate) fn parse_version(text: &str) -> Result<Version, CargoError> {
    agora_core::parse_version(text).map_err(|error| match error {
        agora_core::Error::InvalidVersion { input, reason } => {
            CargoError::InvalidVersion { input: input.chars().take(80).collect(), reason }
        }
        other => CargoError::from(other),
    })
}

/// A little-endian `u32` length at the start of `bytes`, and what follows it.
fn length_prefix<'a>(bytes: &'a [u8], what: &str) -> Result<(usize, &'a [u8]), CargoError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(CargoError::MalformedBody(format!(
            "the body ends before {what} (4 bytes needed, {} left)",
            bytes.len()
        )));
    };
    Ok((u32::from_le_bytes(*prefix) as usize, rest))
}

fn yes() -> bool {
    true
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn null_as_true<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What `cargo publish` sends for a library with a renamed, an optional, a
    /// target-specific and a dev dependency (shape taken from cargo's
    /// `NewCrate`, field for field).
    pub(crate) const CARGO_JSON: &str = r#"{
        "name": "Demo-Lib", "vers": "0.3.1",
        "deps": [
            {"optional": true, "default_features": false, "name": "serde", "features": ["derive"],
             "version_req": "^1.0.100", "target": null, "kind": "normal",
             "registry": "https://github.com/rust-lang/crates.io-index", "explicit_name_in_toml": null,
             "artifact": null, "bindep_target": null, "lib": false},
            {"optional": false, "default_features": true, "name": "rand", "features": [],
             "version_req": "^0.8", "target": "cfg(unix)", "kind": "normal", "registry": null,
             "explicit_name_in_toml": "rng"},
            {"optional": false, "default_features": true, "name": "tempfile", "features": [],
             "version_req": "^3", "target": null, "kind": "dev", "registry": null, "explicit_name_in_toml": null}
        ],
        "features": {"default": ["std"], "std": [], "json": ["dep:serde", "rng?/serde"]},
        "authors": ["Alice <a@example.com>"], "description": "a demo library", "documentation": null,
        "homepage": "https://example.org", "readme": "I am the README", "readme_file": "README.md",
        "keywords": ["demo"], "categories": ["development-tools::testing"], "license": "MIT",
        "license_file": null, "repository": null, "badges": {"maintenance": {"status": "experimental"}},
        "links": null, "rust_version": "1.70", "something_new": {"cargo": "may add fields"}
    }"#;

    fn body(json: &[u8], crate_bytes: &[u8]) -> Vec<u8> {
        let mut body = (json.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(json);
        body.extend_from_slice(&(crate_bytes.len() as u32).to_le_bytes());
        body.extend_from_slice(crate_bytes);
        body
    }

    #[test]
    fn a_body_as_cargo_sends_it_round_trips() {
        let crate_bytes = b"\x1f\x8b pretend this is a .crate".to_vec();
        let sent = body(CARGO_JSON.as_bytes(), &crate_bytes);
        let (request, crate_part) = parse_publish_body(&sent, 1 << 20).unwrap();
        assert_eq!(crate_part, crate_bytes.as_slice());
        assert_eq!(request.name, "Demo-Lib");
        assert_eq!(request.deps.len(), 3);
        assert_eq!(request.deps[1].explicit_name_in_toml.as_deref(), Some("rng"));
        assert_eq!(request.readme.as_deref(), Some("I am the README"));
        assert_eq!(request.badges["maintenance"]["status"], "experimental");
        // Our own wire form parses back to the same request.
        let again = request.to_body(&crate_bytes);
        let (reparsed, crate_again) = parse_publish_body(&again, 1 << 20).unwrap();
        assert_eq!((reparsed, crate_again), (request, crate_bytes.as_slice()));
    }

    #[test]
    fn missing_and_null_fields_are_empty() {
        let json = r#"{"name":"a","vers":"1.0.0","deps":[{"name":"b","version_req":"1","default_features":null,
            "features":null,"optional":null}],"features":null,"keywords":null,"badges":null}"#;
        let (request, _) = parse_publish_body(&body(json.as_bytes(), b""), 10).unwrap();
        assert!(request.features.is_empty() && request.keywords.is_empty() && request.authors.is_empty());
        let dependency = &request.deps[0];
        assert!(dependency.default_features && !dependency.optional && dependency.features.is_empty());
        assert_eq!(dependency.kind, None);
        let entry = entry_from_publish(&request).unwrap();
        assert_eq!(entry.deps[0].kind, DependencyKind::Normal);
    }

    #[test]
    fn every_malformed_body_is_refused_with_its_reason() {
        let json = CARGO_JSON.as_bytes();
        let good = body(json, b"crate");
        let json_end = 4 + json.len();
        let mut json_too_long = good.clone();
        json_too_long[..4].copy_from_slice(&(good.len() as u32).to_le_bytes());
        let mut crate_too_long = good.clone();
        crate_too_long[json_end..json_end + 4].copy_from_slice(&6u32.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "the body ends before the JSON length (4 bytes needed, 0 left)"),
            ("short length", vec![1, 0], "the body ends before the JSON length (4 bytes needed, 2 left)"),
            ("json beyond the body", json_too_long, "but only"),
            ("no crate length", good[..json_end + 2].to_vec(), "the body ends before the .crate file's length"),
            ("crate beyond the body", crate_too_long, "the .crate file's length says 6 bytes, but only 5 bytes follow"),
            ("trailing bytes", [good.as_slice(), b"!!"].concat(), "2 bytes follow the .crate file"),
            ("bad json", body(b"{\"name\": ", b""), "the publish request's JSON is invalid: EOF"),
            ("not cargo's json", body(br#"{"name": 7, "vers": "1.0.0"}"#, b""), "invalid type: integer `7`"),
            ("no version", body(br#"{"name": "a"}"#, b""), "missing field `vers`"),
            (
                "oversized json",
                [&((MAX_PUBLISH_JSON + 1) as u32).to_le_bytes()[..], b"{}"].concat(),
                "the publish request's JSON is 1048577 bytes, over the limit of 1048576 bytes",
            ),
            ("oversized crate", body(b"{}", &[0; 11]), "the .crate file is 11 bytes, over the limit of 10 bytes"),
        ];
        for (case, bytes, expected) in cases {
            let error = parse_publish_body(&bytes, 10).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{case}: expected `{expected}` in `{message}`");
            match case {
                "oversized json" | "oversized crate" => assert!(matches!(error, CargoError::TooLarge { .. }), "{case}"),
                "bad json" | "not cargo's json" | "no version" => {
                    assert!(matches!(error, CargoError::InvalidJson(_)), "{case}")
                }
                _ => assert!(matches!(error, CargoError::MalformedBody(_)), "{case}"),
            }
        }
    }

    #[test]
    fn the_entry_puts_renames_the_index_way_round() {
        let (request, _) = parse_publish_body(&body(CARGO_JSON.as_bytes(), b""), 0).unwrap();
        let entry = entry_from_publish(&request).unwrap();
        assert_eq!(entry.name.as_str(), "Demo-Lib");
        let names: Vec<(&str, Option<&str>)> =
            entry.deps.iter().map(|d| (d.name.as_str(), d.package.as_deref())).collect();
        assert_eq!(names, [("serde", None), ("rng", Some("rand")), ("tempfile", None)]);
        assert_eq!(entry.deps[0].registry.as_deref(), Some("https://github.com/rust-lang/crates.io-index"));
        assert!(entry.deps[0].optional && !entry.deps[0].default_features);
        assert_eq!(entry.deps[1].target.as_deref(), Some("cfg(unix)"));
        assert_eq!(entry.deps[2].kind, DependencyKind::Dev);
        assert_eq!(entry.features["json"], ["dep:serde", "rng?/serde"]);
        assert_eq!(entry.rust_version.as_deref(), Some("1.70"));
        let metadata = request.metadata().unwrap();
        assert_eq!(metadata.version.to_string(), "0.3.1");
    }

    #[test]
    fn bad_names_kinds_and_requirements_are_refused() {
        let mut request = PublishRequest::new("1bad", "1.0.0");
        assert!(matches!(entry_from_publish(&request), Err(CargoError::InvalidName(_))));
        request.name = "good".into();
        let mut dependency = PublishDependency::new("dep", "1");
        dependency.kind = Some("optional".into());
        request.deps = vec![dependency];
        let error = entry_from_publish(&request).unwrap_err().to_string();
        assert!(error.contains("unknown kind `optional`"), "{error}");
        request.deps = vec![PublishDependency::new("dep", "one point oh")];
        let error = entry_from_publish(&request).unwrap_err().to_string();
        assert!(error.contains("is not a version requirement"), "{error}");
        request.vers = "1.0".into();
        assert!(matches!(request.version(), Err(CargoError::InvalidVersion { .. })));
    }
}
