//! [`TestNet`]: N real nodes in this process, each with its own temp data dir,
//! a libp2p swarm on `127.0.0.1:0` (or a memory port, with [`over_memory`]), and
//! the first node as everyone's bootstrap.
//! Waits poll a condition until a deadline; nothing sleeps a fixed time.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora::net::PeerId;
use agora::{
    ArtifactData, ArtifactReader, Digest, NetworkSummary, Node, NodeBuilder, PackageName, Published, Query, Registry,
    Version, archive, parse_version,
};

/// Default deadline for network conditions in tests.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A network of in-process nodes.
#[derive(Debug)]
pub struct TestNet {
    root: tempfile::TempDir,
    nodes: Vec<Option<Node>>,
    bootstrap: Option<String>,
    /// Applied to every node this net starts.
    configure: fn(NodeBuilder) -> NodeBuilder,
}

impl TestNet {
    /// Starts `n` nodes; node 0 is the bootstrap of all others. Waits until every
    /// node has a peer.
    pub async fn new(n: usize) -> Self {
        Self::with(n, |builder| builder).await
    }

    /// Like [`TestNet::new`], with `configure` applied to every node's builder.
    pub async fn with(n: usize, configure: fn(NodeBuilder) -> NodeBuilder) -> Self {
        let mut net =
            Self { root: tempfile::tempdir().expect("temp dir"), nodes: Vec::new(), bootstrap: None, configure };
        for _ in 0..n {
            net.add_node().await;
        }
        net.wait_connected().await;
        net
    }

    /// Starts one more node (bootstrapping from node 0, if any); returns its index.
    pub async fn add_node(&mut self) -> usize {
        let bootstrap = self.bootstrap.clone();
        self.add_node_with(bootstrap.as_deref()).await
    }

    /// Starts one more node bootstrapping from `bootstrap` (or alone); returns its index.
    pub async fn add_node_with(&mut self, bootstrap: Option<&str>) -> usize {
        self.add_node_configured(bootstrap, |builder| builder).await
    }

    /// Starts one more node bootstrapping from `bootstrap` (or alone), with its
    /// builder passed through `configure` (e.g. [`no_catalog_sync`]);
    /// returns its index.
    pub async fn add_node_configured(
        &mut self,
        bootstrap: Option<&str>,
        configure: impl FnOnce(NodeBuilder) -> NodeBuilder,
    ) -> usize {
        let index = self.nodes.len();
        let base = self.configure;
        let node = start_configured(&self.dir(index), bootstrap, |builder| configure(base(builder))).await;
        if self.bootstrap.is_none() {
            self.bootstrap = Some(listen_address(&node).await);
        }
        self.nodes.push(Some(node));
        index
    }

    /// The peer id of node `index`.
    pub async fn peer_id(&self, index: usize) -> String {
        network_summary(self.node(index)).await.peer_id
    }

    /// The `/ip4/127.0.0.1/tcp/…/p2p/…` (or `/memory/…/p2p/…`) address of a node.
    pub async fn address(&self, index: usize) -> String {
        listen_address(self.node(index)).await
    }

    /// Node `index` (panics if it was stopped).
    pub fn node(&self, index: usize) -> &Node {
        self.nodes[index].as_ref().expect("node is running")
    }

    /// Running nodes with their indexes.
    pub fn running(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.nodes.iter().enumerate().filter_map(|(i, node)| node.as_ref().map(|node| (i, node)))
    }

    /// Number of nodes ever started.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node was started.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Data dir of node `index`.
    pub fn dir(&self, index: usize) -> PathBuf {
        self.root.path().join(format!("node-{index}"))
    }

    /// Stops node `index` (network down, data dir kept).
    pub async fn stop(&mut self, index: usize) {
        if let Some(node) = self.nodes[index].take() {
            node.shutdown().await;
        }
    }

    /// Starts node `index` again on its data dir, bootstrapping from `bootstrap`
    /// (or only from the peers it remembers, with `None`).
    pub async fn restart(&mut self, index: usize, bootstrap: Option<&str>) {
        assert!(self.nodes[index].is_none(), "stop the node first");
        self.nodes[index] = Some(start_configured(&self.dir(index), bootstrap, self.configure).await);
    }

    /// Waits until every running node has at least one connected peer.
    pub async fn wait_connected(&self) {
        self.wait_every_node(connected_peers, "nodes did not connect within").await;
    }

    /// Waits until every running node has a peer in its DHT routing table (so its
    /// record puts and lookups reach someone), when there is more than one.
    pub async fn wait_routing(&self) {
        self.wait_every_node(routing_table_size, "routing tables stayed empty for").await;
    }

    /// Waits until `count` is at least one on every running node, when there is
    /// more than one; else panics with `failure` and the deadline.
    async fn wait_every_node(&self, count: impl AsyncFn(&Node) -> usize, failure: &str) {
        let ok = wait_until(DEADLINE, || async {
            for (_, node) in self.running() {
                if count(node).await == 0 && self.running().count() > 1 {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(ok, "{failure} {DEADLINE:?}");
    }

    /// Waits until `name` is in the local catalog (search) of every running node.
    pub async fn wait_searchable_everywhere(&self, name: &str) {
        for (index, node) in self.running() {
            let ok = wait_until(DEADLINE, || searchable(node, name)).await;
            assert!(ok, "node {index} never found `{name}` in its catalog");
        }
    }

    /// Packs and publishes a package on node `index`.
    pub async fn publish(&self, index: usize, name: &str, version: &str, content: &[u8]) -> Published {
        let dir = self.root.path().join("packages").join(format!("{name}-{version}-{index}"));
        write_package(&dir, name, version, content);
        let (_, bytes) = archive::pack(&dir, 1 << 30).expect("pack");
        self.node(index).publish_archive(ArtifactData::Bytes(bytes.into())).await.expect("publish")
    }

    /// The root temp dir.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// Nodes that never block a peer: for tests that send one bad thing after
/// another and check each rejection on its own.
pub fn never_block(builder: NodeBuilder) -> NodeBuilder {
    builder.configure(|config| config.reputation.invalid_threshold = u64::MAX)
}

/// Nodes on in-process memory ports (`/memory/0`) instead of TCP: the same
/// Noise and Yamux, no sockets.
pub fn over_memory(builder: NodeBuilder) -> NodeBuilder {
    builder.listen(["/memory/0"])
}

/// Nodes without catalog sync: they hold only what they publish, are given or
/// fetch.
pub fn no_catalog_sync(builder: NodeBuilder) -> NodeBuilder {
    builder.catalog_sync(false)
}

/// Writes a package directory with one content file.
pub fn write_package(dir: &Path, name: &str, version: &str, content: &[u8]) {
    std::fs::create_dir_all(dir).expect("package dir");
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"test package {name}\"\nkeywords = [\"test\"]\n"
    );
    std::fs::write(dir.join("agora.toml"), manifest).expect("agora.toml");
    std::fs::write(dir.join("content.bin"), content).expect("content");
}

/// Starts a node in `dir` listening on 127.0.0.1.
pub async fn start(dir: &Path, bootstrap: Option<&str>) -> Node {
    start_configured(dir, bootstrap, |builder| builder).await
}

/// Starts a node in `dir` listening on 127.0.0.1, its builder passed through `configure`.
pub async fn start_configured(
    dir: &Path,
    bootstrap: Option<&str>,
    configure: impl FnOnce(NodeBuilder) -> NodeBuilder,
) -> Node {
    let mut builder = Node::builder().data_dir(dir).listen(["/ip4/127.0.0.1/tcp/0"]);
    if let Some(address) = bootstrap {
        builder = builder.bootstrap([address]);
    }
    configure(builder).build().await.expect("node starts")
}

/// The first `/ip4/…/tcp/…/p2p/…` listen address of `node`.
pub async fn listen_address(node: &Node) -> String {
    network_summary(node).await.listen_addrs.into_iter().next().expect("a listen address")
}

/// The network part of `node`'s status (panics when the network is off).
pub async fn network_summary(node: &Node) -> NetworkSummary {
    node.status().await.expect("status").network.expect("network enabled")
}

/// Whether `name` is in `node`'s catalog.
pub async fn searchable(node: &Node, name: &str) -> bool {
    node.search(&Query::new(name)).await.is_ok_and(|results| results.hits.iter().any(|hit| hit.name.as_str() == name))
}

/// Connected peers of `node`.
pub async fn connected_peers(node: &Node) -> usize {
    node.status().await.ok().and_then(|status| status.network).map_or(0, |network| network.connected_peers.len())
}

/// Peers in `node`'s DHT routing table.
pub async fn routing_table_size(node: &Node) -> usize {
    node.status().await.ok().and_then(|status| status.network).map_or(0, |network| network.routing_table_size)
}

/// Reads the bytes of a fetched artifact.
pub async fn artifact_bytes(artifact: ArtifactReader) -> Vec<u8> {
    artifact.read_to_vec().await.expect("the artifact reads back and verifies")
}

/// Version 1.0.0.
pub fn v1() -> Version {
    parse_version("1.0.0").expect("a version")
}

/// Where `node` stores the artifact `digest`.
pub fn artifact_path(node: &Node, digest: &Digest) -> PathBuf {
    let hex = digest.to_hex();
    node.data_dir().join("store").join("artifacts").join("sha256").join(&hex[..2]).join(hex)
}

/// Where `node` stages unfinished transfers.
pub fn downloads_dir(node: &Node) -> PathBuf {
    node.data_dir().join("tmp").join("downloads")
}

/// The staging files of a transfer of `digest`: the partial artifact (`.part`)
/// and its map of verified chunks (`.have`).
pub fn staging_files(node: &Node, digest: &Digest) -> (PathBuf, PathBuf) {
    let dir = downloads_dir(node);
    (dir.join(format!("{}.part", digest.to_hex())), dir.join(format!("{}.have", digest.to_hex())))
}

/// Waits until `node`'s provider lookup for `digest` finds every one of `expected`.
pub async fn wait_providers(node: &Node, digest: Digest, expected: &[PeerId]) {
    let handle = node.network_handle().expect("network").clone();
    let found = wait_until(DEADLINE, || async {
        handle.get_providers(digest).await.is_ok_and(|found| expected.iter().all(|peer| found.contains(peer)))
    })
    .await;
    assert!(found, "the node never found all of {expected:?} as providers of {digest}");
}

/// Parses a package name.
pub fn name(text: &str) -> PackageName {
    text.parse().expect("valid name")
}

/// Polls `condition` until it holds or `deadline` passes.
pub async fn wait_until<F: Future<Output = bool>>(deadline: Duration, mut condition: impl FnMut() -> F) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
