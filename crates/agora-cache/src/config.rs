//! How big the caches are and how long entries live.

use std::time::Duration;

/// Sizes and lifetimes of a [`CachedRegistry`](crate::CachedRegistry)'s caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most entries *each* cache (indexes, manifests, searches) holds. Beyond it the
    /// least useful entries are evicted.
    pub max_entries: u64,
    /// How long a package index or manifest stays cached. Indexes are also dropped
    /// as soon as this registry publishes or yanks the package, or
    /// [`invalidate_package`](crate::CachedRegistry::invalidate_package) is called,
    /// so the TTL only bounds staleness caused by writers the cache never hears of.
    pub entry_ttl: Duration,
    /// How long a search result stays cached. Kept short: any publish anywhere may
    /// change any search.
    pub search_ttl: Duration,
}

impl CacheConfig {
    /// Default for [`max_entries`](Self::max_entries).
    pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
    /// Default for [`entry_ttl`](Self::entry_ttl): ten minutes.
    pub const DEFAULT_ENTRY_TTL: Duration = Duration::from_secs(10 * 60);
    /// Default for [`search_ttl`](Self::search_ttl): thirty seconds.
    pub const DEFAULT_SEARCH_TTL: Duration = Duration::from_secs(30);
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            entry_ttl: Self::DEFAULT_ENTRY_TTL,
            search_ttl: Self::DEFAULT_SEARCH_TTL,
        }
    }
}
