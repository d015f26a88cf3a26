//! [`LocalRegistry`]: the SQLite store as a [`Registry`], offline. Artifacts
//! are handed out as readers over the store's files that verify every chunk as
//! it is read and hold a lease the store's eviction respects; never as paths.

use std::path::Path;
use std::sync::Arc;

use agora_core::{
    ArtifactData, ArtifactReader, Error as CoreError, IndexChange, PackageName, Publication, Query, Registry,
    RegistryMetadata, Result as CoreResult, SearchResults, SignedManifest, SignedPackageIndex, Version, VersionEntry,
};
use agora_store::Store;
use async_trait::async_trait;
use futures::io::AsyncRead;
use futures::stream::TryStreamExt;

use crate::clock::{Clock, SystemClock};

/// The store as a registry: everything this node holds, nothing from the network.
/// SQLite and file work runs on tokio's blocking pool, never on a runtime worker.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    store: Store,
    max_artifact_size: u64,
    clock: Arc<dyn Clock>,
}

impl LocalRegistry {
    /// A registry over `store`, refusing artifacts over `max_artifact_size` bytes.
    pub fn new(store: Store, max_artifact_size: u64) -> Self {
        Self::with_clock(store, max_artifact_size, Arc::new(SystemClock))
    }

    /// [`LocalRegistry::new`] with the time of publications from `clock`.
    pub fn with_clock(store: Store, max_artifact_size: u64, clock: Arc<dyn Clock>) -> Self {
        Self { store, max_artifact_size, clock }
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
        crate::blocking::run(move || work(&store)).await
    }
}

/// The store's (blocking, chunk-verifying, leased) reader as an `AsyncRead`:
/// each chunk is read and verified on the blocking pool. A chunk that fails
/// verification ends the read with `InvalidData` carrying the registry error.
fn async_reader(reader: agora_store::ArtifactReader) -> impl AsyncRead + Send + 'static {
    let chunks = futures::stream::try_unfold(Some(reader), |state| async move {
        let Some(mut reader) = state else { return Ok(None) };
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = reader.next_chunk();
            (reader, chunk)
        })
        .await
        .map_err(std::io::Error::other)?;
        match chunk {
            Ok(Some(bytes)) => Ok(Some((bytes, Some(reader)))),
            Ok(None) => Ok(None),
            Err(agora_store::Error::Core(error)) => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
            Err(error) => Err(std::io::Error::other(error)),
        }
    });
    Box::pin(chunks).into_async_read()
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
        let now = self.clock.unix_now();
        self.blocking(move |store| store.publish(&publication, now)).await
    }

    async fn get_package(&self, name: &PackageName) -> CoreResult<SignedPackageIndex> {
        let key = name.clone();
        self.blocking(move |store| store.packages().package(&key))
            .await?
            .ok_or_else(|| CoreError::PackageNotFound(name.clone()))
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> CoreResult<SignedManifest> {
        let (key, wanted) = (name.clone(), version.clone());
        match self.blocking(move |store| store.packages().manifest(&key, &wanted)).await? {
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
        self.blocking(move |store| store.packages().search(&query)).await
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> CoreResult<ArtifactReader> {
        let (key, wanted) = (name.clone(), version.clone());
        match self.blocking(move |store| store.open_artifact(&key, &wanted)).await? {
            Some((manifest, Some(reader))) => Ok(ArtifactReader::new(manifest, async_reader(reader))),
            Some((_, None)) => Err(CoreError::ArtifactUnavailable { name: name.clone(), version: version.clone() }),
            None => {
                self.get_package(name).await?;
                Err(CoreError::VersionNotFound { name: name.clone(), version: version.clone() })
            }
        }
    }

    async fn yank(&self, index: SignedPackageIndex) -> CoreResult<IndexChange> {
        self.blocking(move |store| store.packages().apply_yank(&index)).await
    }

    async fn metadata(&self) -> CoreResult<RegistryMetadata> {
        let stats = self.blocking(|store| store.packages().stats()).await?;
        Ok(RegistryMetadata {
            backend: "local".into(),
            packages: stats.packages,
            versions: stats.versions,
            artifacts: stats.artifacts,
            artifact_bytes: stats.artifact_bytes,
        })
    }
}
