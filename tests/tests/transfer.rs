//! Multi-provider transfers between real nodes on 127.0.0.1, with rogue providers
//! ([`agora_tests::rogue`]) that lie, dawdle, stall or vanish mid-transfer: the fetch
//! still completes from the honest providers with the right bytes, the misbehaving
//! ones are dropped with a reason and their reputation shows it, liars get blocked
//! (also after a restart), partial transfers resume, and the storage policy evicts
//! the least recently used fetched artifacts but never published or pinned ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use agora::net::{Announcement, ChunkRequest, ChunkResponse, PeerId, Wire};
use agora::{
    ArtifactInfo, ArtifactReader, Digest, ManualClock, Node, NodeBuilder, PeerStanding, ProviderProgress, Registry,
    TransferProgress, TransferState,
};
use agora_tests::net::{
    DEADLINE, TestNet, artifact_bytes, artifact_path, downloads_dir, name, network_summary, searchable, staging_files,
    v1, wait_providers, wait_until,
};
use agora_tests::rogue::{Proto, Reply, Rogue, Then, frame};
use agora_tests::{files_under, noise, unix_now};
use futures::StreamExt;

/// The publishing chunk size of these tests: a 1 MiB artifact has 64 chunks.
const CHUNK: u32 = 16 * 1024;

fn small_chunks(builder: NodeBuilder) -> NodeBuilder {
    builder.configure(|config| config.chunk_size = CHUNK)
}

/// Small chunks, and a chunk request unanswered for 300 ms times out.
fn impatient(builder: NodeBuilder) -> NodeBuilder {
    small_chunks(builder).configure(|config| config.transfer.chunk_timeout_ms = 300)
}

/// Fetches `package@1.0.0` on `node`, watching the transfer; returns the outcome
/// and the last progress report.
async fn fetch_watched(node: &Node, package: &str) -> (agora::core::Result<ArtifactReader>, TransferProgress) {
    let mut fetch = node.fetch(&name(package), &v1()).await.expect("the manifest");
    // The progress stream ends when the fetch does.
    while fetch.next().await.is_some() {}
    let last = fetch.progress();
    (fetch.finish().await, last)
}

/// The artifact bytes `node` holds for `package@1.0.0`.
async fn local_bytes(node: &Node, package: &str) -> Vec<u8> {
    artifact_bytes(node.registry().fetch_artifact(&name(package), &v1()).await.expect("held locally")).await
}

fn peer_of(node: &Node) -> PeerId {
    node.network_handle().expect("network").peer_id()
}

/// `node`'s standing of `peer`, if it keeps one.
async fn standing(node: &Node, peer: &PeerId) -> Option<PeerStanding> {
    let id = peer.to_string();
    node.peers().await.expect("peers").into_iter().find(|info| info.peer_id == id).and_then(|info| info.standing)
}

async fn successes(node: &Node, peer: &PeerId) -> u64 {
    standing(node, peer).await.map_or(0, |standing| standing.successes)
}

async fn is_connected(node: &Node, peer: &PeerId) -> bool {
    network_summary(node).await.connected_peers.contains(&peer.to_string())
}

/// What `peer` did in a transfer.
fn part_of<'a>(progress: &'a TransferProgress, peer: &PeerId) -> &'a ProviderProgress {
    let id = peer.to_string();
    progress
        .providers
        .iter()
        .find(|provider| provider.peer == id)
        .unwrap_or_else(|| panic!("{peer} took no part in the transfer: {progress:#?}"))
}

/// Checks a finished transfer: done, every chunk in, no chunk resumed or counted twice.
fn assert_complete(progress: &TransferProgress, info: &ArtifactInfo) {
    assert_eq!(progress.state, TransferState::Done, "{progress:#?}");
    assert_eq!(progress.chunks_total, info.chunks.len());
    assert_eq!(progress.chunks_done, info.chunks.len());
    assert_eq!(progress.received_bytes, info.size);
    let served: usize = progress.providers.iter().map(|provider| provider.chunks).sum();
    assert_eq!(served + (progress.resumed_bytes.div_ceil(u64::from(CHUNK)) as usize), info.chunks.len());
}

/// Publishes `package@1.0.0` (`len` bytes of noise from `seed`) on node 0 and
/// waits until node 1 knows it; returns the artifact's bytes and description.
async fn publish_for_node_1(net: &TestNet, package: &str, len: usize, seed: u64) -> (Vec<u8>, ArtifactInfo) {
    net.publish(0, package, "1.0.0", &noise(len, seed)).await;
    assert!(wait_until(DEADLINE, || searchable(net.node(1), package)).await);
    let bytes = local_bytes(net.node(0), package).await;
    let info = net.node(1).get_version(&name(package), &v1()).await.unwrap().manifest().artifact.clone();
    (bytes, info)
}

/// Connects `rogue` to the `honest` nodes and to `fetcher`, has it provide
/// `digest` and waits until `fetcher` finds it and every honest node as providers.
async fn provide_beside(net: &TestNet, rogue: &Rogue, honest: &[usize], fetcher: usize, digest: Digest) {
    for index in honest.iter().copied().chain([fetcher]) {
        rogue.connect(net.node(index)).await;
    }
    rogue.start_providing(digest).await;
    let mut providers: Vec<PeerId> = honest.iter().map(|index| peer_of(net.node(*index))).collect();
    providers.push(rogue.peer_id);
    wait_providers(net.node(fetcher), digest, &providers).await;
}

/// A package published on a lone node `publisher`, relayed to `fetcher` by
/// `rogue` (which gossips the publisher's signed index and manifest, as any peer
/// may), so that `fetcher` knows the package but only the rogue as its provider.
async fn relay_package(net: &TestNet, publisher: usize, fetcher: usize, rogue: &Rogue, package: &str) -> ArtifactInfo {
    let info = relay_manifest(net, publisher, fetcher, rogue, package).await;
    rogue.start_providing(info.digest).await;
    wait_providers(net.node(fetcher), info.digest, &[rogue.peer_id]).await;
    info
}

/// Like [`relay_package`], without the rogue providing: nobody `fetcher` can
/// reach holds the artifact.
async fn relay_manifest(net: &TestNet, publisher: usize, fetcher: usize, rogue: &Rogue, package: &str) -> ArtifactInfo {
    let node = net.node(fetcher);
    let index = net.node(publisher).get_package(&name(package)).await.expect("the index");
    let manifest = net.node(publisher).get_version(&name(package), &v1()).await.expect("the manifest");
    rogue.connect(node).await;
    rogue.gossip(Announcement::Publish { manifest: manifest.to_bytes(), index: index.to_bytes() }.encode()).await;
    let known = wait_until(DEADLINE, || async { node.registry().get_version(&name(package), &v1()).await.is_ok() });
    assert!(known.await, "the fetcher never stored the relayed manifest of `{package}`");
    manifest.manifest().artifact.clone()
}

// ---------------------------------------------------------------------------
// 1 and 8. A liar among honest providers.

/// `fetcher` fetches `package` (held by the `honest` nodes) while a rogue that
/// provides the same artifact answers every chunk with wrong bytes. Returns the
/// rogue and the last progress report, after checking the fetch succeeded.
async fn fetch_past_a_liar(
    net: &TestNet,
    fetcher: usize,
    honest: &[usize],
    package: &str,
) -> (Rogue, TransferProgress) {
    let node = net.node(fetcher);
    let info = node.get_version(&name(package), &v1()).await.unwrap().manifest().artifact.clone();
    let expected = local_bytes(net.node(honest[0]), package).await;
    let lie = frame(&ChunkResponse::Data(vec![0; CHUNK as usize]).encode());
    let liar = Rogue::answering(Proto::Artifact, Reply::Fixed(lie));
    provide_beside(net, &liar, honest, fetcher, info.digest).await;

    let (fetched, progress) = fetch_watched(node, package).await;
    let artifact = fetched.unwrap_or_else(|error| panic!("the fetch failed despite honest providers: {error}"));
    assert!(artifact_bytes(artifact).await == expected, "the fetched bytes differ from the published ones");
    assert_complete(&progress, &info);
    let lied = part_of(&progress, &liar.peer_id);
    assert_eq!(lied.chunks, 0, "no chunk of the liar verified");
    let reason = lied.dropped.as_deref().expect("the liar was dropped");
    assert!(reason.contains("bad chunk"), "dropped for: {reason}");
    (liar, progress)
}

/// Waits until `fetcher` blocked the liar and the connection between them is gone.
async fn assert_blocked(node: &Node, liar: &Rogue) -> PeerStanding {
    let id = liar.peer_id;
    let blocked = wait_until(DEADLINE, || async {
        standing(node, &id).await.is_some_and(|standing| standing.invalid >= 1 && standing.banned_until > unix_now())
    });
    assert!(blocked.await, "the liar was not blocked: {:?}", standing(node, &id).await);
    let me = peer_of(node);
    let cut = wait_until(DEADLINE, || async {
        !is_connected(node, &id).await && !liar.with(move |state| state.connected.contains(&me)).await
    });
    assert!(cut.await, "the liar is still connected to the node that blocked it");
    standing(node, &id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_honest_providers_and_a_liar() {
    let mut net = TestNet::with(3, small_chunks).await;
    let content = noise(1 << 20, 1);
    let published = net.publish(0, "popular", "1.0.0", &content).await;
    let info = published.manifest.manifest().artifact.clone();
    assert!(info.chunks.len() >= 64, "{} chunks", info.chunks.len());
    net.wait_searchable_everywhere("popular").await;
    let expected = local_bytes(net.node(0), "popular").await;
    for index in [1, 2] {
        let artifact = net.node(index).fetch_artifact(&name("popular"), &v1()).await.unwrap();
        assert!(artifact_bytes(artifact).await == expected, "node {index} fetched other bytes");
    }

    let bootstrap = net.address(0).await;
    let fetcher = net
        .add_node_configured(Some(&bootstrap), |builder| {
            builder.configure(|config| {
                config.transfer.max_providers = 4;
                config.reputation.invalid_threshold = 1;
            })
        })
        .await;
    let node = net.node(fetcher).clone();
    assert!(wait_until(DEADLINE, || searchable(&node, "popular")).await);
    let honest: Vec<PeerId> = (0..3).map(|index| peer_of(net.node(index))).collect();
    let mut before = Vec::new();
    for peer in &honest {
        before.push(successes(&node, peer).await);
    }

    let (liar, progress) = fetch_past_a_liar(&net, fetcher, &[0, 1, 2], "popular").await;
    assert_eq!(progress.providers.len(), 4, "all four providers took part: {progress:#?}");
    for ((index, peer), before) in honest.iter().enumerate().zip(before) {
        let part = part_of(&progress, peer);
        assert!(part.dropped.is_none(), "honest node {index} was dropped: {part:?}");
        assert!(part.chunks >= 1, "honest node {index} served no chunk: {progress:#?}");
        let after = successes(&node, peer).await;
        assert!(
            after >= before + part.chunks as u64,
            "node {index}: {before} successes before, {after} after serving {} chunks",
            part.chunks
        );
    }
    let standing = assert_blocked(&node, &liar).await;
    eprintln!(
        "liar: {:?}; chunks per provider: {:?}",
        standing,
        progress.providers.iter().map(|provider| provider.chunks).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reputation_and_blocks_survive_a_restart() {
    let mut net = TestNet::with(2, |builder| {
        builder.configure(|config| {
            config.chunk_size = CHUNK;
            config.reputation.invalid_threshold = 1;
        })
    })
    .await;
    publish_for_node_1(&net, "remembered", 256 * 1024, 8).await;
    let (liar, _) = fetch_past_a_liar(&net, 1, &[0], "remembered").await;
    let before = assert_blocked(net.node(1), &liar).await;

    net.stop(1).await;
    let me = net.dir(1);
    net.restart(1, None).await;
    let node = net.node(1).clone();
    assert_eq!(node.data_dir(), me);
    let after = standing(&node, &liar.peer_id).await.expect("the liar's record survived");
    assert_eq!(after.invalid, before.invalid, "invalid count after the restart");
    assert_eq!(after.banned_until, before.banned_until, "the block survived the restart");
    assert!(after.banned_until > unix_now());

    // The liar tries to come back: the dial fails or the connection closes at once.
    let target = peer_of(&node);
    let (closed_before, errors_before) = liar
        .with(move |state| (state.closed.get(&target).copied().unwrap_or(0), state.dial_errors.contains_key(&target)))
        .await;
    assert!(!errors_before);
    liar.dial(&node).await;
    liar.poll("a refused dial or a closed connection", move |state| {
        let refused = state.dial_errors.contains_key(&target);
        let closed = state.closed.get(&target).copied().unwrap_or(0) > closed_before;
        ((refused || closed) && !state.connected.contains(&target)).then_some(())
    })
    .await;
    let seen =
        liar.with(move |state| (state.established.get(&target).copied(), state.dial_errors.get(&target).cloned()));
    eprintln!("the liar's dial after the restart (connections established, dial error): {:?}", seen.await);
    assert!(!is_connected(&node, &liar.peer_id).await, "the restarted node accepted the liar");
    let info = node.peers().await.unwrap().into_iter().find(|info| info.peer_id == liar.peer_id.to_string()).unwrap();
    assert!(!info.connected);
    // The honest publisher is still welcome.
    assert!(wait_until(DEADLINE, || async { is_connected(&node, &peer_of(net.node(0))).await }).await);
}

// ---------------------------------------------------------------------------
// 2. A slow provider next to a fast one.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_provider_serves_most_chunks() {
    let net = TestNet::with(2, small_chunks).await;
    let (bytes, info) = publish_for_node_1(&net, "raced", 2 << 20, 2).await;
    let node = net.node(1);
    let slow =
        Rogue::answering(Proto::Artifact, Reply::honest(bytes.clone(), info.clone(), Duration::from_millis(100)));
    provide_beside(&net, &slow, &[0], 1, info.digest).await;
    let fast = peer_of(net.node(0));

    let (fetched, progress) = fetch_watched(node, "raced").await;
    assert!(artifact_bytes(fetched.unwrap()).await == bytes);
    assert_complete(&progress, &info);
    let (quick, dawdler) = (part_of(&progress, &fast), part_of(&progress, &slow.peer_id));
    eprintln!("{} chunks: fast provider {}, slow provider {}", info.chunks.len(), quick.chunks, dawdler.chunks);
    assert!(quick.dropped.is_none() && dawdler.dropped.is_none(), "slow is not broken: {progress:#?}");
    assert!(dawdler.chunks >= 1, "the slow provider took part");
    assert!(quick.chunks * 10 >= info.chunks.len() * 7, "the fast provider served {} chunks", quick.chunks);
    let (fast_standing, slow_standing) =
        (standing(node, &fast).await.unwrap(), standing(node, &slow.peer_id).await.unwrap());
    eprintln!("fast: {fast_standing:?}\nslow: {slow_standing:?}");
    assert!(slow_standing.latency_ms.unwrap() > fast_standing.latency_ms.unwrap());
    assert!(slow_standing.successes >= dawdler.chunks as u64);
}

// ---------------------------------------------------------------------------
// 3. A provider that goes away mid-transfer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_killed_mid_transfer_is_replaced() {
    let net = TestNet::with(2, small_chunks).await;
    let (bytes, info) = publish_for_node_1(&net, "orphaned", 1 << 20, 3).await;
    let node = net.node(1);
    let mortal = Rogue::answering(Proto::Artifact, Reply::first(bytes.clone(), info.clone(), 8, Then::Die));
    provide_beside(&net, &mortal, &[0], 1, info.digest).await;
    let honest = peer_of(net.node(0));

    let (fetched, progress) = fetch_watched(node, "orphaned").await;
    assert!(artifact_bytes(fetched.unwrap()).await == bytes);
    assert_complete(&progress, &info);
    assert!(wait_until(DEADLINE, || async { mortal.is_dead() }).await, "the rogue's swarm stopped mid-transfer");
    let gone = part_of(&progress, &mortal.peer_id);
    let reason = gone.dropped.as_deref().expect("the vanished provider was dropped");
    assert!(!reason.is_empty());
    assert!((1..=8).contains(&gone.chunks), "it served {} chunks before it died", gone.chunks);
    assert!(part_of(&progress, &honest).dropped.is_none());
    eprintln!("vanished after {} chunks, dropped for: {reason}", gone.chunks);
    let standing = standing(node, &mortal.peer_id).await.unwrap();
    assert!(standing.failures + standing.timeouts >= 1, "{standing:?}");
    assert_eq!(standing.invalid, 0, "vanishing is not lying");
}

// ---------------------------------------------------------------------------
// 4. A provider that never answers.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_provider_times_out() {
    let net = TestNet::with(2, impatient).await;
    let (bytes, info) = publish_for_node_1(&net, "stalled", 512 * 1024, 4).await;
    let node = net.node(1);
    let staller = Rogue::answering(Proto::Artifact, Reply::Stall);
    provide_beside(&net, &staller, &[0], 1, info.digest).await;
    let honest = peer_of(net.node(0));

    let started = std::time::Instant::now();
    let (fetched, progress) = fetch_watched(node, "stalled").await;
    assert!(artifact_bytes(fetched.unwrap()).await == bytes);
    assert_complete(&progress, &info);
    let stuck = part_of(&progress, &staller.peer_id);
    assert_eq!(stuck.chunks, 0);
    let reason = stuck.dropped.as_deref().expect("the stalled provider was dropped");
    assert!(reason.contains("stalled"), "dropped for: {reason}");
    assert_eq!(part_of(&progress, &honest).chunks, info.chunks.len());
    let standing = standing(node, &staller.peer_id).await.unwrap();
    assert!(standing.timeouts >= 1, "{standing:?}");
    assert!(staller.requests(Proto::Artifact).await >= 1);
    eprintln!("fetched past a stalled provider in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------
// 5. Every provider gone.

/// A fetch of `package` whose only provider never answers: returns the net (the
/// fetcher is node 0), the artifact, the error and the last progress report.
async fn fetch_from_a_staller_only(package: &str) -> (TestNet, Rogue, ArtifactInfo, String, TransferProgress) {
    let mut net = TestNet::with(1, impatient).await;
    let publisher = net.add_node_with(None).await;
    net.publish(publisher, package, "1.0.0", &noise(256 * 1024, 5)).await;
    let staller = Rogue::answering(Proto::Artifact, Reply::Stall);
    let info = relay_package(&net, publisher, 0, &staller, package).await;
    let (fetched, progress) = fetch_watched(net.node(0), package).await;
    let error = fetched.expect_err("no provider answers").to_string();
    (net, staller, info, error, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_with_no_working_provider_fails_cleanly() {
    let (net, staller, info, error, progress) = fetch_from_a_staller_only("stranded").await;
    let node = net.node(0);
    assert!(error.contains("stranded@1.0.0"), "the error names the package: {error}");
    assert!(error.contains(&staller.peer_id.to_string()), "the error names the provider tried: {error}");
    assert!(matches!(&progress.state, TransferState::Failed(reason) if *reason == error), "{progress:#?}");
    assert_eq!(progress.chunks_done, 0);
    assert_eq!(node.status().await.unwrap().registry.artifacts, 0, "no artifact stored");
    assert!(!artifact_path(node, &info.digest).exists());
    let stored = files_under(&node.data_dir().join("store").join("artifacts").join("sha256"));
    assert!(stored.is_empty(), "no artifact file: {stored:?}");
    let leftovers = files_under(&downloads_dir(node));
    assert!(leftovers.is_empty(), "nothing verified, nothing kept: {leftovers:?}");
    assert!(staller.requests(Proto::Artifact).await >= 1);
    eprintln!("{error}");
}

/// A transfer that verified no chunk discards its staging files, so its error
/// must not promise that "the verified chunks are kept in tmp/downloads and the
/// next fetch resumes from them" (it once always did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_with_nothing_verified_does_not_promise_a_resume() {
    let (net, _staller, _, error, _) = fetch_from_a_staller_only("unpromised").await;
    assert!(files_under(&downloads_dir(net.node(0))).is_empty());
    assert!(!error.contains("kept"), "nothing was kept, yet the error says: {error}");
}

/// A transfer (crates/agora/src/transfer/mod.rs) once created the staging files
/// (the `.part` sized to the whole artifact) before it checked
/// that a provider was left, and returned "no reachable provider" without removing
/// them, although nothing verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_with_no_provider_leaves_no_staging_files() {
    let mut net = TestNet::with(1, small_chunks).await;
    let publisher = net.add_node_with(None).await;
    net.publish(publisher, "unprovided", "1.0.0", &noise(256 * 1024, 9)).await;
    let relay = Rogue::answering(Proto::Artifact, Reply::Stall);
    relay_manifest(&net, publisher, 0, &relay, "unprovided").await;
    let node = net.node(0);
    let (fetched, _) = fetch_watched(node, "unprovided").await;
    let error = fetched.expect_err("nobody provides it").to_string();
    assert!(error.contains("unprovided@1.0.0") && error.contains("no reachable provider"), "{error}");
    let leftovers = files_under(&downloads_dir(node));
    assert!(leftovers.is_empty(), "nothing verified, yet the staging files stay: {leftovers:?}");
}

// ---------------------------------------------------------------------------
// 6. Resuming a partial transfer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_transfer_resumes_from_another_provider() {
    const SERVED: usize = 10;
    let mut net = TestNet::with(1, impatient).await;
    let publisher = net.add_node_with(None).await;
    net.publish(publisher, "resumed", "1.0.0", &noise(1 << 20, 6)).await;
    let bytes = local_bytes(net.node(publisher), "resumed").await;
    let manifest = net.node(publisher).get_version(&name("resumed"), &v1()).await.unwrap();
    let info = manifest.manifest().artifact.clone();
    let quitter = Rogue::answering(Proto::Artifact, Reply::first(bytes.clone(), info.clone(), SERVED, Then::Stall));
    relay_package(&net, publisher, 0, &quitter, "resumed").await;
    let node = net.node(0);

    let (fetched, progress) = fetch_watched(node, "resumed").await;
    let error = fetched.expect_err("the only provider stalls").to_string();
    assert!(error.contains("resumed@1.0.0") && error.contains("kept"), "{error}");
    assert_eq!(progress.chunks_done, SERVED, "{progress:#?}");
    let (part, have) = staging_files(node, &info.digest);
    assert!(part.exists() && have.exists(), "the staging files are kept for resuming");
    let marks = std::fs::read(&have).unwrap();
    assert_eq!(marks.iter().filter(|mark| **mark == 1).count(), SERVED);
    assert!(!artifact_path(node, &info.digest).exists());

    // The publisher comes online and provides.
    let address = net.address(0).await.parse().unwrap();
    let publisher_node = net.node(publisher);
    publisher_node.network_handle().unwrap().dial(address).await.expect("the publisher reaches the fetcher");
    let routed = wait_until(DEADLINE, || async { network_summary(publisher_node).await.routing_table_size >= 1 });
    assert!(routed.await);
    publisher_node.network_handle().unwrap().start_providing(info.digest).await.expect("provide");
    wait_providers(node, info.digest, &[peer_of(publisher_node)]).await;

    let (fetched, progress) = fetch_watched(node, "resumed").await;
    let artifact = fetched.expect("the second fetch completes");
    assert!(artifact_bytes(artifact).await == bytes);
    let served: Vec<u32> = quitter.with(|state| state.served.clone()).await;
    assert_eq!(served.len(), SERVED);
    let resumed: u64 = served.iter().map(|index| u64::from(info.chunk_range(*index as usize).unwrap().1)).sum();
    assert!(progress.resumed_bytes > 0);
    assert_eq!(progress.resumed_bytes, resumed, "exactly the verified chunks were resumed");
    assert_complete(&progress, &info);
    assert_eq!(part_of(&progress, &peer_of(publisher_node)).chunks, info.chunks.len() - SERVED);
    assert!(!have.exists() && !part.exists(), "the staging files are gone after the transfer");
    assert!(artifact_path(node, &info.digest).exists());
}

// ---------------------------------------------------------------------------
// 7. Chunk requests for what a provider does not have.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_digests_and_bad_indexes_are_refused() {
    let net = TestNet::with(2, small_chunks).await;
    let published = net.publish(0, "indexed", "1.0.0", &noise(100 * 1024, 7)).await;
    let info = published.manifest.manifest().artifact.clone();
    let provider = peer_of(net.node(0));
    let handle = net.node(1).network_handle().unwrap();
    let ask = |digest: Digest, index: u32| handle.request_chunk(provider, ChunkRequest { digest, index });

    assert_eq!(ask(Digest::of(b"nobody has this"), 0).await.unwrap(), ChunkResponse::NotFound);
    let last = info.chunks.len() as u32 - 1;
    assert_eq!(ask(info.digest, last + 1).await.unwrap(), ChunkResponse::OutOfRange);
    assert_eq!(ask(info.digest, u32::MAX).await.unwrap(), ChunkResponse::OutOfRange);
    match ask(info.digest, last).await.unwrap() {
        ChunkResponse::Data(bytes) => assert_eq!(Digest::of(&bytes), info.chunks[last as usize]),
        other => panic!("the last chunk exists, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 9. Storage policy.

/// Most bytes of fetched artifacts kept: two of this test's artifacts fit, three do not.
const CACHE_LIMIT: u64 = 160_000;

/// Moves the fetcher's clock to its next second (the eviction order is by last
/// use in whole seconds); no test waits for the wall clock.
fn next_second(clock: &ManualClock) {
    clock.advance(Duration::from_secs(1));
}

async fn cached(node: &Node) -> (u64, u64, u64) {
    let storage = node.status().await.unwrap().storage;
    (storage.cached_artifacts, storage.cached_bytes, storage.pinned_artifacts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_evicts_least_recently_used_never_published_or_pinned() {
    let mut net = TestNet::with(1, |builder| builder.configure(|c| c.storage.max_cached_bytes = CACHE_LIMIT)).await;
    // The fetcher's clock moves by hand (each node gets the limit from `with`).
    let clock = Arc::new(ManualClock::new());
    let bootstrap = net.address(0).await;
    let node_clock = clock.clone();
    net.add_node_configured(Some(&bootstrap), move |builder| builder.clock(node_clock)).await;
    let (publisher, fetcher) = (net.node(0), net.node(1));
    let packages = ["lru-one", "lru-two", "lru-three", "lru-four"];
    let mut infos = Vec::new();
    for (seed, package) in (10..).zip(packages) {
        let published = net.publish(0, package, "1.0.0", &noise(64 * 1024, seed)).await;
        infos.push(published.manifest.manifest().artifact.clone());
    }
    net.publish(1, "lru-mine", "1.0.0", &noise(64 * 1024, 20)).await;
    let largest = infos.iter().map(|info| info.size).max().unwrap();
    let smallest = infos.iter().map(|info| info.size).min().unwrap();
    assert!(2 * largest <= CACHE_LIMIT && 3 * smallest > CACHE_LIMIT, "sizes {smallest}..{largest}");
    for package in packages {
        assert!(wait_until(DEADLINE, || searchable(fetcher, package)).await);
    }
    assert!(wait_until(DEADLINE, || searchable(publisher, "lru-mine")).await);
    let held = |index: usize| artifact_path(fetcher, &infos[index].digest).exists();
    let fetch = |package: &'static str| async move {
        let artifact = fetcher.fetch_artifact(&name(package), &v1()).await.expect("fetch");
        assert!(artifact_bytes(artifact).await == local_bytes(publisher, package).await);
    };

    fetch("lru-one").await;
    assert_eq!(cached(fetcher).await, (1, infos[0].size, 1));
    next_second(&clock);
    fetch("lru-two").await;
    assert_eq!(cached(fetcher).await, (2, infos[0].size + infos[1].size, 1));
    next_second(&clock);
    fetch("lru-one").await; // a local hit: lru-one is now the most recently used
    next_second(&clock);
    fetch("lru-three").await;
    assert!(held(0) && !held(1) && held(2), "the least recently used (lru-two) was evicted");
    assert_eq!(cached(fetcher).await, (2, infos[0].size + infos[2].size, 1));
    assert!(matches!(
        fetcher.registry().fetch_artifact(&name("lru-two"), &v1()).await,
        Err(agora::core::Error::ArtifactUnavailable { .. })
    ));

    // Pinned: lru-one is now the least recently used, and kept.
    next_second(&clock);
    assert!(fetcher.set_pinned(&name("lru-one"), &v1(), true).await.unwrap());
    assert_eq!(cached(fetcher).await, (1, infos[2].size, 2));
    fetch("lru-four").await;
    next_second(&clock);
    fetch("lru-two").await;
    assert!(held(0), "the pinned artifact survived a fetch that evicts");
    assert!(!held(2) && held(3) && held(1), "the least recently used unpinned one (lru-three) went instead");
    assert_eq!(cached(fetcher).await, (2, infos[3].size + infos[1].size, 2));
    // Unpinned, it is the least recently used and over the limit: it goes.
    assert!(fetcher.set_pinned(&name("lru-one"), &v1(), false).await.unwrap());
    assert!(!held(0), "unpinning applies the limit");
    assert_eq!(cached(fetcher).await, (2, infos[3].size + infos[1].size, 1));

    // The publisher fetches something (running its eviction): its own
    // publications, four artifacts over the limit, all stay.
    let mine = publisher.fetch_artifact(&name("lru-mine"), &v1()).await.expect("fetch lru-mine");
    assert!(artifact_bytes(mine).await == local_bytes(fetcher, "lru-mine").await);
    for (info, package) in infos.iter().zip(packages) {
        assert!(artifact_path(publisher, &info.digest).exists(), "the publisher's {package} was evicted");
    }
    let (count, _, pinned) = cached(publisher).await;
    assert_eq!((count, pinned), (1, 4));
}

/// A node whose disk cannot hold an artifact refuses to download it before the
/// first byte, says how much space it needs, and stages nothing (issue 13: a
/// full disk used to fill up with the partial kept for resume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_the_disk_cannot_hold_is_refused_before_it_starts() {
    let mut net = TestNet::new(1).await;
    net.publish(0, "roomy", "1.0.0", &noise(24 << 20, 7)).await;
    let disk = agora_tests::SmallDisk::mount(&net.dir(1), "20m");
    let small = net.add_node().await;
    net.wait_searchable_everywhere("roomy").await;
    let error = match net.node(small).fetch(&name("roomy"), &v1()).await {
        Ok(fetch) => fetch.finish().await.map(|_| ()).expect_err("a 24 MiB download on a 20 MiB disk"),
        Err(error) => error,
    };
    assert!(matches!(error, agora::core::Error::NoSpace { needed, .. } if needed > 24 << 20), "{error}");
    assert!(error.to_string().contains("free space"), "{error}");
    assert!(files_under(&downloads_dir(net.node(small))).is_empty(), "something was staged");
    net.stop(small).await;
    drop(disk);
}
