//! Agora's storage: a node's data directory, opened once as a [`Store`] and used
//! through four handles that share its SQLite database:
//!
//! - [`Store::packages`] ([`Packages`]): signed package indexes and manifests,
//!   FTS5 search, and the sync paths that ingest records from peers and page the
//!   catalog out to them;
//! - [`Store::artifacts`] ([`Artifacts`]): the content-addressed artifact files,
//!   the rows saying which of them this node holds, and verifying readers;
//! - [`Store::peers`] ([`Peers`]): the peers seen, their addresses and reputation;
//! - [`Store::storage`] ([`Storage`]): the storage policy: pins, usage and LRU
//!   eviction of cached artifacts.
//!
//! [`Store::publish`] writes a local publish's artifact file and package rows;
//! [`Store::open_artifact`] finds a version's manifest and a reader over its
//! artifact.
//!
//! **Change events.** Every committed write that changes packages or manifests
//! (publish, a yank that changes a version, an ingest that stores something) is
//! reported once, after its commit and in commit order, to the
//! [`CatalogObserver`]s given to [`Store::subscribe`], as a list of
//! [`CatalogChange`]s. The row writers record the changes themselves, so no
//! writer can forget to report one; a failed or rolled-back write reports
//! nothing.
//!
//! **Readers and leases.** [`Artifacts::open`] returns an [`ArtifactReader`]
//! ([`std::io::Read`], or one chunk at a time) that verifies every chunk before
//! handing out its bytes and the whole file at its end, so corruption on disk is
//! an error and never a wrong byte. A reader holds a [`Lease`] on its artifact:
//! [`Storage::evict`] skips leased artifacts, so a file is never deleted while it
//! is read. Serve through readers, not through [`Artifacts::path_of`].
//!
//! **Crashes.** A crash (even `kill -9`) leaves no partial state visible: rows
//! change in one transaction, files are renamed into place complete, and opening
//! the store removes temp files and artifact files without a row. [`crash`] is
//! the test hook that kills the process at named points to check it.
//!
//! All SQL lives in this crate, behind typed methods. The API is synchronous and
//! blocks on SQLite and the file system: async callers run it on a blocking thread
//! (`tokio::task::spawn_blocking`). This crate knows nothing of the network.
//!
//! # Example
//!
//! ```
//! use std::io::Read;
//! use std::sync::{Arc, Mutex};
//!
//! use agora_core::{ArtifactData, ArtifactInfo, PackageMetadata, Publication, Publisher, Query, SecretKey};
//! use agora_store::{CatalogChange, CatalogObserver, ChangeCause, Store};
//!
//! /// Remembers the names of the packages that changed.
//! #[derive(Debug, Default)]
//! struct Arrivals(Mutex<Vec<String>>);
//!
//! impl CatalogObserver for Arrivals {
//!     fn changed(&self, changes: &[CatalogChange]) {
//!         let mut names = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
//!         names.extend(changes.iter().filter(|c| c.cause == ChangeCause::Published).map(|c| c.name.to_string()));
//!     }
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let arrivals = Arc::new(Arrivals::default());
//! store.subscribe(arrivals.clone())?;
//!
//! let publisher = Publisher::new(SecretKey::generate());
//! let bytes = b"pretend this is a .tar.gz".to_vec();
//! let artifact = ArtifactInfo::compute(&bytes, ArtifactInfo::DEFAULT_CHUNK_SIZE)?;
//! let version = agora_core::parse_version("0.1.0")?;
//! let metadata = PackageMetadata::new("json-tools".parse()?, version.clone(), "parse json fast");
//! let (manifest, index) = publisher.publish(metadata, artifact, None, 1_700_000_000)?;
//! store.publish(&Publication { manifest, index, artifact: ArtifactData::Bytes(bytes.clone().into()) }, 1_700_000_000)?;
//! assert_eq!(*arrivals.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), ["json-tools"]);
//!
//! let results = store.packages().search(&Query::new("json"))?;
//! assert_eq!(results.hits[0].name.as_str(), "json-tools");
//!
//! let Some((_manifest, Some(mut reader))) = store.open_artifact(&results.hits[0].name, &version)? else {
//!     panic!("the artifact was just published");
//! };
//! let mut read = Vec::new();
//! reader.read_to_end(&mut read)?;
//! assert_eq!(read, bytes);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address_book;
mod artifacts;
mod changes;
mod claims;
pub mod crash;
mod db;
mod error;
mod ingested;
mod lease;
mod packages;
mod peers;
mod reader;
mod reputation;
mod rows;
mod search;
mod storage;
mod store;
mod sync;

pub use address_book::KnownPeer;
pub use artifacts::{Artifacts, StoredArtifact};
pub use changes::{CatalogChange, CatalogObserver, ChangeCause};
pub use claims::MAX_EQUIVOCATIONS;
pub use db::SCHEMA_VERSION;
pub use error::{Error, Result};
pub use ingested::{CatalogEntry, Ingested};
pub use lease::Lease;
pub use packages::{CatalogStats, Packages};
pub use peers::Peers;
pub use reader::ArtifactReader;
pub use reputation::{Outcome, PeerRecord};
pub use storage::{Storage, StorageUsage};
pub use store::Store;
