//! [`Rogue`]: a raw libp2p peer speaking Agora's protocols with none of its
//! manners, to attack an honest node with. It runs the same Kademlia protocol (as
//! a DHT client, so the honest node never routes through it), signed gossip on the
//! announce topic, identify, ping, and the artifact, sync and search
//! request-response protocols through a codec with no format: it writes whatever
//! bytes the test hands it and reads whatever comes back.
//!
//! How it answers each protocol's requests is a [`Reply`]: drop them, hold them
//! open for ever, the same raw bytes every time (a liar, a forger, a garbler), or,
//! for chunk requests, the correct chunks of an artifact after a delay, for the
//! first few requests, then stall or stop its swarm (a slow provider, a provider
//! that stalls or goes away mid-transfer).
//!
//! The swarm lives in a spawned task; the test reaches it through [`Rogue::with`]
//! (a closure run on the task) and polls the facts the task records ([`State`])
//! with [`Rogue::poll`], under [`DEADLINE`].

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::net::{
    ANNOUNCE_TOPIC, ARTIFACT_PROTOCOL, ChunkRequest, ChunkResponse, KAD_PROTOCOL, SEARCH_PROTOCOL, SYNC_PROTOCOL, Wire,
    provider_key, split_peer,
};
use agora::{ArtifactInfo, Digest, Node};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, kad, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::net::{DEADLINE, listen_address, wait_until};

/// The rogue's own limits are far above Agora's, so it can send what Agora refuses.
const ROGUE_LIMIT: usize = 16 * 1024 * 1024;
/// How long a request-response exchange may take, either way: a held request
/// stays open this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One of Agora's request-response protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// `/agora/artifact/1.0.0`: chunk requests.
    Artifact,
    /// `/agora/sync/1.0.0`: catalog pages.
    Sync,
    /// `/agora/search/1.0.0`: search requests.
    Search,
}

impl Proto {
    const ALL: [Self; 3] = [Self::Artifact, Self::Sync, Self::Search];
}

/// How the rogue answers the requests of one protocol.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Drops every request unanswered: the requester sees the stream close.
    Drop,
    /// Keeps every request open, never answering, until the requester gives up.
    Stall,
    /// These raw bytes (the test writes the frame) for every request.
    Fixed(Vec<u8>),
    /// For chunk requests: the correct chunks of `data` (described by `info`),
    /// each after `delay`, for the first `serve` requests; then what `then` says.
    /// A request that is not a chunk request is dropped; an index past the end is
    /// answered with `OutOfRange`.
    Chunks { data: Arc<Vec<u8>>, info: ArtifactInfo, delay: Duration, serve: usize, then: Then },
}

impl Reply {
    /// Correct chunks of `data`, every one after `delay`, for ever.
    pub fn honest(data: Vec<u8>, info: ArtifactInfo, delay: Duration) -> Self {
        Self::Chunks { data: Arc::new(data), info, delay, serve: usize::MAX, then: Then::Stall }
    }

    /// Correct chunks of `data` at once for the first `serve` requests, then `then`.
    pub fn first(data: Vec<u8>, info: ArtifactInfo, serve: usize, then: Then) -> Self {
        Self::Chunks { data: Arc::new(data), info, delay: Duration::ZERO, serve, then }
    }

    /// An empty, final catalog page (the rogue's default sync answer).
    pub fn empty_page() -> Self {
        Self::Fixed(frame(&[0, 0, 0, 0, 0]))
    }

    /// What a fresh rogue answers on `proto`: polite on sync (an empty page),
    /// dropping chunk and search requests.
    fn default_for(proto: Proto) -> Self {
        match proto {
            Proto::Sync => Self::empty_page(),
            Proto::Artifact | Proto::Search => Self::Drop,
        }
    }
}

/// What the rogue does once its correct chunks are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Keeps every further request open, never answering.
    Stall,
    /// Stops its swarm (every connection closes) at the next request.
    Die,
}

/// `payload` as one Agora frame: a big-endian `u32` length, then the bytes.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).expect("frame fits a u32").to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// The payload of one Agora frame.
pub fn unframe(bytes: &[u8]) -> &[u8] {
    assert!(bytes.len() >= 4, "a frame has a 4-byte length");
    let (length, payload) = bytes.split_at(4);
    assert_eq!(u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize, payload.len(), "frame length");
    payload
}

#[derive(NetworkBehaviour)]
struct RogueBehaviour {
    kad: kad::Behaviour<MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    artifacts: request_response::Behaviour<RawCodec>,
    sync: request_response::Behaviour<RawCodec>,
    search: request_response::Behaviour<RawCodec>,
}

/// A request-response codec with no format: requests and responses are the raw
/// bytes of the stream.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_all(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_all(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, bytes: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, bytes).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, bytes: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, bytes).await
    }
}

/// Everything up to the end of the stream (at most [`ROGUE_LIMIT`] bytes); nothing
/// at all is an error.
async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    io.take(ROGUE_LIMIT as u64).read_to_end(&mut out).await?;
    if out.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// Writes `bytes` and closes the stream.
async fn write_all<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: Vec<u8>) -> io::Result<()> {
    io.write_all(&bytes).await?;
    io.close().await
}

/// One protocol's answer and the requests it got.
#[derive(Debug)]
struct Exchange {
    reply: Reply,
    /// The raw requests received.
    requests: Vec<Vec<u8>>,
}

/// What the rogue's task owns and records.
pub struct State {
    swarm: Swarm<RogueBehaviour>,
    topic: gossipsub::IdentTopic,
    exchanges: HashMap<Proto, Exchange>,
    /// Indexes of the chunks answered with correct bytes (or scheduled to be).
    pub served: Vec<u32>,
    /// Requests kept open without an answer.
    held: Vec<ResponseChannel<Vec<u8>>>,
    /// Set when the swarm is to stop.
    dead: bool,
    /// For answers sent later (delayed chunks).
    later: mpsc::UnboundedSender<Command>,
    /// Peers with an open connection.
    pub connected: HashSet<PeerId>,
    /// Peers subscribed to the announce topic.
    pub subscribed: HashSet<PeerId>,
    /// Connections that were established, per peer.
    pub established: HashMap<PeerId, usize>,
    /// Connections that were closed, per peer.
    pub closed: HashMap<PeerId, usize>,
    /// Dials that failed, per peer.
    pub dial_errors: HashMap<PeerId, String>,
    /// Finished put and provide queries.
    queries: HashMap<kad::QueryId, Result<(), String>>,
    /// Answers to the rogue's own requests.
    responses: HashMap<OutboundRequestId, Result<Vec<u8>, String>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The swarm has no `Debug`; the replies, requests and peers tell the story.
        f.debug_struct("State")
            .field("exchanges", &self.exchanges)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

type Command = Box<dyn FnOnce(&mut State) + Send>;

/// A rogue peer running in its own task (stopped when dropped).
#[derive(Debug)]
pub struct Rogue {
    /// The rogue's identity.
    pub peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rogue {
    /// A rogue with a fresh identity, polite on sync (an empty page), dropping
    /// chunk and search requests.
    pub fn spawn() -> Self {
        Self::start(HashMap::new())
    }

    /// Like [`Rogue::spawn`], answering the requests of `proto` with `reply`.
    pub fn answering(proto: Proto, reply: Reply) -> Self {
        Self::start(HashMap::from([(proto, reply)]))
    }

    fn start(mut replies: HashMap<Proto, Reply>) -> Self {
        let key = Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let mut swarm = build_swarm(&key);
        let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
        swarm.behaviour_mut().gossipsub.subscribe(&topic).expect("subscribe");
        let exchanges = Proto::ALL
            .into_iter()
            .map(|proto| {
                let reply = replies.remove(&proto).unwrap_or_else(|| Reply::default_for(proto));
                (proto, Exchange { reply, requests: Vec::new() })
            })
            .collect();
        let (commands, mut receiver) = mpsc::unbounded_channel::<Command>();
        let mut state = State {
            swarm,
            topic,
            exchanges,
            served: Vec::new(),
            held: Vec::new(),
            dead: false,
            later: commands.clone(),
            connected: HashSet::new(),
            subscribed: HashSet::new(),
            established: HashMap::new(),
            closed: HashMap::new(),
            dial_errors: HashMap::new(),
            queries: HashMap::new(),
            responses: HashMap::new(),
        };
        let task = tokio::spawn(async move {
            while !state.dead {
                tokio::select! {
                    event = state.swarm.select_next_some() => state.on_event(event),
                    command = receiver.recv() => match command {
                        Some(command) => command(&mut state),
                        None => break,
                    },
                }
            }
            // Dropping the state drops the swarm: every connection closes.
        });
        Self { peer_id, commands, task }
    }

    /// Whether the rogue's swarm has stopped.
    pub fn is_dead(&self) -> bool {
        self.task.is_finished()
    }

    /// Runs `f` on the rogue's task and returns what it returns.
    pub async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut State) -> T + Send + 'static) -> T {
        let (reply, answer) = oneshot::channel();
        let command: Command = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.commands.send(command).expect("rogue task alive");
        answer.await.expect("rogue task answered")
    }

    /// Polls `f` on the task until it returns `Some`; panics after [`DEADLINE`].
    pub async fn poll<T: Send + 'static>(
        &self,
        what: &str,
        f: impl Fn(&mut State) -> Option<T> + Clone + Send + 'static,
    ) -> T {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = self.with(f.clone()).await {
                return value;
            }
            assert!(Instant::now() < end, "rogue: no {what} within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// From now on, answers the requests of `proto` with `reply`.
    pub async fn set_reply(&self, proto: Proto, reply: Reply) {
        self.with(move |state| state.exchange(proto).reply = reply).await;
    }

    /// How many requests of `proto` the rogue received so far.
    pub async fn requests(&self, proto: Proto) -> usize {
        self.with(move |state| state.requests(proto).len()).await
    }

    /// Dials `node`; returns its peer id without waiting for anything.
    pub async fn dial(&self, node: &Node) -> PeerId {
        let address: Multiaddr = listen_address(node).await.parse().expect("a multiaddr");
        let (peer, bare) = split_peer(&address).expect("a /p2p address");
        self.with(move |state| {
            state.swarm.behaviour_mut().kad.add_address(&peer, bare);
            state.swarm.dial(address).expect("dial");
        })
        .await;
        peer
    }

    /// Dials `node` and waits for the connection on both sides and for the
    /// node's gossip subscription; returns its peer id.
    pub async fn connect(&self, node: &Node) -> PeerId {
        let peer = self.dial(node).await;
        self.poll("connection and subscription", move |state| {
            (state.connected.contains(&peer) && state.subscribed.contains(&peer)).then_some(())
        })
        .await;
        let network = node.network_handle().expect("network enabled");
        let me = self.peer_id;
        let seen =
            wait_until(DEADLINE, || async { network.connected_peers().await.is_ok_and(|peers| peers.contains(&me)) });
        assert!(seen.await, "the node did not see the rogue's connection within {DEADLINE:?}");
        peer
    }

    /// Publishes raw bytes on the announce topic.
    pub async fn gossip(&self, data: Vec<u8>) {
        self.with(move |state| {
            let topic = state.topic.clone();
            state.swarm.behaviour_mut().gossipsub.publish(topic, data).map(drop).map_err(|error| error.to_string())
        })
        .await
        .expect("the rogue's gossip publish");
    }

    /// Sends a PUT_VALUE with `value` under `key` to `peer` only (nothing is stored
    /// on the rogue); returns the query id.
    pub async fn put_record_to(&self, key: kad::RecordKey, value: Vec<u8>, peer: PeerId) -> kad::QueryId {
        self.with(move |state| {
            state.swarm.behaviour_mut().kad.put_record_to(
                kad::Record::new(key, value),
                std::iter::once(peer),
                kad::Quorum::One,
            )
        })
        .await
    }

    /// Waits for a put or provide query to finish.
    pub async fn query_result(&self, id: kad::QueryId) -> Result<(), String> {
        self.poll("query result", move |state| state.queries.remove(&id)).await
    }

    /// Announces the rogue as a provider of `digest`; waits for the query.
    pub async fn start_providing(&self, digest: Digest) {
        let id = self
            .with(move |state| state.swarm.behaviour_mut().kad.start_providing(provider_key(&digest)).expect("provide"))
            .await;
        self.query_result(id).await.expect("provider announcement");
    }

    /// Sends raw `bytes` as a request on `proto` to `peer` without waiting.
    pub async fn send(&self, proto: Proto, peer: PeerId, bytes: Vec<u8>) -> OutboundRequestId {
        self.with(move |state| state.behaviour(proto).send_request(&peer, bytes)).await
    }

    /// Sends raw `bytes` as a request on `proto` to `peer` and waits for the outcome.
    pub async fn request(&self, proto: Proto, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let id = self.send(proto, peer, bytes).await;
        self.poll("request outcome", move |state| state.responses.remove(&id)).await
    }
}

impl State {
    /// The raw requests of `proto` received so far.
    pub fn requests(&self, proto: Proto) -> &[Vec<u8>] {
        &self.exchanges[&proto].requests
    }

    fn exchange(&mut self, proto: Proto) -> &mut Exchange {
        self.exchanges.get_mut(&proto).expect("every protocol has an exchange")
    }

    fn behaviour(&mut self, proto: Proto) -> &mut request_response::Behaviour<RawCodec> {
        let behaviour = self.swarm.behaviour_mut();
        match proto {
            Proto::Artifact => &mut behaviour.artifacts,
            Proto::Sync => &mut behaviour.sync,
            Proto::Search => &mut behaviour.search,
        }
    }

    fn respond(&mut self, proto: Proto, channel: ResponseChannel<Vec<u8>>, bytes: Vec<u8>) {
        let _ = self.behaviour(proto).send_response(channel, bytes);
    }

    fn on_event(&mut self, event: SwarmEvent<RogueBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connected.insert(peer_id);
                *self.established.entry(peer_id).or_default() += 1;
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                *self.closed.entry(peer_id).or_default() += 1;
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer_id), error, .. } => {
                self.dial_errors.insert(peer_id, error.to_string());
            }
            SwarmEvent::Behaviour(RogueBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, .. })) => {
                self.subscribed.insert(peer_id);
            }
            SwarmEvent::Behaviour(RogueBehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, ..
            })) => {
                let outcome = match result {
                    kad::QueryResult::PutRecord(result) => result.map(drop).map_err(|error| error.to_string()),
                    kad::QueryResult::StartProviding(result) => result.map(drop).map_err(|error| error.to_string()),
                    _ => return,
                };
                self.queries.insert(id, outcome);
            }
            SwarmEvent::Behaviour(RogueBehaviourEvent::Artifacts(event)) => self.on_exchange(Proto::Artifact, event),
            SwarmEvent::Behaviour(RogueBehaviourEvent::Sync(event)) => self.on_exchange(Proto::Sync, event),
            SwarmEvent::Behaviour(RogueBehaviourEvent::Search(event)) => self.on_exchange(Proto::Search, event),
            _ => {}
        }
    }

    fn on_exchange(&mut self, proto: Proto, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.on_request(proto, request, channel);
                }
                request_response::Message::Response { request_id, response } => {
                    self.responses.insert(request_id, Ok(response));
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                self.responses.insert(request_id, Err(error.to_string()));
            }
            _ => {}
        }
    }

    fn on_request(&mut self, proto: Proto, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let exchange = self.exchange(proto);
        let (number, reply) = (exchange.requests.len(), exchange.reply.clone());
        exchange.requests.push(request.clone());
        match reply {
            Reply::Drop => {}
            Reply::Stall => self.held.push(channel),
            Reply::Fixed(bytes) => self.respond(proto, channel, bytes),
            Reply::Chunks { then, serve, .. } if number >= serve => match then {
                Then::Stall => self.held.push(channel),
                Then::Die => self.dead = true,
            },
            Reply::Chunks { data, info, delay, .. } => {
                let Some(wanted) = request.get(4..).and_then(|payload| ChunkRequest::decode(payload).ok()) else {
                    return;
                };
                let Some((offset, len)) = info.chunk_range(wanted.index as usize) else {
                    self.respond(proto, channel, frame(&ChunkResponse::OutOfRange.encode()));
                    return;
                };
                let chunk = data[offset as usize..offset as usize + len as usize].to_vec();
                let response = frame(&ChunkResponse::Data(chunk).encode());
                self.served.push(wanted.index);
                if delay.is_zero() {
                    self.respond(proto, channel, response);
                } else {
                    let later = self.later.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let answer: Command = Box::new(move |state| state.respond(proto, channel, response));
                        let _ = later.send(answer);
                    });
                }
            }
        }
    }
}

fn build_swarm(key: &Keypair) -> Swarm<RogueBehaviour> {
    let peer_id = key.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .message_id_fn(|message: &gossipsub::Message| gossipsub::MessageId::from(Digest::of(&message.data).to_hex()))
        .max_transmit_size(ROGUE_LIMIT)
        .build()
        .expect("gossipsub config");
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_max_packet_size(ROGUE_LIMIT);
    kad_config.set_query_timeout(Duration::from_secs(10));
    let store_config = MemoryStoreConfig { max_value_bytes: ROGUE_LIMIT, ..MemoryStoreConfig::default() };
    let request_config = request_response::Config::default().with_request_timeout(REQUEST_TIMEOUT);
    let raw = |protocol: StreamProtocol| {
        request_response::Behaviour::with_codec(RawCodec, [(protocol, ProtocolSupport::Full)], request_config.clone())
    };
    libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|key| {
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::with_config(peer_id, store_config), kad_config);
            // A client: the honest node never routes DHT queries through the rogue,
            // so its lookups show its own store.
            kad.set_mode(Some(kad::Mode::Client));
            Ok(RogueBehaviour {
                kad,
                gossipsub: gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?,
                identify: identify::Behaviour::new(identify::Config::new("/agora/id/1.0.0".to_owned(), key.public())),
                ping: ping::Behaviour::default(),
                artifacts: raw(ARTIFACT_PROTOCOL),
                sync: raw(SYNC_PROTOCOL),
                search: raw(SEARCH_PROTOCOL),
            })
        })
        .expect("rogue behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}
