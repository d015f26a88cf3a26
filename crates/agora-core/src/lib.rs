//! The domain model of Agora, a decentralized package registry.
//!
//! This crate defines what a package *is* and which changes to it are legal:
//! validated [`PackageName`]s, semver [`Version`]s, the signed [`Manifest`] of one
//! version, the signed [`PackageIndex`] of one name, the rules that connect them
//! (the owner key owns a name on first sight, versions are immutable, only the owner
//! yanks, sequences grow), search [`Query`]s, and the [`Registry`] trait every
//! backend implements. Crates live in a namespace of their own (`crates/<name>`),
//! and a crate's manifest carries its [`CrateEntry`]: what cargo's index says
//! about that version.
//!
//! It deliberately does no I/O: no files, no sockets, no database, no async runtime.
//! Storage lives in `agora-store`, caching in `agora-cache`, composition in `agora`.
//!
//! # Example
//!
//! ```
//! use agora_core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};
//!
//! let publisher = Publisher::new(SecretKey::generate());
//! let metadata: PackageMetadata = PackageMetadata::new(
//!     "hello-world".parse()?,
//!     agora_core::parse_version("1.0.0")?,
//!     "prints a greeting",
//! );
//! let artifact = ArtifactInfo::compute(b"tarball bytes", ArtifactInfo::DEFAULT_CHUNK_SIZE)?;
//! let (manifest, index) = publisher.publish(metadata, artifact, None, 1_700_000_000)?;
//!
//! // Anyone can check both signatures and the link between them.
//! manifest.verify()?;
//! index.verify()?;
//! assert_eq!(index.index().owner, publisher.public_key());
//!
//! // The wire encoding round-trips and is what the signature covers.
//! let bytes = manifest.to_bytes();
//! assert_eq!(agora_core::SignedManifest::from_bytes(&bytes)?, manifest);
//! # Ok::<(), agora_core::Error>(())
//! ```

mod artifact;
mod cargo;
mod claims;
mod crypto;
mod encoding;
mod error;
mod index;
mod manifest;
mod name;
mod publisher;
mod query;
mod reader;
mod registry;

pub use artifact::{ArtifactData, ArtifactHasher, ArtifactInfo};
pub use cargo::{
    CrateDependency, CrateEntry, CrateName, CrateNameError, DependencyKind, MAX_CRATE_DEPENDENCIES,
    MAX_CRATE_ENTRY_SIZE, MAX_CRATE_FEATURES, MAX_CRATE_NAME_LEN, MAX_CRATE_STRING, MAX_CRATE_TARGET,
    MAX_FEATURE_VALUES,
};
pub use claims::{Claim, Equivocation, MAX_COMPETING_CLAIMS, NameClaims};
pub use crypto::{DecodeError, Digest, PublicKey, SecretKey, Signature};
pub use error::{Error, ErrorKind, ErrorSource, Result, Unavailable};
pub use index::{
    IndexChange, MAX_OWNER_CHANGES, MAX_OWNERS, OwnerChange, PackageIndex, SignedPackageIndex, VersionEntry,
};
pub use manifest::{Manifest, PackageMetadata, SignedManifest};
pub use name::{CRATE_PREFIX, NameError, PackageName, VersionError};
pub use publisher::{Publication, Publisher};
pub use query::{Query, SearchHit, SearchResults, SearchScope};
pub use reader::ArtifactReader;
pub use registry::{Registry, RegistryMetadata};
pub use semver::{Version, VersionReq};

/// Parses a semantic version, mapping failures into this crate's [`Error`].
pub fn parse_version(input: &str) -> Result<Version> {
    Ok(name::parse_version(input)?)
}
