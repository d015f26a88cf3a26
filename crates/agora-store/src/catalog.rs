//! The catalog: signed package indexes and manifests in SQLite, the search
//! documents derived from them, and the record of which artifacts this node holds.
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
use crate::search;
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
            Publication::check(manifest, index, current.as_ref().map(SignedPackageIndex::index))?;
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
            let change = current.index().check_successor(index.index())?;
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

fn load_index(tx: &Transaction<'_>, name: &PackageName) -> Result<Option<SignedPackageIndex>> {
    let record: Option<Vec<u8>> = tx
        .prepare_cached("SELECT record FROM packages WHERE name = ?1")?
        .query_row([name.as_str()], |row| row.get(0))
        .optional()?;
    record.map(|bytes| decode_index(&bytes)).transpose()
}

/// Inserts or replaces the index row; returns the package id.
fn store_index(tx: &Transaction<'_>, index: &SignedPackageIndex) -> Result<i64> {
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

fn store_manifest(tx: &Transaction<'_>, package_id: i64, manifest: &SignedManifest) -> Result<()> {
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
