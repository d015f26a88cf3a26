//! Peer reputation: fed only by real outcomes (a verified chunk or page is a
//! success, a timeout or refusal a failure, a bad signature, bad chunk or garbage
//! a strike), persisted in SQLite and restored at start, used to order providers
//! and sync peers, and to block peers that keep sending invalid data.
//!
//! The score, in `[0, 1]`:
//!
//! ```text
//! score = (0.50 · success + 0.20 · speed + 0.20 · availability + 0.10 · recency) · 0.5^invalid
//! success      = (successes + 1) / (successes + failures + 2)
//! availability = (successes + 1) / (successes + timeouts + 2)
//! speed        = 1 / (1 + latency_ewma_ms / 100)        (0.5 when unknown)
//! recency      = exp(−age / 1 day)                       (age since last seen)
//! ```
//!
//! Success rate weighs most because a peer that answers correctly is what a fetch
//! needs; speed and availability separate good peers; recency prefers peers seen
//! lately; every invalid response halves the score. A peer whose invalid count
//! reaches `invalid_threshold · (bans + 1)` is blocked for
//! `ban_secs · 2^bans` seconds, and the ban survives restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agora_net::PeerId;
use agora_store::{Outcome, PeerRecord, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock::Clock;

use crate::ReputationSettings;

/// Peers whose records are kept in memory (the rest stay in SQLite only).
const MAX_CACHED_PEERS: usize = 10_000;

/// A peer's standing, for `agora peers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStanding {
    /// Score in `[0, 1]`.
    pub score: f64,
    /// Why, in words.
    pub reason: String,
    /// Unix seconds until which the peer is blocked (0: not blocked).
    pub banned_until: u64,
    /// Verified answers.
    pub successes: u64,
    /// Refusals and errors.
    pub failures: u64,
    /// Requests that ran out of time.
    pub timeouts: u64,
    /// Invalid data (bad signatures, bad chunks, garbage).
    pub invalid: u64,
    /// Average latency of successful requests (EWMA), in milliseconds.
    pub latency_ms: Option<f64>,
}

/// The score of a record at `now`.
pub fn score(record: &PeerRecord, now: u64) -> f64 {
    let (s, f, t) = (record.successes as f64, record.failures as f64, record.timeouts as f64);
    let success = (s + 1.0) / (s + f + 2.0);
    let availability = (s + 1.0) / (s + t + 2.0);
    let speed = record.latency_ewma_ms.map_or(0.5, |ms| 1.0 / (1.0 + ms.max(0.0) / 100.0));
    let age = now.saturating_sub(record.last_seen) as f64;
    let recency = (-age / 86_400.0).exp();
    let penalty = 0.5f64.powi(record.invalid.min(64) as i32);
    (0.5 * success + 0.2 * speed + 0.2 * availability + 0.1 * recency) * penalty
}

/// The standing of a record at `now`, with the reason in words.
pub fn standing(record: &PeerRecord, now: u64) -> PeerStanding {
    let mut reasons = Vec::new();
    let total = record.successes + record.failures + record.timeouts;
    if total == 0 {
        reasons.push("no exchanges yet".to_owned());
    } else {
        reasons.push(format!("{}/{} answered", record.successes, total));
    }
    if record.timeouts > 0 {
        reasons.push(format!("{} timeouts", record.timeouts));
    }
    if let Some(ms) = record.latency_ewma_ms {
        reasons.push(format!("{ms:.0} ms avg"));
    }
    if record.invalid > 0 {
        reasons.push(format!("{} invalid", record.invalid));
    }
    if record.banned_until > now {
        reasons.push(format!("blocked for {} s more", record.banned_until - now));
    }
    PeerStanding {
        score: score(record, now),
        reason: reasons.join(", "),
        banned_until: if record.banned_until > now { record.banned_until } else { 0 },
        successes: record.successes,
        failures: record.failures,
        timeouts: record.timeouts,
        invalid: record.invalid,
        latency_ms: record.latency_ewma_ms,
    }
}

/// The record of a peer never dealt with, at `now`.
fn stranger(now: u64) -> PeerRecord {
    PeerRecord::fresh(String::new(), now)
}

/// A ban that started or ended, for whoever enforces bans (the network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BanChange {
    /// Block this peer now.
    Banned(PeerId),
    /// Its ban ran out: unblock it.
    Lifted(PeerId),
}

/// Ban changes a subscriber may fall behind by; one that lags re-reads
/// [`Reputation::banned`] instead.
const BAN_CHANGES: usize = 256;

/// In-memory view of the persisted reputation, written through to SQLite. It
/// decides bans; it does not enforce them: it announces them as [`BanChange`]s.
#[derive(Debug)]
pub(crate) struct Reputation {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: ReputationSettings,
    records: Mutex<HashMap<PeerId, PeerRecord>>,
    bans: broadcast::Sender<BanChange>,
    /// Serialises write-then-cache updates: without it two concurrent outcomes for
    /// one peer could land in SQLite in one order and in the cache in the other,
    /// leaving the cache with the older record.
    writes: tokio::sync::Mutex<()>,
}

impl Reputation {
    /// Loads what SQLite remembers (blocking).
    pub(crate) fn load(store: Store, settings: ReputationSettings, clock: Arc<dyn Clock>) -> agora_store::Result<Self> {
        let mut records = HashMap::new();
        for record in store.peers().records(MAX_CACHED_PEERS)? {
            if let Ok(peer) = record.peer_id.parse::<PeerId>() {
                records.insert(peer, record);
            }
        }
        Ok(Self {
            store,
            clock,
            settings,
            records: Mutex::new(records),
            bans: broadcast::channel(BAN_CHANGES).0,
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Ban changes from now on.
    pub(crate) fn ban_changes(&self) -> broadcast::Receiver<BanChange> {
        self.bans.subscribe()
    }

    /// Records an outcome; a peer whose ban starts now is announced.
    pub(crate) async fn record(&self, peer: PeerId, outcome: Outcome) {
        self.record_all(peer, vec![outcome]).await;
    }

    /// Records several outcomes in one write (a transfer's verified chunks); a peer
    /// whose ban starts now is announced.
    pub(crate) async fn record_all(&self, peer: PeerId, outcomes: Vec<Outcome>) {
        if outcomes.is_empty() {
            return;
        }
        let _serial = self.writes.lock().await;
        let store = self.store.clone();
        let id = peer.to_string();
        let settings = self.settings.clone();
        let now = self.clock.unix_now();
        let result = tokio::task::spawn_blocking(move || -> agora_store::Result<(PeerRecord, Option<u64>)> {
            let record = store.peers().record_outcomes(&id, &outcomes, now)?;
            match ban_due(&settings, &record, &outcomes, now) {
                Some(until) => Ok((store.peers().ban(&id, until, now)?, Some(until))),
                None => Ok((record, None)),
            }
        })
        .await;
        match result {
            Ok(Ok((record, banned))) => {
                {
                    let mut records = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if records.len() < MAX_CACHED_PEERS || records.contains_key(&peer) {
                        records.insert(peer, record);
                    }
                }
                if let Some(until) = banned {
                    tracing::warn!(%peer, until, "blocking a peer that keeps sending invalid data");
                    // No subscriber (offline) is not an error.
                    let _ = self.bans.send(BanChange::Banned(peer));
                }
            }
            Ok(Err(error)) => tracing::warn!(%peer, %error, "could not record a reputation outcome"),
            Err(error) => tracing::warn!(%peer, %error, "reputation task failed"),
        }
    }

    /// The peer's score now (0.5-ish for strangers).
    pub(crate) fn score(&self, peer: &PeerId) -> f64 {
        let now = self.clock.unix_now();
        let records = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match records.get(peer) {
            Some(record) => score(record, now),
            None => score(&stranger(now), now),
        }
    }

    /// The peer's latency EWMA in milliseconds, if it ever answered.
    pub(crate) fn latency_ms(&self, peer: &PeerId) -> Option<f64> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(peer).and_then(|r| r.latency_ewma_ms)
    }

    /// Invalid responses recorded against the peer.
    pub(crate) fn invalid(&self, peer: &PeerId) -> u64 {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(peer).map_or(0, |r| r.invalid)
    }

    /// Whether the peer is blocked now.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        let now = self.clock.unix_now();
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer)
            .is_some_and(|r| r.banned_until > now)
    }

    /// `peers` best first; blocked peers are left out.
    pub(crate) fn rank(&self, peers: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
        let mut ranked: Vec<(f64, PeerId)> =
            peers.into_iter().filter(|peer| !self.is_banned(peer)).map(|peer| (self.score(&peer), peer)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranked.into_iter().map(|(_, peer)| peer).collect()
    }

    /// Every peer banned now (bans survive restarts).
    pub(crate) fn banned(&self) -> Vec<PeerId> {
        let now = self.clock.unix_now();
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, record)| record.banned_until > now)
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// Lifts the bans whose time ran out: cleared in SQLite and memory, and
    /// announced as [`BanChange::Lifted`].
    pub(crate) async fn expire_bans(&self) {
        let now = self.clock.unix_now();
        let expired: Vec<PeerId> = self
            .records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, record)| record.banned_until != 0 && record.banned_until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            let store = self.store.clone();
            let id = peer.to_string();
            let _ = tokio::task::spawn_blocking(move || store.peers().unban(&id)).await;
            if let Some(record) = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&peer)
            {
                record.banned_until = 0;
            }
            tracing::info!(%peer, "ban expired; unblocking");
            let _ = self.bans.send(BanChange::Lifted(peer));
        }
    }
}

/// When `record` (after `outcomes`) earns a ban at `now`, until when: a peer whose
/// invalid count reaches `invalid_threshold · (bans + 1)` is blocked for
/// `ban_secs · 2^bans` seconds. Only an invalid outcome starts a ban.
fn ban_due(settings: &ReputationSettings, record: &PeerRecord, outcomes: &[Outcome], now: u64) -> Option<u64> {
    let due = outcomes.iter().any(|outcome| matches!(outcome, Outcome::Invalid))
        && record.banned_until <= now
        && record.invalid >= settings.invalid_threshold.saturating_mul(record.bans + 1);
    due.then(|| now + settings.ban_secs.saturating_mul(1u64 << record.bans.min(16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(successes: u64, failures: u64, timeouts: u64, invalid: u64, latency: Option<f64>) -> PeerRecord {
        PeerRecord {
            successes,
            failures,
            timeouts,
            invalid,
            latency_ewma_ms: latency,
            last_seen: 1_000,
            ..stranger(1_000)
        }
    }

    #[test]
    fn scores_move_for_the_right_reasons() {
        let now = 1_000;
        let fast = score(&record(50, 0, 0, 0, Some(5.0)), now);
        let slow = score(&record(50, 0, 0, 0, Some(500.0)), now);
        let flaky = score(&record(25, 25, 0, 0, Some(5.0)), now);
        let stalling = score(&record(25, 0, 25, 0, Some(5.0)), now);
        let liar = score(&record(50, 0, 0, 1, Some(5.0)), now);
        let unknown = score(&PeerRecord { last_seen: now, ..stranger(1_000) }, now);
        assert!(fast > slow && slow > flaky, "{fast} {slow} {flaky}");
        assert!(fast > stalling);
        assert!((liar - fast / 2.0).abs() < 1e-9);
        assert!(fast > unknown && unknown > liar / 2.0);
        let old = score(&PeerRecord { last_seen: 0, ..record(50, 0, 0, 0, Some(5.0)) }, 10 * 86_400);
        assert!(old < fast);
        assert!((0.0..=1.0).contains(&fast));
    }

    #[test]
    fn standing_explains_itself() {
        let standing = standing(&PeerRecord { banned_until: 2_000, ..record(3, 1, 1, 2, Some(12.0)) }, 1_000);
        assert_eq!(standing.reason, "3/5 answered, 1 timeouts, 12 ms avg, 2 invalid, blocked for 1000 s more");
        assert_eq!(standing.banned_until, 2_000);
    }
}
