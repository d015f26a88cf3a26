//! Leases: holds on artifacts that eviction respects. Every [`crate::ArtifactReader`]
//! holds one on its digest, and [`crate::Artifacts::lease`] hands them out to
//! callers that need an artifact to stay while they do something else.
//!
//! The table is the one place where "is it leased?" and "take a lease" meet, and
//! it offers both only as closures run under its lock, so eviction's "check, then
//! forget the row and delete the file" and a reader's "take a lease, then open the
//! file" cannot interleave. Not here: what is evicted and when
//! ([`crate::Storage`]).
//!
//! Bounded by its users: one entry per leased digest, removed when its last
//! [`Lease`] drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use agora_core::Digest;

/// A hold on one artifact: while it lives, [`crate::Storage::evict`] neither
/// forgets the artifact's row nor deletes its file. Dropping it releases the
/// hold. Leases on the same digest add up.
///
/// A lease does not make an artifact present, pin it, or stop
/// [`crate::Artifacts::remove`]; it only holds off eviction.
#[derive(Debug)]
pub struct Lease {
    table: Arc<LeaseTable>,
    digest: Digest,
}

impl Lease {
    /// The digest this lease holds.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.table.lock();
        if let Some(count) = held.get_mut(&self.digest) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.digest);
            }
        }
    }
}

/// How many leases each digest has.
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    held: Mutex<HashMap<Digest, usize>>,
}

impl LeaseTable {
    /// A new lease on `digest`.
    pub(crate) fn lease(self: &Arc<Self>, digest: &Digest) -> Lease {
        *self.lock().entry(*digest).or_insert(0) += 1;
        Lease { table: self.clone(), digest: *digest }
    }

    /// Runs `open` under the table's lock and, when it finds something, takes a
    /// lease on `digest` before the lock is released: nothing can check the
    /// digest for leases between `open` and the lease.
    pub(crate) fn lease_if<T, E>(
        self: &Arc<Self>,
        digest: &Digest,
        open: impl FnOnce() -> Result<Option<T>, E>,
    ) -> Result<Option<(T, Lease)>, E> {
        let mut held = self.lock();
        let Some(value) = open()? else { return Ok(None) };
        *held.entry(*digest).or_insert(0) += 1;
        drop(held);
        Ok(Some((value, Lease { table: self.clone(), digest: *digest })))
    }

    /// Runs `work` under the table's lock unless `digest` is leased (`None`): no
    /// lease on `digest` can be taken while `work` runs. `work` must not take or
    /// drop a lease, which would deadlock.
    pub(crate) fn unless_leased<T, E>(
        &self,
        digest: &Digest,
        work: impl FnOnce() -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let held = self.lock();
        if held.contains_key(digest) {
            return Ok(None);
        }
        let value = work()?;
        drop(held);
        Ok(Some(value))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, usize>> {
        // Every change to the map is a single step, so a panic elsewhere while
        // the lock was held cannot leave it half-updated.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
