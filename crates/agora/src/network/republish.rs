//! What the node sends out on its own: its new publications and yanks (DHT puts,
//! provider records, gossip), and at start — or when it finds peers again after
//! being alone — re-dials known peers and republishes the records of the packages
//! it owns and the artifacts it holds (the DHT's memory store is empty after a
//! restart). All of it runs in the background on the node's tasks; failures are
//! logged, since a lone node publishes fine and pushes when peers appear.

use std::sync::Arc;

use agora_core::{Manifest, PackageIndex, PackageName, SignedManifest, SignedPackageIndex};
use agora_net::{Announcement, Multiaddr, NetworkHandle, RecordKey, Wire};
use futures::StreamExt;

use crate::services::Services;

/// DHT puts and provides in flight during a republish.
const REPUBLISH_SLOTS: usize = 16;
/// Known peers re-dialed at start.
const REDIAL_PEERS: usize = 32;
/// Catalog packages read per page while republishing.
const REPUBLISH_PAGE: usize = 256;

/// Puts the records of a new version, provides its artifact and announces it.
pub(super) fn publish_in_background(
    services: &Services,
    handle: &NetworkHandle,
    manifest: SignedManifest,
    index: SignedPackageIndex,
) {
    let handle = handle.clone();
    services.tasks.spawn(async move {
        let inner = manifest.manifest();
        let name = inner.name().clone();
        let announcement = Announcement::Publish { manifest: manifest.to_bytes(), index: index.to_bytes() };
        let (index_put, manifest_put, provided, announced) = tokio::join!(
            handle.put_record(RecordKey::Index(name.clone()), index.to_bytes()),
            handle.put_record(RecordKey::Manifest(name.clone(), inner.version().clone()), manifest.to_bytes()),
            handle.start_providing(inner.artifact.digest),
            handle.announce(announcement.encode()),
        );
        tracing::info!(
            package = %name,
            version = %inner.version(),
            index_put = %outcome(&index_put),
            manifest_put = %outcome(&manifest_put),
            provided = %outcome(&provided),
            announced = %announced_outcome(&announced),
            "published to the network"
        );
    });
}

/// Puts and announces an index update (a yank).
pub(super) fn announce_index_in_background(services: &Services, handle: &NetworkHandle, index: SignedPackageIndex) {
    let handle = handle.clone();
    services.tasks.spawn(async move {
        let name = index.index().name.clone();
        let announcement = Announcement::Index { index: index.to_bytes() };
        let (put, announced) = tokio::join!(
            handle.put_record(RecordKey::Index(name.clone()), index.to_bytes()),
            handle.announce(announcement.encode())
        );
        tracing::info!(package = %name, put = %outcome(&put), announced = %announced_outcome(&announced), "index update sent to the network");
    });
}

/// A gossip announcement's outcome as a log field. With no peer subscribed (a lone
/// node) nothing is sent; peers get it by catalog sync and republish later.
fn announced_outcome(result: &Result<bool, agora_net::NetworkError>) -> String {
    match result {
        Ok(true) => "sent".to_owned(),
        Ok(false) => "no peers yet".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// A DHT put's or provide's outcome as a log field: `ok`, or the error in words.
fn outcome(result: &Result<(), agora_net::NetworkError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => error.to_string(),
    }
}

/// At start: re-dial peers known from earlier runs, then republish.
pub(super) async fn warm_up(services: Arc<Services>, handle: NetworkHandle) {
    match services.blocking(|store| store.peers().known(REDIAL_PEERS)).await {
        Ok(peers) => {
            for peer in peers {
                let Some(address) = peer.addresses.iter().find_map(|a| a.parse::<Multiaddr>().ok()) else {
                    continue;
                };
                let handle = handle.clone();
                services.tasks.spawn(async move {
                    if let Err(error) = handle.dial(address.clone()).await {
                        tracing::debug!(%address, %error, "known peer unreachable");
                    }
                });
            }
        }
        Err(error) => tracing::warn!(%error, "could not read known peers"),
    }
    republish(services, handle).await;
}

/// Re-puts the records of the packages this node owns and provides every
/// artifact it holds; the records of others' packages go into the local DHT
/// store only (their owners republish them).
pub(super) async fn republish(services: Arc<Services>, handle: NetworkHandle) {
    let cancel = services.cancel.clone();
    tokio::select! {
        () = cancel.cancelled() => {}
        () = republish_all(&services, &handle) => {}
    }
}

async fn republish_all(services: &Services, handle: &NetworkHandle) {
    let owner = services.publisher_key();
    let mut after: Option<PackageName> = None;
    loop {
        let cursor = after.clone();
        let Ok((entries, next)) = services
            .blocking(move |store| store.packages().page(cursor.as_ref(), REPUBLISH_PAGE, 8 * 1024 * 1024))
            .await
        else {
            break;
        };
        // The catalog's own rows, verified when they were stored: decoded, not
        // re-verified (two checks per package would keep a core busy for seconds
        // after every start of a large catalog).
        let mut puts = Vec::new();
        let mut previous: Option<PackageName> = None;
        for entry in entries {
            let Ok(index) = PackageIndex::from_trusted_bytes(&entry.index) else { continue };
            let name = index.name.clone();
            // Competing claims follow their name's default in a page: evidence, never served.
            if previous.replace(name.clone()).as_ref() == Some(&name) {
                continue;
            }
            let mut records = vec![(RecordKey::Index(name.clone()), entry.index)];
            for bytes in entry.manifests {
                if let Ok(manifest) = Manifest::from_trusted_bytes(&bytes) {
                    records.push((RecordKey::Manifest(name.clone(), manifest.version().clone()), bytes));
                }
            }
            if !index.is_owner(&owner) {
                for (key, value) in records {
                    handle.store_record(key, value).await;
                }
                continue;
            }
            puts.extend(records);
        }
        // One page of puts at a time, at most REPUBLISH_SLOTS in flight; no task each.
        futures::stream::iter(puts)
            .for_each_concurrent(REPUBLISH_SLOTS, |(key, value)| async move {
                let _ = handle.put_record(key, value).await;
            })
            .await;
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let held = services.blocking(|store| store.artifacts().held()).await.unwrap_or_default();
    let provided = held.len();
    futures::stream::iter(held)
        .for_each_concurrent(REPUBLISH_SLOTS, |digest| async move {
            let _ = handle.start_providing(digest).await;
        })
        .await;
    tracing::debug!(provided, "republished records and provider records");
}
