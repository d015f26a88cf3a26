//! Multi-provider artifact transfers.
//!
//! An artifact is fetched from up to `max_providers` providers at once, best
//! reputation first, each with up to `requests_per_provider` chunk requests in
//! flight, so a faster provider serves more chunks. Which provider is asked for
//! which chunk, and when one is dropped (bad chunk, refusal, error, stall), is
//! decided without I/O by the [`scheduler`]; the [`driver`] sends the requests,
//! verifies every chunk against the manifest's chunk digest before it writes it
//! at its offset in a staging file ([`staging`]), and records outcomes in the
//! providers' reputation. When every chunk is in, the whole file is verified and
//! renamed into the artifact store, and the node provides it. A transfer that
//! ends without all chunks keeps its staging files only if some chunks verified,
//! and the next fetch of the same artifact resumes from the chunks that still
//! verify. Staging files older than a day, and bitmaps whose part file is gone,
//! are removed when the node starts.
//!
//! This module does not serve artifacts to peers (`crate::network` answers chunk
//! requests) and does not read artifacts out (the store's readers do).

mod driver;
mod paths;
mod progress;
mod scheduler;
mod staging;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agora_core::{Error as CoreError, Result as CoreResult, SignedManifest, Unavailable};
use agora_net::NetworkHandle;
use tokio::sync::watch;

pub use self::progress::{ProviderProgress, TransferProgress, TransferState};
use self::scheduler::{ChunkScheduler, DropReason, SchedulerSettings};
use self::staging::Staging;
use crate::services::Services;

/// Transfers running now, one per artifact, so concurrent fetches of the same
/// artifact share one transfer. An entry lives while its transfer runs.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    running: Mutex<HashMap<agora_core::Digest, Arc<tokio::sync::Mutex<()>>>>,
}

/// Creates the downloads directory and removes stale staging files.
pub(crate) async fn prepare(services: &Services) -> CoreResult<()> {
    let dir = downloads_dir(services);
    crate::blocking::run(move || {
        std::fs::create_dir_all(&dir).map_err(|error| agora_store::Error::Io { path: dir.clone(), source: error })?;
        staging::remove_stale(&dir);
        Ok(())
    })
    .await
}

impl Transfers {
    /// Downloads the artifact of `manifest` from the network unless this node
    /// already holds it, stores it after verifying it whole, applies the storage
    /// limit, and makes this node a provider.
    pub(crate) async fn download(
        &self,
        services: &Arc<Services>,
        handle: &NetworkHandle,
        manifest: &SignedManifest,
        progress: &watch::Sender<TransferProgress>,
    ) -> CoreResult<()> {
        let info = &manifest.manifest().artifact;
        let limit = services.config.max_artifact_size;
        if info.size > limit {
            return Err(CoreError::ArtifactTooLarge { size: info.size, limit });
        }
        let lock = {
            let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            running.entry(info.digest).or_default().clone()
        };
        let guard = lock.lock().await;
        // Another fetch of the same artifact may have finished while we waited.
        let expected = info.clone();
        let held = services.blocking(move |store| store.artifacts().verify(&expected)).await.unwrap_or(false);
        let result = if held { Ok(()) } else { transfer(services, handle, manifest, progress).await };
        drop(guard);
        {
            // Removed only by the last user of this lock: a fetch still waiting on
            // it must find the same lock in the map, not a fresh one.
            let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if running.get(&info.digest).is_some_and(|entry| Arc::ptr_eq(entry, &lock) && Arc::strong_count(&lock) == 2)
            {
                running.remove(&info.digest);
            }
        }
        match &result {
            Ok(()) => {
                progress.send_modify(TransferProgress::done);
                if !held {
                    let (name, version) = (manifest.manifest().name(), manifest.manifest().version());
                    tracing::info!(package = %name, %version, digest = %info.digest, "artifact fetched from the network");
                }
            }
            Err(error) => progress.send_modify(|p| p.state = TransferState::Failed(error.to_string())),
        }
        result
    }
}

async fn transfer(
    services: &Arc<Services>,
    handle: &NetworkHandle,
    manifest: &SignedManifest,
    progress: &watch::Sender<TransferProgress>,
) -> CoreResult<()> {
    let info = manifest.manifest().artifact.clone();
    let (name, version) = (manifest.manifest().name().clone(), manifest.manifest().version().clone());
    let what = || format!("fetching {name}@{version}");
    let staging = Arc::new(Staging::new(&downloads_dir(services), &info.digest));
    let providers = handle.get_providers(info.digest).await.map_err(|e| crate::network::network_error(&what(), e))?;
    let providers = services.reputation.rank(providers);
    let no_provider = || CoreError::Unavailable {
        what: what(),
        reason: Unavailable::NoProvider(format!(
            "sha256 {}; every known provider is blocked or none was found",
            info.digest
        )),
    };
    // Without a provider there is nothing to stage (unless resuming).
    if providers.is_empty() && !staging.part.exists() {
        return Err(no_provider());
    }
    let (files, verified) = {
        let (staging, info, what) = (staging.clone(), info.clone(), what());
        tokio::task::spawn_blocking(move || {
            staging.check_free_space(&info, &what)?;
            staging.open(&info)
        })
        .await
        .map_err(crate::blocking::join_error)??
    };
    // Providers reachable only through a relay serve only what fits its limit.
    let verified_bytes: u64 =
        verified.iter().filter_map(|index| info.chunk_range(*index)).map(|(_, len)| u64::from(len)).sum();
    let left = info.size.saturating_sub(verified_bytes);
    let (providers, refused) = paths::usable(handle, providers, left).await;
    if providers.is_empty() && !refused.is_empty() {
        // Nothing verified: nothing worth resuming (as when the download fails).
        if verified.is_empty() {
            staging.discard();
        }
        return Err(CoreError::Unavailable { what: what(), reason: Unavailable::NoProvider(refused.join("; ")) });
    }
    let settings = &services.config.transfer;
    let chunk_timeout = std::time::Duration::from_millis(settings.chunk_timeout_ms.max(1));
    let scheduler = ChunkScheduler::new(
        info.chunks.len(),
        verified.iter().copied(),
        providers.iter().copied(),
        SchedulerSettings {
            max_providers: settings.max_providers,
            requests_per_provider: settings.requests_per_provider,
            chunk_timeout,
        },
    );
    let resumed_bytes = info.size - left;
    let resumed = scheduler.chunks_resumed();
    progress.send_modify(|p| {
        p.chunks_done = resumed;
        p.received_bytes = resumed_bytes;
        p.resumed_bytes = resumed_bytes;
        p.state = TransferState::Running;
    });
    let ended = match driver::run(services, handle, &info, scheduler, Arc::new(files), progress).await {
        Ok(ended) => ended,
        Err(error) => {
            // A local failure or shutdown: keep the staging files only if they hold
            // something to resume from, and never when the disk is full (the
            // partial is what fills it).
            let full = staging::is_disk_full(&error);
            let staging = staging.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if full || !staging.any_verified() {
                    staging.discard();
                }
            })
            .await;
            if full {
                return Err(CoreError::NoSpace {
                    what: format!("{}: the disk filled up; the partial download was removed", what()),
                    needed: info.size,
                    available: 0,
                });
            }
            return Err(error);
        }
    };
    let served_by = match ended {
        driver::Ended::Done { served_by } => served_by,
        driver::Ended::Failed(failure) => {
            let kept = failure.missing < failure.total;
            if !kept {
                // Nothing verified: nothing worth resuming.
                staging.discard();
            }
            if failure.providers.is_empty() {
                return Err(no_provider());
            }
            let resume = if kept {
                "; the verified chunks are kept in tmp/downloads and the next fetch resumes from them"
            } else {
                ""
            };
            let stalled = failure.providers.iter().all(|(_, reason)| matches!(reason, DropReason::Stalled { .. }));
            if stalled {
                // Every provider was asked and none answered in time.
                return Err(CoreError::Timeout {
                    what: format!("{}: {failure}{resume}", what()),
                    after: chunk_timeout,
                });
            }
            return Err(CoreError::Unavailable {
                what: what(),
                reason: Unavailable::Refused(format!("{failure}{resume}")),
            });
        }
    };
    progress.send_modify(|p| p.state = TransferState::Verifying);
    let max_cached = services.config.storage.max_cached_bytes.max(info.size);
    let (expected, part, now) = (info.clone(), staging.part.clone(), services.unix_now());
    let stored = services
        .blocking(move |store| {
            // Leased from the rename until its row exists, so no eviction runs in between.
            let _lease = store.artifacts().lease(&expected.digest);
            agora_store::crash::point("fetch.staged");
            store.artifacts().adopt_chunk_verified(&expected, &part)?;
            agora_store::crash::point("fetch.adopted");
            store.artifacts().record(&expected.digest, expected.size, false, now)?;
            agora_store::crash::point("fetch.recorded");
            store.storage().evict(max_cached)
        })
        .await;
    let evicted = match stored {
        Ok(evicted) => evicted,
        Err(error) => {
            // The chunks verified but the whole does not: the manifest lies about
            // its chunks. Nothing to resume from.
            staging.discard();
            return Err(error);
        }
    };
    staging.finish();
    let (provider, digest) = (handle.clone(), info.digest);
    services.tasks.spawn(async move {
        for gone in evicted {
            provider.stop_providing(gone).await;
        }
        if let Err(error) = provider.start_providing(digest).await {
            tracing::debug!(%digest, %error, "providing after download");
        }
    });
    for peer in served_by {
        let (id, now) = (peer.to_string(), services.unix_now());
        let _ = services.blocking(move |store| store.peers().add_packages_provided(&id, 1, now)).await;
    }
    Ok(())
}

fn downloads_dir(services: &Services) -> PathBuf {
    services.data_dir.join("tmp").join("downloads")
}
