//! The node's peer-to-peer side, as small parts that each take the
//! [`Services`] and the network handle, never the node:
//!
//! - [`start`](self::start): starts the `agora-net` actor and the tasks below;
//! - `events`: the event loop, which hands each network event to the part that
//!   answers it;
//! - `inbound`: answers to peers' chunk, catalog-page and search requests;
//! - `ingest`: judging what peers send (announcements, DHT records, search
//!   answers) and storing the valid part through the catalog writer;
//! - `sync`: the catalog-sync client; `admission` decides (without I/O) which
//!   connecting peer it pulls from;
//! - `republish`: re-dials known peers, republishes what the node owns and holds,
//!   and sends out the node's own publications and yanks;
//! - `dht`: the DHT fallbacks of the `Registry` reads;
//! - `bans`: enforcing the bans reputation decides.
//!
//! The network emits events; these parts decide what to persist. SQLite and file
//! work runs on the blocking pool, never in the network task. This module does
//! not download artifacts (`crate::transfer` does) and does not run searches
//! (`crate::search` does); both use the handle it exposes.

mod admission;
mod bans;
mod dht;
mod events;
mod evidence;
mod inbound;
mod ingest;
mod republish;
mod start;
mod sync;

use std::sync::Arc;

use agora_core::{Result as CoreResult, SignedManifest, SignedPackageIndex};
use agora_net::{NetworkHandle, PeerId, SearchResponse, peer_address};
use agora_store::Outcome;

use crate::services::Services;

pub(crate) use self::ingest::SearchAnswer;
pub(crate) use self::start::start;

/// The running network of a node. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    handle: NetworkHandle,
    services: Arc<Services>,
    peers: Arc<events::PeerState>,
}

/// What `agora status` shows of the network.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NetworkSummary {
    /// This node's peer id.
    pub peer_id: String,
    /// Where it listens, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: Vec<String>,
    /// Peers in the Kademlia routing table.
    pub routing_table_size: usize,
    /// Records in the local DHT store.
    pub dht_records: usize,
    /// Provider records for keys this node provides.
    pub dht_provided: usize,
    /// Whether peers can dial this node: `public`, `private` or `unknown`.
    #[serde(default)]
    pub reachability: String,
    /// Confirmed addresses peers can dial directly, each ending in `/p2p/<peer id>`.
    #[serde(default)]
    pub external_addrs: Vec<String>,
    /// Relay circuit addresses this node can be reached on (its reservations).
    #[serde(default)]
    pub relay_addrs: Vec<String>,
    /// Relays this node holds (or asks for) a reservation on.
    #[serde(default)]
    pub relay_reservations: Vec<String>,
    /// Whether this node relays for others.
    #[serde(default)]
    pub relaying: bool,
    /// Kademlia's mode: `server` (answers DHT queries) or `client`.
    #[serde(default)]
    pub dht_mode: String,
    /// Open direct connections.
    #[serde(default)]
    pub direct_connections: usize,
    /// Open relayed connections.
    #[serde(default)]
    pub relayed_connections: usize,
    /// Hole punches tried since the node started.
    #[serde(default)]
    pub hole_punch_attempts: u64,
    /// Hole punches that gave a direct connection.
    #[serde(default)]
    pub hole_punch_successes: u64,
}

impl Network {
    /// The handle of the network actor.
    pub(crate) fn handle(&self) -> &NetworkHandle {
        &self.handle
    }

    pub(crate) async fn summary(&self) -> CoreResult<NetworkSummary> {
        let status = self.handle.status().await.map_err(|error| network_error("reading the network status", error))?;
        let traversal = &status.traversal;
        let addresses = |addresses: &[agora_net::Multiaddr]| -> Vec<String> {
            addresses.iter().map(|a| peer_address(a, status.peer_id).to_string()).collect()
        };
        let relayed = traversal.connections.iter().filter(|connection| connection.relay.is_some()).count();
        Ok(NetworkSummary {
            peer_id: status.peer_id.to_string(),
            listen_addrs: addresses(&status.listen_addrs),
            connected_peers: status.connected_peers.iter().map(ToString::to_string).collect(),
            routing_table_size: status.routing_table_size,
            dht_records: status.dht_records,
            dht_provided: status.dht_provided,
            reachability: traversal.reachability.to_string(),
            external_addrs: addresses(&traversal.external_addrs),
            relay_addrs: addresses(&traversal.relay_addrs),
            relay_reservations: traversal.reservations.iter().map(ToString::to_string).collect(),
            relaying: traversal.relaying,
            dht_mode: if traversal.kad_server { "server" } else { "client" }.to_owned(),
            direct_connections: traversal.connections.len() - relayed,
            relayed_connections: relayed,
            hole_punch_attempts: traversal.hole_punch_attempts,
            hole_punch_successes: traversal.hole_punch_successes,
        })
    }

    /// Connected peers to ask in a search: the best `count` by reputation (blocked
    /// peers never), each with its latency EWMA in milliseconds if known.
    pub(crate) async fn search_peers(&self, count: usize) -> CoreResult<Vec<(PeerId, Option<f64>)>> {
        let connected =
            self.handle.connected_peers().await.map_err(|error| network_error("listing connected peers", error))?;
        let reputation = &self.services.reputation;
        Ok(reputation
            .rank(connected)
            .into_iter()
            .take(count)
            .map(|peer| (peer, reputation.latency_ms(&peer)))
            .collect())
    }

    /// Records an outcome of an exchange with `peer` (invalid data strikes, and
    /// may get it blocked).
    pub(crate) async fn record(&self, peer: PeerId, outcome: Outcome) {
        match outcome {
            Outcome::Invalid => ingest::strike(&self.services, peer, "invalid data").await,
            outcome => self.services.reputation.record(peer, outcome).await,
        }
    }

    /// Verifies and stores a peer's search answer; see [`ingest::search_answer`].
    pub(crate) async fn ingest_search_answer(
        &self,
        peer: PeerId,
        limit: u16,
        response: SearchResponse,
    ) -> SearchAnswer {
        ingest::search_answer(&self.services, peer, limit, response).await
    }

    /// Puts the records of a new version in the DHT, provides its artifact and
    /// announces it, in the background.
    pub(crate) fn publish_in_background(&self, manifest: SignedManifest, index: SignedPackageIndex) {
        republish::publish_in_background(&self.services, &self.handle, manifest, index);
    }

    /// Puts and announces an index update (a yank) in the background.
    pub(crate) fn announce_index_in_background(&self, index: SignedPackageIndex) {
        republish::announce_index_in_background(&self.services, &self.handle, index);
    }

    /// Looks up the index of `name` in the DHT, verifies it and stores it.
    pub(crate) async fn index_from_dht(&self, name: &agora_core::PackageName) -> CoreResult<SignedPackageIndex> {
        dht::index(&self.services, &self.handle, name).await
    }

    /// Looks up the manifest of `name@version` in the DHT (and the index if
    /// needed), verifies and stores both.
    pub(crate) async fn manifest_from_dht(
        &self,
        name: &agora_core::PackageName,
        version: &agora_core::Version,
    ) -> CoreResult<SignedManifest> {
        dht::manifest(&self.services, &self.handle, name, version).await
    }

    /// Strikes recorded against a peer (bad records, garbage, bad chunks).
    pub(crate) fn strikes(&self, peer: &PeerId) -> u32 {
        self.services.reputation.invalid(peer).min(u64::from(u32::MAX)) as u32
    }
}

/// A network failure as the registry error callers see: a timeout stays a
/// timeout, a stopped network or a refusing peer is "unavailable".
pub(crate) fn network_error(what: &str, error: agora_net::NetworkError) -> agora_core::Error {
    use agora_core::{Error, Unavailable};
    use agora_net::NetworkError as E;
    let what = what.to_owned();
    match error {
        E::Timeout(after) => Error::Timeout { what, after },
        E::Closed => Error::Unavailable { what, reason: Unavailable::Stopped },
        error @ (E::Busy(_) | E::Dial(_) | E::Request { .. } | E::Dht(_)) => {
            Error::Unavailable { what, reason: Unavailable::Refused(error.to_string()) }
        }
        error => Error::Internal(format!("{what}: {error}")),
    }
}
