//! The connected peers, when each was last used, and which connections to close
//! when there are too many.
//!
//! libp2p closes a connection once it has been idle for the idle timeout, but
//! gossipsub keeps a long-lived stream open on every connection to a peer that
//! speaks it (rust-libp2p issue #5190), so between Agora nodes no connection
//! ever idles out: every peer Kademlia once dialed stays connected, and a node
//! ends up connected to most of a small network. [`Peers`] trims instead, like
//! go-libp2p's connection manager: above the high-water mark it closes the
//! connections used least recently, down to the low-water mark, sparing peers in
//! the gossip mesh and peers used within the grace period. Closed peers stay in
//! Kademlia's routing table and are dialed again when a lookup or a request
//! needs them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// The marks between which the number of connected peers is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerBudget {
    /// Above this many connected peers, idle ones are disconnected...
    pub high_water: usize,
    /// ...down to this many.
    pub low_water: usize,
    /// Peers used this recently are never disconnected for being idle.
    pub grace: Duration,
}

impl PeerBudget {
    /// Keeps at most `max_peers` (at least 1) peers once idle, trimming to three
    /// quarters of it, with a grace period of 10 s.
    pub fn new(max_peers: usize) -> Self {
        let high_water = max_peers.max(1);
        Self { high_water, low_water: (high_water * 3 / 4).max(1), grace: Duration::from_secs(10) }
    }
}

/// Connected peers and their last use.
#[derive(Debug)]
pub(crate) struct Peers {
    budget: PeerBudget,
    /// Connected peers and when each was last used (connected, asked, answered,
    /// gossiped). Bounded by the swarm's connection limit.
    last_used: HashMap<PeerId, Instant>,
    /// Peers disconnected for being idle whose connections have not closed yet.
    closing: HashSet<PeerId>,
}

impl Peers {
    pub(crate) fn new(budget: PeerBudget) -> Self {
        Self { budget, last_used: HashMap::new(), closing: HashSet::new() }
    }

    /// Records a new connection; true if the peer was not connected before.
    pub(crate) fn connected(&mut self, peer: PeerId, now: Instant) -> bool {
        self.last_used.insert(peer, now).is_none()
    }

    /// Records that the peer's last connection closed; true if it was connected.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) -> bool {
        self.closing.remove(peer);
        self.last_used.remove(peer).is_some()
    }

    /// Records a use of the connection to `peer`, if connected.
    pub(crate) fn used(&mut self, peer: &PeerId, now: Instant) {
        if let Some(last) = self.last_used.get_mut(peer) {
            *last = now;
        }
    }

    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.last_used.contains_key(peer)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &PeerId> {
        self.last_used.keys()
    }

    /// Whether more than the high-water mark are connected, not counting peers
    /// already closing: [`Peers::take_idle`] has something to do.
    pub(crate) fn over_budget(&self) -> bool {
        self.last_used.len() - self.closing.len() > self.budget.high_water
    }

    /// The peers to disconnect now, least recently used first: none unless more
    /// than the high-water mark are connected (not counting peers already
    /// closing); never a peer in `protected` or one used within the grace
    /// period. The returned peers count as closing from now on.
    pub(crate) fn take_idle(&mut self, protected: &HashSet<PeerId>, now: Instant) -> Vec<PeerId> {
        if !self.over_budget() {
            return Vec::new();
        }
        let open = self.last_used.len() - self.closing.len();
        let mut idle: Vec<(Instant, PeerId)> = self
            .last_used
            .iter()
            .filter(|(peer, last)| {
                !self.closing.contains(*peer)
                    && !protected.contains(*peer)
                    && now.saturating_duration_since(**last) >= self.budget.grace
            })
            .map(|(peer, last)| (*last, *peer))
            .collect();
        idle.sort_unstable();
        let trimmed: Vec<PeerId> = idle.into_iter().take(open - self.budget.low_water).map(|(_, peer)| peer).collect();
        self.closing.extend(trimmed.iter().copied());
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(high_water: usize, low_water: usize) -> PeerBudget {
        PeerBudget { high_water, low_water, grace: Duration::from_secs(10) }
    }

    #[test]
    fn nothing_is_trimmed_up_to_the_high_water_mark() {
        let mut peers = Peers::new(budget(4, 2));
        let start = Instant::now();
        for _ in 0..4 {
            peers.connected(PeerId::random(), start);
        }
        assert!(peers.take_idle(&HashSet::new(), start + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn above_it_the_least_recently_used_go_down_to_the_low_water_mark() {
        let mut peers = Peers::new(budget(4, 2));
        let start = Instant::now();
        let all: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        for (i, peer) in all.iter().enumerate() {
            peers.connected(*peer, start + Duration::from_secs(i as u64));
        }
        // The oldest connection was used last of all.
        peers.used(&all[0], start + Duration::from_secs(10));
        let now = start + Duration::from_secs(30);
        let trimmed = peers.take_idle(&HashSet::new(), now);
        assert_eq!(trimmed, all[1..5].to_vec(), "4 to go, least recently used first");
        assert!(peers.take_idle(&HashSet::new(), now).is_empty(), "closing peers count as gone");
        for peer in &trimmed {
            assert!(peers.disconnected(peer));
        }
        assert_eq!(peers.iter().count(), 2);
        assert!(peers.contains(&all[0]) && peers.contains(&all[5]));
    }

    #[test]
    fn protected_and_recently_used_peers_stay() {
        let mut peers = Peers::new(budget(2, 1));
        let start = Instant::now();
        let all: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for peer in &all {
            peers.connected(*peer, start);
        }
        peers.used(&all[1], start + Duration::from_secs(25));
        let protected = HashSet::from([all[0]]);
        let trimmed = peers.take_idle(&protected, start + Duration::from_secs(30));
        assert_eq!(trimmed.len(), 3, "all idle, unprotected peers, short of the low-water mark");
        assert!(!trimmed.contains(&all[0]) && !trimmed.contains(&all[1]));
        // Peers still within their grace period are not trimmed at all.
        let mut fresh = Peers::new(budget(2, 1));
        for peer in &all {
            fresh.connected(*peer, start);
        }
        assert!(fresh.take_idle(&HashSet::new(), start + Duration::from_secs(9)).is_empty());
    }

    #[test]
    fn the_default_budget_trims_to_three_quarters() {
        assert_eq!(PeerBudget::new(64), PeerBudget { high_water: 64, low_water: 48, grace: Duration::from_secs(10) });
        assert_eq!(PeerBudget::new(0).low_water, 1);
    }
}
