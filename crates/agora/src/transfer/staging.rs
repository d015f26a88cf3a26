//! Staging files of a transfer: `tmp/downloads/<digest>.part` (chunks written at
//! their offsets) and `<digest>.have` (one byte per chunk, 1 once verified), so
//! an interrupted transfer resumes from the chunks that still verify. This module
//! writes and re-verifies; it does not decide which chunk to fetch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_core::{ArtifactInfo, Digest, Error as CoreError, Result as CoreResult};

/// Staging files untouched for this long are not worth resuming.
const STALE_STAGING: Duration = Duration::from_secs(86_400);
/// Free space a download leaves beside itself (the catalog's journal, logs).
pub(super) const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// True when `error` is a write that failed because the disk is full.
pub(super) fn is_disk_full(error: &CoreError) -> bool {
    match error {
        CoreError::Io(source) => source
            .get()
            .downcast_ref::<std::io::Error>()
            .is_some_and(|error| error.kind() == std::io::ErrorKind::StorageFull),
        _ => false,
    }
}

/// The staging files of one artifact's transfer.
#[derive(Debug)]
pub(super) struct Staging {
    pub(super) part: PathBuf,
    have: PathBuf,
}

/// Bytes of disk `path` occupies (a part file is sparse until its chunks arrive).
fn allocated(path: &Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map_or(0, |metadata| metadata.blocks().saturating_mul(512))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map_or(0, |metadata| metadata.len())
    }
}

/// The staging files, open: chunks are written through it.
#[derive(Debug)]
pub(super) struct StagingFiles {
    part: std::fs::File,
    have: std::fs::File,
}

impl Staging {
    pub(super) fn new(dir: &Path, digest: &Digest) -> Self {
        Self {
            part: dir.join(format!("{}.part", digest.to_hex())),
            have: dir.join(format!("{}.have", digest.to_hex())),
        }
    }

    /// Refuses to start (or resume) a download the disk cannot hold: what the
    /// part file does not occupy yet, plus [`FREE_SPACE_RESERVE`] (blocking).
    /// Passes when the file system cannot tell.
    pub(super) fn check_free_space(&self, info: &ArtifactInfo, what: &str) -> CoreResult<()> {
        let dir = self.part.parent().unwrap_or(Path::new("."));
        let Ok(stats) = rustix::fs::statvfs(dir) else { return Ok(()) };
        let available = stats.f_bavail.saturating_mul(stats.f_frsize);
        let needed = info.size.saturating_sub(allocated(&self.part)).saturating_add(FREE_SPACE_RESERVE);
        if available < needed {
            return Err(CoreError::NoSpace { what: what.to_owned(), needed, available });
        }
        Ok(())
    }

    /// Removes both files.
    pub(super) fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.have);
    }

    /// Whether any chunk is marked verified (blocking; false when there are no
    /// staging files).
    pub(super) fn any_verified(&self) -> bool {
        std::fs::read(&self.have).is_ok_and(|marks| marks.contains(&1))
    }

    /// Removes the bitmap once the part file was adopted into the store.
    pub(super) fn finish(&self) {
        let _ = std::fs::remove_file(&self.have);
    }

    /// Opens (creating) the files for `info` and returns them with the indexes of
    /// the chunks that were marked and still verify (blocking).
    pub(super) fn open(&self, info: &ArtifactInfo) -> CoreResult<(StagingFiles, Vec<usize>)> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |path: &Path, error: std::io::Error| {
            CoreError::io(std::io::Error::new(error.kind(), format!("{}: {error}", path.display())))
        };
        let open =
            |path: &Path| std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let mut part = open(&self.part).map_err(|e| io(&self.part, e))?;
        let mut have = open(&self.have).map_err(|e| io(&self.have, e))?;
        let chunks = info.chunks.len();
        let mut marks = Vec::new();
        have.read_to_end(&mut marks).map_err(|e| io(&self.have, e))?;
        let part_len = part.metadata().map_err(|e| io(&self.part, e))?.len();
        if marks.len() != chunks || part_len != info.size {
            // Not a staging pair for this artifact (or a fresh one): start over.
            marks = vec![0; chunks];
            part.set_len(info.size).map_err(|e| io(&self.part, e))?;
            have.set_len(0).map_err(|e| io(&self.have, e))?;
            have.set_len(chunks as u64).map_err(|e| io(&self.have, e))?;
        }
        let mut verified = Vec::new();
        let mut buffer = Vec::new();
        for (index, mark) in marks.iter().enumerate() {
            let Some((offset, len)) = info.chunk_range(index) else { continue };
            if *mark != 1 {
                continue;
            }
            buffer.resize(len as usize, 0);
            part.seek(SeekFrom::Start(offset)).map_err(|e| io(&self.part, e))?;
            part.read_exact(&mut buffer).map_err(|e| io(&self.part, e))?;
            if Digest::of(&buffer) == info.chunks[index] {
                verified.push(index);
            }
        }
        Ok((StagingFiles { part, have }, verified))
    }
}

impl StagingFiles {
    /// Writes a verified chunk at `offset` and marks chunk `index` as had (blocking).
    pub(super) fn write(&self, index: usize, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        write_at(&self.part, bytes, offset)?;
        write_at(&self.have, &[1], index as u64)
    }
}

/// Removes staging files untouched for a day under `dir`, and bitmaps whose part
/// file is gone (moved into the store by a transfer that crashed before it
/// removed the bitmap: nothing to resume) (blocking).
pub(super) fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let stale = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > STALE_STAGING));
        let without_part = path.extension().is_some_and(|ext| ext == "have") && !path.with_extension("part").exists();
        if stale || without_part {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut written = 0;
    while written < bytes.len() {
        written += file.seek_write(&bytes[written..], offset + written as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_disk_counts_as_full() {
        let full = CoreError::io(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(is_disk_full(&full));
        assert!(!is_disk_full(&CoreError::io(std::io::Error::from(std::io::ErrorKind::PermissionDenied))));
        assert!(!is_disk_full(&CoreError::Internal("no".into())));
    }

    #[test]
    fn a_download_needs_what_the_part_file_does_not_hold_yet_plus_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let info = ArtifactInfo::compute(&[1u8; 10_000], 4096).unwrap();
        let staging = Staging::new(dir.path(), &info.digest);
        staging.check_free_space(&info, "fetching").unwrap();
        let huge = ArtifactInfo { size: u64::MAX / 2, ..info };
        let error = staging.check_free_space(&huge, "fetching huge").unwrap_err();
        assert!(matches!(error, CoreError::NoSpace { needed, .. } if needed > u64::MAX / 4), "{error}");
    }
}
