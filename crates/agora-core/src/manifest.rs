//! The manifest of one package version, and its signed form.
//!
//! A [`SignedManifest`] can only be obtained by signing a valid [`Manifest`] or by
//! decoding bytes (or JSON) whose signature verifies, so holding one means it was
//! checked.
//!
//! Two encodings: `agora/manifest/v1` (every manifest before the unpacked size
//! was recorded; such records keep verifying) and `agora/manifest/v2`, v1's
//! fields followed by the unpacked size. A manifest is encoded in v1 exactly
//! when it has no unpacked size, so each has one canonical encoding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::encoding::{Decoder, Encoder};
use crate::{ArtifactInfo, Error, PackageName, PublicKey, Result, SecretKey, Signature, Version, VersionReq};

const MANIFEST_DOMAIN: &str = "agora/manifest/v1";
const MANIFEST_DOMAIN_V2: &str = "agora/manifest/v2";
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
        check_words("keywords", &self.keywords, MAX_KEYWORDS, MAX_KEYWORD_LEN, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '+')
        })?;
        check_words("categories", &self.categories, MAX_CATEGORIES, MAX_CATEGORY_LEN, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '/')
        })?;
        if self.authors.len() > MAX_AUTHORS {
            return invalid(format!("at most {MAX_AUTHORS} `authors`"));
        }
        for (field, text) in self.authors.iter().map(|a| ("authors", Some(a))).chain([
            ("license", self.license.as_ref()),
            ("homepage", self.homepage.as_ref()),
            ("repository", self.repository.as_ref()),
        ]) {
            let Some(text) = text else { continue };
            if text.trim().is_empty() || text.len() > MAX_TEXT || text.chars().any(char::is_control) {
                return invalid(format!("`{field}` must be 1 to {MAX_TEXT} printable characters"));
            }
        }
        for (field, url) in [("homepage", &self.homepage), ("repository", &self.repository)] {
            if let Some(url) = url
                && !(url.starts_with("https://") || url.starts_with("http://"))
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
    /// recorded it (v2 manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_size: Option<u64>,
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

    /// Checks the metadata and the artifact description.
    pub fn validate(&self) -> Result<()> {
        self.metadata.validate()?;
        self.artifact.validate()
    }

    /// The canonical encoding the signature covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let metadata = &self.metadata;
        let domain = if self.unpacked_size.is_some() { MANIFEST_DOMAIN_V2 } else { MANIFEST_DOMAIN };
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
        if let Some(unpacked) = self.unpacked_size {
            encoder.u64(unpacked);
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
        let v2 = bytes.starts_with(&Encoder::new(MANIFEST_DOMAIN_V2).finish());
        let mut decoder = Decoder::new("manifest", if v2 { MANIFEST_DOMAIN_V2 } else { MANIFEST_DOMAIN }, bytes)?;
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
        let unpacked_size = if v2 { Some(decoder.u64()?) } else { None };
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
    allowed: fn(char) -> bool,
) -> Result<()> {
    if words.len() > max_count {
        return Err(Error::InvalidManifest(format!("at most {max_count} `{field}`, found {}", words.len())));
    }
    for word in words {
        if word.is_empty() || word.len() > max_len || !word.chars().all(allowed) {
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
        ) {
            let owner = SecretKey::generate();
            let mut metadata = PackageMetadata::new(name.parse().unwrap(), Version::new(major, 1, 0), description);
            metadata.keywords = keywords.into_iter().collect();
            let manifest = Manifest {
                metadata,
                artifact: ArtifactInfo::compute(&content, 4096).unwrap(),
                published_at: 42,
                publisher: owner.public_key(),
                unpacked_size: (major % 2 == 0).then_some(major * 1000),
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
