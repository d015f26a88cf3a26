//! Package names and version parsing.
//!
//! A [`PackageName`] lives in one of two namespaces: native Agora packages
//! (`serde-helpers`) and crates (`crates/serde_json`, the prefix [`CRATE_PREFIX`]
//! then the crate's canonical name, see `crate::cargo`). A native name can never
//! contain `/`, so the two never collide.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Version;

/// A name that breaks the naming rules. Converts into
/// [`Error::InvalidName`](crate::Error::InvalidName).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid package name `{name}`: {reason}")]
pub struct NameError {
    /// The offending input (at most 80 characters of it).
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// A version that does not parse as semver. Converts into
/// [`Error::InvalidVersion`](crate::Error::InvalidVersion).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version `{input}`: {reason}")]
pub struct VersionError {
    /// The offending input (at most 80 characters of it).
    pub input: String,
    /// Why it does not parse.
    pub reason: String,
}

/// The longest package name accepted.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// The longest version string accepted.
pub(crate) const MAX_VERSION_LEN: usize = 64;

/// The prefix of every package name in the crate namespace.
pub const CRATE_PREFIX: &str = "crates/";

/// A validated package name. A native name is 1–64 characters of lowercase ASCII
/// letters, digits, `-` and `_`, starting with a letter. A crate's name is
/// [`CRATE_PREFIX`] followed by its canonical name: 1–64 characters of lowercase
/// ASCII letters, digits and `_`, starting with a letter (a crate name
/// lowercased, with `-` turned into `_`). [`PackageName::parse`] is the only way
/// to build one, so code holding a `PackageName` never re-checks it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackageName(String);

impl PackageName {
    /// Checks `input` against the naming rules.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let invalid = |reason| Err(NameError { name: input.chars().take(80).collect(), reason });
        if let Some(canonical) = input.strip_prefix(CRATE_PREFIX) {
            return match check_crate_canonical(canonical) {
                Ok(()) => Ok(Self(input.to_owned())),
                Err(reason) => invalid(reason),
            };
        }
        let Some(first) = input.chars().next() else {
            return invalid("a name cannot be empty");
        };
        if input.len() > MAX_NAME_LEN {
            return invalid("a name is at most 64 characters");
        }
        if !first.is_ascii_lowercase() {
            return invalid("a name starts with a lowercase ASCII letter");
        }
        if !input.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return invalid("a name holds only lowercase ASCII letters, digits, `-` and `_`");
        }
        Ok(Self(input.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a crate's name (`crates/<canonical>`), not a native package's.
    pub fn is_crate(&self) -> bool {
        self.0.starts_with(CRATE_PREFIX)
    }

    /// The canonical crate name after [`CRATE_PREFIX`], for a crate's name.
    pub fn crate_canonical(&self) -> Option<&str> {
        self.0.strip_prefix(CRATE_PREFIX)
    }

    /// The package name of a crate whose canonical name is `canonical`, which the
    /// caller's own parsing guarantees follows the rules (a `CrateName`'s).
    pub(crate) fn for_crate(canonical: &str) -> Self {
        debug_assert!(check_crate_canonical(canonical).is_ok(), "`{canonical}` is not a canonical crate name");
        Self(format!("{CRATE_PREFIX}{canonical}"))
    }
}

/// Checks the part of a crate's package name after [`CRATE_PREFIX`].
fn check_crate_canonical(canonical: &str) -> Result<(), &'static str> {
    let Some(first) = canonical.chars().next() else {
        return Err("a crate's canonical name cannot be empty");
    };
    if canonical.len() > MAX_NAME_LEN {
        return Err("a crate's canonical name is at most 64 characters");
    }
    if !first.is_ascii_lowercase() {
        return Err("a crate's canonical name starts with a lowercase ASCII letter");
    }
    if !canonical.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("a crate's canonical name holds only lowercase ASCII letters, digits and `_`");
    }
    Ok(())
}

pub(crate) fn parse_version(input: &str) -> Result<Version, VersionError> {
    if input.len() > MAX_VERSION_LEN {
        return Err(VersionError {
            input: input.chars().take(80).collect(),
            reason: format!("a version is at most {MAX_VERSION_LEN} characters"),
        });
    }
    Version::parse(input).map_err(|error| VersionError { input: input.to_owned(), reason: error.to_string() })
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageName({})", self.0)
    }
}

impl FromStr for PackageName {
    type Err = NameError;

    fn from_str(input: &str) -> Result<Self, NameError> {
        Self::parse(input)
    }
}

impl AsRef<str> for PackageName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for PackageName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PackageName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_and_rejects_by_the_rules() {
        for good in ["a", "serde", "hello-world", "x_1", &"a".repeat(64)] {
            assert!(PackageName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "-abc", "Hello", "héllo", "a b", "a.b", "a/b", &"a".repeat(65)] {
            assert!(PackageName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn crate_names_are_a_namespace_of_their_own() {
        for good in ["crates/serde", "crates/serde_json", "crates/a1", &format!("crates/{}", "a".repeat(64))] {
            let name = PackageName::parse(good).unwrap();
            assert!(name.is_crate(), "{good}");
            assert_eq!(name.crate_canonical(), good.strip_prefix(CRATE_PREFIX));
        }
        let bad_crates =
            ["crates/", "crates/serde-json", "crates/Serde", "crates/1a", "crates/_a", "crates/a/b", "crates/a.b"];
        for bad in bad_crates.into_iter().chain([format!("crates/{}", "a".repeat(65)).as_str()]) {
            assert!(PackageName::parse(bad).is_err(), "{bad}");
        }
        for other_prefix in ["crate/serde", "crates-x/serde", "Crates/serde", "/crates/serde", "npm/left-pad"] {
            assert!(PackageName::parse(other_prefix).is_err(), "{other_prefix}");
        }
        let native = PackageName::parse("crates").unwrap();
        assert!(!native.is_crate());
        assert_eq!(native.crate_canonical(), None);
        let error = PackageName::parse("crates/serde-json").unwrap_err().to_string();
        assert!(error.contains("only lowercase ASCII letters, digits and `_`"), "{error}");
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let error = PackageName::parse("Hello").unwrap_err().to_string();
        assert_eq!(error, "invalid package name `Hello`: a name starts with a lowercase ASCII letter");
    }

    #[test]
    fn versions_parse_as_semver() {
        assert!(parse_version("1.2.3").is_ok());
        assert!(parse_version("1.2.3-beta.1+build.5").is_ok());
        for bad in ["", "1", "1.2", "01.2.3", "v1.2.3", "1.2.3.4", &format!("1.2.3-{}", "a".repeat(70))] {
            assert!(parse_version(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_round_trip(name in "[a-z][a-z0-9_-]{0,63}") {
            let parsed = PackageName::parse(&name).unwrap();
            prop_assert_eq!(parsed.as_str(), name.as_str());
            prop_assert_eq!(parsed.to_string().parse::<PackageName>().unwrap(), parsed);
        }

        #[test]
        fn any_string_parses_only_if_it_follows_the_rules(input in "(crates/)?\\PC{0,70}") {
            let follows_rules = match input.strip_prefix(CRATE_PREFIX) {
                Some(canonical) => !canonical.is_empty()
                    && canonical.len() <= 64
                    && canonical.starts_with(|c: char| c.is_ascii_lowercase())
                    && canonical.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                None => !input.is_empty()
                    && input.len() <= 64
                    && input.starts_with(|c: char| c.is_ascii_lowercase())
                    && input.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
            };
            prop_assert_eq!(PackageName::parse(&input).is_ok(), follows_rules);
        }

        #[test]
        fn versions_round_trip(major in 0u64..1000, minor in 0u64..1000, patch in 0u64..1000, pre in proptest::option::of("[a-z][a-z0-9]{0,8}")) {
            let text = match &pre {
                Some(pre) => format!("{major}.{minor}.{patch}-{pre}"),
                None => format!("{major}.{minor}.{patch}"),
            };
            let version = parse_version(&text).unwrap();
            prop_assert_eq!(version.to_string(), text);
        }
    }
}
