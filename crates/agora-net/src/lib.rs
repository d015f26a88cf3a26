//! Agora's network layer: a libp2p actor.
//!
//! One task owns the `Swarm` (TCP or in-process memory ports, each with Noise +
//! Yamux, optionally under injected [`LinkConditions`]; Kademlia in server mode on
//! `/agora/kad/1.0.0` with inbound records filtered through a [`RecordValidator`];
//! Gossipsub with application validation of the signed records its unsigned
//! messages carry; Identify; Ping; connection limits and trimming of idle
//! connections ([`PeerBudget`]); a block list; request-response protocols for
//! artifact chunks, catalog sync and search fan-out). Everything else talks to it through a
//! cloneable [`NetworkHandle`] and listens to its [`NetworkEvent`]s. With a
//! registry in [`NetworkConfig::metrics`], it records libp2p's swarm, Kademlia,
//! Gossipsub, Identify and Ping metrics; every command it handles runs in a
//! `command` tracing span.
//!
//! This crate never touches SQLite or the file system: the node above decides what
//! to persist and answers requests from its own store.
//!
//! # Example
//!
//! Two network tasks on 127.0.0.1: one stores a signed record in the DHT, the
//! other finds it.
//!
//! ```
//! use std::sync::Arc;
//! use agora_core::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};
//! use agora_net::{NetworkConfig, RecordKey, SignatureValidator, peer_address};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = NetworkConfig::new(SecretKey::generate().to_bytes());
//! config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
//! let (first, _first_events, _) = agora_net::spawn(config, Arc::new(SignatureValidator)).await?;
//! let address = peer_address(&first.status().await?.listen_addrs[0], first.peer_id());
//!
//! let mut config = NetworkConfig::new(SecretKey::generate().to_bytes());
//! config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
//! let (second, _second_events, _) = agora_net::spawn(config, Arc::new(SignatureValidator)).await?;
//! second.dial(address).await?;
//! // Kademlia can route once identify has told each side where the other listens.
//! while first.status().await?.routing_table_size == 0 {
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! }
//!
//! let publisher = Publisher::new(SecretKey::generate());
//! let metadata = PackageMetadata::new("doc".parse()?, agora_core::parse_version("1.0.0")?, "a doc example");
//! let (_, index) = publisher.publish(metadata, ArtifactInfo::compute(b"x", 4096)?, None, 0)?;
//! let key = RecordKey::Index("doc".parse()?);
//! first.put_record(key.clone(), index.to_bytes()).await?;
//! assert_eq!(second.get_record(key).await?, Some(index.to_bytes()));
//! first.shutdown().await;
//! second.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod actor;
mod config;
mod event;
mod handle;
mod link;
mod peers;
mod protocol;
mod reachability;
mod records;

pub use actor::{ANNOUNCE_TOPIC, KAD_PROTOCOL, peer_address, spawn, split_peer};
pub use config::{NetworkConfig, RelayLimits};
pub use event::{AnnouncementId, NetworkEvent, Reply, Verdict};
pub use handle::{ConnectionInfo, LookupStats, NetworkError, NetworkHandle, NetworkStatus, PeerPath, TraversalStatus};
pub use libp2p::{Multiaddr, PeerId};
pub use link::{LinkConditions, MAX_HELD_BYTES, MAX_LATENCY, RETRANSMISSION_PENALTY};
pub use peers::PeerBudget;
pub use protocol::{
    ARTIFACT_PROTOCOL, Announcement, ChunkCodec, ChunkRequest, ChunkResponse, Incoming, MAX_ANNOUNCEMENT,
    MAX_SEARCH_FILTERS, MAX_SEARCH_REQUEST, MAX_SEARCH_RESPONSE, MAX_SEARCH_RESULTS, MAX_SEARCH_TEXT, MAX_SYNC_PAGE,
    MAX_SYNC_RESPONSE, SEARCH_PROTOCOL, SYNC_PROTOCOL, SearchCodec, SearchEntry, SearchRequest, SearchResponse,
    SyncCodec, SyncEntry, SyncRequest, SyncResponse, Wire,
};
pub use reachability::{MAX_RESERVATIONS, Reachability, is_local, is_private, is_relayed, relay_of, single_host};
pub use records::{
    CheckedRecord, MAX_RECORD_SIZE, RecordKey, RecordValidator, Rejection, SignatureValidator, check_record,
    digest_of_provider_key, provider_key,
};
