//! [`Fetch`]: a fetch running in a task of the node — make the node hold an
//! artifact (from its store, or downloaded from peers), reporting progress as a
//! stream, then read it.

use std::pin::Pin;
use std::task::{Context, Poll};

use agora_core::{
    ArtifactReader, Error as CoreError, PackageName, Registry, Result as CoreResult, SignedManifest, Unavailable,
    Version,
};
use agora_store::Lease;
use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::{oneshot, watch};

use super::Node;
use crate::transfer::TransferProgress;

/// A running fetch: a [`Stream`] of its progress (each change once, ending when
/// the fetch ends), and [`Fetch::finish`] for its result. Dropping it does not
/// stop the fetch (the node still ends up holding the artifact); shutting the
/// node down does.
pub struct Fetch {
    node: Node,
    manifest: SignedManifest,
    current: watch::Receiver<TransferProgress>,
    updates: BoxStream<'static, TransferProgress>,
    result: oneshot::Receiver<CoreResult<Lease>>,
}

impl Node {
    /// Starts making this node hold a verified copy of the artifact of
    /// `name@version`: a local copy is checked whole and used if it verifies;
    /// otherwise (absent, or corrupted on disk) it is downloaded from the
    /// network. Fails at once when the version is unknown here and in the DHT.
    /// (Reading an artifact, [`Registry::fetch_artifact`], does not check the
    /// whole file first: its reader verifies each chunk as it is read.)
    pub async fn fetch(&self, name: &PackageName, version: &Version) -> CoreResult<Fetch> {
        let manifest = self.get_version(name, version).await?;
        let (progress, current) = watch::channel(TransferProgress::new(&manifest.manifest().artifact));
        let (done, result) = oneshot::channel();
        let (node, held) = (self.clone(), manifest.clone());
        // Leased from the start: eviction keeps the artifact from the moment it
        // is verified or downloaded until `finish` has opened its reader.
        let lease = self.store().artifacts().lease(&manifest.manifest().artifact.digest);
        self.services().tasks.spawn(async move {
            let outcome = node.hold(&held, &progress).await.map(|()| lease);
            if let Err(error) = &outcome {
                progress.send_modify(|p| p.state = crate::TransferState::Failed(error.to_string()));
            }
            let _ = done.send(outcome);
        });
        let updates = futures::stream::unfold(current.clone(), |mut watcher| async move {
            watcher.changed().await.ok()?;
            let progress = watcher.borrow_and_update().clone();
            Some((progress, watcher))
        })
        .boxed();
        Ok(Fetch { node: self.clone(), manifest, current, updates, result })
    }

    /// Makes this node hold a verified copy of `manifest`'s artifact.
    async fn hold(&self, manifest: &SignedManifest, progress: &watch::Sender<TransferProgress>) -> CoreResult<()> {
        let info = manifest.manifest().artifact.clone();
        let (name, version) = (manifest.manifest().name().clone(), manifest.manifest().version().clone());
        let expected = info.clone();
        let local = self.services().blocking(move |store| store.artifacts().verify(&expected)).await;
        let network = self.network();
        match (local, network) {
            (Ok(true), _) => {
                self.mark_used(info.digest).await;
                progress.send_modify(TransferProgress::done);
                Ok(())
            }
            (Ok(false), Some(network)) => {
                self.inner.transfers.download(self.services(), network.handle(), manifest, progress).await
            }
            (Ok(false), None) => Err(CoreError::ArtifactUnavailable { name, version }),
            (Err(corrupt @ CoreError::DigestMismatch { .. }), network) => {
                // The local copy rotted on disk: never serve it; fetch it again if we can.
                tracing::error!(package = %name, %version, error = %corrupt, "local artifact corrupted on disk");
                let refetched = match network {
                    Some(network) => {
                        self.inner.transfers.download(self.services(), network.handle(), manifest, progress).await
                    }
                    None => Err(CoreError::Unavailable {
                        what: format!("fetching {name}@{version}"),
                        reason: Unavailable::Offline,
                    }),
                };
                // The refetch's own kind decides (offline or no provider: 503, a
                // timeout: 504); the message says why it was needed.
                let why =
                    format!("this node's copy of {name}@{version} is corrupted on disk ({corrupt}); fetching it again");
                refetched.map_err(|error| match error {
                    CoreError::Unavailable { reason, .. } => CoreError::Unavailable { what: why, reason },
                    CoreError::Timeout { after, .. } => CoreError::Timeout { what: why, after },
                    error => CoreError::Internal(format!("{why} failed: {error}")),
                })
            }
            (Err(error), _) => Err(error),
        }
    }
}

impl Fetch {
    /// The manifest being fetched.
    pub fn manifest(&self) -> &SignedManifest {
        &self.manifest
    }

    /// Where the fetch stands now.
    pub fn progress(&self) -> TransferProgress {
        self.current.borrow().clone()
    }

    /// Waits for the fetch to end: `Ok` once the node holds a verified copy.
    pub async fn done(self) -> CoreResult<()> {
        self.held().await.map(drop)
    }

    /// Waits for the fetch to end and opens the artifact the node now holds (it
    /// stays leased until the reader holds its own lease).
    pub async fn finish(self) -> CoreResult<ArtifactReader> {
        let (node, manifest) = (self.node.clone(), self.manifest.clone());
        let _lease = self.held().await?;
        let manifest = manifest.manifest();
        node.registry().fetch_artifact(manifest.name(), manifest.version()).await
    }

    async fn held(self) -> CoreResult<Lease> {
        match self.result.await {
            Ok(outcome) => outcome,
            Err(_) => Err(CoreError::Internal("the fetch task ended without an answer".into())),
        }
    }
}

impl Stream for Fetch {
    type Item = TransferProgress;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<TransferProgress>> {
        self.updates.poll_next_unpin(cx)
    }
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch").field("progress", &*self.current.borrow()).finish_non_exhaustive()
    }
}
