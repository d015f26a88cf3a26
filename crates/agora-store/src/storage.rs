//! Local artifact storage policy: which held artifacts are pinned (published or
//! pinned here, kept forever) and which are a cache of downloads that may be
//! evicted, least recently used first, to keep the cache under a byte budget.
//!
//! [`Storage`] decides over the `artifacts` rows and, in [`Storage::evict`],
//! deletes the files of what it evicts through [`Artifacts`]. It does not know
//! what the artifacts are of, and it writes no artifact files.

use std::sync::Arc;

use agora_core::Digest;
use rusqlite::{Connection, Transaction, params};

use crate::artifacts::Artifacts;
use crate::db::Database;
use crate::rows::{decode_digest, to_sql};
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

/// The storage policy over held artifacts, reached through
/// [`crate::Store::storage`]. Cheap to clone; all clones share the store's
/// connections and artifact directory.
///
/// Methods block on SQLite and the file system: call them from a blocking thread.
#[derive(Debug, Clone)]
pub struct Storage {
    database: Arc<Database>,
    artifacts: Artifacts,
}

impl Storage {
    pub(crate) fn new(database: Arc<Database>, artifacts: Artifacts) -> Self {
        Self { database, artifacts }
    }

    /// Counts and bytes of held artifacts, pinned and cached (unpinned).
    pub fn usage(&self) -> Result<StorageUsage> {
        self.database.read(usage)
    }

    /// Pins (never evicted) or unpins (evictable cache) a held artifact; false
    /// when this node does not hold it.
    pub fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<bool> {
        self.database.write(|tx| set_pinned(tx, digest, pinned))
    }

    /// Records that a held artifact was used (served, fetched) at `now`, for LRU
    /// eviction; nothing when this node does not hold it.
    pub fn touch(&self, digest: &Digest, now: u64) -> Result<()> {
        self.database.write(|tx| touch(tx, digest, now))
    }

    /// The unpinned artifacts, with their sizes, that must go for the unpinned
    /// bytes to fit in `max_cached_bytes`: least recently used first (ties broken
    /// by `stored_at`, then digest), just as many as needed. Empty when the cache
    /// already fits. Pinned artifacts are never returned, however far the total is
    /// over the limit.
    pub fn eviction_candidates(&self, max_cached_bytes: u64) -> Result<Vec<(Digest, u64)>> {
        self.database.read(|connection| eviction_candidates(connection, max_cached_bytes))
    }

    /// Forgets that this node holds the artifact with `digest` (deletes its row;
    /// the file is the caller's: see [`Storage::evict`]). Nothing when it is not
    /// held. A pinned artifact is never forgotten: that is [`Error::Pinned`] and
    /// nothing changes.
    pub fn forget(&self, digest: &Digest) -> Result<()> {
        self.database.write(|tx| forget(tx, digest))
    }

    /// Evicts cached (unpinned) artifacts, least recently used first, until their
    /// bytes fit in `max_cached_bytes` (see [`Storage::eviction_candidates`]);
    /// returns the digests evicted, which this node no longer holds. Pinned
    /// artifacts are never evicted.
    ///
    /// Each artifact's row goes first, then its file: a crash in between leaves an
    /// orphan file (removed the next time the store is opened) rather than a row
    /// pointing at nothing. An artifact pinned since the candidates were chosen, or recorded
    /// again right after its row was forgotten, is skipped and kept. A
    /// file that cannot be deleted is logged and left as an orphan; its artifact
    /// still counts as evicted.
    ///
    /// A leased artifact (an open [`crate::ArtifactReader`], a
    /// [`crate::Artifacts::lease`]) is skipped too, row and file, and eviction
    /// goes on with the next candidate; so while readers hold leases the cache may
    /// stay over `max_cached_bytes`, until a later call after they are dropped.
    /// Lock order: the lease table, then the database writer.
    pub fn evict(&self, max_cached_bytes: u64) -> Result<Vec<Digest>> {
        let mut evicted = Vec::new();
        for (digest, size) in self.eviction_candidates(max_cached_bytes)? {
            // Under the lease table's lock: no reader can open the file between
            // the check and its deletion.
            let outcome = self.artifacts.unless_leased(&digest, || -> Result<bool> {
                match self.forget(&digest) {
                    Ok(()) => {}
                    Err(Error::Pinned(_)) => return Ok(false),
                    Err(error) => return Err(error),
                }
                if self.artifacts.has(&digest)? {
                    // Recorded again since it was forgotten (a concurrent download): keep it.
                    return Ok(false);
                }
                crate::crash::point("evict.row_forgotten");
                if let Err(error) = self.artifacts.remove(&digest) {
                    tracing::warn!(%digest, %error, "could not delete an evicted artifact file; left as an orphan");
                }
                Ok(true)
            })?;
            match outcome {
                Some(true) => {
                    tracing::info!(%digest, size, "evicted a cached artifact");
                    evicted.push(digest);
                }
                Some(false) => {}
                None => tracing::debug!(%digest, size, "kept a cached artifact that is being read"),
            }
        }
        Ok(evicted)
    }
}

/// Counts and bytes of pinned and unpinned artifacts.
fn usage(connection: &Connection) -> Result<StorageUsage> {
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
fn set_pinned(tx: &Transaction<'_>, digest: &Digest, pinned: bool) -> Result<bool> {
    let changed = tx
        .prepare_cached("UPDATE artifacts SET pinned = ?2 WHERE digest = ?1")?
        .execute(params![digest.as_bytes().as_slice(), i64::from(pinned)])?;
    Ok(changed > 0)
}

/// Marks a held artifact as used at `now`; nothing when it is not held.
fn touch(tx: &Transaction<'_>, digest: &Digest, now: u64) -> Result<()> {
    tx.prepare_cached("UPDATE artifacts SET last_used = ?2 WHERE digest = ?1")?
        .execute(params![digest.as_bytes().as_slice(), to_sql(now)])?;
    Ok(())
}

/// The unpinned artifacts to evict so the rest fit in `max_cached_bytes`: see
/// [`Storage::eviction_candidates`].
fn eviction_candidates(connection: &Connection, max_cached_bytes: u64) -> Result<Vec<(Digest, u64)>> {
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
                let digest = decode_digest(&row.get::<_, Vec<u8>>(0)?)?;
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

/// Deletes the row of an unpinned artifact: see [`Storage::forget`].
fn forget(tx: &Transaction<'_>, digest: &Digest) -> Result<()> {
    let key = digest.as_bytes().as_slice();
    let pinned = tx.prepare_cached("SELECT 1 FROM artifacts WHERE digest = ?1 AND pinned <> 0")?.exists([key])?;
    if pinned {
        return Err(Error::Pinned(*digest));
    }
    tx.prepare_cached("DELETE FROM artifacts WHERE digest = ?1")?.execute([key])?;
    Ok(())
}
