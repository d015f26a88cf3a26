//! The catalog-sync client: pulls a peer's catalog page by page and stores what
//! is new and valid. The next page is requested and verified while the previous
//! one is stored, so at most one page waits for the catalog. Which peer to pull
//! from is `admission`'s decision, not this module's.

use std::time::Duration;

use agora_core::{PackageName, Result as CoreResult, SignedManifest, SignedPackageIndex};
use agora_net::{NetworkHandle, PeerId, SyncEntry, SyncRequest};
use agora_store::Outcome;
use tokio::task::JoinHandle;

use super::inbound::SYNC_PAGE;
use super::ingest::strike;
use crate::services::Services;
use crate::writer::{Kept, Package, first_violation};

/// Upper bound on pages pulled from one peer in one sync.
const MAX_SYNC_PAGES: usize = 10_000;
/// Upper bound on the time one peer's sync may take.
const SYNC_BUDGET: Duration = Duration::from_secs(300);

/// A page being stored.
type Storing = JoinHandle<CoreResult<Vec<CoreResult<Kept>>>>;

/// Pulls `peer`'s catalog (see the module doc). Stops at the budget, at the
/// last page, on the first failed request, or when the node shuts down.
pub(super) async fn pull(services: &Services, handle: &NetworkHandle, peer: PeerId) {
    tokio::select! {
        () = services.cancel.cancelled() => {}
        stored = pages(services, handle, peer) => {
            if stored > 0 {
                tracing::info!(%peer, packages = stored, "catalog sync stored new records");
            }
        }
    }
}

async fn pages(services: &Services, handle: &NetworkHandle, peer: PeerId) -> usize {
    let mut after: Option<PackageName> = None;
    let mut stored = 0usize;
    let mut storing: Option<Storing> = None;
    let started = services.clock.now();
    for _ in 0..MAX_SYNC_PAGES {
        if services.clock.now().saturating_duration_since(started) > SYNC_BUDGET {
            tracing::warn!(%peer, "catalog sync ran out of time; the rest comes with the next connection");
            break;
        }
        let asked = std::time::Instant::now();
        let page = match handle.request_sync(peer, SyncRequest { after: after.clone(), limit: SYNC_PAGE }).await {
            Ok(page) => {
                let latency_ms = asked.elapsed().as_secs_f64() * 1e3;
                services.reputation.record(peer, Outcome::Success { latency_ms }).await;
                page
            }
            Err(error) => {
                tracing::debug!(%peer, %error, "catalog sync stopped");
                let outcome = if matches!(error, agora_net::NetworkError::Timeout(_)) {
                    Outcome::Timeout
                } else {
                    Outcome::Failure
                };
                services.reputation.record(peer, outcome).await;
                break;
            }
        };
        // Verify this page on the blocking pool while the previous one is being
        // stored, then store it while the next one is requested and verified.
        let entries = page.entries;
        let Ok((batch, problems)) = tokio::task::spawn_blocking(move || verify_page(entries)).await else { break };
        for reason in problems {
            strike(services, peer, &reason).await;
        }
        if let Some(previous) = storing.take() {
            match store_page(services, peer, previous).await {
                Some(count) => stored += count,
                None => break,
            }
        }
        let ingest = services.ingest.clone();
        storing = Some(services.tasks.spawn(async move { ingest.batch(batch).await }));
        match page.next {
            Some(next) if after.as_ref().is_none_or(|previous| &next > previous) => after = Some(next),
            Some(_) => {
                strike(services, peer, "sync cursor did not advance").await;
                break;
            }
            None => break,
        }
    }
    if let Some(last) = storing.take() {
        stored += store_page(services, peer, last).await.unwrap_or(0);
    }
    stored
}

/// Decodes and verifies a sync page (blocking: two or more ed25519 checks per
/// package). Returns the valid packages and a reason to strike per invalid record.
fn verify_page(entries: Vec<SyncEntry>) -> (Vec<Package>, Vec<String>) {
    let mut batch = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for entry in entries {
        let index = match SignedPackageIndex::from_bytes(&entry.index) {
            Ok(index) => index,
            Err(error) => {
                problems.push(format!("sync sent an invalid index: {error}"));
                continue;
            }
        };
        let mut manifests = Vec::with_capacity(entry.manifests.len());
        for bytes in entry.manifests {
            match SignedManifest::from_bytes(&bytes) {
                Ok(manifest) => manifests.push(manifest),
                Err(error) => problems.push(format!("sync sent an invalid manifest: {error}")),
            }
        }
        batch.push((index, manifests));
    }
    (batch, problems)
}

/// Waits for a sync page to be stored: how many packages changed, or `None`
/// when the store failed (the sync stops). Rule breakers are struck.
async fn store_page(services: &Services, peer: PeerId, storing: Storing) -> Option<usize> {
    match storing.await {
        Ok(Ok(outcomes)) => {
            agora_store::crash::point("sync.page_stored");
            let changed = outcomes.iter().filter(|outcome| matches!(outcome, Ok(kept) if kept.anything())).count();
            if let Some(error) = first_violation(outcomes) {
                strike(services, peer, &format!("sync sent records breaking the rules: {error}")).await;
            }
            Some(changed)
        }
        Ok(Err(error)) => {
            tracing::warn!(%peer, %error, "catalog sync could not store a page");
            None
        }
        Err(error) => {
            tracing::warn!(%peer, %error, "catalog sync's store task failed");
            None
        }
    }
}
