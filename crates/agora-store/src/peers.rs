//! [`Peers`]: the peers this node has seen (their addresses, to re-dial them
//! after a restart) and their reputation (outcome counters, latency, bans).
//!
//! The store only records and counts; scoring peers and deciding whom to ban is
//! the caller's policy. Peer ids and addresses are opaque text to the store.

use std::sync::Arc;

use crate::Result;
use crate::address_book::{self, KnownPeer};
use crate::db::Database;
use crate::reputation::{self, Outcome, PeerRecord};

/// Peers and their reputation, reached through [`crate::Store::peers`]. Cheap to
/// clone; all clones share the store's connections.
///
/// Methods block on SQLite: call them from a blocking thread.
#[derive(Debug, Clone)]
pub struct Peers {
    database: Arc<Database>,
}

impl Peers {
    pub(crate) fn new(database: Arc<Database>) -> Self {
        Self { database }
    }

    /// Records that `peer_id` was seen at `addresses` (newest first) at `now`.
    ///
    /// The addresses are put before the ones already stored, duplicates dropped and
    /// the list cut at [`KnownPeer::MAX_ADDRESSES`]; `last_seen` never moves back.
    /// Beyond [`KnownPeer::MAX_PEERS`] peers, the least recently seen others are
    /// forgotten, except peers banned at `now` (see [`Peers::ban`]). Ids and
    /// addresses are opaque text to the store.
    pub fn save(&self, peer_id: &str, addresses: &[String], now: u64) -> Result<()> {
        self.database.write(|tx| address_book::save(tx, peer_id, addresses, now))
    }

    /// Up to `limit` known peers, most recently seen first.
    pub fn known(&self, limit: usize) -> Result<Vec<KnownPeer>> {
        self.database.read(|connection| address_book::known(connection, limit))
    }

    /// Records how exchanges with `peer_id` turned out, in order, at `now`, and
    /// returns the peer's updated record; all in one transaction.
    ///
    /// A peer never seen before gets a row with no addresses. Each
    /// [`Outcome::Success`] counts a success and feeds its latency into
    /// [`PeerRecord::latency_ewma_ms`] (`old * 0.8 + sample * 0.2`; the first sample
    /// sets it; a sample that is negative or not finite counts the success but
    /// leaves the average alone); the other outcomes count in their own counter.
    /// `last_seen` moves up to `now`, never back. Like [`Peers::save`], it keeps
    /// the table within [`KnownPeer::MAX_PEERS`], never dropping a banned peer.
    pub fn record_outcomes(&self, peer_id: &str, outcomes: &[Outcome], now: u64) -> Result<PeerRecord> {
        self.database.write(|tx| reputation::record_outcomes(tx, peer_id, outcomes, now))
    }

    /// Adds `count` to the packages `peer_id` provided (ingested from it), as
    /// seen at `now`. An unknown peer gets a row, as in [`Peers::record_outcomes`].
    pub fn add_packages_provided(&self, peer_id: &str, count: u64, now: u64) -> Result<()> {
        self.database.write(|tx| reputation::add_packages_provided(tx, peer_id, count, now))
    }

    /// Bans `peer_id` until the unix second `until` (replacing any running ban)
    /// and counts the ban; returns the updated record. An unknown peer gets a row,
    /// as in [`Peers::record_outcomes`]. While `until` is later than the `now`
    /// they are given, the peer is listed by [`Peers::banned`] and the peer bound
    /// never drops it.
    pub fn ban(&self, peer_id: &str, until: u64, now: u64) -> Result<PeerRecord> {
        self.database.write(|tx| reputation::ban(tx, peer_id, until, now))
    }

    /// Lifts the ban on `peer_id` (its ban count stays); nothing if it is unknown.
    pub fn unban(&self, peer_id: &str) -> Result<()> {
        self.database.write(|tx| reputation::unban(tx, peer_id))
    }

    /// Peers banned at `now` (their ban ends later than `now`), by peer id.
    pub fn banned(&self, now: u64) -> Result<Vec<PeerRecord>> {
        self.database.read(|connection| reputation::banned(connection, now))
    }

    /// The record of `peer_id`, if known.
    pub fn record(&self, peer_id: &str) -> Result<Option<PeerRecord>> {
        self.database.read(|connection| reputation::load(connection, peer_id))
    }

    /// Up to `limit` peer records, most recently seen first.
    pub fn records(&self, limit: usize) -> Result<Vec<PeerRecord>> {
        self.database.read(|connection| reputation::records(connection, limit))
    }
}
