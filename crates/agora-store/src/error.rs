//! The store's error type: what a store operation can fail with, domain rules
//! ([`Error::Core`]) kept apart from SQLite, file and corruption failures.
//! Not here: turning them into answers for users; the facade does that.

use std::path::PathBuf;

/// Result alias for this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record broke a domain rule (bad signature, not the owner, stale sequence…).
    #[error(transparent)]
    Core(#[from] agora_core::Error),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The database was written by a newer build.
    #[error(
        "the catalog at {path} has schema version {found}, newer than the {supported} this build knows; upgrade agora"
    )]
    SchemaTooNew { path: String, found: i64, supported: i64 },
    /// A row did not decode; the database was changed outside Agora.
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
    /// [`Storage::forget`](crate::Storage::forget) was asked to
    /// forget a pinned artifact; unpin it first.
    #[error("artifact {0} is pinned; unpin it before forgetting it")]
    Pinned(agora_core::Digest),
    /// [`Store::subscribe`](crate::Store::subscribe) was given one observer more
    /// than the store keeps.
    #[error("the store already has {max} catalog observers, the most it keeps")]
    TooManyObservers { max: usize },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

impl From<Error> for agora_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Core(error) => error,
            error @ Error::Io { .. } => agora_core::Error::io(error),
            other => agora_core::Error::storage(other),
        }
    }
}
