//! [`Store`]: a node's data directory, and the handles to its parts, built once
//! over one database and shared: [`Packages`], [`Artifacts`], [`Peers`] and
//! [`Storage`]. Also the operations that need more than one of them: publish
//! (package rows and the artifact file) and opening a version's artifact.
//!
//! Not here: any rule or SQL of its own; each handle owns its tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_core::{PackageName, Publication, SignedManifest, Version};

use crate::artifacts::Artifacts;
use crate::changes::{CatalogObserver, Observers};
use crate::db::Database;
use crate::packages::Packages;
use crate::peers::Peers;
use crate::reader::ArtifactReader;
use crate::storage::Storage;
use crate::{Error, Result};

/// A node's storage: `<dir>/catalog.sqlite` and `<dir>/artifacts/`. Cheap to
/// clone; all clones (and all handles) share the connections and the directory.
///
/// Methods block on SQLite and the file system: call them from a blocking thread
/// (`tokio::task::spawn_blocking`), not from an async task.
#[derive(Debug, Clone)]
pub struct Store {
    packages: Packages,
    artifacts: Artifacts,
    peers: Peers,
    storage: Storage,
}

impl Store {
    /// Most observers [`Store::subscribe`] keeps.
    pub const MAX_OBSERVERS: usize = Observers::MAX;

    /// Opens (creating and migrating as needed) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let database = Arc::new(Database::open(&dir.join("catalog.sqlite"))?);
        let artifacts = Artifacts::new(&dir.join("artifacts"), database.clone(), None)?;
        Ok(Self::assemble(database, artifacts))
    }

    /// A fresh store with an in-memory database and its artifact files in a
    /// temporary directory (deleted with the last clone), for tests and tools.
    pub fn memory() -> Result<Self> {
        let temp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let root: PathBuf = temp.path().join("artifacts");
        let database = Arc::new(Database::memory()?);
        let artifacts = Artifacts::new(&root, database.clone(), Some(Arc::new(temp)))?;
        Ok(Self::assemble(database, artifacts))
    }

    fn assemble(database: Arc<Database>, artifacts: Artifacts) -> Self {
        Self {
            packages: Packages::new(database.clone()),
            storage: Storage::new(database.clone(), artifacts.clone()),
            peers: Peers::new(database),
            artifacts,
        }
    }

    /// Packages and search.
    pub fn packages(&self) -> &Packages {
        &self.packages
    }

    /// Artifact files and their rows.
    pub fn artifacts(&self) -> &Artifacts {
        &self.artifacts
    }

    /// Peers and their reputation.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The storage policy: pins, usage and eviction.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Adds an observer of catalog changes: from now on, after every committed
    /// write that changed packages or manifests, it is called once with every
    /// package that write changed (see [`CatalogObserver`] for the rules:
    /// observers run inside the write, in commit order, so they must be quick and
    /// must not call back into the store). At most [`Store::MAX_OBSERVERS`]; one
    /// more is [`Error::TooManyObservers`] and is not added.
    pub fn subscribe(&self, observer: Arc<dyn CatalogObserver>) -> Result<()> {
        self.packages.subscribe(observer)
    }

    /// Publishes a new version: checks the publication against the stored index,
    /// writes and verifies the artifact file, then commits the catalog rows. If
    /// anything fails, the catalog is unchanged and a file this call created is
    /// removed again.
    pub fn publish(&self, publication: &Publication, now: u64) -> Result<()> {
        let Publication { manifest, index, artifact } = publication;
        let name = manifest.manifest().name();
        let current = self.packages.package(name)?;
        Publication::check(manifest, index, current.as_ref().map(|current| current.index()))?;
        let info = &manifest.manifest().artifact;
        // Held off eviction from writing the file until the row says it is pinned.
        let _lease = self.artifacts.lease(&info.digest);
        let stored = self.artifacts.put(info, artifact)?;
        crate::crash::point("publish.file_written");
        if let Err(error) = self.packages.publish(manifest, index, now) {
            if stored.created && !self.artifacts.has(&info.digest).unwrap_or(true) {
                let _ = self.artifacts.remove(&info.digest);
            }
            return Err(error);
        }
        crate::crash::point("publish.committed");
        tracing::info!(package = %name, version = %manifest.manifest().version(), digest = %info.digest, "published");
        Ok(())
    }

    /// The manifest of `name@version` and a reader over its artifact (see
    /// [`Artifacts::open`]: verified as it reads, and leased against eviction);
    /// `Ok(None)` when the version is unknown, `Ok(Some((manifest, None)))` when
    /// the artifact is not held here.
    pub fn open_artifact(
        &self,
        name: &PackageName,
        version: &Version,
    ) -> Result<Option<(SignedManifest, Option<ArtifactReader>)>> {
        let Some(manifest) = self.packages.manifest(name, version)? else { return Ok(None) };
        let reader = self.artifacts.open(&manifest.manifest().artifact)?;
        Ok(Some((manifest, reader)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use agora_core::{ArtifactData, ArtifactInfo, PackageMetadata, Publisher, SecretKey};

    use super::*;

    #[test]
    fn a_memory_store_publishes_and_reads_back_until_its_last_clone_goes() {
        let store = Store::memory().unwrap();
        let publisher = Publisher::new(SecretKey::generate());
        let bytes = b"in memory".to_vec();
        let info = ArtifactInfo::compute(&bytes, ArtifactInfo::MIN_CHUNK_SIZE).unwrap();
        let metadata = PackageMetadata::new("demo".parse().unwrap(), "1.0.0".parse().unwrap(), "a demo");
        let (manifest, index) = publisher.publish(metadata, info.clone(), None, 1).unwrap();
        store
            .publish(&Publication { manifest, index, artifact: ArtifactData::Bytes(bytes.clone().into()) }, 1)
            .unwrap();

        let storage = store.storage().clone();
        let path = store.artifacts().path_of(&info.digest);
        let (_, reader) = store.open_artifact(&"demo".parse().unwrap(), &"1.0.0".parse().unwrap()).unwrap().unwrap();
        let mut read = Vec::new();
        reader.unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read, bytes);
        assert_eq!(store.packages().stats().unwrap().versions, 1);

        drop(store);
        assert!(path.exists(), "a handle still uses the files");
        assert_eq!(storage.usage().unwrap().pinned_artifacts, 1);
        drop(storage);
        assert!(!path.exists(), "the temporary directory outlived the store");
    }
}
