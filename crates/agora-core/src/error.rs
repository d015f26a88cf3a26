//! The error type shared by every `Registry` backend.
//!
//! Backends map their own failures (SQLite, libp2p, I/O) into [`Error::Storage`],
//! [`Error::Network`] or [`Error::Io`] as text, so no foreign type leaks through the
//! `Registry` seam.

use crate::{Digest, PackageName, Version};

/// Result alias for this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when building, checking or serving packages.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A package name broke the naming rules.
    #[error("invalid package name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A version or version requirement did not parse as semver.
    #[error("invalid version `{input}`: {reason}")]
    InvalidVersion { input: String, reason: String },
    /// A manifest field broke the metadata rules.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// A package index broke its structural rules.
    #[error("invalid package index: {0}")]
    InvalidIndex(String),
    /// A signature did not verify.
    #[error("invalid signature on {what}")]
    InvalidSignature { what: String },
    /// Bytes did not decode as the expected canonical encoding.
    #[error("malformed {what}: {reason}")]
    Decode { what: &'static str, reason: String },
    /// The signer does not own the package name.
    #[error("package `{name}` is owned by key {owner}, not by {signer}")]
    NotOwner { name: PackageName, owner: String, signer: String },
    /// A published version would change content.
    #[error(
        "{name}@{version} is already published with digest {existing}; versions are immutable, publish a new version"
    )]
    VersionExists { name: PackageName, version: Version, existing: Digest },
    /// An index update does not advance the sequence.
    #[error("stale index for `{name}`: sequence {offered} is not greater than the current {current}")]
    StaleSequence { name: PackageName, current: u64, offered: u64 },
    /// An index update is not a legal successor of the current one.
    #[error("illegal index update for `{name}`: {reason}")]
    IllegalUpdate { name: PackageName, reason: String },
    /// No package by that name is known.
    #[error("package `{0}` not found")]
    PackageNotFound(PackageName),
    /// The package exists but not that version.
    #[error("version {version} of `{name}` not found")]
    VersionNotFound { name: PackageName, version: Version },
    /// The artifact for a version is not held here.
    #[error("the artifact of {name}@{version} is not available")]
    ArtifactUnavailable { name: PackageName, version: Version },
    /// An artifact is bigger than the configured limit.
    #[error("artifact is {size} bytes, over the limit of {limit} bytes")]
    ArtifactTooLarge { size: u64, limit: u64 },
    /// Content did not hash to what was promised.
    #[error("digest mismatch: expected {expected}, found {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// A search query was out of bounds.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The storage backend failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// The network failed.
    #[error("network error: {0}")]
    Network(String),
    /// A file operation failed.
    #[error("i/o error: {0}")]
    Io(String),
}

impl Error {
    /// True for errors that mean "the thing asked for does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::PackageNotFound(_) | Error::VersionNotFound { .. } | Error::ArtifactUnavailable { .. })
    }

    /// True for errors caused by the caller's input rather than by this side.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidName { .. }
                | Error::InvalidVersion { .. }
                | Error::InvalidManifest(_)
                | Error::InvalidIndex(_)
                | Error::InvalidSignature { .. }
                | Error::Decode { .. }
                | Error::NotOwner { .. }
                | Error::VersionExists { .. }
                | Error::StaleSequence { .. }
                | Error::IllegalUpdate { .. }
                | Error::ArtifactTooLarge { .. }
                | Error::DigestMismatch { .. }
                | Error::InvalidQuery(_)
        )
    }
}
