//! What the network tells the node.

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId, gossipsub};

use crate::protocol::{ChunkRequest, ChunkResponse, SearchRequest, SearchResponse, SyncRequest, SyncResponse};
use crate::records::RecordKey;

/// An event from the network task. The node decides what to persist; it must
/// answer every announcement ([`crate::NetworkHandle::report_announcement`]) and
/// every request (`respond_*`), or the peer sees a failure.
#[derive(Debug)]
pub enum NetworkEvent {
    /// The first connection to `peer` was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The remote address of the connection.
        address: Multiaddr,
        /// Whether we dialed (so `address` is dialable).
        dialer: bool,
    },
    /// The last connection to `peer` closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer told us where it listens (identify).
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its listen addresses.
        listen_addrs: Vec<Multiaddr>,
    },
    /// A gossip announcement awaiting validation.
    Announcement {
        /// Pass back to `report_announcement`.
        id: AnnouncementId,
        /// The announcement bytes (`Announcement` wire form).
        data: Vec<u8>,
    },
    /// A peer asks for an artifact chunk.
    ChunkRequested {
        /// The asking peer.
        peer: PeerId,
        /// What it asks for.
        request: ChunkRequest,
        /// Pass back to `respond_chunk`.
        reply: Reply<ChunkResponse>,
    },
    /// A peer asks for a page of our catalog.
    SyncRequested {
        /// The asking peer.
        peer: PeerId,
        /// What it asks for.
        request: SyncRequest,
        /// Pass back to `respond_sync`.
        reply: Reply<SyncResponse>,
    },
    /// A peer asks us to search our catalog.
    SearchRequested {
        /// The asking peer.
        peer: PeerId,
        /// What it looks for.
        request: SearchRequest,
        /// Pass back to `respond_search`.
        reply: Reply<SearchResponse>,
    },
    /// A peer asked us to store a record; it passed the validator. The node
    /// decides: if it accepts the record, it calls `store_record`.
    RecordReceived {
        /// The peer that sent it.
        peer: PeerId,
        /// Its key.
        key: RecordKey,
        /// Its value.
        value: Vec<u8>,
    },
    /// A peer sent something invalid (bad record, garbage on a protocol).
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}

/// Identifies a gossip message awaiting validation.
#[derive(Debug, Clone)]
pub struct AnnouncementId {
    pub(crate) message_id: gossipsub::MessageId,
    pub(crate) propagation_source: PeerId,
}

impl AnnouncementId {
    /// The peer that forwarded the message to us.
    pub fn propagation_source(&self) -> PeerId {
        self.propagation_source
    }
}

/// The way back to a peer waiting for a response.
#[derive(Debug)]
pub struct Reply<T>(pub(crate) ResponseChannel<T>);

/// How the node judged an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: store and forward.
    Accept,
    /// Invalid: drop and penalise the sender.
    Reject,
    /// Not useful (duplicate, overloaded): drop without penalty.
    Ignore,
}
