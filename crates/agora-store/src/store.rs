//! [`Store`]: a catalog and an artifact directory under one data directory, and
//! the publish operation that needs both.

use std::path::{Path, PathBuf};

use agora_core::{PackageName, Publication, SignedManifest, Version};

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

    /// The manifest of `name@version` and the verified path of its artifact;
    /// `Ok(None)` when the version is unknown, `Ok(Some((manifest, None)))` when
    /// the artifact is not held here.
    pub fn artifact(&self, name: &PackageName, version: &Version) -> Result<Option<(SignedManifest, Option<PathBuf>)>> {
        let Some(manifest) = self.catalog.manifest(name, version)? else { return Ok(None) };
        let path = self.artifacts.verified_path(&manifest.manifest().artifact)?;
        Ok(Some((manifest, path)))
    }
}
