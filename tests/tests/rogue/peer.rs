//! A rogue libp2p peer speaking Agora's protocols with none of its manners: the
//! same Kademlia protocol name, signed gossip on the announce topic, identify, and
//! the artifact and sync request-response protocols through [`RawCodec`], which
//! writes whatever bytes the test hands it and reads whatever comes back.
//!
//! The swarm lives in a spawned task; the test reaches it through
//! [`Rogue::with`] (a closure run on the task) and polls the facts the task
//! records ([`State`]) with deadlines.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::{Duration, Instant};

use agora::net::{ANNOUNCE_TOPIC, ARTIFACT_PROTOCOL, KAD_PROTOCOL, SYNC_PROTOCOL, split_peer};
use agora::{Digest, Node};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, kad, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long the rogue waits for anything.
const ROGUE_DEADLINE: Duration = Duration::from_secs(30);
/// The rogue's own limits are far above Agora's, so it can send what Agora refuses.
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

/// The payload of one Agora frame.
pub(crate) fn unframe(bytes: &[u8]) -> &[u8] {
    assert!(bytes.len() >= 4, "a frame has a 4-byte length");
    let (length, payload) = bytes.split_at(4);
    assert_eq!(u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize, payload.len(), "frame length");
    payload
}

/// Which request-response protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Artifact,
    Sync,
}

/// What the rogue's task owns and records.
pub(crate) struct State {
    pub(crate) swarm: Swarm<RogueBehaviour>,
    topic: gossipsub::IdentTopic,
    /// Raw bytes answering every chunk request (`None`: drop the request).
    pub(crate) chunk_reply: Option<Vec<u8>>,
    /// Raw bytes answering every sync request (`None`: drop the request).
    pub(crate) sync_reply: Option<Vec<u8>>,
    /// Raw chunk requests received.
    pub(crate) chunk_requests: Vec<Vec<u8>>,
    /// Raw sync requests received.
    pub(crate) sync_requests: Vec<Vec<u8>>,
    pub(crate) connected: HashSet<PeerId>,
    pub(crate) subscribed: HashSet<PeerId>,
    /// Finished put and provide queries.
    pub(crate) queries: HashMap<kad::QueryId, Result<(), String>>,
    /// Answers to the rogue's own requests.
    pub(crate) responses: HashMap<OutboundRequestId, Result<Vec<u8>, String>>,
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
    /// A rogue with a fresh identity; polite by default on sync (an empty page)
    /// and silent on chunks.
    pub(crate) fn spawn() -> Self {
        let key = Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let mut swarm = build_swarm(&key);
        let topic = gossipsub::IdentTopic::new(ANNOUNCE_TOPIC);
        swarm.behaviour_mut().gossipsub.subscribe(&topic).expect("subscribe");
        let mut state = State {
            swarm,
            topic,
            chunk_reply: None,
            sync_reply: Some(frame(&[0, 0, 0, 0, 0])),
            chunk_requests: Vec::new(),
            sync_requests: Vec::new(),
            connected: HashSet::new(),
            subscribed: HashSet::new(),
            queries: HashMap::new(),
            responses: HashMap::new(),
        };
        let (commands, mut receiver) = mpsc::unbounded_channel::<Command>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = state.swarm.select_next_some() => state.on_event(event),
                    command = receiver.recv() => match command {
                        Some(command) => command(&mut state),
                        None => break,
                    },
                }
            }
        });
        Self { peer_id, commands, task }
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

    /// Dials `node`, waits for the connection and for its gossip subscription;
    /// returns its peer id.
    pub(crate) async fn connect(&self, node: &Node) -> PeerId {
        let address = listen_address(node).await;
        let (peer, bare) = split_peer(&address).expect("a /p2p address");
        self.with(move |state| {
            state.swarm.behaviour_mut().kad.add_address(&peer, bare);
            state.swarm.dial(address).expect("dial");
        })
        .await;
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

    /// Sends a PUT_VALUE with `value` under `key` to `peer` only (nothing is stored
    /// on the rogue); returns the query id.
    pub(crate) async fn put_record_to(&self, key: kad::RecordKey, value: Vec<u8>, peer: PeerId) -> kad::QueryId {
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
    pub(crate) async fn query_result(&self, id: kad::QueryId) -> Result<(), String> {
        self.poll("query result", move |state| state.queries.remove(&id)).await
    }

    /// Announces the rogue as a provider of `digest`; waits for the query.
    pub(crate) async fn start_providing(&self, digest: Digest) {
        let id = self
            .with(move |state| {
                state.swarm.behaviour_mut().kad.start_providing(agora::net::provider_key(&digest)).expect("provide")
            })
            .await;
        self.query_result(id).await.expect("provider announcement");
    }

    /// Sends raw `bytes` as a request on `proto` to `peer` and waits for the outcome.
    pub(crate) async fn request(&self, proto: Proto, peer: PeerId, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let id = self
            .with(move |state| {
                let behaviour = state.swarm.behaviour_mut();
                match proto {
                    Proto::Artifact => behaviour.artifacts.send_request(&peer, bytes),
                    Proto::Sync => behaviour.sync.send_request(&peer, bytes),
                }
            })
            .await;
        self.poll("request outcome", move |state| state.responses.remove(&id)).await
    }
}

impl State {
    fn on_event(&mut self, event: SwarmEvent<RogueBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.connected.insert(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.connected.remove(&peer_id);
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
            SwarmEvent::Behaviour(RogueBehaviourEvent::Artifacts(event)) => {
                let reply = self.chunk_reply.clone();
                let behaviour = &mut self.swarm.behaviour_mut().artifacts;
                on_exchange(event, behaviour, reply, &mut self.chunk_requests, &mut self.responses);
            }
            SwarmEvent::Behaviour(RogueBehaviourEvent::Sync(event)) => {
                let reply = self.sync_reply.clone();
                let behaviour = &mut self.swarm.behaviour_mut().sync;
                on_exchange(event, behaviour, reply, &mut self.sync_requests, &mut self.responses);
            }
            _ => {}
        }
    }
}

fn on_exchange(
    event: request_response::Event<Vec<u8>, Vec<u8>>,
    behaviour: &mut request_response::Behaviour<RawCodec>,
    reply: Option<Vec<u8>>,
    requests: &mut Vec<Vec<u8>>,
    responses: &mut HashMap<OutboundRequestId, Result<Vec<u8>, String>>,
) {
    match event {
        request_response::Event::Message { message, .. } => match message {
            request_response::Message::Request { request, channel, .. } => {
                requests.push(request);
                if let Some(bytes) = reply {
                    let _ = behaviour.send_response(channel, bytes);
                }
            }
            request_response::Message::Response { request_id, response } => {
                responses.insert(request_id, Ok(response));
            }
        },
        request_response::Event::OutboundFailure { request_id, error, .. } => {
            responses.insert(request_id, Err(error.to_string()));
        }
        _ => {}
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
    let request_config = request_response::Config::default().with_request_timeout(Duration::from_secs(10));
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
