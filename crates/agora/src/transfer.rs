//! Multi-provider artifact transfers.
//!
//! An artifact is fetched from up to `max_providers` providers at once, best
//! reputation first. Every provider runs `requests_per_provider` workers that take
//! chunk indexes from one shared queue, so a faster provider serves more chunks.
//! Each chunk is checked against the manifest's chunk digest before it is written
//! at its offset in a staging file (`tmp/downloads/<digest>.part`) and marked in a
//! bitmap file (`<digest>.have`); nothing is held in memory beyond the chunks in
//! flight. A provider that sends a bad chunk, refuses, errs or stalls is dropped
//! for this transfer (and its outcome recorded in its reputation), its chunk goes
//! back to the front of the queue, and a standby provider takes its place. When
//! every chunk is in, the whole file is verified and renamed into the artifact
//! store. A transfer that ends without all chunks keeps its staging files only if
//! some chunks verified (otherwise they are removed), and the next fetch of the
//! same artifact resumes from the chunks that still verify. Staging files older
//! than a day are removed when the node starts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_core::{ArtifactInfo, Digest, Error as CoreError, Result as CoreResult, SignedManifest};
use agora_net::{ChunkRequest, ChunkResponse, NetworkError, NetworkHandle, PeerId};
use agora_store::Outcome;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::reputation::Reputation;

/// How transfers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferSettings {
    /// Providers downloaded from at once.
    pub max_providers: usize,
    /// Chunk requests in flight per provider.
    pub requests_per_provider: usize,
    /// A chunk request unanswered for this long marks its provider as stalled.
    pub chunk_timeout_ms: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self { max_providers: 3, requests_per_provider: 4, chunk_timeout_ms: 10_000 }
    }
}

/// Where a transfer stands; sent to watchers (the CLI's progress bar, the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferProgress {
    /// The artifact.
    pub digest: Digest,
    /// Its size.
    pub total_bytes: u64,
    /// Bytes verified so far (including resumed ones).
    pub received_bytes: u64,
    /// Bytes that were already verified in the staging file when the transfer began.
    pub resumed_bytes: u64,
    /// Chunks in all.
    pub chunks_total: usize,
    /// Chunks verified so far.
    pub chunks_done: usize,
    /// What each provider did.
    pub providers: Vec<ProviderProgress>,
    /// The phase.
    pub state: TransferState,
}

/// One provider's part in a transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderProgress {
    /// Its peer id.
    pub peer: String,
    /// Chunks it served that verified.
    pub chunks: usize,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// Phase of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase", content = "detail")]
pub enum TransferState {
    /// Looking for providers.
    Finding,
    /// Downloading chunks.
    Running,
    /// Checking the whole artifact.
    Verifying,
    /// Stored and verified.
    Done,
    /// Gave up.
    Failed(String),
}

impl TransferProgress {
    /// A transfer of `info` that has not started.
    pub fn new(info: &ArtifactInfo) -> Self {
        Self {
            digest: info.digest,
            total_bytes: info.size,
            received_bytes: 0,
            resumed_bytes: 0,
            chunks_total: info.chunks.len(),
            chunks_done: 0,
            providers: Vec::new(),
            state: TransferState::Finding,
        }
    }
}

/// The staging files of a transfer.
pub(crate) struct Staging {
    pub(crate) part: PathBuf,
    have: PathBuf,
}

impl Staging {
    pub(crate) fn new(dir: &Path, digest: &Digest) -> Self {
        Self {
            part: dir.join(format!("{}.part", digest.to_hex())),
            have: dir.join(format!("{}.have", digest.to_hex())),
        }
    }

    /// Removes both files.
    pub(crate) fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.have);
    }

    pub(crate) fn finish(&self) {
        let _ = std::fs::remove_file(&self.have);
    }
}

/// Everything a transfer needs.
pub(crate) struct Transfer<'a> {
    pub(crate) handle: &'a NetworkHandle,
    pub(crate) reputation: &'a Arc<Reputation>,
    pub(crate) settings: &'a TransferSettings,
    pub(crate) manifest: &'a SignedManifest,
    pub(crate) staging: &'a Staging,
    pub(crate) progress: &'a watch::Sender<TransferProgress>,
}

/// What ended a transfer's download phase.
pub(crate) struct Downloaded {
    /// Providers that served at least one verified chunk.
    pub(crate) served_by: Vec<PeerId>,
}

impl Transfer<'_> {
    /// Downloads every missing chunk into the staging file. Returns when all
    /// chunks are in, or fails naming what was tried.
    pub(crate) async fn download(&self, providers: Vec<PeerId>) -> CoreResult<Downloaded> {
        let info = &self.manifest.manifest().artifact;
        let name = self.manifest.manifest().name().clone();
        let version = self.manifest.manifest().version().clone();
        let mut standby: VecDeque<PeerId> = self.reputation.rank(providers).into();
        let no_provider = || {
            CoreError::Network(format!(
                "no reachable provider holds {name}@{version} (sha256 {}); every known provider is blocked or none was found",
                info.digest
            ))
        };
        // Without a provider there is nothing to stage (unless resuming).
        if standby.is_empty() && !self.staging.part.exists() {
            return Err(no_provider());
        }
        let files = open_staging(self.staging, info).await?;
        let missing: VecDeque<usize> = (0..info.chunks.len()).filter(|index| !files.have[*index]).collect();
        let resumed = info.chunks.len() - missing.len();
        let resumed_bytes: u64 = (0..info.chunks.len())
            .filter(|index| files.have[*index])
            .filter_map(|i| info.chunk_range(i))
            .map(|(_, len)| u64::from(len))
            .sum();
        self.progress.send_modify(|p| {
            p.chunks_done = resumed;
            p.received_bytes = resumed_bytes;
            p.resumed_bytes = resumed_bytes;
            p.state = TransferState::Running;
        });
        if missing.is_empty() {
            return Ok(Downloaded { served_by: Vec::new() });
        }
        if standby.is_empty() {
            if !files.any() {
                self.staging.discard();
            }
            return Err(no_provider());
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(missing),
            dropped: Mutex::new(HashMap::new()),
            served: Mutex::new(HashMap::new()),
            latencies: Mutex::new(HashMap::new()),
        });
        let files = Arc::new(files);
        let chunk_timeout = Duration::from_millis(self.settings.chunk_timeout_ms.max(1));
        let mut workers = tokio::task::JoinSet::new();
        let mut live: HashMap<PeerId, usize> = HashMap::new();
        let mut idle: VecDeque<PeerId> = VecDeque::new();
        let mut tried = Vec::new();
        let launch = |peer: PeerId, workers: &mut tokio::task::JoinSet<PeerId>, live: &mut HashMap<PeerId, usize>| {
            for _ in 0..self.settings.requests_per_provider.max(1) {
                let worker = Worker {
                    peer,
                    handle: self.handle.clone(),
                    reputation: self.reputation.clone(),
                    shared: shared.clone(),
                    files: files.clone(),
                    info: info.clone(),
                    chunk_timeout,
                    progress: self.progress.clone(),
                };
                workers.spawn(worker.run());
                *live.entry(peer).or_default() += 1;
            }
        };
        let max_providers = self.settings.max_providers.max(1);
        loop {
            // Fill the provider slots: providers that ran dry but are still good
            // first (chunks can come back to the queue when another provider fails),
            // then fresh ones.
            while live.len() < max_providers && shared.has_work() {
                let peer = match idle.pop_front() {
                    Some(peer) => peer,
                    None => match standby.pop_front() {
                        Some(peer) => {
                            tried.push(peer);
                            self.progress.send_modify(|p| {
                                p.providers.push(ProviderProgress { peer: peer.to_string(), chunks: 0, dropped: None });
                            });
                            peer
                        }
                        None => break,
                    },
                };
                launch(peer, &mut workers, &mut live);
            }
            let Some(joined) = workers.join_next().await else { break };
            let Ok(peer) = joined else { continue };
            if let Some(count) = live.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    live.remove(&peer);
                    if !shared.is_dropped(&peer) {
                        idle.push_back(peer);
                    }
                }
            }
        }
        let latencies =
            std::mem::take(&mut *shared.latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (peer, samples) in latencies {
            let outcomes = samples.into_iter().map(|latency_ms| Outcome::Success { latency_ms }).collect();
            self.reputation.record_all(peer, outcomes).await;
        }
        if shared.has_work() || !files.complete() {
            let kept = files.any();
            if !kept {
                // Nothing verified: nothing worth resuming.
                self.staging.discard();
            }
            let dropped = shared.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let reasons: Vec<String> = tried
                .iter()
                .map(|peer| format!("{peer}: {}", dropped.get(peer).map_or("no answer", String::as_str)))
                .collect();
            let resume = if kept {
                "; the verified chunks are kept in tmp/downloads and the next fetch resumes from them"
            } else {
                ""
            };
            return Err(CoreError::Network(format!(
                "could not fetch {name}@{version}: {} of {} chunks are still missing after trying {} providers ({}){resume}",
                shared.queue_len(),
                info.chunks.len(),
                tried.len(),
                reasons.join("; ")
            )));
        }
        let served = shared.served.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Downloaded { served_by: served.keys().copied().collect() })
    }
}

struct Shared {
    queue: Mutex<VecDeque<usize>>,
    dropped: Mutex<HashMap<PeerId, String>>,
    served: Mutex<HashMap<PeerId, usize>>,
    /// Latencies of verified chunks per provider, written to the reputation table
    /// in one go when the transfer ends (one SQLite write per provider, not per chunk).
    latencies: Mutex<HashMap<PeerId, Vec<f64>>>,
}

impl Shared {
    fn next(&self) -> Option<usize> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front()
    }

    fn give_back(&self, index: usize) {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_front(index);
    }

    fn has_work(&self) -> bool {
        self.queue_len() > 0
    }

    fn queue_len(&self) -> usize {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn is_dropped(&self, peer: &PeerId) -> bool {
        self.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(peer)
    }

    fn drop_provider(&self, peer: PeerId, reason: String) -> bool {
        let mut dropped = self.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if dropped.contains_key(&peer) {
            return false;
        }
        dropped.insert(peer, reason);
        true
    }
}

/// The staging files, open, with the bitmap of verified chunks.
struct StagingFiles {
    part: std::fs::File,
    have_file: std::fs::File,
    have: Vec<bool>,
    done: Mutex<HashSet<usize>>,
}

impl StagingFiles {
    fn any(&self) -> bool {
        self.have.iter().any(|had| *had)
            || !self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    fn complete(&self) -> bool {
        let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.have.iter().enumerate().all(|(index, had)| *had || done.contains(&index))
    }
}

/// Opens (creating) the staging files and re-verifies chunks marked as had.
async fn open_staging(staging: &Staging, info: &ArtifactInfo) -> CoreResult<StagingFiles> {
    let (part_path, have_path, info) = (staging.part.clone(), staging.have.clone(), info.clone());
    let io = |path: &Path, error: std::io::Error| CoreError::Io(format!("{}: {error}", path.display()));
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let open =
            |path: &Path| std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path);
        let mut part = open(&part_path).map_err(|e| io(&part_path, e))?;
        let mut have_file = open(&have_path).map_err(|e| io(&have_path, e))?;
        let chunks = info.chunks.len();
        let mut marks = Vec::new();
        have_file.read_to_end(&mut marks).map_err(|e| io(&have_path, e))?;
        let part_len = part.metadata().map_err(|e| io(&part_path, e))?.len();
        if marks.len() != chunks || part_len != info.size {
            // Not a staging pair for this artifact (or a fresh one): start over.
            marks = vec![0; chunks];
            part.set_len(info.size).map_err(|e| io(&part_path, e))?;
            have_file.set_len(0).map_err(|e| io(&have_path, e))?;
            have_file.set_len(chunks as u64).map_err(|e| io(&have_path, e))?;
        }
        let mut have = vec![false; chunks];
        let mut buffer = Vec::new();
        for (index, mark) in marks.iter().enumerate() {
            if *mark != 1 {
                continue;
            }
            let Some((offset, len)) = info.chunk_range(index) else { continue };
            buffer.resize(len as usize, 0);
            part.seek(SeekFrom::Start(offset)).map_err(|e| io(&part_path, e))?;
            part.read_exact(&mut buffer).map_err(|e| io(&part_path, e))?;
            have[index] = Digest::of(&buffer) == info.chunks[index];
        }
        Ok(StagingFiles { part, have_file, have, done: Mutex::new(HashSet::new()) })
    })
    .await
    .map_err(|error| CoreError::Io(format!("staging task failed: {error}")))?
}

struct Worker {
    peer: PeerId,
    handle: NetworkHandle,
    reputation: Arc<Reputation>,
    shared: Arc<Shared>,
    files: Arc<StagingFiles>,
    info: ArtifactInfo,
    chunk_timeout: Duration,
    progress: watch::Sender<TransferProgress>,
}

impl Worker {
    async fn run(self) -> PeerId {
        while !self.shared.is_dropped(&self.peer) {
            let Some(index) = self.shared.next() else { break };
            let started = Instant::now();
            let request = ChunkRequest { digest: self.info.digest, index: index as u32 };
            let answer = tokio::time::timeout(self.chunk_timeout, self.handle.request_chunk(self.peer, request)).await;
            let failure = match answer {
                Ok(Ok(ChunkResponse::Data(bytes))) => {
                    let expected = self.info.chunk_range(index);
                    if expected.map(|(_, len)| len as usize) != Some(bytes.len())
                        || Digest::of(&bytes) != self.info.chunks[index]
                    {
                        Some((Outcome::Invalid, format!("sent a bad chunk {index}")))
                    } else {
                        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
                        match self.write(index, expected.map_or(0, |(offset, _)| offset), bytes).await {
                            Ok(len) => {
                                self.shared
                                    .latencies
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .entry(self.peer)
                                    .or_default()
                                    .push(latency_ms);
                                self.shared
                                    .served
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .entry(self.peer)
                                    .and_modify(|n| *n += 1)
                                    .or_insert(1);
                                let peer = self.peer.to_string();
                                self.progress.send_modify(|p| {
                                    p.chunks_done += 1;
                                    p.received_bytes += len;
                                    if let Some(provider) =
                                        p.providers.iter_mut().find(|provider| provider.peer == peer)
                                    {
                                        provider.chunks += 1;
                                    }
                                });
                                None
                            }
                            Err(error) => {
                                // Our disk, not the provider's fault: stop this worker.
                                tracing::error!(%error, "cannot write a downloaded chunk");
                                self.shared.give_back(index);
                                self.shared.drop_provider(self.peer, format!("local write failed: {error}"));
                                break;
                            }
                        }
                    }
                }
                Ok(Ok(other)) => Some((Outcome::Failure, format!("answered {other:?} for chunk {index}"))),
                Ok(Err(NetworkError::Timeout(_))) | Err(_) => {
                    Some((Outcome::Timeout, format!("stalled: no chunk within {:?}", self.chunk_timeout)))
                }
                Ok(Err(error)) => Some((Outcome::Failure, error.to_string())),
            };
            if let Some((outcome, reason)) = failure {
                self.shared.give_back(index);
                if self.shared.drop_provider(self.peer, reason.clone()) {
                    tracing::warn!(peer = %self.peer, %reason, digest = %self.info.digest, "provider dropped from transfer");
                    let peer = self.peer.to_string();
                    self.progress.send_modify(|p| {
                        if let Some(provider) = p.providers.iter_mut().find(|provider| provider.peer == peer) {
                            provider.dropped = Some(reason.clone());
                        }
                    });
                    self.reputation.record(self.peer, outcome).await;
                }
                break;
            }
        }
        self.peer
    }

    /// Writes a verified chunk at its offset and marks it had.
    async fn write(&self, index: usize, offset: u64, bytes: Vec<u8>) -> std::io::Result<u64> {
        let files = self.files.clone();
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || {
            write_at(&files.part, &bytes, offset)?;
            write_at(&files.have_file, &[1], index as u64)?;
            files.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(index);
            Ok(len)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_at(file: &std::fs::File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    let mut written = 0;
    while written < bytes.len() {
        written += file.seek_write(&bytes[written..], offset + written as u64)?;
    }
    Ok(())
}
