//! Node configuration: embedded defaults, overridden by `<data dir>/config.toml`
//! (or an explicit file), then by `AGORA_*` environment variables, then by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The config file's name inside the data directory.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// The local HTTP API's default address.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7420";

/// Everything a node can be configured with. Every field has a default, so an
/// empty file (or none) is a valid configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the local HTTP API. Env: `AGORA_API`.
    pub api: SocketAddr,
    /// Largest artifact accepted for publishing or fetching, in bytes.
    /// Env: `AGORA_MAX_ARTIFACT_SIZE`.
    pub max_artifact_size: u64,
    /// Chunk size used when publishing, in bytes (a power of two, 4 KiB to 16 MiB).
    pub chunk_size: u32,
    /// Read cache settings.
    pub cache: CacheSettings,
    /// Peer-to-peer settings.
    pub network: NetworkSettings,
    /// How artifacts are downloaded from peers.
    pub transfer: TransferSettings,
    /// When peers get blocked.
    pub reputation: ReputationSettings,
    /// Local artifact storage.
    pub storage: StorageSettings,
    /// The Cargo registry gateway.
    pub cargo: CargoSettings,
}

/// The Cargo gateway (`/cargo/…` on the API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CargoSettings {
    /// Publisher keys (hex, as `agora key show` prints them) whose crates appear
    /// in this node's crates.io mirror (`/cargo/mirror/…`), besides the node's
    /// own publisher key, which is always trusted. Crates owned by anyone else
    /// are served only by the extra registry (`/cargo/index/`).
    pub trusted_publishers: Vec<agora_core::PublicKey>,
}

/// How transfers run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferSettings {
    /// Providers downloaded from at once.
    pub max_providers: usize,
    /// Chunk requests in flight per provider.
    pub requests_per_provider: usize,
    /// A chunk request unanswered for this long marks its provider as stalled.
    pub chunk_timeout_ms: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self { max_providers: 3, requests_per_provider: 4, chunk_timeout_ms: 10_000 }
    }
}

/// When to block a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationSettings {
    /// Invalid responses that get a peer blocked.
    pub invalid_threshold: u64,
    /// Length of the first block, in seconds (doubles with every further block).
    pub ban_secs: u64,
}

impl Default for ReputationSettings {
    fn default() -> Self {
        Self { invalid_threshold: 3, ban_secs: 3600 }
    }
}

/// Local artifact storage policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Most bytes of fetched (unpinned) artifacts kept; the least recently used go
    /// first. Published and pinned artifacts never count and are never evicted.
    pub max_cached_bytes: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self { max_cached_bytes: 10 * 1024 * 1024 * 1024 }
    }
}

/// How the node joins the peer-to-peer network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// Run the network at all (false: an offline node serving its own catalog).
    pub enabled: bool,
    /// Multiaddrs to listen on (`/ip4/…/tcp/…`, `/ip4/…/udp/…/quic-v1`, or
    /// `/memory/0` for an in-process port). Default: TCP and QUIC on every IPv4
    /// interface, ports chosen by the OS. Flag: `--listen` (repeatable).
    pub listen: Vec<String>,
    /// Peers to join through, each ending in `/p2p/<peer id>` (`/dns4/host/…`
    /// names are resolved). Flag: `--bootstrap`.
    pub bootstrap: Vec<String>,
    /// Addresses this node is known to be reachable on (a public server, a port
    /// forwarded by hand): announced from the start. Without them an address is
    /// announced only once a peer confirmed it by dialing back (AutoNAT).
    pub external_addresses: Vec<String>,
    /// Relay for peers behind NAT while this node is publicly reachable.
    pub relay_server: bool,
    /// Limits of the relay this node runs (when `relay_server`).
    pub relay: RelaySettings,
    /// Find peers on the local network with mDNS (never when every listen
    /// address is on loopback).
    pub mdns: bool,
    /// Ask the router to forward a port (UPnP) when it offers that (never when
    /// every listen address is on loopback).
    pub upnp: bool,
    /// Deadline of one DHT lookup, in milliseconds.
    pub query_timeout_ms: u64,
    /// Deadline of one request to a peer, in milliseconds.
    pub request_timeout_ms: u64,
    /// Pull the catalogs of peers on connect (false: learn only from gossip and
    /// DHT lookups).
    pub catalog_sync: bool,
    /// Peers kept connected once idle, 8-256: above it, the connections used
    /// least recently (outside the gossip mesh, idle for 10 s) are closed down to
    /// three quarters of it; such peers are dialed again when needed.
    pub max_peers: u32,
    /// Latency and loss injected into every connection: a simulation and testing
    /// knob, set only with [`crate::NodeBuilder::link_conditions`] (never read
    /// from a file). `None` injects nothing.
    #[serde(skip)]
    pub link: Option<agora_net::LinkConditions>,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: vec!["/ip4/0.0.0.0/tcp/0".to_owned(), "/ip4/0.0.0.0/udp/0/quic-v1".to_owned()],
            bootstrap: Vec::new(),
            external_addresses: Vec::new(),
            relay_server: true,
            relay: RelaySettings::default(),
            mdns: true,
            upnp: true,
            query_timeout_ms: 10_000,
            request_timeout_ms: 10_000,
            catalog_sync: true,
            max_peers: 64,
            link: None,
        }
    }
}

/// What the relay a public node runs allows: enough for peers behind NAT to be
/// found and hole-punched, and for small transfers; not a free proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Reservations held for peers behind NAT at once.
    pub max_reservations: usize,
    /// Circuits relayed at once (in all, and for one peer).
    pub max_circuits: usize,
    /// Circuits relayed at once for one peer.
    pub max_circuits_per_peer: usize,
    /// Bytes one circuit may carry each way.
    pub max_circuit_bytes: u64,
    /// Seconds one circuit may stay open.
    pub max_circuit_secs: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        let limits = agora_net::RelayLimits::default();
        Self {
            max_reservations: limits.max_reservations,
            max_circuits: limits.max_circuits,
            max_circuits_per_peer: limits.max_circuits_per_peer,
            max_circuit_bytes: limits.max_circuit_bytes,
            max_circuit_secs: limits.max_circuit_duration.as_secs(),
        }
    }
}

impl RelaySettings {
    pub(crate) fn to_limits(&self) -> agora_net::RelayLimits {
        agora_net::RelayLimits {
            max_reservations: self.max_reservations,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_bytes: self.max_circuit_bytes,
            max_circuit_duration: Duration::from_secs(self.max_circuit_secs),
        }
    }
}

/// The read cache in front of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Most entries per cache.
    pub max_entries: u64,
    /// Lifetime of cached indexes and manifests, in seconds.
    pub ttl_secs: u64,
    /// Lifetime of cached search results, in seconds.
    pub search_ttl_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            // A literal that always parses.
            api: SocketAddr::from(([127, 0, 0, 1], 7420)),
            max_artifact_size: 256 * 1024 * 1024,
            chunk_size: agora_core::ArtifactInfo::DEFAULT_CHUNK_SIZE,
            cache: CacheSettings::default(),
            network: NetworkSettings::default(),
            transfer: TransferSettings::default(),
            reputation: ReputationSettings::default(),
            storage: StorageSettings::default(),
            cargo: CargoSettings::default(),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { max_entries: 10_000, ttl_secs: 600, search_ttl_secs: 30 }
    }
}

impl CacheSettings {
    pub(crate) fn to_cache_config(&self) -> agora_cache::CacheConfig {
        agora_cache::CacheConfig {
            max_entries: self.max_entries,
            entry_ttl: Duration::from_secs(self.ttl_secs),
            search_ttl: Duration::from_secs(self.search_ttl_secs),
        }
    }
}

impl Config {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: Config = toml::from_str(text)
            .map_err(|error| Error::Config { origin: origin.to_owned(), message: error.to_string() })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|error| Error::io(path, error))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Applies `AGORA_*` variables from `vars` (pass `std::env::vars()`).
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        for (key, value) in vars {
            let invalid = |message: String| Error::Config { origin: format!("environment variable {key}"), message };
            match key.as_str() {
                "AGORA_API" => {
                    self.api = value.parse().map_err(|_| invalid(format!("expected host:port, found `{value}`")))?
                }
                "AGORA_MAX_ARTIFACT_SIZE" => {
                    self.max_artifact_size =
                        value.parse().map_err(|_| invalid(format!("expected a number of bytes, found `{value}`")))?
                }
                _ => {}
            }
        }
        self.validate("the environment")
    }

    /// Checks value ranges.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let invalid = |message: String| Err(Error::Config { origin: origin.to_owned(), message });
        if self.max_artifact_size == 0 {
            return invalid("max_artifact_size must be greater than 0".into());
        }
        if let Err(error) = agora_core::ArtifactHasher::new(self.chunk_size) {
            return invalid(error.to_string());
        }
        if self.cache.max_entries == 0 {
            return invalid("cache.max_entries must be greater than 0".into());
        }
        for (field, addresses) in [
            ("network.listen", &self.network.listen),
            ("network.bootstrap", &self.network.bootstrap),
            ("network.external_addresses", &self.network.external_addresses),
        ] {
            for address in addresses {
                let parsed: agora_net::Multiaddr = address.parse().map_err(|error| Error::Config {
                    origin: origin.to_owned(),
                    message: format!("{field}: `{address}` is not a multiaddr: {error}"),
                })?;
                if field == "network.bootstrap" {
                    agora_net::split_peer(&parsed).map_err(|error| Error::Config {
                        origin: origin.to_owned(),
                        message: format!("{field}: {error}"),
                    })?;
                }
            }
        }
        if self.network.query_timeout_ms == 0 || self.network.request_timeout_ms == 0 {
            return invalid("network timeouts must be greater than 0".into());
        }
        if !(8..=256).contains(&self.network.max_peers) {
            return invalid(format!("network.max_peers must be 8-256, found {}", self.network.max_peers));
        }
        let relay = &self.network.relay;
        if [relay.max_reservations, relay.max_circuits, relay.max_circuits_per_peer].contains(&0)
            || relay.max_circuit_bytes == 0
            || relay.max_circuit_secs == 0
            || relay.max_circuit_secs > u64::from(u32::MAX)
        {
            return invalid("network.relay limits must be greater than 0 (max_circuit_secs at most 4294967295)".into());
        }
        let transfer = &self.transfer;
        if !(1..=32).contains(&transfer.max_providers) || !(1..=64).contains(&transfer.requests_per_provider) {
            return invalid("transfer.max_providers must be 1-32 and transfer.requests_per_provider 1-64".into());
        }
        if transfer.chunk_timeout_ms == 0 {
            return invalid("transfer.chunk_timeout_ms must be greater than 0".into());
        }
        if self.reputation.invalid_threshold == 0 {
            return invalid("reputation.invalid_threshold must be greater than 0".into());
        }
        Ok(())
    }
}

/// The default data directory: the platform's user data directory plus `agora`
/// (`~/.local/share/agora` on Linux), or `./.agora` when there is none.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir().map_or_else(|| PathBuf::from(".agora"), |dir| dir.join("agora"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_then_env() {
        let config = Config::from_toml("max_artifact_size = 1000\n[cache]\nmax_entries = 5\n", "test").unwrap();
        assert_eq!(config.max_artifact_size, 1000);
        assert_eq!(config.cache.max_entries, 5);
        assert_eq!(config.api.to_string(), DEFAULT_API_ADDR);
        let mut config = config;
        config
            .apply_env([("AGORA_API".to_owned(), "127.0.0.1:9999".to_owned()), ("OTHER".to_owned(), "x".to_owned())])
            .unwrap();
        assert_eq!(config.api.port(), 9999);
        assert_eq!(config.max_artifact_size, 1000);
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let error = Config::from_toml("max_artifact_sise = 1", "agora.conf").unwrap_err().to_string();
        assert!(error.contains("agora.conf") && error.contains("max_artifact_sise"), "{error}");
        assert!(Config::from_toml("chunk_size = 1000", "x").is_err());
        let error = Config::default().apply_env([("AGORA_API".to_owned(), "nope".to_owned())]).unwrap_err();
        assert!(error.to_string().contains("AGORA_API"), "{error}");
        let error = Config::from_toml("[network]\nmax_peers = 4\n", "x").unwrap_err().to_string();
        assert!(error.contains("network.max_peers must be 8-256, found 4"), "{error}");
        assert_eq!(Config::from_toml("[network]\nmax_peers = 8\n", "x").unwrap().network.max_peers, 8);
    }
}
