//! A rogue provider for transfer tests: a raw libp2p peer (copied from
//! `rogue/peer.rs` and trimmed to what transfers need) that announces itself as a
//! provider of an artifact and answers chunk requests the way a test tells it to:
//! fixed bytes (a liar), correct chunks after a delay (a slow provider), the first
//! few correct chunks and then nothing or a dead swarm (a provider that stalls or
//! goes away mid-transfer), or never (a stalled provider, which keeps the request
//! open rather than closing the stream).
//!
//! The swarm lives in a spawned task; the test reaches it through
//! [`Rogue::with`] (a closure run on the task) and polls the facts the task
//! records ([`State`]) with deadlines.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::net::split_peer;
use agora::net::{ANNOUNCE_TOPIC, ARTIFACT_PROTOCOL, ChunkRequest, ChunkResponse, KAD_PROTOCOL, SYNC_PROTOCOL, Wire};
use agora::{ArtifactInfo, Digest, Node};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, kad, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long the rogue waits for anything.
const ROGUE_DEADLINE: Duration = Duration::from_secs(30);
/// The rogue's own limits are far above Agora's.
const ROGUE_LIMIT: usize = 16 * 1024 * 1024;

#[derive(NetworkBehaviour)]
pub(crate) struct RogueBehaviour {
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    pub(crate) artifacts: request_response::Behaviour<RawCodec>,
    pub(crate) sync: request_response::Behaviour<RawCodec>,
}

/// A request-response codec with no format: requests and responses are the raw
/// bytes of the stream (the test writes the frames itself).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_all(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&bytes).await?;
        io.close().await
    }
}

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    io.take(ROGUE_LIMIT as u64).read_to_end(&mut out).await?;
    if out.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// `payload` as one Agora frame: a big-endian `u32` length, then the bytes.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).expect("frame fits a u32").to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// What the rogue does once its correct answers are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Keeps every further request open, never answering.
    Stall,
    /// Stops its swarm (every connection closes) at the next request.
    Die,
}

/// How the rogue answers chunk requests.
#[derive(Clone)]
pub(crate) enum Chunks {
    /// These raw bytes for every request.
    Fixed(Vec<u8>),
    /// Never answers: every request stays open until the requester gives up.
    Stall,
    /// The correct chunks of `data` (described by `info`), each after `delay`, for
    /// the first `serve` requests; then what `then` says.
    Serve { data: Arc<Vec<u8>>, info: ArtifactInfo, delay: Duration, serve: usize, then: Then },
}

impl Chunks {
    /// Correct chunks of `data`, every one after `delay`, for ever.
    pub(crate) fn honest(data: Vec<u8>, info: ArtifactInfo, delay: Duration) -> Self {
        Self::Serve { data: Arc::new(data), info, delay, serve: usize::MAX, then: Then::Stall }
    }

    /// Correct chunks of `data` at once for the first `serve` requests, then `then`.
    pub(crate) fn first(data: Vec<u8>, info: ArtifactInfo, serve: usize, then: Then) -> Self {
        Self::Serve { data: Arc::new(data), info, delay: Duration::ZERO, serve, then }
    }
}

/// What the rogue's task owns and records.
pub(crate) struct State {
    pub(crate) swarm: Swarm<RogueBehaviour>,
    topic: gossipsub::IdentTopic,
    /// How chunk requests are answered.
    pub(crate) chunks: Chunks,
    /// Raw bytes answering every sync request (`None`: drop the request).
    pub(crate) sync_reply: Option<Vec<u8>>,
    /// Chunk requests received.
    pub(crate) chunk_requests: usize,
    /// Indexes of the chunks answered with correct bytes (or scheduled to be).
    pub(crate) served: Vec<u32>,
    /// Requests kept open without an answer.
    held: Vec<ResponseChannel<Vec<u8>>>,
    /// Set when the swarm is to stop.
    dead: bool,
    /// For answers sent later (delayed chunks).
    later: mpsc::UnboundedSender<Command>,
    pub(crate) connected: HashSet<PeerId>,
    pub(crate) subscribed: HashSet<PeerId>,
    /// Connections that were established, and closed, per peer.
    pub(crate) established: HashMap<PeerId, usize>,
    pub(crate) closed: HashMap<PeerId, usize>,
    /// Dials that failed, per peer.
    pub(crate) dial_errors: HashMap<PeerId, String>,
    /// Finished put and provide queries.
    pub(crate) queries: HashMap<kad::QueryId, Result<(), String>>,
}

type Command = Box<dyn FnOnce(&mut State) + Send>;

/// A rogue peer running in its own task.
pub(crate) struct Rogue {
    pub(crate) peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Drop for Rogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rogue {
    /// A rogue with a fresh identity answering chunk requests as `chunks` says;
    /// polite on sync (an empty page).
    pub(crate) fn spawn(chunks: Chunks) -> Self {
        let key = Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let mut swarm = build_swarm(&key);
        let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
        swarm.behaviour_mut().gossipsub.subscribe(&topic).expect("subscribe");
        let (commands, mut receiver) = mpsc::unbounded_channel::<Command>();
        let mut state = State {
            swarm,
            topic,
            chunks,
            sync_reply: Some(frame(&[0, 0, 0, 0, 0])),
            chunk_requests: 0,
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
    pub(crate) fn is_dead(&self) -> bool {
        self.task.is_finished()
    }

    /// Runs `f` on the rogue's task and returns what it returns.
    pub(crate) async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut State) -> T + Send + 'static) -> T {
        let (reply, answer) = oneshot::channel();
        let command: Command = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.commands.send(command).expect("rogue task alive");
        answer.await.expect("rogue task answered")
    }

    /// Polls `f` on the task until it returns `Some`, with a deadline.
    pub(crate) async fn poll<T: Send + 'static>(
        &self,
        what: &str,
        f: impl Fn(&mut State) -> Option<T> + Clone + Send + 'static,
    ) -> T {
        let end = Instant::now() + ROGUE_DEADLINE;
        loop {
            if let Some(value) = self.with(f.clone()).await {
                return value;
            }
            assert!(Instant::now() < end, "rogue: no {what} within {ROGUE_DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Dials `node`; returns its peer id without waiting for anything.
    pub(crate) async fn dial(&self, node: &Node) -> PeerId {
        let address = listen_address(node).await;
        let (peer, bare) = split_peer(&address).expect("a /p2p address");
        self.with(move |state| {
            state.swarm.behaviour_mut().kad.add_address(&peer, bare);
            state.swarm.dial(address).expect("dial");
        })
        .await;
        peer
    }

    /// Dials `node`, waits for the connection and for its gossip subscription;
    /// returns its peer id.
    pub(crate) async fn connect(&self, node: &Node) -> PeerId {
        let peer = self.dial(node).await;
        self.poll("connection and subscription", move |state| {
            (state.connected.contains(&peer) && state.subscribed.contains(&peer)).then_some(())
        })
        .await;
        peer
    }

    /// Publishes raw bytes on the announce topic.
    pub(crate) async fn gossip(&self, data: Vec<u8>) {
        self.with(move |state| {
            let topic = state.topic.clone();
            state.swarm.behaviour_mut().gossipsub.publish(topic, data).map(drop).map_err(|error| error.to_string())
        })
        .await
        .expect("the rogue's gossip publish");
    }

    /// Announces the rogue as a provider of `digest`; waits for the query.
    pub(crate) async fn start_providing(&self, digest: Digest) {
        let id = self
            .with(move |state| {
                state.swarm.behaviour_mut().kad.start_providing(agora::net::provider_key(&digest)).expect("provide")
            })
            .await;
        self.poll("provide query result", move |state| state.queries.remove(&id)).await.expect("provider announcement");
    }
}

impl State {
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
                    kad::QueryResult::StartProviding(result) => result.map(drop).map_err(|error| error.to_string()),
                    _ => return,
                };
                self.queries.insert(id, outcome);
            }
            SwarmEvent::Behaviour(RogueBehaviourEvent::Artifacts(request_response::Event::Message {
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => self.on_chunk_request(&request, channel),
            SwarmEvent::Behaviour(RogueBehaviourEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) => {
                if let Some(bytes) = self.sync_reply.clone() {
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, bytes);
                }
            }
            _ => {}
        }
    }

    fn on_chunk_request(&mut self, request: &[u8], channel: ResponseChannel<Vec<u8>>) {
        let number = self.chunk_requests;
        self.chunk_requests += 1;
        match &self.chunks {
            Chunks::Fixed(bytes) => {
                let bytes = bytes.clone();
                let _ = self.swarm.behaviour_mut().artifacts.send_response(channel, bytes);
            }
            Chunks::Stall => self.held.push(channel),
            Chunks::Serve { then, serve, .. } if number >= *serve => match then {
                Then::Stall => self.held.push(channel),
                Then::Die => self.dead = true,
            },
            Chunks::Serve { data, info, delay, .. } => {
                let Some(index) = request.get(4..).and_then(|payload| ChunkRequest::decode(payload).ok()) else {
                    return;
                };
                let Some((offset, len)) = info.chunk_range(index.index as usize) else {
                    let _ = self.swarm.behaviour_mut().artifacts.send_response(channel, frame(&[2]));
                    return;
                };
                let chunk = data[offset as usize..offset as usize + len as usize].to_vec();
                let response = frame(&ChunkResponse::Data(chunk).encode());
                self.served.push(index.index);
                if delay.is_zero() {
                    let _ = self.swarm.behaviour_mut().artifacts.send_response(channel, response);
                } else {
                    let (delay, later) = (*delay, self.later.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let answer: Command = Box::new(move |state: &mut State| {
                            let _ = state.swarm.behaviour_mut().artifacts.send_response(channel, response);
                        });
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
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(ROGUE_LIMIT)
        .build()
        .expect("gossipsub config");
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_max_packet_size(ROGUE_LIMIT);
    kad_config.set_query_timeout(Duration::from_secs(10));
    let store_config = MemoryStoreConfig { max_value_bytes: ROGUE_LIMIT, ..MemoryStoreConfig::default() };
    let request_config = request_response::Config::default().with_request_timeout(Duration::from_secs(60));
    libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|key| {
            let mut kad =
                kad::Behaviour::with_config(peer_id, MemoryStore::with_config(peer_id, store_config), kad_config);
            // A client: honest nodes never route DHT queries through the rogue.
            kad.set_mode(Some(kad::Mode::Client));
            Ok(RogueBehaviour {
                kad,
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )?,
                identify: identify::Behaviour::new(identify::Config::new("/agora/id/1.0.0".to_owned(), key.public())),
                ping: ping::Behaviour::default(),
                artifacts: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(ARTIFACT_PROTOCOL, ProtocolSupport::Full)],
                    request_config.clone(),
                ),
                sync: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_config,
                ),
            })
        })
        .expect("rogue behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

/// The first listen address of `node`, with `/p2p/<peer id>`.
pub(crate) async fn listen_address(node: &Node) -> Multiaddr {
    let status = node.status().await.expect("status");
    let address = status.network.expect("network enabled").listen_addrs.into_iter().next().expect("a listen address");
    address.parse().expect("a multiaddr")
}
