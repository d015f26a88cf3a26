//! The node's peer-to-peer side: starts the `agora-net` actor, answers its events
//! from the store (chunks, catalog pages, announcements, inbound records), keeps
//! the catalog converging (catalog sync with every new peer), and gives the
//! `Registry` methods their network fallbacks (DHT lookups, provider downloads).
//!
//! The network emits events; this module decides what to persist. SQLite and file
//! work runs on the blocking pool, never in the network task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use agora_core::{
    Artifact, ArtifactData, Digest, Error as CoreError, Manifest, PackageIndex, PackageName, Registry,
    Result as CoreResult, SignedManifest, SignedPackageIndex, Version,
};
use agora_net::{
    Announcement, ChunkRequest, ChunkResponse, MAX_SEARCH_RESPONSE, MAX_SYNC_RESPONSE, Multiaddr, NetworkConfig,
    NetworkEvent, NetworkHandle, PeerId, RecordKey, SearchEntry, SearchRequest, SearchResponse, SyncEntry, SyncRequest,
    SyncResponse, Verdict, Wire, peer_address,
};
use agora_store::{Ingested, Outcome};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::local::unix_now;
use crate::metrics::QueryOutcome;
use crate::node::{NetworkSummary, Node, NodeInner};
use crate::recent::RecentPeers;
use crate::reputation::Reputation;
use crate::transfer::{Staging, Transfer, TransferProgress, TransferState};
use crate::validator::OwnerValidator;
use crate::{Error, Result};

/// Packages per catalog-sync page.
const SYNC_PAGE: u16 = 256;
/// Upper bound on pages pulled from one peer in one sync.
const MAX_SYNC_PAGES: usize = 10_000;
/// Upper bound on the time one peer's sync may hold a sync slot.
const SYNC_BUDGET: Duration = Duration::from_secs(300);
/// Peers synced with at once; a peer that connects while all are taken is not
/// synced with (its packages come from the others, and gossip).
const SYNC_SLOTS: usize = 4;
/// A peer's catalog is pulled at most once in this long, however often it
/// reconnects.
const SYNC_COOLDOWN: Duration = Duration::from_secs(600);
/// A peer's addresses are saved (for re-dialing at the next start) at most once
/// in this long.
const SAVE_PEER_COOLDOWN: Duration = Duration::from_secs(600);
/// Peers remembered for each cooldown.
const RECENT_PEERS: usize = 4096;
/// Network events handled at once.
const EVENT_SLOTS: usize = 256;
/// Records from gossip and the DHT waiting for the catalog writer.
const INGEST_QUEUE: usize = 1024;
/// Names a [`Node::network_arrivals`] receiver may fall behind by.
const ARRIVALS: usize = 1024;
/// Most packages the writer commits in one transaction.
const INGEST_BATCH: usize = 256;
/// DHT puts and provides in flight during a republish.
const REPUBLISH_SLOTS: usize = 16;
/// Known peers re-dialed at start.
const REDIAL_PEERS: usize = 32;
/// Peers scoring below this are not asked for their catalog.
const MIN_SYNC_SCORE: f64 = 0.25;
/// How often expired bans are lifted.
const BAN_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Longest time spent answering one search request from a peer.
const SEARCH_ANSWER_BUDGET: Duration = Duration::from_secs(2);
/// Bytes of signed records in one search answer (under the frame limit).
const SEARCH_ANSWER_BYTES: usize = MAX_SEARCH_RESPONSE - 64 * 1024;

/// The running network of a node.
#[derive(Debug)]
pub(crate) struct Network {
    handle: NetworkHandle,
    validator: Arc<OwnerValidator>,
    state: Arc<State>,
    /// The catalog writer's queue: see [`ingest_writer`].
    ingest: tokio::sync::mpsc::Sender<IngestJob>,
    /// Names of packages the network brought into the catalog, once searchable.
    arrivals: tokio::sync::broadcast::Sender<PackageName>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct State {
    reputation: Arc<Reputation>,
    /// Peers whose catalog was pulled (or is being pulled) recently.
    synced: RecentPeers,
    /// Peers whose addresses were saved recently.
    saved: RecentPeers,
    /// One lock per artifact being downloaded, so concurrent fetches of the same
    /// artifact share one transfer. Entries are removed when the transfer ends.
    transfers: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    connected: AtomicUsize,
    /// Set once our records were pushed to a routable peer since we were last alone.
    pushed: std::sync::atomic::AtomicBool,
}

impl Drop for Network {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

/// Starts the network for `node`: the actor, the event loop, re-dials of known
/// peers and the republish of what this node owns and holds.
pub(crate) async fn start(node: &Node) -> Result<()> {
    let settings = &node.config().network;
    let config_error = |message: String| Error::Config { origin: "network".into(), message };
    let parse = |addresses: &[String]| -> Result<Vec<Multiaddr>> {
        addresses
            .iter()
            .map(|a| a.parse().map_err(|e| config_error(format!("`{a}` is not a multiaddr: {e}"))))
            .collect()
    };
    let mut config = NetworkConfig::new(node.identity_seed());
    config.listen = parse(&settings.listen)?;
    config.bootstrap = parse(&settings.bootstrap)?;
    config.query_timeout = Duration::from_millis(settings.query_timeout_ms);
    config.request_timeout = Duration::from_millis(settings.request_timeout_ms);
    config.metrics = Some(node.metrics().registry());
    config.link = settings.link;
    config.peers = agora_net::PeerBudget::new(settings.max_peers as usize);

    let store = node.store().clone();
    let owners = blocking(move || store.catalog().owners()).await?;
    let validator = Arc::new(OwnerValidator::new(owners));
    let (handle, events, actor) =
        agora_net::spawn(config, validator.clone()).await.map_err(|error| config_error(error.to_string()))?;
    tokio::fs::create_dir_all(downloads_dir(node)).await.map_err(|error| Error::io(downloads_dir(node), error))?;
    remove_stale_staging(&downloads_dir(node)).await;

    let reputation_store = node.store().clone();
    let reputation_settings = node.config().reputation.clone();
    let reputation_network = handle.clone();
    let reputation =
        Arc::new(blocking(move || Reputation::load(reputation_store, reputation_settings, reputation_network)).await?);
    reputation.block_banned().await;
    let state = Arc::new(State {
        reputation,
        synced: RecentPeers::new(SYNC_COOLDOWN, RECENT_PEERS),
        saved: RecentPeers::new(SAVE_PEER_COOLDOWN, RECENT_PEERS),
        transfers: Mutex::new(HashMap::new()),
        connected: AtomicUsize::new(0),
        pushed: std::sync::atomic::AtomicBool::new(false),
    });
    let (ingest, jobs) = tokio::sync::mpsc::channel(INGEST_QUEUE);
    let writer = tokio::spawn(ingest_writer(node.downgrade(), validator.clone(), jobs));
    let network = Network {
        handle: handle.clone(),
        validator,
        state: state.clone(),
        ingest,
        arrivals: tokio::sync::broadcast::channel(ARRIVALS).0,
        tasks: Mutex::new(vec![actor, writer]),
    };
    tracing::info!(peer_id = %network.handle.peer_id(), "network started");
    // Installed before the event loop starts, so no early event finds it missing.
    node.set_network(network);
    let service = tokio::spawn(event_loop(node.downgrade(), handle.clone(), state, events));
    let warmup = tokio::spawn(warm_up(node.downgrade(), handle));
    let bans = tokio::spawn(lift_expired_bans(state_of(node)));
    if let Some(network) = node.network() {
        network.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend([service, warmup, bans]);
    }
    Ok(())
}

impl Network {
    pub(crate) fn handle(&self) -> &NetworkHandle {
        &self.handle
    }

    pub(crate) async fn summary(&self) -> CoreResult<NetworkSummary> {
        let status = self.handle.status().await.map_err(network_error)?;
        Ok(NetworkSummary {
            peer_id: status.peer_id.to_string(),
            listen_addrs: status.listen_addrs.iter().map(|a| peer_address(a, status.peer_id).to_string()).collect(),
            connected_peers: status.connected_peers.iter().map(ToString::to_string).collect(),
            routing_table_size: status.routing_table_size,
            dht_records: status.dht_records,
            dht_provided: status.dht_provided,
        })
    }

    pub(crate) async fn shutdown(&self) {
        self.handle.shutdown().await;
        let tasks: Vec<JoinHandle<()>> =
            self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..).collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }

    /// Connected peers to ask in a search: the best `count` by reputation (blocked
    /// peers never), each with its latency EWMA in milliseconds if known.
    pub(crate) async fn search_peers(&self, count: usize) -> CoreResult<Vec<(PeerId, Option<f64>)>> {
        let connected = self.handle.connected_peers().await.map_err(network_error)?;
        let reputation = &self.state.reputation;
        Ok(reputation
            .rank(connected)
            .into_iter()
            .take(count)
            .map(|peer| (peer, reputation.latency_ms(&peer)))
            .collect())
    }

    /// Records an outcome of an exchange with `peer` (invalid data strikes, and
    /// may block it).
    pub(crate) async fn record(&self, peer: PeerId, outcome: Outcome) {
        match outcome {
            Outcome::Invalid => strike(&self.state, peer, "invalid data").await,
            outcome => {
                self.state.reputation.record(peer, outcome).await;
            }
        }
    }

    /// Verifies and stores a peer's search answer (each entry a signed index and
    /// the signed manifest of one of its versions) with the atomic ingestion
    /// catalog sync uses. Any forged, malformed, mismatched or rule-breaking entry,
    /// or more entries than asked for, strikes the peer once; the valid entries
    /// are stored all the same.
    pub(crate) async fn ingest_search_answer(
        &self,
        node: &Node,
        peer: PeerId,
        limit: u16,
        response: SearchResponse,
    ) -> SearchAnswer {
        let mut invalid: Option<String> = None;
        if response.entries.len() > usize::from(limit) {
            invalid = Some(format!("search answer has {} hits where {limit} were asked for", response.entries.len()));
        }
        let mut batch = Vec::with_capacity(response.entries.len());
        for entry in response.entries.into_iter().take(usize::from(limit)) {
            let decoded = SignedPackageIndex::from_bytes(&entry.index)
                .and_then(|index| Ok((index, SignedManifest::from_bytes(&entry.manifest)?)));
            match decoded {
                Ok((index, manifest)) if manifest.manifest().name() == &index.index().name => {
                    batch.push((index, vec![manifest]));
                }
                Ok((index, manifest)) => {
                    invalid.get_or_insert_with(|| {
                        format!(
                            "search hit pairs the index of `{}` with a manifest of `{}`",
                            index.index().name,
                            manifest.manifest().name()
                        )
                    });
                }
                Err(error) => {
                    invalid.get_or_insert_with(|| format!("search sent an invalid record: {error}"));
                }
            }
        }
        let names: Vec<PackageName> = batch.iter().map(|(index, _)| index.index().name.clone()).collect();
        let mut valid = true;
        match ingest(node, &self.validator, batch).await {
            Ok(outcomes) => {
                if let Some(error) = first_violation(outcomes) {
                    invalid.get_or_insert_with(|| format!("search sent records breaking the rules: {error}"));
                }
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "could not store a search answer");
                valid = false;
            }
        }
        if let Some(reason) = &invalid {
            strike(&self.state, peer, reason).await;
            valid = false;
        }
        SearchAnswer { names, valid }
    }

    /// Looks a record up in the DHT, counted in the node's DHT query metrics:
    /// an answer (found or not) is a success, running out of time partial, any
    /// other error a failure.
    async fn get_record(&self, node: &Node, key: RecordKey) -> CoreResult<Option<Vec<u8>>> {
        let span = tracing::debug_span!(
            "dht_get",
            %key,
            found = tracing::field::Empty,
            latency_ms = tracing::field::Empty
        );
        let timer = node.metrics().dht_get.start();
        let result = self.handle.get_record(key).instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => QueryOutcome::Success,
            Err(agora_net::NetworkError::Timeout(_)) => QueryOutcome::Partial,
            Err(_) => QueryOutcome::Failed,
        };
        let latency = timer.finish(outcome);
        span.record("found", matches!(result, Ok(Some(_))));
        span.record("latency_ms", latency.as_secs_f64() * 1e3);
        result.map_err(network_error)
    }

    /// Invalid responses recorded against a peer (bad records, garbage, bad chunks).
    pub(crate) fn strikes(&self, peer: &PeerId) -> u32 {
        self.state.reputation.invalid(peer).min(u64::from(u32::MAX)) as u32
    }

    /// Puts the records of a new version in the DHT, provides its artifact and
    /// announces it, without making the publisher wait. Failures are logged: a
    /// lone node publishes fine and pushes its records when peers appear.
    pub(crate) fn publish_in_background(&self, manifest: SignedManifest, index: SignedPackageIndex) {
        // Our own names are known owners from now on, in the DHT store too.
        self.validator.learn(&index.index().name, &index.index().owner);
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let inner = manifest.manifest();
            let name = inner.name().clone();
            let announcement = Announcement::Publish { manifest: manifest.to_bytes(), index: index.to_bytes() };
            let (index_put, manifest_put, provided, announced) = tokio::join!(
                handle.put_record(RecordKey::Index(name.clone()), index.to_bytes()),
                handle.put_record(RecordKey::Manifest(name.clone(), inner.version().clone()), manifest.to_bytes()),
                handle.start_providing(inner.artifact.digest),
                handle.announce(announcement.encode()),
            );
            tracing::info!(
                package = %name,
                version = %inner.version(),
                index_put = ?index_put.err(),
                manifest_put = ?manifest_put.err(),
                provided = ?provided.err(),
                announced = ?announced,
                "published to the network"
            );
        });
    }

    /// Puts and announces an index update (a yank) in the background.
    pub(crate) fn announce_index_in_background(&self, index: SignedPackageIndex) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let name = index.index().name.clone();
            let announcement = Announcement::Index { index: index.to_bytes() };
            let (put, announced) = tokio::join!(
                handle.put_record(RecordKey::Index(name.clone()), index.to_bytes()),
                handle.announce(announcement.encode())
            );
            tracing::info!(package = %name, put = ?put.err(), announced = ?announced, "index update sent to the network");
        });
    }

    /// Looks up the index of `name` in the DHT, verifies it and stores it.
    pub(crate) async fn index_from_dht(&self, node: &Node, name: &PackageName) -> CoreResult<SignedPackageIndex> {
        let value = self
            .get_record(node, RecordKey::Index(name.clone()))
            .await?
            .ok_or_else(|| CoreError::PackageNotFound(name.clone()))?;
        let index = SignedPackageIndex::from_bytes(&value)?;
        if &index.index().name != name {
            return Err(CoreError::InvalidIndex(format!(
                "the DHT returned the index of `{}` for `{name}`",
                index.index().name
            )));
        }
        self.ingest_one(index.clone(), Vec::new()).await?;
        // What the catalog holds now (it may have had a newer copy).
        node.local().get_package(name).await
    }

    /// Looks up the manifest of `name@version` in the DHT (and the index, if the
    /// local one does not list the version), verifies and stores both.
    pub(crate) async fn manifest_from_dht(
        &self,
        node: &Node,
        name: &PackageName,
        version: &Version,
    ) -> CoreResult<SignedManifest> {
        let index = match node.local().get_package(name).await {
            Ok(index) if index.index().entry(version).is_some() => index,
            Ok(_) | Err(CoreError::PackageNotFound(_)) => self.index_from_dht(node, name).await?,
            Err(error) => return Err(error),
        };
        if index.index().entry(version).is_none() {
            return Err(CoreError::VersionNotFound { name: name.clone(), version: version.clone() });
        }
        let value = self
            .get_record(node, RecordKey::Manifest(name.clone(), version.clone()))
            .await?
            .ok_or_else(|| CoreError::VersionNotFound { name: name.clone(), version: version.clone() })?;
        let manifest = SignedManifest::from_bytes(&value)?;
        self.ingest_one(index, vec![manifest]).await?;
        node.local().get_version(name, version).await
    }

    /// Downloads the artifact of `manifest` from the network (see
    /// [`crate::transfer`]), stores it after verifying it whole, applies the
    /// storage limit, and makes this node a provider. Concurrent calls for the same
    /// artifact share one transfer.
    pub(crate) async fn download(
        &self,
        node: &Node,
        manifest: SignedManifest,
        progress: &watch::Sender<TransferProgress>,
    ) -> CoreResult<Artifact> {
        let info = manifest.manifest().artifact.clone();
        let (name, version) = (manifest.manifest().name().clone(), manifest.manifest().version().clone());
        let limit = node.config().max_artifact_size;
        if info.size > limit {
            return Err(CoreError::ArtifactTooLarge { size: info.size, limit });
        }
        let lock = {
            let mut transfers = self.state.transfers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            transfers.entry(info.digest).or_default().clone()
        };
        let guard = lock.lock().await;
        // Another fetch of the same artifact may have finished while we waited.
        if let Ok(artifact) = node.local().fetch_artifact(&name, &version).await {
            progress.send_modify(|p| {
                p.received_bytes = p.total_bytes;
                p.chunks_done = p.chunks_total;
                p.state = TransferState::Done;
            });
            return Ok(artifact);
        }
        let result = self.transfer(node, &manifest, progress).await;
        drop(guard);
        self.state.transfers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&info.digest);
        match result {
            Ok(path) => {
                progress.send_modify(|p| p.state = TransferState::Done);
                tracing::info!(package = %name, %version, digest = %info.digest, "artifact fetched from the network");
                Ok(Artifact { manifest, data: ArtifactData::File(path) })
            }
            Err(error) => {
                progress.send_modify(|p| p.state = TransferState::Failed(error.to_string()));
                Err(error)
            }
        }
    }

    async fn transfer(
        &self,
        node: &Node,
        manifest: &SignedManifest,
        progress: &watch::Sender<TransferProgress>,
    ) -> CoreResult<std::path::PathBuf> {
        let info = manifest.manifest().artifact.clone();
        let staging = Staging::new(&downloads_dir(node), &info.digest);
        let providers = self.handle.get_providers(info.digest).await.map_err(network_error)?;
        let transfer = Transfer {
            handle: &self.handle,
            reputation: &self.state.reputation,
            settings: &node.config().transfer,
            manifest,
            staging: &staging,
            progress,
        };
        let downloaded = transfer.download(providers).await?;
        progress.send_modify(|p| p.state = TransferState::Verifying);
        let store = node.store().clone();
        let part = staging.part.clone();
        let max_cached = node.config().storage.max_cached_bytes.max(info.size);
        let expected = info.clone();
        let stored = blocking(move || {
            let stored = store.artifacts().adopt_chunk_verified(&expected, &part)?;
            store.catalog().record_artifact(&expected.digest, expected.size, false, unix_now())?;
            let evicted = store.evict(max_cached)?;
            Ok((stored.path, evicted))
        })
        .await;
        let (path, evicted) = match stored {
            Ok(stored) => stored,
            Err(error) => {
                // The chunks verified but the whole does not: the manifest lies
                // about its chunks. Nothing to resume from.
                staging.discard();
                return Err(error);
            }
        };
        staging.finish();
        let handle = self.handle.clone();
        let digest = info.digest;
        tokio::spawn(async move {
            for gone in evicted {
                handle.stop_providing(gone).await;
            }
            if let Err(error) = handle.start_providing(digest).await {
                tracing::debug!(%digest, %error, "providing after download");
            }
        });
        for peer in downloaded.served_by {
            let store = node.store().clone();
            let id = peer.to_string();
            let _ = blocking(move || store.catalog().add_packages_provided(&id, 1, unix_now())).await;
        }
        Ok(path)
    }
}

/// What became of a peer's search answer.
#[derive(Debug)]
pub(crate) struct SearchAnswer {
    /// Packages of the entries that verified (stored, or already known).
    pub(crate) names: Vec<PackageName>,
    /// False when the answer held anything invalid (the peer was struck) or
    /// could not be stored.
    pub(crate) valid: bool,
}

/// Records invalid data from `peer` (its reputation blocks it past the threshold).
async fn strike(state: &State, peer: PeerId, reason: &str) {
    tracing::warn!(%peer, reason, "invalid data from peer");
    state.reputation.record(peer, Outcome::Invalid).await;
}

/// Lifts bans whose time ran out, every few seconds.
async fn lift_expired_bans(state: Option<Arc<State>>) {
    let Some(state) = state else { return };
    let mut ticks = tokio::time::interval(BAN_CHECK_INTERVAL);
    loop {
        ticks.tick().await;
        state.reputation.expire_bans().await;
    }
}

fn state_of(node: &Node) -> Option<Arc<State>> {
    node.network().map(|network| network.state.clone())
}

/// Staging files of transfers untouched for a day are not worth resuming.
async fn remove_stale_staging(dir: &std::path::Path) {
    let dir = dir.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > Duration::from_secs(86_400)));
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    })
    .await;
}

fn downloads_dir(node: &Node) -> std::path::PathBuf {
    node.data_dir().join("tmp").join("downloads")
}

pub(crate) fn network_error(error: agora_net::NetworkError) -> CoreError {
    CoreError::Network(error.to_string())
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> agora_store::Result<T> + Send + 'static) -> CoreResult<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(CoreError::from),
        Err(error) => Err(CoreError::Storage(format!("store task failed: {error}"))),
    }
}

/// Stores verified records from the network in one transaction: each index
/// first (trust on first use, successor rules), then its manifests, each package
/// in its own savepoint. Per package, in batch order: `Ok(true)` when something
/// was stored, `Ok(false)` when nothing was new, `Err` when it broke a rule (it
/// alone is rolled back). `Err` overall when the store itself failed.
async fn ingest(
    node: &Node,
    validator: &OwnerValidator,
    batch: Vec<(SignedPackageIndex, Vec<SignedManifest>)>,
) -> CoreResult<Vec<CoreResult<bool>>> {
    let store = node.store().clone();
    let (owners, batch): (Vec<(PackageName, agora_core::PublicKey)>, Vec<_>) = batch
        .into_iter()
        .map(|(index, manifests)| ((index.index().name.clone(), index.index().owner), (index, manifests)))
        .unzip();
    let outcomes = blocking(move || store.catalog().ingest_packages(&batch)).await?;
    let outcomes: Vec<CoreResult<bool>> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(Ingested::Inserted | Ingested::Updated(_)) => Ok(true),
            Ok(Ingested::Unchanged | Ingested::Stale) => Ok(false),
            Err(error) => Err(CoreError::from(error)),
        })
        .collect();
    let mut arrived = Vec::new();
    for ((name, owner), outcome) in owners.into_iter().zip(&outcomes) {
        if matches!(outcome, Ok(true)) {
            validator.learn(&name, &owner);
            node.local().invalidate_package(&name).await;
            arrived.push(name);
        }
    }
    if !arrived.is_empty() {
        node.local().invalidate_searches();
        if let Some(network) = node.network() {
            for name in arrived {
                // No receiver is not an error.
                let _ = network.arrivals.send(name);
            }
        }
    }
    Ok(outcomes)
}

/// The first rule violation (bad owner, rewritten version…) among `outcomes`.
fn first_violation(outcomes: Vec<CoreResult<bool>>) -> Option<CoreError> {
    outcomes.into_iter().filter_map(Result::err).find(CoreError::is_invalid_input)
}

/// One package waiting for the catalog writer, and where its outcome goes.
#[derive(Debug)]
struct IngestJob {
    index: SignedPackageIndex,
    manifests: Vec<SignedManifest>,
    reply: tokio::sync::oneshot::Sender<CoreResult<bool>>,
}

/// The catalog writer for records that arrive one at a time (gossip, DHT
/// puts and lookups): it takes everything queued since its last commit, up to
/// [`INGEST_BATCH`] packages, as one transaction. A burst of announcements costs
/// one commit instead of one each; a lone record waits for no timer.
async fn ingest_writer(
    node: Weak<NodeInner>,
    validator: Arc<OwnerValidator>,
    mut jobs: tokio::sync::mpsc::Receiver<IngestJob>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < INGEST_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(node) = Node::upgrade(&node) else { break };
        let (records, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|job| ((job.index, job.manifests), job.reply)).unzip();
        match ingest(&node, &validator, records).await {
            Ok(outcomes) => {
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

impl Network {
    pub(crate) fn arrivals(&self) -> tokio::sync::broadcast::Receiver<PackageName> {
        self.arrivals.subscribe()
    }

    /// Ingests one package through the catalog writer; a rule violation is
    /// returned as the error. `Ok(true)` when something was stored.
    async fn ingest_one(&self, index: SignedPackageIndex, manifests: Vec<SignedManifest>) -> CoreResult<bool> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let stopped = || CoreError::Storage("the catalog writer has stopped".into());
        self.ingest.send(IngestJob { index, manifests, reply }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn event_loop(
    node: Weak<NodeInner>,
    handle: NetworkHandle,
    state: Arc<State>,
    mut events: tokio::sync::mpsc::Receiver<NetworkEvent>,
) {
    let slots = Arc::new(Semaphore::new(EVENT_SLOTS));
    let sync_slots = Arc::new(Semaphore::new(SYNC_SLOTS));
    while let Some(event) = events.recv().await {
        let Some(node) = Node::upgrade(&node) else { break };
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (handle, state, sync_slots) = (handle.clone(), state.clone(), sync_slots.clone());
        tokio::spawn(async move {
            on_event(&node, &handle, &state, &sync_slots, event).await;
            drop(permit);
        });
    }
    tracing::debug!("network event loop ended");
}

async fn on_event(
    node: &Node,
    handle: &NetworkHandle,
    state: &Arc<State>,
    sync_slots: &Arc<Semaphore>,
    event: NetworkEvent,
) {
    let Some(network) = node.network() else { return };
    match event {
        NetworkEvent::Announcement { id, data } => {
            let source = id.propagation_source();
            let verdict = judge_announcement(network, &data).await;
            if let Err(reason) = &verdict {
                strike(state, source, reason).await;
            }
            let verdict = verdict.unwrap_or(Verdict::Reject);
            handle.report_announcement(id, verdict).await;
        }
        NetworkEvent::ChunkRequested { peer, request, reply } => {
            let span = inbound_span(peer, "artifact");
            async {
                let response = answer_chunk(node, request).await;
                let outcome = match &response {
                    ChunkResponse::Data(_) => "served",
                    ChunkResponse::NotFound => "not_found",
                    ChunkResponse::OutOfRange => "out_of_range",
                    ChunkResponse::Unavailable => "unavailable",
                };
                tracing::Span::current().record("outcome", outcome);
                handle.respond_chunk(reply, response).await;
            }
            .instrument(span)
            .await;
        }
        NetworkEvent::SyncRequested { peer, request, reply } => {
            let span = inbound_span(peer, "sync");
            async {
                let (response, outcome) = answer_sync(node, request).await;
                tracing::Span::current().record("outcome", outcome);
                handle.respond_sync(reply, response).await;
            }
            .instrument(span)
            .await;
        }
        NetworkEvent::SearchRequested { peer, request, reply } => {
            let span = inbound_span(peer, "search");
            async {
                let (response, outcome) = answer_search(node, request).await;
                tracing::Span::current().record("outcome", outcome);
                handle.respond_search(reply, response).await;
            }
            .instrument(span)
            .await;
        }
        NetworkEvent::PeerConnected { peer, .. } => {
            state.connected.fetch_add(1, Ordering::SeqCst);
            // Catalogs come from peers in good standing only, each at most once
            // per cooldown, and only while a sync slot is free: the event slot is
            // not held while the sync runs.
            if node.config().network.catalog_sync
                && state.reputation.score(&peer) >= MIN_SYNC_SCORE
                && let Ok(slot) = sync_slots.clone().try_acquire_owned()
                && state.synced.claim(peer, std::time::Instant::now())
            {
                let (node, handle, state) = (node.clone(), handle.clone(), state.clone());
                tokio::spawn(async move {
                    sync_with(&node, &handle, &state, peer).await;
                    drop(slot);
                });
            }
        }
        NetworkEvent::PeerDisconnected { .. } => {
            if state.connected.fetch_sub(1, Ordering::SeqCst) == 1 {
                state.pushed.store(false, Ordering::SeqCst);
            }
        }
        NetworkEvent::PeerIdentified { peer, listen_addrs } => {
            // Identified peers are in the routing table: the first one after being
            // alone is where our records can go.
            if !state.pushed.swap(true, Ordering::SeqCst) {
                tokio::spawn(republish(node.downgrade(), handle.clone()));
            }
            // Saved for re-dialing at the next start; a peer that keeps
            // reconnecting is written once per cooldown, not per connection.
            if !state.saved.claim(peer, std::time::Instant::now()) {
                return;
            }
            let addresses: Vec<String> = listen_addrs.iter().map(|a| peer_address(a, peer).to_string()).collect();
            let store = node.store().clone();
            let peer_id = peer.to_string();
            if let Err(error) = blocking(move || store.catalog().save_peer(&peer_id, &addresses, unix_now())).await {
                tracing::warn!(%peer, %error, "could not remember a peer");
            }
        }
        NetworkEvent::RecordReceived { peer, key, value } => {
            let outcome = match &key {
                RecordKey::Index(_) => match SignedPackageIndex::from_bytes(&value) {
                    Ok(index) => network.ingest_one(index, Vec::new()).await.map(|_| true),
                    Err(error) => Err(error),
                },
                RecordKey::Manifest(name, _) => {
                    match (SignedManifest::from_bytes(&value), node.local().get_package(name).await) {
                        (Ok(manifest), Ok(index)) => network.ingest_one(index, vec![manifest]).await.map(|_| true),
                        (Err(error), _) => Err(error),
                        // A manifest for a package we do not know: not ours to keep.
                        (Ok(_), Err(_)) => Ok(false),
                    }
                }
            };
            match outcome {
                // The catalog accepted it (or already had it): serve it from the DHT store too.
                Ok(true) => handle.store_record(key, value).await,
                Ok(false) => {}
                Err(error) if error.is_invalid_input() => {
                    strike(state, peer, &format!("stored an invalid record: {error}")).await;
                }
                Err(error) => tracing::warn!(%peer, %error, "could not check an inbound record"),
            }
        }
        NetworkEvent::PeerMisbehaved { peer, reason } => strike(state, peer, &reason).await,
    }
}

/// The span of one inbound request; `outcome` is recorded when it is answered.
fn inbound_span(peer: PeerId, protocol: &'static str) -> tracing::Span {
    tracing::debug_span!("inbound", %peer, protocol, outcome = tracing::field::Empty)
}

/// A chunk of an artifact this node holds, re-verified before it is sent.
async fn answer_chunk(node: &Node, request: ChunkRequest) -> ChunkResponse {
    let store = node.store().clone();
    blocking(move || {
        let Some(manifest) = store.catalog().manifest_for_digest(&request.digest)? else {
            return Ok(ChunkResponse::NotFound);
        };
        let info = &manifest.manifest().artifact;
        if request.index as usize >= info.chunks.len() {
            return Ok(ChunkResponse::OutOfRange);
        }
        match store.artifacts().read_chunk(info, request.index as usize) {
            Ok(Some(bytes)) => Ok(ChunkResponse::Data(bytes)),
            Ok(None) => Ok(ChunkResponse::NotFound),
            Err(error) => {
                tracing::error!(digest = %request.digest, %error, "not serving a chunk that fails verification");
                Ok(ChunkResponse::Unavailable)
            }
        }
    })
    .await
    .unwrap_or(ChunkResponse::Unavailable)
}

/// A page of this node's catalog.
async fn answer_sync(node: &Node, request: SyncRequest) -> (SyncResponse, &'static str) {
    let store = node.store().clone();
    let limit = usize::from(request.limit.min(SYNC_PAGE));
    let after = request.after;
    let page = blocking(move || store.catalog().page(after.as_ref(), limit, MAX_SYNC_RESPONSE - 1024 * 1024)).await;
    match page {
        Ok((entries, next)) => {
            let entries = entries.into_iter().map(|e| SyncEntry { index: e.index, manifests: e.manifests }).collect();
            (SyncResponse { entries, next }, "served")
        }
        Err(error) => {
            tracing::error!(%error, "could not read a catalog page for a peer");
            (SyncResponse::default(), "error")
        }
    }
}

/// Searches this node's own catalog for a peer: up to `limit` hits in score
/// order, each as its signed index and the signed manifest of its default
/// version, within [`SEARCH_ANSWER_BYTES`] and [`SEARCH_ANSWER_BUDGET`]. An
/// answer that runs out of time is empty.
async fn answer_search(node: &Node, request: SearchRequest) -> (SearchResponse, &'static str) {
    let mut query = agora_core::Query::new(request.text);
    query.categories = request.categories;
    query.tags = request.tags;
    query.publisher = request.publisher;
    query.limit = u32::from(request.limit);
    if let Err(error) = query.validate() {
        tracing::debug!(%error, "refusing a search request");
        return (SearchResponse::default(), "invalid");
    }
    let store = node.store().clone();
    let work = blocking(move || {
        let catalog = store.catalog();
        let results = catalog.search(&query)?;
        let mut entries = Vec::with_capacity(results.hits.len());
        let mut bytes = 0usize;
        for hit in results.hits {
            let (Some(index), Some(manifest)) =
                (catalog.package(&hit.name)?, catalog.manifest(&hit.name, &hit.version)?)
            else {
                continue;
            };
            let entry = SearchEntry { index: index.to_bytes(), manifest: manifest.to_bytes() };
            let size = entry.index.len() + entry.manifest.len() + 8;
            if bytes + size > SEARCH_ANSWER_BYTES {
                break;
            }
            bytes += size;
            entries.push(entry);
        }
        Ok(entries)
    });
    match tokio::time::timeout(SEARCH_ANSWER_BUDGET, work).await {
        Ok(Ok(entries)) if entries.is_empty() => (SearchResponse::default(), "no_hits"),
        Ok(Ok(entries)) => (SearchResponse { entries }, "served"),
        Ok(Err(error)) => {
            tracing::error!(%error, "could not search the catalog for a peer");
            (SearchResponse::default(), "error")
        }
        Err(_) => {
            tracing::warn!("a peer's search ran out of time; answering with no hits");
            (SearchResponse::default(), "timeout")
        }
    }
}

/// Decides on an announcement. `Err(reason)` means reject and strike.
async fn judge_announcement(network: &Network, data: &[u8]) -> Result<Verdict, String> {
    let announcement = Announcement::decode(data).map_err(|reason| format!("malformed announcement: {reason}"))?;
    let (index, manifests) = match announcement {
        Announcement::Publish { manifest, index } => {
            let index = SignedPackageIndex::from_bytes(&index).map_err(|e| e.to_string())?;
            let manifest = SignedManifest::from_bytes(&manifest).map_err(|e| e.to_string())?;
            (index, vec![manifest])
        }
        Announcement::Index { index } => {
            (SignedPackageIndex::from_bytes(&index).map_err(|e| e.to_string())?, Vec::new())
        }
    };
    match network.ingest_one(index, manifests).await {
        Ok(true) => Ok(Verdict::Accept),
        Ok(false) => Ok(Verdict::Ignore),
        Err(error) if error.is_invalid_input() => Err(error.to_string()),
        Err(error) => {
            tracing::warn!(%error, "could not store an announcement");
            Ok(Verdict::Ignore)
        }
    }
}

/// Decodes and verifies a sync page (blocking: two or more ed25519 checks per
/// package). Returns the valid packages and a reason to strike per invalid record.
fn verify_page(entries: Vec<SyncEntry>) -> (Vec<(SignedPackageIndex, Vec<SignedManifest>)>, Vec<String>) {
    let mut batch = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for entry in entries {
        let index = match SignedPackageIndex::from_bytes(&entry.index) {
            Ok(index) => index,
            Err(error) => {
                problems.push(format!("sync sent an invalid index: {error}"));
                continue;
            }
        };
        let mut manifests = Vec::with_capacity(entry.manifests.len());
        for bytes in entry.manifests {
            match SignedManifest::from_bytes(&bytes) {
                Ok(manifest) => manifests.push(manifest),
                Err(error) => problems.push(format!("sync sent an invalid manifest: {error}")),
            }
        }
        batch.push((index, manifests));
    }
    (batch, problems)
}

/// Waits for a sync page to be stored: how many packages changed, or `None`
/// when the store failed (the sync stops). Rule breakers are struck.
async fn store_page(
    state: &Arc<State>,
    peer: PeerId,
    storing: JoinHandle<CoreResult<Vec<CoreResult<bool>>>>,
) -> Option<usize> {
    match storing.await {
        Ok(Ok(outcomes)) => {
            let changed = outcomes.iter().filter(|outcome| matches!(outcome, Ok(true))).count();
            if let Some(error) = first_violation(outcomes) {
                strike(state, peer, &format!("sync sent records breaking the rules: {error}")).await;
            }
            Some(changed)
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "catalog sync could not store a page");
            None
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "catalog sync's store task failed");
            None
        }
    }
}

/// Pulls `peer`'s catalog page by page and stores what is new and valid; the
/// next page is requested and verified while the previous one is stored.
async fn sync_with(node: &Node, handle: &NetworkHandle, state: &Arc<State>, peer: PeerId) {
    let Some(network) = node.network() else { return };
    let mut after: Option<PackageName> = None;
    let mut stored = 0usize;
    // The previous page, being stored: at most one page waits for the catalog.
    let mut storing: Option<JoinHandle<CoreResult<Vec<CoreResult<bool>>>>> = None;
    let started = std::time::Instant::now();
    for _ in 0..MAX_SYNC_PAGES {
        if started.elapsed() > SYNC_BUDGET {
            tracing::warn!(%peer, "catalog sync ran out of time; the rest comes with the next connection");
            break;
        }
        let asked = std::time::Instant::now();
        let page = match handle.request_sync(peer, SyncRequest { after: after.clone(), limit: SYNC_PAGE }).await {
            Ok(page) => {
                let latency_ms = asked.elapsed().as_secs_f64() * 1e3;
                state.reputation.record(peer, Outcome::Success { latency_ms }).await;
                page
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "catalog sync stopped");
                let outcome = if matches!(error, agora_net::NetworkError::Timeout(_)) {
                    Outcome::Timeout
                } else {
                    Outcome::Failure
                };
                state.reputation.record(peer, outcome).await;
                break;
            }
        };
        // Verify this page on the blocking pool while the previous one is being
        // stored, then store it while the next one is requested and verified.
        let entries = page.entries;
        let Ok((batch, problems)) = tokio::task::spawn_blocking(move || verify_page(entries)).await else { break };
        for reason in problems {
            strike(state, peer, &reason).await;
        }
        if let Some(previous) = storing.take() {
            match store_page(state, peer, previous).await {
                Some(count) => stored += count,
                None => break,
            }
        }
        let (owner, validator) = (node.clone(), network.validator.clone());
        storing = Some(tokio::spawn(async move { ingest(&owner, &validator, batch).await }));
        match page.next {
            Some(next) if after.as_ref().is_none_or(|previous| &next > previous) => after = Some(next),
            Some(_) => {
                strike(state, peer, "sync cursor did not advance").await;
                break;
            }
            None => break,
        }
    }
    if let Some(last) = storing.take() {
        stored += store_page(state, peer, last).await.unwrap_or(0);
    }
    if stored > 0 {
        tracing::info!(%peer, packages = stored, "catalog sync stored new records");
    }
}

/// At start: re-dial peers known from earlier runs, then republish.
async fn warm_up(node: Weak<NodeInner>, handle: NetworkHandle) {
    if let Some(strong) = Node::upgrade(&node) {
        let store = strong.store().clone();
        drop(strong);
        match blocking(move || store.catalog().known_peers(REDIAL_PEERS)).await {
            Ok(peers) => {
                for peer in peers {
                    let Some(address) = peer.addresses.iter().find_map(|a| a.parse::<Multiaddr>().ok()) else {
                        continue;
                    };
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        if let Err(error) = handle.dial(address.clone()).await {
                            tracing::debug!(%address, %error, "known peer unreachable");
                        }
                    });
                }
            }
            Err(error) => tracing::warn!(%error, "could not read known peers"),
        }
    }
    republish(node, handle).await;
}

/// Re-puts the records of the packages this node owns and provides every
/// artifact it holds (the DHT's memory store is empty after a restart).
async fn republish(node: Weak<NodeInner>, handle: NetworkHandle) {
    let Some(strong) = Node::upgrade(&node) else { return };
    let store = strong.store().clone();
    let owner = strong.publisher_key();
    drop(strong);
    let slots = Arc::new(Semaphore::new(REPUBLISH_SLOTS));
    let mut puts = tokio::task::JoinSet::new();
    let mut after: Option<PackageName> = None;
    loop {
        let cursor = after.clone();
        let page_store = store.clone();
        let Ok((entries, next)) =
            blocking(move || page_store.catalog().page(cursor.as_ref(), 256, 8 * 1024 * 1024)).await
        else {
            break;
        };
        // The catalog's own rows, verified when they were stored: decoded, not
        // re-verified (at two checks per package, a 100k catalog kept a core busy
        // for seconds after every start).
        for entry in entries {
            let Ok(index) = PackageIndex::from_trusted_bytes(&entry.index) else { continue };
            let name = index.name.clone();
            let mut records = vec![(RecordKey::Index(name.clone()), entry.index)];
            for bytes in entry.manifests {
                if let Ok(manifest) = Manifest::from_trusted_bytes(&bytes) {
                    records.push((RecordKey::Manifest(name.clone(), manifest.version().clone()), bytes));
                }
            }
            if index.owner != owner {
                // Serve what the catalog holds from the local DHT store; the owners
                // republish to the network.
                for (key, value) in records {
                    handle.store_record(key, value).await;
                }
                continue;
            }
            for (key, value) in records {
                let (handle, slots) = (handle.clone(), slots.clone());
                puts.spawn(async move {
                    let _slot = slots.acquire().await;
                    let _ = handle.put_record(key, value).await;
                });
            }
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let held = blocking(move || store.catalog().held_artifacts()).await.unwrap_or_default();
    let provided = held.len();
    for digest in held {
        let (handle, slots) = (handle.clone(), slots.clone());
        puts.spawn(async move {
            let _slot = slots.acquire().await;
            let _ = handle.start_providing(digest).await;
        });
    }
    while puts.join_next().await.is_some() {}
    tracing::debug!(provided, "republished records and provider records");
}
