//! Peer reputation against real SQLite files: outcome counters and the latency
//! average, bans that survive the peer bound, and the migration that added them.

#![allow(clippy::unwrap_used)]

use agora_store::{KnownPeer, Outcome, PeerRecord, Peers, Store};

const NOW: u64 = 1_700_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn peers(&self) -> &Peers {
        self.store.peers()
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    Fixture { dir, store }
}

fn addresses(list: &[&str]) -> Vec<String> {
    list.iter().map(|address| address.to_string()).collect()
}

fn fresh(peer_id: &str, last_seen: u64) -> PeerRecord {
    PeerRecord::fresh(peer_id, last_seen)
}

#[test]
fn outcomes_are_counted_and_latency_is_averaged() {
    let f = fixture();
    let peers = f.peers();
    peers.save("peer-a", &addresses(&["/memory/1"]), NOW).unwrap();

    let record = peers
        .record_outcomes(
            "peer-a",
            &[
                Outcome::Success { latency_ms: 100.0 },
                Outcome::Failure,
                Outcome::Success { latency_ms: 200.0 },
                Outcome::Timeout,
                Outcome::Timeout,
                Outcome::Invalid,
            ],
            NOW + 10,
        )
        .unwrap();
    // The first sample sets the average; then new = old * 0.8 + sample * 0.2.
    let after_two = 100.0 * 0.8 + 200.0 * 0.2;
    assert_eq!(after_two, 120.0);
    assert_eq!(
        record,
        PeerRecord {
            addresses: addresses(&["/memory/1"]),
            successes: 2,
            failures: 1,
            timeouts: 2,
            invalid: 1,
            latency_ewma_ms: Some(after_two),
            ..fresh("peer-a", NOW + 10)
        }
    );

    // A later batch continues from the stored average, exactly.
    let record = peers.record_outcomes("peer-a", &[Outcome::Success { latency_ms: 50.0 }], NOW + 20).unwrap();
    let after_three = after_two * 0.8 + 50.0 * 0.2;
    assert_eq!(after_three, 106.0);
    assert_eq!(record.latency_ewma_ms, Some(after_three));
    assert_eq!(record.successes, 3);

    // last_seen never moves back; an empty batch changes nothing else.
    let record = peers.record_outcomes("peer-a", &[], NOW).unwrap();
    assert_eq!(record.last_seen, NOW + 20);
    assert_eq!(record.latency_ewma_ms, Some(after_three));

    peers.add_packages_provided("peer-a", 7, NOW + 5).unwrap();
    peers.add_packages_provided("peer-a", 3, NOW + 5).unwrap();
    assert_eq!(peers.record("peer-a").unwrap().unwrap().packages_provided, 10);

    // The stored record is what the write returned, and it survives a reopen.
    let stored = peers.record("peer-a").unwrap().unwrap();
    assert_eq!(stored, PeerRecord { packages_provided: 10, ..record });
    drop(f.store);
    let reopened = Store::open(f.dir.path()).unwrap();
    assert_eq!(reopened.peers().record("peer-a").unwrap(), Some(stored));
}

#[test]
fn an_unknown_peer_gets_a_row() {
    let f = fixture();
    let peers = f.peers();
    assert_eq!(peers.record("stranger").unwrap(), None);
    let record = peers.record_outcomes("stranger", &[Outcome::Invalid], NOW).unwrap();
    assert_eq!(record, PeerRecord { invalid: 1, ..fresh("stranger", NOW) });
    assert_eq!(peers.record("stranger").unwrap(), Some(record.clone()));
    assert_eq!(
        peers.known(10).unwrap(),
        [KnownPeer { peer_id: "stranger".into(), addresses: Vec::new(), last_seen: NOW }]
    );

    // Addresses learned later merge in; the counters stay.
    peers.save("stranger", &addresses(&["/memory/2"]), NOW + 1).unwrap();
    let record = peers.record("stranger").unwrap().unwrap();
    assert_eq!((record.addresses, record.invalid, record.last_seen), (addresses(&["/memory/2"]), 1, NOW + 1));

    peers.add_packages_provided("giver", 2, NOW + 2).unwrap();
    assert_eq!(peers.record("giver").unwrap(), Some(PeerRecord { packages_provided: 2, ..fresh("giver", NOW + 2) }));

    // Most recently seen first.
    let order: Vec<String> = peers.records(10).unwrap().into_iter().map(|r| r.peer_id).collect();
    assert_eq!(order, ["giver", "stranger"]);
    assert_eq!(peers.records(1).unwrap().len(), 1);
    assert!(peers.records(0).unwrap().is_empty());
}

#[test]
fn bans_are_set_counted_listed_and_lifted() {
    let f = fixture();
    let peers = f.peers();
    peers.save("peer-a", &addresses(&["/memory/1"]), NOW).unwrap();
    assert!(peers.banned(NOW).unwrap().is_empty());

    let record = peers.ban("peer-a", NOW + 3600, NOW).unwrap();
    assert_eq!((record.banned_until, record.bans), (NOW + 3600, 1));
    assert!(record.is_banned(NOW) && !record.is_banned(NOW + 3600));
    // A peer never seen can be banned too.
    let record = peers.ban("peer-z", NOW + 60, NOW).unwrap();
    assert_eq!(record, PeerRecord { banned_until: NOW + 60, bans: 1, ..fresh("peer-z", NOW) });

    let ids = |now: u64| -> Vec<String> { peers.banned(now).unwrap().into_iter().map(|r| r.peer_id).collect() };
    assert_eq!(ids(NOW), ["peer-a", "peer-z"]);
    assert_eq!(ids(NOW + 60), ["peer-a"], "a ban ends at banned_until");
    assert!(ids(NOW + 3600).is_empty());

    peers.unban("peer-a").unwrap();
    peers.unban("nobody").unwrap();
    assert_eq!(peers.record("nobody").unwrap(), None, "unbanning does not create peers");
    assert_eq!(ids(NOW), ["peer-z"]);
    let record = peers.record("peer-a").unwrap().unwrap();
    assert_eq!((record.banned_until, record.bans), (0, 1), "the ban count stays");

    // Banned again: the count grows and the new end replaces the old one.
    let record = peers.ban("peer-a", NOW + 10, NOW + 1).unwrap();
    assert_eq!((record.banned_until, record.bans, record.last_seen), (NOW + 10, 2, NOW + 1));
}

#[test]
fn a_banned_peer_survives_the_peer_bound() {
    let f = fixture();
    let peers = f.peers();
    // The least recently seen peer of all, and banned.
    peers.save("banned", &addresses(&["/memory/0"]), 1).unwrap();
    peers.ban("banned", NOW + 1_000_000, 1).unwrap();
    // A peer whose ban already ran out is an ordinary peer again.
    peers.save("paroled", &[], 2).unwrap();
    peers.ban("paroled", NOW - 1, 2).unwrap();

    for i in 0..=KnownPeer::MAX_PEERS {
        peers.save(&format!("peer-{i:04}"), &addresses(&["/memory/1"]), NOW + i as u64).unwrap();
    }
    let known = peers.known(usize::MAX).unwrap();
    assert_eq!(known.len(), KnownPeer::MAX_PEERS);
    assert_eq!(known.last().unwrap().peer_id, "banned");
    assert!(known.iter().all(|peer| peer.peer_id != "paroled" && peer.peer_id != "peer-0000"));
    let banned = peers.banned(NOW).unwrap();
    assert_eq!(banned.len(), 1);
    assert_eq!(
        (banned[0].peer_id.as_str(), banned[0].addresses.as_slice()),
        ("banned", &addresses(&["/memory/0"])[..])
    );

    // Outcomes for a new peer keep the same bound, and still spare the ban.
    peers.record_outcomes("newcomer", &[Outcome::Failure], NOW + 5000).unwrap();
    let records = peers.records(usize::MAX).unwrap();
    assert_eq!(records.len(), KnownPeer::MAX_PEERS);
    assert_eq!(records[0].peer_id, "newcomer");
    assert_eq!(records.last().unwrap().peer_id, "banned");
    assert!(records.iter().all(|record| record.peer_id != "peer-0002"), "the oldest unbanned one was dropped");

    // Once the ban has run out, the bound may drop it like any old peer.
    peers.save("later", &[], NOW + 2_000_000).unwrap();
    assert_eq!(peers.record("banned").unwrap(), None);
}

#[test]
fn a_version_2_database_is_upgraded_keeping_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.sqlite");
    // What a build with the first two migrations wrote.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(include_str!("../migrations/0001_catalog.sql")).unwrap();
    raw.execute_batch(include_str!("../migrations/0002_peers.sql")).unwrap();
    raw.execute_batch(
        "PRAGMA user_version = 2;
         INSERT INTO peers (peer_id, addresses, last_seen) VALUES
             ('old-a', '[\"/memory/1\",\"/memory/2\"]', 100),
             ('old-b', '[]', 200);",
    )
    .unwrap();
    drop(raw);

    let store = Store::open(dir.path()).unwrap();
    let peers = store.peers();
    let version: i64 =
        rusqlite::Connection::open(&path).unwrap().pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
    assert_eq!(version, agora_store::SCHEMA_VERSION);
    assert_eq!(
        peers.records(10).unwrap(),
        [fresh("old-b", 200), PeerRecord { addresses: addresses(&["/memory/1", "/memory/2"]), ..fresh("old-a", 100) }]
    );
    let record = peers.record_outcomes("old-a", &[Outcome::Success { latency_ms: 8.0 }], 300).unwrap();
    assert_eq!((record.successes, record.latency_ewma_ms, record.addresses.len()), (1, Some(8.0), 2));
}
