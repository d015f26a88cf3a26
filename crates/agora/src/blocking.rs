//! Store work on tokio's blocking pool: SQLite and file calls never run on an
//! async worker. A store error keeps its cause ([`agora_core::Error::Storage`],
//! [`agora_core::Error::Io`], or the domain error it carries); a blocking task
//! that panicked is [`agora_core::Error::Internal`], never a configuration error.

use agora_core::{Error as CoreError, Result as CoreResult};

/// Runs `work` on the blocking pool.
pub(crate) async fn run<T: Send + 'static>(
    work: impl FnOnce() -> agora_store::Result<T> + Send + 'static,
) -> CoreResult<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(CoreError::from),
        Err(error) => Err(join_error(error)),
    }
}

/// A blocking task that did not finish: it panicked or was cancelled.
pub(crate) fn join_error(error: tokio::task::JoinError) -> CoreError {
    CoreError::Internal(format!("a store task failed: {error}"))
}
