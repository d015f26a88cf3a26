//! [`ArtifactReader`]: a held artifact read back one verified chunk at a time, in
//! one pass over its file, under a [`Lease`] that keeps eviction away.
//!
//! Each chunk is read whole into a buffer and checked against its chunk digest
//! before any of its bytes is handed out; with the last chunk, the file must end
//! where the artifact does and hash to the artifact's digest, again before that
//! chunk is handed out. So a reader never serves a byte it has not verified.
//! Not here: finding or opening the file ([`crate::Artifacts::open`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

use agora_core::{ArtifactInfo, Digest};
use sha2::{Digest as _, Sha256};

use crate::lease::Lease;
use crate::{Error, Result};

/// Reads past the artifact's end in pieces this large, to hash what is there.
const TAIL_BUFFER: usize = 64 * 1024;

/// A verified, leased reader over one held artifact; from
/// [`crate::Artifacts::open`] or [`crate::Store::open_artifact`].
///
/// It implements [`Read`]: bytes corrupted on disk (a chunk or the whole file not
/// matching its digest, a truncated or extended file) are an [`io::Error`] of
/// kind [`io::ErrorKind::InvalidData`] whose inner error is this crate's
/// [`Error::Core`] holding [`DigestMismatch`], so a caller can
/// [`downcast`](io::Error::downcast) it and report corruption on disk; no byte of
/// the failing chunk is returned, and every later call fails the same way.
/// [`ArtifactReader::next_chunk`] reads whole chunks instead. Memory: one chunk
/// (at most [`ArtifactInfo::MAX_CHUNK_SIZE`]).
///
/// The file stays open and the artifact leased until the reader is dropped.
/// Reads block on the file system: use a blocking thread.
///
/// [`DigestMismatch`]: agora_core::Error::DigestMismatch
pub struct ArtifactReader {
    info: ArtifactInfo,
    path: PathBuf,
    file: File,
    _lease: Lease,
    /// The next chunk to read from the file.
    next: usize,
    /// The current chunk, verified, and how much of it was handed out.
    chunk: Vec<u8>,
    served: usize,
    whole: Sha256,
    /// The end of the file was checked.
    finished: bool,
    /// A reader that failed keeps failing, with this.
    failure: Option<Failure>,
}

impl std::fmt::Debug for ArtifactReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactReader")
            .field("digest", &self.info.digest)
            .field("path", &self.path)
            .field("next_chunk", &self.next)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl ArtifactReader {
    /// `info` was validated; `file` is its artifact's file, leased by `lease`.
    pub(crate) fn new(info: ArtifactInfo, path: PathBuf, file: File, lease: Lease) -> Self {
        Self {
            info,
            path,
            file,
            _lease: lease,
            next: 0,
            chunk: Vec::new(),
            served: 0,
            whole: Sha256::new(),
            finished: false,
            failure: None,
        }
    }

    /// What the artifact should be.
    pub fn info(&self) -> &ArtifactInfo {
        &self.info
    }

    /// The artifact's size in bytes.
    pub fn len(&self) -> u64 {
        self.info.size
    }

    /// Whether the artifact has no bytes.
    pub fn is_empty(&self) -> bool {
        self.info.size == 0
    }

    /// The next verified chunk, or `None` after the last one (when the whole file
    /// has been checked). If [`Read::read`] left part of a chunk unread, that rest
    /// comes first. Corruption is [`Error::Core`] with [`DigestMismatch`], as for
    /// [`Read`]. For async wrappers that move chunks across threads.
    ///
    /// [`DigestMismatch`]: agora_core::Error::DigestMismatch
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.served < self.chunk.len() {
            let rest = self.chunk.split_off(self.served);
            self.served = 0;
            self.chunk.clear();
            return Ok(Some(rest));
        }
        if !self.load()? {
            return Ok(None);
        }
        Ok(Some(std::mem::take(&mut self.chunk)))
    }

    /// Reads and checks the rest of the file without keeping it.
    pub(crate) fn check_to_end(&mut self) -> Result<()> {
        while self.load()? {}
        Ok(())
    }

    /// Reads and verifies the next chunk into `self.chunk`; false at the end.
    fn load(&mut self) -> Result<bool> {
        self.chunk.clear();
        self.served = 0;
        if let Some(failure) = &self.failure {
            return Err(self.error(failure.clone()));
        }
        let error = match self.load_unchecked() {
            Ok(more) => return Ok(more),
            Err(error) => error,
        };
        self.chunk.clear();
        let failure = match &error {
            Error::Core(agora_core::Error::DigestMismatch { expected, actual }) => {
                tracing::error!(path = %self.path.display(), %expected, %actual, "artifact corrupted on disk");
                Failure::Corrupt { expected: *expected, actual: *actual }
            }
            Error::Io { source, .. } => Failure::Other { kind: source.kind(), message: source.to_string() },
            other => Failure::Other { kind: io::ErrorKind::Other, message: other.to_string() },
        };
        self.failure = Some(failure);
        Err(error)
    }

    fn error(&self, failure: Failure) -> Error {
        match failure {
            Failure::Corrupt { expected, actual } => agora_core::Error::DigestMismatch { expected, actual }.into(),
            Failure::Other { kind, message } => Error::io(&self.path, io::Error::new(kind, message)),
        }
    }

    fn load_unchecked(&mut self) -> Result<bool> {
        if self.next >= self.info.chunks.len() {
            if !self.finished {
                self.finish()?;
            }
            return Ok(false);
        }
        let index = self.next;
        let Some((_, len)) = self.info.chunk_range(index) else {
            return Err(agora_core::Error::InvalidManifest(format!("the artifact has no chunk {index}")).into());
        };
        self.chunk.reserve(len as usize);
        // Exactly `len` bytes, or fewer if the file was truncated; the digest
        // check then fails with the digest of what is actually there.
        (&mut self.file).take(u64::from(len)).read_to_end(&mut self.chunk).map_err(|e| Error::io(&self.path, e))?;
        let expected = self.info.chunks[index];
        let actual = Digest::of(&self.chunk);
        if actual != expected {
            return Err(agora_core::Error::DigestMismatch { expected, actual }.into());
        }
        self.whole.update(&self.chunk);
        self.next += 1;
        if self.next == self.info.chunks.len() {
            self.finish()?;
        }
        Ok(true)
    }

    /// At the end of the last chunk: the file must end here and hash to the
    /// artifact's digest. A longer file is hashed to its real end, so the error
    /// names the digest of what is on disk.
    fn finish(&mut self) -> Result<()> {
        self.finished = true;
        let mut whole = self.whole.clone();
        let mut tail = vec![0u8; TAIL_BUFFER];
        let mut longer = false;
        loop {
            let read = match self.file.read(&mut tail) {
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Error::io(&self.path, error)),
            };
            if read == 0 {
                break;
            }
            longer = true;
            whole.update(&tail[..read]);
        }
        let actual = Digest::from_bytes(whole.finalize().into());
        if longer || actual != self.info.digest {
            return Err(agora_core::Error::DigestMismatch { expected: self.info.digest, actual }.into());
        }
        Ok(())
    }
}

impl Read for ArtifactReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if buffer.is_empty() {
            return Ok(0);
        }
        if self.served == self.chunk.len() {
            match self.load() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(error) => return Err(into_io(error)),
            }
        }
        let available = &self.chunk[self.served..];
        let count = available.len().min(buffer.len());
        buffer[..count].copy_from_slice(&available[..count]);
        self.served += count;
        Ok(count)
    }
}

/// Why a reader failed, kept to fail the same way again.
#[derive(Debug, Clone)]
enum Failure {
    /// Bytes on disk did not hash to what the artifact promises.
    Corrupt { expected: Digest, actual: Digest },
    /// Anything else, as an I/O error on the file.
    Other { kind: io::ErrorKind, message: String },
}

/// Corruption is `InvalidData`, a file error keeps its kind; the store's error
/// rides along as the inner error either way.
fn into_io(error: Error) -> io::Error {
    let kind = match &error {
        Error::Core(_) => io::ErrorKind::InvalidData,
        Error::Io { source, .. } => source.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}
