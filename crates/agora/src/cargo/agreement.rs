//! Whether cargo's publish request and the `.crate` file's `Cargo.toml` describe
//! the same crate version, so that the index line signed from the request is
//! what a build of the `.crate` will find.
//!
//! Dependencies are matched by (name used in code, kind, target), not by
//! position: cargo lists them in its own order, which has changed between
//! versions. Requirements are compared as parsed [`VersionReq`]s (cargo sends
//! `^1.0` where the file says `1.0`), features as sets, targets without
//! whitespace outside string literals (cargo prints `cfg(any(unix, windows))`
//! for a key written `cfg(any(unix,windows))`). `registry` is not compared: in
//! cargo's JSON `null` means "the registry published to" and a crates.io
//! dependency is named by URL, while in `Cargo.toml` nothing means crates.io and
//! `registry-index` names the others.

use std::collections::{BTreeMap, BTreeSet};

use agora_core::{CrateDependency, CrateEntry, DependencyKind, VersionReq};

use super::error::CargoError;

/// Checks that `json` (from the publish request) and `toml` (from the `.crate`
/// file) agree on the name, the dependencies (name, package, requirement,
/// features, optional, default features, target, kind), the features, `links`
/// and `rust_version`.
///
/// # Errors
///
/// [`CargoError::Disagreement`] naming the first difference, e.g. "the .crate
/// file's Cargo.toml says dependency `serde` is optional, the publish request says
/// it is not".
pub fn check_agreement(json: &CrateEntry, toml: &CrateEntry) -> Result<(), CargoError> {
    let disagree = |message: String| Err(CargoError::Disagreement(message));
    if json.name != toml.name {
        return disagree(format!(
            "the publish request is for crate `{}`, the .crate file's Cargo.toml names `{}`",
            json.name, toml.name
        ));
    }
    let toml_deps = by_key(&toml.deps, "the .crate file's Cargo.toml")?;
    let json_deps = by_key(&json.deps, "the publish request")?;
    for (key, json_dep) in &json_deps {
        let Some(toml_dep) = toml_deps.get(key) else {
            return disagree(format!(
                "the publish request lists {}, the .crate file's Cargo.toml does not",
                describe(json_dep)
            ));
        };
        check_dependency(json_dep, toml_dep)?;
    }
    if let Some((_, toml_dep)) = toml_deps.iter().find(|(key, _)| !json_deps.contains_key(*key)) {
        return disagree(format!(
            "the .crate file's Cargo.toml lists {}, the publish request does not",
            describe(toml_dep)
        ));
    }
    let json_features: BTreeSet<&String> = json.features.keys().collect();
    let toml_features: BTreeSet<&String> = toml.features.keys().collect();
    if let Some(feature) = json_features.symmetric_difference(&toml_features).next() {
        let (has, lacks) = if json.features.contains_key(*feature) {
            ("the publish request", "the .crate file's Cargo.toml")
        } else {
            ("the .crate file's Cargo.toml", "the publish request")
        };
        return disagree(format!("{has} defines feature `{feature}`, {lacks} does not"));
    }
    for (feature, json_values) in &json.features {
        let toml_values = toml.features.get(feature).map(Vec::as_slice).unwrap_or_default();
        if as_set(json_values) != as_set(toml_values) {
            return disagree(format!(
                "the .crate file's Cargo.toml says feature `{feature}` enables {}, the publish request says {}",
                list(toml_values),
                list(json_values)
            ));
        }
    }
    if json.links != toml.links {
        return disagree(format!(
            "the .crate file's Cargo.toml says `links` is {}, the publish request says {}",
            optional(toml.links.as_deref()),
            optional(json.links.as_deref())
        ));
    }
    if json.rust_version != toml.rust_version {
        return disagree(format!(
            "the .crate file's Cargo.toml says `rust-version` is {}, the publish request says {}",
            optional(toml.rust_version.as_deref()),
            optional(json.rust_version.as_deref())
        ));
    }
    Ok(())
}

/// How a dependency is told apart from the others of its crate version.
type Key = (String, DependencyKind, Option<String>);

/// A target with the whitespace outside string literals removed.
fn normalized_target(target: &str) -> String {
    let mut normalized = String::with_capacity(target.len());
    let mut in_string = false;
    for c in target.chars() {
        if c == '"' {
            in_string = !in_string;
        }
        if in_string || !c.is_whitespace() {
            normalized.push(c);
        }
    }
    normalized
}

fn by_key<'a>(deps: &'a [CrateDependency], side: &str) -> Result<BTreeMap<Key, &'a CrateDependency>, CargoError> {
    let mut keyed = BTreeMap::new();
    for dependency in deps {
        let key = (dependency.name.clone(), dependency.kind, dependency.target.as_deref().map(normalized_target));
        if keyed.insert(key, dependency).is_some() {
            return Err(CargoError::Disagreement(format!("{side} lists {} twice", describe(dependency))));
        }
    }
    Ok(keyed)
}

fn check_dependency(json: &CrateDependency, toml: &CrateDependency) -> Result<(), CargoError> {
    let what = describe(json);
    let disagree = |toml_says: String, json_says: String| {
        Err(CargoError::Disagreement(format!(
            "the .crate file's Cargo.toml says {what} {toml_says}, the publish request says {json_says}"
        )))
    };
    if json.crate_name() != toml.crate_name() {
        return disagree(format!("is crate `{}`", toml.crate_name()), format!("it is `{}`", json.crate_name()));
    }
    let json_req = parse_req(json, "the publish request")?;
    let toml_req = parse_req(toml, "the .crate file's Cargo.toml")?;
    if json_req != toml_req {
        return disagree(format!("requires `{}`", toml.req), format!("`{}`", json.req));
    }
    if as_set(&json.features) != as_set(&toml.features) {
        return disagree(format!("enables features {}", list(&toml.features)), list(&json.features));
    }
    if json.optional != toml.optional {
        let (toml_says, json_says) =
            if toml.optional { ("is optional", "it is not") } else { ("is not optional", "it is") };
        return disagree(toml_says.into(), json_says.into());
    }
    if json.default_features != toml.default_features {
        let (toml_says, json_says) = if toml.default_features {
            ("uses default features", "it does not")
        } else {
            ("does not use default features", "it does")
        };
        return disagree(toml_says.into(), json_says.into());
    }
    Ok(())
}

fn parse_req(dependency: &CrateDependency, side: &str) -> Result<VersionReq, CargoError> {
    VersionReq::parse(&dependency.req).map_err(|error| {
        CargoError::Disagreement(format!(
            "{side} gives {} the requirement `{}`, which does not parse: {error}",
            describe(dependency),
            dependency.req
        ))
    })
}

/// "dependency `serde`", "dev-dependency `tempfile`", "build-dependency `cc` for
/// `cfg(unix)`".
fn describe(dependency: &CrateDependency) -> String {
    let kind = match dependency.kind {
        DependencyKind::Normal => "dependency",
        DependencyKind::Dev => "dev-dependency",
        DependencyKind::Build => "build-dependency",
    };
    match &dependency.target {
        Some(target) => format!("{kind} `{}` for `{target}`", dependency.name),
        None => format!("{kind} `{}`", dependency.name),
    }
}

fn as_set(values: &[String]) -> BTreeSet<&str> {
    values.iter().map(String::as_str).collect()
}

fn list(values: &[String]) -> String {
    if values.is_empty() {
        return "nothing".into();
    }
    values.iter().map(|value| format!("`{value}`")).collect::<Vec<_>>().join(", ")
}

fn optional(value: Option<&str>) -> String {
    value.map_or_else(|| "unset".to_owned(), |value| format!("`{value}`"))
}

#[cfg(test)]
mod tests {
    use agora_core::CrateName;

    use super::*;
    use crate::cargo::crate_file::tests::demo_crate;
    use crate::cargo::crate_file::{CrateLimits, entry_from_toml, read_crate_toml};
    use crate::cargo::publish::tests::CARGO_JSON;
    use crate::cargo::publish::{PublishRequest, entry_from_publish};

    fn entries() -> (CrateEntry, CrateEntry) {
        let request: PublishRequest = serde_json::from_str(CARGO_JSON).unwrap();
        let json = entry_from_publish(&request).unwrap();
        let toml = entry_from_toml(&read_crate_toml(&demo_crate(), CrateLimits::default()).unwrap()).unwrap();
        (json, toml)
    }

    #[test]
    fn cargo_json_and_its_cargo_toml_agree() {
        let (json, toml) = entries();
        // They differ in order, requirement spelling and registry, and still agree.
        assert_ne!(json.deps, toml.deps);
        check_agreement(&json, &toml).unwrap();
        check_agreement(&toml, &json).unwrap();
    }

    #[test]
    fn targets_are_compared_without_whitespace() {
        let mut json = CrateEntry::new(CrateName::parse("a").unwrap());
        let mut dependency = CrateDependency::new("winapi", "0.3");
        dependency.target = Some(r#"cfg(any(windows, target_os = "a b"))"#.into());
        json.deps.push(dependency.clone());
        let mut toml = json.clone();
        toml.deps[0].target = Some(r#"cfg(any(windows,target_os="a b"))"#.into());
        check_agreement(&json, &toml).unwrap();
        toml.deps[0].target = Some(r#"cfg(any(windows,target_os="ab"))"#.into());
        let error = check_agreement(&json, &toml).unwrap_err().to_string();
        assert!(
            error.contains("the publish request lists dependency `winapi` for `cfg(any(windows, target_os"),
            "{error}"
        );
    }

    #[test]
    fn every_disagreement_is_named() {
        type Mutation = Box<dyn Fn(&mut CrateEntry)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "the publish request is for crate `Other`, the .crate file's Cargo.toml names `Demo-Lib`",
                Box::new(|e| e.name = CrateName::parse("Other").unwrap()),
            ),
            (
                "the .crate file's Cargo.toml says dependency `serde` is optional, the publish request says it is not",
                Box::new(|e| e.deps[0].optional = false),
            ),
            (
                "the .crate file's Cargo.toml says dependency `serde` does not use default features, the publish \
                 request says it does",
                Box::new(|e| e.deps[0].default_features = true),
            ),
            (
                "the .crate file's Cargo.toml says dependency `serde` requires `1.0.100`, the publish request says \
                 `^1.0.101`",
                Box::new(|e| e.deps[0].req = "^1.0.101".into()),
            ),
            (
                "says dependency `serde` enables features `derive`, the publish request says `derive`, `rc`",
                Box::new(|e| e.deps[0].features.push("rc".into())),
            ),
            (
                "says dependency `rng` for `cfg(unix)` is crate `rand`, the publish request says it is `rand_core`",
                Box::new(|e| e.deps[1].package = Some("rand_core".into())),
            ),
            (
                "the publish request lists dependency `rng` for `cfg(windows)`, the .crate file's Cargo.toml does not",
                Box::new(|e| e.deps[1].target = Some("cfg(windows)".into())),
            ),
            (
                "the publish request lists build-dependency `tempfile`",
                Box::new(|e| e.deps[2].kind = DependencyKind::Build),
            ),
            (
                "the .crate file's Cargo.toml lists dev-dependency `tempfile`, the publish request does not",
                Box::new(|e| drop(e.deps.remove(2))),
            ),
            ("the publish request lists dependency `serde` twice", Box::new(|e| e.deps.push(e.deps[0].clone()))),
            (
                "the publish request defines feature `extra`, the .crate file's Cargo.toml does not",
                Box::new(|e| drop(e.features.insert("extra".into(), vec![]))),
            ),
            (
                "the .crate file's Cargo.toml defines feature `std`, the publish request does not",
                Box::new(|e| drop(e.features.remove("std"))),
            ),
            (
                "says feature `default` enables `std`, the publish request says nothing",
                Box::new(|e| drop(e.features.insert("default".into(), vec![]))),
            ),
            ("says `links` is unset, the publish request says `z`", Box::new(|e| e.links = Some("z".into()))),
            (
                "says `rust-version` is `1.70`, the publish request says `1.71`",
                Box::new(|e| e.rust_version = Some("1.71".into())),
            ),
        ];
        let (json, toml) = entries();
        for (expected, mutate) in cases {
            let mut changed = json.clone();
            mutate(&mut changed);
            let error = check_agreement(&changed, &toml).unwrap_err();
            assert!(matches!(error, CargoError::Disagreement(_)));
            let message = error.to_string();
            assert!(message.contains(expected), "expected `{expected}` in `{message}`");
        }
        // The registry is not compared, and feature order does not matter.
        let mut changed = json.clone();
        changed.deps[0].registry = None;
        changed.features.insert("json".into(), vec!["rng?/serde".into(), "dep:serde".into()]);
        check_agreement(&changed, &toml).unwrap();
    }
}
