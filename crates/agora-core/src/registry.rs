//! The `Registry` trait: the one seam every backend implements.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    ArtifactReader, IndexChange, PackageName, Publication, Query, Result, SearchResults, SignedManifest,
    SignedPackageIndex, Version, VersionEntry,
};

/// Counts a backend reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryMetadata {
    /// Backend name, e.g. `local` or `node`.
    pub backend: String,
    /// Package names known.
    pub packages: u64,
    /// Versions known.
    pub versions: u64,
    /// Artifacts held locally.
    pub artifacts: u64,
    /// Bytes of artifacts held locally.
    pub artifact_bytes: u64,
}

/// A package registry. Implemented by the SQLite-only `LocalRegistry`, the P2P
/// `Node`, the caching `CachedRegistry<R>`, and any user type.
///
/// Every method validates what it is given and what it returns: a backend never
/// stores or hands out a manifest or index whose signature it has not checked.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Adds a new version. Fails, changing nothing, unless
    /// [`Publication::check`] passes against the current index and the artifact
    /// matches the manifest.
    async fn publish(&self, publication: Publication) -> Result<()>;

    /// The signed index of `name`.
    async fn get_package(&self, name: &PackageName) -> Result<SignedPackageIndex>;

    /// The signed manifest of one version.
    async fn get_version(&self, name: &PackageName, version: &Version) -> Result<SignedManifest>;

    /// All versions of `name`, ascending.
    async fn list_versions(&self, name: &PackageName) -> Result<Vec<VersionEntry>>;

    /// Searches the catalog.
    async fn search(&self, query: &Query) -> Result<SearchResults>;

    /// The artifact of one version, as a reader that verifies every chunk
    /// against the manifest as it is read (a mismatch is an `InvalidData` read
    /// error) and keeps the backend's copy alive until it is dropped.
    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<ArtifactReader>;

    /// Applies an owner-signed index update that only yanks or unyanks versions.
    async fn yank(&self, index: SignedPackageIndex) -> Result<IndexChange>;

    /// Counts about this backend.
    async fn metadata(&self) -> Result<RegistryMetadata>;
}

#[async_trait]
impl<R: Registry + ?Sized> Registry for Arc<R> {
    async fn publish(&self, publication: Publication) -> Result<()> {
        (**self).publish(publication).await
    }

    async fn get_package(&self, name: &PackageName) -> Result<SignedPackageIndex> {
        (**self).get_package(name).await
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> Result<SignedManifest> {
        (**self).get_version(name, version).await
    }

    async fn list_versions(&self, name: &PackageName) -> Result<Vec<VersionEntry>> {
        (**self).list_versions(name).await
    }

    async fn search(&self, query: &Query) -> Result<SearchResults> {
        (**self).search(query).await
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<ArtifactReader> {
        (**self).fetch_artifact(name, version).await
    }

    async fn yank(&self, index: SignedPackageIndex) -> Result<IndexChange> {
        (**self).yank(index).await
    }

    async fn metadata(&self) -> Result<RegistryMetadata> {
        (**self).metadata().await
    }
}
