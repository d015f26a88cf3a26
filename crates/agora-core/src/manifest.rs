//! The manifest of one package version, and its signed form.
//!
//! A [`SignedManifest`] can only be obtained by signing a valid [`Manifest`] or by
//! decoding bytes (or JSON) whose signature verifies, so holding one means it was
//! checked.
//!
//! Three encodings: `agora/manifest/v1` (every manifest before the unpacked size
//! was recorded; such records keep verifying), `agora/manifest/v2`, v1's fields
//! followed by the unpacked size, and `agora/manifest/v3`, v1's fields followed by
//! the unpacked size as an option and the [`CrateEntry`] of a crate. A manifest is
//! encoded in v3 exactly when it has a crate entry, else in v2 exactly when it has
//! an unpacked size, else in v1, so each has one canonical encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::encoding::{Decoder, Encoder};
use crate::{
    ArtifactInfo, CrateEntry, Error, PackageName, PublicKey, Result, SecretKey, Signature, Version, VersionReq,
};

const MANIFEST_DOMAIN: &str = "agora/manifest/v1";
const MANIFEST_DOMAIN_V2: &str = "agora/manifest/v2";
const MANIFEST_DOMAIN_V3: &str = "agora/manifest/v3";
const MAX_DESCRIPTION: usize = 1000;
const MAX_KEYWORDS: usize = 10;
const MAX_KEYWORD_LEN: usize = 32;
const MAX_CATEGORIES: usize = 5;
const MAX_CATEGORY_LEN: usize = 64;
const MAX_AUTHORS: usize = 16;
const MAX_TEXT: usize = 256;
const MAX_DEPENDENCIES: usize = 128;

/// What the author writes about a package version (the `[package]` and
/// `[dependencies]` tables of `agora.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackageMetadata {
    /// Package name.
    pub name: PackageName,
    /// Version being published.
    pub version: Version,
    /// One-paragraph description; searched.
    pub description: String,
    /// Search keywords, also used as tags for filtering.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Categories such as `web` or `templates/rust`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// SPDX license expression.
    #[serde(default)]
    pub license: Option<String>,
    /// Authors, free text.
    #[serde(default)]
    pub authors: Vec<String>,
    /// Project homepage URL.
    #[serde(default)]
    pub homepage: Option<String>,
    /// Source repository URL.
    #[serde(default)]
    pub repository: Option<String>,
    /// Other packages this one needs.
    #[serde(default)]
    pub dependencies: BTreeMap<PackageName, VersionReq>,
}

impl PackageMetadata {
    /// The longest description, in characters.
    pub const MAX_DESCRIPTION: usize = MAX_DESCRIPTION;
    /// The most keywords.
    pub const MAX_KEYWORDS: usize = MAX_KEYWORDS;
    /// The most categories.
    pub const MAX_CATEGORIES: usize = MAX_CATEGORIES;
    /// The most authors.
    pub const MAX_AUTHORS: usize = MAX_AUTHORS;

    /// Metadata with only the required fields set.
    pub fn new(name: PackageName, version: Version, description: impl Into<String>) -> Self {
        Self {
            name,
            version,
            description: description.into(),
            keywords: Vec::new(),
            categories: Vec::new(),
            license: None,
            authors: Vec::new(),
            homepage: None,
            repository: None,
            dependencies: BTreeMap::new(),
        }
    }

    /// Checks every field against the metadata rules.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidManifest(message));
        if self.version.to_string().len() > crate::name::MAX_VERSION_LEN {
            return invalid(format!("version is longer than {} characters", crate::name::MAX_VERSION_LEN));
        }
        let description = self.description.trim();
        if description.is_empty() {
            return invalid("`description` is required and cannot be empty".into());
        }
        if self.description.chars().count() > MAX_DESCRIPTION {
            return invalid(format!("`description` is at most {MAX_DESCRIPTION} characters"));
        }
        if self.description.chars().any(|c| c.is_control() && c != '\n') {
            return invalid("`description` contains control characters".into());
        }
        check_words("keywords", &self.keywords, MAX_KEYWORDS, MAX_KEYWORD_LEN, Self::is_keyword)?;
        check_words("categories", &self.categories, MAX_CATEGORIES, MAX_CATEGORY_LEN, Self::is_category)?;
        if self.authors.len() > MAX_AUTHORS {
            return invalid(format!("at most {MAX_AUTHORS} `authors`"));
        }
        for (field, text) in self.authors.iter().map(|a| ("authors", Some(a))).chain([
            ("license", self.license.as_ref()),
            ("homepage", self.homepage.as_ref()),
            ("repository", self.repository.as_ref()),
        ]) {
            let Some(text) = text else { continue };
            if !Self::is_text(text) {
                return invalid(format!("`{field}` must be 1 to {MAX_TEXT} printable characters"));
            }
        }
        for (field, url) in [("homepage", &self.homepage), ("repository", &self.repository)] {
            if let Some(url) = url
                && !Self::is_url(url)
            {
                return invalid(format!("`{field}` must be an http(s) URL, found `{url}`"));
            }
        }
        if self.dependencies.len() > MAX_DEPENDENCIES {
            return invalid(format!("at most {MAX_DEPENDENCIES} dependencies"));
        }
        if self.dependencies.contains_key(&self.name) {
            return invalid(format!("`{}` cannot depend on itself", self.name));
        }
        Ok(())
    }

    /// Whether `word` is a valid keyword: 1–32 lowercase ASCII letters, digits,
    /// `-`, `_` or `+`.
    pub fn is_keyword(word: &str) -> bool {
        is_word(word, MAX_KEYWORD_LEN, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '+'))
    }

    /// Whether `word` is a valid category: 1–64 lowercase ASCII letters, digits,
    /// `-`, `_` or `/`.
    pub fn is_category(word: &str) -> bool {
        is_word(word, MAX_CATEGORY_LEN, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '/')
        })
    }

    /// Whether `text` is valid as an author, a license, a homepage or a
    /// repository: 1–256 bytes, not blank, no control characters.
    pub fn is_text(text: &str) -> bool {
        !text.trim().is_empty() && text.len() <= MAX_TEXT && !text.chars().any(char::is_control)
    }

    /// Whether `url` is valid as a homepage or repository: [`is_text`](Self::is_text)
    /// and `http://` or `https://`.
    pub fn is_url(url: &str) -> bool {
        Self::is_text(url) && (url.starts_with("https://") || url.starts_with("http://"))
    }
}

fn is_word(word: &str, max_len: usize, allowed: fn(char) -> bool) -> bool {
    !word.is_empty() && word.len() <= max_len && word.chars().all(allowed)
}

/// One published version: the author's metadata, the artifact it describes, when
/// and by whom it was published.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Manifest {
    /// What the author wrote.
    #[serde(flatten)]
    pub metadata: PackageMetadata,
    /// The artifact this version consists of.
    pub artifact: ArtifactInfo,
    /// Unix seconds at signing.
    pub published_at: u64,
    /// The key that signed this manifest.
    pub publisher: PublicKey,
    /// Bytes of file content the artifact unpacks to, when the publisher's node
    /// recorded it (v2 and v3 manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_size: Option<u64>,
    /// What cargo needs to resolve this version, for a crate (`crates/<name>`;
    /// v3 manifests) and only for a crate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cargo: Option<CrateEntry>,
}

impl Manifest {
    /// Package name.
    pub fn name(&self) -> &PackageName {
        &self.metadata.name
    }

    /// Version.
    pub fn version(&self) -> &Version {
        &self.metadata.version
    }

    /// Checks the metadata, the artifact description and the crate entry: a
    /// manifest has a crate entry exactly when its name is a crate's, the entry's
    /// name is that crate (`canonical()` equal to the name after `crates/`), and a
    /// crate lists its dependencies in the entry, not in `metadata.dependencies`.
    pub fn validate(&self) -> Result<()> {
        self.metadata.validate()?;
        self.artifact.validate()?;
        let name = self.name();
        match (name.crate_canonical(), &self.cargo) {
            (None, None) => Ok(()),
            (Some(_), None) => Err(Error::InvalidManifest(format!(
                "`{name}` is a crate's name, and the manifest of a crate needs a crate entry"
            ))),
            (None, Some(entry)) => Err(Error::InvalidManifest(format!(
                "`{name}` is a native package's name, but the manifest carries a crate entry for `{}`; crates are \
                 named `crates/<name>`",
                entry.name
            ))),
            (Some(canonical), Some(entry)) => {
                if entry.name.canonical() != canonical {
                    return Err(Error::InvalidManifest(format!(
                        "the crate entry is for `{}` (package `{}`), not for `{name}`",
                        entry.name,
                        entry.name.package_name()
                    )));
                }
                if !self.metadata.dependencies.is_empty() {
                    return Err(Error::InvalidManifest(format!(
                        "`{name}` is a crate: its dependencies belong in its crate entry, not in `dependencies`"
                    )));
                }
                entry.validate()
            }
        }
    }

    /// The canonical encoding the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let metadata = &self.metadata;
        let domain = match (&self.cargo, self.unpacked_size) {
            (Some(_), _) => MANIFEST_DOMAIN_V3,
            (None, Some(_)) => MANIFEST_DOMAIN_V2,
            (None, None) => MANIFEST_DOMAIN,
        };
        let mut encoder = Encoder::new(domain);
        encoder.str(metadata.name.as_str());
        encoder.str(&metadata.version.to_string());
        encoder.str(&metadata.description);
        encoder.strs(&metadata.keywords);
        encoder.strs(&metadata.categories);
        encoder.opt_str(metadata.license.as_deref());
        encoder.strs(&metadata.authors);
        encoder.opt_str(metadata.homepage.as_deref());
        encoder.opt_str(metadata.repository.as_deref());
        encoder.len(metadata.dependencies.len());
        for (name, requirement) in &metadata.dependencies {
            encoder.str(name.as_str());
            encoder.str(&requirement.to_string());
        }
        encoder.digest(&self.artifact.digest);
        encoder.u64(self.artifact.size);
        encoder.u32(self.artifact.chunk_size);
        encoder.len(self.artifact.chunks.len());
        for chunk in &self.artifact.chunks {
            encoder.digest(chunk);
        }
        encoder.u64(self.published_at);
        encoder.public_key(&self.publisher);
        match (&self.cargo, self.unpacked_size) {
            (Some(entry), unpacked) => {
                match unpacked {
                    None => encoder.u8(0),
                    Some(unpacked) => {
                        encoder.u8(1);
                        encoder.u64(unpacked);
                    }
                }
                entry.encode(&mut encoder);
            }
            (None, Some(unpacked)) => encoder.u64(unpacked),
            (None, None) => {}
        }
        encoder.finish()
    }

    /// Signs with `key`, which must be the manifest's `publisher`.
    pub fn sign(self, key: &SecretKey) -> Result<SignedManifest> {
        self.validate()?;
        if key.public_key() != self.publisher {
            return Err(Error::InvalidManifest(format!(
                "manifest names publisher {} but is being signed by {}",
                self.publisher,
                key.public_key()
            )));
        }
        let signature = key.sign(&self.canonical_bytes());
        Ok(SignedManifest { manifest: self, signature })
    }

    /// Decodes the manifest inside a signed wire form ([`SignedManifest::to_bytes`])
    /// **without checking the signature**. Only for bytes this program verified
    /// before it stored them (a store reading its own rows back); anything from
    /// elsewhere goes through [`SignedManifest::from_bytes`]. The structure is
    /// still decoded and validated in full.
    pub fn from_trusted_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, _) = split_signature("signed manifest", bytes)?;
        Self::decode(body)
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let domain = [MANIFEST_DOMAIN_V3, MANIFEST_DOMAIN_V2]
            .into_iter()
            .find(|domain| bytes.starts_with(&Encoder::new(domain).finish()))
            .unwrap_or(MANIFEST_DOMAIN);
        let mut decoder = Decoder::new("manifest", domain, bytes)?;
        let name = PackageName::parse(decoder.str()?)?;
        let version = crate::parse_version(decoder.str()?)?;
        let description = decoder.string()?;
        let keywords = decoder.strings(MAX_KEYWORDS)?;
        let categories = decoder.strings(MAX_CATEGORIES)?;
        let license = decoder.opt_string()?;
        let authors = decoder.strings(MAX_AUTHORS)?;
        let homepage = decoder.opt_string()?;
        let repository = decoder.opt_string()?;
        let dependency_count = decoder.count(MAX_DEPENDENCIES, 8)?;
        let mut dependencies = BTreeMap::new();
        for _ in 0..dependency_count {
            let dependency = PackageName::parse(decoder.str()?)?;
            let text = decoder.str()?;
            let requirement = VersionReq::parse(text)
                .map_err(|error| Error::InvalidVersion { input: text.to_owned(), reason: error.to_string() })?;
            // Only the canonical form decodes (names strictly ascending, each
            // requirement spelled as it prints), so re-encoding gives these bytes.
            if dependencies.last_key_value().is_some_and(|(last, _)| *last >= dependency) {
                return Err(decoder.error(format!("dependency `{dependency}` is out of order or repeated")));
            }
            if requirement.to_string() != text {
                return Err(decoder.error(format!(
                    "dependency requirement `{}` is not in its canonical form `{requirement}`",
                    text.escape_debug()
                )));
            }
            dependencies.insert(dependency, requirement);
        }
        let digest = decoder.digest()?;
        let size = decoder.u64()?;
        let chunk_size = decoder.u32()?;
        let chunk_count = decoder.count(ArtifactInfo::MAX_CHUNKS, 32)?;
        let chunks = (0..chunk_count).map(|_| decoder.digest()).collect::<Result<Vec<_>>>()?;
        let published_at = decoder.u64()?;
        let publisher = decoder.public_key()?;
        let (unpacked_size, cargo) = match domain {
            MANIFEST_DOMAIN_V3 => {
                let unpacked_size = if decoder.bool()? { Some(decoder.u64()?) } else { None };
                (unpacked_size, Some(CrateEntry::decode(&mut decoder)?))
            }
            MANIFEST_DOMAIN_V2 => (Some(decoder.u64()?), None),
            _ => (None, None),
        };
        decoder.finish()?;
        let manifest = Manifest {
            metadata: PackageMetadata {
                name,
                version,
                description,
                keywords,
                categories,
                license,
                authors,
                homepage,
                repository,
                dependencies,
            },
            artifact: ArtifactInfo { digest, size, chunk_size, chunks },
            published_at,
            publisher,
            unpacked_size,
            cargo,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

/// A manifest with a verified signature by its publisher.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedSignedManifest")]
pub struct SignedManifest {
    manifest: Manifest,
    signature: Signature,
}

impl SignedManifest {
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The publisher's signature over [`Manifest::canonical_bytes`].
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Re-checks validity and signature. Always true for a value built by this
    /// crate; useful after crossing a trust boundary by other means.
    pub fn verify(&self) -> Result<()> {
        self.manifest.validate()?;
        if self.manifest.publisher.verify(&self.manifest.canonical_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(Error::InvalidSignature {
                what: format!("manifest of {}@{}", self.manifest.name(), self.manifest.version()),
            })
        }
    }

    /// The wire form: the canonical manifest followed by the 64-byte signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.manifest.canonical_bytes();
        bytes.extend_from_slice(self.signature.as_bytes());
        bytes
    }

    /// Decodes and verifies the wire form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (body, signature) = split_signature("signed manifest", bytes)?;
        let manifest = Manifest::decode(body)?;
        let signed = Self { manifest, signature };
        signed.verify()?;
        Ok(signed)
    }

    /// Takes the manifest out.
    pub fn into_manifest(self) -> Manifest {
        self.manifest
    }
}

pub(crate) fn split_signature<'a>(what: &'static str, bytes: &'a [u8]) -> Result<(&'a [u8], Signature)> {
    let Some(split) = bytes.len().checked_sub(64) else {
        return Err(Error::Decode { what, reason: format!("{} bytes is too short to hold a signature", bytes.len()) });
    };
    let (body, signature) = bytes.split_at(split);
    let mut raw = [0u8; 64];
    raw.copy_from_slice(signature);
    Ok((body, Signature::from_bytes(raw)))
}

#[derive(Deserialize)]
struct UncheckedSignedManifest {
    manifest: Manifest,
    signature: Signature,
}

impl TryFrom<UncheckedSignedManifest> for SignedManifest {
    type Error = Error;

    fn try_from(unchecked: UncheckedSignedManifest) -> Result<Self> {
        let signed = SignedManifest { manifest: unchecked.manifest, signature: unchecked.signature };
        signed.verify()?;
        Ok(signed)
    }
}

fn check_words(
    field: &str,
    words: &[String],
    max_count: usize,
    max_len: usize,
    is_valid: fn(&str) -> bool,
) -> Result<()> {
    if words.len() > max_count {
        return Err(Error::InvalidManifest(format!("at most {max_count} `{field}`, found {}", words.len())));
    }
    for word in words {
        if !is_valid(word) {
            return Err(Error::InvalidManifest(format!(
                "`{field}` entry `{}` must be 1 to {max_len} lowercase letters, digits or punctuation from the allowed set",
                word.chars().take(80).collect::<String>()
            )));
        }
    }
    let mut sorted: Vec<&String> = words.iter().collect();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != words.len() {
        return Err(Error::InvalidManifest(format!("`{field}` has duplicate entries")));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn sample_manifest(key: &SecretKey, name: &str, version: &str) -> Manifest {
        let mut metadata = PackageMetadata::new(name.parse().unwrap(), version.parse().unwrap(), "a sample package");
        metadata.keywords = vec!["sample".into(), "test".into()];
        metadata.categories = vec!["templates/rust".into()];
        metadata.license = Some("MIT".into());
        metadata.homepage = Some("https://example.org".into());
        metadata.dependencies.insert("other".parse().unwrap(), "^1.2".parse().unwrap());
        Manifest {
            metadata,
            artifact: ArtifactInfo::compute(format!("{name}-{version}").as_bytes(), 4096).unwrap(),
            published_at: 1_700_000_000,
            publisher: key.public_key(),
            unpacked_size: None,
            cargo: None,
        }
    }

    #[test]
    fn the_unpacked_size_is_a_v2_manifest_and_v1_keeps_verifying() {
        let owner = SecretKey::generate();
        let v1 = sample_manifest(&owner, "demo", "1.0.0").sign(&owner).unwrap();
        assert!(v1.to_bytes().starts_with(&Encoder::new(MANIFEST_DOMAIN).finish()));
        let sized = Manifest { unpacked_size: Some(12_345), ..sample_manifest(&owner, "demo", "1.0.0") };
        let v2 = sized.sign(&owner).unwrap();
        let bytes = v2.to_bytes();
        assert!(bytes.starts_with(&Encoder::new(MANIFEST_DOMAIN_V2).finish()));
        assert_eq!(SignedManifest::from_bytes(&bytes).unwrap().manifest().unpacked_size, Some(12_345));
        assert_eq!(SignedManifest::from_bytes(&v1.to_bytes()).unwrap(), v1);
        // The size is signed: a v1 signature does not cover a v2 body, nor the reverse.
        let mut relabelled = Encoder::new(MANIFEST_DOMAIN).finish();
        let body = &bytes[Encoder::new(MANIFEST_DOMAIN_V2).finish().len()..];
        relabelled.extend_from_slice(body);
        assert!(SignedManifest::from_bytes(&relabelled).is_err());
        let json = serde_json::to_string(&v1).unwrap();
        assert!(!json.contains("unpacked_size"), "v1 JSON is unchanged: {json}");
    }

    /// Signed v1 and v2 manifests encoded before manifest v3 existed (seed `[7; 32]`,
    /// the manifest of [`fixture_manifest`]): they must keep decoding and verifying.
    const FIXTURE_V1: &str = concat!(
        "0000001161676f72612f6d616e69666573742f7631000000076669787475726500000005312e322e3300000021612066",
        "6978747572652066726f6d206265666f7265206d616e6966657374207633000000010000000766697874757265000000",
        "010000000774657374696e6701000000034d495400000000000000000001000000056f74686572000000045e312e3270",
        "ea06053509b85e86aaa7ae9a844c489068f32741581cb6b773af42e272d0880000000000000010000010000000000170",
        "ea06053509b85e86aaa7ae9a844c489068f32741581cb6b773af42e272d088000000006553f100ea4a6c63e29c520abe",
        "f5507b132ec5f9954776aebebe7b92421eea691446d22caa90b9a722227e386994c61014195f56302a402ba8e6a26c4f",
        "ce40bacb8e137ab600b2adb716189ef184ebbe2b8cd2eff56608b4fa31f640afabd27e0f69490d",
    );
    const FIXTURE_V2: &str = concat!(
        "0000001161676f72612f6d616e69666573742f7632000000076669787475726500000005312e322e3300000021612066",
        "6978747572652066726f6d206265666f7265206d616e6966657374207633000000010000000766697874757265000000",
        "010000000774657374696e6701000000034d495400000000000000000001000000056f74686572000000045e312e3270",
        "ea06053509b85e86aaa7ae9a844c489068f32741581cb6b773af42e272d0880000000000000010000010000000000170",
        "ea06053509b85e86aaa7ae9a844c489068f32741581cb6b773af42e272d088000000006553f100ea4a6c63e29c520abe",
        "f5507b132ec5f9954776aebebe7b92421eea691446d22c00000000000010924f8e8fff750172ef1334720ba46b4f3405",
        "5cecbfeda951768a838803b1d6d54df5bfee4a33515feec522f80cbff4dad6f014570e2622b59f79200b47e82eb903",
    );

    fn fixture_manifest(unpacked_size: Option<u64>) -> Manifest {
        let key = SecretKey::from_bytes(&[7u8; 32]);
        let mut metadata = PackageMetadata::new(
            "fixture".parse().unwrap(),
            "1.2.3".parse().unwrap(),
            "a fixture from before manifest v3",
        );
        metadata.keywords = vec!["fixture".into()];
        metadata.categories = vec!["testing".into()];
        metadata.license = Some("MIT".into());
        metadata.dependencies.insert("other".parse().unwrap(), "^1.2".parse().unwrap());
        Manifest {
            metadata,
            artifact: ArtifactInfo::compute(b"fixture artifact", 4096).unwrap(),
            published_at: 1_700_000_000,
            publisher: key.public_key(),
            unpacked_size,
            cargo: None,
        }
    }

    pub(crate) fn sample_crate_manifest(key: &SecretKey, crate_name: &str, version: &str) -> Manifest {
        let entry = crate::cargo::tests::sample_entry(crate_name);
        let mut metadata = PackageMetadata::new(entry.name.package_name(), version.parse().unwrap(), "a sample crate");
        metadata.keywords = vec!["sample".into()];
        Manifest {
            metadata,
            artifact: ArtifactInfo::compute(format!("{crate_name}-{version}").as_bytes(), 4096).unwrap(),
            published_at: 1_700_000_000,
            publisher: key.public_key(),
            unpacked_size: Some(9_000),
            cargo: Some(entry),
        }
    }

    #[test]
    fn records_from_before_v3_keep_decoding_and_verifying() {
        for (fixture, unpacked_size, domain) in
            [(FIXTURE_V1, None, MANIFEST_DOMAIN), (FIXTURE_V2, Some(4242), MANIFEST_DOMAIN_V2)]
        {
            let bytes = hex::decode(fixture).unwrap();
            let signed = SignedManifest::from_bytes(&bytes).unwrap();
            assert_eq!(signed.manifest(), &fixture_manifest(unpacked_size));
            assert_eq!(signed.to_bytes(), bytes, "re-encoding gives the same bytes");
            assert!(bytes.starts_with(&Encoder::new(domain).finish()));
            assert_eq!(Manifest::from_trusted_bytes(&bytes).unwrap(), fixture_manifest(unpacked_size));
        }
    }

    #[test]
    fn a_crate_entry_is_a_v3_manifest() {
        let owner = SecretKey::generate();
        for unpacked_size in [None, Some(9_000)] {
            let manifest = Manifest { unpacked_size, ..sample_crate_manifest(&owner, "Demo-Crate", "1.0.0") };
            let signed = manifest.clone().sign(&owner).unwrap();
            let bytes = signed.to_bytes();
            assert!(bytes.starts_with(&Encoder::new(MANIFEST_DOMAIN_V3).finish()));
            let decoded = SignedManifest::from_bytes(&bytes).unwrap();
            assert_eq!(decoded, signed);
            assert_eq!(decoded.to_bytes(), bytes);
            assert_eq!(Manifest::from_trusted_bytes(&bytes).unwrap(), manifest);
            let json = serde_json::to_string(&signed).unwrap();
            assert!(json.contains(r#""cargo":{"name":"Demo-Crate""#), "{json}");
            assert_eq!(serde_json::from_str::<SignedManifest>(&json).unwrap(), signed);
        }
        // Without a crate entry nothing changes: v1 and v2 stay what they were.
        let native = sample_manifest(&owner, "demo", "1.0.0");
        assert!(native.canonical_bytes().starts_with(&Encoder::new(MANIFEST_DOMAIN).finish()));
        let json = serde_json::to_string(&native.sign(&owner).unwrap()).unwrap();
        assert!(!json.contains("cargo"), "{json}");
    }

    #[test]
    fn the_namespace_and_the_crate_entry_go_together() {
        let owner = SecretKey::generate();
        let crate_manifest = sample_crate_manifest(&owner, "demo", "1.0.0");
        type Mutation = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("needs a crate entry", Box::new(|m| m.cargo = None)),
            ("native package's name", Box::new(|m| m.metadata.name = "demo".parse().unwrap())),
            (
                "not for `crates/demo`",
                Box::new(|m| {
                    if let Some(entry) = &mut m.cargo {
                        entry.name = crate::CrateName::parse("other").unwrap();
                    }
                }),
            ),
            (
                "belong in its crate entry",
                Box::new(|m| drop(m.metadata.dependencies.insert("other".parse().unwrap(), "1".parse().unwrap()))),
            ),
            (
                "is not a version requirement",
                Box::new(|m| {
                    if let Some(entry) = &mut m.cargo {
                        entry.deps[0].req = "not a requirement".into();
                    }
                }),
            ),
        ];
        for (expected, mutate) in cases {
            let mut manifest = crate_manifest.clone();
            mutate(&mut manifest);
            let error = manifest.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "expected `{expected}` in `{error}`");
            assert!(manifest.clone().sign(&owner).is_err());
            // Signed anyway (the bytes a hostile publisher could send), it does not decode.
            let body = manifest.canonical_bytes();
            let forged = [body.as_slice(), owner.sign(&body).as_bytes()].concat();
            assert!(SignedManifest::from_bytes(&forged).is_err(), "{expected}");
            assert!(Manifest::from_trusted_bytes(&forged).is_err(), "{expected}");
        }
        // Other spellings of the same crate are the same package.
        let mut respelled = crate_manifest.clone();
        if let Some(entry) = &mut respelled.cargo {
            entry.name = crate::CrateName::parse("DEMO").unwrap();
        }
        assert!(respelled.validate().is_ok());
    }

    #[test]
    fn a_v3_body_under_another_domain_does_not_verify() {
        let owner = SecretKey::generate();
        let signed = sample_crate_manifest(&owner, "demo", "1.0.0").sign(&owner).unwrap();
        let bytes = signed.to_bytes();
        let body = &bytes[Encoder::new(MANIFEST_DOMAIN_V3).finish().len()..];
        for domain in [MANIFEST_DOMAIN, MANIFEST_DOMAIN_V2] {
            let relabelled = [Encoder::new(domain).finish().as_slice(), body].concat();
            assert!(SignedManifest::from_bytes(&relabelled).is_err(), "{domain}");
        }
        // A v2 body relabelled v3 is not a v3 manifest either.
        let sized = Manifest { unpacked_size: Some(5), ..sample_manifest(&owner, "demo", "1.0.0") };
        let v2 = sized.sign(&owner).unwrap().to_bytes();
        let body = &v2[Encoder::new(MANIFEST_DOMAIN_V2).finish().len()..];
        let relabelled = [Encoder::new(MANIFEST_DOMAIN_V3).finish().as_slice(), body].concat();
        assert!(SignedManifest::from_bytes(&relabelled).is_err());
    }

    #[test]
    fn signing_requires_the_publisher_key() {
        let owner = SecretKey::generate();
        let manifest = sample_manifest(&owner, "demo", "1.0.0");
        assert!(manifest.clone().sign(&SecretKey::generate()).is_err());
        assert!(manifest.sign(&owner).is_ok());
    }

    #[test]
    fn json_with_a_tampered_field_is_rejected() {
        let owner = SecretKey::generate();
        let signed = sample_manifest(&owner, "demo", "1.0.0").sign(&owner).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        assert!(serde_json::from_str::<SignedManifest>(&json).is_ok());
        let tampered = json.replace("a sample package", "a sampled package");
        let error = serde_json::from_str::<SignedManifest>(&tampered).unwrap_err();
        assert!(error.to_string().contains("invalid signature"), "{error}");
    }

    #[test]
    fn metadata_rules() {
        let owner = SecretKey::generate();
        let good = sample_manifest(&owner, "demo", "1.0.0").metadata;
        type Mutation = Box<dyn Fn(&mut PackageMetadata)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("description", Box::new(|m| m.description = "  ".into())),
            ("description", Box::new(|m| m.description = "x".repeat(1001))),
            ("keywords", Box::new(|m| m.keywords = vec!["UPPER".into()])),
            ("keywords", Box::new(|m| m.keywords = (0..11).map(|i| format!("k{i}")).collect())),
            ("keywords", Box::new(|m| m.keywords = vec!["a".into(), "a".into()])),
            ("categories", Box::new(|m| m.categories = vec!["has space".into()])),
            ("homepage", Box::new(|m| m.homepage = Some("ftp://x".into()))),
            (
                "itself",
                Box::new(|m| {
                    m.dependencies.insert(m.name.clone(), "1".parse().unwrap());
                }),
            ),
        ];
        for (expected, mutate) in cases {
            let mut metadata = good.clone();
            mutate(&mut metadata);
            let error = metadata.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "expected `{expected}` in `{error}`");
        }
    }

    #[test]
    fn trusted_decoding_skips_only_the_signature() {
        let owner = SecretKey::generate();
        let signed = sample_manifest(&owner, "demo", "1.0.0").sign(&owner).unwrap();
        let mut bytes = signed.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(SignedManifest::from_bytes(&bytes).is_err());
        assert_eq!(&Manifest::from_trusted_bytes(&bytes).unwrap(), signed.manifest());
        // The structure is still checked.
        bytes[0] ^= 1;
        assert!(Manifest::from_trusted_bytes(&bytes).is_err());
        assert!(Manifest::from_trusted_bytes(&[0u8; 63]).is_err());
    }

    #[test]
    fn short_and_garbage_bytes_are_errors_not_panics() {
        assert!(SignedManifest::from_bytes(&[]).is_err());
        assert!(SignedManifest::from_bytes(&[0u8; 63]).is_err());
        assert!(SignedManifest::from_bytes(&[0xffu8; 500]).is_err());
    }

    proptest! {
        #[test]
        fn wire_and_json_round_trip(
            name in "[a-z][a-z0-9-]{0,20}",
            major in 0u64..100,
            description in "[a-zA-Z0-9][a-zA-Z0-9 ]{0,99}",
            keywords in proptest::collection::btree_set("[a-z][a-z0-9]{0,10}", 0..5),
            content in proptest::collection::vec(any::<u8>(), 0..10_000),
            as_crate in any::<bool>(),
        ) {
            let owner = SecretKey::generate();
            let cargo = as_crate.then(|| crate::cargo::tests::sample_entry(&name.to_uppercase()));
            let package = match &cargo {
                Some(entry) => entry.name.package_name(),
                None => name.parse().unwrap(),
            };
            let mut metadata = PackageMetadata::new(package, Version::new(major, 1, 0), description);
            metadata.keywords = keywords.into_iter().collect();
            let manifest = Manifest {
                metadata,
                artifact: ArtifactInfo::compute(&content, 4096).unwrap(),
                published_at: 42,
                publisher: owner.public_key(),
                unpacked_size: (major % 2 == 0).then_some(major * 1000),
                cargo,
            };
            let signed = manifest.sign(&owner).unwrap();
            let bytes = signed.to_bytes();
            prop_assert_eq!(SignedManifest::from_bytes(&bytes).unwrap(), signed.clone());
            prop_assert_eq!(&Manifest::from_trusted_bytes(&bytes).unwrap(), signed.manifest());
            let json = serde_json::to_vec(&signed).unwrap();
            prop_assert_eq!(serde_json::from_slice::<SignedManifest>(&json).unwrap(), signed);
        }

        #[test]
        fn any_flipped_byte_breaks_the_manifest(index in any::<prop::sample::Index>(), bit in 0u8..8) {
            let owner = SecretKey::generate();
            let signed = sample_manifest(&owner, "flip", "1.0.0").sign(&owner).unwrap();
            let mut bytes = signed.to_bytes();
            let at = index.index(bytes.len());
            bytes[at] ^= 1 << bit;
            prop_assert!(SignedManifest::from_bytes(&bytes).is_err());
        }
    }
}
