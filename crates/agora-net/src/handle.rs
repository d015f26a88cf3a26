//! [`NetworkHandle`]: the cloneable front of the network task.
//!
//! Every method sends one [`Command`] over a bounded channel with a oneshot for the
//! answer and waits for it, bounded by a timeout. Methods are cancel-safe: dropping
//! the future drops the oneshot, and the task's reply is discarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agora_core::Digest;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::event::{AnnouncementId, Reply, Verdict};
use crate::protocol::{ChunkRequest, ChunkResponse, SearchRequest, SearchResponse, SyncRequest, SyncResponse};
use crate::reachability::Reachability;
use crate::records::RecordKey;

/// What can go wrong with a network operation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkError {
    /// The network task has stopped.
    #[error("the network task has stopped")]
    Closed,
    /// No answer before the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Too many operations of this kind are in flight.
    #[error("too many {0} in flight; try again")]
    Busy(&'static str),
    /// An address was unusable.
    #[error("invalid address `{address}`: {reason}")]
    InvalidAddress { address: String, reason: String },
    /// Dialing failed.
    #[error("could not connect: {0}")]
    Dial(String),
    /// Listening failed.
    #[error("could not listen: {0}")]
    Listen(String),
    /// A request to a peer failed.
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    /// A DHT operation failed.
    #[error("dht: {0}")]
    Dht(String),
    /// Link conditions out of range.
    #[error("invalid link conditions: {0}")]
    InvalidLink(String),
}

/// A snapshot of the network's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Where it listens.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected_peers: Vec<PeerId>,
    /// Peers in the Kademlia routing table.
    pub routing_table_size: usize,
    /// Records in the local DHT store.
    pub dht_records: usize,
    /// Provider records for keys this node provides.
    pub dht_provided: usize,
    /// Reachability, relays and connections.
    pub traversal: TraversalStatus,
}

/// Whether others can dial this node, and how it is connected to its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraversalStatus {
    /// What AutoNAT and the listeners established.
    pub reachability: Reachability,
    /// Confirmed addresses peers can dial directly.
    pub external_addrs: Vec<Multiaddr>,
    /// Confirmed relay circuit addresses (one per reservation accepted).
    pub relay_addrs: Vec<Multiaddr>,
    /// Relays this node holds (or is asking for) a reservation on.
    pub reservations: Vec<PeerId>,
    /// Whether this node relays for others now.
    pub relaying: bool,
    /// Whether Kademlia serves (server mode) or only asks (client mode).
    pub kad_server: bool,
    /// Every open connection.
    pub connections: Vec<ConnectionInfo>,
    /// Hole punches tried (DCUtR) since the task started.
    pub hole_punch_attempts: u64,
    /// Hole punches that ended in a direct connection.
    pub hole_punch_successes: u64,
}

/// One open connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The peer at the other end.
    pub peer: PeerId,
    /// Its address (a `/p2p-circuit` address for a relayed connection).
    pub address: Multiaddr,
    /// Whether this node dialed it.
    pub dialer: bool,
    /// The relay it goes through; `None` for a direct connection.
    pub relay: Option<PeerId>,
}

/// How a peer is connected, for a caller deciding whether to transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPath {
    /// At least one direct connection.
    Direct,
    /// Only through `relay`, which limits each circuit to these (when it said).
    Relayed {
        /// The relay.
        relay: PeerId,
        /// Bytes a circuit may carry (each direction).
        max_bytes: Option<u64>,
        /// How long a circuit may stay open.
        max_duration: Option<Duration>,
    },
    /// No connection.
    NotConnected,
}

/// What one record lookup cost, from Kademlia's query statistics. Kademlia asks
/// up to three peers at once, so requests are not sequential hops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Requests sent to peers.
    pub requests: u32,
    /// Requests that were answered.
    pub successes: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
}

pub(crate) type Responder<T> = oneshot::Sender<Result<T, NetworkError>>;

#[derive(Debug)]
pub(crate) enum Command {
    Listen { address: Multiaddr, reply: Responder<Multiaddr> },
    Dial { address: Multiaddr, reply: Responder<PeerId> },
    PutRecord { key: RecordKey, value: Vec<u8>, reply: Responder<()> },
    StoreRecord { key: RecordKey, value: Vec<u8> },
    GetRecord { key: RecordKey, reply: Responder<(Option<Vec<u8>>, LookupStats)> },
    StartProviding { digest: Digest, reply: Responder<()> },
    StopProviding { digest: Digest },
    GetProviders { digest: Digest, reply: Responder<Vec<PeerId>> },
    RequestChunk { peer: PeerId, request: ChunkRequest, reply: Responder<ChunkResponse> },
    RespondChunk { reply: Reply<ChunkResponse>, response: ChunkResponse },
    RequestSync { peer: PeerId, request: SyncRequest, reply: Responder<SyncResponse> },
    RespondSync { reply: Reply<SyncResponse>, response: SyncResponse },
    RequestSearch { peer: PeerId, request: Box<SearchRequest>, reply: Responder<SearchResponse> },
    RespondSearch { reply: Reply<SearchResponse>, response: SearchResponse },
    Announce { data: Vec<u8>, reply: Responder<bool> },
    ReportAnnouncement { id: AnnouncementId, verdict: Verdict },
    Block { peer: PeerId, blocked: bool },
    Status { reply: Responder<NetworkStatus> },
    ConnectedPeers { reply: Responder<Vec<PeerId>> },
    AwaitDirect { peer: PeerId, wait: Duration, reply: Responder<PeerPath> },
    Shutdown,
}

impl Command {
    /// The command's name, for tracing.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Listen { .. } => "listen",
            Self::Dial { .. } => "dial",
            Self::PutRecord { .. } => "put_record",
            Self::StoreRecord { .. } => "store_record",
            Self::GetRecord { .. } => "get_record",
            Self::StartProviding { .. } => "start_providing",
            Self::StopProviding { .. } => "stop_providing",
            Self::GetProviders { .. } => "get_providers",
            Self::RequestChunk { .. } => "request_chunk",
            Self::RespondChunk { .. } => "respond_chunk",
            Self::RequestSync { .. } => "request_sync",
            Self::RespondSync { .. } => "respond_sync",
            Self::RequestSearch { .. } => "request_search",
            Self::RespondSearch { .. } => "respond_search",
            Self::Announce { .. } => "announce",
            Self::ReportAnnouncement { .. } => "report_announcement",
            Self::Block { .. } => "block",
            Self::Status { .. } => "status",
            Self::ConnectedPeers { .. } => "connected_peers",
            Self::AwaitDirect { .. } => "await_direct",
            Self::Shutdown => "shutdown",
        }
    }
}

/// Talks to the network task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
    /// Upper bound on any one call (the task's own deadlines are shorter).
    pub(crate) call_timeout: Duration,
    /// Connections established since the task started (counted by the task).
    pub(crate) connections_established: Arc<AtomicU64>,
}

impl NetworkHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Starts listening on `address`; returns the first concrete address bound.
    pub async fn listen(&self, address: Multiaddr) -> Result<Multiaddr, NetworkError> {
        self.call(|reply| Command::Listen { address, reply }).await
    }

    /// Dials `address` (which must end in `/p2p/<peer id>`) and waits for the connection.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, NetworkError> {
        self.call(|reply| Command::Dial { address, reply }).await
    }

    /// Stores a record locally and on the peers closest to its key. Succeeds once
    /// one peer stored it; a node with no peers gets an error but keeps the record
    /// and republishes it later.
    pub async fn put_record(&self, key: RecordKey, value: Vec<u8>) -> Result<(), NetworkError> {
        self.call(|reply| Command::PutRecord { key, value, reply }).await
    }

    /// Stores a record in the local DHT store only (no network traffic), so this
    /// node answers lookups for it. For records the node has already verified
    /// (its catalog accepted them): the network task checks their structure and
    /// key but not their signature again. A copy with an equal or higher sequence
    /// already held is kept.
    pub async fn store_record(&self, key: RecordKey, value: Vec<u8>) {
        self.tell(Command::StoreRecord { key, value }).await;
    }

    /// Looks a record up: collects copies from several peers, keeps the valid one
    /// with the highest sequence, and returns when a quorum agreed or the lookup
    /// ran out of peers. `Ok(None)` when nobody has a valid copy.
    pub async fn get_record(&self, key: RecordKey) -> Result<Option<Vec<u8>>, NetworkError> {
        Ok(self.get_record_with_stats(key).await?.0)
    }

    /// [`NetworkHandle::get_record`], with what the lookup cost.
    pub async fn get_record_with_stats(&self, key: RecordKey) -> Result<(Option<Vec<u8>>, LookupStats), NetworkError> {
        self.call(|reply| Command::GetRecord { key, reply }).await
    }

    /// Announces this node as a provider of the artifact with `digest`.
    pub async fn start_providing(&self, digest: Digest) -> Result<(), NetworkError> {
        self.call(|reply| Command::StartProviding { digest, reply }).await
    }

    /// Stops announcing this node as a provider of `digest` (after eviction).
    pub async fn stop_providing(&self, digest: Digest) {
        self.tell(Command::StopProviding { digest }).await;
    }

    /// Finds peers providing the artifact with `digest` (never this node).
    /// Providers that are not connected are dialed while their addresses are known.
    pub async fn get_providers(&self, digest: Digest) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::GetProviders { digest, reply }).await
    }

    /// Asks `peer` for an artifact chunk.
    pub async fn request_chunk(&self, peer: PeerId, request: ChunkRequest) -> Result<ChunkResponse, NetworkError> {
        self.call(|reply| Command::RequestChunk { peer, request, reply }).await
    }

    /// Answers a [`crate::NetworkEvent::ChunkRequested`].
    pub async fn respond_chunk(&self, reply: Reply<ChunkResponse>, response: ChunkResponse) {
        self.tell(Command::RespondChunk { reply, response }).await;
    }

    /// Asks `peer` for a page of its catalog.
    pub async fn request_sync(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, NetworkError> {
        self.call(|reply| Command::RequestSync { peer, request, reply }).await
    }

    /// Answers a [`crate::NetworkEvent::SyncRequested`].
    pub async fn respond_sync(&self, reply: Reply<SyncResponse>, response: SyncResponse) {
        self.tell(Command::RespondSync { reply, response }).await;
    }

    /// Asks `peer` to search its catalog. The exchange is bounded by the
    /// network's request timeout; callers with a tighter deadline wrap the call in
    /// their own timeout (dropping the future is safe).
    pub async fn request_search(&self, peer: PeerId, request: SearchRequest) -> Result<SearchResponse, NetworkError> {
        self.call(|reply| Command::RequestSearch { peer, request: Box::new(request), reply }).await
    }

    /// Answers a [`crate::NetworkEvent::SearchRequested`].
    pub async fn respond_search(&self, reply: Reply<SearchResponse>, response: SearchResponse) {
        self.tell(Command::RespondSearch { reply, response }).await;
    }

    /// Publishes an announcement on the gossip topic. `Ok(false)` when no peer is
    /// subscribed yet — not a failure: catalog sync will carry it later.
    pub async fn announce(&self, data: Vec<u8>) -> Result<bool, NetworkError> {
        self.call(|reply| Command::Announce { data, reply }).await
    }

    /// Reports the node's verdict on a gossip message; every message needs one.
    pub async fn report_announcement(&self, id: AnnouncementId, verdict: Verdict) {
        self.tell(Command::ReportAnnouncement { id, verdict }).await;
    }

    /// Blocks (or unblocks) a peer: its connections are closed and refused.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) {
        self.tell(Command::Block { peer, blocked }).await;
    }

    /// A snapshot of the network state.
    pub async fn status(&self) -> Result<NetworkStatus, NetworkError> {
        self.call(|reply| Command::Status { reply }).await
    }

    /// Connections established since the network task started, in either
    /// direction, including ones since closed. Read without asking the task.
    pub fn connections_established(&self) -> u64 {
        self.connections_established.load(Ordering::Relaxed)
    }

    /// Peers with an open connection (cheaper than [`NetworkHandle::status`]).
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetworkError> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// How `peer` is connected. While only through a relay, waits up to `wait`
    /// for a direct connection (hole punching runs as soon as a relayed
    /// connection opens), then answers with the path as it is.
    pub async fn await_direct(&self, peer: PeerId, wait: Duration) -> Result<PeerPath, NetworkError> {
        let within = self.call_timeout.max(wait + Duration::from_secs(5));
        self.call_within(within, |reply| Command::AwaitDirect { peer, wait, reply }).await
    }

    /// Asks the task to stop. It closes every connection and exits.
    pub async fn shutdown(&self) {
        self.tell(Command::Shutdown).await;
    }

    async fn call<T>(&self, command: impl FnOnce(Responder<T>) -> Command) -> Result<T, NetworkError> {
        self.call_within(self.call_timeout, command).await
    }

    async fn call_within<T>(
        &self,
        within: Duration,
        command: impl FnOnce(Responder<T>) -> Command,
    ) -> Result<T, NetworkError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| NetworkError::Closed)?;
        match tokio::time::timeout(within, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NetworkError::Closed),
            Err(_) => Err(NetworkError::Timeout(within)),
        }
    }

    async fn tell(&self, command: Command) {
        // The task may be gone; then there is nobody to tell.
        let _ = self.commands.send(command).await;
    }
}
