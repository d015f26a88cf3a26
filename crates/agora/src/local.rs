//! [`LocalRegistry`]: the SQLite store as a [`Registry`], offline.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agora_core::{
    Artifact, ArtifactData, Error as CoreError, IndexChange, PackageName, Publication, Query, Registry,
    RegistryMetadata, Result as CoreResult, SearchResults, SignedManifest, SignedPackageIndex, Version, VersionEntry,
};
use agora_store::Store;
use async_trait::async_trait;

/// The store as a registry: everything this node holds, nothing from the network.
/// SQLite and file work runs on tokio's blocking pool, never on a runtime worker.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    store: Store,
    max_artifact_size: u64,
}

impl LocalRegistry {
    /// A registry over `store`, refusing artifacts over `max_artifact_size` bytes.
    pub fn new(store: Store, max_artifact_size: u64) -> Self {
        Self { store, max_artifact_size }
    }

    /// Opens the store under `dir` with the default artifact limit.
    pub fn open(dir: &Path) -> crate::Result<Self> {
        Ok(Self::new(Store::open(dir)?, crate::Config::default().max_artifact_size))
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The artifact size limit in bytes.
    pub fn max_artifact_size(&self) -> u64 {
        self.max_artifact_size
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> agora_store::Result<T> + Send + 'static,
    ) -> CoreResult<T> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(result) => result.map_err(CoreError::from),
            Err(error) => Err(CoreError::Storage(format!("store task failed: {error}"))),
        }
    }
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

#[async_trait]
impl Registry for LocalRegistry {
    async fn publish(&self, publication: Publication) -> CoreResult<()> {
        let size = publication.manifest.manifest().artifact.size;
        if size > self.max_artifact_size {
            return Err(CoreError::ArtifactTooLarge { size, limit: self.max_artifact_size });
        }
        if let ArtifactData::Bytes(bytes) = &publication.artifact
            && bytes.len() as u64 > self.max_artifact_size
        {
            return Err(CoreError::ArtifactTooLarge { size: bytes.len() as u64, limit: self.max_artifact_size });
        }
        self.blocking(move |store| store.publish(&publication, unix_now())).await
    }

    async fn get_package(&self, name: &PackageName) -> CoreResult<SignedPackageIndex> {
        let key = name.clone();
        self.blocking(move |store| store.catalog().package(&key))
            .await?
            .ok_or_else(|| CoreError::PackageNotFound(name.clone()))
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> CoreResult<SignedManifest> {
        let (key, wanted) = (name.clone(), version.clone());
        match self.blocking(move |store| store.catalog().manifest(&key, &wanted)).await? {
            Some(manifest) => Ok(manifest),
            None => {
                // Say which of the two is missing.
                self.get_package(name).await?;
                Err(CoreError::VersionNotFound { name: name.clone(), version: version.clone() })
            }
        }
    }

    async fn list_versions(&self, name: &PackageName) -> CoreResult<Vec<VersionEntry>> {
        Ok(self.get_package(name).await?.into_index().versions)
    }

    async fn search(&self, query: &Query) -> CoreResult<SearchResults> {
        query.validate()?;
        let query = query.clone();
        self.blocking(move |store| store.catalog().search(&query)).await
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> CoreResult<Artifact> {
        let (key, wanted) = (name.clone(), version.clone());
        match self.blocking(move |store| store.artifact(&key, &wanted)).await? {
            Some((manifest, Some(path))) => Ok(Artifact { manifest, data: ArtifactData::File(path) }),
            Some((_, None)) => Err(CoreError::ArtifactUnavailable { name: name.clone(), version: version.clone() }),
            None => {
                self.get_package(name).await?;
                Err(CoreError::VersionNotFound { name: name.clone(), version: version.clone() })
            }
        }
    }

    async fn yank(&self, index: SignedPackageIndex) -> CoreResult<IndexChange> {
        self.blocking(move |store| store.catalog().apply_yank(&index)).await
    }

    async fn metadata(&self) -> CoreResult<RegistryMetadata> {
        let stats = self.blocking(|store| store.catalog().stats()).await?;
        Ok(RegistryMetadata {
            backend: "local".into(),
            packages: stats.packages,
            versions: stats.versions,
            artifacts: stats.artifacts,
            artifact_bytes: stats.artifact_bytes,
        })
    }
}
