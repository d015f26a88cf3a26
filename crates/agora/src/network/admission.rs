//! Which connecting peer the node pulls the catalog from ([`SyncAdmission`]),
//! and the bounded "once per cooldown" memory behind it ([`Cooldowns`]), which
//! also keeps a reconnecting peer's addresses from being saved on every
//! connection.
//!
//! A peer is synced with when catalog sync is enabled, its reputation score is
//! at least `min_score`, a sync slot is free, and it was not admitted within the
//! cooldown. The cooldown starts when the peer is admitted, and a peer whose
//! sync is still running is not admitted again however long it runs. A refused
//! peer keeps its cooldown: one that found no free slot is synced with when it
//! next connects.
//!
//! This is policy only. It deliberately runs no sync, looks up no reputation
//! (the score comes in), reads no clock (time comes in as `now`) and takes no
//! lock: the caller holds it behind its own mutex, and gives every ticket back
//! to [`SyncAdmission::finished`] on every path, a failed or cancelled sync
//! included (a guard whose `Drop` does it is the easy way).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// When to sync with a connecting peer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncSettings {
    /// Whether catalogs are pulled from peers at all.
    pub(crate) enabled: bool,
    /// Peers scoring below this are not synced with.
    pub(crate) min_score: f64,
    /// Peers synced with at once.
    pub(crate) slots: usize,
    /// A peer is synced with at most once in this long.
    pub(crate) cooldown: Duration,
    /// Peers remembered for the cooldown (at least one).
    pub(crate) capacity: usize,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self { enabled: true, min_score: 0.25, slots: 4, cooldown: Duration::from_secs(600), capacity: 4096 }
    }
}

/// The answer to a connecting peer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission<P> {
    /// Sync with it, and hand the ticket to [`SyncAdmission::finished`] after.
    Admitted(SyncTicket<P>),
    /// Do not sync with it.
    Refused(Refusal),
}

/// Why a peer is not synced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Catalog sync is off.
    Disabled,
    /// Its score is below `min_score` (or not a number).
    LowScore,
    /// Every sync slot is taken.
    NoSlot,
    /// It was admitted within the cooldown, or its sync is still running.
    Cooldown,
}

/// A sync slot held for one peer. It cannot be copied: giving it back to
/// [`SyncAdmission::finished`] frees the slot once.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a ticket holds a sync slot until it is given to `SyncAdmission::finished`"]
pub(crate) struct SyncTicket<P> {
    peer: P,
}

impl<P: Copy> SyncTicket<P> {
    /// The peer to sync with.
    pub(crate) fn peer(&self) -> P {
        self.peer
    }
}

/// Decides which connecting peers to sync with. See the module documentation.
#[derive(Debug)]
pub(crate) struct SyncAdmission<P> {
    settings: SyncSettings,
    admitted: Cooldowns<P>,
    /// Peers whose sync holds a slot; at most `settings.slots`.
    syncing: Vec<P>,
}

impl<P: Copy + Eq + Hash + Ord + Debug> SyncAdmission<P> {
    /// Admission under `settings`, with no peer remembered.
    pub(crate) fn new(settings: SyncSettings) -> Self {
        let admitted = Cooldowns::new(settings.cooldown, settings.capacity);
        Self { settings, admitted, syncing: Vec::new() }
    }

    /// Whether to sync with `peer`, which scores `score`, at `now`. Only an
    /// admission takes a slot and starts the peer's cooldown; a refusal changes
    /// nothing.
    pub(crate) fn admit(&mut self, peer: P, score: f64, now: Instant) -> Admission<P> {
        let good_standing = score >= self.settings.min_score;
        let refusal = if !self.settings.enabled {
            Some(Refusal::Disabled)
        } else if !good_standing {
            Some(Refusal::LowScore)
        } else if self.free_slots() == 0 {
            Some(Refusal::NoSlot)
        } else if self.syncing.contains(&peer) || !self.admitted.claim(peer, now) {
            Some(Refusal::Cooldown)
        } else {
            None
        };
        match refusal {
            Some(refusal) => Admission::Refused(refusal),
            None => {
                self.syncing.push(peer);
                Admission::Admitted(SyncTicket { peer })
            }
        }
    }

    /// The sync of `ticket`'s peer ended (however it ended): its slot is free.
    /// Its cooldown runs on from when it was admitted.
    pub(crate) fn finished(&mut self, ticket: SyncTicket<P>) {
        if let Some(position) = self.syncing.iter().position(|peer| *peer == ticket.peer) {
            self.syncing.swap_remove(position);
        }
    }

    /// Sync slots not taken.
    pub(crate) fn free_slots(&self) -> usize {
        self.settings.slots.saturating_sub(self.syncing.len())
    }

    #[cfg(test)]
    /// Peers being synced with.
    pub(crate) fn syncing(&self) -> &[P] {
        &self.syncing
    }
}

/// When each peer was last claimed, for at most `capacity` peers: a peer is
/// claimed at most once per `cooldown` (as long as no more than `capacity`
/// peers are claimed within one cooldown; past that the oldest claims are
/// forgotten, which bounds the memory).
#[derive(Debug, Clone)]
pub(crate) struct Cooldowns<P> {
    claimed: HashMap<P, Instant>,
    cooldown: Duration,
    capacity: usize,
}

impl<P: Copy + Eq + Hash + Ord + Debug> Cooldowns<P> {
    /// An empty memory of at most `capacity` peers (at least one).
    pub(crate) fn new(cooldown: Duration, capacity: usize) -> Self {
        Self { claimed: HashMap::new(), cooldown, capacity: capacity.max(1) }
    }

    /// Claims `peer` at `now`; false (and nothing changes) if it was claimed
    /// less than the cooldown ago. When full, forgets expired claims first,
    /// then the oldest.
    pub(crate) fn claim(&mut self, peer: P, now: Instant) -> bool {
        if self.is_cooling(&peer, now) {
            return false;
        }
        if self.claimed.len() >= self.capacity && !self.claimed.contains_key(&peer) {
            self.forget_expired(now);
            if self.claimed.len() >= self.capacity
                && let Some(oldest) = self.claimed.iter().map(|(peer, at)| (*at, *peer)).min()
            {
                self.claimed.remove(&oldest.1);
            }
        }
        self.claimed.insert(peer, now);
        true
    }

    /// Whether `peer` was claimed less than the cooldown before `now`.
    pub(crate) fn is_cooling(&self, peer: &P, now: Instant) -> bool {
        self.claimed.get(peer).is_some_and(|at| now.saturating_duration_since(*at) < self.cooldown)
    }

    #[cfg(test)]
    /// Peers remembered, expired ones included until they are forgotten.
    pub(crate) fn len(&self) -> usize {
        self.claimed.len()
    }

    fn forget_expired(&mut self, now: Instant) {
        let cooldown = self.cooldown;
        self.claimed.retain(|_, at| now.saturating_duration_since(*at) < cooldown);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_peer_is_claimed_once_per_cooldown() {
        let mut recent = Cooldowns::new(Duration::from_secs(600), 16);
        let (peer, now) = (1u32, Instant::now());
        assert!(recent.claim(peer, now));
        assert!(!recent.claim(peer, now + Duration::from_secs(599)));
        assert!(recent.claim(2, now), "other peers are not held up");
        assert!(recent.claim(peer, now + Duration::from_secs(600)));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_peers() {
        let mut recent = Cooldowns::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        let peers = [1u32, 2, 3, 4];
        for (seconds, peer) in (0..).zip(peers) {
            assert!(recent.claim(peer, now + Duration::from_secs(seconds)));
        }
        assert_eq!(recent.len(), 3);
        assert!(recent.claim(peers[0], now + Duration::from_secs(5)), "the oldest claim was forgotten");
        assert!(!recent.claim(peers[3], now + Duration::from_secs(5)));
    }

    #[test]
    fn a_peer_that_found_no_slot_is_synced_with_when_it_reconnects() {
        let now = Instant::now();
        let mut admission = SyncAdmission::new(SyncSettings { slots: 1, ..SyncSettings::default() });
        let Admission::Admitted(ticket) = admission.admit(1u32, 0.5, now) else { panic!("a free slot") };
        assert_eq!(admission.admit(2, 0.5, now), Admission::Refused(Refusal::NoSlot));
        admission.finished(ticket);
        assert!(matches!(admission.admit(2, 0.5, now + MINUTE), Admission::Admitted(_)));
    }

    #[test]
    fn a_peer_is_refused_for_its_score_and_while_cooling_down() {
        let now = Instant::now();
        let mut admission = SyncAdmission::new(SyncSettings::default());
        assert_eq!(admission.admit(1u32, 0.2, now), Admission::Refused(Refusal::LowScore));
        assert_eq!(admission.admit(1, f64::NAN, now), Admission::Refused(Refusal::LowScore));
        let Admission::Admitted(ticket) = admission.admit(1, 0.25, now) else { panic!("in good standing") };
        admission.finished(ticket);
        assert_eq!(admission.admit(1, 0.9, now + 9 * MINUTE), Admission::Refused(Refusal::Cooldown));
        assert!(matches!(admission.admit(1, 0.9, now + 10 * MINUTE), Admission::Admitted(_)));
        let mut disabled = SyncAdmission::new(SyncSettings { enabled: false, ..SyncSettings::default() });
        assert_eq!(disabled.admit(1u32, 1.0, now), Admission::Refused(Refusal::Disabled));
    }

    #[test]
    fn a_peer_being_synced_is_not_admitted_again_after_its_cooldown() {
        let now = Instant::now();
        let mut admission = SyncAdmission::new(SyncSettings::default());
        let Admission::Admitted(ticket) = admission.admit(1u32, 1.0, now) else { panic!("a free slot") };
        assert_eq!(admission.admit(1, 1.0, now + 20 * MINUTE), Admission::Refused(Refusal::Cooldown));
        admission.finished(ticket);
        assert!(matches!(admission.admit(1, 1.0, now + 20 * MINUTE), Admission::Admitted(_)));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Connect { peer: u8, score: f64, wait_ms: u64 },
        Finish { which: usize, wait_ms: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        let score = prop_oneof![8 => 0.0..1.0f64, 1 => Just(f64::NAN)];
        prop_oneof![
            3 => (0u8..12, score, 0u64..300).prop_map(|(peer, score, wait_ms)| Step::Connect { peer, score, wait_ms }),
            2 => (any::<usize>(), 0u64..300).prop_map(|(which, wait_ms)| Step::Finish { which, wait_ms }),
        ]
    }

    proptest! {
        #[test]
        fn admission_keeps_its_promises(
            enabled in prop::bool::weighted(0.9),
            min_score in 0.0..1.0f64,
            slots in 0usize..5,
            cooldown_ms in 1u64..1000,
            capacity in 0usize..16,
            steps in proptest::collection::vec(step(), 0..200),
        ) {
            let settings = SyncSettings {
                enabled,
                min_score,
                slots,
                cooldown: Duration::from_millis(cooldown_ms),
                capacity,
            };
            let mut admission = SyncAdmission::new(settings.clone());
            let mut now = Instant::now();
            let mut tickets: Vec<SyncTicket<u8>> = Vec::new();
            let mut last_admitted: BTreeMap<u8, Instant> = BTreeMap::new();
            // With no more peers than it remembers, the memory never forgets a
            // peer within its cooldown.
            let remembers_all = 12 <= capacity;
            for step in steps {
                match step {
                    Step::Connect { peer, score, wait_ms } => {
                        now += Duration::from_millis(wait_ms);
                        let (before, free) = (admission.admitted.claimed.clone(), admission.free_slots());
                        match admission.admit(peer, score, now) {
                            Admission::Admitted(ticket) => {
                                prop_assert!(enabled);
                                prop_assert!(score >= min_score, "admitted with score {}", score);
                                prop_assert!(free > 0);
                                prop_assert!(tickets.iter().all(|held| held.peer() != peer), "admitted twice at once");
                                if remembers_all && let Some(at) = last_admitted.get(&peer) {
                                    prop_assert!(now.duration_since(*at) >= settings.cooldown, "within the cooldown");
                                }
                                last_admitted.insert(peer, now);
                                tickets.push(ticket);
                            }
                            Admission::Refused(_) => {
                                prop_assert_eq!(&admission.admitted.claimed, &before, "a refusal changed the cooldowns");
                                prop_assert_eq!(admission.free_slots(), free);
                            }
                        }
                    }
                    Step::Finish { which, wait_ms } => {
                        now += Duration::from_millis(wait_ms);
                        if !tickets.is_empty() {
                            let free = admission.free_slots();
                            admission.finished(tickets.swap_remove(which % tickets.len()));
                            prop_assert_eq!(admission.free_slots(), free + 1, "the slot is free again");
                        }
                    }
                }
                prop_assert!(tickets.len() <= slots, "more than {} syncs at once", slots);
                prop_assert_eq!(admission.syncing().len(), tickets.len());
                prop_assert!(admission.admitted.len() <= capacity.max(1), "the memory outgrew its capacity");
            }
        }

        #[test]
        fn cooldowns_match_a_model(
            cooldown_ms in 1u64..1000,
            capacity in 0usize..10,
            claims in proptest::collection::vec((0u8..8, 0u64..300), 0..200),
        ) {
            let cooldown = Duration::from_millis(cooldown_ms);
            let mut cooldowns = Cooldowns::new(cooldown, capacity);
            let mut now = Instant::now();
            let mut model: BTreeMap<u8, Instant> = BTreeMap::new();
            for (peer, wait_ms) in claims {
                now += Duration::from_millis(wait_ms);
                let cooling = model.get(&peer).is_some_and(|at| now.duration_since(*at) < cooldown);
                let claimed = cooldowns.claim(peer, now);
                if 8 <= capacity {
                    prop_assert_eq!(claimed, !cooling);
                }
                // A small memory may forget a peer early, never hold one late.
                prop_assert!(claimed || cooling, "refused a peer that was not cooling down");
                if claimed {
                    model.insert(peer, now);
                }
                prop_assert!(cooldowns.len() <= capacity.max(1));
            }
        }
    }
}
