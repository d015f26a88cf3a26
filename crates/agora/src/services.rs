//! [`Services`]: the parts a node is made of — store, read cache, reputation,
//! record validator, catalog writer, arrivals, clock, metrics — built once, before
//! any task starts, and shared by reference with every task (heartwood's
//! `Stores`). The network's parts, the transfers and the searches take the
//! services, never the `Node`, so nothing has to be filled in after
//! construction and no module imports the node back.
//!
//! Every task a node starts is spawned on [`Services::tasks`] and watches
//! [`Services::cancel`]; [`Services::shutdown`] cancels and then waits for all of
//! them (mini-redis's drain).
//!
//! Every committed catalog change reaches the cache, the validator and the arrival
//! watchers through one observer of the store's change events
//! ([`CatalogEvents`]), so no writer can forget one of them.
//!
//! This module does not talk to the network; `crate::network` does, with these
//! services in hand.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use agora_cache::CachedRegistry;
use agora_core::{PackageName, PublicKey, Result as CoreResult};
use agora_store::{CatalogChange, CatalogObserver, ChangeCause, Store};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::clock::Clock;
use crate::local::LocalRegistry;
use crate::metrics::NodeMetrics;
use crate::reputation::Reputation;
use crate::validator::OwnerValidator;
use crate::writer::IngestHandle;

/// Names an arrivals receiver may fall behind by.
const ARRIVALS: usize = 1024;
/// Equivocation proofs the gossip task may fall behind by (it reads each proof
/// back from the store; one that falls off is still served by sync and search).
const EVIDENCE: usize = 64;
/// How long [`Services::shutdown`] waits for its tasks before it gives up on
/// them (they are cancelled; one that ignores cancellation is a bug, logged).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Everything a node's tasks share.
#[derive(Debug)]
pub(crate) struct Services {
    pub(crate) data_dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) store: Store,
    /// The local store behind the read cache.
    pub(crate) registry: Arc<CachedRegistry<LocalRegistry>>,
    pub(crate) reputation: Reputation,
    pub(crate) validator: Arc<OwnerValidator>,
    pub(crate) ingest: IngestHandle,
    /// Names of packages the network brought into the catalog, once searchable.
    pub(crate) arrivals: broadcast::Sender<PackageName>,
    /// Equivocation proofs newly stored (name, owner), for the network to gossip.
    pub(crate) evidence: broadcast::Sender<(PackageName, PublicKey)>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: NodeMetrics,
    pub(crate) tasks: TaskTracker,
    pub(crate) cancel: CancellationToken,
    pub(crate) started: Instant,
    /// The key this node signs publications with (replaced by a key import).
    pub(crate) publisher: std::sync::RwLock<agora_core::SecretKey>,
}

impl Services {
    /// Builds the services over an opened store (loads reputation and the known
    /// owners, subscribes the change observer, starts the catalog writer).
    pub(crate) async fn new(
        data_dir: PathBuf,
        config: Config,
        store: Store,
        publisher: agora_core::SecretKey,
        clock: Arc<dyn Clock>,
    ) -> CoreResult<Arc<Self>> {
        let (reputation, owners) = {
            let (store, settings, clock) = (store.clone(), config.reputation.clone(), clock.clone());
            crate::blocking::run(move || {
                let owners = store.packages().owners()?;
                Ok((Reputation::load(store, settings, clock)?, owners))
            })
            .await?
        };
        let registry = Arc::new(CachedRegistry::new(
            LocalRegistry::with_clock(store.clone(), config.max_artifact_size, clock.clone()),
            config.cache.to_cache_config(),
        ));
        let validator = Arc::new(OwnerValidator::new(owners));
        let arrivals = broadcast::channel(ARRIVALS).0;
        let evidence = broadcast::channel(EVIDENCE).0;
        store.subscribe(Arc::new(CatalogEvents {
            registry: Arc::downgrade(&registry),
            validator: validator.clone(),
            arrivals: arrivals.clone(),
            evidence: evidence.clone(),
        }))?;
        let (tasks, cancel) = (TaskTracker::new(), CancellationToken::new());
        let ingest = IngestHandle::spawn(store.clone(), &tasks, cancel.clone());
        Ok(Arc::new(Self {
            data_dir,
            config,
            store,
            registry,
            reputation,
            validator,
            ingest,
            arrivals,
            evidence,
            started: clock.now(),
            clock,
            metrics: NodeMetrics::default(),
            tasks,
            cancel,
            publisher: std::sync::RwLock::new(publisher),
        }))
    }

    /// Runs store work on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> agora_store::Result<T> + Send + 'static,
    ) -> CoreResult<T> {
        let store = self.store.clone();
        crate::blocking::run(move || work(&store)).await
    }

    /// The publisher key's public half.
    pub(crate) fn publisher_key(&self) -> agora_core::PublicKey {
        self.publisher_secret().public_key()
    }

    /// The publisher secret key.
    pub(crate) fn publisher_secret(&self) -> agora_core::SecretKey {
        self.publisher.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Unix seconds now, by the node's clock.
    pub(crate) fn unix_now(&self) -> u64 {
        self.clock.unix_now()
    }

    /// Cancels every task of the node and waits for them to end. Idempotent.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(DRAIN_LIMIT, self.tasks.wait()).await.is_err() {
            tracing::error!(
                running = self.tasks.len(),
                "node tasks still running after shutdown; a task ignores cancellation"
            );
        }
    }
}

/// The one observer of the store's change events: forgets cached reads of what
/// changed, teaches the DHT record validator the owners it now knows, and
/// announces packages that arrived from the network.
#[derive(Debug)]
struct CatalogEvents {
    /// Weak: the registry holds the store, which holds this observer.
    registry: Weak<CachedRegistry<LocalRegistry>>,
    validator: Arc<OwnerValidator>,
    arrivals: broadcast::Sender<PackageName>,
    evidence: broadcast::Sender<(PackageName, PublicKey)>,
}

impl CatalogObserver for CatalogEvents {
    fn changed(&self, changes: &[CatalogChange]) {
        if let Some(registry) = self.registry.upgrade() {
            for change in changes {
                registry.invalidate_package_now(&change.name);
                if change.cause == ChangeCause::Trusted {
                    registry.invalidate_versions_now(&change.name);
                }
            }
            if !changes.is_empty() {
                registry.invalidate_searches();
            }
        }
        // No receiver is not an error.
        for change in changes {
            match change.cause {
                ChangeCause::Published | ChangeCause::Yanked => self.validator.learn(&change.name, &change.keys),
                ChangeCause::Ingested => {
                    self.validator.learn(&change.name, &change.keys);
                    let _ = self.arrivals.send(change.name.clone());
                }
                // The user's choice replaces the owner the DHT accepts records from.
                ChangeCause::Trusted => self.validator.replace(&change.name, &change.keys),
                // Evidence: the owner served does not change.
                ChangeCause::Contested => {}
                ChangeCause::Equivocated => {
                    let _ = self.evidence.send((change.name.clone(), change.owner));
                }
            }
        }
    }
}
