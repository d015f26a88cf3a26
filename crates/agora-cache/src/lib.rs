//! A bounded, in-memory read-through cache for Agora registries.
//!
//! [`CachedRegistry`] wraps any [`Registry`](agora_core::Registry) and is itself a
//! `Registry`, so it slots in front of the SQLite `LocalRegistry`, the P2P `Node`,
//! or any other backend without callers noticing. It keeps signed package indexes,
//! signed manifests and search results in [moka](https://docs.rs/moka) caches, each
//! bounded in size and lifetime, and drops indexes and searches the moment a
//! publish or yank goes through it. Errors and partial search results are never
//! cached. [`CachedRegistry::stats`] reports exact hit and miss counts.
//!
//! What it deliberately is **not**:
//!
//! * not an artifact store: `fetch_artifact` always goes to the inner registry,
//!   which owns artifact bytes and files;
//! * not a network layer: it never talks to peers, and it cannot know about writes
//!   that bypass it. Whoever writes to the inner registry directly (for example
//!   records arriving from the network) must call
//!   [`CachedRegistry::invalidate_package`] (or, from code that cannot await,
//!   [`CachedRegistry::invalidate_package_now`]) and
//!   [`CachedRegistry::invalidate_searches`]; the `agora` node does it in one
//!   place, an observer of its store's change events;
//! * not persistent: everything lives in memory and is lost on restart;
//! * not a second line of validation: what it serves is exactly what the inner
//!   registry returned, which the inner registry has already verified.
//!
//! # Example
//!
//! ```
//! use agora_cache::{CacheConfig, CachedRegistry};
//! use agora_core::{
//!     ArtifactInfo, ArtifactReader, Error, IndexChange, PackageMetadata, PackageName, Publication,
//!     Publisher, Query, Registry, RegistryMetadata, Result, SearchResults, SecretKey,
//!     SignedManifest, SignedPackageIndex, Version, VersionEntry,
//! };
//!
//! /// A toy backend serving one signed index; everything else is an error.
//! struct OneIndex(SignedPackageIndex);
//!
//! #[async_trait::async_trait]
//! impl Registry for OneIndex {
//!     async fn get_package(&self, name: &PackageName) -> Result<SignedPackageIndex> {
//!         if name == &self.0.index().name {
//!             Ok(self.0.clone())
//!         } else {
//!             Err(Error::PackageNotFound(name.clone()))
//!         }
//!     }
//! #   async fn publish(&self, _: Publication) -> Result<()> {
//! #       Err(Error::InvalidQuery("read-only".into()))
//! #   }
//! #   async fn get_version(&self, name: &PackageName, version: &Version) -> Result<SignedManifest> {
//! #       Err(Error::VersionNotFound { name: name.clone(), version: version.clone() })
//! #   }
//! #   async fn list_versions(&self, _: &PackageName) -> Result<Vec<VersionEntry>> {
//! #       Ok(self.0.index().versions.clone())
//! #   }
//! #   async fn search(&self, _: &Query) -> Result<SearchResults> {
//! #       Ok(SearchResults::default())
//! #   }
//! #   async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<ArtifactReader> {
//! #       Err(Error::ArtifactUnavailable { name: name.clone(), version: version.clone() })
//! #   }
//! #   async fn yank(&self, _: SignedPackageIndex) -> Result<IndexChange> {
//! #       Err(Error::InvalidQuery("read-only".into()))
//! #   }
//! #   async fn metadata(&self) -> Result<RegistryMetadata> {
//! #       Ok(RegistryMetadata::default())
//! #   }
//!     // ... the other seven methods return errors or defaults ...
//! }
//!
//! # fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::new(SecretKey::generate());
//! let name: PackageName = "hello-world".parse()?;
//! let metadata = PackageMetadata::new(name.clone(), "1.0.0".parse()?, "prints a greeting");
//! let artifact = ArtifactInfo::compute(b"tarball bytes", ArtifactInfo::DEFAULT_CHUNK_SIZE)?;
//! let (_manifest, index) = publisher.publish(metadata, artifact, None, 1_700_000_000)?;
//!
//! let registry = CachedRegistry::new(OneIndex(index.clone()), CacheConfig::default());
//! let runtime = tokio::runtime::Builder::new_current_thread().build()?;
//! runtime.block_on(async {
//!     // The first lookup misses and asks the inner registry...
//!     assert_eq!(registry.get_package(&name).await?, index);
//!     // ...the second is answered from memory.
//!     assert_eq!(registry.get_package(&name).await?, index);
//!     let stats = registry.stats();
//!     assert_eq!((stats.package.hits, stats.package.misses), (1, 1));
//!
//!     // Errors are passed through and never cached.
//!     assert!(registry.get_package(&"nope".parse()?).await.is_err());
//!     assert_eq!(registry.stats().total().misses, 2);
//!     Ok::<(), Error>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod cached;
mod config;
mod stats;
#[cfg(test)]
mod tests;

pub use cached::CachedRegistry;
pub use config::CacheConfig;
pub use stats::{CacheStats, HitMiss};
