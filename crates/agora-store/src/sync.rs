//! Catalog sync: ingesting signed records that arrive from peers, and paging the
//! catalog out to them.
//!
//! Records from peers have verified signatures (the types guarantee it), but a
//! peer can still lie about *which* record is current: replay an old index, sign
//! two different indexes with one sequence, claim a name another key owns, or send
//! a manifest its index does not list. Ingesting applies the same ownership and
//! succession rules as a local publish, inside one write transaction, against the
//! index as stored in that transaction; a rejected record changes nothing.
//!
//! These are the rules and the queries; the transactions, the search-document
//! refresh and the public methods are [`crate::Packages`]'s.

use agora_core::{Digest, PackageIndex, PackageName, SignedManifest, SignedPackageIndex};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::changes::Changes;
use crate::ingested::{CatalogEntry, Ingested};
use crate::rows::{decode_index, decode_manifest, load_package, store_index, store_manifest};
use crate::{Error, Result};

/// Trust on first use, then only legal successors: see [`crate::Packages::ingest_index`].
/// An index that does not descend from the stored owners is another claim and is
/// kept as one with `manifests` ([`crate::claims`]). The caller refreshes the
/// search document when the package changed.
pub(crate) fn ingest_index(
    tx: &Transaction<'_>,
    signed: &SignedPackageIndex,
    manifests: &[SignedManifest],
    changes: &mut Changes,
) -> Result<IndexIngest> {
    let new = signed.index();
    let Some((package_id, current)) = load_package(tx, &new.name)? else {
        let package_id = store_index(tx, signed, changes)?;
        tracing::debug!(package = %new.name, sequence = new.sequence, "ingested a new package index");
        return Ok(IndexIngest::Package(Ingested::Inserted, package_id, new.clone()));
    };
    if !current.same_claim(new) {
        // Another claim to the name: evidence, kept with its manifests.
        return crate::claims::record_claim(tx, signed, manifests, changes).map(IndexIngest::Claim);
    }
    ingest_successor(tx, signed, package_id, current, changes)
        .map(|(outcome, id, index)| IndexIngest::Package(outcome, id, index))
}

/// What [`ingest_index`] did with an index. Short-lived (one per ingest, on
/// the stack), so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum IndexIngest {
    /// It is (an update of) the package this node serves: the outcome, the
    /// package id and the index now stored.
    Package(Ingested, i64, PackageIndex),
    /// It is another claim to the name, handled whole (manifests included).
    Claim(Ingested),
}

/// The rules for an index of the claim this node serves, against `current`.
fn ingest_successor(
    tx: &Transaction<'_>,
    signed: &SignedPackageIndex,
    package_id: i64,
    current: PackageIndex,
    changes: &mut Changes,
) -> Result<(Ingested, i64, PackageIndex)> {
    let new = signed.index();
    match new.sequence.cmp(&current.sequence) {
        std::cmp::Ordering::Less => Ok((Ingested::Stale, package_id, current)),
        std::cmp::Ordering::Equal if *new == current => Ok((Ingested::Unchanged, package_id, current)),
        // Two co-owners each signed this sequence: keep the first seen.
        std::cmp::Ordering::Equal if new.owner != current.owner => Ok((Ingested::Stale, package_id, current)),
        std::cmp::Ordering::Equal => {
            let stored: Vec<u8> = tx
                .prepare_cached("SELECT record FROM packages WHERE id = ?1")?
                .query_row([package_id], |row| row.get(0))?;
            let proof = agora_core::Equivocation::new(decode_index(&stored)?, signed.clone())?;
            let outcome = crate::claims::record_equivocation(tx, proof, changes)?;
            Ok((outcome, package_id, current))
        }
        std::cmp::Ordering::Greater => {
            let change = current.check_successor(new)?;
            let package_id = store_index(tx, signed, changes)?;
            tracing::debug!(package = %new.name, sequence = new.sequence, "ingested a package index update");
            Ok((Ingested::Updated(change), package_id, new.clone()))
        }
    }
}

/// Stores a manifest the stored index vouches for: see [`crate::Packages::ingest_manifest`].
/// Returns the outcome, the package id and the stored index; the caller refreshes
/// the search document when the manifest was inserted.
pub(crate) fn ingest_manifest(
    tx: &Transaction<'_>,
    signed: &SignedManifest,
    changes: &mut Changes,
) -> Result<(Ingested, i64, PackageIndex)> {
    let manifest = signed.manifest();
    let name = manifest.name();
    let version = manifest.version();
    let Some((package_id, index)) = load_package(tx, name)? else {
        return Err(agora_core::Error::PackageNotFound(name.clone()).into());
    };
    index.check_vouches_for(signed.manifest())?;
    let exists = tx
        .prepare_cached("SELECT 1 FROM manifests WHERE package_id = ?1 AND version = ?2")?
        .query_row(params![package_id, version.to_string()], |_| Ok(()))
        .optional()?
        .is_some();
    if exists {
        return Ok((Ingested::Unchanged, package_id, index));
    }
    store_manifest(tx, package_id, signed, changes)?;
    tracing::debug!(package = %name, %version, "ingested a manifest");
    Ok((Ingested::Inserted, package_id, index))
}

/// One page of the catalog in name order: see [`crate::Packages::page`].
pub(crate) fn page(
    connection: &Connection,
    after: Option<&PackageName>,
    limit: usize,
    max_bytes: usize,
) -> Result<(Vec<CatalogEntry>, Option<PackageName>)> {
    let limit = limit.max(1);
    // One more row than the page holds, to know whether anything follows.
    let lookahead = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    // One read transaction, so every index and manifest comes from the same snapshot.
    let snapshot = connection.unchecked_transaction()?;
    let mut entries = Vec::new();
    let mut last_name = None;
    let mut more = false;
    {
        let mut packages =
            snapshot.prepare_cached("SELECT id, name, record FROM packages WHERE name > ?1 ORDER BY name LIMIT ?2")?;
        let mut manifests = snapshot.prepare_cached("SELECT record FROM manifests WHERE package_id = ?1")?;
        let mut rows = packages.query(params![after.map_or("", PackageName::as_str), lookahead])?;
        let mut bytes = 0usize;
        while let Some(row) = rows.next()? {
            if entries.len() >= limit {
                more = true;
                break;
            }
            let package_id: i64 = row.get(0)?;
            let name: String = row.get(1)?;
            let entry = CatalogEntry {
                index: row.get(2)?,
                manifests: manifests.query_map([package_id], |row| row.get(0))?.collect::<Result<_, _>>()?,
            };
            // Competing claims travel with the default, so every node hears of a conflict.
            let claims = crate::claims::claim_entries(&snapshot, &name)?;
            let size = entry.byte_len() + claims.iter().map(CatalogEntry::byte_len).sum::<usize>();
            let fits = entries.len() + 1 + claims.len() <= limit && bytes.saturating_add(size) <= max_bytes;
            if !entries.is_empty() && !fits {
                more = true;
                break;
            }
            bytes = bytes.saturating_add(size);
            entries.push(entry);
            entries.extend(claims);
            last_name = Some(name);
        }
    }
    snapshot.commit()?;
    let cursor = match last_name {
        Some(name) if more => {
            Some(PackageName::parse(&name).map_err(|error| Error::Corrupt(format!("stored package name: {error}")))?)
        }
        _ => None,
    };
    Ok((entries, cursor))
}

/// A manifest of an artifact this node holds: see [`crate::Packages::manifest_for_digest`].
pub(crate) fn manifest_for_digest(connection: &Connection, digest: &Digest) -> Result<Option<SignedManifest>> {
    let record: Option<Vec<u8>> = connection
        .prepare_cached(
            "SELECT record FROM manifests
             WHERE digest = ?1 AND EXISTS (SELECT 1 FROM artifacts WHERE digest = ?1)
             LIMIT 1",
        )?
        .query_row([digest.as_bytes().as_slice()], |row| row.get(0))
        .optional()?;
    record.map(|bytes| decode_manifest(&bytes)).transpose()
}
