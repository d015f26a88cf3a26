//! [`NodeBuilder`]: settings in order (embedded defaults, the config file, the
//! environment, the builder's overrides), then the data directory and its lock,
//! the keys, the store, the node's services and its network, in that order.

use std::path::PathBuf;
use std::sync::Arc;

use agora_core::SecretKey;
use agora_store::Store;

use super::{IDENTITY_KEY, Node, PUBLISHER_KEY};
use crate::clock::{Clock, SystemClock};
use crate::config::CONFIG_FILE;
use crate::lock::DataDirLock;
use crate::services::Services;
use crate::{Config, Error, Result, keys};

/// Builds a [`Node`]. Settings are applied in order: embedded defaults, the config
/// file, the environment, then the builder's explicit overrides (the CLI's flags).
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    env: Option<Vec<(String, String)>>,
    overrides: Vec<Override>,
    clock: Option<Arc<dyn Clock>>,
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

    /// Uses `clock` instead of the system clock (for tests that move time by
    /// hand: cooldowns, bans, eviction order; transfer stalls are judged on it, with
    /// a real-time backstop of twice the chunk timeout).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Creates the data directory (owner-only), locks it (one node per data
    /// dir: a second one fails at once with [`Error::DataDirLocked`], before it
    /// touches keys or store), loads or creates the keys, opens the store, builds
    /// the node's services and, when enabled, starts the network. The lock is
    /// held until the last handle of the node is dropped. Blocking file work runs
    /// off the async workers.
    pub async fn build(self) -> Result<Node> {
        let config = self.resolve_config()?;
        let data_dir = self.data_dir.unwrap_or_else(crate::default_data_dir);
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let opened = {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || -> Result<(DataDirLock, SecretKey, SecretKey, Store)> {
                keys::create_private_dir(&data_dir)?;
                let lock = DataDirLock::acquire(&data_dir)?;
                let identity = keys::load_or_create(&data_dir.join(IDENTITY_KEY))?;
                let publisher = keys::load_or_create(&data_dir.join(PUBLISHER_KEY))?;
                let store = Store::open(&data_dir.join("store"))?;
                Ok((lock, identity, publisher, store))
            })
            .await
            .map_err(crate::blocking::join_error)??
        };
        let (lock, identity, publisher, store) = opened;
        tracing::info!(data_dir = %data_dir.display(), publisher = %publisher.public_key(), "node opened");
        let services = Services::new(data_dir, config, store, publisher, clock).await?;
        let network = if services.config.network.enabled {
            crate::transfer::prepare(&services).await?;
            match crate::network::start(&services, identity.to_bytes()).await {
                Ok(network) => Some(network),
                Err(error) => {
                    services.shutdown().await;
                    return Err(error);
                }
            }
        } else {
            None
        };
        Ok(Node::new(services, network, identity, lock))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    async fn offline(dir: &std::path::Path) -> Result<Node> {
        Node::builder().data_dir(dir).offline().build().await
    }

    #[tokio::test]
    async fn one_node_per_data_dir_until_it_is_shut_down_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = offline(dir.path()).await.unwrap();
        let error = offline(dir.path()).await.expect_err("a second node on the same data dir");
        assert!(matches!(&error, Error::DataDirLocked { data_dir, .. } if data_dir == dir.path()), "{error:?}");
        assert!(error.to_string().ends_with("; stop it first"), "{error}");
        // Shut down but still held: the store stays usable, so the dir stays locked.
        first.shutdown().await;
        let error = offline(dir.path()).await.expect_err("the dir is locked until the node is dropped");
        assert!(matches!(error, Error::DataDirLocked { .. }), "{error:?}");
        let identity = first.identity();
        drop(first);
        let again = offline(dir.path()).await.expect("a node builds once the first is dropped");
        assert_eq!(again.identity(), identity, "same data dir, same identity");
        again.shutdown().await;
    }

    #[tokio::test]
    async fn a_locked_data_dir_is_refused_before_keys_or_store_are_touched() {
        let dir = tempfile::tempdir().unwrap();
        keys::create_private_dir(dir.path()).unwrap();
        let _held = DataDirLock::acquire(dir.path()).unwrap();
        let error = offline(dir.path()).await.expect_err("a locked data dir");
        assert!(matches!(error, Error::DataDirLocked { .. }), "{error:?}");
        let mut left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, [crate::lock::LOCK_FILE], "the refused node created files");
    }
}
