//! Competing claims and equivocation proofs: the evidence of
//! [`agora_core::NameClaims`] and [`agora_core::Equivocation`] in SQLite.
//!
//! A claim is a validly signed index of a name by another key than the one this
//! node serves for the name (the default, in `packages`). It is kept with the
//! manifests it vouches for, at most [`MAX_COMPETING_CLAIMS`] per name, and
//! follows the same succession rules as the default owner's index (a claim's
//! owner cannot rewrite its own versions either). Claims are never served as the
//! package; sync pages carry them after the default so that every node hears of
//! a conflict, and [`trust`] swaps one with the default when the user says so.
//!
//! An equivocation proof is kept once per owner and name, at most
//! [`MAX_EQUIVOCATIONS`] in all.
//!
//! These are the rules and the queries; the transactions and public methods are
//! [`crate::Packages`]'s.

use agora_core::{
    Claim, Equivocation, MAX_COMPETING_CLAIMS, NameClaims, PackageIndex, PackageName, PublicKey, SignedManifest,
    SignedPackageIndex,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::changes::{ChangeCause, Changes};
use crate::ingested::{CatalogEntry, Ingested};
use crate::rows::{decode_index, decode_manifest, decode_trusted_index, load_package, store_index, store_manifest};
use crate::{Error, Result, search};

/// Most equivocation proofs a node keeps. One proof flags an owner everywhere;
/// the bound stops a flood of throwaway keys from growing the table forever.
pub const MAX_EQUIVOCATIONS: usize = 10_000;

/// Stores `signed` (an index by another key than the default owner of its name)
/// as a competing claim with the `manifests` it lists.
pub(crate) fn record_claim(
    tx: &Transaction<'_>,
    signed: &SignedPackageIndex,
    manifests: &[SignedManifest],
    changes: &mut Changes,
) -> Result<Ingested> {
    let new = signed.index();
    // The claim this index continues, if any (its row is keyed by the claim's first signer).
    let existing = find_claim(tx, &new.name, |claim| claim.same_claim(new))?;
    let (outcome, claim, key) = match existing {
        None => {
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM claims WHERE name = ?1")?
                .query_row([new.name.as_str()], |row| row.get(0))?;
            if count as usize >= MAX_COMPETING_CLAIMS {
                tracing::debug!(package = %new.name, "not keeping another competing claim: {MAX_COMPETING_CLAIMS} kept");
                return Ok(Ingested::Unchanged);
            }
            let key = new.owner.as_bytes().to_vec();
            insert_claim(tx, &new.name, &key, new.sequence, &signed.to_bytes())?;
            tracing::info!(package = %new.name, claimant = %new.owner, "another key claims a known name; kept as a competing claim");
            (Ingested::Contested, new.clone(), key)
        }
        Some(StoredClaim { key, record, index: current }) => match new.sequence.cmp(&current.sequence) {
            std::cmp::Ordering::Less => (Ingested::Stale, current, key),
            std::cmp::Ordering::Equal if *new == current => (Ingested::Unchanged, current, key),
            std::cmp::Ordering::Equal if new.owner == current.owner => {
                // The proof needs the stored copy's signature: only here is it decoded with it.
                return record_equivocation(tx, Equivocation::new(decode_index(&record)?, signed.clone())?, changes);
            }
            // Two co-owners signed one sequence each: keep the first seen.
            std::cmp::Ordering::Equal => (Ingested::Stale, current, key),
            std::cmp::Ordering::Greater => {
                current.check_successor(new)?;
                tx.prepare_cached("UPDATE claims SET sequence = ?3, record = ?4 WHERE name = ?1 AND owner = ?2")?
                    .execute(params![new.name.as_str(), key, new.sequence as i64, signed.to_bytes()])?;
                (Ingested::Contested, new.clone(), key)
            }
        },
    };
    let owner = key.as_slice();
    let mut stored_any = outcome == Ingested::Contested;
    for manifest in manifests {
        claim.check_vouches_for(manifest.manifest())?;
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO claim_manifests (name, owner, version, record) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                new.name.as_str(),
                owner,
                manifest.manifest().version().to_string(),
                manifest.to_bytes()
            ])?;
        stored_any |= inserted > 0;
    }
    if stored_any {
        changes.record_as(&new.name, &claim.owner, ChangeCause::Contested);
        return Ok(Ingested::Contested);
    }
    Ok(outcome)
}

/// Stores a proof that its owner equivocated, once per owner and name.
pub(crate) fn record_equivocation(
    tx: &Transaction<'_>,
    proof: Equivocation,
    changes: &mut Changes,
) -> Result<Ingested> {
    let count: i64 = tx.prepare_cached("SELECT count(*) FROM equivocations")?.query_row([], |row| row.get(0))?;
    if count as usize >= MAX_EQUIVOCATIONS {
        tracing::warn!(owner = %proof.owner(), "not keeping another equivocation proof: {MAX_EQUIVOCATIONS} kept");
        return Ok(Ingested::Unchanged);
    }
    let inserted = tx
        .prepare_cached("INSERT OR IGNORE INTO equivocations (owner, name, sequence, proof) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![
            proof.owner().as_bytes().as_slice(),
            proof.name().as_str(),
            proof.sequence() as i64,
            proof.to_bytes()
        ])?;
    if inserted == 0 {
        return Ok(Ingested::Unchanged);
    }
    tracing::warn!(
        package = %proof.name(),
        owner = %proof.owner(),
        sequence = proof.sequence(),
        "an owner signed two different indexes with one sequence; keeping the proof"
    );
    changes.record_as(proof.name(), proof.owner(), ChangeCause::Equivocated);
    Ok(Ingested::Equivocated)
}

/// The stored proof that `owner` equivocated about `name`.
pub(crate) fn equivocation(
    connection: &Connection,
    name: &PackageName,
    owner: &PublicKey,
) -> Result<Option<Equivocation>> {
    let proof: Option<Vec<u8>> = connection
        .prepare_cached("SELECT proof FROM equivocations WHERE owner = ?1 AND name = ?2")?
        .query_row(params![owner.as_bytes().as_slice(), name.as_str()], |row| row.get(0))
        .optional()?;
    proof
        .map(|bytes| Equivocation::from_bytes(&bytes).map_err(|e| Error::Corrupt(format!("stored equivocation: {e}"))))
        .transpose()
}

/// Who claims `name` here; `None` when the name is unknown.
pub(crate) fn claims(connection: &Connection, name: &PackageName) -> Result<Option<NameClaims>> {
    let default: Option<(Vec<u8>, bool)> = connection
        .prepare_cached("SELECT record, chosen FROM packages WHERE name = ?1")?
        .query_row([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((record, chosen)) = default else { return Ok(None) };
    let mut claims = vec![summary(&decode_trusted_index(&record)?, true)];
    let mut statement = connection.prepare_cached("SELECT record FROM claims WHERE name = ?1 ORDER BY seen")?;
    for record in statement.query_map([name.as_str()], |row| row.get::<_, Vec<u8>>(0))? {
        claims.push(summary(&decode_trusted_index(&record?)?, false));
    }
    let mut flagged = connection.prepare_cached("SELECT 1 FROM equivocations WHERE owner = ?1 LIMIT 1")?;
    let mut equivocated = Vec::new();
    for claim in &claims {
        if flagged.exists([claim.owner.as_bytes().as_slice()])? {
            equivocated.push(claim.owner);
        }
    }
    Ok(Some(NameClaims { name: name.clone(), chosen, claims, equivocated }))
}

fn summary(index: &PackageIndex, default: bool) -> Claim {
    Claim {
        owner: index.owner,
        sequence: index.sequence,
        versions: index.versions.len(),
        latest: index.latest().map(|entry| entry.version.clone()),
        default,
    }
}

/// Makes `owner`'s claim the package this node serves for `name`, keeping the
/// previous default as a competing claim; marks the choice as the user's.
pub(crate) fn trust(tx: &Transaction<'_>, name: &PackageName, owner: &PublicKey, changes: &mut Changes) -> Result<()> {
    let Some((package_id, current)) = load_package(tx, name)? else {
        return Err(agora_core::Error::PackageNotFound(name.clone()).into());
    };
    if current.owner != *owner && !current.is_owner(owner) {
        let found = find_claim(tx, name, |claim| claim.owner == *owner || claim.is_owner(owner))?;
        let Some(StoredClaim { key: claim_key, record, .. }) = found else {
            let known = claims(tx, name)?
                .map(|claims| claims.claims.iter().map(|claim| claim.owner.to_hex()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            return Err(agora_core::Error::NoSuchClaim { name: name.clone(), owner: owner.to_hex(), known }.into());
        };
        let key = claim_key.as_slice();
        let chosen = decode_index(&record)?;
        let claim_manifests = manifests_of_claim(tx, name, key)?;
        // The default becomes a claim, with its manifests.
        let previous: Vec<u8> = tx
            .prepare_cached("SELECT record FROM packages WHERE id = ?1")?
            .query_row([package_id], |row| row.get(0))?;
        let previous_owner = current.owner.as_bytes().as_slice();
        insert_claim(tx, name, previous_owner, current.sequence, &previous)?;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO claim_manifests (name, owner, version, record)
             SELECT ?1, ?2, version, record FROM manifests WHERE package_id = ?3",
        )?
        .execute(params![name.as_str(), previous_owner, package_id])?;
        tx.prepare_cached("DELETE FROM manifests WHERE package_id = ?1")?.execute([package_id])?;
        // The chosen claim becomes the default.
        store_index(tx, &chosen, changes)?;
        for manifest in &claim_manifests {
            store_manifest(tx, package_id, manifest, changes)?;
        }
        tx.prepare_cached("DELETE FROM claims WHERE name = ?1 AND owner = ?2")?.execute(params![name.as_str(), key])?;
        tx.prepare_cached("DELETE FROM claim_manifests WHERE name = ?1 AND owner = ?2")?
            .execute(params![name.as_str(), key])?;
        search::refresh_document(tx, package_id, chosen.index())?;
    }
    tx.prepare_cached("UPDATE packages SET chosen = 1 WHERE id = ?1")?.execute([package_id])?;
    changes.record(name, owner);
    Ok(())
}

/// A claim row: its key (the claim's first signer), its stored wire bytes and
/// the index they hold.
struct StoredClaim {
    key: Vec<u8>,
    record: Vec<u8>,
    index: PackageIndex,
}

/// The first stored claim to `name` whose index `matches`.
fn find_claim(
    connection: &Connection,
    name: &PackageName,
    matches: impl Fn(&PackageIndex) -> bool,
) -> Result<Option<StoredClaim>> {
    let mut statement = connection.prepare_cached("SELECT owner, record FROM claims WHERE name = ?1")?;
    let rows =
        statement.query_map([name.as_str()], |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
    for row in rows {
        let (key, record) = row?;
        let index = decode_trusted_index(&record)?;
        if matches(&index) {
            return Ok(Some(StoredClaim { key, record, index }));
        }
    }
    Ok(None)
}

/// Adds a claim row, last in the order claims are shown.
fn insert_claim(tx: &Transaction<'_>, name: &PackageName, key: &[u8], sequence: u64, record: &[u8]) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO claims (name, owner, sequence, seen, record)
         VALUES (?1, ?2, ?3, (SELECT coalesce(max(seen), 0) + 1 FROM claims), ?4)",
    )?
    .execute(params![name.as_str(), key, sequence as i64, record])?;
    Ok(())
}

fn manifests_of_claim(connection: &Connection, name: &PackageName, key: &[u8]) -> Result<Vec<SignedManifest>> {
    let mut statement =
        connection.prepare_cached("SELECT record FROM claim_manifests WHERE name = ?1 AND owner = ?2")?;
    let records = statement.query_map(params![name.as_str(), key], |row| row.get::<_, Vec<u8>>(0))?;
    records.map(|record| decode_manifest(&record?)).collect()
}

/// The competing claims of `name` as sync entries (wire bytes as stored), in the
/// order they were seen.
pub(crate) fn claim_entries(connection: &Connection, name: &str) -> Result<Vec<CatalogEntry>> {
    let mut claims = connection.prepare_cached("SELECT owner, record FROM claims WHERE name = ?1 ORDER BY seen")?;
    let mut manifests =
        connection.prepare_cached("SELECT record FROM claim_manifests WHERE name = ?1 AND owner = ?2")?;
    let mut entries = Vec::new();
    let rows = claims.query_map([name], |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)))?;
    for row in rows {
        let (owner, index) = row?;
        let manifests = manifests.query_map(params![name, owner], |row| row.get(0))?.collect::<Result<_, _>>()?;
        entries.push(CatalogEntry { index, manifests });
    }
    Ok(entries)
}
