//! A hostile search peer: a raw libp2p swarm (identify, ping and
//! `/agora/search/1.0.0` through [`RawCodec`]) that answers every search request
//! with the bytes the test gives it, or accepts the stream and never answers.
//! Built like `tests/tests/rogue/peer.rs`, reduced to what search tests need.

use std::io;
use std::time::{Duration, Instant};

use agora::Node;
use agora::net::{SEARCH_PROTOCOL, split_peer};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long the peer waits for anything.
const DEADLINE: Duration = Duration::from_secs(30);
/// Far above Agora's limits, so the peer can send what Agora refuses.
const LIMIT: usize = 16 * 1024 * 1024;

#[derive(NetworkBehaviour)]
pub(crate) struct SilentBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    search: request_response::Behaviour<RawCodec>,
}

/// Requests and responses are the raw bytes of the stream.
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
    io.take(LIMIT as u64).read_to_end(&mut out).await?;
    if out.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

/// `payload` as one Agora frame.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(payload.len()).expect("frame fits a u32").to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// What the peer owns.
pub(crate) struct State {
    swarm: Swarm<SilentBehaviour>,
    /// Raw bytes answering every search request; `None`: hold the stream open and never answer.
    pub(crate) reply: Option<Vec<u8>>,
    /// Search requests received (raw frames).
    pub(crate) requests: Vec<Vec<u8>>,
    /// Streams held open without an answer.
    held: Vec<ResponseChannel<Vec<u8>>>,
    connected: Vec<PeerId>,
}

type Command = Box<dyn FnOnce(&mut State) + Send>;

/// A hostile search peer running in its own task.
pub(crate) struct SearchRogue {
    pub(crate) peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
}

impl Drop for SearchRogue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SearchRogue {
    /// A peer answering every search with `reply` (`None`: never answering).
    pub(crate) fn spawn(reply: Option<Vec<u8>>) -> Self {
        let key = Keypair::generate_ed25519();
        let peer_id = key.public().to_peer_id();
        let mut state =
            State { swarm: build_swarm(&key), reply, requests: Vec::new(), held: Vec::new(), connected: Vec::new() };
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

    /// Runs `f` on the peer's task.
    pub(crate) async fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut State) -> T + Send + 'static) -> T {
        let (reply, answer) = oneshot::channel();
        let command: Command = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.commands.send(command).expect("rogue task alive");
        answer.await.expect("rogue task answered")
    }

    /// Dials `node` and waits until both sides see the connection.
    pub(crate) async fn connect(&self, node: &Node) {
        let status = node.status().await.expect("status");
        let address: Multiaddr = status.network.expect("network").listen_addrs[0].parse().expect("a multiaddr");
        let (peer, _) = split_peer(&address).expect("a /p2p address");
        self.with(move |state| state.swarm.dial(address).expect("dial")).await;
        let end = Instant::now() + DEADLINE;
        let me = self.peer_id;
        loop {
            let ours = self.with(move |state| state.connected.contains(&peer)).await;
            let theirs =
                node.network_handle().expect("network").connected_peers().await.expect("connected peers").contains(&me);
            if ours && theirs {
                return;
            }
            assert!(Instant::now() < end, "the rogue did not connect within {DEADLINE:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends raw `bytes` as a search request to `peer` (the outcome is not kept).
    pub(crate) async fn send(&self, peer: PeerId, bytes: Vec<u8>) {
        self.with(move |state| {
            state.swarm.behaviour_mut().search.send_request(&peer, bytes);
        })
        .await;
    }

    /// Search requests received so far.
    pub(crate) async fn requests(&self) -> usize {
        self.with(|state| state.requests.len()).await
    }
}

impl State {
    fn on_event(&mut self, event: SwarmEvent<SilentBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => self.connected.push(peer_id),
            SwarmEvent::Behaviour(SilentBehaviourEvent::Search(request_response::Event::Message {
                message: request_response::Message::Request { request, channel, .. },
                ..
            })) => {
                self.requests.push(request);
                match self.reply.clone() {
                    Some(bytes) => {
                        let _ = self.swarm.behaviour_mut().search.send_response(channel, bytes);
                    }
                    None => self.held.push(channel),
                }
            }
            _ => {}
        }
    }
}

fn build_swarm(key: &Keypair) -> Swarm<SilentBehaviour> {
    let config = request_response::Config::default().with_request_timeout(Duration::from_secs(60));
    libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|key| {
            Ok(SilentBehaviour {
                identify: identify::Behaviour::new(identify::Config::new("/agora/id/1.0.0".to_owned(), key.public())),
                ping: ping::Behaviour::default(),
                search: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(SEARCH_PROTOCOL, ProtocolSupport::Full)],
                    config,
                ),
            })
        })
        .expect("rogue behaviour")
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}
