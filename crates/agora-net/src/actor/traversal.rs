//! The actor's side of reachability and NAT traversal: it feeds the
//! [`Addresses`] policy what the swarm reports and applies its answers
//! (Kademlia's mode, the relay server's status, relay reservations), keeps the
//! table of open connections (direct or relayed, and a relay's limits), counts
//! hole punches, and answers [`NetworkHandle::await_direct`](crate::NetworkHandle::await_direct) callers
//! waiting for a direct connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, kad, mdns, relay, upnp};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Actor, Pending, split_peer};
use crate::handle::{ConnectionInfo, PeerPath, Responder, TraversalStatus};
use crate::reachability::{Addresses, Reachability, is_relayed, relay_of};

/// Relays whose announced limits are remembered at most (one per relay peer).
const MAX_KNOWN_RELAYS: usize = 64;

/// What a relay said one circuit may use (libp2p's `Limit` cannot be named).
#[derive(Debug, Clone, Copy)]
struct CircuitLimit {
    bytes: Option<u64>,
    duration: Option<Duration>,
}

/// Labels of one gauge in a family.
type Labels = Vec<(String, String)>;

/// Reachability and traversal metrics (`agora_net_*`), set from the actor's state.
#[derive(Default)]
pub(crate) struct TraversalMetrics {
    /// 1 for the node's reachability (`state` = public, private, unknown), 0 for the others.
    reachability: Family<Labels, Gauge>,
    /// Open connections by `kind` (direct, relayed).
    connections: Family<Labels, Gauge>,
    /// Relay reservations held or asked for.
    reservations: Gauge,
    /// Whether this node relays for others (0 or 1).
    relaying: Gauge,
    hole_punch_attempts: Counter,
    hole_punch_successes: Counter,
}

impl TraversalMetrics {
    /// Registers the metrics under `agora_net_` in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let net = registry.sub_registry_with_prefix("agora_net");
        net.register(
            "reachability",
            "This node's reachability (1 for the current state)",
            metrics.reachability.clone(),
        );
        net.register("connections", "Open connections by kind (direct or relayed)", metrics.connections.clone());
        net.register("relay_reservations", "Relay reservations held or asked for", metrics.reservations.clone());
        net.register("relaying", "Whether this node relays for others", metrics.relaying.clone());
        net.register("hole_punch_attempts", "Hole punches tried (DCUtR)", metrics.hole_punch_attempts.clone());
        net.register(
            "hole_punch_successes",
            "Hole punches that gave a direct connection",
            metrics.hole_punch_successes.clone(),
        );
        metrics
    }
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_owned(), value.to_owned())]
}

/// What the actor tracks for reachability and traversal.
pub(crate) struct Traversal {
    /// The policy's state.
    pub(crate) addresses: Addresses,
    /// Every listen address given was on loopback or in memory.
    pub(crate) single_host: bool,
    /// `network.relay_server`.
    pub(crate) relay_server_allowed: bool,
    kad_server: bool,
    relaying: bool,
    /// Open connections, by id (bounded by the swarm's connection limit).
    links: HashMap<ConnectionId, ConnectionInfo>,
    /// Connected peers that offer the relay protocol, with an address to reach
    /// them on directly.
    relays: HashMap<PeerId, Multiaddr>,
    /// Relay reservations made or under way, by relay.
    reservations: HashMap<PeerId, ListenerId>,
    /// The limits relays announced (per circuit), by relay.
    limits: HashMap<PeerId, CircuitLimit>,
    hole_punch_attempts: u64,
    hole_punch_successes: u64,
    /// Callers waiting for a direct connection to a peer.
    waiting: Vec<(PeerId, Pending<PeerPath>)>,
    /// Connected peers hole punching failed for (no use waiting for them).
    unpunchable: std::collections::HashSet<PeerId>,
    /// When the node records metrics.
    metrics: Option<TraversalMetrics>,
}

impl Traversal {
    pub(crate) fn new(single_host: bool, relay_server_allowed: bool, metrics: Option<TraversalMetrics>) -> Self {
        Self {
            addresses: Addresses::default(),
            single_host,
            relay_server_allowed,
            kad_server: false,
            relaying: false,
            links: HashMap::new(),
            relays: HashMap::new(),
            reservations: HashMap::new(),
            limits: HashMap::new(),
            hole_punch_attempts: 0,
            hole_punch_successes: 0,
            waiting: Vec::new(),
            unpunchable: std::collections::HashSet::new(),
            metrics,
        }
    }

    /// Sets the gauges from the state.
    fn publish(&self) {
        let Some(metrics) = &self.metrics else { return };
        let reachability = self.addresses.reachability();
        for state in [Reachability::Public, Reachability::Private, Reachability::Unknown] {
            metrics.reachability.get_or_create(&label("state", state.as_str())).set(i64::from(state == reachability));
        }
        let relayed = self.links.values().filter(|link| link.relay.is_some()).count();
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        metrics.connections.get_or_create(&label("kind", "relayed")).set(count(relayed));
        metrics.connections.get_or_create(&label("kind", "direct")).set(count(self.links.len() - relayed));
        metrics.reservations.set(count(self.reservations.len()));
        metrics.relaying.set(i64::from(self.relaying));
    }

    /// How `peer` is connected now.
    fn path(&self, peer: &PeerId) -> PeerPath {
        let mut relayed = None;
        for link in self.links.values().filter(|link| link.peer == *peer) {
            match link.relay {
                None => return PeerPath::Direct,
                Some(relay) => relayed = Some(relay),
            }
        }
        match relayed {
            Some(relay) => {
                let limit = self.limits.get(&relay);
                PeerPath::Relayed {
                    relay,
                    max_bytes: limit.and_then(|limit| limit.bytes),
                    max_duration: limit.and_then(|limit| limit.duration),
                }
            }
            None => PeerPath::NotConnected,
        }
    }

    /// Whether `peer` has a direct connection and no relayed one still open
    /// (requests spread over every open connection, a closing one included).
    fn only_direct(&self, peer: &PeerId) -> bool {
        let mut links = self.links.values().filter(|link| link.peer == *peer).peekable();
        links.peek().is_some() && links.all(|link| link.relay.is_none())
    }

    fn remember_limit(&mut self, relay: PeerId, bytes: Option<u64>, duration: Option<Duration>) {
        if self.limits.len() >= MAX_KNOWN_RELAYS && !self.limits.contains_key(&relay) {
            return;
        }
        self.limits.insert(relay, CircuitLimit { bytes, duration });
    }
}

impl Actor {
    /// A listener reported an address. On a single-host network it is confirmed
    /// at once; elsewhere it is only a candidate (AutoNAT decides).
    pub(super) fn on_listen_addr(&mut self, address: &Multiaddr) {
        if self.traversal.single_host && !is_relayed(address) {
            self.confirm_external(address.clone());
        }
    }

    /// Confirms `address` as external (declared, or single-host).
    pub(super) fn confirm_external(&mut self, address: Multiaddr) {
        self.swarm.add_external_address(address.clone());
        self.on_external_confirmed(&address);
    }

    pub(super) fn on_external_confirmed(&mut self, address: &Multiaddr) {
        tracing::info!(%address, "external address confirmed");
        self.traversal.addresses.confirmed(address);
        self.apply_reachability();
    }

    pub(super) fn on_external_expired(&mut self, address: &Multiaddr) {
        tracing::info!(%address, "external address expired");
        self.traversal.addresses.expired(address);
        self.apply_reachability();
    }

    /// Applies the policy: Kademlia's mode, the relay server, reservations.
    pub(super) fn apply_reachability(&mut self) {
        let kad_server = self.traversal.addresses.kad_server();
        if kad_server != self.traversal.kad_server {
            self.traversal.kad_server = kad_server;
            let mode = if kad_server { kad::Mode::Server } else { kad::Mode::Client };
            tracing::info!(?mode, "kademlia mode");
            self.swarm.behaviour_mut().kad.set_mode(Some(mode));
        }
        let relaying = self.traversal.addresses.relay_server(self.traversal.relay_server_allowed);
        if relaying != self.traversal.relaying {
            self.traversal.relaying = relaying;
            tracing::info!(relaying, "relay server");
            let status = if relaying { relay::Status::Enable } else { relay::Status::Disable };
            self.swarm.behaviour_mut().relay.set_status(Some(status));
        }
        self.reserve_relays();
        self.traversal.publish();
    }

    /// Reserves slots on connected relays while the node is private.
    fn reserve_relays(&mut self) {
        let wanted = self.traversal.addresses.reservations_wanted(self.traversal.reservations.len());
        if wanted == 0 {
            return;
        }
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .traversal
            .relays
            .iter()
            .filter(|(relay, _)| !self.traversal.reservations.contains_key(relay))
            .map(|(relay, address)| (*relay, address.clone()))
            .take(wanted)
            .collect();
        for (relay, address) in candidates {
            let circuit = address.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, address = %circuit, "reserving a relay slot");
                    self.traversal.reservations.insert(relay, listener);
                }
                Err(error) => tracing::debug!(%relay, %error, "could not reserve a relay slot"),
            }
        }
    }

    /// A listener closed: if it was a reservation, another relay may take its place.
    pub(super) fn on_listener_closed(&mut self, listener: ListenerId) {
        let before = self.traversal.reservations.len();
        self.traversal.reservations.retain(|_, id| *id != listener);
        if self.traversal.reservations.len() != before {
            tracing::info!("a relay reservation ended");
            self.reserve_relays();
            self.traversal.publish();
        }
    }

    pub(super) fn on_connection_opened(&mut self, peer: PeerId, connection: ConnectionId, endpoint: &ConnectedPoint) {
        let address = endpoint.get_remote_address().clone();
        let relay = relay_of(&address);
        let direct = relay.is_none();
        self.traversal.links.insert(connection, ConnectionInfo { peer, address, dialer: endpoint.is_dialer(), relay });
        if direct {
            // A direct connection makes a relayed one redundant: close it, so
            // requests (which libp2p spreads over a peer's connections) go direct.
            let relayed: Vec<ConnectionId> = self
                .traversal
                .links
                .iter()
                .filter(|(_, link)| link.peer == peer && link.relay.is_some())
                .map(|(id, _)| *id)
                .collect();
            let closing = !relayed.is_empty();
            for id in relayed {
                tracing::debug!(%peer, "closing a relayed connection: a direct one is open");
                self.swarm.close_connection(id);
            }
            self.traversal.unpunchable.remove(&peer);
            // Waiters hear of it once the relayed connections are gone.
            if !closing {
                self.answer_waiting(peer);
            }
        }
        self.traversal.publish();
    }

    pub(super) fn on_connection_closed(&mut self, peer: PeerId, connection: ConnectionId, remaining: u32) {
        self.traversal.links.remove(&connection);
        if remaining == 0 {
            self.traversal.unpunchable.remove(&peer);
        }
        if self.traversal.only_direct(&peer) {
            self.answer_waiting(peer);
        }
        if remaining == 0 && self.traversal.relays.remove(&peer).is_some() {
            self.traversal.reservations.remove(&peer);
            self.reserve_relays();
        }
        self.traversal.publish();
    }

    /// Identify told us what `peer` supports: a relay is remembered with an
    /// address we can reach it on directly (one we dialed, else a listen address).
    pub(super) fn on_identified(&mut self, peer: PeerId, protocols: &[libp2p::StreamProtocol], listen: &[Multiaddr]) {
        if !protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            self.traversal.relays.remove(&peer);
            return;
        }
        let dialed = self
            .traversal
            .links
            .values()
            .find(|link| link.peer == peer && link.dialer && link.relay.is_none())
            .map(|link| split_peer(&link.address).map_or_else(|_| link.address.clone(), |(_, bare)| bare));
        let address = dialed.or_else(|| listen.iter().find(|address| !is_relayed(address)).cloned());
        if let Some(address) = address {
            self.traversal.relays.insert(peer, address);
            self.reserve_relays();
        }
    }

    pub(super) fn on_autonat_client(&mut self, event: autonat::v2::client::Event) {
        match event.result {
            Ok(()) => tracing::debug!(address = %event.tested_addr, server = %event.server, "reachable (AutoNAT)"),
            Err(error) => {
                tracing::info!(address = %event.tested_addr, server = %event.server, %error, "not reachable (AutoNAT)");
                self.traversal.addresses.probe_failed();
                self.apply_reachability();
            }
        }
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, limit, renewal } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                }
                if let Some(limit) = limit {
                    self.traversal.remember_limit(relay_peer_id, limit.data_in_bytes(), limit.duration());
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, limit } => {
                if let Some(limit) = limit {
                    self.traversal.remember_limit(relay_peer_id, limit.data_in_bytes(), limit.duration());
                }
            }
            // Inbound circuits come through our reservations: their limits are
            // the ones those relays announced.
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "inbound relayed connection");
            }
        }
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        self.traversal.hole_punch_attempts += 1;
        if let Some(metrics) = &self.traversal.metrics {
            metrics.hole_punch_attempts.inc();
            if event.result.is_ok() {
                metrics.hole_punch_successes.inc();
            }
        }
        match event.result {
            Ok(_) => {
                self.traversal.hole_punch_successes += 1;
                tracing::info!(peer = %event.remote_peer_id, "hole punched: direct connection");
            }
            Err(error) => {
                tracing::info!(peer = %event.remote_peer_id, %error, "hole punching failed");
                let peer = event.remote_peer_id;
                if self.traversal.links.values().any(|link| link.peer == peer) {
                    self.traversal.unpunchable.insert(peer);
                }
                self.answer_waiting(peer);
            }
        }
    }

    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        let mdns::Event::Discovered(found) = event else { return };
        let local = *self.swarm.local_peer_id();
        let mut to_dial = Vec::new();
        for (peer, address) in found {
            if peer == local {
                continue;
            }
            tracing::debug!(%peer, %address, "found on the LAN (mDNS)");
            self.swarm.behaviour_mut().kad.add_address(&peer, address.clone());
            // Both ends discover each other; only the one with the smaller peer
            // id dials, so they share one connection.
            if local < peer && !self.peers.contains(&peer) && !to_dial.iter().any(|(known, _)| *known == peer) {
                to_dial.push((peer, address));
            }
        }
        for (peer, address) in to_dial {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(vec![address])
                .build();
            let _ = self.swarm.dial(opts);
        }
    }

    pub(super) fn on_upnp(&mut self, event: upnp::Event) {
        match event {
            upnp::Event::NewExternalAddr { external_addr, .. } => {
                tracing::info!(address = %external_addr, "the router mapped a port (UPnP)")
            }
            upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                tracing::info!(address = %external_addr, "a UPnP port mapping ended")
            }
            upnp::Event::GatewayNotFound => tracing::debug!("no UPnP gateway"),
            upnp::Event::NonRoutableGateway => tracing::debug!("the UPnP gateway is not on the public network"),
        }
    }

    /// Answers now if `peer` is connected directly or not at all; otherwise waits
    /// (up to `wait`) for a direct connection, answering with the relayed path
    /// if none comes.
    pub(super) fn await_direct(&mut self, peer: PeerId, wait: Duration, reply: Responder<PeerPath>) {
        match self.traversal.path(&peer) {
            path @ PeerPath::Direct if self.traversal.only_direct(&peer) => {
                let _ = reply.send(Ok(path));
            }
            path @ PeerPath::Relayed { .. } if self.traversal.unpunchable.contains(&peer) => {
                let _ = reply.send(Ok(path));
            }
            _ if self.traversal.waiting.len() >= self.max_pending => {
                let _ = reply.send(Err(crate::NetworkError::Busy("waits for a direct connection")));
            }
            PeerPath::NotConnected => {
                // Dial with the addresses the behaviours know (Kademlia's, from a
                // provider lookup); a relayed connection then gets hole punched.
                let opts = DialOpts::peer_id(peer).condition(PeerCondition::DisconnectedAndNotDialing).build();
                match self.swarm.dial(opts) {
                    Ok(()) => self.traversal.waiting.push((peer, Pending::new(wait, reply))),
                    Err(DialError::DialPeerConditionFalse(_)) => {
                        self.traversal.waiting.push((peer, Pending::new(wait, reply)));
                    }
                    Err(error) => {
                        tracing::debug!(%peer, %error, "cannot dial a peer to transfer from");
                        let _ = reply.send(Ok(PeerPath::NotConnected));
                    }
                }
            }
            // Relayed, or direct with a relayed connection still closing.
            PeerPath::Relayed { .. } | PeerPath::Direct => {
                self.traversal.waiting.push((peer, Pending::new(wait, reply)));
            }
        }
    }

    /// A dial to `peer` failed: if it has no connection at all, its waiters learn it.
    pub(super) fn on_dial_failed(&mut self, peer: PeerId) {
        if self.traversal.path(&peer) == PeerPath::NotConnected {
            self.answer_waiting(peer);
        }
    }

    /// Answers everyone waiting for `peer` with its path as it is now.
    fn answer_waiting(&mut self, peer: PeerId) {
        self.answer_waiting_where(|waiting_for, _| *waiting_for == peer);
    }

    /// Answers the waits whose deadline passed with the path as it is.
    pub(super) fn sweep_waiting(&mut self, now: Instant) {
        self.answer_waiting_where(|_, pending| pending.deadline <= now);
    }

    /// Answers (with each peer's path as it is now) and forgets the waits `which` picks.
    fn answer_waiting_where(&mut self, which: impl Fn(&PeerId, &Pending<PeerPath>) -> bool) {
        let (answered, waiting) = std::mem::take(&mut self.traversal.waiting)
            .into_iter()
            .partition::<Vec<_>, _>(|(peer, pending)| which(peer, pending));
        self.traversal.waiting = waiting;
        for (peer, pending) in answered {
            let _ = pending.reply.send(Ok(self.traversal.path(&peer)));
        }
    }

    pub(super) fn traversal_status(&self) -> TraversalStatus {
        let traversal = &self.traversal;
        let mut connections: Vec<ConnectionInfo> = traversal.links.values().cloned().collect();
        connections.sort_by_key(|connection| (connection.peer, connection.relay.is_some()));
        TraversalStatus {
            reachability: traversal.addresses.reachability(),
            external_addrs: traversal.addresses.direct().cloned().collect(),
            relay_addrs: traversal.addresses.relayed().cloned().collect(),
            reservations: traversal.reservations.keys().copied().collect(),
            relaying: traversal.relaying,
            kad_server: traversal.kad_server,
            connections,
            hole_punch_attempts: traversal.hole_punch_attempts,
            hole_punch_successes: traversal.hole_punch_successes,
        }
    }
}
