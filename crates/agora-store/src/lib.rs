//! Agora's storage: the SQLite [`Catalog`] of signed package indexes and manifests
//! with FTS5 search, and the content-addressed [`ArtifactStore`] of artifact files.
//! [`Store`] joins the two for a node's data directory.
//!
//! All SQL lives in this crate, behind typed methods. The API is synchronous and
//! blocks on SQLite and the file system: async callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`). This crate knows nothing of the network.
//!
//! # Example
//!
//! ```
//! use agora_core::{ArtifactData, ArtifactInfo, PackageMetadata, Publication, Publisher, Query, SecretKey};
//! use agora_store::Store;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//!
//! let publisher = Publisher::new(SecretKey::generate());
//! let bytes = b"pretend this is a .tar.gz".to_vec();
//! let artifact = ArtifactInfo::compute(&bytes, ArtifactInfo::DEFAULT_CHUNK_SIZE)?;
//! let metadata = PackageMetadata::new("json-tools".parse()?, agora_core::parse_version("0.1.0")?, "parse json fast");
//! let (manifest, index) = publisher.publish(metadata, artifact, None, 1_700_000_000)?;
//! store.publish(&Publication { manifest, index, artifact: ArtifactData::Bytes(bytes.into()) }, 1_700_000_000)?;
//!
//! let results = store.catalog().search(&Query::new("json"))?;
//! assert_eq!(results.hits[0].name.as_str(), "json-tools");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod artifacts;
mod catalog;
mod db;
mod error;
mod peers;
mod reputation;
mod search;
mod storage;
mod store;
mod sync;

pub use artifacts::{ArtifactStore, StoredArtifact};
pub use catalog::{Catalog, CatalogStats};
pub use db::SCHEMA_VERSION;
pub use error::{Error, Result};
pub use peers::KnownPeer;
pub use reputation::{Outcome, PeerRecord};
pub use storage::StorageUsage;
pub use store::Store;
pub use sync::{CatalogEntry, Ingested};
