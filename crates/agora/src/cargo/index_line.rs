//! Cargo's sparse-index lines, rendered from signed manifests.
//!
//! One line per version, a JSON object as the Cargo reference's "Registry
//! Index" page describes it. Everything in it comes from the manifest (the
//! version, `cksum` = the artifact's SHA-256, the crate entry) except `yanked`,
//! which the package index holds. Features using the `dep:` or `pkg?/feat`
//! syntax, and the features that enable those (transitively), go into
//! `features2` with `"v": 2`, as crates.io splits them, so that cargo older than
//! 1.60 skips such versions instead of failing on them. `package`,
//! `features2`, `v`, `links` and `rust_version` are left out when empty; `target`
//! and `registry` are always written, `null` when unset.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{DependencyKind, Manifest};
use serde::Serialize;

/// The index line of a crate version, or `None` for a manifest without a crate
/// entry (a native Agora package has no index line).
pub fn index_line(manifest: &Manifest, yanked: bool) -> Option<String> {
    let entry = manifest.cargo.as_ref()?;
    let needs_v2 = features_needing_v2(&entry.features);
    let (features2, features): (FeatureMap<'_>, FeatureMap<'_>) = entry
        .features
        .iter()
        .map(|(feature, values)| (feature.as_str(), values.as_slice()))
        .partition(|(feature, _)| needs_v2.contains(feature));
    let line = IndexLine {
        name: entry.name.as_str(),
        vers: manifest.version().to_string(),
        deps: entry
            .deps
            .iter()
            .map(|dependency| IndexDependency {
                name: &dependency.name,
                req: &dependency.req,
                features: &dependency.features,
                optional: dependency.optional,
                default_features: dependency.default_features,
                target: dependency.target.as_deref(),
                kind: dependency.kind,
                registry: dependency.registry.as_deref(),
                package: dependency.package.as_deref(),
            })
            .collect(),
        cksum: manifest.artifact.digest.to_hex(),
        features,
        v: (!features2.is_empty()).then_some(2),
        features2: (!features2.is_empty()).then_some(features2),
        yanked,
        links: entry.links.as_deref(),
        rust_version: entry.rust_version.as_deref(),
    };
    // Serializing borrowed strings, bools and maps with string keys cannot fail.
    serde_json::to_string(&line).ok()
}

/// A whole index file: the lines of `versions` (manifest, yanked), each ending
/// in a newline, in the order given. Manifests without a crate entry are
/// skipped.
pub fn index_file<'a>(versions: impl IntoIterator<Item = (&'a Manifest, bool)>) -> String {
    let mut file = String::new();
    for (manifest, yanked) in versions {
        if let Some(line) = index_line(manifest, yanked) {
            file.push_str(&line);
            file.push('\n');
        }
    }
    file
}

/// The features that belong in `features2`: those using `dep:name` or
/// `name?/feature` (cargo 1.60's syntax), and those enabling such a feature,
/// transitively, so that `features` alone names only features it defines (as
/// crates.io splits them). Linear in the number of values.
fn features_needing_v2(features: &BTreeMap<String, Vec<String>>) -> BTreeSet<&str> {
    let mut enabled_by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (feature, values) in features {
        for value in values.iter().filter(|value| features.contains_key(value.as_str())) {
            enabled_by.entry(value.as_str()).or_default().push(feature.as_str());
        }
    }
    let mut needing: BTreeSet<&str> = features
        .iter()
        .filter(|(_, values)| values.iter().any(|value| value.starts_with("dep:") || value.contains("?/")))
        .map(|(feature, _)| feature.as_str())
        .collect();
    let mut pending: Vec<&str> = needing.iter().copied().collect();
    while let Some(feature) = pending.pop() {
        for &enabler in enabled_by.get(feature).into_iter().flatten() {
            if needing.insert(enabler) {
                pending.push(enabler);
            }
        }
    }
    needing
}

/// Features by name, borrowed from a crate entry.
type FeatureMap<'a> = BTreeMap<&'a str, &'a [String]>;

#[derive(Serialize)]
struct IndexLine<'a> {
    name: &'a str,
    vers: String,
    deps: Vec<IndexDependency<'a>>,
    cksum: String,
    features: FeatureMap<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    features2: Option<FeatureMap<'a>>,
    yanked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rust_version: Option<&'a str>,
}

#[derive(Serialize)]
struct IndexDependency<'a> {
    name: &'a str,
    req: &'a str,
    features: &'a [String],
    optional: bool,
    default_features: bool,
    target: Option<&'a str>,
    kind: DependencyKind,
    registry: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use agora_core::{ArtifactInfo, CrateDependency, CrateEntry, CrateName, PackageMetadata, SecretKey};
    use serde_json::{Value, json};

    use super::*;

    fn manifest(entry: CrateEntry, version: &str) -> Manifest {
        let key = SecretKey::from_bytes(&[1; 32]);
        Manifest {
            metadata: PackageMetadata::new(entry.name.package_name(), version.parse().unwrap(), "a crate"),
            artifact: ArtifactInfo::compute(b"crate bytes", 4096).unwrap(),
            published_at: 1,
            publisher: key.public_key(),
            unpacked_size: None,
            cargo: Some(entry),
        }
    }

    fn parse(line: &str) -> Value {
        assert!(!line.contains('\n'), "one line: {line}");
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_line_has_exactly_cargos_fields() {
        let mut entry = CrateEntry::new(CrateName::parse("Demo-Lib").unwrap());
        let mut renamed = CrateDependency::new("rng", "^0.8");
        renamed.package = Some("rand".into());
        renamed.target = Some("cfg(unix)".into());
        renamed.optional = true;
        let mut build = CrateDependency::new("cc", "^1");
        build.kind = DependencyKind::Build;
        build.registry = Some("https://github.com/rust-lang/crates.io-index".into());
        build.default_features = false;
        build.features = vec!["parallel".into()];
        entry.deps = vec![renamed, build];
        entry.features.insert("default".into(), vec!["std".into()]);
        entry.features.insert("std".into(), vec![]);
        let manifest = manifest(entry, "0.3.1");
        let line = index_line(&manifest, true).unwrap();
        let expected = json!({
            "name": "Demo-Lib",
            "vers": "0.3.1",
            "deps": [
                {"name": "rng", "req": "^0.8", "features": [], "optional": true, "default_features": true,
                 "target": "cfg(unix)", "kind": "normal", "registry": null, "package": "rand"},
                {"name": "cc", "req": "^1", "features": ["parallel"], "optional": false, "default_features": false,
                 "target": null, "kind": "build", "registry": "https://github.com/rust-lang/crates.io-index"},
            ],
            "cksum": manifest.artifact.digest.to_hex(),
            "features": {"default": ["std"], "std": []},
            "yanked": true,
        });
        assert_eq!(parse(&line), expected);
        assert_eq!(manifest.artifact.digest.to_hex().len(), 64);
    }

    #[test]
    fn new_feature_syntax_goes_to_features2_with_v2() {
        let mut entry = CrateEntry::new(CrateName::parse("a").unwrap());
        entry.features.insert("default".into(), vec!["std".into()]);
        entry.features.insert("serde".into(), vec!["dep:serde".into()]);
        entry.features.insert("weak".into(), vec!["chrono?/serde".into(), "std".into()]);
        entry.features.insert("std".into(), vec![]);
        // Enabling a features2 feature, directly or not, puts a feature there too.
        entry.features.insert("full".into(), vec!["std".into(), "json".into()]);
        entry.features.insert("json".into(), vec!["serde".into()]);
        entry.features.insert("all".into(), vec!["full".into(), "serde/std".into()]);
        entry.links = Some("z".into());
        entry.rust_version = Some("1.70".into());
        let line = parse(&index_line(&manifest(entry, "1.0.0"), false).unwrap());
        assert_eq!(line["features"], json!({"default": ["std"], "std": []}));
        assert_eq!(
            line["features2"],
            json!({
                "serde": ["dep:serde"], "weak": ["chrono?/serde", "std"], "json": ["serde"],
                "full": ["std", "json"], "all": ["full", "serde/std"],
            })
        );
        assert_eq!(line["v"], 2);
        assert_eq!(line["links"], "z");
        assert_eq!(line["rust_version"], "1.70");
        assert_eq!(line["yanked"], false);
        // Without them, neither key appears.
        let plain = CrateEntry::new(CrateName::parse("a").unwrap());
        let line = index_line(&manifest(plain, "1.0.0"), false).unwrap();
        for absent in ["features2", "\"v\"", "links", "rust_version", "package"] {
            assert!(!line.contains(absent), "{absent} in {line}");
        }
    }

    #[test]
    fn native_packages_have_no_line_and_a_file_is_lines() {
        let mut native = manifest(CrateEntry::new(CrateName::parse("a").unwrap()), "1.0.0");
        native.cargo = None;
        assert_eq!(index_line(&native, false), None);
        let one = manifest(CrateEntry::new(CrateName::parse("a").unwrap()), "1.0.0");
        let two = manifest(CrateEntry::new(CrateName::parse("a").unwrap()), "1.1.0");
        let file = index_file([(&one, false), (&native, false), (&two, true)]);
        let lines: Vec<Value> = file.lines().map(parse).collect();
        assert!(file.ends_with('\n'));
        assert_eq!(lines.len(), 2);
        assert_eq!((&lines[0]["vers"], &lines[1]["yanked"]), (&json!("1.0.0"), &json!(true)));
    }
}
