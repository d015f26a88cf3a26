//! Local artifact storage policy: which held artifacts are pinned (published or
//! pinned here, kept forever) and which are a cache of downloads that may be
//! evicted, least recently used first, to keep the cache under a byte budget.
//!
//! These functions touch only the `artifacts` rows; [`crate::Store::evict`]
//! deletes the files.

use agora_core::Digest;
use rusqlite::{Connection, Transaction, params};

use crate::{Error, Result};

/// What the held artifacts take, split into pinned ones and the evictable cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Pinned artifacts (published or pinned here; never evicted).
    pub pinned_artifacts: u64,
    /// Bytes of pinned artifacts.
    pub pinned_bytes: u64,
    /// Unpinned artifacts (downloads kept as a cache).
    pub cached_artifacts: u64,
    /// Bytes of unpinned artifacts.
    pub cached_bytes: u64,
}

/// Counts and bytes of pinned and unpinned artifacts.
pub(crate) fn usage(connection: &Connection) -> Result<StorageUsage> {
    let numbers: [i64; 4] = connection
        .prepare_cached(
            "SELECT coalesce(sum(pinned <> 0), 0), coalesce(sum(CASE WHEN pinned <> 0 THEN size END), 0),
                    coalesce(sum(pinned = 0), 0), coalesce(sum(CASE WHEN pinned = 0 THEN size END), 0)
             FROM artifacts",
        )?
        .query_row([], |row| Ok([row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?]))?;
    let [pinned_artifacts, pinned_bytes, cached_artifacts, cached_bytes] = numbers.map(|n| n.max(0) as u64);
    Ok(StorageUsage { pinned_artifacts, pinned_bytes, cached_artifacts, cached_bytes })
}

/// Pins or unpins a held artifact; false when it is not held.
pub(crate) fn set_pinned(tx: &Transaction<'_>, digest: &Digest, pinned: bool) -> Result<bool> {
    let changed = tx
        .prepare_cached("UPDATE artifacts SET pinned = ?2 WHERE digest = ?1")?
        .execute(params![digest.as_bytes().as_slice(), i64::from(pinned)])?;
    Ok(changed > 0)
}

/// Marks a held artifact as used at `now`; nothing when it is not held.
pub(crate) fn touch(tx: &Transaction<'_>, digest: &Digest, now: u64) -> Result<()> {
    tx.prepare_cached("UPDATE artifacts SET last_used = ?2 WHERE digest = ?1")?
        .execute(params![digest.as_bytes().as_slice(), crate::peers::to_sql(now)])?;
    Ok(())
}

/// The unpinned artifacts to evict so the rest fit in `max_cached_bytes`: see
/// [`crate::Catalog::eviction_candidates`].
pub(crate) fn eviction_candidates(connection: &Connection, max_cached_bytes: u64) -> Result<Vec<(Digest, u64)>> {
    // One read transaction, so the total and the walk see the same rows.
    let snapshot = connection.unchecked_transaction()?;
    let candidates = {
        let total: i64 = snapshot
            .prepare_cached("SELECT coalesce(sum(size), 0) FROM artifacts WHERE pinned = 0")?
            .query_row([], |row| row.get(0))?;
        let mut cached = total.max(0) as u64;
        let mut candidates = Vec::new();
        if cached > max_cached_bytes {
            let mut statement = snapshot.prepare_cached(
                "SELECT digest, size FROM artifacts WHERE pinned = 0
                 ORDER BY last_used ASC, stored_at ASC, digest ASC",
            )?;
            let mut rows = statement.query([])?;
            while cached > max_cached_bytes {
                let Some(row) = rows.next()? else { break };
                let digest = decode_digest(row.get(0)?)?;
                let size = row.get::<_, i64>(1)?.max(0) as u64;
                cached = cached.saturating_sub(size);
                candidates.push((digest, size));
            }
        }
        candidates
    };
    snapshot.commit()?;
    Ok(candidates)
}

/// Deletes the row of an unpinned artifact: see [`crate::Catalog::forget_artifact`].
pub(crate) fn forget(tx: &Transaction<'_>, digest: &Digest) -> Result<()> {
    let key = digest.as_bytes().as_slice();
    let pinned = tx.prepare_cached("SELECT 1 FROM artifacts WHERE digest = ?1 AND pinned <> 0")?.exists([key])?;
    if pinned {
        return Err(Error::Pinned(*digest));
    }
    tx.prepare_cached("DELETE FROM artifacts WHERE digest = ?1")?.execute([key])?;
    Ok(())
}

fn decode_digest(bytes: Vec<u8>) -> Result<Digest> {
    let bytes: [u8; 32] =
        bytes.as_slice().try_into().map_err(|_| Error::Corrupt("artifact digest is not 32 bytes".into()))?;
    Ok(Digest::from_bytes(bytes))
}
