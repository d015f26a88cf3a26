//! Agora: a decentralized package registry.
//!
//! This is the facade crate. It composes the domain model (`agora-core`), the
//! SQLite store (`agora-store`), the read cache (`agora-cache`) and the libp2p
//! network (`agora-net`) into a [`Node`]: the node's services (store, cache,
//! reputation, record validator, catalog writer, clock, metrics, tracked tasks)
//! plus, when enabled, its network. It also offers [`LocalRegistry`] (the store
//! as a [`Registry`]) and the [`archive`] functions that turn package
//! directories into deterministic archives and back, and the [`cargo`] functions
//! that turn cargo's publish requests and `.crate` files into crate
//! publications and signed manifests into cargo's index lines.
//!
//! Artifacts come out of a registry as [`ArtifactReader`]s that verify every
//! chunk as it is read ([`export`] writes one to a file); [`Node::fetch`]
//! streams a download's progress; [`Node::search_network`] searches the catalogs
//! of the best peers too and streams the hits through a [`QueryHandle`]
//! ([`QueryConfig`] bounds it); query metrics and libp2p's share one Prometheus
//! registry ([`Node::encode_metrics`]). Errors carry an [`ErrorKind`].
//! [`Node::shutdown`] stops every task the node started and waits for them. The
//! `agora` binary (crate `agora-cli`) is a thin shell around this crate.
//!
//! It is not an HTTP server or a CLI; those live in `agora-cli`.
//!
//! # Example
//!
//! ```
//! use agora::{archive, ArtifactData, Node, Query, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let node = Node::builder()
//!     .data_dir(dir.path().join("node"))
//!     .listen(["/ip4/127.0.0.1/tcp/0"]) // peer-to-peer; other nodes bootstrap from here
//!     .build()
//!     .await?;
//!
//! // Write a package skeleton, pack it, publish it.
//! let package = dir.path().join("hello");
//! archive::write_skeleton(&package, &"hello".parse()?)?;
//! let (_, bytes) = archive::pack(&package, node.config().max_artifact_size)?;
//! let published = node.publish_archive(ArtifactData::Bytes(bytes.into())).await?;
//! assert!(published.created);
//!
//! let hits = node.search(&Query::new("hello")).await?.hits;
//! assert_eq!(hits[0].name.as_str(), "hello");
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod archive;
mod blocking;
mod bounded;
pub mod cargo;
mod clock;
mod config;
mod error;
mod export;
mod keys;
mod local;
mod lock;
mod metrics;
mod network;
mod node;
mod reputation;
mod search;
mod services;
mod transfer;
mod validator;
mod writer;

pub use agora_cache::{CacheConfig, CacheStats, CachedRegistry};
pub use agora_core::{
    ArtifactData, ArtifactHasher, ArtifactInfo, ArtifactReader, Digest, ErrorKind, IndexChange, PackageIndex,
    PackageMetadata, PackageName, PublicKey, Publication, Publisher, Query, Registry, RegistryMetadata, SearchHit,
    SearchResults, SearchScope, SecretKey, SignedManifest, SignedPackageIndex, Version, VersionEntry, VersionReq,
    parse_version,
};
/// The network crate, for peer ids, multiaddrs and the handle.
pub use agora_net as net;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    CacheSettings, CargoSettings, Config, DEFAULT_API_ADDR, NetworkSettings, RelaySettings, ReputationSettings,
    StorageSettings, TransferSettings, default_data_dir,
};
pub use error::{Error, Result};
pub use export::{Exported, export};
pub use local::LocalRegistry;
pub use metrics::{METRICS_CONTENT_TYPE, QueryMetricsStatus, QueryStats};
pub use network::NetworkSummary;
#[doc(hidden)]
pub use node::inspect_archive;
pub use node::{
    CacheCounters, CrateIndexFile, CrateView, Fetch, KeyRotation, Node, NodeBuilder, NodeStatus, PeerConnection,
    PeerInfo, Published, StorageStatus, api_token_path, identity_proof_message,
};
pub use reputation::{PeerStanding, score, standing};
pub use search::{QueryConfig, QueryHandle};
pub use transfer::{ProviderProgress, TransferProgress, TransferState};

/// The domain model crate, for what the re-exports above leave out.
pub use agora_core as core;
/// The store crate.
pub use agora_store as store;
