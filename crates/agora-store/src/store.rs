//! [`Store`]: a catalog and an artifact directory under one data directory, and
//! the operations that need both: publish and eviction.

use std::path::{Path, PathBuf};

use agora_core::{Digest, PackageName, Publication, SignedManifest, Version};

use crate::{ArtifactStore, Catalog, Error, Result};

/// A node's storage: `<dir>/catalog.sqlite` and `<dir>/artifacts/`.
#[derive(Debug, Clone)]
pub struct Store {
    catalog: Catalog,
    artifacts: ArtifactStore,
}

impl Store {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            catalog: Catalog::open(&dir.join("catalog.sqlite"))?,
            artifacts: ArtifactStore::open(&dir.join("artifacts"))?,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The artifact files.
    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Publishes a new version: checks the publication against the stored index,
    /// writes and verifies the artifact file, then commits the catalog rows. If
    /// anything fails, the catalog is unchanged and a file this call created is
    /// removed again.
    pub fn publish(&self, publication: &Publication, now: u64) -> Result<()> {
        let Publication { manifest, index, artifact } = publication;
        let name = manifest.manifest().name();
        let current = self.catalog.package(name)?;
        Publication::check(manifest, index, current.as_ref().map(|current| current.index()))?;
        let info = &manifest.manifest().artifact;
        let stored = self.artifacts.put(info, artifact)?;
        if let Err(error) = self.catalog.publish(manifest, index, now) {
            if stored.created && !self.catalog.has_artifact(&info.digest).unwrap_or(true) {
                let _ = self.artifacts.remove(&info.digest);
            }
            return Err(error);
        }
        tracing::info!(package = %name, version = %manifest.manifest().version(), digest = %info.digest, "published");
        Ok(())
    }

    /// Evicts cached (unpinned) artifacts, least recently used first, until their
    /// bytes fit in `max_cached_bytes` (see [`Catalog::eviction_candidates`]);
    /// returns the digests evicted, which this node no longer holds. Pinned
    /// artifacts are never evicted.
    ///
    /// Each artifact's row goes first, then its file: a crash in between leaves an
    /// orphan file (harmless, content-addressed) rather than a row pointing at
    /// nothing. An artifact pinned since the candidates were chosen, or recorded
    /// again right after its row was forgotten, is skipped and kept. A
    /// file that cannot be deleted is logged and left as an orphan; its artifact
    /// still counts as evicted.
    pub fn evict(&self, max_cached_bytes: u64) -> Result<Vec<Digest>> {
        let mut evicted = Vec::new();
        for (digest, size) in self.catalog.eviction_candidates(max_cached_bytes)? {
            match self.catalog.forget_artifact(&digest) {
                Ok(()) => {}
                Err(Error::Pinned(_)) => continue,
                Err(error) => return Err(error),
            }
            if self.catalog.has_artifact(&digest)? {
                // Recorded again since it was forgotten (a concurrent download): keep it.
                continue;
            }
            if let Err(error) = self.artifacts.remove(&digest) {
                tracing::warn!(%digest, %error, "could not delete an evicted artifact file; left as an orphan");
            }
            tracing::info!(%digest, size, "evicted a cached artifact");
            evicted.push(digest);
        }
        Ok(evicted)
    }

    /// The manifest of `name@version` and the verified path of its artifact;
    /// `Ok(None)` when the version is unknown, `Ok(Some((manifest, None)))` when
    /// the artifact is not held here.
    pub fn artifact(&self, name: &PackageName, version: &Version) -> Result<Option<(SignedManifest, Option<PathBuf>)>> {
        let Some(manifest) = self.catalog.manifest(name, version)? else { return Ok(None) };
        let path = self.artifacts.verified_path(&manifest.manifest().artifact)?;
        Ok(Some((manifest, path)))
    }
}
