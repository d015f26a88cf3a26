//! Hit and miss counts.
//!
//! The counts are kept here, in plain atomics bumped on the lookup path, rather
//! than read from moka: moka applies its bookkeeping lazily (pending maintenance
//! tasks), so its own numbers can lag behind what callers observed.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hits and misses of one kind of lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitMiss {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the inner registry (whether or not it succeeded).
    pub misses: u64,
}

impl HitMiss {
    /// All lookups: hits plus misses.
    pub fn lookups(&self) -> u64 {
        self.hits + self.misses
    }
}

/// Hit and miss counts of a [`CachedRegistry`](crate::CachedRegistry), per kind of
/// lookup, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get_package` lookups (signed indexes).
    pub package: HitMiss,
    /// `get_version` lookups (signed manifests).
    pub version: HitMiss,
    /// `search` lookups.
    pub search: HitMiss,
}

impl CacheStats {
    /// The three kinds added up.
    pub fn total(&self) -> HitMiss {
        HitMiss {
            hits: self.package.hits + self.version.hits + self.search.hits,
            misses: self.package.misses + self.version.misses + self.search.misses,
        }
    }
}

/// One kind's live counters.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counter {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HitMiss {
        HitMiss { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }
}

/// All live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) package: Counter,
    pub(crate) version: Counter,
    pub(crate) search: Counter,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            package: self.package.snapshot(),
            version: self.version.snapshot(),
            search: self.search.snapshot(),
        }
    }
}
