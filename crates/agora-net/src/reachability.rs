//! Whether others can dial this node, and what follows from it: policy without
//! I/O. The actor feeds it what the swarm reports (listen addresses, AutoNAT
//! results, confirmed and expired external addresses) and applies its answers
//! (Kademlia's mode, the relay server's status, whether to reserve relay slots).
//!
//! The rules (docs/ARCHITECTURE.md, "Reachability"):
//! - An address is *external* (announced by identify, carried in provider records)
//!   only when it is confirmed: by an AutoNAT v2 dial-back, by a relay reservation
//!   (a `/p2p-circuit` address), by UPnP, or because every address the node was
//!   told to listen on is on loopback or in memory (a single-host network, where
//!   a listen address is reachable by every peer that can see it). Addresses
//!   identify observes and private listen addresses are only candidates.
//! - Kademlia serves (server mode) only while the node has a confirmed address it
//!   can be dialed on directly; a relay circuit address does not count.
//! - A node with such an address relays for others when `relay_server` is on.
//! - A node that AutoNAT found unreachable, and that has no direct address,
//!   reserves slots on relays it is connected to (at most [`MAX_RESERVATIONS`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Relays a node behind NAT keeps a reservation on at most.
pub const MAX_RESERVATIONS: usize = 2;

/// Failed dial-backs (with no success) after which a node counts as private.
const FAILED_PROBES_FOR_PRIVATE: u32 = 1;

/// What the node knows about being reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reachability {
    /// Not tested yet.
    Unknown,
    /// At least one address of this node can be dialed directly.
    Public,
    /// Dial-backs failed and no address is confirmed: peers reach it through a
    /// relay, or by hole punching.
    Private,
}

impl Reachability {
    /// The lowercase name shown by `agora status` and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `address` goes through a relay (`…/p2p-circuit…`).
pub fn is_relayed(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| matches!(protocol, Protocol::P2pCircuit))
}

/// The relay's peer id in a circuit address (`/…/p2p/<relay>/p2p-circuit/…`).
pub fn relay_of(address: &Multiaddr) -> Option<libp2p::PeerId> {
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

/// Whether `address` is on loopback or an in-process memory port.
pub fn is_local(address: &Multiaddr) -> bool {
    address.iter().any(|protocol| match protocol {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        Protocol::Memory(_) => true,
        _ => false,
    })
}

/// The IP address of `address`, if it has one.
fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    address.iter().find_map(|protocol| match protocol {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Whether `address` names an IP no host outside its own network can dial:
/// private (RFC 1918), shared (100.64/10, carrier-grade NAT), link-local or
/// unique-local IPv6, or unspecified.
pub fn is_private(address: &Multiaddr) -> bool {
    match ip_of(address) {
        Some(IpAddr::V4(ip)) => {
            ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
        }
        Some(IpAddr::V6(ip)) => {
            ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00 || (ip.segments()[0] & 0xffc0) == 0xfe80
        }
        None => false,
    }
}

/// Whether a node told to listen on `listen` is on a single-host network: every
/// address on loopback or in memory. Such a node treats its listen addresses as
/// confirmed, and runs neither mDNS nor UPnP (there is no LAN and no router).
pub fn single_host(listen: &[Multiaddr]) -> bool {
    !listen.is_empty() && listen.iter().all(is_local)
}

/// The node's reachability state.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    /// Confirmed addresses peers can dial directly.
    direct: BTreeSet<Multiaddr>,
    /// Confirmed relay circuit addresses (reservations).
    relayed: BTreeSet<Multiaddr>,
    /// AutoNAT dial-backs that failed since the last success.
    failed_probes: u32,
}

impl Addresses {
    /// A confirmed external address (the swarm's `ExternalAddrConfirmed`).
    pub(crate) fn confirmed(&mut self, address: &Multiaddr) {
        if is_relayed(address) {
            self.relayed.insert(address.clone());
        } else {
            self.direct.insert(address.clone());
            self.failed_probes = 0;
        }
    }

    /// An external address that no longer holds.
    pub(crate) fn expired(&mut self, address: &Multiaddr) {
        self.direct.remove(address);
        self.relayed.remove(address);
    }

    /// An AutoNAT dial-back to a candidate address failed.
    pub(crate) fn probe_failed(&mut self) {
        self.failed_probes = self.failed_probes.saturating_add(1);
    }

    /// What the node knows about being reachable.
    pub(crate) fn reachability(&self) -> Reachability {
        if !self.direct.is_empty() {
            Reachability::Public
        } else if self.failed_probes >= FAILED_PROBES_FOR_PRIVATE {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }

    /// Whether Kademlia should serve: only with a confirmed direct address.
    pub(crate) fn kad_server(&self) -> bool {
        !self.direct.is_empty()
    }

    /// Whether to relay for others (when the config allows it at all).
    pub(crate) fn relay_server(&self, enabled: bool) -> bool {
        enabled && !self.direct.is_empty()
    }

    /// How many more relay reservations to make, given `held` (made or under
    /// way): none unless the node is private.
    pub(crate) fn reservations_wanted(&self, held: usize) -> usize {
        match self.reachability() {
            Reachability::Private => MAX_RESERVATIONS.saturating_sub(held),
            Reachability::Public | Reachability::Unknown => 0,
        }
    }

    /// Confirmed direct addresses.
    pub(crate) fn direct(&self) -> impl Iterator<Item = &Multiaddr> {
        self.direct.iter()
    }

    /// Confirmed relay circuit addresses.
    pub(crate) fn relayed(&self) -> impl Iterator<Item = &Multiaddr> {
        self.relayed.iter()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    const RELAY: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    #[test]
    fn only_loopback_or_memory_listeners_make_a_single_host_network() {
        assert!(single_host(&[addr("/ip4/127.0.0.1/tcp/0"), addr("/memory/0")]));
        assert!(single_host(&[addr("/ip6/::1/udp/0/quic-v1")]));
        assert!(!single_host(&[addr("/ip4/127.0.0.1/tcp/0"), addr("/ip4/0.0.0.0/tcp/0")]));
        assert!(!single_host(&[addr("/ip4/192.168.1.10/tcp/4001")]));
        assert!(!single_host(&[]), "a node listening nowhere is not on any network");
    }

    #[test]
    fn private_ranges_are_told_from_public_ones() {
        for private in ["/ip4/192.168.1.10/tcp/1", "/ip4/10.0.0.1/tcp/1", "/ip4/100.64.3.2/tcp/1", "/ip6/fd00::1/tcp/1"]
        {
            assert!(is_private(&addr(private)), "{private}");
        }
        for public in
            ["/ip4/203.0.113.7/tcp/1", "/ip4/100.128.0.1/tcp/1", "/ip6/2001:db8::1/tcp/1", "/dns4/x.org/tcp/1"]
        {
            assert!(!is_private(&addr(public)), "{public}");
        }
    }

    #[test]
    fn a_circuit_address_names_its_relay_and_is_not_direct() {
        let circuit = addr(&format!("/ip4/203.0.113.10/tcp/4001/p2p/{RELAY}/p2p-circuit"));
        assert!(is_relayed(&circuit));
        assert_eq!(relay_of(&circuit).unwrap().to_string(), RELAY);
        assert_eq!(relay_of(&addr(&format!("/ip4/203.0.113.10/tcp/4001/p2p/{RELAY}"))), None);

        let mut addresses = Addresses::default();
        addresses.probe_failed();
        addresses.confirmed(&circuit);
        assert!(!addresses.kad_server(), "a relay circuit address does not make a Kademlia server");
        assert!(!addresses.relay_server(true), "nor a relay");
        assert_eq!(addresses.reachability(), Reachability::Private);
        assert_eq!(addresses.relayed().count(), 1);
    }

    #[test]
    fn a_node_is_unknown_then_private_then_public_and_reserves_only_while_private() {
        let mut addresses = Addresses::default();
        assert_eq!(addresses.reachability(), Reachability::Unknown);
        assert_eq!(addresses.reservations_wanted(0), 0, "no reservation before a dial-back failed");
        addresses.probe_failed();
        assert_eq!(addresses.reachability(), Reachability::Private);
        assert_eq!(addresses.reservations_wanted(0), MAX_RESERVATIONS);
        assert_eq!(addresses.reservations_wanted(1), MAX_RESERVATIONS - 1);
        assert_eq!(addresses.reservations_wanted(5), 0);
        assert!(!addresses.kad_server());

        let public = addr("/ip4/203.0.113.5/udp/4001/quic-v1");
        addresses.confirmed(&public);
        assert_eq!(addresses.reachability(), Reachability::Public);
        assert!(addresses.kad_server());
        assert!(addresses.relay_server(true));
        assert!(!addresses.relay_server(false), "network.relay_server = false turns relaying off");
        assert_eq!(addresses.reservations_wanted(0), 0);
        assert_eq!(addresses.direct().collect::<Vec<_>>(), [&public]);

        addresses.expired(&public);
        assert_eq!(addresses.reachability(), Reachability::Unknown, "a success cleared the failures");
        assert!(!addresses.kad_server());
    }
}
