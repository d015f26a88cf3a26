//! The address book: the `peers` rows' ids and addresses, so a node can re-dial
//! the peers it has seen after a restart, and the bound on how many it keeps.
//!
//! The store keeps peer ids and addresses as opaque text: it knows nothing of the
//! network layer's formats. Both lists are bounded, so a flood of peers or
//! addresses cannot grow the catalog without limit. Reputation, which lives in
//! the same rows, is [`crate::reputation`]'s; the public handle is
//! [`crate::Peers`].

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::rows::to_sql;
use crate::{Error, Result};

/// A peer as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// The peer's id, as the network layer wrote it.
    pub peer_id: String,
    /// Addresses it was reached at or announced, newest first, without duplicates.
    pub addresses: Vec<String>,
    /// Unix seconds when it was last seen.
    pub last_seen: u64,
}

impl KnownPeer {
    /// Most addresses kept per peer; older ones are dropped first.
    pub const MAX_ADDRESSES: usize = 16;
    /// Most peers kept; the least recently seen are dropped first, except that a
    /// peer whose ban is still running is never dropped.
    pub const MAX_PEERS: usize = 1000;
}

/// Upserts a peer, merging addresses and evicting the least recently seen peers
/// beyond [`KnownPeer::MAX_PEERS`] (see [`enforce_bound`]).
pub(crate) fn save(tx: &Transaction<'_>, peer_id: &str, addresses: &[String], now: u64) -> Result<()> {
    let stored: Option<String> = tx
        .prepare_cached("SELECT addresses FROM peers WHERE peer_id = ?1")?
        .query_row([peer_id], |row| row.get(0))
        .optional()?;
    let older = stored.map(|json| parse_addresses(peer_id, &json)).transpose()?.unwrap_or_default();
    let mut merged: Vec<&String> = Vec::with_capacity(KnownPeer::MAX_ADDRESSES);
    for address in addresses.iter().chain(&older) {
        if merged.len() == KnownPeer::MAX_ADDRESSES {
            break;
        }
        if !merged.contains(&address) {
            merged.push(address);
        }
    }
    let json = serde_json::to_string(&merged).map_err(|e| Error::Corrupt(e.to_string()))?;
    tx.prepare_cached(
        "INSERT INTO peers (peer_id, addresses, last_seen) VALUES (?1, ?2, ?3)
         ON CONFLICT (peer_id) DO UPDATE SET addresses = excluded.addresses,
             last_seen = max(last_seen, excluded.last_seen)",
    )?
    .execute(params![peer_id, json, to_sql(now)])?;
    enforce_bound(tx, peer_id, now)
}

/// Forgets the least recently seen peers beyond [`KnownPeer::MAX_PEERS`], never
/// `keep` (the peer just written) and never a peer banned at `now`: a ban has to
/// survive a flood of new peers. Banned peers still count towards the bound, so
/// while more than `MAX_PEERS` peers are banned the table holds only those.
pub(crate) fn enforce_bound(tx: &Transaction<'_>, keep: &str, now: u64) -> Result<()> {
    let count: i64 = tx.prepare_cached("SELECT count(*) FROM peers")?.query_row([], |row| row.get(0))?;
    let excess = count - KnownPeer::MAX_PEERS as i64;
    if excess > 0 {
        tx.prepare_cached(
            "DELETE FROM peers WHERE peer_id IN
                 (SELECT peer_id FROM peers WHERE peer_id <> ?1 AND banned_until <= ?3
                  ORDER BY last_seen ASC, peer_id ASC LIMIT ?2)",
        )?
        .execute(params![keep, excess, to_sql(now)])?;
    }
    Ok(())
}

/// Up to `limit` peers, most recently seen first.
pub(crate) fn known(connection: &Connection, limit: usize) -> Result<Vec<KnownPeer>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(
        "SELECT peer_id, addresses, last_seen FROM peers ORDER BY last_seen DESC, peer_id ASC LIMIT ?1",
    )?;
    let rows = statement
        .query_map([limit], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?)))?;
    rows.map(|row| {
        let (peer_id, addresses, last_seen) = row?;
        let addresses = parse_addresses(&peer_id, &addresses)?;
        Ok(KnownPeer { peer_id, addresses, last_seen: last_seen.max(0) as u64 })
    })
    .collect()
}

pub(crate) fn parse_addresses(peer_id: &str, json: &str) -> Result<Vec<String>> {
    serde_json::from_str(json).map_err(|error| Error::Corrupt(format!("addresses of peer `{peer_id}`: {error}")))
}
