//! Row encoding shared by the catalog's writers and readers: the `packages`,
//! `manifests` and `artifacts` rows in and out of SQLite, and the decoding of
//! stored wire bytes.
//!
//! These are the only functions that write the `packages` and `manifests` rows,
//! and each records what it wrote in the transaction's [`Changes`]; they check no domain
//! rules (their callers do, inside the same transaction) and know nothing of
//! sync, search or publishing.

use agora_core::{Digest, PackageIndex, PackageName, SignedManifest, SignedPackageIndex};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::changes::Changes;
use crate::{Error, Result};

/// The stored index of `name`, for a write transaction that checks a new record
/// against it.
pub(crate) fn load_index(tx: &Transaction<'_>, name: &PackageName) -> Result<Option<PackageIndex>> {
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
    row.map(|(id, bytes)| Ok((id, decode_trusted_index(&bytes)?))).transpose()
}

/// Decodes stored index bytes (a package's or a claim's) without re-checking the
/// signature: they were verified before they were written.
pub(crate) fn decode_trusted_index(bytes: &[u8]) -> Result<PackageIndex> {
    PackageIndex::from_trusted_bytes(bytes).map_err(|error| Error::Corrupt(format!("stored package index: {error}")))
}

/// Inserts or replaces the index row and records the change; returns the
/// package id.
pub(crate) fn store_index(tx: &Transaction<'_>, index: &SignedPackageIndex, changes: &mut Changes) -> Result<i64> {
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
    changes.record_index(index.index());
    Ok(id)
}

/// Inserts a manifest row and records the change. The caller has checked that
/// the manifest's publisher owns the package.
pub(crate) fn store_manifest(
    tx: &Transaction<'_>,
    package_id: i64,
    manifest: &SignedManifest,
    changes: &mut Changes,
) -> Result<()> {
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
    changes.record(inner.name(), &inner.publisher);
    Ok(())
}

pub(crate) fn record_artifact(tx: &Transaction<'_>, digest: &Digest, size: u64, pinned: bool, now: u64) -> Result<()> {
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

pub(crate) fn decode_digest(bytes: &[u8]) -> Result<Digest> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| Error::Corrupt("artifact digest is not 32 bytes".into()))?;
    Ok(Digest::from_bytes(bytes))
}

/// SQLite integers are signed; times far beyond 2262 saturate rather than wrap.
pub(crate) fn to_sql(seconds: u64) -> i64 {
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
