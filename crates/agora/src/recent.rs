//! Peers this node did something with recently — pulled their catalog, saved
//! their addresses — so that a peer that reconnects (connections to idle peers
//! are trimmed and re-dialed as lookups need them) does not cost it again each
//! time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agora_net::PeerId;

/// When each peer was last claimed, for at most `capacity` peers.
#[derive(Debug)]
pub(crate) struct RecentPeers {
    started: HashMap<PeerId, Instant>,
    cooldown: Duration,
    capacity: usize,
}

impl RecentPeers {
    pub(crate) fn new(cooldown: Duration, capacity: usize) -> Self {
        Self { started: HashMap::new(), cooldown, capacity: capacity.max(1) }
    }

    /// Claims `peer` at `now`; false if it was claimed less than the cooldown
    /// ago. When full, forgets expired claims first, then the oldest.
    pub(crate) fn claim(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.started.get(&peer).is_some_and(|started| now.saturating_duration_since(*started) < self.cooldown) {
            return false;
        }
        if self.started.len() >= self.capacity && !self.started.contains_key(&peer) {
            self.started.retain(|_, started| now.saturating_duration_since(*started) < self.cooldown);
            if self.started.len() >= self.capacity
                && let Some(oldest) = self.started.iter().min_by_key(|(_, started)| **started).map(|(peer, _)| *peer)
            {
                self.started.remove(&oldest);
            }
        }
        self.started.insert(peer, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_claimed_once_per_cooldown() {
        let mut recent = RecentPeers::new(Duration::from_secs(600), 16);
        let (peer, now) = (PeerId::random(), Instant::now());
        assert!(recent.claim(peer, now));
        assert!(!recent.claim(peer, now + Duration::from_secs(599)));
        assert!(recent.claim(PeerId::random(), now), "other peers are not held up");
        assert!(recent.claim(peer, now + Duration::from_secs(600)));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_peers() {
        let mut recent = RecentPeers::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            assert!(recent.claim(*peer, now + Duration::from_secs(i as u64)));
        }
        assert_eq!(recent.started.len(), 3);
        assert!(recent.claim(peers[0], now + Duration::from_secs(5)), "the oldest claim was forgotten");
        assert!(!recent.claim(peers[3], now + Duration::from_secs(5)));
    }
}
