//! Peer reputation (migration 0003): how each peer's requests turned out, a
//! moving average of its latency, how many packages it gave us, and bans.
//!
//! Reputation lives in the `peers` rows next to the addresses, so it shares their
//! bound ([`crate::KnownPeer::MAX_PEERS`]), except that a peer whose ban is still running
//! is never dropped. The store only counts; scoring and deciding whom to ban is
//! the caller's policy. The public handle is [`crate::Peers`].

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::address_book::{self, parse_addresses};
use crate::rows::to_sql;
use crate::{Error, Result};

/// Weight of a new latency sample in the moving average.
const EWMA_ALPHA: f64 = 0.2;

/// How one exchange with a peer turned out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The peer answered correctly after `latency_ms` milliseconds.
    Success {
        /// Round-trip time of the exchange, in milliseconds.
        latency_ms: f64,
    },
    /// The exchange failed (refused, connection lost, error answer).
    Failure,
    /// The peer did not answer in time.
    Timeout,
    /// The peer answered with something that broke the rules (bad signature,
    /// wrong digest, garbage).
    Invalid,
}

/// Everything the store knows about one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    /// The peer's id, as the network layer wrote it.
    pub peer_id: String,
    /// Addresses it was reached at or announced, newest first; empty for a peer
    /// known only from its outcomes.
    pub addresses: Vec<String>,
    /// Unix seconds when it was last seen.
    pub last_seen: u64,
    /// Exchanges that succeeded.
    pub successes: u64,
    /// Exchanges that failed.
    pub failures: u64,
    /// Exchanges that timed out.
    pub timeouts: u64,
    /// Answers that broke the rules.
    pub invalid: u64,
    /// Exponentially weighted moving average of successful exchanges' latency in
    /// milliseconds (weight 0.2 for each new sample); `None` before the first.
    pub latency_ewma_ms: Option<f64>,
    /// Packages this node ingested from the peer.
    pub packages_provided: u64,
    /// Unix seconds until which the peer is banned; banned while this is later
    /// than now, so 0 means never banned or unbanned.
    pub banned_until: u64,
    /// How many times the peer was banned.
    pub bans: u64,
}

impl PeerRecord {
    /// The record of a peer with no history, last seen at `last_seen`.
    pub fn fresh(peer_id: impl Into<String>, last_seen: u64) -> Self {
        Self {
            peer_id: peer_id.into(),
            addresses: Vec::new(),
            last_seen,
            successes: 0,
            failures: 0,
            timeouts: 0,
            invalid: 0,
            latency_ewma_ms: None,
            packages_provided: 0,
            banned_until: 0,
            bans: 0,
        }
    }

    /// Whether the peer is banned at `now`.
    pub fn is_banned(&self, now: u64) -> bool {
        self.banned_until > now
    }
}

const COLUMNS: &str = "peer_id, addresses, last_seen, successes, failures, timeouts, invalid, latency_ewma_ms, \
                       packages_provided, banned_until, bans";

/// Applies `outcomes` in order to `peer_id` (created if unknown): see
/// [`crate::Peers::record_outcomes`].
pub(crate) fn record_outcomes(
    tx: &Transaction<'_>,
    peer_id: &str,
    outcomes: &[Outcome],
    now: u64,
) -> Result<PeerRecord> {
    let mut record = upsert(tx, peer_id, now)?;
    for outcome in outcomes {
        match *outcome {
            Outcome::Success { latency_ms } => {
                record.successes = record.successes.saturating_add(1);
                if latency_ms.is_finite() && latency_ms >= 0.0 {
                    record.latency_ewma_ms = Some(match record.latency_ewma_ms {
                        Some(old) => old * (1.0 - EWMA_ALPHA) + latency_ms * EWMA_ALPHA,
                        None => latency_ms,
                    });
                }
            }
            Outcome::Failure => record.failures = record.failures.saturating_add(1),
            Outcome::Timeout => record.timeouts = record.timeouts.saturating_add(1),
            Outcome::Invalid => record.invalid = record.invalid.saturating_add(1),
        }
    }
    tx.prepare_cached(
        "UPDATE peers SET successes = ?2, failures = ?3, timeouts = ?4, invalid = ?5, latency_ewma_ms = ?6
         WHERE peer_id = ?1",
    )?
    .execute(params![
        peer_id,
        to_sql(record.successes),
        to_sql(record.failures),
        to_sql(record.timeouts),
        to_sql(record.invalid),
        record.latency_ewma_ms
    ])?;
    Ok(record)
}

/// Adds `count` to the packages `peer_id` provided (created if unknown).
pub(crate) fn add_packages_provided(tx: &Transaction<'_>, peer_id: &str, count: u64, now: u64) -> Result<()> {
    let record = upsert(tx, peer_id, now)?;
    tx.prepare_cached("UPDATE peers SET packages_provided = ?2 WHERE peer_id = ?1")?
        .execute(params![peer_id, to_sql(record.packages_provided.saturating_add(count))])?;
    Ok(())
}

/// Bans `peer_id` (created if unknown) until `until`: see [`crate::Peers::ban`].
pub(crate) fn ban(tx: &Transaction<'_>, peer_id: &str, until: u64, now: u64) -> Result<PeerRecord> {
    let mut record = upsert(tx, peer_id, now)?;
    record.banned_until = until;
    record.bans = record.bans.saturating_add(1);
    tx.prepare_cached("UPDATE peers SET banned_until = ?2, bans = ?3 WHERE peer_id = ?1")?.execute(params![
        peer_id,
        to_sql(record.banned_until),
        to_sql(record.bans)
    ])?;
    Ok(record)
}

/// Lifts the ban on `peer_id`, if any.
pub(crate) fn unban(tx: &Transaction<'_>, peer_id: &str) -> Result<()> {
    tx.prepare_cached("UPDATE peers SET banned_until = 0 WHERE peer_id = ?1")?.execute([peer_id])?;
    Ok(())
}

/// Peers whose ban runs past `now`, by peer id.
pub(crate) fn banned(connection: &Connection, now: u64) -> Result<Vec<PeerRecord>> {
    let mut statement = connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM peers WHERE banned_until > ?1 ORDER BY peer_id ASC"))?;
    let rows = statement.query_map([to_sql(now)], RawRecord::from_row)?;
    rows.map(|row| row?.decode()).collect()
}

/// The record of `peer_id`, if known.
pub(crate) fn load(connection: &Connection, peer_id: &str) -> Result<Option<PeerRecord>> {
    connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM peers WHERE peer_id = ?1"))?
        .query_row([peer_id], RawRecord::from_row)
        .optional()?
        .map(RawRecord::decode)
        .transpose()
}

/// Up to `limit` records, most recently seen first.
pub(crate) fn records(connection: &Connection, limit: usize) -> Result<Vec<PeerRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection
        .prepare_cached(&format!("SELECT {COLUMNS} FROM peers ORDER BY last_seen DESC, peer_id ASC LIMIT ?1"))?;
    let rows = statement.query_map([limit], RawRecord::from_row)?;
    rows.map(|row| row?.decode()).collect()
}

/// Makes sure `peer_id` has a row (no addresses if new), moves `last_seen` up to
/// `now`, enforces the peer bound, and returns the row as it now is.
fn upsert(tx: &Transaction<'_>, peer_id: &str, now: u64) -> Result<PeerRecord> {
    tx.prepare_cached(
        "INSERT INTO peers (peer_id, addresses, last_seen) VALUES (?1, '[]', ?2)
         ON CONFLICT (peer_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
    )?
    .execute(params![peer_id, to_sql(now)])?;
    address_book::enforce_bound(tx, peer_id, now)?;
    load(tx, peer_id)?.ok_or_else(|| Error::Corrupt(format!("peer `{peer_id}` vanished while it was written")))
}

/// A `peers` row as SQLite returns it, before the addresses are parsed.
struct RawRecord {
    peer_id: String,
    addresses: String,
    numbers: [i64; 8],
    latency_ewma_ms: Option<f64>,
}

impl RawRecord {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            peer_id: row.get(0)?,
            addresses: row.get(1)?,
            numbers: [
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(8)?,
                row.get(9)?,
                row.get(10)?,
            ],
            latency_ewma_ms: row.get(7)?,
        })
    }

    fn decode(self) -> Result<PeerRecord> {
        let addresses = parse_addresses(&self.peer_id, &self.addresses)?;
        let [last_seen, successes, failures, timeouts, invalid, packages_provided, banned_until, bans] =
            self.numbers.map(|number| number.max(0) as u64);
        Ok(PeerRecord {
            peer_id: self.peer_id,
            addresses,
            last_seen,
            successes,
            failures,
            timeouts,
            invalid,
            latency_ewma_ms: self.latency_ewma_ms,
            packages_provided,
            banned_until,
            bans,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_that_are_not_latencies_do_not_move_the_average() {
        let database = crate::db::Database::memory().unwrap();
        let record = database
            .write(|tx| {
                record_outcomes(
                    tx,
                    "p",
                    &[
                        Outcome::Success { latency_ms: f64::NAN },
                        Outcome::Success { latency_ms: 10.0 },
                        Outcome::Success { latency_ms: -5.0 },
                        Outcome::Success { latency_ms: f64::INFINITY },
                    ],
                    1,
                )
            })
            .unwrap();
        assert_eq!(record.successes, 4);
        assert_eq!(record.latency_ewma_ms, Some(10.0));
    }
}
