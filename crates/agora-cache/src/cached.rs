//! [`CachedRegistry`]: the read-through cache itself.
//!
//! # Staleness and the stale-insert race
//!
//! Package indexes and search results change when a package is published or
//! yanked, so their entries must never outlive an invalidation. The hard case is a
//! lookup that misses, reads the *old* value from the inner registry, and only
//! inserts it after a concurrent publish has already invalidated the key: a naive
//! cache would then serve the pre-publish value until the TTL runs out.
//!
//! Generation counters close that race:
//!
//! * Every invalidation first bumps a generation counter (`SeqCst`), and only then
//!   removes the entry from moka. Package names are spread over `STRIPES`
//!   counters by hash, so a publish of one name rarely touches the others;
//!   searches share one counter.
//! * A lookup reads the generation *before* it looks in the cache or loads from
//!   the inner registry. A loaded value is stamped with that generation, and is
//!   only inserted if the generation is still the same after loading.
//! * A cached value is only served if its stamp equals the generation the lookup
//!   just read. This also covers the window the pre-insert check leaves open (the
//!   loader checks, is descheduled while a whole invalidation runs, then inserts):
//!   such an entry carries an old stamp and is treated as a miss.
//!
//! Why that suffices: a stamp equal to the current generation was read after every
//! invalidation that has completed, and each invalidation bumps the counter only
//! after the inner registry's write succeeded, so the load that produced the value
//! started after that write and saw it. Values loaded before a completed write carry
//! an older stamp and are never served again. The bump happens in the same poll as
//! the inner write's completion, so cancelling `publish`/`yank` cannot skip it.
//!
//! Manifests use the same scheme with counters of their own: a published version
//! is immutable under one owner, so they are only invalidated when the owner a
//! node serves for a name changes (the user trusted another claim to it,
//! [`CachedRegistry::invalidate_versions_now`]). Errors (such as "not found")
//! are never cached.

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agora_core::{
    ArtifactReader, IndexChange, PackageName, Publication, Query, Registry, RegistryMetadata, Result, SearchResults,
    SignedManifest, SignedPackageIndex, Version, VersionEntry,
};
use async_trait::async_trait;
use moka::future::Cache;

use crate::stats::Counters;
use crate::{CacheConfig, CacheStats};

/// How many generation counters package names are spread over.
const STRIPES: usize = 64;

/// The generation stripe of `name`.
fn stripe(name: &PackageName) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(name);
    // The remainder is below STRIPES, so it fits in usize.
    (hash % STRIPES as u64) as usize
}

/// A cached value and the generation it was loaded under.
#[derive(Debug)]
pub(crate) struct Stamped<V> {
    pub(crate) generation: u64,
    pub(crate) value: V,
}

/// A [`Registry`] that answers repeated reads from memory and forwards everything
/// else to the registry it wraps.
///
/// Cached, only when the inner registry succeeded:
///
/// * [`get_package`](Registry::get_package), by name, until the package is
///   published or yanked through this registry, [`invalidate_package`] is called,
///   or [`CacheConfig::entry_ttl`] passes;
/// * [`get_version`](Registry::get_version), by name and version, until
///   [`invalidate_versions_now`] is called (the owner served for the name
///   changed) or [`CacheConfig::entry_ttl`] passes (an owner's published
///   manifests never change);
/// * [`search`](Registry::search), by [`Query::normalized`], unless the result is
///   `partial`, until anything is published or yanked through this registry,
///   [`invalidate_searches`] is called, or [`CacheConfig::search_ttl`] passes.
///
/// `list_versions`, `fetch_artifact` and `metadata` always go to the inner registry.
/// Each cache holds at most [`CacheConfig::max_entries`] entries.
///
/// [`invalidate_package`]: CachedRegistry::invalidate_package
/// [`invalidate_searches`]: CachedRegistry::invalidate_searches
/// [`invalidate_versions_now`]: CachedRegistry::invalidate_versions_now
pub struct CachedRegistry<R> {
    inner: R,
    config: CacheConfig,
    pub(crate) packages: Cache<PackageName, Arc<Stamped<SignedPackageIndex>>>,
    pub(crate) versions: Cache<(PackageName, Version), Arc<Stamped<SignedManifest>>>,
    pub(crate) searches: Cache<Query, Arc<Stamped<SearchResults>>>,
    /// Generations of package indexes, one per stripe of names.
    package_generations: [AtomicU64; STRIPES],
    /// Generations of manifests, one per stripe of names.
    version_generations: [AtomicU64; STRIPES],
    /// Generation of all search results.
    search_generation: AtomicU64,
    counters: Counters,
}

impl<R: Registry> CachedRegistry<R> {
    /// Wraps `inner` with caches sized and timed by `config`.
    pub fn new(inner: R, config: CacheConfig) -> Self {
        let packages = Cache::builder().max_capacity(config.max_entries).time_to_live(config.entry_ttl).build();
        let versions = Cache::builder().max_capacity(config.max_entries).time_to_live(config.entry_ttl).build();
        let searches = Cache::builder().max_capacity(config.max_entries).time_to_live(config.search_ttl).build();
        Self {
            inner,
            config,
            packages,
            versions,
            searches,
            package_generations: std::array::from_fn(|_| AtomicU64::new(0)),
            version_generations: std::array::from_fn(|_| AtomicU64::new(0)),
            search_generation: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// The wrapped registry. Writes made directly through it bypass the cache; call
    /// [`invalidate_package`](Self::invalidate_package) and
    /// [`invalidate_searches`](Self::invalidate_searches) after them.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The configuration the caches were built with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Hit and miss counts so far. Exact: they count what callers got, and do not
    /// depend on moka's deferred maintenance.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    /// Forgets the cached index of `name`, for writers that change the inner
    /// registry without going through this one. Once this returns, no lookup serves
    /// an index loaded before it was called.
    pub async fn invalidate_package(&self, name: &PackageName) {
        // The bump is what makes old values unservable; the removal only frees memory.
        self.invalidate_package_now(name);
        self.packages.invalidate(name).await;
    }

    /// Makes the cached index of `name` unservable at once, without waiting: for
    /// observers of the inner registry's changes, which cannot await. The stale
    /// entry is replaced by the next load (or expires), so memory stays bounded
    /// by `max_entries`. Once this returns, no lookup serves an index loaded
    /// before it was called.
    pub fn invalidate_package_now(&self, name: &PackageName) {
        self.package_generation(name).fetch_add(1, Ordering::SeqCst);
    }

    /// Makes every cached manifest of `name` unservable at once: for observers of
    /// the inner registry that saw the owner served for `name` change (its
    /// versions may now be another owner's). Once this returns, no lookup serves
    /// a manifest of `name` loaded before it was called.
    pub fn invalidate_versions_now(&self, name: &PackageName) {
        self.version_generation(name).fetch_add(1, Ordering::SeqCst);
    }

    /// Forgets every cached search result, for writers that change the inner
    /// registry without going through this one. Once this returns, no lookup serves
    /// a result loaded before it was called.
    pub fn invalidate_searches(&self) {
        self.search_generation.fetch_add(1, Ordering::SeqCst);
        self.searches.invalidate_all();
    }

    /// The generation counter of `name`'s stripe.
    pub(crate) fn package_generation(&self, name: &PackageName) -> &AtomicU64 {
        &self.package_generations[stripe(name)]
    }

    fn version_generation(&self, name: &PackageName) -> &AtomicU64 {
        &self.version_generations[stripe(name)]
    }

    /// Invalidates what a successful write to `name` may have changed. Both
    /// generation bumps happen before the first await.
    async fn written(&self, name: &PackageName) {
        self.invalidate_searches();
        self.invalidate_package(name).await;
    }
}

impl<R> fmt::Debug for CachedRegistry<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedRegistry")
            .field("config", &self.config)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<R: Registry> Registry for CachedRegistry<R> {
    async fn publish(&self, publication: Publication) -> Result<()> {
        let name = publication.index.index().name.clone();
        self.inner.publish(publication).await?;
        self.written(&name).await;
        Ok(())
    }

    async fn get_package(&self, name: &PackageName) -> Result<SignedPackageIndex> {
        let generation = self.package_generation(name);
        let seen = generation.load(Ordering::SeqCst);
        if let Some(entry) = self.packages.get(name).await
            && entry.generation == seen
        {
            self.counters.package.hit();
            return Ok(entry.value.clone());
        }
        self.counters.package.miss();
        let index = self.inner.get_package(name).await?;
        if generation.load(Ordering::SeqCst) == seen {
            let entry = Stamped { generation: seen, value: index.clone() };
            self.packages.insert(name.clone(), Arc::new(entry)).await;
        }
        Ok(index)
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> Result<SignedManifest> {
        let key = (name.clone(), version.clone());
        let seen = self.version_generation(name).load(Ordering::SeqCst);
        if let Some(entry) = self.versions.get(&key).await
            && entry.generation == seen
        {
            self.counters.version.hit();
            return Ok(entry.value.clone());
        }
        self.counters.version.miss();
        let manifest = self.inner.get_version(name, version).await?;
        if self.version_generation(name).load(Ordering::SeqCst) == seen {
            self.versions.insert(key, Arc::new(Stamped { generation: seen, value: manifest.clone() })).await;
        }
        Ok(manifest)
    }

    async fn list_versions(&self, name: &PackageName) -> Result<Vec<VersionEntry>> {
        self.inner.list_versions(name).await
    }

    async fn search(&self, query: &Query) -> Result<SearchResults> {
        let key = query.normalized();
        let seen = self.search_generation.load(Ordering::SeqCst);
        if let Some(entry) = self.searches.get(&key).await
            && entry.generation == seen
        {
            self.counters.search.hit();
            return Ok(entry.value.clone());
        }
        self.counters.search.miss();
        let results = self.inner.search(query).await?;
        if !results.partial && self.search_generation.load(Ordering::SeqCst) == seen {
            let entry = Stamped { generation: seen, value: results.clone() };
            self.searches.insert(key, Arc::new(entry)).await;
        }
        Ok(results)
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<ArtifactReader> {
        self.inner.fetch_artifact(name, version).await
    }

    async fn yank(&self, index: SignedPackageIndex) -> Result<IndexChange> {
        let name = index.index().name.clone();
        let change = self.inner.yank(index).await?;
        self.written(&name).await;
        Ok(change)
    }

    async fn metadata(&self) -> Result<RegistryMetadata> {
        self.inner.metadata().await
    }
}
