//! The catalog writer for verified records from the network: one task takes
//! everything queued since its last commit (up to [`INGEST_BATCH`] packages) as
//! one transaction, so a burst of announcements costs one commit instead of one
//! each, and a lone record waits for no timer. Whole batches (a sync page, a
//! search answer) go straight to the store in one transaction of their own.
//!
//! Records must already be verified (holding a `SignedPackageIndex` means its
//! signature checked out); the store enforces ownership and succession. What a
//! commit changed reaches the cache, the record validator and arrival watchers
//! through the store's change events ([`crate::services`]), not through here.
//! This module does not decide whom to strike for a rule violation; callers do.

use agora_core::{Error as CoreError, Result as CoreResult, SignedManifest, SignedPackageIndex};
use agora_store::{Ingested, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Records from gossip and the DHT waiting for the writer.
const INGEST_QUEUE: usize = 1024;
/// Most packages the writer commits in one transaction.
const INGEST_BATCH: usize = 256;

/// What ingesting one package kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Nothing new: already known, or an older copy.
    Nothing,
    /// The package as this node serves it was stored or changed.
    Package,
    /// Evidence was kept: a competing claim to the name, or a proof that its
    /// owner equivocated. The package as served did not change.
    Evidence,
}

impl Kept {
    /// True when anything new was stored.
    pub(crate) fn anything(self) -> bool {
        self != Kept::Nothing
    }
}

/// One package: its verified index and the verified manifests to store with it.
pub(crate) type Package = (SignedPackageIndex, Vec<SignedManifest>);

/// Sends records to the catalog writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct IngestHandle {
    jobs: mpsc::Sender<Job>,
    store: Store,
}

#[derive(Debug)]
struct Job {
    package: Package,
    reply: oneshot::Sender<CoreResult<Kept>>,
}

impl IngestHandle {
    /// Starts the writer task on `tasks`; it stops when `cancel` fires.
    pub(crate) fn spawn(store: Store, tasks: &TaskTracker, cancel: CancellationToken) -> Self {
        let (jobs, queue) = mpsc::channel(INGEST_QUEUE);
        tasks.spawn(run(store.clone(), queue, cancel));
        Self { jobs, store }
    }

    /// Ingests one package through the writer's queue: what it kept, or the rule
    /// it broke.
    pub(crate) async fn one(&self, index: SignedPackageIndex, manifests: Vec<SignedManifest>) -> CoreResult<Kept> {
        let (reply, outcome) = oneshot::channel();
        agora_store::crash::point("ingest.verified");
        let stopped = || CoreError::Unavailable {
            what: "storing a record from the network".into(),
            reason: agora_core::Unavailable::Stopped,
        };
        self.jobs.send(Job { package: (index, manifests), reply }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Ingests a batch in one transaction, each package in its own savepoint. Per
    /// package, in order: what it kept, or the rule it broke (it alone is rolled
    /// back). `Err` overall when the store failed.
    pub(crate) async fn batch(&self, batch: Vec<Package>) -> CoreResult<Vec<CoreResult<Kept>>> {
        ingest(&self.store, batch).await
    }
}

/// The first rule violation (a rewritten version, a forged link…) among `outcomes`;
/// another key's claim to a known name is not one ([`CoreError::is_misbehaviour`]).
pub(crate) fn first_violation(outcomes: Vec<CoreResult<Kept>>) -> Option<CoreError> {
    outcomes.into_iter().filter_map(Result::err).find(CoreError::is_misbehaviour)
}

async fn run(store: Store, mut queue: mpsc::Receiver<Job>, cancel: CancellationToken) {
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            job = queue.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < INGEST_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (packages, replies): (Vec<Package>, Vec<_>) = jobs.into_iter().map(|job| (job.package, job.reply)).unzip();
        match ingest(&store, packages).await {
            Ok(outcomes) => {
                agora_store::crash::point("ingest.committed");
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
    tracing::debug!("catalog writer ended");
}

async fn ingest(store: &Store, batch: Vec<Package>) -> CoreResult<Vec<CoreResult<Kept>>> {
    let store = store.clone();
    let outcomes = crate::blocking::run(move || store.packages().ingest_packages(&batch)).await?;
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(Ingested::Inserted | Ingested::Updated(_)) => Ok(Kept::Package),
            Ok(Ingested::Contested | Ingested::Equivocated) => Ok(Kept::Evidence),
            Ok(Ingested::Unchanged | Ingested::Stale) => Ok(Kept::Nothing),
            Err(error) => Err(CoreError::from(error)),
        })
        .collect())
}
