//! The `Registry` trait: the one seam every backend implements.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    IndexChange, PackageName, Publication, Query, Result, SearchResults, SignedManifest, SignedPackageIndex, Version,
    VersionEntry,
};

/// Where artifact bytes are. Backends choose; large artifacts stay in files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactData {
    /// The bytes, in memory.
    Bytes(Bytes),
    /// A file holding the bytes. For artifacts returned by a registry the file is
    /// the registry's own verified copy: read it, do not move or change it.
    File(PathBuf),
}

/// A fetched artifact with the manifest it was verified against.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The version's manifest.
    pub manifest: SignedManifest,
    /// The verified bytes.
    pub data: ArtifactData,
}

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

    /// The artifact of one version, verified against its manifest.
    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<Artifact>;

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

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<Artifact> {
        (**self).fetch_artifact(name, version).await
    }

    async fn yank(&self, index: SignedPackageIndex) -> Result<IndexChange> {
        (**self).yank(index).await
    }

    async fn metadata(&self) -> Result<RegistryMetadata> {
        (**self).metadata().await
    }
}
