//! [`Node`] and [`NodeBuilder`]: a data directory, persisted keys, the store, the
//! read cache, and the publishing operations that need the node's publisher key.
//!
//! In this release a node is offline: its registry is the local store behind the
//! cache. The network layer plugs in behind the same `Registry` seam.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use agora_cache::{CacheStats, CachedRegistry};
use agora_core::{
    Artifact, ArtifactData, ArtifactHasher, Error as CoreError, IndexChange, PackageIndex, PackageName, PublicKey,
    Publication, Publisher, Query, Registry, RegistryMetadata, Result as CoreResult, SearchResults, SecretKey,
    SignedManifest, SignedPackageIndex, Version, VersionEntry,
};
use agora_store::Store;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::local::unix_now;
use crate::{Config, Error, LocalRegistry, Result, archive, keys};

const CONFIG_FILE: &str = "config.toml";
const IDENTITY_KEY: &str = "keys/identity.key";
const PUBLISHER_KEY: &str = "keys/publisher.key";

/// Builds a [`Node`]. Settings are applied in order: embedded defaults, the config
/// file, the environment, then the builder's explicit overrides (the CLI's flags).
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    env: Option<Vec<(String, String)>>,
    overrides: Vec<Override>,
}

enum Override {
    Api(std::net::SocketAddr),
    MaxArtifactSize(u64),
    Listen(Vec<String>),
    Bootstrap(Vec<String>),
    Offline,
    CatalogSync(bool),
    LinkConditions { latency: std::time::Duration, loss: f64 },
    Edit(Box<dyn Fn(&mut Config) + Send + Sync>),
}

impl std::fmt::Debug for Override {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Api(addr) => write!(f, "Api({addr})"),
            Self::MaxArtifactSize(bytes) => write!(f, "MaxArtifactSize({bytes})"),
            Self::Listen(addresses) => write!(f, "Listen({addresses:?})"),
            Self::Bootstrap(addresses) => write!(f, "Bootstrap({addresses:?})"),
            Self::Offline => f.write_str("Offline"),
            Self::CatalogSync(enabled) => write!(f, "CatalogSync({enabled})"),
            Self::LinkConditions { latency, loss } => write!(f, "LinkConditions({latency:?}, {loss})"),
            Self::Edit(_) => f.write_str("Edit(..)"),
        }
    }
}

impl NodeBuilder {
    /// The data directory (default: [`crate::default_data_dir`]).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// A config file to read instead of `<data dir>/config.toml`. It must exist.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Environment variables to apply (pass `std::env::vars()`); none by default.
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = Some(vars.into_iter().collect());
        self
    }

    /// Overrides the API address.
    pub fn api(mut self, addr: std::net::SocketAddr) -> Self {
        self.overrides.push(Override::Api(addr));
        self
    }

    /// Overrides the artifact size limit.
    pub fn max_artifact_size(mut self, bytes: u64) -> Self {
        self.overrides.push(Override::MaxArtifactSize(bytes));
        self
    }

    /// Replaces the listen addresses (multiaddrs such as `/ip4/127.0.0.1/tcp/0`).
    pub fn listen(mut self, addresses: impl IntoIterator<Item = impl ToString>) -> Self {
        self.overrides.push(Override::Listen(addresses.into_iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Adds bootstrap peers (multiaddrs ending in `/p2p/<peer id>`).
    pub fn bootstrap(mut self, addresses: impl IntoIterator<Item = impl ToString>) -> Self {
        self.overrides.push(Override::Bootstrap(addresses.into_iter().map(|a| a.to_string()).collect()));
        self
    }

    /// Runs without the peer-to-peer network.
    pub fn offline(mut self) -> Self {
        self.overrides.push(Override::Offline);
        self
    }

    /// Edits the resolved configuration last (for settings without their own
    /// builder method, e.g. `config.reputation.invalid_threshold`).
    pub fn configure(mut self, edit: impl Fn(&mut Config) + Send + Sync + 'static) -> Self {
        self.overrides.push(Override::Edit(Box::new(edit)));
        self
    }

    /// Turns catalog sync with new peers on or off.
    pub fn catalog_sync(mut self, enabled: bool) -> Self {
        self.overrides.push(Override::CatalogSync(enabled));
        self
    }

    /// Injects `latency` into everything this node receives on any connection,
    /// and with probability `loss` (0 to 1) an extra retransmission delay per
    /// chunk ([`crate::net::LinkConditions`]). A knob for simulations and tests:
    /// with the same setting on every node, a round trip costs at least twice
    /// `latency`. Out-of-range values fail the build.
    pub fn link_conditions(mut self, latency: std::time::Duration, loss: f64) -> Self {
        self.overrides.push(Override::LinkConditions { latency, loss });
        self
    }

    /// Resolves the configuration without opening anything.
    pub fn resolve_config(&self) -> Result<Config> {
        let data_dir = self.data_dir.clone().unwrap_or_else(crate::default_data_dir);
        let mut config = match &self.config_file {
            Some(path) => Config::from_file(path)?,
            None => {
                let path = data_dir.join(CONFIG_FILE);
                if path.exists() { Config::from_file(&path)? } else { Config::default() }
            }
        };
        if let Some(vars) = &self.env {
            config.apply_env(vars.iter().cloned())?;
        }
        for value in &self.overrides {
            match value {
                Override::Api(addr) => config.api = *addr,
                Override::MaxArtifactSize(bytes) => config.max_artifact_size = *bytes,
                Override::Listen(addresses) => config.network.listen.clone_from(addresses),
                Override::Bootstrap(addresses) => config.network.bootstrap.extend(addresses.iter().cloned()),
                Override::Offline => config.network.enabled = false,
                Override::CatalogSync(enabled) => config.network.catalog_sync = *enabled,
                Override::LinkConditions { latency, loss } => {
                    let link = agora_net::LinkConditions::new(*latency, *loss).map_err(|error| Error::Config {
                        origin: "the command line".into(),
                        message: error.to_string(),
                    })?;
                    config.network.link = Some(link);
                }
                Override::Edit(edit) => edit(&mut config),
            }
        }
        config.validate("the command line")?;
        Ok(config)
    }

    /// Creates the data directory (owner-only), loads or creates the keys, opens
    /// the store. Blocking file work runs off the async workers.
    pub async fn build(self) -> Result<Node> {
        let config = self.resolve_config()?;
        let data_dir = self.data_dir.unwrap_or_else(crate::default_data_dir);
        let opened = {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || -> Result<(SecretKey, SecretKey, Store)> {
                keys::create_private_dir(&data_dir)?;
                let identity = keys::load_or_create(&data_dir.join(IDENTITY_KEY))?;
                let publisher = keys::load_or_create(&data_dir.join(PUBLISHER_KEY))?;
                let store = Store::open(&data_dir.join("store"))?;
                Ok((identity, publisher, store))
            })
            .await
            .map_err(|error| Error::Config { origin: "node start".into(), message: error.to_string() })??
        };
        let (identity, publisher, store) = opened;
        let registry = CachedRegistry::new(
            LocalRegistry::new(store.clone(), config.max_artifact_size),
            config.cache.to_cache_config(),
        );
        tracing::info!(data_dir = %data_dir.display(), publisher = %publisher.public_key(), "node opened");
        let inner = NodeInner {
            data_dir,
            config,
            store,
            registry,
            identity,
            publisher: RwLock::new(publisher),
            publish_lock: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            network: std::sync::OnceLock::new(),
            metrics: crate::metrics::NodeMetrics::default(),
        };
        let node = Node { inner: Arc::new(inner) };
        if node.inner.config.network.enabled {
            crate::network::start(&node).await?;
        }
        Ok(node)
    }
}

/// A running node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

#[derive(Debug)]
pub(crate) struct NodeInner {
    data_dir: PathBuf,
    config: Config,
    store: Store,
    registry: CachedRegistry<LocalRegistry>,
    identity: SecretKey,
    publisher: RwLock<SecretKey>,
    /// Serialises this node's own publishes and yanks, which read the current
    /// index and sign its successor.
    publish_lock: tokio::sync::Mutex<()>,
    started: Instant,
    /// Set once at start when the network is enabled.
    network: std::sync::OnceLock<crate::network::Network>,
    /// Query metrics and the Prometheus registry (libp2p's metrics join it).
    metrics: crate::metrics::NodeMetrics,
}

/// What a node reports about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Agora version.
    pub version: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The node's identity key (its peer identity on the network).
    pub identity: PublicKey,
    /// The key this node signs publications with.
    pub publisher: PublicKey,
    /// Counts from the registry.
    pub registry: RegistryMetadata,
    /// Read-cache counters.
    pub cache: CacheCounters,
    /// Largest artifact accepted.
    pub max_artifact_size: u64,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The peer-to-peer side, when enabled.
    pub network: Option<NetworkSummary>,
    /// Local artifact storage.
    pub storage: StorageStatus,
    /// Network search and DHT lookup counters and latencies.
    #[serde(default)]
    pub queries: crate::QueryMetricsStatus,
}

/// Local artifact storage, for `agora status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageStatus {
    /// Published or pinned artifacts (never evicted).
    pub pinned_artifacts: u64,
    /// Their bytes.
    pub pinned_bytes: u64,
    /// Fetched, unpinned artifacts.
    pub cached_artifacts: u64,
    /// Their bytes.
    pub cached_bytes: u64,
    /// The limit on cached bytes.
    pub max_cached_bytes: u64,
}

/// The network part of [`NodeStatus`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// This node's peer id.
    pub peer_id: String,
    /// Where it listens, each with `/p2p/<peer id>` (what others bootstrap from).
    pub listen_addrs: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: Vec<String>,
    /// Peers in the DHT routing table.
    pub routing_table_size: usize,
    /// Records in the local DHT store.
    pub dht_records: usize,
    /// Artifacts this node announces as a provider.
    pub dht_provided: usize,
}

/// Read-cache hits and misses.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CacheCounters {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the store.
    pub misses: u64,
}

/// A peer as `agora peers` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its peer id.
    pub peer_id: String,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Where it listens (as last identified).
    pub addresses: Vec<String>,
    /// Unix seconds it was last identified (0: never).
    pub last_seen: u64,
    /// Invalid responses recorded against it (bad records, bad chunks, garbage).
    pub strikes: u32,
    /// Its reputation.
    pub standing: Option<crate::PeerStanding>,
}

/// The result of publishing an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// The signed manifest now in the registry.
    pub manifest: SignedManifest,
    /// False when this exact version and content was already published, in which
    /// case nothing changed.
    pub created: bool,
}

impl Node {
    /// A builder with defaults.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The resolved configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The identity key's public half.
    pub fn identity(&self) -> PublicKey {
        self.inner.identity.public_key()
    }

    /// The publisher key's public half.
    pub fn publisher_key(&self) -> PublicKey {
        self.publisher().public_key()
    }

    /// The publisher secret key, for `agora key export`.
    pub fn export_publisher_key(&self) -> SecretKey {
        self.inner.publisher.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Replaces the publisher key (persisted first, then swapped in). Packages
    /// owned by the old key can only be updated with the old key.
    pub async fn import_publisher_key(&self, key: SecretKey) -> Result<()> {
        let _guard = self.inner.publish_lock.lock().await;
        let path = self.inner.data_dir.join(PUBLISHER_KEY);
        let to_store = key.clone();
        tokio::task::spawn_blocking(move || keys::store(&path, &to_store))
            .await
            .map_err(|error| Error::Config { origin: "key import".into(), message: error.to_string() })??;
        *self.inner.publisher.write().unwrap_or_else(std::sync::PoisonError::into_inner) = key;
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
            .map_err(|error| Error::Config { origin: "api token".into(), message: error.to_string() })??;
        Ok(token)
    }

    /// Where the API token lives.
    pub fn api_token_path(&self) -> PathBuf {
        api_token_path(&self.inner.data_dir)
    }

    /// Read-cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.registry.stats()
    }

    /// The registry this node serves from.
    pub fn registry(&self) -> &CachedRegistry<LocalRegistry> {
        &self.inner.registry
    }

    /// Publishes a packed archive (`.tar.gz` with `<name>-<version>/agora.toml`):
    /// reads and validates its manifest, hashes it, signs the manifest and the
    /// successor index with the publisher key, and stores it. Publishing the same
    /// version with the same bytes again is a no-op; with other bytes, an error.
    pub async fn publish_archive(&self, archive_data: ArtifactData) -> Result<Published> {
        let limit = self.inner.config.max_artifact_size;
        let chunk_size = self.inner.config.chunk_size;
        let (metadata, info) = {
            let data = archive_data.clone();
            tokio::task::spawn_blocking(move || inspect_archive(&data, limit, chunk_size))
                .await
                .map_err(|error| Error::Config { origin: "publish".into(), message: error.to_string() })??
        };
        let _guard = self.inner.publish_lock.lock().await;
        let current = self.current_index(&metadata.name).await?;
        if let Some(existing) = current.as_ref().and_then(|index| index.entry(&metadata.version)) {
            if existing.digest == info.digest {
                let manifest = self.inner.registry.get_version(&metadata.name, &metadata.version).await?;
                return Ok(Published { manifest, created: false });
            }
            return Err(CoreError::VersionExists {
                name: metadata.name,
                version: metadata.version,
                existing: existing.digest,
            }
            .into());
        }
        let (manifest, index) = self.publisher().publish(metadata, info, current.as_ref(), unix_now())?;
        self.publish(Publication { manifest: manifest.clone(), index, artifact: archive_data }).await?;
        Ok(Published { manifest, created: true })
    }

    /// Yanks (or with `yanked = false`, restores) a version, signed with the
    /// publisher key. Returns what changed (nothing if it already was so).
    pub async fn set_yanked(&self, name: &PackageName, version: &Version, yanked: bool) -> Result<IndexChange> {
        let _guard = self.inner.publish_lock.lock().await;
        let Some(current) = self.current_index(name).await? else {
            return Err(CoreError::PackageNotFound(name.clone()).into());
        };
        match self.publisher().set_yanked(&current, version, yanked, unix_now())? {
            Some(next) => Ok(self.yank(next).await?),
            None => Ok(IndexChange::default()),
        }
    }

    /// What the node reports about itself.
    pub async fn status(&self) -> Result<NodeStatus> {
        let total = self.cache_stats().total();
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            data_dir: self.inner.data_dir.clone(),
            identity: self.identity(),
            publisher: self.publisher_key(),
            registry: self.inner.registry.metadata().await?,
            cache: CacheCounters { hits: total.hits, misses: total.misses },
            max_artifact_size: self.inner.config.max_artifact_size,
            uptime_secs: self.inner.started.elapsed().as_secs(),
            network: match self.network() {
                Some(network) => Some(network.summary().await?),
                None => None,
            },
            storage: {
                let store = self.inner.store.clone();
                let usage = tokio::task::spawn_blocking(move || store.catalog().storage_usage())
                    .await
                    .map_err(|error| Error::Config { origin: "status".into(), message: error.to_string() })??;
                StorageStatus {
                    pinned_artifacts: usage.pinned_artifacts,
                    pinned_bytes: usage.pinned_bytes,
                    cached_artifacts: usage.cached_artifacts,
                    cached_bytes: usage.cached_bytes,
                    max_cached_bytes: self.inner.config.storage.max_cached_bytes,
                }
            },
            queries: self.inner.metrics.status(),
        })
    }

    /// Starts a search of the local catalog and the network (see
    /// [`crate::QueryHandle`] for how it runs): local hits stream first, then the
    /// `config.fan_out` best peers' hits as they answer, verified and stored.
    /// Errors only for an invalid query or configuration. `query.limit`,
    /// `offset`, `scope` and `timeout` are ignored: `config` decides. Must be
    /// called inside a tokio runtime (the query runs in its own task).
    pub fn search_network(&self, query: &Query, config: crate::QueryConfig) -> CoreResult<crate::QueryHandle> {
        crate::search::start(self, query, config)
    }

    /// Every metric (query metrics and libp2p's) in the OpenMetrics text format,
    /// served as [`crate::METRICS_CONTENT_TYPE`].
    pub fn encode_metrics(&self) -> String {
        self.inner.metrics.encode()
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::NodeMetrics {
        &self.inner.metrics
    }

    /// Fetches an artifact like [`Registry::fetch_artifact`], reporting a
    /// network transfer's progress on `progress` (a local hit reports `Done` at once).
    pub async fn fetch_with_progress(
        &self,
        name: &PackageName,
        version: &Version,
        progress: &tokio::sync::watch::Sender<crate::TransferProgress>,
    ) -> CoreResult<Artifact> {
        match (self.inner.registry.fetch_artifact(name, version).await, self.network()) {
            (Ok(artifact), _) => {
                self.touch(&artifact);
                progress.send_modify(|p| {
                    p.received_bytes = p.total_bytes;
                    p.chunks_done = p.chunks_total;
                    p.state = crate::TransferState::Done;
                });
                Ok(artifact)
            }
            (Err(error), Some(network)) if error.is_not_found() => {
                let manifest = self.get_version(name, version).await?;
                network.download(self, manifest, progress).await
            }
            (Err(corrupt @ CoreError::DigestMismatch { .. }), network) => {
                // The local copy rotted on disk: never serve it; fetch it again if we can.
                tracing::error!(package = %name, %version, error = %corrupt, "local artifact corrupted on disk");
                let refetched = match network {
                    Some(network) => network.download(self, self.get_version(name, version).await?, progress).await,
                    None => Err(CoreError::Network("the node is offline".into())),
                };
                refetched.map_err(|error| {
                    CoreError::Io(format!(
                        "this node's copy of {name}@{version} is corrupted on disk ({corrupt}) and fetching it again failed: {error}"
                    ))
                })
            }
            (Err(error), _) => Err(error),
        }
    }

    /// Pins (or unpins) the artifact of a version this node holds: pinned
    /// artifacts are never evicted. Returns false when the node does not hold it.
    pub async fn set_pinned(&self, name: &PackageName, version: &Version, pinned: bool) -> Result<bool> {
        let manifest = self.get_version(name, version).await?;
        let digest = manifest.manifest().artifact.digest;
        let store = self.inner.store.clone();
        let max_cached = self.inner.config.storage.max_cached_bytes;
        let (held, evicted) =
            tokio::task::spawn_blocking(move || -> agora_store::Result<(bool, Vec<agora_core::Digest>)> {
                let held = store.catalog().set_pinned(&digest, pinned)?;
                // Unpinning can put the cache over its limit.
                let evicted = if pinned { Vec::new() } else { store.evict(max_cached)? };
                Ok((held, evicted))
            })
            .await
            .map_err(|error| Error::Config { origin: "pin".into(), message: error.to_string() })??;
        if let Some(handle) = self.network_handle() {
            for gone in evicted {
                handle.stop_providing(gone).await;
            }
        }
        Ok(held)
    }

    /// Marks an artifact as just used (for least-recently-used eviction).
    fn touch(&self, artifact: &Artifact) {
        let store = self.inner.store.clone();
        let digest = artifact.manifest.manifest().artifact.digest;
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.catalog().touch_artifact(&digest, unix_now()) {
                tracing::debug!(%error, "could not mark an artifact as used");
            }
        });
    }

    /// Known and connected peers, connected first.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        let Some(network) = self.network() else { return Ok(Vec::new()) };
        let status = network.handle().status().await.map_err(crate::network::network_error)?;
        let store = self.inner.store.clone();
        let known = tokio::task::spawn_blocking(move || store.catalog().peer_records(1000))
            .await
            .map_err(|error| Error::Config { origin: "peers".into(), message: error.to_string() })??;
        let connected: std::collections::HashSet<String> =
            status.connected_peers.iter().map(ToString::to_string).collect();
        let mut peers: Vec<PeerInfo> = known
            .into_iter()
            .map(|peer| PeerInfo {
                connected: connected.contains(&peer.peer_id),
                strikes: peer.invalid.min(u64::from(u32::MAX)) as u32,
                standing: Some(crate::standing(&peer, unix_now())),
                peer_id: peer.peer_id,
                addresses: peer.addresses,
                last_seen: peer.last_seen,
            })
            .collect();
        for peer in &status.connected_peers {
            if !peers.iter().any(|known| known.peer_id == peer.to_string()) {
                peers.push(PeerInfo {
                    peer_id: peer.to_string(),
                    connected: true,
                    addresses: Vec::new(),
                    last_seen: 0,
                    strikes: self.strikes(peer),
                    standing: None,
                });
            }
        }
        peers.sort_by(|a, b| {
            let score = |p: &PeerInfo| p.standing.as_ref().map_or(0.0, |s| s.score);
            (!a.connected).cmp(&!b.connected).then(score(b).total_cmp(&score(a)))
        });
        Ok(peers)
    }

    /// Stops the network and the node's background tasks. The store stays usable.
    pub async fn shutdown(&self) {
        if let Some(network) = self.network() {
            network.shutdown().await;
        }
    }

    /// The local (catalog-only, cached) registry, without network fallbacks.
    pub(crate) fn local(&self) -> &CachedRegistry<LocalRegistry> {
        &self.inner.registry
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<NodeInner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<NodeInner>) -> Option<Node> {
        weak.upgrade().map(|inner| Node { inner })
    }

    pub(crate) fn identity_seed(&self) -> [u8; 32] {
        self.inner.identity.to_bytes()
    }

    /// The peer-to-peer handle, when the network is running (for tools and tests
    /// that drive the network directly).
    pub fn network_handle(&self) -> Option<&agora_net::NetworkHandle> {
        self.network().map(crate::network::Network::handle)
    }

    /// Packages the network brings into this node's catalog — by gossip, DHT
    /// puts or catalog sync, new or updated — by name, each sent once it is
    /// committed and searchable. `None` when the network is off. A receiver that
    /// falls more than 1024 names behind misses the oldest
    /// ([`tokio::sync::broadcast::error::RecvError::Lagged`]).
    pub fn network_arrivals(&self) -> Option<tokio::sync::broadcast::Receiver<PackageName>> {
        self.network().map(crate::network::Network::arrivals)
    }

    /// Strikes this node has recorded against `peer` (invalid records, garbage on a
    /// protocol, bad chunks).
    pub fn strikes(&self, peer: &agora_net::PeerId) -> u32 {
        self.network().map_or(0, |network| network.strikes(peer))
    }

    pub(crate) fn network(&self) -> Option<&crate::network::Network> {
        self.inner.network.get()
    }

    pub(crate) fn set_network(&self, network: crate::network::Network) {
        let _ = self.inner.network.set(network);
    }

    /// The node's store (catalog and artifact files).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    async fn current_index(&self, name: &PackageName) -> Result<Option<PackageIndex>> {
        match self.get_package(name).await {
            Ok(index) => Ok(Some(index.into_index())),
            Err(CoreError::PackageNotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(self.export_publisher_key())
    }
}

/// Where a node with data directory `data_dir` writes its API token.
pub fn api_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api-token")
}

/// Reads the manifest out of an archive and hashes it, within `limit` bytes.
fn inspect_archive(
    data: &ArtifactData,
    limit: u64,
    chunk_size: u32,
) -> Result<(agora_core::PackageMetadata, agora_core::ArtifactInfo)> {
    use std::io::Read;
    let mut hasher = ArtifactHasher::new(chunk_size)?;
    let metadata = match data {
        ArtifactData::Bytes(bytes) => {
            if bytes.len() as u64 > limit {
                return Err(CoreError::ArtifactTooLarge { size: bytes.len() as u64, limit }.into());
            }
            hasher.update(bytes);
            archive::manifest_from_archive(&bytes[..])?
        }
        ArtifactData::File(path) => {
            let size = std::fs::metadata(path).map_err(|error| Error::io(path, error))?.len();
            if size > limit {
                return Err(CoreError::ArtifactTooLarge { size, limit }.into());
            }
            let mut file = std::fs::File::open(path).map_err(|error| Error::io(path, error))?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = file.read(&mut buffer).map_err(|error| Error::io(path, error))?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
            let file = std::fs::File::open(path).map_err(|error| Error::io(path, error))?;
            archive::manifest_from_archive(std::io::BufReader::new(file))?
        }
    };
    Ok((metadata, hasher.finish()?))
}

#[async_trait]
impl Registry for Node {
    async fn publish(&self, publication: Publication) -> CoreResult<()> {
        let (manifest, index) = (publication.manifest.clone(), publication.index.clone());
        self.inner.registry.publish(publication).await?;
        if let Some(network) = self.network() {
            network.publish_in_background(manifest, index);
        }
        Ok(())
    }

    async fn get_package(&self, name: &PackageName) -> CoreResult<SignedPackageIndex> {
        match (self.inner.registry.get_package(name).await, self.network()) {
            (Err(CoreError::PackageNotFound(_)), Some(network)) => network.index_from_dht(self, name).await,
            (result, _) => result,
        }
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> CoreResult<SignedManifest> {
        match (self.inner.registry.get_version(name, version).await, self.network()) {
            (Err(CoreError::PackageNotFound(_) | CoreError::VersionNotFound { .. }), Some(network)) => {
                network.manifest_from_dht(self, name, version).await
            }
            (result, _) => result,
        }
    }

    async fn list_versions(&self, name: &PackageName) -> CoreResult<Vec<VersionEntry>> {
        Ok(self.get_package(name).await?.into_index().versions)
    }

    /// `SearchScope::Local` searches the catalog; `SearchScope::Network` runs
    /// [`Node::search_network`] with the balanced preset, `query.limit` as
    /// `max_results` and `query.timeout` (if set) as the timeout, and collects it.
    /// A network search is one page: its offset must be 0.
    async fn search(&self, query: &Query) -> CoreResult<SearchResults> {
        match query.scope {
            agora_core::SearchScope::Local => self.inner.registry.search(query).await,
            agora_core::SearchScope::Network => {
                query.validate()?;
                if query.offset != 0 {
                    return Err(CoreError::InvalidQuery(format!(
                        "a network search returns one page; offset must be 0, found {}",
                        query.offset
                    )));
                }
                let mut config = crate::QueryConfig::balanced();
                config.max_results = query.limit as usize;
                if let Some(timeout) = query.timeout {
                    config.timeout = timeout;
                }
                Ok(self.search_network(query, config)?.collect_results().await)
            }
        }
    }

    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> CoreResult<Artifact> {
        let manifest = self.get_version(name, version).await?;
        let (progress, _) = tokio::sync::watch::channel(crate::TransferProgress::new(&manifest.manifest().artifact));
        self.fetch_with_progress(name, version, &progress).await
    }

    async fn yank(&self, index: SignedPackageIndex) -> CoreResult<IndexChange> {
        let change = self.inner.registry.yank(index.clone()).await?;
        if let Some(network) = self.network() {
            network.announce_index_in_background(index);
        }
        Ok(change)
    }

    async fn metadata(&self) -> CoreResult<RegistryMetadata> {
        let mut metadata = self.inner.registry.metadata().await?;
        metadata.backend = "node".into();
        Ok(metadata)
    }
}
