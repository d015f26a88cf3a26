//! The catalog: signed package indexes and manifests in SQLite, the search
//! documents derived from them, the record of which artifacts this node holds, and
//! the peers it has seen. Records from peers enter through the `ingest_*` methods
//! and leave through [`Catalog::page`]. Peer reputation (migration 0003) and the
//! storage policy over held artifacts (pins, LRU eviction) are here too.
//!
//! Every write re-checks the domain rules inside its transaction (against the
//! index as it is *in that transaction*), so concurrent writers cannot slip an
//! illegal update past each other, and a rejected write changes nothing.

use std::path::Path;
use std::sync::Arc;

use agora_core::{
    Digest, IndexChange, PackageIndex, PackageName, Publication, Query, SearchResults, SignedManifest,
    SignedPackageIndex, Version,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::db::Database;
use crate::peers::{self, KnownPeer};
use crate::reputation::{self, Outcome, PeerRecord};
use crate::search;
use crate::storage::{self, StorageUsage};
use crate::sync::{self, CatalogEntry, Ingested};
use crate::{Error, Result};

/// Counts over the catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogStats {
    /// Package names.
    pub packages: u64,
    /// Versions with a stored manifest.
    pub versions: u64,
    /// Artifacts held.
    pub artifacts: u64,
    /// Bytes of artifacts held.
    pub artifact_bytes: u64,
}

/// The SQLite catalog. Cheap to clone; all clones share the connections.
///
/// Methods block on SQLite: call them from a blocking thread
/// (`tokio::task::spawn_blocking`), not from an async task.
#[derive(Debug, Clone)]
pub struct Catalog {
    database: Arc<Database>,
}

impl Catalog {
    /// Opens (creating and migrating as needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self { database: Arc::new(Database::open(path)?) })
    }

    /// A fresh in-memory catalog, for tests and tools.
    pub fn memory() -> Result<Self> {
        Ok(Self { database: Arc::new(Database::memory()?) })
    }

    /// Stores a new version: checks [`Publication::check`] against the stored
    /// index, then writes the index, the manifest, the search document and the
    /// artifact record in one transaction.
    pub fn publish(&self, manifest: &SignedManifest, index: &SignedPackageIndex, now: u64) -> Result<()> {
        self.database.write(|tx| {
            let current = load_index(tx, manifest.manifest().name())?;
            Publication::check(manifest, index, current.as_ref())?;
            let package_id = store_index(tx, index)?;
            store_manifest(tx, package_id, manifest)?;
            let artifact = &manifest.manifest().artifact;
            record_artifact(tx, &artifact.digest, artifact.size, true, now)?;
            search::refresh_document(tx, package_id, index.index())?;
            Ok(())
        })
    }

    /// Applies an owner-signed update that only yanks or unyanks versions.
    pub fn apply_yank(&self, index: &SignedPackageIndex) -> Result<IndexChange> {
        self.database.write(|tx| {
            let name = &index.index().name;
            let Some(current) = load_index(tx, name)? else {
                return Err(agora_core::Error::PackageNotFound(name.clone()).into());
            };
            let change = current.check_successor(index.index())?;
            if !change.added.is_empty() {
                return Err(agora_core::Error::IllegalUpdate {
                    name: name.clone(),
                    reason: "a yank cannot add versions; publish them".into(),
                }
                .into());
            }
            let package_id = store_index(tx, index)?;
            search::refresh_document(tx, package_id, index.index())?;
            Ok(change)
        })
    }

    /// The stored index of `name`.
    pub fn package(&self, name: &PackageName) -> Result<Option<SignedPackageIndex>> {
        self.database.read(|connection| {
            let record: Option<Vec<u8>> = connection
                .prepare_cached("SELECT record FROM packages WHERE name = ?1")?
                .query_row([name.as_str()], |row| row.get(0))
                .optional()?;
            record.map(|bytes| decode_index(&bytes)).transpose()
        })
    }

    /// The stored manifest of `name@version`.
    pub fn manifest(&self, name: &PackageName, version: &Version) -> Result<Option<SignedManifest>> {
        self.database.read(|connection| {
            let record: Option<Vec<u8>> = connection
                .prepare_cached(
                    "SELECT m.record FROM manifests m JOIN packages p ON p.id = m.package_id
                     WHERE p.name = ?1 AND m.version = ?2",
                )?
                .query_row(params![name.as_str(), version.to_string()], |row| row.get(0))
                .optional()?;
            record.map(|bytes| decode_manifest(&bytes)).transpose()
        })
    }

    /// Full-text search with filters and paging; see [`Query`].
    pub fn search(&self, query: &Query) -> Result<SearchResults> {
        query.validate()?;
        self.database.read(|connection| search::run(connection, query))
    }

    /// Records that this node holds the artifact with `digest`.
    pub fn record_artifact(&self, digest: &Digest, size: u64, pinned: bool, now: u64) -> Result<()> {
        self.database.write(|tx| record_artifact(tx, digest, size, pinned, now))
    }

    /// Whether this node holds the artifact with `digest`.
    pub fn has_artifact(&self, digest: &Digest) -> Result<bool> {
        self.database.read(|connection| {
            Ok(connection
                .prepare_cached("SELECT 1 FROM artifacts WHERE digest = ?1")?
                .query_row([digest.as_bytes().as_slice()], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    /// Ingests a package index received from a peer (its signature is already
    /// verified; this enforces ownership and succession against the stored index).
    ///
    /// Trust on first use: an unknown name is stored as is ([`Ingested::Inserted`]).
    /// For a known name, an index signed by another key is [`NotOwner`]; a lower
    /// sequence is an older copy ([`Ingested::Stale`], not an error); the same
    /// sequence is [`Ingested::Unchanged`] if the signed content is identical and
    /// [`IllegalUpdate`] (the owner equivocated) otherwise; a higher sequence must
    /// pass [`PackageIndex::check_successor`] and replaces the stored index
    /// ([`Ingested::Updated`]). The package's search document is refreshed in the
    /// same transaction. A rejected index changes nothing.
    ///
    /// [`NotOwner`]: agora_core::Error::NotOwner
    /// [`IllegalUpdate`]: agora_core::Error::IllegalUpdate
    pub fn ingest_index(&self, index: &SignedPackageIndex) -> Result<Ingested> {
        self.database.write(|tx| ingest_package(tx, index, &[]))
    }

    /// Ingests a manifest received from a peer. The stored index of its name must
    /// list its version with the same artifact digest and size, and the manifest
    /// must be signed by the index's owner; otherwise it is an error and nothing
    /// changes: [`PackageNotFound`] without an index, [`VersionNotFound`] when the
    /// index does not list the version (ingest the newer index first),
    /// [`NotOwner`] for another signer, [`IllegalUpdate`] when digest or size
    /// differ. Manifests of yanked versions are accepted.
    ///
    /// A manifest already stored for that version is [`Ingested::Unchanged`];
    /// otherwise it is stored and the search document refreshed
    /// ([`Ingested::Inserted`]). No artifact is recorded: the node does not hold it.
    ///
    /// [`PackageNotFound`]: agora_core::Error::PackageNotFound
    /// [`VersionNotFound`]: agora_core::Error::VersionNotFound
    /// [`NotOwner`]: agora_core::Error::NotOwner
    /// [`IllegalUpdate`]: agora_core::Error::IllegalUpdate
    pub fn ingest_manifest(&self, manifest: &SignedManifest) -> Result<Ingested> {
        self.database.write(|tx| {
            let (outcome, package_id, index) = sync::ingest_manifest(tx, manifest)?;
            if outcome == Ingested::Inserted {
                search::refresh_document(tx, package_id, &index)?;
            }
            Ok(outcome)
        })
    }

    /// Ingests a package as one unit: its index, then each manifest, all in one
    /// transaction. If the index or any manifest breaks a rule, nothing is stored
    /// (so a peer cannot land an index while its manifest is refused). Returns
    /// [`Ingested::Updated`]/[`Ingested::Inserted`] when anything was stored, else
    /// the index's own outcome ([`Ingested::Unchanged`] or [`Ingested::Stale`]).
    pub fn ingest_package(&self, index: &SignedPackageIndex, manifests: &[SignedManifest]) -> Result<Ingested> {
        self.database.write(|tx| ingest_package(tx, index, manifests))
    }

    /// Ingests many packages (a sync page) in one transaction, each inside its own
    /// savepoint: a package that breaks a rule is rolled back alone and reported in
    /// its slot, the others land. One commit for the page instead of one per package.
    pub fn ingest_packages(
        &self,
        batch: &[(SignedPackageIndex, Vec<SignedManifest>)],
    ) -> Result<Vec<Result<Ingested>>> {
        self.database.write(|tx| {
            let mut results = Vec::with_capacity(batch.len());
            for (index, manifests) in batch {
                tx.execute_batch("SAVEPOINT package")?;
                let outcome = ingest_package(tx, index, manifests);
                if outcome.is_ok() {
                    tx.execute_batch("RELEASE package")?;
                } else {
                    tx.execute_batch("ROLLBACK TO package; RELEASE package")?;
                }
                results.push(outcome);
            }
            Ok(results)
        })
    }

    /// One page of the catalog for sync: packages in name order strictly after
    /// `after`, each with its index and all its stored manifests as wire bytes.
    ///
    /// A page holds at most `limit` entries (a `limit` of 0 counts as 1) and stops
    /// before the summed [`CatalogEntry::byte_len`] would exceed `max_bytes`, but it
    /// always holds at least one entry when one follows `after`, however large. The
    /// cursor is the name of the page's last entry when more entries follow, and
    /// `None` when the page reaches the end. All of a page comes from one snapshot.
    pub fn page(
        &self,
        after: Option<&PackageName>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<CatalogEntry>, Option<PackageName>)> {
        self.database.read(|connection| sync::page(connection, after, limit, max_bytes))
    }

    /// A stored manifest whose artifact has `digest`, if this node holds that
    /// artifact; `None` when it does not (even if manifests name the digest). When
    /// several manifests share the digest, any one of them.
    pub fn manifest_for_digest(&self, digest: &Digest) -> Result<Option<SignedManifest>> {
        self.database.read(|connection| sync::manifest_for_digest(connection, digest))
    }

    /// Every package name with the raw bytes of the key that owns it (trust on
    /// first use). Raw bytes, because turning 32 bytes into a `PublicKey`
    /// decompresses a curve point: for a large catalog that was most of a node's
    /// start-up, and comparing owners needs only the bytes.
    pub fn owners(&self) -> Result<Vec<(PackageName, [u8; 32])>> {
        self.database.read(|connection| {
            let mut statement = connection.prepare_cached("SELECT name, owner FROM packages")?;
            let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
            rows.map(|row| {
                let (name, owner) = row?;
                let owner: [u8; 32] =
                    owner.as_slice().try_into().map_err(|_| Error::Corrupt(format!("owner key of `{name}`")))?;
                Ok((PackageName::parse(&name).map_err(|_| Error::Corrupt(format!("package name `{name}`")))?, owner))
            })
            .collect()
        })
    }

    /// Digests of every artifact this node holds, ascending.
    pub fn held_artifacts(&self) -> Result<Vec<Digest>> {
        self.database.read(sync::held_artifacts)
    }

    /// Records that `peer_id` was seen at `addresses` (newest first) at `now`.
    ///
    /// The addresses are put before the ones already stored, duplicates dropped and
    /// the list cut at [`KnownPeer::MAX_ADDRESSES`]; `last_seen` never moves back.
    /// Beyond [`KnownPeer::MAX_PEERS`] peers, the least recently seen others are
    /// forgotten, except peers banned at `now` (see [`Catalog::ban_peer`]). Ids and
    /// addresses are opaque text to the store.
    pub fn save_peer(&self, peer_id: &str, addresses: &[String], now: u64) -> Result<()> {
        self.database.write(|tx| peers::save(tx, peer_id, addresses, now))
    }

    /// Up to `limit` known peers, most recently seen first.
    pub fn known_peers(&self, limit: usize) -> Result<Vec<KnownPeer>> {
        self.database.read(|connection| peers::known(connection, limit))
    }

    /// Records how exchanges with `peer_id` turned out, in order, at `now`, and
    /// returns the peer's updated record; all in one transaction.
    ///
    /// A peer never seen before gets a row with no addresses. Each
    /// [`Outcome::Success`] counts a success and feeds its latency into
    /// [`PeerRecord::latency_ewma_ms`] (`old * 0.8 + sample * 0.2`; the first sample
    /// sets it; a sample that is negative or not finite counts the success but
    /// leaves the average alone); the other outcomes count in their own counter.
    /// `last_seen` moves up to `now`, never back. Like [`Catalog::save_peer`], it
    /// keeps the table within [`KnownPeer::MAX_PEERS`], never dropping a banned peer.
    pub fn record_outcomes(&self, peer_id: &str, outcomes: &[Outcome], now: u64) -> Result<PeerRecord> {
        self.database.write(|tx| reputation::record_outcomes(tx, peer_id, outcomes, now))
    }

    /// Adds `count` to the packages `peer_id` provided (ingested from it), as
    /// seen at `now`. An unknown peer gets a row, as in [`Catalog::record_outcomes`].
    pub fn add_packages_provided(&self, peer_id: &str, count: u64, now: u64) -> Result<()> {
        self.database.write(|tx| reputation::add_packages_provided(tx, peer_id, count, now))
    }

    /// Bans `peer_id` until the unix second `until` (replacing any running ban)
    /// and counts the ban; returns the updated record. An unknown peer gets a row,
    /// as in [`Catalog::record_outcomes`]. While `until` is later than the `now`
    /// they are given, the peer is listed by [`Catalog::banned_peers`] and the peer
    /// bound never drops it.
    pub fn ban_peer(&self, peer_id: &str, until: u64, now: u64) -> Result<PeerRecord> {
        self.database.write(|tx| reputation::ban(tx, peer_id, until, now))
    }

    /// Lifts the ban on `peer_id` (its ban count stays); nothing if it is unknown.
    pub fn unban_peer(&self, peer_id: &str) -> Result<()> {
        self.database.write(|tx| reputation::unban(tx, peer_id))
    }

    /// Peers banned at `now` (their ban ends later than `now`), by peer id.
    pub fn banned_peers(&self, now: u64) -> Result<Vec<PeerRecord>> {
        self.database.read(|connection| reputation::banned(connection, now))
    }

    /// The record of `peer_id`, if known.
    pub fn peer_record(&self, peer_id: &str) -> Result<Option<PeerRecord>> {
        self.database.read(|connection| reputation::load(connection, peer_id))
    }

    /// Up to `limit` peer records, most recently seen first.
    pub fn peer_records(&self, limit: usize) -> Result<Vec<PeerRecord>> {
        self.database.read(|connection| reputation::records(connection, limit))
    }

    /// Counts and bytes of held artifacts, pinned and cached (unpinned).
    pub fn storage_usage(&self) -> Result<StorageUsage> {
        self.database.read(storage::usage)
    }

    /// Pins (never evicted) or unpins (evictable cache) a held artifact; false
    /// when this node does not hold it.
    pub fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<bool> {
        self.database.write(|tx| storage::set_pinned(tx, digest, pinned))
    }

    /// Records that a held artifact was used (served, fetched) at `now`, for LRU
    /// eviction; nothing when this node does not hold it.
    pub fn touch_artifact(&self, digest: &Digest, now: u64) -> Result<()> {
        self.database.write(|tx| storage::touch(tx, digest, now))
    }

    /// The unpinned artifacts, with their sizes, that must go for the unpinned
    /// bytes to fit in `max_cached_bytes`: least recently used first (ties broken
    /// by `stored_at`, then digest), just as many as needed. Empty when the cache
    /// already fits. Pinned artifacts are never returned, however far the total is
    /// over the limit.
    pub fn eviction_candidates(&self, max_cached_bytes: u64) -> Result<Vec<(Digest, u64)>> {
        self.database.read(|connection| storage::eviction_candidates(connection, max_cached_bytes))
    }

    /// Forgets that this node holds the artifact with `digest` (deletes its row;
    /// the file is the caller's: see [`crate::Store::evict`]). Nothing when it is
    /// not held. A pinned artifact is never forgotten: that is [`Error::Pinned`]
    /// and nothing changes.
    pub fn forget_artifact(&self, digest: &Digest) -> Result<()> {
        self.database.write(|tx| storage::forget(tx, digest))
    }

    /// Counts over the catalog.
    pub fn stats(&self) -> Result<CatalogStats> {
        self.database.read(|connection| {
            let count =
                |sql: &str| -> Result<u64> { Ok(connection.query_row(sql, [], |row| row.get::<_, i64>(0))? as u64) };
            Ok(CatalogStats {
                packages: count("SELECT count(*) FROM packages")?,
                versions: count("SELECT count(*) FROM manifests")?,
                artifacts: count("SELECT count(*) FROM artifacts")?,
                artifact_bytes: count("SELECT coalesce(sum(size), 0) FROM artifacts")?,
            })
        })
    }
}

fn ingest_package(tx: &Transaction<'_>, index: &SignedPackageIndex, manifests: &[SignedManifest]) -> Result<Ingested> {
    let (outcome, package_id, stored) = sync::ingest_index(tx, index)?;
    let mut inserted = false;
    for manifest in manifests {
        if sync::ingest_manifest(tx, manifest)?.0 == Ingested::Inserted {
            inserted = true;
        }
    }
    // One search-document rebuild for the package, after its index and manifests.
    if inserted || matches!(outcome, Ingested::Inserted | Ingested::Updated(_)) {
        search::refresh_document(tx, package_id, &stored)?;
    }
    Ok(match outcome {
        Ingested::Unchanged | Ingested::Stale if inserted => Ingested::Inserted,
        other => other,
    })
}

fn load_index(tx: &Transaction<'_>, name: &PackageName) -> Result<Option<PackageIndex>> {
    Ok(load_package(tx, name)?.map(|(_, index)| index))
}

/// The package id and stored index of `name`, for a write transaction that
/// checks a new record against it. The stored bytes were verified before they
/// were written, so they are decoded without re-checking the signature.
pub(crate) fn load_package(tx: &Transaction<'_>, name: &PackageName) -> Result<Option<(i64, PackageIndex)>> {
    let row: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT id, record FROM packages WHERE name = ?1")?
        .query_row([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(id, bytes)| {
        let index = PackageIndex::from_trusted_bytes(&bytes)
            .map_err(|error| Error::Corrupt(format!("stored package index: {error}")))?;
        Ok((id, index))
    })
    .transpose()
}

/// Inserts or replaces the index row; returns the package id.
pub(crate) fn store_index(tx: &Transaction<'_>, index: &SignedPackageIndex) -> Result<i64> {
    let PackageIndex { name, owner, sequence, updated_at, .. } = index.index();
    let id = tx
        .prepare_cached(
            "INSERT INTO packages (name, owner, sequence, updated_at, record) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, sequence = excluded.sequence,
                 updated_at = excluded.updated_at, record = excluded.record
             RETURNING id",
        )?
        .query_row(
            params![name.as_str(), owner.as_bytes().as_slice(), *sequence as i64, *updated_at as i64, index.to_bytes()],
            |row| row.get(0),
        )?;
    Ok(id)
}

pub(crate) fn store_manifest(tx: &Transaction<'_>, package_id: i64, manifest: &SignedManifest) -> Result<()> {
    let inner = manifest.manifest();
    tx.prepare_cached(
        "INSERT INTO manifests (package_id, version, digest, size, published_at, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        package_id,
        inner.version().to_string(),
        inner.artifact.digest.as_bytes().as_slice(),
        inner.artifact.size as i64,
        inner.published_at as i64,
        manifest.to_bytes()
    ])?;
    Ok(())
}

fn record_artifact(tx: &Transaction<'_>, digest: &Digest, size: u64, pinned: bool, now: u64) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO artifacts (digest, size, pinned, stored_at, last_used) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (digest) DO UPDATE SET pinned = max(pinned, excluded.pinned), last_used = excluded.last_used",
    )?
    .execute(params![digest.as_bytes().as_slice(), size as i64, i64::from(pinned), now as i64])?;
    Ok(())
}

pub(crate) fn decode_index(bytes: &[u8]) -> Result<SignedPackageIndex> {
    SignedPackageIndex::from_bytes(bytes).map_err(|error| Error::Corrupt(format!("stored package index: {error}")))
}

pub(crate) fn decode_manifest(bytes: &[u8]) -> Result<SignedManifest> {
    SignedManifest::from_bytes(bytes).map_err(|error| Error::Corrupt(format!("stored manifest: {error}")))
}
