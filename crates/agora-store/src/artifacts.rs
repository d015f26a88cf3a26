//! [`Artifacts`]: the content-addressed artifact files,
//! `<root>/sha256/<first two hex>/<digest hex>`, and the `artifacts` rows that
//! say which of them this node holds.
//!
//! A file is written to `<root>/tmp` while it is hashed, checked against the
//! manifest's [`ArtifactInfo`] (digest, size and every chunk digest), flushed to
//! disk and only then renamed into place, so a reader never sees a partial or
//! unverified artifact. [`Artifacts::adopt`] does the same for a file already
//! written elsewhere under the data directory, renaming it in instead of copying
//! it. Reads re-hash the file, so corruption on disk is an error, not a silent
//! wrong answer: [`Artifacts::open`] hands out a leased [`ArtifactReader`] that
//! verifies as it reads, and [`Artifacts::read_chunk`] serves one chunk at a
//! time to peers, checked against its chunk digest.
//!
//! Not here: which held artifacts are pinned and which may be evicted (that is
//! [`crate::Storage`]), and what the artifacts are of ([`crate::Packages`]).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_core::{ArtifactData, ArtifactHasher, ArtifactInfo, Digest};
use rusqlite::OptionalExtension;
use sha2::{Digest as _, Sha256};

use crate::db::Database;
use crate::lease::{Lease, LeaseTable};
use crate::reader::ArtifactReader;
use crate::rows::{decode_digest, record_artifact};
use crate::{Error, Result};

const COPY_BUFFER: usize = 64 * 1024;

/// Artifact files and their rows, reached through [`crate::Store::artifacts`].
/// Cheap to clone; all clones share the directory and the store's connections.
///
/// Methods block on SQLite and the file system: call them from a blocking thread.
#[derive(Debug, Clone)]
pub struct Artifacts {
    root: Arc<Path>,
    database: Arc<Database>,
    leases: Arc<LeaseTable>,
    /// The directory of a [`crate::Store::memory`], deleted with the last clone.
    _temp: Option<Arc<tempfile::TempDir>>,
}

/// The outcome of [`Artifacts::put`] and [`Artifacts::adopt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// The verified file.
    pub path: PathBuf,
    /// False when an identical artifact was already present.
    pub created: bool,
}

impl Artifacts {
    /// Opens (creating) the artifact directory and clears what a crash left: temp
    /// files, and artifact files without a row ([`Artifacts::remove_orphans`]).
    pub(crate) fn new(root: &Path, database: Arc<Database>, temp: Option<Arc<tempfile::TempDir>>) -> Result<Self> {
        let store = Self { root: root.into(), database, leases: Arc::default(), _temp: temp };
        let tmp = store.tmp_dir();
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        for dir in [store.root.join("sha256"), tmp] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        store.remove_orphans()?;
        Ok(store)
    }

    /// Deletes the artifact files that have no row, and returns how many. A crash
    /// leaves one between writing a file and committing its row (a publish, a
    /// download moved into place) and between deleting a row and its file
    /// (eviction); nothing else would ever delete it, and a file without a row
    /// must not pass for a held artifact. Run at open, before anything else uses
    /// the store (the node's data-dir lock says no other process does). Files
    /// that are not named like artifacts are left alone.
    fn remove_orphans(&self) -> Result<usize> {
        let sha256 = self.root.join("sha256");
        let mut removed = 0;
        for prefix in fs::read_dir(&sha256).map_err(|e| Error::io(&sha256, e))?.flatten() {
            let Ok(files) = fs::read_dir(prefix.path()) else { continue };
            for file in files.flatten() {
                let Some(digest) = file.file_name().to_str().and_then(|name| name.parse::<Digest>().ok()) else {
                    continue;
                };
                if file.path() != self.path_of(&digest) || self.has(&digest)? {
                    continue;
                }
                match self.remove(&digest) {
                    Ok(()) => removed += 1,
                    Err(error) => tracing::warn!(%digest, %error, "could not delete an orphan artifact file"),
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed artifact files without a row, left by a crash");
        }
        Ok(removed)
    }

    /// Records that this node holds the artifact with `digest` (its file is
    /// already in place: see [`Artifacts::put`] and [`Artifacts::adopt`]). A
    /// pinned artifact stays pinned; its last use moves to `now`.
    pub fn record(&self, digest: &Digest, size: u64, pinned: bool, now: u64) -> Result<()> {
        self.database.write(|tx| record_artifact(tx, digest, size, pinned, now))
    }

    /// Whether this node holds the artifact with `digest` (has its row).
    pub fn has(&self, digest: &Digest) -> Result<bool> {
        self.database.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT 1 FROM artifacts WHERE digest = ?1")?
                .query_row([digest.as_bytes().as_slice()], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Digests of every artifact this node holds, ascending.
    pub fn held(&self) -> Result<Vec<Digest>> {
        self.database.read(|connection| {
            let mut statement = connection.prepare_cached("SELECT digest FROM artifacts ORDER BY digest")?;
            let rows = statement.query_map([], |row| row.get::<_, Vec<u8>>(0))?;
            rows.map(|row| decode_digest(&row?)).collect()
        })
    }

    /// The path an artifact with `digest` has (whether or not it is present), for
    /// tools and tests. Not for serving: a path is not a hold on the file, and
    /// eviction may delete it while it is read; serve through a reader instead.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("sha256").join(&hex[..2]).join(hex)
    }

    /// Writes `data` as the artifact `expected` describes, verifying it first.
    /// On any mismatch nothing is stored.
    pub fn put(&self, expected: &ArtifactInfo, data: &ArtifactData) -> Result<StoredArtifact> {
        let tmp = self.tmp_dir();
        let mut temp = tempfile::NamedTempFile::new_in(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut hasher = ArtifactHasher::new(expected.chunk_size)?;
        match data {
            ArtifactData::Bytes(bytes) => {
                check_not_longer(expected, bytes.len() as u64)?;
                hasher.update(bytes);
                temp.write_all(bytes).map_err(|e| Error::io(temp.path(), e))?;
            }
            ArtifactData::File(path) => {
                let mut source = File::open(path).map_err(|e| Error::io(path, e))?;
                let mut buffer = vec![0u8; COPY_BUFFER];
                loop {
                    let read = source.read(&mut buffer).map_err(|e| Error::io(path, e))?;
                    if read == 0 {
                        break;
                    }
                    check_not_longer(expected, hasher.size() + read as u64)?;
                    hasher.update(&buffer[..read]);
                    temp.write_all(&buffer[..read]).map_err(|e| Error::io(temp.path(), e))?;
                }
            }
        }
        crate::crash::point("publish.temp_written");
        expected.check_matches(&hasher.finish()?)?;
        temp.as_file().sync_all().map_err(|e| Error::io(temp.path(), e))?;
        let path = self.path_of(&expected.digest);
        let created = !path.exists();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        Ok(StoredArtifact { path, created })
    }

    /// Moves a file already written under the data directory (a finished
    /// download) into place as the artifact `expected` describes, without copying.
    ///
    /// The file is hashed as it is read (digest, size and every chunk digest must
    /// match `expected`; a mismatch is the same error [`Artifacts::put`]
    /// returns), flushed to disk, then renamed to its content-addressed path,
    /// replacing an identical copy already there. On any error before the rename,
    /// `source` is left where it is for the caller to delete, and nothing is
    /// stored. The caller must not write to `source` once it has called this.
    ///
    /// `source` should be on the same file system as the store (anywhere under the
    /// data directory); if the rename fails because it is not, the file is copied
    /// in through [`Artifacts::put`] and then deleted (a failure to delete it is
    /// only logged: the artifact is in place).
    pub fn adopt(&self, expected: &ArtifactInfo, source: &Path) -> Result<StoredArtifact> {
        self.adopt_checked(expected, source, true)
    }

    /// [`Artifacts::adopt`] for a file whose every chunk the caller has already
    /// verified against `expected.chunks` (a finished download): only the size and
    /// the whole-file digest are checked — the chunk digests then agree by
    /// construction — so the file is hashed once instead of twice.
    pub fn adopt_chunk_verified(&self, expected: &ArtifactInfo, source: &Path) -> Result<StoredArtifact> {
        self.adopt_checked(expected, source, false)
    }

    fn adopt_checked(&self, expected: &ArtifactInfo, source: &Path, check_chunks: bool) -> Result<StoredArtifact> {
        let mut file = File::open(source).map_err(|e| Error::io(source, e))?;
        let mut buffer = vec![0u8; COPY_BUFFER];
        // Either every chunk digest and the whole digest, or the whole digest alone.
        let mut chunked = if check_chunks { Some(ArtifactHasher::new(expected.chunk_size)?) } else { None };
        let mut whole = Sha256::new();
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer).map_err(|e| Error::io(source, e))?;
            if read == 0 {
                break;
            }
            size += read as u64;
            check_not_longer(expected, size)?;
            match &mut chunked {
                Some(hasher) => hasher.update(&buffer[..read]),
                None => whole.update(&buffer[..read]),
            }
        }
        match chunked {
            Some(hasher) => expected.check_matches(&hasher.finish()?)?,
            None => {
                let actual = Digest::from_bytes(whole.finalize().into());
                if actual != expected.digest {
                    return Err(agora_core::Error::DigestMismatch { expected: expected.digest, actual }.into());
                }
                if size != expected.size {
                    return Err(agora_core::Error::InvalidManifest(format!(
                        "the artifact is {size} bytes, its manifest declares {}",
                        expected.size
                    ))
                    .into());
                }
            }
        }
        file.sync_all().map_err(|e| Error::io(source, e))?;
        drop(file);
        let path = self.path_of(&expected.digest);
        let created = !path.exists();
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        match fs::rename(source, &path) {
            Ok(()) => Ok(StoredArtifact { path, created }),
            Err(error) if error.kind() == io::ErrorKind::CrossesDevices => {
                let stored = self.put(expected, &ArtifactData::File(source.to_owned()))?;
                if let Err(error) = fs::remove_file(source) {
                    tracing::warn!(path = %source.display(), %error, "could not delete an adopted artifact's source");
                }
                Ok(stored)
            }
            Err(error) => Err(Error::io(&path, error)),
        }
    }

    /// A reader over the artifact `info` describes, or `None` when its file is
    /// not here. The reader verifies every chunk before handing it out and the
    /// whole file at its end (see [`ArtifactReader`]), and leases the artifact
    /// until it is dropped, so [`crate::Storage::evict`] leaves it alone: the
    /// lease is taken and the file opened in one step that eviction cannot come
    /// between. An `info` that breaks the structural rules is an error.
    pub fn open(&self, info: &ArtifactInfo) -> Result<Option<ArtifactReader>> {
        info.validate()?;
        let path = self.path_of(&info.digest);
        let opened = self.leases.lease_if(&info.digest, || match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io(&path, error)),
        })?;
        Ok(opened.map(|(file, lease)| ArtifactReader::new(info.clone(), path, file, lease)))
    }

    /// A lease on `digest`: until it is dropped, [`crate::Storage::evict`] keeps
    /// the artifact's row and file, for a caller that must hold an artifact while
    /// it does something else. It works whether or not the artifact is here yet.
    pub fn lease(&self, digest: &Digest) -> Lease {
        self.leases.lease(digest)
    }

    /// Re-hashes the artifact `expected` describes in one pass over its file:
    /// true when it is here and intact, false when it is not stored. A file whose
    /// bytes no longer match (a chunk, the whole, a wrong length) is a
    /// [`DigestMismatch`] error.
    ///
    /// [`DigestMismatch`]: agora_core::Error::DigestMismatch
    pub fn verify(&self, expected: &ArtifactInfo) -> Result<bool> {
        let Some(mut reader) = self.open(expected)? else { return Ok(false) };
        reader.check_to_end()?;
        Ok(true)
    }

    /// Chunk `index` of the artifact `info` describes, verified against
    /// `info.chunks[index]`. `Ok(None)` when there is no such chunk or the artifact
    /// is not stored; a chunk whose bytes no longer match (the file was corrupted or
    /// truncated on disk) is a [`DigestMismatch`] error, never served.
    ///
    /// [`DigestMismatch`]: agora_core::Error::DigestMismatch
    pub fn read_chunk(&self, info: &ArtifactInfo, index: usize) -> Result<Option<Vec<u8>>> {
        info.validate()?;
        let Some((offset, len)) = info.chunk_range(index) else { return Ok(None) };
        let path = self.path_of(&info.digest);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io(&path, error)),
        };
        file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&path, e))?;
        let mut chunk = Vec::with_capacity(len as usize);
        // Reads exactly `len` bytes, or fewer if the file was truncated; the digest
        // check below then fails with the digest of what is actually there.
        file.take(u64::from(len)).read_to_end(&mut chunk).map_err(|e| Error::io(&path, e))?;
        let expected = info.chunks[index];
        let actual = Digest::of(&chunk);
        if actual != expected {
            tracing::error!(path = %path.display(), chunk = index, %expected, %actual, "artifact chunk corrupted on disk");
            return Err(agora_core::Error::DigestMismatch { expected, actual }.into());
        }
        Ok(Some(chunk))
    }

    /// Deletes the artifact file with `digest`, if present. It neither consults
    /// leases nor touches the row: eviction goes through [`crate::Storage::evict`].
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path_of(digest);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(Error::io(&path, error)),
            _ => Ok(()),
        }
    }

    /// Runs `work` unless `digest` is leased (`None`), with no lease on it taken
    /// while `work` runs: see [`LeaseTable::unless_leased`].
    pub(crate) fn unless_leased<T>(&self, digest: &Digest, work: impl FnOnce() -> Result<T>) -> Result<Option<T>> {
        self.leases.unless_leased(digest, work)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
}

fn check_not_longer(expected: &ArtifactInfo, size: u64) -> Result<()> {
    if size > expected.size {
        return Err(agora_core::Error::InvalidManifest(format!(
            "the artifact is longer than the {} bytes its manifest declares",
            expected.size
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Artifacts {
        Artifacts::new(dir, Arc::new(Database::memory().unwrap()), None).unwrap()
    }

    fn bytes_of(text: &str) -> ArtifactData {
        ArtifactData::Bytes(text.as_bytes().to_vec().into())
    }

    #[test]
    fn put_then_read_back_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let info = ArtifactInfo::compute(b"hello artifact", 4096).unwrap();
        let stored = store.put(&info, &bytes_of("hello artifact")).unwrap();
        assert!(stored.created);
        assert_eq!(fs::read(&stored.path).unwrap(), b"hello artifact");
        assert!(!store.put(&info, &bytes_of("hello artifact")).unwrap().created);
        assert!(store.verify(&info).unwrap());

        fs::write(&stored.path, b"hello artifacT").unwrap();
        let error = store.verify(&info).unwrap_err();
        assert!(error.to_string().contains("digest mismatch"), "{error}");
    }

    #[test]
    fn mismatched_content_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let info = ArtifactInfo::compute(b"promised", 4096).unwrap();
        assert!(store.put(&info, &bytes_of("delivered")).is_err());
        assert!(store.put(&info, &bytes_of("promised and more")).is_err());
        let mut lying_chunks = info.clone();
        lying_chunks.chunks[0] = Digest::of(b"x");
        assert!(store.put(&lying_chunks, &bytes_of("promised")).is_err());
        assert!(!store.verify(&info).unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "temp files left behind");
    }

    #[test]
    fn opening_removes_files_without_a_row_and_keeps_recorded_ones() {
        let dir = tempfile::tempdir().unwrap();
        let database = Arc::new(Database::memory().unwrap());
        let store = Artifacts::new(dir.path(), database.clone(), None).unwrap();
        let (kept, orphan) =
            (ArtifactInfo::compute(b"kept", 4096).unwrap(), ArtifactInfo::compute(b"orphan", 4096).unwrap());
        store.put(&kept, &bytes_of("kept")).unwrap();
        store.record(&kept.digest, kept.size, false, 1).unwrap();
        let orphan_path = store.put(&orphan, &bytes_of("orphan")).unwrap().path;
        let stray = orphan_path.with_file_name("not-an-artifact");
        fs::write(&stray, b"x").unwrap();

        let reopened = Artifacts::new(dir.path(), database, None).unwrap();
        assert!(!orphan_path.exists(), "a file without a row survived");
        assert!(reopened.verify(&kept).unwrap());
        assert!(stray.exists(), "only artifact files are removed");
    }

    #[test]
    fn files_stream_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store"));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let source = dir.path().join("source.bin");
        fs::write(&source, &content).unwrap();
        let info = ArtifactInfo::compute(&content, 65_536).unwrap();
        let stored = store.put(&info, &ArtifactData::File(source)).unwrap();
        assert_eq!(fs::read(stored.path).unwrap(), content);
    }
}
