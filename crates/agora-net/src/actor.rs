//! The network task: the one owner of the libp2p `Swarm`.
//!
//! A `select!` loop handles swarm events, commands from [`NetworkHandle`]s and a
//! periodic sweep. Every operation awaiting an answer sits in a `pending_*` map
//! keyed by the id libp2p returned, with a deadline; the sweep fails entries whose
//! deadline passed (and finishes their DHT queries). Maps are bounded by
//! `max_pending`. Nothing here blocks: no disk, no database — the node does that
//! with the events this task emits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agora_core::Digest;
use futures::StreamExt;
use libp2p::core::Transport;
use libp2p::core::transport::{ListenerId, MemoryTransport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    kad, mdns, noise, ping, relay, tcp, upnp, yamux,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::NetworkConfig;
use crate::event::{AnnouncementId, NetworkEvent, Reply, Verdict};
use crate::handle::{Command, LookupStats, NetworkError, NetworkHandle, NetworkStatus, Responder};
use crate::link::Shaped;
use crate::peers::Peers;
use crate::protocol::{
    ARTIFACT_PROTOCOL, ChunkCodec, ChunkResponse, Incoming, MAX_ANNOUNCEMENT, SEARCH_PROTOCOL, SYNC_PROTOCOL,
    SearchCodec, SearchResponse, SyncCodec, SyncResponse,
};
use crate::reachability::single_host;
use crate::records::{
    MAX_RECORD_SIZE, RecordKey, RecordValidator, Rejection, check_trusted_record, digest_of_provider_key, provider_key,
};

/// Kademlia protocol name.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1.0.0");
/// Identify protocol version string.
const IDENTIFY_PROTOCOL: &str = "/agora/id/1.0.0";
/// The announcement topic.
pub const ANNOUNCE_TOPIC: &str = "agora/v1/announce";
/// Valid copies that end a record lookup early.
const GET_QUORUM: usize = 3;
/// Providers that end a provider lookup early.
const PROVIDERS_WANTED: usize = 8;
/// Concurrent search streams on one connection (request-response's default is 100).
const SEARCH_STREAMS: usize = 256;
/// How long a dial and its upgrade (Noise, Yamux) may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How often stale pending entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

mod traversal;
use traversal::Traversal;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    artifacts: request_response::Behaviour<ChunkCodec>,
    sync: request_response::Behaviour<SyncCodec>,
    search: request_response::Behaviour<SearchCodec>,
    /// Relays for others while this node is publicly reachable.
    relay: relay::Behaviour,
    /// Reserves slots on relays, and dials through them.
    relay_client: relay::client::Behaviour,
    /// Upgrades relayed connections to direct ones (hole punching).
    dcutr: dcutr::Behaviour,
    /// Asks peers to dial back candidate addresses.
    autonat_client: autonat::v2::client::Behaviour,
    /// Dials back for peers that ask.
    autonat_server: autonat::v2::server::Behaviour,
    /// LAN discovery; off on a single-host network or when configured off.
    mdns: Toggle<mdns::tokio::Behaviour>,
    /// Port mapping on the router; off on a single-host network or when configured off.
    upnp: Toggle<upnp::tokio::Behaviour>,
}

/// Starts the network: builds the swarm, listens, dials the bootstrap peers, and
/// spawns the task. Returns the handle, the event stream, and the task.
pub async fn spawn(
    config: NetworkConfig,
    validator: Arc<dyn RecordValidator>,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>, JoinHandle<()>), NetworkError> {
    let keypair = Keypair::ed25519_from_bytes(config.identity_seed)
        .map_err(|error| NetworkError::Listen(format!("bad identity seed: {error}")))?;
    let peer_id = keypair.public().to_peer_id();
    let local_only = single_host(&config.listen);
    let mut swarm = build_swarm(&keypair, &config, local_only)?;
    let (metrics, traversal_metrics) = match config.metrics.as_ref() {
        Some(registry) => {
            let mut registry = registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (Some(Metrics::new(&mut registry)), Some(traversal::TraversalMetrics::register(&mut registry)))
        }
        None => (None, None),
    };
    let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|error| NetworkError::Listen(format!("subscribing to {ANNOUNCE_TOPIC}: {error}")))?;

    let mut bootstrap = Vec::new();
    for address in &config.bootstrap {
        let (peer, bare) = split_peer(address)?;
        if peer == peer_id {
            return Err(NetworkError::InvalidAddress {
                address: address.to_string(),
                reason: "that is this node's own peer id".into(),
            });
        }
        bootstrap.push((peer, bare, address.clone()));
    }

    let (commands, command_receiver) = mpsc::channel(config.command_buffer);
    let (event_sender, events) = mpsc::channel(config.event_buffer);
    let call_timeout = config.query_timeout.max(config.request_timeout) + Duration::from_secs(5);
    let connections_established = Arc::new(AtomicU64::new(0));
    let handle =
        NetworkHandle { commands, peer_id, call_timeout, connections_established: connections_established.clone() };
    let mut actor = Actor {
        swarm,
        topic,
        validator,
        events: event_sender,
        max_pending: config.max_pending,
        request_timeout: config.request_timeout,
        query_timeout: config.query_timeout,
        traversal: Traversal::new(local_only, config.relay_server, traversal_metrics),
        metrics,
        peers: Peers::new(config.peers),
        connections_established,
        pending_listens: HashMap::new(),
        pending_dials: HashMap::new(),
        pending_puts: HashMap::new(),
        pending_gets: HashMap::new(),
        pending_providing: HashMap::new(),
        pending_providers: HashMap::new(),
        pending_chunks: HashMap::new(),
        pending_syncs: HashMap::new(),
        pending_searches: HashMap::new(),
    };
    for (peer, bare, _) in &bootstrap {
        actor.swarm.behaviour_mut().kad.add_address(peer, bare.clone());
    }
    for address in config.external_addresses {
        actor.confirm_external(address);
    }
    let task = tokio::spawn(actor.run(command_receiver));

    for address in config.listen {
        handle.listen(address).await?;
    }
    for (_, _, address) in bootstrap {
        let network = handle.clone();
        // Bootstrap peers may be down; the node starts anyway and logs it.
        tokio::spawn(async move {
            match network.dial(address.clone()).await {
                Ok(peer) => tracing::info!(%peer, %address, "connected to bootstrap peer"),
                Err(error) => tracing::warn!(%address, %error, "bootstrap peer unreachable"),
            }
        });
    }
    Ok((handle, events, task))
}

/// `address` with `/p2p/<peer>` appended (unless it already ends in one): the form
/// other nodes bootstrap from.
pub fn peer_address(address: &Multiaddr, peer: PeerId) -> Multiaddr {
    match address.iter().last() {
        Some(Protocol::P2p(_)) => address.clone(),
        _ => address.clone().with(Protocol::P2p(peer)),
    }
}

/// Splits `/…/p2p/<id>` into the peer id and the address without it.
pub fn split_peer(address: &Multiaddr) -> Result<(PeerId, Multiaddr), NetworkError> {
    let mut bare = address.clone();
    match bare.pop() {
        Some(Protocol::P2p(peer)) => Ok((peer, bare)),
        _ => Err(NetworkError::InvalidAddress {
            address: address.to_string(),
            reason: "a peer address must end in /p2p/<peer id>".into(),
        }),
    }
}

/// The swarm for `config`; `local_only` (every listen address on loopback or in
/// memory) leaves mDNS and UPnP out.
fn build_swarm(keypair: &Keypair, config: &NetworkConfig, local_only: bool) -> Result<Swarm<Behaviour>, NetworkError> {
    let peer_id = keypair.public().to_peer_id();
    let build_error = |error: String| NetworkError::Listen(format!("building the swarm: {error}"));
    let gossip_config = gossipsub::ConfigBuilder::default()
        // Announcements carry records their publishers signed, and strikes go to
        // the forwarding peer (authenticated by Noise), so gossipsub's own message
        // signature adds nothing: messages are unsigned (as in Ethereum's
        // consensus gossip), which saves a signature per publish and an ed25519
        // verification per message per hop (`cargo xtask bench gossip`).
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(MAX_ANNOUNCEMENT + 4096)
        .message_id_fn(|message: &gossipsub::Message| gossipsub::MessageId::from(Digest::of(&message.data).to_hex()))
        .build()
        .map_err(|error| build_error(error.to_string()))?;
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_max_packet_size(2 * MAX_RECORD_SIZE);
    kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
    kad_config.set_query_timeout(config.query_timeout);
    kad_config.set_periodic_bootstrap_interval(Some(config.routing_refresh));
    let store_config = MemoryStoreConfig {
        max_records: 1_000_000,
        max_value_bytes: MAX_RECORD_SIZE,
        max_provided_keys: 1_000_000,
        max_providers_per_key: 20,
    };
    let request_config = request_response::Config::default().with_request_timeout(config.request_timeout);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(64))
        .with_max_pending_outgoing(Some(64));

    let link = config.link;
    let relay_limits = config.relay_limits;
    let relay_config = relay::Config {
        max_reservations: relay_limits.max_reservations,
        max_circuits: relay_limits.max_circuits,
        max_circuits_per_peer: relay_limits.max_circuits_per_peer,
        max_circuit_bytes: relay_limits.max_circuit_bytes,
        max_circuit_duration: relay_limits.max_circuit_duration,
        ..relay::Config::default()
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_quic()
        // TCP and in-process memory ports (`/memory/<n>`), each connection shaped by
        // `link` below Noise, then Noise and Yamux as `with_tcp` would set them up.
        // QUIC brings its own encryption and multiplexing and is never shaped.
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .or_transport(MemoryTransport::new())
                .map(move |stream, _| Shaped::new(stream, link))
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .map_err(|error| build_error(error.to_string()))?
        // `/dns4/…` and `/dns/…` addresses (in `--bootstrap`), from the system's resolver settings.
        .with_dns()
        .map_err(|error| build_error(format!("reading the system's DNS settings: {error}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|error| build_error(error.to_string()))?
        .with_behaviour(|key, relay_client| {
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::with_config(peer_id, store_config), kad_config);
            // A client until an address is confirmed (see `reachability`).
            kad.set_mode(Some(kad::Mode::Client));
            let mut relay = relay::Behaviour::new(peer_id, relay_config);
            relay.set_status(Some(relay::Status::Disable));
            let mdns = match config.mdns && !local_only {
                true => Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?),
                false => None,
            };
            let upnp = (config.upnp && !local_only).then(upnp::tokio::Behaviour::default);
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(limits),
                kad,
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?,
                // Identify announces only confirmed external addresses, never
                // bare listen addresses (private ones included).
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                        .with_hide_listen_addrs(true)
                        .with_push_listen_addr_updates(true),
                ),
                ping: ping::Behaviour::default(),
                artifacts: request_response::Behaviour::with_codec(
                    ChunkCodec::default(),
                    [(ARTIFACT_PROTOCOL, ProtocolSupport::Full)],
                    request_config.clone(),
                ),
                sync: request_response::Behaviour::with_codec(
                    SyncCodec::default(),
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_config.clone(),
                ),
                // Searches fan out from many queries at once: more streams per
                // connection than the default 100 (yamux allows 512 in all).
                search: request_response::Behaviour::with_codec(
                    SearchCodec::default(),
                    [(SEARCH_PROTOCOL, ProtocolSupport::Full)],
                    request_config.with_max_concurrent_streams(SEARCH_STREAMS),
                ),
                relay,
                relay_client,
                dcutr: dcutr::Behaviour::new(peer_id),
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
                mdns: Toggle::from(mdns),
                upnp: Toggle::from(upnp),
            })
        })
        .map_err(|error| build_error(error.to_string()))?
        .with_swarm_config(|swarm_config| swarm_config.with_idle_connection_timeout(config.idle_connection_timeout))
        // Shorter than the 10 s AutoNAT v2 gives a dial-back: behind a router that
        // drops unsolicited packets (rather than refusing them) the dial-back must
        // fail before the request times out, or the probe ends with no verdict and
        // the node never learns it is private.
        .with_connection_timeout(CONNECTION_TIMEOUT)
        .build();
    Ok(swarm)
}

struct Pending<T> {
    deadline: Instant,
    reply: Responder<T>,
}

impl<T> Pending<T> {
    fn new(timeout: Duration, reply: Responder<T>) -> Self {
        Self { deadline: Instant::now() + timeout, reply }
    }
}

struct RecordLookup {
    key: RecordKey,
    best: Option<(u64, Vec<u8>)>,
    valid: usize,
    /// Kademlia's statistics as of the latest progress.
    stats: LookupStats,
    pending: Pending<(Option<Vec<u8>>, LookupStats)>,
}

struct ProviderLookup {
    found: HashSet<PeerId>,
    pending: Pending<Vec<PeerId>>,
}

struct Actor {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    validator: Arc<dyn RecordValidator>,
    events: mpsc::Sender<NetworkEvent>,
    max_pending: usize,
    request_timeout: Duration,
    query_timeout: Duration,
    /// Reachability, relays, hole punching, open connections.
    traversal: Traversal,
    /// libp2p's swarm and protocol metrics, when the node asked for them.
    metrics: Option<Metrics>,
    /// Connected peers, their last use, and which to trim.
    peers: Peers,
    /// Shared with every [`NetworkHandle`]: connections established so far.
    connections_established: Arc<AtomicU64>,
    pending_listens: HashMap<ListenerId, Pending<Multiaddr>>,
    pending_dials: HashMap<ConnectionId, Pending<PeerId>>,
    pending_puts: HashMap<kad::QueryId, Pending<()>>,
    pending_gets: HashMap<kad::QueryId, RecordLookup>,
    pending_providing: HashMap<kad::QueryId, Pending<()>>,
    pending_providers: HashMap<kad::QueryId, ProviderLookup>,
    pending_chunks: HashMap<OutboundRequestId, Pending<ChunkResponse>>,
    pending_syncs: HashMap<OutboundRequestId, Pending<SyncResponse>>,
    pending_searches: HashMap<OutboundRequestId, Pending<SearchResponse>>,
}

impl Actor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // The swarm's stream is not part of tokio's cooperative budget: under a
            // steady stream of events this loop would never return to the scheduler,
            // starving other tasks on the worker (timers included). Spending a unit of
            // budget per turn makes it yield once the budget is gone.
            tokio::task::coop::consume_budget().await;
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => {
                        let span = tracing::debug_span!("command", command = command.name());
                        let _entered = span.enter();
                        self.on_command(command);
                    }
                },
                _ = sweep.tick() => self.sweep(),
            }
        }
        tracing::info!(peer_id = %self.swarm.local_peer_id(), "network task stopped");
    }

    /// Hands an event to the node without waiting; on a full queue the event comes
    /// back so the caller can answer for it (boxed: events are large).
    fn emit(&self, event: NetworkEvent) -> Result<(), Box<NetworkEvent>> {
        match self.events.try_send(event) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event)) => {
                tracing::warn!("node event queue full or closed; dropping a network event");
                Err(Box::new(event))
            }
        }
    }

    fn misbehaved(&self, peer: PeerId, reason: String) {
        tracing::warn!(%peer, %reason, "peer misbehaved");
        let _ = self.emit(NetworkEvent::PeerMisbehaved { peer, reason });
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Listen { address, reply } => {
                if self.pending_listens.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("listens")));
                    return;
                }
                match self.swarm.listen_on(address.clone()) {
                    Ok(id) => {
                        self.pending_listens.insert(id, Pending::new(self.request_timeout, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(NetworkError::Listen(format!("{address}: {error}"))));
                    }
                }
            }
            Command::Dial { address, reply } => {
                let (peer, bare) = match split_peer(&address) {
                    Ok(split) => split,
                    Err(error) => {
                        let _ = reply.send(Err(error));
                        return;
                    }
                };
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err(NetworkError::InvalidAddress {
                        address: address.to_string(),
                        reason: "that is this node's own peer id".into(),
                    }));
                    return;
                }
                if self.peers.contains(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                if self.pending_dials.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("dials")));
                    return;
                }
                self.swarm.behaviour_mut().kad.add_address(&peer, bare.clone());
                let opts = DialOpts::peer_id(peer).addresses(vec![bare]).build();
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(connection, Pending::new(self.request_timeout, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(NetworkError::Dial(error.to_string())));
                    }
                }
            }
            Command::PutRecord { key, value, reply } => {
                if self.pending_puts.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("record puts")));
                    return;
                }
                let record = kad::Record::new(key.to_kad(), value);
                match self.swarm.behaviour_mut().kad.put_record(record, kad::Quorum::One) {
                    Ok(id) => {
                        self.pending_puts.insert(id, Pending::new(self.query_timeout, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(NetworkError::Dht(format!("storing {key} locally: {error:?}"))));
                    }
                }
            }
            Command::GetRecord { key, reply } => {
                if self.pending_gets.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("record lookups")));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_record(key.to_kad());
                let lookup = RecordLookup {
                    key,
                    best: None,
                    valid: 0,
                    stats: LookupStats::default(),
                    pending: Pending::new(self.query_timeout, reply),
                };
                self.pending_gets.insert(id, lookup);
            }
            Command::StartProviding { digest, reply } => {
                if self.pending_providing.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("provider announcements")));
                    return;
                }
                match self.swarm.behaviour_mut().kad.start_providing(provider_key(&digest)) {
                    Ok(id) => {
                        self.pending_providing.insert(id, Pending::new(self.query_timeout, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(NetworkError::Dht(format!("providing {digest}: {error:?}"))));
                    }
                }
            }
            Command::GetProviders { digest, reply } => {
                if self.pending_providers.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("provider lookups")));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_providers(provider_key(&digest));
                let lookup = ProviderLookup { found: HashSet::new(), pending: Pending::new(self.query_timeout, reply) };
                self.pending_providers.insert(id, lookup);
            }
            Command::RequestChunk { peer, request, reply } => {
                if self.pending_chunks.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("chunk requests")));
                    return;
                }
                self.peers.used(&peer, Instant::now());
                let id = self.swarm.behaviour_mut().artifacts.send_request(&peer, Incoming::Valid(request));
                self.pending_chunks.insert(id, Pending::new(self.request_timeout + Duration::from_secs(1), reply));
            }
            Command::RespondChunk { reply, response } => {
                if self.swarm.behaviour_mut().artifacts.send_response(reply.0, response).is_err() {
                    tracing::debug!("chunk response dropped: the requester went away");
                }
            }
            Command::RequestSync { peer, request, reply } => {
                if self.pending_syncs.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("sync requests")));
                    return;
                }
                self.peers.used(&peer, Instant::now());
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, Incoming::Valid(request));
                self.pending_syncs.insert(id, Pending::new(self.request_timeout + Duration::from_secs(1), reply));
            }
            Command::RespondSync { reply, response } => {
                if self.swarm.behaviour_mut().sync.send_response(reply.0, response).is_err() {
                    tracing::debug!("sync response dropped: the requester went away");
                }
            }
            Command::RequestSearch { peer, request, reply } => {
                if self.pending_searches.len() >= self.max_pending {
                    let _ = reply.send(Err(NetworkError::Busy("search requests")));
                    return;
                }
                self.peers.used(&peer, Instant::now());
                let id = self.swarm.behaviour_mut().search.send_request(&peer, Incoming::Valid(*request));
                self.pending_searches.insert(id, Pending::new(self.request_timeout + Duration::from_secs(1), reply));
            }
            Command::RespondSearch { reply, response } => {
                if self.swarm.behaviour_mut().search.send_response(reply.0, response).is_err() {
                    tracing::debug!("search response dropped: the requester went away");
                }
            }
            Command::Announce { data, reply } => {
                let result = match self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), data) {
                    Ok(_) => Ok(true),
                    Err(
                        gossipsub::PublishError::NoPeersSubscribedToTopic | gossipsub::PublishError::AllQueuesFull(_),
                    ) => Ok(false),
                    Err(gossipsub::PublishError::Duplicate) => Ok(true),
                    Err(error) => Err(NetworkError::Dht(format!("gossip publish: {error}"))),
                };
                let _ = reply.send(result);
            }
            Command::ReportAnnouncement { id, verdict } => {
                let acceptance = match verdict {
                    Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                    Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                    Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &id.message_id,
                    &id.propagation_source,
                    acceptance,
                );
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::Status { reply } => {
                let local = *self.swarm.local_peer_id();
                let listen_addrs = self.swarm.listeners().cloned().collect();
                let mut connected_peers: Vec<PeerId> = self.peers.iter().copied().collect();
                connected_peers.sort();
                let kad = &mut self.swarm.behaviour_mut().kad;
                let routing_table_size = kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
                let store = kad.store_mut();
                let dht_records = store.records().count();
                let dht_provided = store.provided().count();
                let traversal = self.traversal_status();
                let _ = reply.send(Ok(NetworkStatus {
                    peer_id: local,
                    listen_addrs,
                    connected_peers,
                    routing_table_size,
                    dht_records,
                    dht_provided,
                    traversal,
                }));
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(Ok(self.peers.iter().copied().collect()));
            }
            Command::AwaitDirect { peer, wait, reply } => self.await_direct(peer, wait, reply),
            Command::StoreRecord { key, value } => self.store_record(key, value),
            Command::StopProviding { digest } => self.swarm.behaviour_mut().kad.stop_providing(&provider_key(&digest)),
            Command::Shutdown => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(metrics) = &self.metrics {
            metrics.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::info!(%address, "listening");
                self.on_listen_addr(&address);
                if let Some(pending) = self.pending_listens.remove(&listener_id) {
                    let _ = pending.reply.send(Ok(address));
                }
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                self.on_listener_closed(listener_id);
                if let Some(pending) = self.pending_listens.remove(&listener_id) {
                    let _ = pending.reply.send(Err(NetworkError::Listen(format!("listener closed: {reason:?}"))));
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(pending) = self.pending_listens.remove(&listener_id) {
                    let _ = pending.reply.send(Err(NetworkError::Listen(error.to_string())));
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                self.connections_established.fetch_add(1, Ordering::Relaxed);
                self.on_connection_opened(peer_id, connection_id, &endpoint);
                if let Some(pending) = self.pending_dials.remove(&connection_id) {
                    let _ = pending.reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 && self.peers.connected(peer_id, Instant::now()) {
                    tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "peer connected");
                    let _ = self.emit(NetworkEvent::PeerConnected {
                        peer: peer_id,
                        address: endpoint.get_remote_address().clone(),
                        dialer: endpoint.is_dialer(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } => {
                self.on_connection_closed(peer_id, connection_id, num_established);
                if num_established == 0 && self.peers.disconnected(&peer_id) {
                    tracing::debug!(peer = %peer_id, "peer disconnected");
                    let _ = self.emit(NetworkEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => self.on_external_confirmed(&address),
            SwarmEvent::ExternalAddrExpired { address } => self.on_external_expired(&address),
            SwarmEvent::OutgoingConnectionError { connection_id, peer_id, error } => {
                if let Some(pending) = self.pending_dials.remove(&connection_id) {
                    let _ = pending.reply.send(Err(NetworkError::Dial(error.to_string())));
                }
                tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
                if let Some(peer) = peer_id {
                    self.on_dial_failed(peer);
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        if let Some(metrics) = &self.metrics {
            match &event {
                BehaviourEvent::Kad(event) => metrics.record(event),
                BehaviourEvent::Gossipsub(event) => metrics.record(event),
                BehaviourEvent::Identify(event) => metrics.record(event),
                BehaviourEvent::Ping(event) => metrics.record(event),
                BehaviourEvent::Relay(event) => metrics.record(event),
                BehaviourEvent::Dcutr(event) => metrics.record(event),
                _ => {}
            }
        }
        if let Some(peer) = user_of(&event) {
            self.peers.used(&peer, Instant::now());
        }
        match event {
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                let id = AnnouncementId { message_id, propagation_source };
                if let Err(event) = self.emit(NetworkEvent::Announcement { id, data: message.data })
                    && let NetworkEvent::Announcement { id, .. } = *event
                {
                    self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                        &id.message_id,
                        &id.propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                }
            }
            BehaviourEvent::Gossipsub(_) => {}
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocols.contains(&KAD_PROTOCOL) {
                    for address in &info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, address.clone());
                    }
                }
                self.on_identified(peer_id, &info.protocols, &info.listen_addrs);
                let _ = self.emit(NetworkEvent::PeerIdentified { peer: peer_id, listen_addrs: info.listen_addrs });
            }
            BehaviourEvent::Identify(_) | BehaviourEvent::Ping(_) => {}
            BehaviourEvent::Artifacts(event) => {
                let outcome = on_exchange(event, &mut self.pending_chunks, |peer, request, reply| {
                    NetworkEvent::ChunkRequested { peer, request, reply }
                });
                self.after_exchange(outcome, "artifact");
            }
            BehaviourEvent::Sync(event) => {
                let outcome = on_exchange(event, &mut self.pending_syncs, |peer, request, reply| {
                    NetworkEvent::SyncRequested { peer, request, reply }
                });
                self.after_exchange(outcome, "sync");
            }
            BehaviourEvent::Search(event) => {
                let outcome = on_exchange(event, &mut self.pending_searches, |peer, request, reply| {
                    NetworkEvent::SearchRequested { peer, request, reply }
                });
                self.after_exchange(outcome, "search");
            }
            BehaviourEvent::AutonatClient(event) => self.on_autonat_client(event),
            BehaviourEvent::AutonatServer(event) => {
                tracing::debug!(client = %event.client, address = %event.tested_addr, ok = event.result.is_ok(), "dialed back (AutoNAT)");
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::Relay(event) => tracing::debug!(?event, "relay"),
            BehaviourEvent::Dcutr(event) => self.on_dcutr(event),
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Upnp(event) => self.on_upnp(event),
            BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Limits(never) => match never {},
        }
    }

    fn after_exchange(&self, outcome: Exchange, protocol: &str) {
        match outcome {
            // Dropping the reply on a full queue makes the peer see a failure.
            Exchange::Inbound(event) => {
                let _ = self.emit(*event);
            }
            Exchange::Garbage { peer, what } => self.misbehaved(peer, format!("malformed {protocol} {what}")),
            Exchange::Done => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.on_kad_inbound(request),
            kad::Event::OutboundQueryProgressed { id, result, stats, step } => match result {
                kad::QueryResult::PutRecord(result) => {
                    if let Some(pending) = self.pending_puts.remove(&id) {
                        let _ = pending
                            .reply
                            .send(result.map(|_| ()).map_err(|error| NetworkError::Dht(error.to_string())));
                    }
                }
                kad::QueryResult::GetRecord(result) => self.on_get_record(id, result, &stats, step.last),
                kad::QueryResult::StartProviding(result) => {
                    if let Some(pending) = self.pending_providing.remove(&id) {
                        let _ = pending
                            .reply
                            .send(result.map(|_| ()).map_err(|error| NetworkError::Dht(error.to_string())));
                    }
                }
                kad::QueryResult::GetProviders(result) => self.on_get_providers(id, result, step.last),
                _ => {}
            },
            _ => {}
        }
    }

    fn on_kad_inbound(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord { source, record: Some(record), .. } => {
                let Some(key) = RecordKey::from_kad(&record.key) else {
                    self.misbehaved(source, "put a record under a key that is not an Agora key".into());
                    return;
                };
                let sequence = match self.validator.validate(&key, &record.value) {
                    Ok(sequence) => sequence,
                    Err(Rejection::Invalid(reason)) => {
                        self.misbehaved(source, format!("put an invalid record for {key}: {reason}"));
                        return;
                    }
                    Err(Rejection::Contested(reason)) => {
                        tracing::debug!(peer = %source, %key, %reason, "not storing a contested record");
                        return;
                    }
                };
                if self.held_sequence(&key).is_some_and(|held| held >= sequence) {
                    return;
                }
                // The node checks it against its catalog and stores it with
                // `store_record` only if it passes; nothing is stored here.
                let _ = self.emit(NetworkEvent::RecordReceived { peer: source, key, value: record.value });
            }
            kad::InboundRequest::AddProvider { record: Some(record) } => {
                if digest_of_provider_key(&record.key).is_none() {
                    self.misbehaved(record.provider, "announced a provider key that is not a sha-256 multihash".into());
                    return;
                }
                if let Err(error) = self.swarm.behaviour_mut().kad.store_mut().add_provider(record) {
                    tracing::debug!(?error, "could not store a provider record");
                }
            }
            _ => {}
        }
    }

    /// Sequence of the valid copy of `key` in the local DHT store, if any.
    /// The sequence of the copy of `key` this node's DHT store holds. Everything
    /// in the store was validated on the way in, so it is not re-verified.
    fn held_sequence(&mut self, key: &RecordKey) -> Option<u64> {
        let held = self.swarm.behaviour_mut().kad.store_mut().get(&key.to_kad())?;
        check_trusted_record(key, &held.value).ok().map(|record| record.sequence)
    }

    /// Stores a record the node verified (see [`NetworkHandle::store_record`]):
    /// its structure and key are checked, its signature is not.
    fn store_record(&mut self, key: RecordKey, value: Vec<u8>) {
        let sequence = match check_trusted_record(&key, &value) {
            Ok(record) => record.sequence,
            Err(reason) => {
                tracing::warn!(%key, reason, "refusing to store a malformed record");
                return;
            }
        };
        if self.held_sequence(&key).is_some_and(|held| held >= sequence) {
            return;
        }
        if let Err(error) = self.swarm.behaviour_mut().kad.store_mut().put(kad::Record::new(key.to_kad(), value)) {
            tracing::warn!(%key, ?error, "could not store a record in the local DHT store");
        }
    }

    fn on_get_record(
        &mut self,
        id: kad::QueryId,
        result: Result<kad::GetRecordOk, kad::GetRecordError>,
        stats: &kad::QueryStats,
        last: bool,
    ) {
        let Some(lookup) = self.pending_gets.get_mut(&id) else { return };
        lookup.stats = LookupStats {
            requests: stats.num_requests(),
            successes: stats.num_successes(),
            failures: stats.num_failures(),
        };
        let mut done = last;
        let mut timed_out = false;
        match result {
            Ok(kad::GetRecordOk::FoundRecord(kad::PeerRecord { peer, record })) => {
                match self.validator.validate(&lookup.key, &record.value) {
                    Ok(sequence) => {
                        lookup.valid += 1;
                        if lookup.best.as_ref().is_none_or(|(best, _)| sequence > *best) {
                            lookup.best = Some((sequence, record.value));
                        }
                        // Manifests are immutable: the first valid copy is the answer. Indexes
                        // change, so a quorum of copies decides the newest.
                        let quorum = if matches!(lookup.key, RecordKey::Manifest(..)) { 1 } else { GET_QUORUM };
                        done |= lookup.valid >= quorum;
                    }
                    Err(Rejection::Invalid(reason)) => {
                        let key = lookup.key.to_string();
                        if let Some(peer) = peer {
                            self.misbehaved(peer, format!("served an invalid record for {key}: {reason}"));
                        }
                    }
                    Err(Rejection::Contested(reason)) => {
                        tracing::debug!(peer = ?peer, key = %lookup.key, %reason, "ignoring a contested record");
                    }
                }
            }
            Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
            Err(error) => {
                tracing::debug!(%error, "record lookup ended");
                timed_out = matches!(error, kad::GetRecordError::Timeout { .. });
                done = true;
            }
        }
        if done && let Some(lookup) = self.pending_gets.remove(&id) {
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
            // Kademlia's own deadline with no valid copy found means "no answer in
            // time", not "there is no such record": the same as the sweep's timeout.
            let answer = match lookup.best {
                None if timed_out => Err(NetworkError::Timeout(self.query_timeout)),
                best => Ok((best.map(|(_, value)| value), lookup.stats)),
            };
            let _ = lookup.pending.reply.send(answer);
        }
    }

    fn on_get_providers(
        &mut self,
        id: kad::QueryId,
        result: Result<kad::GetProvidersOk, kad::GetProvidersError>,
        last: bool,
    ) {
        let local = *self.swarm.local_peer_id();
        let mut done = last;
        let mut to_dial = Vec::new();
        if let Some(lookup) = self.pending_providers.get_mut(&id) {
            match result {
                Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                    for peer in providers {
                        if peer != local && lookup.found.insert(peer) && !self.peers.contains(&peer) {
                            to_dial.push(peer);
                        }
                    }
                    done |= lookup.found.len() >= PROVIDERS_WANTED;
                }
                Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => done = true,
                Err(error) => {
                    tracing::debug!(%error, "provider lookup ended");
                    done = true;
                }
            }
        }
        // Dial now: the query still holds the providers' addresses.
        for peer in to_dial {
            let _ = self.swarm.dial(DialOpts::peer_id(peer).build());
        }
        if done && let Some(lookup) = self.pending_providers.remove(&id) {
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
            let mut found: Vec<PeerId> = lookup.found.into_iter().collect();
            // Connected providers first: they answer without a dial.
            found.sort_by_key(|peer| !self.peers.contains(peer));
            let _ = lookup.pending.reply.send(Ok(found));
        }
    }

    /// Disconnects idle peers beyond the budget, sparing the gossip mesh (see
    /// [`Peers`]).
    fn trim_peers(&mut self, now: Instant) {
        if !self.peers.over_budget() {
            return;
        }
        let mesh: HashSet<PeerId> = self.swarm.behaviour().gossipsub.mesh_peers(&self.topic.hash()).copied().collect();
        let trimmed = self.peers.take_idle(&mesh, now);
        if !trimmed.is_empty() {
            tracing::debug!(peers = trimmed.len(), "disconnecting idle peers beyond the budget");
        }
        for peer in trimmed {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        self.trim_peers(now);
        self.sweep_waiting(now);
        let expired = |deadline: Instant| deadline <= now;
        let timeout = |after: Duration| NetworkError::Timeout(after);
        fail_expired(&mut self.pending_listens, now, timeout(self.request_timeout));
        fail_expired(&mut self.pending_dials, now, timeout(self.request_timeout));
        fail_expired(&mut self.pending_chunks, now, timeout(self.request_timeout));
        fail_expired(&mut self.pending_syncs, now, timeout(self.request_timeout));
        fail_expired(&mut self.pending_searches, now, timeout(self.request_timeout));
        let mut finished = Vec::new();
        for (id, pending) in &self.pending_puts {
            if expired(pending.deadline) {
                finished.push(*id);
            }
        }
        for id in &finished {
            if let Some(pending) = self.pending_puts.remove(id) {
                let _ = pending.reply.send(Err(timeout(self.query_timeout)));
            }
        }
        let stale_gets: Vec<kad::QueryId> = self
            .pending_gets
            .iter()
            .filter(|(_, lookup)| expired(lookup.pending.deadline))
            .map(|(id, _)| *id)
            .collect();
        for id in &stale_gets {
            if let Some(lookup) = self.pending_gets.remove(id) {
                // A lookup that found something answers with it rather than failing.
                let answer = match lookup.best {
                    Some((_, value)) => Ok((Some(value), lookup.stats)),
                    None => Err(timeout(self.query_timeout)),
                };
                let _ = lookup.pending.reply.send(answer);
            }
        }
        let stale_providing: Vec<kad::QueryId> =
            self.pending_providing.iter().filter(|(_, p)| expired(p.deadline)).map(|(id, _)| *id).collect();
        for id in &stale_providing {
            if let Some(pending) = self.pending_providing.remove(id) {
                // The local provider record exists; peers will learn of it on republish.
                let _ = pending.reply.send(Ok(()));
            }
        }
        let stale_providers: Vec<kad::QueryId> =
            self.pending_providers.iter().filter(|(_, l)| expired(l.pending.deadline)).map(|(id, _)| *id).collect();
        for id in &stale_providers {
            if let Some(lookup) = self.pending_providers.remove(id) {
                let _ = lookup.pending.reply.send(Ok(lookup.found.into_iter().collect()));
            }
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for id in finished.iter().chain(&stale_gets).chain(&stale_providing).chain(&stale_providers) {
            if let Some(mut query) = kad.query_mut(id) {
                query.finish();
            }
        }
    }
}

fn fail_expired<K: Copy + Eq + std::hash::Hash, T>(
    map: &mut HashMap<K, Pending<T>>,
    now: Instant,
    error: NetworkError,
) {
    let expired: Vec<K> = map.iter().filter(|(_, pending)| pending.deadline <= now).map(|(key, _)| *key).collect();
    for key in expired {
        if let Some(pending) = map.remove(&key) {
            let _ = pending.reply.send(Err(error.clone()));
        }
    }
}

/// The peer whose connection an event used, for the events that count as use:
/// requests and answers both ways, gossip, Kademlia routing and stores.
fn user_of(event: &BehaviourEvent) -> Option<PeerId> {
    fn exchange<Req, Resp>(event: &request_response::Event<Req, Resp>) -> PeerId {
        match event {
            request_response::Event::Message { peer, .. }
            | request_response::Event::OutboundFailure { peer, .. }
            | request_response::Event::InboundFailure { peer, .. }
            | request_response::Event::ResponseSent { peer, .. } => *peer,
        }
    }
    match event {
        BehaviourEvent::Artifacts(event) => Some(exchange(event)),
        BehaviourEvent::Sync(event) => Some(exchange(event)),
        BehaviourEvent::Search(event) => Some(exchange(event)),
        BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, .. }) => Some(*propagation_source),
        BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })
        | BehaviourEvent::Identify(identify::Event::Received { peer_id: peer, .. }) => Some(*peer),
        BehaviourEvent::Kad(kad::Event::InboundRequest { request: kad::InboundRequest::PutRecord { source, .. } }) => {
            Some(*source)
        }
        _ => None,
    }
}

/// What a request-response event leaves for the actor to do.
enum Exchange {
    /// A request for the node (boxed: events are large).
    Inbound(Box<NetworkEvent>),
    /// The peer sent bytes that do not decode.
    Garbage { peer: PeerId, what: String },
    /// Nothing more.
    Done,
}

/// Handles one event of a request-response protocol: answers pending outbound
/// requests, turns inbound requests into node events, spots garbage.
fn on_exchange<Req, Resp>(
    event: request_response::Event<Incoming<Req>, Resp>,
    pending: &mut HashMap<OutboundRequestId, Pending<Resp>>,
    inbound: impl FnOnce(PeerId, Req, Reply<Resp>) -> NetworkEvent,
) -> Exchange {
    let is_garbage = |error: &std::io::Error| error.kind() == std::io::ErrorKind::InvalidData;
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request { request: Incoming::Valid(request), channel, .. } => {
                Exchange::Inbound(Box::new(inbound(peer, request, Reply(channel))))
            }
            // Dropping the channel closes the stream without an answer.
            request_response::Message::Request { request: Incoming::Invalid(reason), .. } => {
                Exchange::Garbage { peer, what: format!("request: {reason}") }
            }
            request_response::Message::Response { request_id, response } => {
                if let Some(waiting) = pending.remove(&request_id) {
                    let _ = waiting.reply.send(Ok(response));
                }
                Exchange::Done
            }
        },
        request_response::Event::OutboundFailure { peer, request_id, error, .. } => {
            if let Some(waiting) = pending.remove(&request_id) {
                let _ = waiting
                    .reply
                    .send(Err(NetworkError::Request { peer: peer.to_string(), reason: error.to_string() }));
            }
            match &error {
                request_response::OutboundFailure::Io(io) if is_garbage(io) => {
                    Exchange::Garbage { peer, what: format!("response: {io}") }
                }
                _ => Exchange::Done,
            }
        }
        request_response::Event::InboundFailure { peer, error: request_response::InboundFailure::Io(io), .. }
            if is_garbage(&io) =>
        {
            Exchange::Garbage { peer, what: format!("request: {io}") }
        }
        request_response::Event::InboundFailure { .. } | request_response::Event::ResponseSent { .. } => Exchange::Done,
    }
}
