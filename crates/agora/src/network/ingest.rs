//! Judging what peers send — gossip announcements, DHT records put to this node,
//! search answers — and storing the valid part through the catalog writer.
//!
//! Forged, malformed or rule-breaking data is a strike against the peer that
//! sent it (its reputation may block it); a store failure is not the peer's
//! fault and strikes no one. This module stores nothing itself: the writer does.

use agora_core::Registry;
use agora_core::{Equivocation, PackageName, SignedManifest, SignedPackageIndex};
use agora_net::{Announcement, NetworkHandle, PeerId, RecordKey, SearchResponse, Verdict, Wire};
use agora_store::{Ingested, Outcome};

use crate::services::Services;
use crate::writer::{Kept, first_violation};

/// What became of a peer's search answer.
#[derive(Debug)]
pub(crate) struct SearchAnswer {
    /// Packages of the entries that verified (stored, or already known).
    pub(crate) names: Vec<PackageName>,
    /// False when the answer held anything invalid (the peer was struck) or
    /// could not be stored.
    pub(crate) valid: bool,
}

/// Records invalid data from `peer` (its reputation blocks it past the threshold).
pub(super) async fn strike(services: &Services, peer: PeerId, reason: &str) {
    tracing::warn!(%peer, reason, "invalid data from peer");
    services.reputation.record(peer, Outcome::Invalid).await;
}

/// Decides on an announcement. `Err(reason)` means reject and strike.
pub(super) async fn judge_announcement(services: &Services, data: &[u8]) -> Result<Verdict, String> {
    let announcement = Announcement::decode(data).map_err(|reason| format!("malformed announcement: {reason}"))?;
    let (index, manifests) = match announcement {
        Announcement::Publish { manifest, index } => {
            let index = SignedPackageIndex::from_bytes(&index).map_err(|e| e.to_string())?;
            let manifest = SignedManifest::from_bytes(&manifest).map_err(|e| e.to_string())?;
            (index, vec![manifest])
        }
        Announcement::Index { index } => {
            (SignedPackageIndex::from_bytes(&index).map_err(|e| e.to_string())?, Vec::new())
        }
        Announcement::Equivocation { proof } => {
            let proof = Equivocation::from_bytes(&proof).map_err(|e| e.to_string())?;
            return Ok(equivocation(services, proof).await);
        }
    };
    // New evidence (a competing claim, a proof) is forwarded like a new package:
    // every node should hear of a conflict.
    match services.ingest.one(index, manifests).await {
        Ok(kept) if kept.anything() => Ok(Verdict::Accept),
        Ok(_) => Ok(Verdict::Ignore),
        Err(error) if error.is_misbehaviour() => Err(error.to_string()),
        // Another key's claim to a name this node knows: not kept, not forwarded,
        // not held against the forwarder.
        Err(error) if error.is_invalid_input() => {
            tracing::info!(%error, "ignoring a contested claim");
            Ok(Verdict::Ignore)
        }
        Err(error) => {
            tracing::warn!(%error, "could not store an announcement");
            Ok(Verdict::Ignore)
        }
    }
}

/// Keeps a gossiped equivocation proof (already checked: holding one means it
/// holds); forwarded when it is new here.
async fn equivocation(services: &Services, proof: Equivocation) -> Verdict {
    let store = services.store.clone();
    match crate::blocking::run(move || store.packages().ingest_equivocation(&proof)).await {
        Ok(Ingested::Equivocated) => Verdict::Accept,
        Ok(_) => Verdict::Ignore,
        Err(error) => {
            tracing::warn!(%error, "could not store an equivocation proof");
            Verdict::Ignore
        }
    }
}

/// A record a peer put to this node's DHT store: stored in the catalog when it is
/// valid and new, and then kept in the DHT store too.
pub(super) async fn record(services: &Services, handle: &NetworkHandle, peer: PeerId, key: RecordKey, value: Vec<u8>) {
    let outcome = match &key {
        RecordKey::Index(_) => match SignedPackageIndex::from_bytes(&value) {
            Ok(index) => services.ingest.one(index, Vec::new()).await,
            Err(error) => Err(error),
        },
        RecordKey::Manifest(name, _) => {
            let known = services.registry.get_package(name).await;
            match (SignedManifest::from_bytes(&value), known) {
                (Ok(manifest), Ok(index)) => services.ingest.one(index, vec![manifest]).await,
                (Err(error), _) => Err(error),
                // A manifest for a package we do not know: not ours to keep.
                (Ok(_), Err(_)) => return,
            }
        }
    };
    match outcome {
        // The catalog accepted it as the package (or already had it): serve it
        // from the DHT store too. Evidence is kept in the catalog only.
        Ok(Kept::Package | Kept::Nothing) => handle.store_record(key, value).await,
        Ok(Kept::Evidence) => {}
        Err(error) if error.is_misbehaviour() => {
            strike(services, peer, &format!("stored an invalid record: {error}")).await;
        }
        Err(error) if error.is_invalid_input() => tracing::info!(%peer, %error, "not storing a contested record"),
        Err(error) => tracing::warn!(%peer, %error, "could not check an inbound record"),
    }
}

/// Verifies and stores a peer's search answer (each entry a signed index and
/// the signed manifest of one of its versions) with the atomic ingestion
/// catalog sync uses. Any forged, malformed, mismatched or rule-breaking entry,
/// or more entries than asked for, strikes the peer once; the valid entries
/// are stored all the same.
pub(super) async fn search_answer(
    services: &Services,
    peer: PeerId,
    limit: u16,
    response: SearchResponse,
) -> SearchAnswer {
    let mut invalid: Option<String> = None;
    if response.entries.len() > usize::from(limit) {
        invalid = Some(format!("search answer has {} hits where {limit} were asked for", response.entries.len()));
    }
    let mut batch = Vec::with_capacity(response.entries.len());
    for entry in response.entries.into_iter().take(usize::from(limit)) {
        let decoded = SignedPackageIndex::from_bytes(&entry.index)
            .and_then(|index| Ok((index, SignedManifest::from_bytes(&entry.manifest)?)));
        match decoded {
            Ok((index, manifest)) if manifest.manifest().name() == &index.index().name => {
                batch.push((index, vec![manifest]));
            }
            Ok((index, manifest)) => {
                invalid.get_or_insert_with(|| {
                    format!(
                        "search hit pairs the index of `{}` with a manifest of `{}`",
                        index.index().name,
                        manifest.manifest().name()
                    )
                });
            }
            Err(error) => {
                invalid.get_or_insert_with(|| format!("search sent an invalid record: {error}"));
            }
        }
    }
    let names: Vec<PackageName> = batch.iter().map(|(index, _)| index.index().name.clone()).collect();
    let mut valid = true;
    match services.ingest.batch(batch).await {
        Ok(outcomes) => {
            if let Some(error) = first_violation(outcomes) {
                invalid.get_or_insert_with(|| format!("search sent records breaking the rules: {error}"));
            }
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "could not store a search answer");
            valid = false;
        }
    }
    if let Some(reason) = &invalid {
        strike(services, peer, reason).await;
        valid = false;
    }
    SearchAnswer { names, valid }
}
