//! The DHT fallbacks of the `Registry` reads: a package or version the catalog
//! does not know is looked up in the DHT, verified, stored through the catalog
//! writer, and then read back from the catalog (which may hold a newer copy).
//! Every lookup is counted in the node's DHT query metrics.

use agora_core::{
    Error as CoreError, PackageName, Registry, Result as CoreResult, SignedManifest, SignedPackageIndex, Version,
};
use agora_net::{NetworkHandle, RecordKey};
use tracing::Instrument;

use super::network_error;
use crate::metrics::QueryOutcome;
use crate::services::Services;

/// The index of `name` from the DHT, verified and stored.
pub(super) async fn index(
    services: &Services,
    handle: &NetworkHandle,
    name: &PackageName,
) -> CoreResult<SignedPackageIndex> {
    let value = get_record(services, handle, RecordKey::Index(name.clone()))
        .await?
        .ok_or_else(|| CoreError::PackageNotFound(name.clone()))?;
    let index = SignedPackageIndex::from_bytes(&value)?;
    if &index.index().name != name {
        return Err(CoreError::InvalidIndex(format!(
            "the DHT returned the index of `{}` for `{name}`",
            index.index().name
        )));
    }
    services.ingest.one(index, Vec::new()).await?;
    // What the catalog holds now (it may have had a newer copy).
    services.registry.get_package(name).await
}

/// The manifest of `name@version` from the DHT (and the index, if the local one
/// does not list the version), verified and stored.
pub(super) async fn manifest(
    services: &Services,
    handle: &NetworkHandle,
    name: &PackageName,
    version: &Version,
) -> CoreResult<SignedManifest> {
    let index = match services.registry.get_package(name).await {
        Ok(index) if index.index().entry(version).is_some() => index,
        Ok(_) | Err(CoreError::PackageNotFound(_)) => self::index(services, handle, name).await?,
        Err(error) => return Err(error),
    };
    if index.index().entry(version).is_none() {
        return Err(CoreError::VersionNotFound { name: name.clone(), version: version.clone() });
    }
    let value = get_record(services, handle, RecordKey::Manifest(name.clone(), version.clone()))
        .await?
        .ok_or_else(|| CoreError::VersionNotFound { name: name.clone(), version: version.clone() })?;
    let manifest = SignedManifest::from_bytes(&value)?;
    services.ingest.one(index, vec![manifest]).await?;
    services.registry.get_version(name, version).await
}

/// Looks a record up, counted in the DHT query metrics: an answer (found or
/// not) is a success, running out of time partial, any other error a failure.
async fn get_record(services: &Services, handle: &NetworkHandle, key: RecordKey) -> CoreResult<Option<Vec<u8>>> {
    let span = tracing::debug_span!("dht_get", %key, found = tracing::field::Empty, latency_ms = tracing::field::Empty);
    let timer = services.metrics.dht_get.start();
    let what = format!("looking up {key} in the DHT");
    let result = handle.get_record(key).instrument(span.clone()).await;
    let outcome = match &result {
        Ok(_) => QueryOutcome::Success,
        Err(agora_net::NetworkError::Timeout(_)) => QueryOutcome::Partial,
        Err(_) => QueryOutcome::Failed,
    };
    let latency = timer.finish(outcome);
    span.record("found", matches!(result, Ok(Some(_))));
    span.record("latency_ms", latency.as_secs_f64() * 1e3);
    result.map_err(|error| network_error(&what, error))
}
