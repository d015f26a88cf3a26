//! Catalog change events: one [`CatalogObserver::changed`] call per committed
//! write transaction that changed the `packages` or `manifests` rows, naming every
//! package it changed, so caches, record validators and arrival watchers above
//! the store hear of every change from one place.
//!
//! Writers cannot forget to emit: the row writers in [`crate::rows`] record each
//! change into the transaction's [`Changes`] as they write, and
//! [`crate::Packages`] hands the list to the observers once the transaction has
//! committed. Not here: what observers do with it, and any buffering: observers
//! are called synchronously, in commit order.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use agora_core::{PackageName, PublicKey};

use crate::{Error, Result};

/// One package changed by a committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogChange {
    /// The package.
    pub name: PackageName,
    /// The key that owns it: the signer of the index written (or the publisher of
    /// the manifest written; for evidence, the claim's or the equivocator's key).
    pub owner: PublicKey,
    /// Every key that owns or owned the package as the written index records it
    /// (just `owner` for manifest writes and evidence).
    pub keys: Vec<PublicKey>,
    /// Which kind of write changed it.
    pub cause: ChangeCause,
}

/// Which kind of write changed a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeCause {
    /// A local publish ([`crate::Store::publish`], [`crate::Packages::publish`]).
    Published,
    /// A local yank or unyank ([`crate::Packages::apply_yank`]) that changed a version.
    Yanked,
    /// A record from a peer (the `ingest_*` methods of [`crate::Packages`]) that
    /// was stored (inserted or updated).
    Ingested,
    /// A competing claim to the name was stored (as evidence; the package as this
    /// node serves it did not change). `owner` is the claim's.
    Contested,
    /// A proof that `owner` equivocated was stored.
    Equivocated,
    /// The user chose `owner` for the name ([`crate::Packages::trust`]): the
    /// package this node serves now is that owner's.
    Trusted,
}

/// Hears of committed catalog changes; see [`crate::Store::subscribe`].
///
/// [`CatalogObserver::changed`] runs on the writing thread right after the
/// commit, while the store still holds its writer lock, so observers see changes
/// in commit order. It must therefore be quick (hand the changes to a channel or
/// update an in-memory map) and must not call back into the store, which would
/// deadlock: no reads, no writes, and no dropping of an artifact reader or lease.
pub trait CatalogObserver: Send + Sync + std::fmt::Debug {
    /// The packages one committed write transaction changed, each once per
    /// cause, in the order they were first written; never empty.
    fn changed(&self, changes: &[CatalogChange]);
}

/// The observers of one store. Bounded: at most [`Observers::MAX`].
#[derive(Debug, Default)]
pub(crate) struct Observers {
    list: RwLock<Vec<Arc<dyn CatalogObserver>>>,
}

impl Observers {
    /// Most observers one store keeps: the facade needs a handful, and each one
    /// runs inside every write.
    pub(crate) const MAX: usize = 16;

    /// Adds an observer; [`Error::TooManyObservers`] beyond [`Observers::MAX`].
    pub(crate) fn subscribe(&self, observer: Arc<dyn CatalogObserver>) -> Result<()> {
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        if list.len() >= Self::MAX {
            return Err(Error::TooManyObservers { max: Self::MAX });
        }
        list.push(observer);
        Ok(())
    }

    /// Tells every observer about `changes`, unless there are none.
    pub(crate) fn notify(&self, changes: &[CatalogChange]) {
        if changes.is_empty() {
            return;
        }
        // An observer that panicked leaves the list itself intact.
        let list = self.list.read().unwrap_or_else(PoisonError::into_inner);
        for observer in list.iter() {
            observer.changed(changes);
        }
    }
}

/// The changes one write transaction has made so far, all with one cause.
#[derive(Debug)]
pub(crate) struct Changes {
    cause: ChangeCause,
    written: Vec<CatalogChange>,
}

impl Changes {
    pub(crate) fn new(cause: ChangeCause) -> Self {
        Self { cause, written: Vec::new() }
    }

    /// Records that the rows of `name` (owned by `owner`) were written.
    pub(crate) fn record(&mut self, name: &PackageName, owner: &PublicKey) {
        self.record_as(name, owner, self.cause);
    }

    /// Records that `index` was written.
    pub(crate) fn record_index(&mut self, index: &agora_core::PackageIndex) {
        self.push(CatalogChange {
            name: index.name.clone(),
            owner: index.owner,
            keys: index.known_keys(),
            cause: self.cause,
        });
    }

    /// Records a change of another cause than the transaction's (evidence found
    /// while ingesting, say).
    pub(crate) fn record_as(&mut self, name: &PackageName, owner: &PublicKey, cause: ChangeCause) {
        self.push(CatalogChange { name: name.clone(), owner: *owner, keys: vec![*owner], cause });
    }

    fn push(&mut self, change: CatalogChange) {
        if self.written.last().is_some_and(|last| last.name == change.name && last.cause == change.cause) {
            return;
        }
        self.written.push(change);
    }

    /// A point to roll back to, taken with a savepoint.
    pub(crate) fn mark(&self) -> usize {
        self.written.len()
    }

    /// Forgets what was recorded since `mark`, when its savepoint is rolled back.
    pub(crate) fn roll_back_to(&mut self, mark: usize) {
        self.written.truncate(mark);
    }

    /// Each changed package once per cause, in the order it was first written.
    pub(crate) fn finish(self) -> Vec<CatalogChange> {
        let mut seen = HashSet::with_capacity(self.written.len());
        self.written.into_iter().filter(|change| seen.insert((change.name.clone(), change.cause))).collect()
    }
}
