//! The Agora [`PackageMetadata`] of a crate version, from what cargo's publish
//! request or the `.crate` file's `Cargo.toml` says about it.
//!
//! Agora's metadata rules are stricter than crates.io's in places (keyword
//! characters, http(s) URLs, printable text), and an imported crate must not be
//! refused for a badly formed homepage: fields that break them are dropped or
//! trimmed rather than refused. Only a missing description refuses a publish.

use agora_core::{CrateName, PackageMetadata, Version};

use super::error::CargoError;

/// The descriptive fields of one crate version, as cargo gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateMetadata {
    /// The crate's name as spelled.
    pub name: CrateName,
    /// The version.
    pub version: Version,
    /// `package.description`.
    pub description: Option<String>,
    /// `package.keywords`.
    pub keywords: Vec<String>,
    /// `package.categories` (crates.io slugs such as `command-line-utilities` or
    /// `development-tools::testing`).
    pub categories: Vec<String>,
    /// `package.authors`.
    pub authors: Vec<String>,
    /// `package.license`.
    pub license: Option<String>,
    /// `package.homepage`.
    pub homepage: Option<String>,
    /// `package.repository`.
    pub repository: Option<String>,
}

/// Where a crate version comes from, which decides what a missing description
/// means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataOrigin {
    /// `cargo publish`: a description is required, as crates.io requires it.
    Publish,
    /// `agora cargo import` of an existing `.crate`: the description falls back
    /// to `<name> <version>`.
    Import,
}

/// The Agora metadata of a crate version: name `crates/<canonical>`, no
/// `dependencies` (a crate's live in its crate entry), every field within
/// Agora's rules: the description cut to 1000 characters on a character
/// boundary (control characters but newlines turned into spaces), keywords
/// lowercased (invalid ones dropped, at most 10), categories with `::` turned
/// into `/` and lowercased (invalid ones dropped, at most 5), authors, license,
/// homepage and repository dropped when they break the rules. The result passes
/// [`PackageMetadata::validate`].
///
/// # Errors
///
/// [`CargoError::MissingMetadata`] for a publish without a description, and
/// [`CargoError::Invalid`] when the version breaks Agora's rules (longer than 64
/// characters).
pub fn package_metadata(crate_metadata: &CrateMetadata, origin: MetadataOrigin) -> Result<PackageMetadata, CargoError> {
    let description = match crate_metadata.description.as_deref().map(clean_description) {
        Some(description) if !description.is_empty() => description,
        _ if origin == MetadataOrigin::Publish => return Err(CargoError::MissingMetadata("description".into())),
        _ => format!("{} {}", crate_metadata.name, crate_metadata.version),
    };
    let mut metadata =
        PackageMetadata::new(crate_metadata.name.package_name(), crate_metadata.version.clone(), description);
    metadata.keywords = words(
        crate_metadata.keywords.iter().map(|keyword| keyword.trim().to_lowercase()),
        PackageMetadata::MAX_KEYWORDS,
        PackageMetadata::is_keyword,
    );
    metadata.categories = words(
        crate_metadata.categories.iter().map(|category| category.trim().replace("::", "/").to_lowercase()),
        PackageMetadata::MAX_CATEGORIES,
        PackageMetadata::is_category,
    );
    metadata.authors = crate_metadata
        .authors
        .iter()
        .filter(|author| PackageMetadata::is_text(author))
        .take(PackageMetadata::MAX_AUTHORS)
        .cloned()
        .collect();
    metadata.license = crate_metadata.license.clone().filter(|license| PackageMetadata::is_text(license));
    metadata.homepage = crate_metadata.homepage.clone().filter(|url| PackageMetadata::is_url(url));
    metadata.repository = crate_metadata.repository.clone().filter(|url| PackageMetadata::is_url(url));
    metadata.validate()?;
    Ok(metadata)
}

/// Trimmed, control characters but `\n` as spaces, at most 1000 characters.
fn clean_description(text: &str) -> String {
    let cleaned: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(PackageMetadata::MAX_DESCRIPTION)
        .collect();
    cleaned.trim().to_owned()
}

/// The valid, distinct words in order, at most `max_count`.
fn words(candidates: impl Iterator<Item = String>, max_count: usize, is_valid: fn(&str) -> bool) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for word in candidates {
        if kept.len() == max_count {
            break;
        }
        if is_valid(&word) && !kept.contains(&word) {
            kept.push(word);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CrateMetadata {
        CrateMetadata {
            name: CrateName::parse("Serde-JSON").unwrap(),
            version: "1.0.140".parse().unwrap(),
            description: Some("A JSON serialization file format".into()),
            keywords: vec!["JSON".into(), "serde".into(), "serialization".into()],
            categories: vec!["encoding".into(), "Parser-Implementations".into(), "development-tools::testing".into()],
            authors: vec!["Erick Tryzelaar <erick.tryzelaar@gmail.com>".into()],
            license: Some("MIT OR Apache-2.0".into()),
            homepage: None,
            repository: Some("https://github.com/serde-rs/json".into()),
        }
    }

    #[test]
    fn a_crate_becomes_valid_agora_metadata() {
        let metadata = package_metadata(&sample(), MetadataOrigin::Publish).unwrap();
        assert_eq!(metadata.name.as_str(), "crates/serde_json");
        assert_eq!(metadata.version.to_string(), "1.0.140");
        assert_eq!(metadata.keywords, ["json", "serde", "serialization"]);
        assert_eq!(metadata.categories, ["encoding", "parser-implementations", "development-tools/testing"]);
        assert_eq!(metadata.license.as_deref(), Some("MIT OR Apache-2.0"));
        assert_eq!(metadata.repository.as_deref(), Some("https://github.com/serde-rs/json"));
        assert!(metadata.dependencies.is_empty());
    }

    #[test]
    fn a_missing_description_refuses_a_publish_and_not_an_import() {
        for description in [None, Some(String::new()), Some(" \t\n".into())] {
            let crate_metadata = CrateMetadata { description, ..sample() };
            let error = package_metadata(&crate_metadata, MetadataOrigin::Publish).unwrap_err();
            assert_eq!(error.to_string(), "missing or empty metadata fields: description");
            let imported = package_metadata(&crate_metadata, MetadataOrigin::Import).unwrap();
            assert_eq!(imported.description, "Serde-JSON 1.0.140");
        }
    }

    #[test]
    fn what_breaks_agora_rules_is_trimmed_or_dropped() {
        let crate_metadata = CrateMetadata {
            description: Some(format!("  {}\tend\r\n", "é".repeat(1200))),
            keywords: (0..20).map(|i| format!("k{i}")).chain(["bad keyword".into(), "x".repeat(33)]).collect(),
            categories: vec![
                "a::b".into(),
                "A::B".into(),
                "has space".into(),
                "c".into(),
                "d".into(),
                "e".into(),
                "f".into(),
            ],
            authors: vec![String::new(), "ok".into(), "bad\u{7}".into(), "x".repeat(300)],
            license: Some("x".repeat(300)),
            homepage: Some("ftp://example.org".into()),
            repository: Some("git@github.com:a/b".into()),
            ..sample()
        };
        let metadata = package_metadata(&crate_metadata, MetadataOrigin::Import).unwrap();
        assert_eq!(metadata.description.chars().count(), 1000);
        assert!(metadata.description.chars().all(|c| c == 'é'));
        assert_eq!(metadata.keywords.len(), 10);
        assert_eq!(metadata.categories, ["a/b", "c", "d", "e", "f"]);
        assert_eq!(metadata.authors, ["ok"]);
        assert_eq!((metadata.license, metadata.homepage, metadata.repository), (None, None, None));
        let short = CrateMetadata { description: Some("line one\r\nline\ttwo".into()), ..sample() };
        assert_eq!(package_metadata(&short, MetadataOrigin::Publish).unwrap().description, "line one \nline two");
    }

    #[test]
    fn a_version_agora_cannot_hold_is_an_error() {
        let crate_metadata =
            CrateMetadata { version: format!("1.0.0+{}", "b".repeat(70)).parse().unwrap(), ..sample() };
        let error = package_metadata(&crate_metadata, MetadataOrigin::Import).unwrap_err().to_string();
        assert!(error.contains("version is longer than 64 characters"), "{error}");
    }
}
