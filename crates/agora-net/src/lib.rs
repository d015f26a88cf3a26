//! Agora's network layer: a libp2p actor.
//!
//! One task owns the `Swarm` (TCP + Noise + Yamux; Kademlia in server mode on
//! `/agora/kad/1.0.0` with inbound records filtered through a [`RecordValidator`];
//! Gossipsub with signed messages and application validation; Identify; Ping;
//! connection limits; a block list; request-response protocols for artifact chunks
//! and catalog sync). Everything else talks to it through a cloneable
//! [`NetworkHandle`] and listens to its [`NetworkEvent`]s.
//!
//! This crate never touches SQLite or the file system: the node above decides what
//! to persist and answers requests from its own store.

mod actor;
mod config;
mod event;
mod handle;
mod protocol;
mod records;

pub use actor::{ANNOUNCE_TOPIC, KAD_PROTOCOL, peer_address, spawn, split_peer};
pub use config::NetworkConfig;
pub use event::{AnnouncementId, NetworkEvent, Reply, Verdict};
pub use handle::{NetworkError, NetworkHandle, NetworkStatus};
pub use libp2p::{Multiaddr, PeerId};
pub use protocol::{
    ARTIFACT_PROTOCOL, Announcement, ChunkCodec, ChunkRequest, ChunkResponse, Incoming, MAX_ANNOUNCEMENT,
    MAX_SYNC_PAGE, MAX_SYNC_RESPONSE, SYNC_PROTOCOL, SyncCodec, SyncEntry, SyncRequest, SyncResponse, Wire,
};
pub use records::{
    MAX_RECORD_SIZE, RecordKey, RecordValidator, SignatureValidator, digest_of_provider_key, provider_key,
};
