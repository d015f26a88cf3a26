//! The error type shared by every `Registry` backend.
//!
//! Variants say what kind of failure it is, because callers answer them
//! differently ([`Error::kind`]): the caller's input was invalid (fix it), the
//! thing does not exist (404), it conflicts with what is stored (409), the network
//! could not answer now (retry: [`Error::Unavailable`], [`Error::Timeout`]), or this
//! side failed ([`Error::Storage`], [`Error::Io`], [`Error::Internal`]). Backends
//! keep the cause of a storage or file failure as its [`std::error::Error::source`]
//! ([`ErrorSource`]), so no foreign type appears in the signature and nothing is
//! flattened to text.
//!
//! This module does not decide HTTP statuses or exit codes; the API layer maps
//! [`ErrorKind`] to those.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::DecodeError;
use crate::name::{NameError, VersionError};
use crate::{Digest, PackageName, Version};

/// Result alias for this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when building, checking or serving packages.
#[derive(Debug, thiserror::Error, Clone)]
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
    /// No claim to the name by that key is known here.
    #[error("no claim to `{name}` by key {owner} is known here; known owners: {known}")]
    NoSuchClaim { name: PackageName, owner: String, known: String },
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
    /// The network could not answer now: offline, no provider, refused. Worth
    /// retrying later; not the caller's fault and not a bug here.
    #[error("{what}: {reason}")]
    Unavailable { what: String, reason: Unavailable },
    /// The disk this side writes to has too little free space.
    #[error("{what}: needs {needed} bytes of free space, {available} bytes are free")]
    NoSpace { what: String, needed: u64, available: u64 },
    /// No answer arrived in time.
    #[error("{what}: no answer within {} ms", after.as_millis())]
    Timeout { what: String, after: Duration },
    /// The storage backend failed.
    #[error("storage error: {0}")]
    Storage(#[source] ErrorSource),
    /// A file operation failed.
    #[error("i/o error: {0}")]
    Io(#[source] ErrorSource),
    /// This side broke: a task panicked or was cancelled, an invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the network could not answer ([`Error::Unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The node runs without the network.
    #[error("the node is offline")]
    Offline,
    /// No reachable peer holds it.
    #[error("no reachable provider: {0}")]
    NoProvider(String),
    /// Peers were asked and refused or failed.
    #[error("{0}")]
    Refused(String),
    /// The network task stopped (the node is shutting down).
    #[error("the network has stopped")]
    Stopped,
}

/// The kind of an [`Error`]: what a caller (or an HTTP client) should do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input was wrong: fix it and try again (HTTP 400, 403, 413).
    InvalidInput,
    /// The thing asked for does not exist (HTTP 404).
    NotFound,
    /// The input is valid but conflicts with what is stored (HTTP 409).
    Conflict,
    /// The network could not answer now (HTTP 503).
    Unavailable,
    /// The network did not answer in time (HTTP 504).
    Timeout,
    /// This side failed (HTTP 500).
    Internal,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::PackageNotFound(_)
            | Error::VersionNotFound { .. }
            | Error::NoSuchClaim { .. }
            | Error::ArtifactUnavailable { .. } => ErrorKind::NotFound,
            Error::VersionExists { .. } | Error::StaleSequence { .. } => ErrorKind::Conflict,
            // Worth retrying once space is freed; not the caller's input.
            Error::Unavailable { .. } | Error::NoSpace { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => ErrorKind::Internal,
            // Bytes that do not hash to what was promised are the sender's fault
            // (a peer, a caller); code that reads its own copy reports corruption
            // as such (the facade: `Internal` or a refetch's kind).
            Error::InvalidName { .. }
            | Error::InvalidVersion { .. }
            | Error::InvalidManifest(_)
            | Error::InvalidIndex(_)
            | Error::InvalidSignature { .. }
            | Error::Decode { .. }
            | Error::NotOwner { .. }
            | Error::IllegalUpdate { .. }
            | Error::ArtifactTooLarge { .. }
            | Error::DigestMismatch { .. }
            | Error::InvalidQuery(_) => ErrorKind::InvalidInput,
        }
    }

    /// True for errors that mean "the thing asked for does not exist".
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }

    /// True for errors caused by the caller's (or the peer's) input rather than by
    /// this side: invalid data, and data that conflicts with what is stored.
    pub fn is_invalid_input(&self) -> bool {
        matches!(self.kind(), ErrorKind::InvalidInput | ErrorKind::Conflict)
    }

    /// True when whoever sent this data misbehaved: it is forged, malformed or
    /// breaks the rules. A validly signed record that only lost trust-on-first-use
    /// to another key's claim ([`Error::NotOwner`]) is honest disagreement, not
    /// misbehaviour: two publishers can claim one name without either lying.
    pub fn is_misbehaviour(&self) -> bool {
        self.is_invalid_input() && !matches!(self, Error::NotOwner { .. })
    }

    /// A storage failure with its cause.
    pub fn storage(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Storage(ErrorSource::new(source))
    }

    /// A file failure with its cause.
    pub fn io(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Io(ErrorSource::new(source))
    }

    /// The error behind a failed artifact read: the [`Error`] a backend wrapped in
    /// the `io::Error` (a digest mismatch), else the read error itself.
    pub fn from_read(error: std::io::Error) -> Self {
        if error.get_ref().and_then(|inner| inner.downcast_ref::<Error>()).is_some() {
            if let Some(inner) = error.into_inner().and_then(|inner| inner.downcast::<Error>().ok()) {
                return *inner;
            }
            return Error::Internal("an artifact read error vanished".into());
        }
        Error::io(error)
    }
}

impl From<NameError> for Error {
    fn from(error: NameError) -> Self {
        Error::InvalidName { name: error.name, reason: error.reason }
    }
}

impl From<VersionError> for Error {
    fn from(error: VersionError) -> Self {
        Error::InvalidVersion { input: error.input, reason: error.reason }
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Self {
        Error::Decode { what: error.what, reason: error.reason }
    }
}

/// The cause of a storage or file failure, kept whole (shared, so [`Error`] stays
/// `Clone`). Its `Display` is the cause's; its `source` is the cause's source.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ErrorSource {
    /// Wraps `source`.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(source))
    }

    /// The wrapped error, to downcast (`source.get().downcast_ref::<T>()`).
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ErrorSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_separate_what_callers_answer_differently() {
        let name: PackageName = "demo".parse().unwrap();
        assert_eq!(Error::PackageNotFound(name.clone()).kind(), ErrorKind::NotFound);
        assert_eq!(Error::InvalidQuery("x".into()).kind(), ErrorKind::InvalidInput);
        let exists = Error::VersionExists { name, version: "1.0.0".parse().unwrap(), existing: Digest::of(b"x") };
        assert_eq!(exists.kind(), ErrorKind::Conflict);
        assert!(exists.is_invalid_input());
        let offline = Error::Unavailable { what: "fetching demo@1.0.0".into(), reason: Unavailable::Offline };
        assert_eq!(offline.kind(), ErrorKind::Unavailable);
        assert_eq!(offline.to_string(), "fetching demo@1.0.0: the node is offline");
        let timeout = Error::Timeout { what: "a dht lookup".into(), after: Duration::from_millis(1500) };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert_eq!(timeout.to_string(), "a dht lookup: no answer within 1500 ms");
        assert_eq!(Error::Internal("task panicked".into()).kind(), ErrorKind::Internal);
    }

    #[test]
    fn storage_errors_keep_their_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no write access");
        let error = Error::io(cause);
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert_eq!(error.to_string(), "i/o error: no write access");
        let source = std::error::Error::source(&error).expect("a source");
        let io = source.downcast_ref::<ErrorSource>().and_then(|s| s.get().downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::PermissionDenied));
    }
}
