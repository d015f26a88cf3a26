//! [`Node`]: a node's [`Services`] plus, when enabled, its network — the
//! `Registry` that reads the local catalog first and falls back to the network,
//! and the operations that need the node's publisher key.
//!
//! The parts: [`builder`](NodeBuilder) opens everything in order; `registry`
//! holds the `Registry` implementation and publishing; `fetch` the progress
//! stream of a fetch; `status` what the node reports about itself and its peers.
//! Nothing below imports the node back: the network, transfer and search tasks
//! get the services (a fetch's own task holds a `Node` handle while it runs).

mod builder;
mod cargo;
mod fetch;
mod registry;
mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agora_cache::{CacheStats, CachedRegistry};
use agora_core::{PackageName, PublicKey, Publisher, Query, Result as CoreResult, SecretKey, Signature, Version};
use agora_store::Store;

pub use self::builder::NodeBuilder;
pub use self::cargo::{CrateIndexFile, CrateView};
pub use self::fetch::Fetch;
pub use self::registry::{KeyRotation, Published, inspect_archive};
pub use self::status::{CacheCounters, NodeStatus, PeerConnection, PeerInfo, StorageStatus};
use crate::local::LocalRegistry;
use crate::lock::DataDirLock;
use crate::network::Network;
use crate::services::Services;
use crate::transfer::Transfers;
use crate::{Config, Error, Result, keys};

const IDENTITY_KEY: &str = "keys/identity.key";
const PUBLISHER_KEY: &str = "keys/publisher.key";
/// Every publisher key this node used, by public key.
const KEYRING: &str = "keys/keyring";

/// A running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
struct NodeInner {
    services: Arc<Services>,
    /// Present when the network is enabled.
    network: Option<Network>,
    identity: SecretKey,
    transfers: Transfers,
    /// Serialises this node's own publishes, yanks and key changes, which read
    /// the current index and sign its successor.
    publish_lock: tokio::sync::Mutex<()>,
    /// The data dir's lock. Declared last, so it is released after everything
    /// above is dropped.
    _data_dir_lock: DataDirLock,
}

impl Node {
    /// A builder with defaults.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    fn new(services: Arc<Services>, network: Option<Network>, identity: SecretKey, lock: DataDirLock) -> Self {
        let inner = NodeInner {
            services,
            network,
            identity,
            transfers: Transfers::default(),
            publish_lock: tokio::sync::Mutex::new(()),
            _data_dir_lock: lock,
        };
        Self { inner: Arc::new(inner) }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.services.data_dir
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.services.config
    }

    /// The identity key's public half.
    pub fn identity(&self) -> PublicKey {
        self.inner.identity.public_key()
    }

    /// Signs [`identity_proof_message`]`(challenge)` with the identity key, so a
    /// local client that picked a fresh `challenge` knows it talks to the node
    /// of the identity it expects (the one its data dir's record names), not to
    /// whatever holds the port.
    pub fn prove_identity(&self, challenge: &[u8; 32]) -> Signature {
        self.inner.identity.sign(&identity_proof_message(challenge))
    }

    /// The publisher key's public half.
    pub fn publisher_key(&self) -> PublicKey {
        self.inner.services.publisher_key()
    }

    /// The publisher secret key, for `agora key export`.
    pub fn export_publisher_key(&self) -> SecretKey {
        self.inner.services.publisher_secret()
    }

    /// Makes `key` the publisher key. Every key this node ever published with is
    /// kept in `keys/keyring/<public key>.key` (owner-only), so nothing is lost.
    /// When the current key owns packages in the catalog, switching would leave
    /// them un-updatable from this node, so it is refused
    /// ([`Error::KeyOwnsPackages`]) unless `force`. Importing the current key is a
    /// no-op.
    pub async fn import_publisher_key(&self, key: SecretKey, force: bool) -> Result<()> {
        let _guard = self.inner.publish_lock.lock().await;
        let current = self.export_publisher_key();
        if current.public_key() == key.public_key() {
            return Ok(());
        }
        if !force {
            let owner = current.public_key();
            let owned: Vec<String> = self
                .services()
                .blocking(move |store| store.packages().owned_by(&owner))
                .await?
                .into_iter()
                .map(|index| index.index().name.to_string())
                .collect();
            if !owned.is_empty() {
                let mut names: Vec<&str> = owned.iter().map(String::as_str).take(5).collect();
                if owned.len() > names.len() {
                    names.push("…");
                }
                return Err(Error::KeyOwnsPackages {
                    current: current.public_key().to_hex(),
                    count: owned.len(),
                    names: names.join(", "),
                });
            }
        }
        self.switch_publisher_key(&current, key).await
    }

    /// Makes `key` the publisher key, keeping both it and `current` in the
    /// keyring. The caller holds the publish lock.
    async fn switch_publisher_key(&self, current: &SecretKey, key: SecretKey) -> Result<()> {
        let data_dir = self.data_dir().to_owned();
        let (old, new) = (current.clone(), key.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            for kept in [&old, &new] {
                let path = data_dir.join(KEYRING).join(format!("{}.key", kept.public_key().to_hex()));
                if !path.exists() {
                    keys::store(&path, kept)?;
                }
            }
            keys::store(&data_dir.join(PUBLISHER_KEY), &new)
        })
        .await
        .map_err(crate::blocking::join_error)??;
        tracing::info!(old = %current.public_key(), new = %key.public_key(), "publisher key switched");
        *self.inner.services.publisher.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        Ok(())
    }

    /// Writes a fresh random API token to `<data dir>/api-token` (owner-only) and
    /// returns it. Local clients read it from there to authorise writes.
    pub async fn issue_api_token(&self) -> Result<String> {
        let token = SecretKey::generate().to_hex();
        let path = self.api_token_path();
        let contents = token.clone();
        tokio::task::spawn_blocking(move || keys::write_private(&path, &contents))
            .await
            .map_err(crate::blocking::join_error)??;
        Ok(token)
    }

    /// Where the API token lives.
    pub fn api_token_path(&self) -> PathBuf {
        api_token_path(self.data_dir())
    }

    /// Read-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.services.registry.stats()
    }

    /// The local (catalog-only, cached) registry this node serves from, without
    /// network fallbacks.
    pub fn registry(&self) -> &CachedRegistry<LocalRegistry> {
        &self.inner.services.registry
    }

    /// The node's store (catalog and artifact files).
    pub fn store(&self) -> &Store {
        &self.inner.services.store
    }

    /// Starts a search of the local catalog and the network (see
    /// [`crate::QueryHandle`] for how it runs): local hits stream first, then the
    /// `config.fan_out` best peers' hits as they answer, verified and stored.
    /// Errors only for an invalid query or configuration. `query.limit`,
    /// `offset`, `scope` and `timeout` are ignored: `config` decides. Must be
    /// called inside a tokio runtime (the query runs in a task of the node).
    pub fn search_network(&self, query: &Query, config: crate::QueryConfig) -> CoreResult<crate::QueryHandle> {
        crate::search::start(&self.inner.services, self.inner.network.clone(), query, config)
    }

    /// Every metric (query metrics and libp2p's) in the OpenMetrics text format,
    /// served as [`crate::METRICS_CONTENT_TYPE`].
    pub fn encode_metrics(&self) -> String {
        self.inner.services.metrics.encode()
    }

    /// Who claims `name` from this node's point of view: the owner it serves
    /// (first seen, or chosen by the user), competing claims it has heard of, and
    /// which of their owners are proven to have equivocated.
    pub async fn claims(&self, name: &PackageName) -> CoreResult<agora_core::NameClaims> {
        let package = name.clone();
        self.services()
            .blocking(move |store| store.packages().claims(&package))
            .await?
            .ok_or_else(|| agora_core::Error::PackageNotFound(name.clone()))
    }

    /// Serves `owner`'s claim for `name` from now on: the user's decision in a
    /// contested name (`agora trust`). Kept across restarts; what peers send
    /// never changes it back. The previous owner's claim is kept as a competing
    /// claim, so the choice can be undone.
    pub async fn trust(&self, name: &PackageName, owner: &PublicKey) -> CoreResult<agora_core::NameClaims> {
        let (name, owner) = (name.clone(), *owner);
        let claims = self.services().blocking(move |store| store.packages().trust(&name, &owner)).await?;
        tracing::info!(package = %claims.name, %owner, "the user chose the owner of a name");
        Ok(claims)
    }

    /// Pins (or unpins) the artifact of a version this node holds: pinned
    /// artifacts are never evicted. Returns false when the node does not hold it.
    pub async fn set_pinned(&self, name: &PackageName, version: &Version, pinned: bool) -> Result<bool> {
        use agora_core::Registry;
        let manifest = self.get_version(name, version).await?;
        let digest = manifest.manifest().artifact.digest;
        let max_cached = self.config().storage.max_cached_bytes;
        let (held, evicted) = self
            .services()
            .blocking(move |store| {
                let held = store.storage().set_pinned(&digest, pinned)?;
                // Unpinning can put the cache over its limit.
                let evicted = if pinned { Vec::new() } else { store.storage().evict(max_cached)? };
                Ok((held, evicted))
            })
            .await?;
        if let Some(handle) = self.network_handle() {
            for gone in evicted {
                handle.stop_providing(gone).await;
            }
        }
        Ok(held)
    }

    /// Cancels every task of the node (the network actor, its event loop, syncs,
    /// searches, fetches, the catalog writer) and waits until all have ended.
    /// The store stays usable. Idempotent.
    pub async fn shutdown(&self) {
        // Cancel first: running syncs, transfers and searches stop without
        // recording the closing network against their peers.
        self.inner.services.cancel.cancel();
        if let Some(network) = &self.inner.network {
            network.handle().shutdown().await;
        }
        self.inner.services.shutdown().await;
    }

    /// Tasks of this node still running (none once [`Node::shutdown`] returned).
    pub fn running_tasks(&self) -> usize {
        self.inner.services.tasks.len()
    }

    /// The peer-to-peer handle, when the network is running (for tools and tests
    /// that drive the network directly).
    pub fn network_handle(&self) -> Option<&agora_net::NetworkHandle> {
        self.inner.network.as_ref().map(Network::handle)
    }

    /// Packages the network brings into this node's catalog — by gossip, DHT
    /// puts or catalog sync, new or updated — by name, each sent once it is
    /// committed and searchable. `None` when the network is off. A receiver that
    /// falls more than 1024 names behind misses the oldest
    /// ([`tokio::sync::broadcast::error::RecvError::Lagged`]).
    pub fn network_arrivals(&self) -> Option<tokio::sync::broadcast::Receiver<PackageName>> {
        self.inner.network.as_ref().map(|_| self.inner.services.arrivals.subscribe())
    }

    /// Strikes this node has recorded against `peer` (invalid records, garbage on a
    /// protocol, bad chunks).
    pub fn strikes(&self, peer: &agora_net::PeerId) -> u32 {
        self.inner.network.as_ref().map_or(0, |network| network.strikes(peer))
    }

    /// Marks a held artifact as just used, for least-recently-used eviction (a
    /// failure only costs eviction order, so it is logged, not returned).
    async fn mark_used(&self, digest: agora_core::Digest) {
        let now = self.services().unix_now();
        if let Err(error) = self.services().blocking(move |store| store.storage().touch(&digest, now)).await {
            tracing::debug!(%error, "could not mark an artifact as used");
        }
    }

    fn services(&self) -> &Arc<Services> {
        &self.inner.services
    }

    fn network(&self) -> Option<&Network> {
        self.inner.network.as_ref()
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(self.export_publisher_key())
    }
}

impl Drop for NodeInner {
    /// The last handle dropped without [`Node::shutdown`]: the node's tasks are
    /// cancelled (they end on their own; nothing waits for them here).
    fn drop(&mut self) {
        self.services.cancel.cancel();
    }
}

/// What [`Node::prove_identity`] signs: a domain tag, then the challenge. The
/// tag keeps the signature from counting as any other statement signed by the
/// identity key (which is also the node's libp2p key).
pub fn identity_proof_message(challenge: &[u8; 32]) -> Vec<u8> {
    [IDENTITY_PROOF_TAG, &challenge[..]].concat()
}

const IDENTITY_PROOF_TAG: &[u8] = b"agora/api-identity/v1";

/// Where a node with data directory `data_dir` writes its API token.
pub fn api_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn an_identity_proof_verifies_only_for_its_challenge_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::builder().data_dir(dir.path()).offline().build().await.unwrap();
        let (challenge, other) = ([7u8; 32], [8u8; 32]);
        let proof = node.prove_identity(&challenge);
        assert!(node.identity().verify(&identity_proof_message(&challenge), &proof));
        assert!(!node.identity().verify(&identity_proof_message(&other), &proof));
        assert!(!node.publisher_key().verify(&identity_proof_message(&challenge), &proof));
        node.shutdown().await;
    }
}
