//! [`ArtifactReader`]: what a registry hands out for an artifact — the manifest
//! it was verified against, its length, and its bytes as an `AsyncRead`.
//!
//! A backend builds one over its own reader, which must verify every chunk
//! against the manifest before returning any byte of it and fail the read with
//! [`std::io::ErrorKind::InvalidData`] (wrapping [`Error::DigestMismatch`]) when
//! one does not match, and which keeps the backend's copy alive (open, leased)
//! until it is dropped. No path into a backend's store is ever handed out.
//!
//! This module does no I/O of its own; writing an artifact to a file is the
//! facade's (`agora::export`).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::io::{AsyncRead, AsyncReadExt};

use crate::{ArtifactInfo, Error, Result, SignedManifest};

/// A verified artifact being read. Dropping it releases the backend's copy.
pub struct ArtifactReader {
    manifest: SignedManifest,
    reader: Pin<Box<dyn AsyncRead + Send + 'static>>,
}

impl ArtifactReader {
    /// Wraps a backend's reader of the artifact `manifest` describes. The reader
    /// must verify as the module doc says.
    pub fn new(manifest: SignedManifest, reader: impl AsyncRead + Send + 'static) -> Self {
        Self { manifest, reader: Box::pin(reader) }
    }

    /// A reader over bytes in memory, checked against the manifest first (size,
    /// digest and every chunk digest).
    pub fn from_bytes(manifest: SignedManifest, bytes: Bytes) -> Result<Self> {
        let expected = &manifest.manifest().artifact;
        expected.check_matches(&ArtifactInfo::compute(&bytes, expected.chunk_size)?)?;
        Ok(Self::new(manifest, futures::io::Cursor::new(bytes)))
    }

    /// The manifest the bytes are verified against.
    pub fn manifest(&self) -> &SignedManifest {
        &self.manifest
    }

    /// The artifact's length in bytes.
    pub fn len(&self) -> u64 {
        self.manifest.manifest().artifact.size
    }

    /// True for an empty artifact.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole artifact into memory (it is `len()` bytes: mind large ones).
    /// A chunk that fails verification is [`Error::DigestMismatch`] when the
    /// backend said so, else [`Error::Io`].
    pub async fn read_to_vec(mut self) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0).min(64 * 1024 * 1024));
        self.reader.read_to_end(&mut bytes).await.map_err(Error::from_read)?;
        if bytes.len() as u64 != self.len() {
            return Err(Error::InvalidManifest(format!(
                "the artifact read {} bytes, its manifest declares {}",
                bytes.len(),
                self.len()
            )));
        }
        Ok(bytes)
    }
}

impl AsyncRead for ArtifactReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        self.reader.as_mut().poll_read(cx, buf)
    }
}

impl fmt::Debug for ArtifactReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let manifest = self.manifest.manifest();
        f.debug_struct("ArtifactReader")
            .field("name", manifest.name())
            .field("version", manifest.version())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}
