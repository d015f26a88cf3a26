//! The async driver of one transfer: a short loop that does what the
//! [`ChunkScheduler`] says (send chunk requests, drop providers), verifies each
//! chunk that comes back against the manifest, writes it to the staging file,
//! and reports the outcome to the scheduler, the reputation and the progress
//! watchers. All decisions are the scheduler's; this loop only does the I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{ArtifactInfo, Digest, Error as CoreError, Result as CoreResult};
use agora_net::{ChunkRequest, ChunkResponse, NetworkError, NetworkHandle, PeerId};
use agora_store::Outcome;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use super::progress::{ProviderProgress, TransferProgress};
use super::scheduler::{Action, ChunkFailure, ChunkScheduler, DropKind, TransferFailure};
use super::staging::StagingFiles;
use crate::reputation::BanChange;
use crate::services::Services;

/// What the download phase ended with.
#[derive(Debug)]
pub(super) enum Ended {
    /// Every chunk is verified in the staging file; these providers served some.
    Done { served_by: Vec<PeerId> },
    /// The scheduler gave up.
    Failed(TransferFailure<PeerId>),
}

/// One chunk request's answer: the peer, the chunk, what came back, how long it took.
type Answer = (PeerId, usize, Result<ChunkResponse, NetworkError>, Duration);

/// Runs `scheduler` to its end over `handle`, writing verified chunks to `files`.
/// Errors only for a local failure (a chunk could not be written) or shutdown.
pub(super) async fn run(
    services: &Services,
    handle: &NetworkHandle,
    info: &ArtifactInfo,
    mut scheduler: ChunkScheduler<PeerId>,
    files: Arc<StagingFiles>,
    progress: &watch::Sender<TransferProgress>,
) -> CoreResult<Ended> {
    let chunk_timeout = Duration::from_millis(services.config.transfer.chunk_timeout_ms.max(1));
    let mut in_flight = FuturesUnordered::new();
    let mut latencies: HashMap<PeerId, Vec<f64>> = HashMap::new();
    // A provider that gets blocked meanwhile (for bad data anywhere) is not asked again.
    let mut bans = services.reputation.ban_changes();
    let ended = loop {
        let mut ended = None;
        for action in scheduler.next(services.clock.now()) {
            match action {
                Action::Request { peer, index } => {
                    if !progress.borrow().providers.iter().any(|p| p.peer == peer.to_string()) {
                        progress.send_modify(|p| {
                            p.providers.push(ProviderProgress { peer: peer.to_string(), chunks: 0, dropped: None });
                        });
                    }
                    // The scheduler's deadline (on the node's clock) decides stalls;
                    // the request's own timeout is only a backstop.
                    in_flight.push(request(handle.clone(), peer, info.digest, index, 2 * chunk_timeout));
                }
                Action::Drop { peer, reason, kind } => {
                    let reason = reason.to_string();
                    tracing::warn!(%peer, %reason, digest = %info.digest, "provider dropped from transfer");
                    mark_dropped(progress, peer, reason);
                    let outcome = match kind {
                        DropKind::Invalid => Outcome::Invalid,
                        DropKind::Failure => Outcome::Failure,
                        DropKind::Timeout => Outcome::Timeout,
                    };
                    services.reputation.record(peer, outcome).await;
                }
                Action::Done => ended = Some(Ended::Done { served_by: scheduler.served_by() }),
                Action::Failed(failure) => ended = Some(Ended::Failed(failure)),
            }
        }
        if let Some(ended) = ended {
            break ended;
        }
        // The deadline is on the node's clock; the sleep is on tokio's.
        let wake = scheduler
            .deadline()
            .map(|deadline| tokio::time::Instant::now() + deadline.saturating_duration_since(services.clock.now()));
        tokio::select! {
            // Answers first: one that arrived in time is never taken for a stall.
            biased;
            () = services.cancel.cancelled() => {
                return Err(CoreError::Unavailable {
                    what: format!("fetching {}", info.digest),
                    reason: agora_core::Unavailable::Stopped,
                });
            }
            Some((peer, index, answer, latency)) = in_flight.next() => {
                let now = services.clock.now();
                match judge(info, index, answer) {
                    // A stale answer (its provider was dropped, or it was not asked):
                    // nothing to write, nothing to count.
                    _ if !scheduler.is_expected(peer, index) => {}
                    Ok((offset, bytes)) => {
                        let files = files.clone();
                        let len = bytes.len() as u64;
                        let written = tokio::task::spawn_blocking(move || files.write(index, offset, &bytes)).await;
                        match written {
                            Ok(Ok(())) => agora_store::crash::point("fetch.chunk_staged"),
                            Ok(Err(error)) => return Err(CoreError::io(error)),
                            Err(error) => return Err(crate::blocking::join_error(error)),
                        }
                        if scheduler.chunk_arrived(peer, index, now).is_some() {
                            latencies.entry(peer).or_default().push(latency.as_secs_f64() * 1e3);
                            let name = peer.to_string();
                            progress.send_modify(|p| {
                                p.chunks_done += 1;
                                p.received_bytes += len;
                                if let Some(provider) = p.providers.iter_mut().find(|provider| provider.peer == name) {
                                    provider.chunks += 1;
                                }
                            });
                        }
                    }
                    Err(failure) => {
                        scheduler.chunk_failed(peer, index, failure, now);
                    }
                }
            }
            () = sleep_until(wake) => {}
            ban = bans.recv() => match ban {
                Ok(BanChange::Banned(peer)) => drop_banned(&mut scheduler, peer, progress),
                Ok(BanChange::Lifted(_)) => {}
                // Fell behind: the banned set itself is the truth.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    for peer in services.reputation.banned() {
                        drop_banned(&mut scheduler, peer, progress);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
        }
    };
    // One reputation write per provider, not per chunk.
    for (peer, samples) in latencies {
        let outcomes = samples.into_iter().map(|latency_ms| Outcome::Success { latency_ms }).collect();
        services.reputation.record_all(peer, outcomes).await;
    }
    Ok(ended)
}

/// Drops a provider that reputation just banned, if the transfer still uses it.
fn drop_banned(scheduler: &mut ChunkScheduler<PeerId>, peer: PeerId, progress: &watch::Sender<TransferProgress>) {
    let reason = "blocked for sending invalid data";
    if scheduler.provider_dropped(peer, reason) {
        mark_dropped(progress, peer, reason.to_owned());
    }
}

/// Shows `peer` as dropped, and why, to the progress watchers.
fn mark_dropped(progress: &watch::Sender<TransferProgress>, peer: PeerId, reason: String) {
    let name = peer.to_string();
    progress.send_modify(|p| {
        if let Some(provider) = p.providers.iter_mut().find(|provider| provider.peer == name) {
            provider.dropped = Some(reason);
        }
    });
}

/// Asks `peer` for one chunk, within `timeout`.
async fn request(handle: NetworkHandle, peer: PeerId, digest: Digest, index: usize, timeout: Duration) -> Answer {
    let asked = Instant::now();
    let request = ChunkRequest { digest, index: index as u32 };
    let answer = match tokio::time::timeout(timeout, handle.request_chunk(peer, request)).await {
        Ok(answer) => answer,
        Err(_) => Err(NetworkError::Timeout(timeout)),
    };
    (peer, index, answer, asked.elapsed())
}

/// The offset and bytes of a chunk that verifies, or what was wrong with the answer.
fn judge(
    info: &ArtifactInfo,
    index: usize,
    answer: Result<ChunkResponse, NetworkError>,
) -> Result<(u64, Vec<u8>), ChunkFailure> {
    match answer {
        Ok(ChunkResponse::Data(bytes)) => match info.chunk_range(index) {
            Some((offset, len)) if bytes.len() == len as usize && Digest::of(&bytes) == info.chunks[index] => {
                Ok((offset, bytes))
            }
            _ => Err(ChunkFailure::Invalid),
        },
        Ok(_) => Err(ChunkFailure::Refused),
        Err(NetworkError::Timeout(_)) => Err(ChunkFailure::Timeout),
        Err(error) => Err(ChunkFailure::Error(error.to_string())),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
