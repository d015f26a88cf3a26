//! [`Packages`]: the signed package indexes and manifests in SQLite and the
//! search documents derived from them. Local publishes and yanks enter through
//! [`Packages::publish`] and [`Packages::apply_yank`], records from peers through
//! the `ingest_*` methods, and they leave through [`Packages::page`] and the
//! readers.
//!
//! Every write re-checks the domain rules inside its transaction (against the
//! index as it is *in that transaction*), so concurrent writers cannot slip an
//! illegal update past each other, and a rejected write changes nothing.
//!
//! Not here: artifact files ([`crate::Artifacts`]), peers ([`crate::Peers`]) and
//! the storage policy ([`crate::Storage`]), although [`Packages::publish`] writes
//! the published artifact's row in the same transaction as the package.

use std::sync::Arc;

use agora_core::{
    Digest, Equivocation, IndexChange, NameClaims, PackageIndex, PackageName, PublicKey, Publication, Query,
    SearchResults, SignedManifest, SignedPackageIndex, Version,
};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::changes::{CatalogObserver, ChangeCause, Changes, Observers};
use crate::claims;
use crate::db::Database;
use crate::ingested::{CatalogEntry, Ingested};
use crate::rows::{decode_index, decode_manifest, load_index, record_artifact, store_index, store_manifest};
use crate::search;
use crate::sync;
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

/// Packages and search, reached through [`crate::Store::packages`]. Cheap to
/// clone; all clones share the store's connections.
///
/// Methods block on SQLite: call them from a blocking thread
/// (`tokio::task::spawn_blocking`), not from an async task.
///
/// Every committed write that changes a package is reported to the store's
/// observers (see [`crate::Store::subscribe`]).
#[derive(Debug, Clone)]
pub struct Packages {
    database: Arc<Database>,
    observers: Arc<Observers>,
}

impl Packages {
    pub(crate) fn new(database: Arc<Database>) -> Self {
        Self { database, observers: Arc::default() }
    }

    /// Adds an observer of committed changes: see [`crate::Store::subscribe`].
    pub(crate) fn subscribe(&self, observer: Arc<dyn CatalogObserver>) -> Result<()> {
        self.observers.subscribe(observer)
    }

    /// Stores a new version: checks [`Publication::check`] against the stored
    /// index, then writes the index, the manifest, the search document and the
    /// artifact record in one transaction. Reported as [`ChangeCause::Published`].
    pub fn publish(&self, manifest: &SignedManifest, index: &SignedPackageIndex, now: u64) -> Result<()> {
        self.write(ChangeCause::Published, |tx, changes| {
            let current = load_index(tx, manifest.manifest().name())?;
            Publication::check(manifest, index, current.as_ref())?;
            let package_id = store_index(tx, index, changes)?;
            store_manifest(tx, package_id, manifest, changes)?;
            crate::crash::point("publish.in_transaction");
            let artifact = &manifest.manifest().artifact;
            record_artifact(tx, &artifact.digest, artifact.size, true, now)?;
            search::refresh_document(tx, package_id, index.index())?;
            Ok(())
        })
    }

    /// Applies an owner-signed update that adds no version: it yanks or unyanks
    /// versions, or changes the owners. Reported as [`ChangeCause::Yanked`] when a
    /// version or the owners changed.
    pub fn apply_yank(&self, index: &SignedPackageIndex) -> Result<IndexChange> {
        self.write(ChangeCause::Yanked, |tx, changes| {
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
            let mark = changes.mark();
            let package_id = store_index(tx, index, changes)?;
            search::refresh_document(tx, package_id, index.index())?;
            let owners_changed = index.index().owner_changes != current.owner_changes;
            if change.is_empty() && !owners_changed {
                // Only re-signed: nothing changed, so nothing to report.
                changes.roll_back_to(mark);
            }
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

    /// Ingests a package index received from a peer (its signature is already
    /// verified; this enforces ownership and succession against the stored index).
    ///
    /// Trust on first use: an unknown name is stored as is ([`Ingested::Inserted`]).
    /// For a known name, an index that does not descend from the stored owners
    /// ([`PackageIndex::same_claim`](agora_core::PackageIndex::same_claim)) is a
    /// competing claim, kept as evidence ([`Ingested::Contested`], reported as
    /// [`ChangeCause::Contested`]); a lower sequence is an older copy
    /// ([`Ingested::Stale`], not an error); the same sequence is
    /// [`Ingested::Unchanged`] if the signed content is identical, and otherwise a
    /// proof that the signer equivocated ([`Ingested::Equivocated`]; the stored
    /// index stays); a higher sequence must pass
    /// [`PackageIndex::check_successor`](agora_core::PackageIndex::check_successor) and replaces the stored index
    /// ([`Ingested::Updated`]). The package's search document is refreshed in the
    /// same transaction. A rejected index changes nothing. A stored index is
    /// reported as [`ChangeCause::Ingested`], as are the other `ingest_*` methods'
    /// inserts and updates.
    pub fn ingest_index(&self, index: &SignedPackageIndex) -> Result<Ingested> {
        self.write(ChangeCause::Ingested, |tx, changes| ingest_package(tx, index, &[], changes))
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
        self.write(ChangeCause::Ingested, |tx, changes| {
            let (outcome, package_id, index) = sync::ingest_manifest(tx, manifest, changes)?;
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
        self.write(ChangeCause::Ingested, |tx, changes| ingest_package(tx, index, manifests, changes))
    }

    /// Ingests many packages (a sync page) in one transaction, each inside its own
    /// savepoint: a package that breaks a rule is rolled back alone and reported in
    /// its slot, the others land. One commit for the page instead of one per package,
    /// and one observer call naming every package that was stored.
    pub fn ingest_packages(
        &self,
        batch: &[(SignedPackageIndex, Vec<SignedManifest>)],
    ) -> Result<Vec<Result<Ingested>>> {
        self.write(ChangeCause::Ingested, |tx, changes| {
            let mut results = Vec::with_capacity(batch.len());
            for (index, manifests) in batch {
                tx.execute_batch("SAVEPOINT package")?;
                let mark = changes.mark();
                let outcome = ingest_package(tx, index, manifests, changes);
                if outcome.is_ok() {
                    tx.execute_batch("RELEASE package")?;
                } else {
                    tx.execute_batch("ROLLBACK TO package; RELEASE package")?;
                    changes.roll_back_to(mark);
                }
                results.push(outcome);
                crate::crash::point("ingest.in_transaction");
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

    /// Who claims `name` here: the owner this node serves first, then competing
    /// claims, and which of their owners are proven to have equivocated. `None`
    /// when the name is unknown.
    pub fn claims(&self, name: &PackageName) -> Result<Option<NameClaims>> {
        self.database.read(|connection| claims::claims(connection, name))
    }

    /// Makes `owner`'s claim the package this node serves for `name` (the user's
    /// choice, kept across restarts and never changed by what peers send); the
    /// previous default becomes a competing claim. [`NoSuchClaim`] when no claim
    /// by `owner` is known. Reported as [`ChangeCause::Trusted`].
    ///
    /// [`NoSuchClaim`]: agora_core::Error::NoSuchClaim
    pub fn trust(&self, name: &PackageName, owner: &PublicKey) -> Result<NameClaims> {
        self.write(ChangeCause::Trusted, |tx, changes| {
            claims::trust(tx, name, owner, changes)?;
            claims::claims(tx, name)?.ok_or_else(|| agora_core::Error::PackageNotFound(name.clone()).into())
        })
    }

    /// Keeps a proof that its owner equivocated (checked: holding an
    /// [`Equivocation`] means it holds). [`Ingested::Equivocated`] when it is new
    /// here, reported as [`ChangeCause::Equivocated`]; [`Ingested::Unchanged`] when
    /// this owner's proof for the name is already kept (or the bound is reached).
    pub fn ingest_equivocation(&self, proof: &Equivocation) -> Result<Ingested> {
        self.write(ChangeCause::Equivocated, |tx, changes| claims::record_equivocation(tx, proof.clone(), changes))
    }

    /// The kept proof that `owner` equivocated about `name`.
    pub fn equivocation(&self, name: &PackageName, owner: &PublicKey) -> Result<Option<Equivocation>> {
        self.database.read(|connection| claims::equivocation(connection, name, owner))
    }

    /// The stored indexes `key` is a current owner of.
    pub fn owned_by(&self, key: &PublicKey) -> Result<Vec<SignedPackageIndex>> {
        self.database.read(|connection| {
            // Sole owners are in the `owner` column; co-owners only inside v2 records.
            let mut statement = connection
                .prepare_cached("SELECT record FROM packages WHERE owner = ?1 OR substr(record, 1, length(?2)) = ?2")?;
            let rows = statement.query_map(params![key.as_bytes().as_slice(), PackageIndex::V2_PREFIX], |row| {
                row.get::<_, Vec<u8>>(0)
            })?;
            let mut owned = Vec::new();
            for record in rows {
                let index = decode_index(&record?)?;
                if index.index().is_owner(key) {
                    owned.push(index);
                }
            }
            Ok(owned)
        })
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

    /// Runs `work` in one write transaction with a [`Changes`] of `cause` for the
    /// row writers, and reports what they recorded once the commit succeeded (in
    /// commit order: the writer lock is still held). A failed write reports nothing.
    fn write<T>(
        &self,
        cause: ChangeCause,
        work: impl FnOnce(&Transaction<'_>, &mut Changes) -> Result<T>,
    ) -> Result<T> {
        let (value, _) = self.database.write_then(
            |tx| {
                let mut changes = Changes::new(cause);
                let value = work(tx, &mut changes)?;
                Ok((value, changes.finish()))
            },
            |(_, changes)| self.observers.notify(changes),
        )?;
        Ok(value)
    }
}

fn ingest_package(
    tx: &Transaction<'_>,
    index: &SignedPackageIndex,
    manifests: &[SignedManifest],
    changes: &mut Changes,
) -> Result<Ingested> {
    let (outcome, package_id, stored) = match sync::ingest_index(tx, index, manifests, changes)? {
        sync::IndexIngest::Package(outcome, package_id, stored) => (outcome, package_id, stored),
        sync::IndexIngest::Claim(outcome) => return Ok(outcome),
    };
    let mut inserted = false;
    for manifest in manifests {
        if sync::ingest_manifest(tx, manifest, changes)?.0 == Ingested::Inserted {
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
