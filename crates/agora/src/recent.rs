//! Peers this node did something with recently — pulled their catalog, saved
//! their addresses — so that a peer that reconnects (connections to idle peers
//! are trimmed and re-dialed as lookups need them) does not cost it again each
//! time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora_net::PeerId;

/// When each peer was last claimed, for at most `capacity` peers (locked
/// inside: callers share it between tasks).
#[derive(Debug)]
pub(crate) struct RecentPeers {
    started: Mutex<HashMap<PeerId, Instant>>,
    cooldown: Duration,
    capacity: usize,
}

impl RecentPeers {
    pub(crate) fn new(cooldown: Duration, capacity: usize) -> Self {
        Self { started: Mutex::new(HashMap::new()), cooldown, capacity: capacity.max(1) }
    }

    /// Claims `peer` at `now`; false if it was claimed less than the cooldown
    /// ago. When full, forgets expired claims first, then the oldest.
    pub(crate) fn claim(&self, peer: PeerId, now: Instant) -> bool {
        let mut started = self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if started.get(&peer).is_some_and(|at| now.saturating_duration_since(*at) < self.cooldown) {
            return false;
        }
        if started.len() >= self.capacity && !started.contains_key(&peer) {
            started.retain(|_, at| now.saturating_duration_since(*at) < self.cooldown);
            if started.len() >= self.capacity
                && let Some(oldest) = started.iter().min_by_key(|(_, at)| **at).map(|(peer, _)| *peer)
            {
                started.remove(&oldest);
            }
        }
        started.insert(peer, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_claimed_once_per_cooldown() {
        let recent = RecentPeers::new(Duration::from_secs(600), 16);
        let (peer, now) = (PeerId::random(), Instant::now());
        assert!(recent.claim(peer, now));
        assert!(!recent.claim(peer, now + Duration::from_secs(599)));
        assert!(recent.claim(PeerId::random(), now), "other peers are not held up");
        assert!(recent.claim(peer, now + Duration::from_secs(600)));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_peers() {
        let recent = RecentPeers::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            assert!(recent.claim(*peer, now + Duration::from_secs(i as u64)));
        }
        assert_eq!(recent.started.lock().unwrap().len(), 3);
        assert!(recent.claim(peers[0], now + Duration::from_secs(5)), "the oldest claim was forgotten");
        assert!(!recent.claim(peers[3], now + Duration::from_secs(5)));
    }
}
