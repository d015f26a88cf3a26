//! What a node reports about itself (`agora status`) and about its peers
//! (`agora peers`).

use std::path::PathBuf;

use agora_core::{PublicKey, Registry, RegistryMetadata};
use serde::{Deserialize, Serialize};

use super::Node;
use crate::Result;
use crate::network::NetworkSummary;
use crate::reputation::PeerStanding;

/// What a node reports about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Agora version.
    pub version: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The node's identity key (its peer identity on the network).
    pub identity: PublicKey,
    /// The key this node signs publications with.
    pub publisher: PublicKey,
    /// Counts from the registry.
    pub registry: RegistryMetadata,
    /// Read-cache counters.
    pub cache: CacheCounters,
    /// Largest artifact accepted.
    pub max_artifact_size: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The peer-to-peer side, when enabled.
    pub network: Option<NetworkSummary>,
    /// Local artifact storage.
    pub storage: StorageStatus,
    /// Network search and DHT lookup counters and latencies.
    #[serde(default)]
    pub queries: crate::metrics::QueryMetricsStatus,
}

/// Local artifact storage, for `agora status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageStatus {
    /// Published or pinned artifacts (never evicted).
    pub pinned_artifacts: u64,
    /// Their bytes.
    pub pinned_bytes: u64,
    /// Fetched, unpinned artifacts.
    pub cached_artifacts: u64,
    /// Their bytes.
    pub cached_bytes: u64,
    /// The limit on cached bytes.
    pub max_cached_bytes: u64,
}

/// Read-cache hits and misses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CacheCounters {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the store.
    pub misses: u64,
}

/// A peer as `agora peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Where it listens (as last identified).
    pub addresses: Vec<String>,
    /// Unix seconds it was last identified (0: never).
    pub last_seen: u64,
    /// Invalid responses recorded against it (bad records, bad chunks, garbage).
    pub strikes: u32,
    /// Its reputation.
    pub standing: Option<PeerStanding>,
    /// Open connections to it, direct ones first.
    #[serde(default)]
    pub connections: Vec<PeerConnection>,
}

/// One open connection to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConnection {
    /// `direct` or `relayed`.
    pub kind: String,
    /// The peer's address on it (a `/p2p-circuit` address when relayed).
    pub address: String,
    /// The relay it goes through, when relayed.
    pub relay: Option<String>,
    /// Whether this node dialed it.
    pub outbound: bool,
}

impl Node {
    /// What the node reports about itself.
    pub async fn status(&self) -> Result<NodeStatus> {
        let services = self.services();
        let total = self.cache_stats().total();
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: services.data_dir.clone(),
            identity: self.identity(),
            publisher: self.publisher_key(),
            registry: services.registry.metadata().await?,
            cache: CacheCounters { hits: total.hits, misses: total.misses },
            max_artifact_size: services.config.max_artifact_size,
            uptime_secs: services.clock.now().saturating_duration_since(services.started).as_secs(),
            network: match self.network() {
                Some(network) => Some(network.summary().await?),
                None => None,
            },
            storage: {
                let usage = services.blocking(|store| store.storage().usage()).await?;
                StorageStatus {
                    pinned_artifacts: usage.pinned_artifacts,
                    pinned_bytes: usage.pinned_bytes,
                    cached_artifacts: usage.cached_artifacts,
                    cached_bytes: usage.cached_bytes,
                    max_cached_bytes: services.config.storage.max_cached_bytes,
                }
            },
            queries: services.metrics.status(),
        })
    }

    /// Known and connected peers, connected first.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        let Some(network) = self.network() else { return Ok(Vec::new()) };
        let status = network
            .handle()
            .status()
            .await
            .map_err(|error| crate::network::network_error("reading the network status", error))?;
        let known = self.services().blocking(|store| store.peers().records(1000)).await?;
        let now = self.services().unix_now();
        let connected: std::collections::HashSet<String> =
            status.connected_peers.iter().map(ToString::to_string).collect();
        let connections = |peer: &str| -> Vec<PeerConnection> {
            let mut connections: Vec<PeerConnection> = status
                .traversal
                .connections
                .iter()
                .filter(|connection| connection.peer.to_string() == peer)
                .map(|connection| PeerConnection {
                    kind: if connection.relay.is_some() { "relayed" } else { "direct" }.to_owned(),
                    address: connection.address.to_string(),
                    relay: connection.relay.map(|relay| relay.to_string()),
                    outbound: connection.dialer,
                })
                .collect();
            connections.sort_by_key(|connection| connection.relay.is_some());
            connections
        };
        let mut peers: Vec<PeerInfo> = known
            .into_iter()
            .map(|peer| PeerInfo {
                connections: connections(&peer.peer_id),
                connected: connected.contains(&peer.peer_id),
                strikes: peer.invalid.min(u64::from(u32::MAX)) as u32,
                standing: Some(crate::reputation::standing(&peer, now)),
                peer_id: peer.peer_id,
                addresses: peer.addresses,
                last_seen: peer.last_seen,
            })
            .collect();
        for peer in &status.connected_peers {
            if !peers.iter().any(|known| known.peer_id == peer.to_string()) {
                peers.push(PeerInfo {
                    connections: connections(&peer.to_string()),
                    peer_id: peer.to_string(),
                    connected: true,
                    addresses: Vec::new(),
                    last_seen: 0,
                    strikes: self.strikes(peer),
                    standing: None,
                });
            }
        }
        peers.sort_by(|a, b| {
            let score = |p: &PeerInfo| p.standing.as_ref().map_or(0.0, |s| s.score);
            (!a.connected).cmp(&!b.connected).then(score(b).total_cmp(&score(a)))
        });
        Ok(peers)
    }
}
