//! Tests of the caching behaviour against a call-counting in-memory backend that
//! holds real signed data.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_core::{
    ArtifactData, ArtifactInfo, ArtifactReader, Error, IndexChange, PackageMetadata, PackageName, Publication,
    Publisher, Query, Registry, RegistryMetadata, Result, SearchHit, SearchResults, SecretKey, SignedManifest,
    SignedPackageIndex, Version, VersionEntry,
};
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::cached::Stamped;
use crate::{CacheConfig, CacheStats, CachedRegistry, HitMiss};

const NOW: u64 = 1_700_000_000;

/// How often each inner method was called.
#[derive(Default)]
struct Calls {
    publish: AtomicUsize,
    get_package: AtomicUsize,
    get_version: AtomicUsize,
    list_versions: AtomicUsize,
    search: AtomicUsize,
    fetch_artifact: AtomicUsize,
    yank: AtomicUsize,
    metadata: AtomicUsize,
}

fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::SeqCst);
}

#[derive(Default)]
struct State {
    indexes: HashMap<PackageName, SignedPackageIndex>,
    manifests: HashMap<(PackageName, Version), SignedManifest>,
}

/// Pauses one `get_package` after it has read the index and before it returns.
struct Gate {
    reached: oneshot::Sender<()>,
    resume: oneshot::Receiver<()>,
}

/// An in-memory backend that checks what it stores and counts calls.
#[derive(Default)]
struct Mock {
    state: Mutex<State>,
    calls: Calls,
    partial: AtomicBool,
    gate: Mutex<Option<Gate>>,
}

impl Mock {
    /// Replaces an index without going through any cache, as a network layer would.
    fn put_index_directly(&self, index: SignedPackageIndex) {
        let name = index.index().name.clone();
        self.state.lock().unwrap().indexes.insert(name, index);
    }

    /// Makes the next `get_package` pause; returns (reached, resume).
    fn arm_gate(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.gate.lock().unwrap() = Some(Gate { reached: reached_tx, resume: resume_rx });
        (reached_rx, resume_tx)
    }
}

#[async_trait]
impl Registry for Mock {
    async fn publish(&self, publication: Publication) -> Result<()> {
        bump(&self.calls.publish);
        let mut state = self.state.lock().unwrap();
        let name = publication.manifest.manifest().name().clone();
        let current = state.indexes.get(&name).map(SignedPackageIndex::index);
        Publication::check(&publication.manifest, &publication.index, current)?;
        let version = publication.manifest.manifest().version().clone();
        state.manifests.insert((name.clone(), version), publication.manifest);
        state.indexes.insert(name, publication.index);
        Ok(())
    }

    async fn get_package(&self, name: &PackageName) -> Result<SignedPackageIndex> {
        bump(&self.calls.get_package);
        let found = self.state.lock().unwrap().indexes.get(name).cloned();
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.reached.send(()).unwrap();
            gate.resume.await.unwrap();
        }
        found.ok_or_else(|| Error::PackageNotFound(name.clone()))
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> Result<SignedManifest> {
        bump(&self.calls.get_version);
        let state = self.state.lock().unwrap();
        state
            .manifests
            .get(&(name.clone(), version.clone()))
            .cloned()
            .ok_or_else(|| Error::VersionNotFound { name: name.clone(), version: version.clone() })
    }

    async fn list_versions(&self, name: &PackageName) -> Result<Vec<VersionEntry>> {
        bump(&self.calls.list_versions);
        let state = self.state.lock().unwrap();
        let index = state.indexes.get(name).ok_or_else(|| Error::PackageNotFound(name.clone()))?;
        Ok(index.index().versions.clone())
    }

    /// Hits: the latest live version of every package whose name contains the text.
    async fn search(&self, query: &Query) -> Result<SearchResults> {
        bump(&self.calls.search);
        query.validate()?;
        let text = query.normalized().text;
        let state = self.state.lock().unwrap();
        let mut hits: Vec<SearchHit> = state
            .indexes
            .values()
            .filter(|index| index.index().name.as_str().contains(&text))
            .filter_map(|index| {
                let latest = index.index().latest()?;
                let manifest = &state.manifests[&(index.index().name.clone(), latest.version.clone())];
                Some(SearchHit::from_manifest(manifest.manifest(), 1.0))
            })
            .collect();
        hits.sort_by(|a, b| a.name.cmp(&b.name));
        let total = hits.len() as u64;
        Ok(SearchResults { hits, total, partial: self.partial.load(Ordering::SeqCst) })
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> Result<ArtifactReader> {
        bump(&self.calls.fetch_artifact);
        Err(Error::ArtifactUnavailable { name: name.clone(), version: version.clone() })
    }

    async fn yank(&self, index: SignedPackageIndex) -> Result<IndexChange> {
        bump(&self.calls.yank);
        index.verify()?;
        let mut state = self.state.lock().unwrap();
        let name = index.index().name.clone();
        let current = state.indexes.get(&name).ok_or_else(|| Error::PackageNotFound(name.clone()))?;
        let change = current.index().check_successor(index.index())?;
        if !change.added.is_empty() {
            return Err(Error::IllegalUpdate { name, reason: "a yank cannot add versions".into() });
        }
        state.indexes.insert(name, index);
        Ok(change)
    }

    async fn metadata(&self) -> Result<RegistryMetadata> {
        bump(&self.calls.metadata);
        let state = self.state.lock().unwrap();
        Ok(RegistryMetadata {
            backend: "mock".into(),
            packages: state.indexes.len() as u64,
            versions: state.manifests.len() as u64,
            ..RegistryMetadata::default()
        })
    }
}

fn name(text: &str) -> PackageName {
    text.parse().unwrap()
}

fn version(text: &str) -> Version {
    text.parse().unwrap()
}

/// A signed publication of `package@ver` on top of `current`.
fn publication(publisher: &Publisher, package: &str, ver: &str, current: Option<&SignedPackageIndex>) -> Publication {
    let metadata = PackageMetadata::new(name(package), version(ver), format!("the {package} package"));
    let content = format!("{package}@{ver}");
    let artifact = ArtifactInfo::compute(content.as_bytes(), ArtifactInfo::MIN_CHUNK_SIZE).unwrap();
    let (manifest, index) = publisher.publish(metadata, artifact, current.map(SignedPackageIndex::index), NOW).unwrap();
    // The mock never reads artifact bytes.
    Publication { manifest, index, artifact: ArtifactData::File(PathBuf::from("unused.tar")) }
}

fn yanked(publisher: &Publisher, current: &SignedPackageIndex, ver: &str, yank: bool) -> SignedPackageIndex {
    publisher.set_yanked(current.index(), &version(ver), yank, NOW + 1).unwrap().unwrap()
}

fn cache() -> CachedRegistry<Mock> {
    CachedRegistry::new(Mock::default(), CacheConfig::default())
}

fn hm(hits: u64, misses: u64) -> HitMiss {
    HitMiss { hits, misses }
}

#[tokio::test]
async fn repeated_reads_hit_the_cache() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let first = publication(&publisher, "demo", "1.0.0", None);
    let (manifest, index) = (first.manifest.clone(), first.index.clone());
    registry.publish(first).await.unwrap();

    for _ in 0..3 {
        assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index);
        assert_eq!(registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap(), manifest);
    }
    // Differently spelled but equal queries share one entry.
    let found = registry.search(&Query::new("  DEMO ")).await.unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(registry.search(&Query::new("demo")).await.unwrap(), found);

    let calls = &registry.inner().calls;
    assert_eq!(count(&calls.get_package), 1);
    assert_eq!(count(&calls.get_version), 1);
    assert_eq!(count(&calls.search), 1);
    let stats = registry.stats();
    assert_eq!(stats, CacheStats { package: hm(2, 1), version: hm(2, 1), search: hm(1, 1) });
    assert_eq!(stats.total(), hm(5, 3));
    assert_eq!(stats.total().lookups(), 8);
}

#[tokio::test]
async fn publish_invalidates_the_index_and_searches() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let first = publication(&publisher, "demo", "1.0.0", None);
    let index1 = first.index.clone();
    registry.publish(first).await.unwrap();
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index1);
    let before = registry.search(&Query::new("demo")).await.unwrap();
    assert_eq!(before.hits[0].version, version("1.0.0"));

    let second = publication(&publisher, "demo", "1.1.0", Some(&index1));
    let index2 = second.index.clone();
    registry.publish(second).await.unwrap();

    let now = registry.get_package(&name("demo")).await.unwrap();
    assert_eq!(now, index2);
    assert!(now.index().entry(&version("1.1.0")).is_some());
    let after = registry.search(&Query::new("demo")).await.unwrap();
    assert_eq!(after.hits[0].version, version("1.1.0"));
    let calls = &registry.inner().calls;
    assert_eq!(count(&calls.get_package), 2);
    assert_eq!(count(&calls.search), 2);
    // Publishing another package also drops searches, but not this index.
    registry.publish(publication(&publisher, "other", "1.0.0", None)).await.unwrap();
    registry.get_package(&name("demo")).await.unwrap();
    assert_eq!(registry.search(&Query::new("")).await.unwrap().hits.len(), 2);
    assert_eq!(count(&calls.get_package), 2);
    assert_eq!(count(&calls.search), 3);
}

#[tokio::test]
async fn yank_invalidates_the_index_and_searches() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let first = publication(&publisher, "demo", "1.0.0", None);
    let index1 = first.index.clone();
    registry.publish(first).await.unwrap();
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index1);
    assert_eq!(registry.search(&Query::new("demo")).await.unwrap().hits.len(), 1);

    let change = registry.yank(yanked(&publisher, &index1, "1.0.0", true)).await.unwrap();
    assert_eq!(change.yanked, vec![version("1.0.0")]);

    let now = registry.get_package(&name("demo")).await.unwrap();
    assert!(now.index().entry(&version("1.0.0")).unwrap().yanked);
    assert!(registry.search(&Query::new("demo")).await.unwrap().hits.is_empty());
    // A failed yank (stale sequence) changes nothing and keeps the cache.
    assert!(registry.yank(yanked(&publisher, &index1, "1.0.0", true)).await.is_err());
    registry.get_package(&name("demo")).await.unwrap();
    assert_eq!(count(&registry.inner().calls.get_package), 2);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let missing = registry.get_package(&name("demo")).await.unwrap_err();
    assert!(missing.is_not_found());
    assert!(registry.get_version(&name("demo"), &version("1.0.0")).await.is_err());
    assert!(registry.search(&Query::new("demo").limit(0)).await.is_err());

    let first = publication(&publisher, "demo", "1.0.0", None);
    let (manifest, index) = (first.manifest.clone(), first.index.clone());
    registry.publish(first).await.unwrap();

    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index);
    assert_eq!(registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap(), manifest);
    assert!(registry.search(&Query::new("demo").limit(0)).await.is_err());
    let calls = &registry.inner().calls;
    assert_eq!(count(&calls.get_package), 2);
    assert_eq!(count(&calls.get_version), 2);
    assert_eq!(count(&calls.search), 2);
    assert_eq!(registry.stats().total(), hm(0, 6));
}

#[tokio::test]
async fn partial_searches_are_not_cached() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    registry.publish(publication(&publisher, "demo", "1.0.0", None)).await.unwrap();
    registry.inner().partial.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(registry.search(&Query::new("demo")).await.unwrap().partial);
    }
    assert_eq!(count(&registry.inner().calls.search), 2);
    // Once complete, the result is cached.
    registry.inner().partial.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(!registry.search(&Query::new("demo")).await.unwrap().partial);
    }
    assert_eq!(count(&registry.inner().calls.search), 3);
    assert_eq!(registry.stats().search, hm(1, 3));
}

/// A lookup that read the pre-yank index, and only finishes after the yank has
/// invalidated the cache, must not leave that index behind.
#[tokio::test]
async fn a_load_racing_a_yank_does_not_cache_the_old_index() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = Arc::new(cache());
    let first = publication(&publisher, "demo", "1.0.0", None);
    let index1 = first.index.clone();
    registry.publish(first).await.unwrap();

    let (reached, resume) = registry.inner().arm_gate();
    let loader = tokio::spawn({
        let registry = Arc::clone(&registry);
        async move { registry.get_package(&name("demo")).await }
    });
    // The loader has read the old index from the backend and is paused.
    reached.await.unwrap();
    let index2 = yanked(&publisher, &index1, "1.0.0", true);
    registry.yank(index2.clone()).await.unwrap();
    resume.send(()).unwrap();
    // It was concurrent with the yank, so the old index is a fine answer for it...
    assert_eq!(loader.await.unwrap().unwrap(), index1);

    // ...but nobody after the yank may see it.
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index2);
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index2);
    assert_eq!(count(&registry.inner().calls.get_package), 2);
    assert_eq!(registry.stats().package, hm(1, 2));
}

/// Covers the window the pre-insert check leaves open: a loader that checked the
/// generation, then inserted after a whole invalidation ran. Its entry carries the
/// old generation and is never served.
#[tokio::test]
async fn an_entry_stamped_before_an_invalidation_is_never_served() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let first = publication(&publisher, "demo", "1.0.0", None);
    let index1 = first.index.clone();
    registry.publish(first).await.unwrap();
    let stale = registry.package_generation(&name("demo")).load(Ordering::SeqCst);

    let index2 = yanked(&publisher, &index1, "1.0.0", true);
    registry.yank(index2.clone()).await.unwrap();
    let entry = Stamped { generation: stale, value: index1.clone() };
    registry.packages.insert(name("demo"), Arc::new(entry)).await;
    let search_stale = Stamped { generation: 0, value: SearchResults::default() };
    registry.searches.insert(Query::new("demo").normalized(), Arc::new(search_stale)).await;

    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index2);
    assert_eq!(registry.search(&Query::new("demo")).await.unwrap().hits.len(), 0);
    assert_eq!(registry.stats().package, hm(0, 1));
    assert_eq!(registry.stats().search, hm(0, 1));
    // The reload replaced the stale entry, so the next lookup hits.
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index2);
    assert_eq!(registry.stats().package, hm(1, 1));
}

#[tokio::test]
async fn writes_that_bypass_the_cache_need_explicit_invalidation() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    let first = publication(&publisher, "demo", "1.0.0", None);
    let index1 = first.index.clone();
    registry.publish(first).await.unwrap();
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index1);
    assert_eq!(registry.search(&Query::new("demo")).await.unwrap().hits.len(), 1);

    let index2 = yanked(&publisher, &index1, "1.0.0", true);
    registry.inner().put_index_directly(index2.clone());
    // The cache cannot know...
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index1);
    assert_eq!(registry.search(&Query::new("demo")).await.unwrap().hits.len(), 1);
    // ...until told.
    registry.invalidate_package(&name("demo")).await;
    registry.invalidate_searches();
    assert_eq!(registry.get_package(&name("demo")).await.unwrap(), index2);
    assert!(registry.search(&Query::new("demo")).await.unwrap().hits.is_empty());
}

#[tokio::test]
async fn a_change_of_owner_makes_cached_manifests_of_the_name_unservable() {
    let (first, second) = (Publisher::new(SecretKey::generate()), Publisher::new(SecretKey::generate()));
    let registry = cache();
    let theirs = publication(&second, "demo", "1.0.0", None);
    registry.publish(publication(&first, "demo", "1.0.0", None)).await.unwrap();
    let cached = registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap();

    // The user trusted another claim: the store now serves its manifests.
    registry.inner().state.lock().unwrap().manifests.insert((name("demo"), version("1.0.0")), theirs.manifest.clone());
    assert_eq!(registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap(), cached, "until told");
    registry.invalidate_versions_now(&name("demo"));
    assert_eq!(registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap(), theirs.manifest);
    assert_eq!(registry.get_version(&name("demo"), &version("1.0.0")).await.unwrap(), theirs.manifest);
}

#[tokio::test]
async fn every_cache_is_bounded() {
    let publisher = Publisher::new(SecretKey::generate());
    let config = CacheConfig { max_entries: 3, ..CacheConfig::default() };
    let registry = CachedRegistry::new(Mock::default(), config);
    let mut current: Option<SignedPackageIndex> = None;
    for minor in 0..10 {
        let ver = format!("1.{minor}.0");
        let next = publication(&publisher, "demo", &ver, current.as_ref());
        current = Some(next.index.clone());
        registry.publish(next).await.unwrap();
        registry.publish(publication(&publisher, &format!("pkg{minor}"), "1.0.0", None)).await.unwrap();
    }
    for minor in 0..10 {
        registry.get_version(&name("demo"), &version(&format!("1.{minor}.0"))).await.unwrap();
        registry.get_package(&name(&format!("pkg{minor}"))).await.unwrap();
        registry.search(&Query::new(format!("pkg{minor}"))).await.unwrap();
    }
    registry.packages.run_pending_tasks().await;
    registry.versions.run_pending_tasks().await;
    registry.searches.run_pending_tasks().await;
    assert!(registry.packages.entry_count() <= 3, "{}", registry.packages.entry_count());
    assert!(registry.versions.entry_count() <= 3, "{}", registry.versions.entry_count());
    assert!(registry.searches.entry_count() <= 3, "{}", registry.searches.entry_count());
    // Our counts do not depend on moka's maintenance.
    assert_eq!(registry.stats().total(), hm(0, 30));
}

#[tokio::test]
async fn other_calls_pass_through() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = cache();
    registry.publish(publication(&publisher, "demo", "1.0.0", None)).await.unwrap();
    for _ in 0..2 {
        assert_eq!(registry.list_versions(&name("demo")).await.unwrap().len(), 1);
        let error = registry.fetch_artifact(&name("demo"), &version("1.0.0")).await.unwrap_err();
        assert!(error.is_not_found());
        assert_eq!(registry.metadata().await.unwrap().packages, 1);
    }
    let calls = &registry.inner().calls;
    assert_eq!(count(&calls.list_versions), 2);
    assert_eq!(count(&calls.fetch_artifact), 2);
    assert_eq!(count(&calls.metadata), 2);
    assert_eq!(count(&calls.publish), 1);
    assert_eq!(count(&calls.yank), 0);
    assert_eq!(registry.stats(), CacheStats::default());
}

/// Readers hammer the index while yanks and unyanks go through; after each write
/// returns, the very next read must show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_a_write_always_see_it_under_contention() {
    let publisher = Publisher::new(SecretKey::generate());
    let registry = Arc::new(cache());
    let first = publication(&publisher, "demo", "1.0.0", None);
    let mut current = first.index.clone();
    registry.publish(first).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, stop) = (Arc::clone(&registry), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    registry.get_package(&name("demo")).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for round in 0..200 {
        let next = yanked(&publisher, &current, "1.0.0", round % 2 == 0);
        registry.yank(next.clone()).await.unwrap();
        assert_eq!(registry.get_package(&name("demo")).await.unwrap(), next, "round {round}");
        current = next;
    }
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
}

#[test]
fn config_defaults_and_debug() {
    let config = CacheConfig::default();
    assert_eq!(config.max_entries, 10_000);
    assert_eq!(config.entry_ttl, Duration::from_secs(600));
    assert_eq!(config.search_ttl, Duration::from_secs(30));
    let registry = CachedRegistry::new(Mock::default(), config.clone());
    assert_eq!(registry.config(), &config);
    let debug = format!("{registry:?}");
    assert!(debug.contains("CachedRegistry") && debug.contains("max_entries"), "{debug}");
}
