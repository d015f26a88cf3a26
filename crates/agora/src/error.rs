//! The facade's error: the errors of the crates it composes, plus configuration,
//! key and file errors of its own.

use std::path::PathBuf;

use crate::archive::ArchiveError;

/// Result alias for this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong running a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registry operation failed (validation, not found, storage…).
    #[error(transparent)]
    Registry(#[from] agora_core::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] agora_store::Error),
    /// A package directory or archive was unusable.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A cargo publish request or `.crate` file was unusable.
    #[error(transparent)]
    Cargo(#[from] crate::cargo::CargoError),
    /// The configuration was unusable.
    #[error("configuration error in {origin}: {message}")]
    Config { origin: String, message: String },
    /// A key file was unusable.
    #[error("key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    /// Another node (in this process or another) holds the data directory's lock.
    #[error("another agora node{} is using the data dir {}; stop it first", pid_note(*.pid), .data_dir.display())]
    DataDirLocked { data_dir: PathBuf, pid: Option<u32> },
    /// Switching the publisher key would strand the packages the current key owns
    /// (a node signs with one key); `force` switches anyway. `current` is the
    /// current key's public half, in hex.
    #[error(
        "the current publisher key {current} owns {count} package(s) ({names}); after switching, this node could no \
         longer update or yank them. Pass --force to switch anyway (the old key stays in keys/keyring/)"
    )]
    KeyOwnsPackages { current: String, count: usize, names: String },
    /// A file operation failed.
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// The registry error inside, if this is one (also through the store).
    pub fn as_registry_error(&self) -> Option<agora_core::Error> {
        match self {
            Error::Registry(error) => Some(error.clone()),
            Error::Store(agora_store::Error::Core(error)) => Some(error.clone()),
            _ => None,
        }
    }
}

/// ` (pid N)` when the lock holder's pid is known.
fn pid_note(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

impl From<Error> for agora_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Registry(error) => error,
            Error::Store(error) => error.into(),
            Error::Archive(error) => agora_core::Error::InvalidManifest(error.to_string()),
            Error::Cargo(error) => agora_core::Error::InvalidManifest(error.to_string()),
            error @ Error::Io { .. } => agora_core::Error::io(error),
            other => agora_core::Error::Internal(other.to_string()),
        }
    }
}
