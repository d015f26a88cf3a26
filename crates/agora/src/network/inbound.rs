//! Answers to what peers ask this node: a chunk of an artifact it holds
//! (re-verified before it is sent), a page of its catalog, a search of its
//! catalog. Each answer reads the store on the blocking pool and is bounded in
//! size and time; none of them changes anything.

use std::time::Duration;

use agora_net::{
    ChunkRequest, ChunkResponse, MAX_SEARCH_RESPONSE, MAX_SYNC_RESPONSE, SearchEntry, SearchRequest, SearchResponse,
    SyncEntry, SyncRequest, SyncResponse,
};

use crate::services::Services;

/// Packages per catalog-sync page.
pub(super) const SYNC_PAGE: u16 = 256;
/// Longest time spent answering one search request from a peer.
const SEARCH_ANSWER_BUDGET: Duration = Duration::from_secs(2);
/// Bytes of signed records in one search answer (under the frame limit).
const SEARCH_ANSWER_BYTES: usize = MAX_SEARCH_RESPONSE - 64 * 1024;

/// A chunk of an artifact this node holds, re-verified before it is sent, and
/// the outcome for the span.
pub(super) async fn chunk(services: &Services, request: ChunkRequest) -> (ChunkResponse, &'static str) {
    let response = services
        .blocking(move |store| {
            let Some(manifest) = store.packages().manifest_for_digest(&request.digest)? else {
                return Ok(ChunkResponse::NotFound);
            };
            let info = &manifest.manifest().artifact;
            if request.index as usize >= info.chunks.len() {
                return Ok(ChunkResponse::OutOfRange);
            }
            match store.artifacts().read_chunk(info, request.index as usize) {
                Ok(Some(bytes)) => Ok(ChunkResponse::Data(bytes)),
                Ok(None) => Ok(ChunkResponse::NotFound),
                Err(error) => {
                    tracing::error!(digest = %request.digest, %error, "not serving a chunk that fails verification");
                    Ok(ChunkResponse::Unavailable)
                }
            }
        })
        .await
        .unwrap_or(ChunkResponse::Unavailable);
    let outcome = match &response {
        ChunkResponse::Data(_) => "served",
        ChunkResponse::NotFound => "not_found",
        ChunkResponse::OutOfRange => "out_of_range",
        ChunkResponse::Unavailable => "unavailable",
    };
    (response, outcome)
}

/// A page of this node's catalog.
pub(super) async fn sync_page(services: &Services, request: SyncRequest) -> (SyncResponse, &'static str) {
    let limit = usize::from(request.limit.min(SYNC_PAGE));
    let after = request.after;
    let page = services
        .blocking(move |store| store.packages().page(after.as_ref(), limit, MAX_SYNC_RESPONSE - 1024 * 1024))
        .await;
    match page {
        Ok((entries, next)) => {
            let entries = entries.into_iter().map(|e| SyncEntry { index: e.index, manifests: e.manifests }).collect();
            (SyncResponse { entries, next }, "served")
        }
        Err(error) => {
            tracing::error!(%error, "could not read a catalog page for a peer");
            (SyncResponse::default(), "error")
        }
    }
}

/// Searches this node's own catalog for a peer: up to `limit` hits in score
/// order, each as its signed index and the signed manifest of its default
/// version, within [`SEARCH_ANSWER_BYTES`] and [`SEARCH_ANSWER_BUDGET`]. An
/// answer that runs out of time is empty.
pub(super) async fn search(services: &Services, request: SearchRequest) -> (SearchResponse, &'static str) {
    let mut query = agora_core::Query::new(request.text);
    query.categories = request.categories;
    query.tags = request.tags;
    query.publisher = request.publisher;
    query.limit = u32::from(request.limit);
    if let Err(error) = query.validate() {
        tracing::debug!(%error, "refusing a search request");
        return (SearchResponse::default(), "invalid");
    }
    let work = services.blocking(move |store| {
        let packages = store.packages();
        let results = packages.search(&query)?;
        let mut entries = Vec::with_capacity(results.hits.len());
        let mut bytes = 0usize;
        for hit in results.hits {
            let (Some(index), Some(manifest)) =
                (packages.package(&hit.name)?, packages.manifest(&hit.name, &hit.version)?)
            else {
                continue;
            };
            let entry = SearchEntry { index: index.to_bytes(), manifest: manifest.to_bytes() };
            let size = entry.index.len() + entry.manifest.len() + 8;
            if bytes + size > SEARCH_ANSWER_BYTES {
                break;
            }
            bytes += size;
            entries.push(entry);
        }
        Ok(entries)
    });
    match tokio::time::timeout(SEARCH_ANSWER_BUDGET, work).await {
        Ok(Ok(entries)) if entries.is_empty() => (SearchResponse::default(), "no_hits"),
        Ok(Ok(entries)) => (SearchResponse { entries }, "served"),
        Ok(Err(error)) => {
            tracing::error!(%error, "could not search the catalog for a peer");
            (SearchResponse::default(), "error")
        }
        Err(_) => {
            tracing::warn!("a peer's search ran out of time; answering with no hits");
            (SearchResponse::default(), "timeout")
        }
    }
}
