//! Writing an artifact out of a registry into a file of the caller's:
//! [`export`] streams an [`ArtifactReader`] (verified chunk by chunk as it is
//! read) into a temp file beside the destination and renames it into place only
//! once every byte arrived and verified, so a failed or interrupted export
//! leaves nothing at the destination.

use std::path::{Path, PathBuf};

use agora_core::{ArtifactReader, Error as CoreError, SignedManifest};
use futures::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// An artifact written to a file.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The manifest it was verified against.
    pub manifest: SignedManifest,
    /// Where it was written.
    pub path: PathBuf,
    /// Bytes written.
    pub bytes: u64,
}

/// Writes `artifact` to `dest` (replacing a file there), atomically.
pub async fn export(mut artifact: ArtifactReader, dest: &Path) -> Result<Exported> {
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::NamedTempFile::new_in(&parent).map_err(|error| Error::io(&parent, error))?;
    let (file, temp_path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        let read = artifact.read(&mut buffer).await.map_err(CoreError::from_read)?;
        if read == 0 {
            break;
        }
        written += read as u64;
        if written > artifact.len() {
            return Err(CoreError::InvalidManifest(format!(
                "the artifact is longer than the {} bytes its manifest declares",
                artifact.len()
            ))
            .into());
        }
        file.write_all(&buffer[..read]).await.map_err(|error| Error::io(&*temp_path, error))?;
    }
    if written != artifact.len() {
        return Err(CoreError::InvalidManifest(format!(
            "the artifact read {written} bytes, its manifest declares {}",
            artifact.len()
        ))
        .into());
    }
    file.sync_all().await.map_err(|error| Error::io(&*temp_path, error))?;
    drop(file);
    temp_path.persist(dest).map_err(|error| Error::io(dest, error.error))?;
    Ok(Exported { manifest: artifact.manifest().clone(), path: dest.to_owned(), bytes: written })
}
