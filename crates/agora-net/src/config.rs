//! Network configuration.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::metrics::Registry;

use crate::link::LinkConditions;
use crate::peers::PeerBudget;

/// How a node joins the network.
#[derive(Clone)]
pub struct NetworkConfig {
    /// Seed of the node's ed25519 identity; the same seed gives the same peer id.
    pub identity_seed: [u8; 32],
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`, or `/memory/0` for an
    /// in-process memory port (simulations and tests).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each address must end in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Deadline of one request-response exchange.
    pub request_timeout: Duration,
    /// Deadline of one DHT query.
    pub query_timeout: Duration,
    /// Most established connections in all.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// How many peers stay connected once idle (below the hard
    /// `max_connections`): see [`PeerBudget`].
    pub peers: PeerBudget,
    /// Addresses this node is known to be reachable on (a server with a public
    /// IP, a port forwarded by hand): confirmed from the start. Other addresses
    /// become external only once confirmed (see [`crate::Reachability`]).
    pub external_addresses: Vec<Multiaddr>,
    /// Relay for others (Circuit Relay v2) while this node is publicly reachable.
    pub relay_server: bool,
    /// What one relayed circuit may use when this node relays.
    pub relay_limits: RelayLimits,
    /// Find peers on the LAN with mDNS. Never on a single-host network (every
    /// listen address on loopback or in memory).
    pub mdns: bool,
    /// Ask the router to map a port (UPnP IGD) when it offers that; harmless
    /// when it does not. Never on a single-host network.
    pub upnp: bool,
    /// Capacity of the command channel.
    pub command_buffer: usize,
    /// Capacity of the event channel to the node.
    pub event_buffer: usize,
    /// Most operations of one kind awaiting an answer at once.
    pub max_pending: usize,
    /// How long an idle connection stays open.
    pub idle_connection_timeout: Duration,
    /// How often Kademlia refreshes the routing table: a lookup of this node's own
    /// id and of a random key in every farther bucket, which contacts a few hundred
    /// peers in a large network (each one a new connection if it was trimmed).
    /// Lookups and the automatic bootstrap while the table is small keep it
    /// current in between.
    pub routing_refresh: Duration,
    /// Where the task registers libp2p's swarm and protocol metrics (under the
    /// `libp2p_` prefix); `None` records none. Locked only at start.
    pub metrics: Option<Arc<Mutex<Registry>>>,
    /// Latency and loss injected into every connection of this node, below Noise
    /// (a knob for simulations and tests); `None`, the default, injects nothing.
    /// See [`LinkConditions`].
    pub link: Option<LinkConditions>,
}

impl NetworkConfig {
    /// Defaults for a node with this identity seed, listening nowhere yet.
    pub fn new(identity_seed: [u8; 32]) -> Self {
        Self {
            identity_seed,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            request_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            max_connections: 256,
            // A direct connection, a relayed one while hole punching replaces it,
            // and an AutoNAT dial-back.
            max_connections_per_peer: 3,
            peers: PeerBudget::new(64),
            external_addresses: Vec::new(),
            relay_server: true,
            relay_limits: RelayLimits::default(),
            mdns: true,
            upnp: true,
            command_buffer: 256,
            event_buffer: 1024,
            max_pending: 4096,
            idle_connection_timeout: Duration::from_secs(120),
            // The Kademlia paper's tRefresh; libp2p's default of 5 minutes kept a
            // 500-node network opening ≈ 50 connections per node per minute at rest.
            routing_refresh: Duration::from_secs(3600),
            metrics: None,
            link: None,
        }
    }
}

impl fmt::Debug for NetworkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkConfig")
            .field("identity_seed", &"<secret>")
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("request_timeout", &self.request_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("peers", &self.peers)
            .field("external_addresses", &self.external_addresses)
            .field("relay_server", &self.relay_server)
            .field("relay_limits", &self.relay_limits)
            .field("mdns", &self.mdns)
            .field("upnp", &self.upnp)
            .field("max_pending", &self.max_pending)
            .field("routing_refresh", &self.routing_refresh)
            .field("metrics", &self.metrics.is_some())
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// What a relay allows: sized for coordination (identify, DHT, hole punching)
/// plus small transfers; artifacts larger than a circuit's byte limit wait for a
/// direct connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held for peers behind NAT at once.
    pub max_reservations: usize,
    /// Circuits relayed at once.
    pub max_circuits: usize,
    /// Circuits relayed at once for one peer.
    pub max_circuits_per_peer: usize,
    /// Bytes one circuit may carry in each direction.
    pub max_circuit_bytes: u64,
    /// How long one circuit may stay open.
    pub max_circuit_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 128,
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_bytes: 1024 * 1024,
            max_circuit_duration: Duration::from_secs(120),
        }
    }
}
