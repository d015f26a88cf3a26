//! What a manifest promises about its artifact: the SHA-256 of the whole file, its
//! size, and the SHA-256 of every fixed-size chunk, so a downloader can verify each
//! chunk as it arrives; and [`ArtifactData`], the bytes a publisher hands over.

use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Digest, Error, Result};

/// The artifact bytes of a publication: in memory, or in a file of the
/// publisher's that the registry reads (and copies into its own store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactData {
    /// The bytes, in memory.
    Bytes(Bytes),
    /// A file holding the bytes.
    File(PathBuf),
}

/// Size, digest and chunk digests of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// SHA-256 of the whole artifact.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
    /// Length of every chunk but the last.
    pub chunk_size: u32,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<Digest>,
}

impl ArtifactInfo {
    /// The chunk size publishers use unless told otherwise: 256 KiB.
    pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
    /// Smallest accepted chunk size: 4 KiB.
    pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
    /// Largest accepted chunk size: 16 MiB.
    pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
    /// Most chunks one artifact may have (4 GiB at the default chunk size).
    pub const MAX_CHUNKS: usize = 16 * 1024;

    /// Hashes `bytes` in one go.
    pub fn compute(bytes: &[u8], chunk_size: u32) -> Result<Self> {
        let mut hasher = ArtifactHasher::new(chunk_size)?;
        hasher.update(bytes);
        hasher.finish()
    }

    /// Number of chunks an artifact of this size has.
    pub fn chunk_count(&self) -> usize {
        expected_chunks(self.size, self.chunk_size)
    }

    /// Byte range `(offset, len)` of chunk `index`, if it exists.
    pub fn chunk_range(&self, index: usize) -> Option<(u64, u32)> {
        if index >= self.chunks.len() {
            return None;
        }
        let offset = index as u64 * u64::from(self.chunk_size);
        let len = (self.size - offset).min(u64::from(self.chunk_size));
        Some((offset, len as u32))
    }

    /// Checks that `actual` (what some bytes hash to) is the artifact this
    /// describes: the whole digest first ([`Error::DigestMismatch`]), then size
    /// and every chunk digest ([`Error::InvalidManifest`]).
    pub fn check_matches(&self, actual: &ArtifactInfo) -> Result<()> {
        if actual.digest != self.digest {
            return Err(Error::DigestMismatch { expected: self.digest, actual: actual.digest });
        }
        if actual != self {
            return Err(Error::InvalidManifest(
                "the manifest's size or chunk digests do not match the artifact".into(),
            ));
        }
        Ok(())
    }

    /// Checks the structural rules: chunk size in range and a power of two, and
    /// exactly as many chunk digests as the size calls for.
    pub fn validate(&self) -> Result<()> {
        check_chunk_size(self.chunk_size)?;
        let expected = self.chunk_count();
        if expected > Self::MAX_CHUNKS {
            return Err(Error::InvalidManifest(format!(
                "artifact of {} bytes has {expected} chunks, over the limit of {}",
                self.size,
                Self::MAX_CHUNKS
            )));
        }
        if self.chunks.len() != expected {
            return Err(Error::InvalidManifest(format!(
                "artifact of {} bytes in chunks of {} needs {expected} chunk digests, found {}",
                self.size,
                self.chunk_size,
                self.chunks.len()
            )));
        }
        Ok(())
    }
}

/// Computes an [`ArtifactInfo`] incrementally, for artifacts streamed from disk or
/// the network without holding them in memory.
#[derive(Debug, Clone)]
pub struct ArtifactHasher {
    chunk_size: u32,
    whole: Sha256,
    chunk: Sha256,
    in_chunk: u32,
    size: u64,
    chunks: Vec<Digest>,
}

impl ArtifactHasher {
    /// Starts hashing with the given chunk size.
    pub fn new(chunk_size: u32) -> Result<Self> {
        check_chunk_size(chunk_size)?;
        Ok(Self { chunk_size, whole: Sha256::new(), chunk: Sha256::new(), in_chunk: 0, size: 0, chunks: Vec::new() })
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = (self.chunk_size - self.in_chunk) as usize;
            let take = room.min(bytes.len());
            self.chunk.update(&bytes[..take]);
            self.in_chunk += take as u32;
            bytes = &bytes[take..];
            if self.in_chunk == self.chunk_size {
                let full = std::mem::take(&mut self.chunk);
                self.chunks.push(Digest::finish(full));
                self.in_chunk = 0;
            }
        }
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes and checks the result against the structural limits.
    pub fn finish(mut self) -> Result<ArtifactInfo> {
        if self.in_chunk > 0 {
            self.chunks.push(Digest::finish(self.chunk));
        }
        let info = ArtifactInfo {
            digest: Digest::finish(self.whole),
            size: self.size,
            chunk_size: self.chunk_size,
            chunks: self.chunks,
        };
        info.validate()?;
        Ok(info)
    }
}

fn expected_chunks(size: u64, chunk_size: u32) -> usize {
    size.div_ceil(u64::from(chunk_size.max(1))) as usize
}

fn check_chunk_size(chunk_size: u32) -> Result<()> {
    if !(ArtifactInfo::MIN_CHUNK_SIZE..=ArtifactInfo::MAX_CHUNK_SIZE).contains(&chunk_size)
        || !chunk_size.is_power_of_two()
    {
        return Err(Error::InvalidManifest(format!(
            "chunk size {chunk_size} must be a power of two between {} and {}",
            ArtifactInfo::MIN_CHUNK_SIZE,
            ArtifactInfo::MAX_CHUNK_SIZE
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn chunks_cover_the_artifact() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let info = ArtifactInfo::compute(&bytes, 4096).unwrap();
        assert_eq!(info.size, 10_000);
        assert_eq!(info.chunks.len(), 3);
        assert_eq!(info.digest, Digest::of(&bytes));
        assert_eq!(info.chunks[2], Digest::of(&bytes[8192..]));
        assert_eq!(info.chunk_range(2), Some((8192, 10_000 - 8192)));
        assert_eq!(info.chunk_range(3), None);
    }

    #[test]
    fn bad_chunk_sizes_and_counts_are_rejected() {
        assert!(ArtifactHasher::new(1000).is_err());
        assert!(ArtifactHasher::new(1024).is_err());
        let mut info = ArtifactInfo::compute(b"abc", 4096).unwrap();
        info.chunks.push(Digest::of(b""));
        assert!(info.validate().is_err());
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(bytes in proptest::collection::vec(any::<u8>(), 0..20_000), split in 0usize..20_000) {
            let split = split.min(bytes.len());
            let mut hasher = ArtifactHasher::new(4096).unwrap();
            hasher.update(&bytes[..split]);
            hasher.update(&bytes[split..]);
            prop_assert_eq!(hasher.finish().unwrap(), ArtifactInfo::compute(&bytes, 4096).unwrap());
        }
    }
}
