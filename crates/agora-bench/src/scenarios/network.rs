//! Multi-node figures on loopback or in-process memory ports: publish-to-everywhere
//! propagation and DHT lookups, each against a warm request-response round trip
//! measured in the same run.

use std::time::{Duration, Instant};

use agora::net::{ChunkRequest, LinkConditions, RecordKey};
use agora::{ArtifactData, Digest, Node, Query, Registry};

use crate::report::{Figure, Scenario};
use crate::scenarios::Scale;
use crate::scenarios::transfer::{address, wait_routable};
use crate::stats::{Samples, Summary, peak_rss_kib};

/// How the nodes of a benchmark network are wired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NetSetup {
    /// TCP on 127.0.0.1, or in-process memory ports (no sockets).
    pub(crate) tcp: bool,
    /// Latency and loss injected on every link, if any.
    pub(crate) link: Option<LinkConditions>,
    /// Whether nodes pull each new peer's catalog.
    pub(crate) catalog_sync: bool,
    /// Who each node joins through.
    pub(crate) join: Join,
}

/// Who a new node bootstraps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    /// Node 0, for every node: a star until Kademlia fills the routing tables.
    /// Node 0 accepts at most 256 connections, so this stops at about 250 nodes.
    First,
    /// A pseudo-random earlier node (a fixed sequence): no node is everyone's
    /// first peer, so the network grows past any one node's connection limit.
    AnyEarlier,
}

impl NetSetup {
    /// TCP on 127.0.0.1, no injected conditions, everyone joining through node 0.
    pub(crate) fn tcp(catalog_sync: bool) -> Self {
        Self { tcp: true, link: None, catalog_sync, join: Join::First }
    }

    fn listen(&self) -> &'static str {
        if self.tcp { "/ip4/127.0.0.1/tcp/0" } else { "/memory/0" }
    }
}

/// `n` nodes set up as `setup` says; waits until each has a routable peer.
pub(crate) async fn start_nodes(root: &std::path::Path, n: usize, setup: NetSetup) -> anyhow::Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let mut addresses = Vec::with_capacity(n);
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..n {
        let mut builder = Node::builder()
            .data_dir(root.join(format!("node-{i}")))
            .listen([setup.listen()])
            .catalog_sync(setup.catalog_sync);
        if let Some(link) = setup.link {
            builder = builder.link_conditions(link.latency(), link.loss());
        }
        if i > 0 {
            let through = match setup.join {
                Join::First => 0,
                Join::AnyEarlier => {
                    random ^= random << 13;
                    random ^= random >> 7;
                    random ^= random << 17;
                    (random % i as u64) as usize
                }
            };
            builder = builder.bootstrap([&addresses[through]]);
        }
        let node = builder.build().await?;
        addresses.push(address(&node).await?);
        nodes.push(node);
    }
    for node in nodes.iter().skip(1) {
        wait_routable(node).await?;
    }
    Ok(nodes)
}

/// Warm request-response round trips between two connected nodes.
pub(crate) async fn round_trip(from: &Node, to: &Node, samples: usize) -> anyhow::Result<Summary> {
    let handle = from.network_handle().ok_or_else(|| anyhow::anyhow!("network off"))?;
    let peer = to.network_handle().ok_or_else(|| anyhow::anyhow!("network off"))?.peer_id();
    let request = ChunkRequest { digest: Digest::of(b"absent"), index: 0 };
    for _ in 0..10 {
        handle.request_chunk(peer, request).await?;
    }
    let mut rtt = Samples::default();
    for _ in 0..samples {
        let t = Instant::now();
        handle.request_chunk(peer, request).await?;
        rtt.push_duration_ms(t.elapsed());
    }
    Ok(rtt.summary())
}

pub(crate) async fn propagation(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let n = scale.pick(50, 10);
    let publishes = scale.pick(20, 5);
    let root = tempfile::tempdir()?;
    let nodes = start_nodes(root.path(), n, NetSetup::tcp(true)).await?;
    // Measured once the joins are done, not in the middle of them.
    let (settle_seconds, _) = settle(&nodes).await;
    let rtt = round_trip(&nodes[1], &nodes[0], 200).await?;
    let propagation = measure_propagation(root.path(), &nodes, publishes).await?;
    anyhow::ensure!(propagation.unreached == 0, "{} publishes never reached some node", propagation.unreached);
    if let Some(failure) = propagation.first_failure {
        anyhow::bail!("{} of {publishes} publishes failed, the first: {failure}", propagation.failed);
    }
    // The goal is about the spread: from `publish` returning to the last node.
    let summary = propagation.spread.summary();
    let (publish, everywhere) = (propagation.publish.summary(), propagation.everywhere.summary());
    for node in &nodes {
        node.shutdown().await;
    }
    Ok(vec![Scenario {
        name: format!("publish → searchable on all {n} nodes"),
        figure: Figure::latency("publish returned → last node's catalog answers", summary),
        baseline: Some(Figure::latency("warm request-response round trip", rtt)),
        ratio: Some(summary.p50 / rtt.p50),
        goal: "p99 ≤ 25 ms".into(),
        met: Some(summary.p99 <= 25.0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![
            format!(
                "{publishes} publishes from rotating nodes, after the network settled ({settle_seconds:.0} s); each \
                 node reports the package once its catalog answers for it (Node::network_arrivals)"
            ),
            format!(
                "publish itself (a DHT lookup of the new name, then puts): p50 {:.1} ms; from calling publish to \
                 the last node: p50 {:.1} / p99 {:.1} ms",
                publish.p50, everywhere.p50, everywhere.p99
            ),
        ],
    }])
}

/// What [`measure_propagation`] saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Propagation {
    /// Per publish that reached every node: milliseconds from calling
    /// `publish_archive` until the last node's catalog answered for it.
    pub(crate) everywhere: Samples,
    /// The same, from `publish_archive` returning: the spread alone.
    pub(crate) spread: Samples,
    /// Milliseconds `publish_archive` took (a new name is looked up in the DHT
    /// first).
    pub(crate) publish: Samples,
    /// Publishes that some node still did not have after [`PROPAGATION_DEADLINE`].
    pub(crate) unreached: usize,
    /// Nodes, summed over publishes, that did not have it by then.
    pub(crate) unreached_nodes: usize,
    /// Publishes that returned an error (not waited for), and the first error.
    pub(crate) failed: usize,
    pub(crate) first_failure: Option<String>,
}

/// The network has settled once this process uses fewer cores than this, or
/// its nodes opened fewer than one connection per [`SETTLED_NODES_PER_OPEN`]
/// nodes...
pub(crate) const SETTLED_CORES: f64 = 0.5;
pub(crate) const SETTLED_NODES_PER_OPEN: usize = 10;
/// ...over one window this long...
pub(crate) const SETTLE_WINDOW: Duration = Duration::from_secs(2);
/// ...or once this much time passed.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(300);
/// How long a node may take to get a published package.
pub(crate) const PROPAGATION_DEADLINE: Duration = Duration::from_secs(30);

/// Publishes `publishes` packages from rotating nodes and times until every
/// node's catalog answers for each.
pub(crate) async fn measure_propagation(
    root: &std::path::Path,
    nodes: &[Node],
    publishes: usize,
) -> anyhow::Result<Propagation> {
    let n = nodes.len();
    let mut seen = Propagation::default();
    for i in 0..publishes {
        let name = format!("propagate-{i:03}");
        let dir = root.join("packages").join(&name);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("agora.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"1.0.0\"\ndescription = \"propagation probe\"\n"),
        )?;
        let (_, bytes) = agora::archive::pack(&dir, 1 << 20)?;
        let origin = &nodes[i % n];
        // Every other node reports the package once its catalog answers for
        // it (`Node::network_arrivals`, sent after the commit): no polling load.
        let mut waits = Vec::new();
        for (j, node) in nodes.iter().enumerate().filter(|(j, _)| *j != i % n) {
            let mut arrivals = node.network_arrivals().ok_or_else(|| anyhow::anyhow!("node {j}: network off"))?;
            let (node, name) = (node.clone(), name.clone());
            waits.push(tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + PROPAGATION_DEADLINE;
                loop {
                    match tokio::time::timeout_at(deadline, arrivals.recv()).await {
                        Ok(Ok(arrived)) if arrived.as_str() == name => return Some(Instant::now()),
                        Ok(Ok(_)) => {}
                        // Fell behind: ask the catalog instead.
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                            if node.search(&Query::new(&name)).await.is_ok_and(|r| !r.hits.is_empty()) {
                                return Some(Instant::now());
                            }
                        }
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => return None,
                    }
                }
            }));
        }
        let t = Instant::now();
        if let Err(error) = origin.publish_archive(ArtifactData::Bytes(bytes.into())).await {
            waits.iter().for_each(tokio::task::JoinHandle::abort);
            seen.failed += 1;
            seen.first_failure.get_or_insert_with(|| format!("publishing {name} from node {}: {error}", i % n));
            continue;
        }
        let returned = Instant::now();
        seen.publish.push_duration_ms(returned - t);
        let mut last = Some(t);
        for wait in waits {
            match wait.await? {
                Some(seen_at) => last = last.map(|last| last.max(seen_at)),
                None => {
                    last = None;
                    seen.unreached_nodes += 1;
                }
            }
        }
        match last {
            Some(last) => {
                seen.everywhere.push_duration_ms(last - t);
                seen.spread.push_duration_ms(last.saturating_duration_since(returned));
            }
            None => seen.unreached += 1,
        }
    }
    Ok(seen)
}

pub(crate) async fn dht_lookup(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let n = scale.pick(100, 20);
    let lookups = scale.pick(100, 20);
    let root = tempfile::tempdir()?;
    let nodes = start_nodes(root.path(), n, NetSetup::tcp(false)).await?;
    let (settle_seconds, _) = settle(&nodes).await;
    let rtt = round_trip(&nodes[1], &nodes[0], 200).await?;
    let seen = measure_lookups(&nodes, lookups).await?;
    anyhow::ensure!(seen.errors == 0, "{} DHT puts or lookups failed", seen.errors);
    let (summary, requests, misses) = (seen.latency.summary(), seen.requests.summary(), seen.misses);
    let connections = seen.connections.summary();
    for node in &nodes {
        node.shutdown().await;
    }
    let hops = ((n as f64 / 20.0).log2().ceil().max(0.0) + 1.0) as u32;
    let bound = f64::from(hops + 2) * rtt.p50;
    Ok(vec![Scenario {
        name: format!("DHT lookup of a record, {n} nodes"),
        figure: Figure::latency("get_record (quorum 3 or last step)", summary),
        baseline: Some(Figure::latency("warm request-response round trip", rtt)),
        ratio: Some(summary.p50 / rtt.p50),
        goal: format!("p50 ≤ (hops+2) × round trip = {bound:.2} ms with hops = ⌈log₂(N/20)⌉+1 = {hops}"),
        met: Some(summary.p50 <= bound && misses == 0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![
            format!(
                "{misses} of {lookups} lookups found nothing; measured after the network settled ({settle_seconds:.0} s)"
            ),
            format!(
                "the network opened {:.1} connections per lookup at p50, {:.1} on average (each a dial, a Noise \
                 handshake and identify)",
                connections.p50, connections.mean
            ),
            format!(
                "Kademlia sent {:.0} requests per lookup at p50, {:.0} at most (up to 3 in flight, so not hops); \
                 the goal uses the formula",
                requests.p50,
                seen.requests.max()
            ),
        ],
    }])
}

/// What [`measure_lookups`] saw, one sample per lookup.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lookups {
    /// Milliseconds from `get_record` to its answer.
    pub(crate) latency: Samples,
    /// Requests Kademlia sent (up to three at once, so not sequential hops).
    pub(crate) requests: Samples,
    /// Connections the network opened while the lookup ran (each once).
    pub(crate) connections: Samples,
    /// Lookups that found nothing (or failed).
    pub(crate) misses: usize,
    /// Puts that failed (their keys are looked up anyway: a failed put may still
    /// have stored copies) and lookups that ended in an error.
    pub(crate) errors: usize,
}

/// Puts index records from rotating nodes and looks them up from nodes half the
/// network away.
pub(crate) async fn measure_lookups(nodes: &[Node], lookups: usize) -> anyhow::Result<Lookups> {
    let n = nodes.len();
    // Records put from rotating nodes, looked up from nodes far away in the list.
    let publisher = agora::Publisher::new(agora::SecretKey::from_bytes(&[9; 32]));
    let mut keys = Vec::new();
    let mut seen = Lookups::default();
    for i in 0..lookups.min(50) {
        let name: agora::PackageName = format!("dht-probe-{i:03}").parse()?;
        let metadata = agora::PackageMetadata::new(name.clone(), agora::parse_version("1.0.0")?, "dht probe");
        let (_, index) = publisher.publish(metadata, agora::ArtifactInfo::compute(b"x", 4096)?, None, 0)?;
        let origin = nodes[i % n].network_handle().ok_or_else(|| anyhow::anyhow!("network off"))?;
        if let Err(error) = origin.put_record(RecordKey::Index(name.clone()), index.to_bytes()).await {
            eprintln!("putting {name} from node {}: {error}", i % n);
            seen.errors += 1;
        }
        keys.push((i % n, RecordKey::Index(name)));
    }
    for lookup in 0..lookups {
        let (origin, key) = &keys[lookup % keys.len()];
        let from = &nodes[(origin + n / 2 + lookup) % n];
        let handle = from.network_handle().ok_or_else(|| anyhow::anyhow!("network off"))?;
        let opened = connections_opened(nodes);
        let t = Instant::now();
        match handle.get_record_with_stats(key.clone()).await {
            Ok((found, stats)) => {
                seen.latency.push_duration_ms(t.elapsed());
                seen.requests.push(f64::from(stats.requests));
                // Counted at both ends.
                seen.connections.push(connections_opened(nodes).saturating_sub(opened) as f64 / 2.0);
                seen.misses += usize::from(found.is_none());
            }
            Err(error) => {
                eprintln!("looking up {key}: {error}");
                seen.errors += 1;
                seen.misses += 1;
            }
        }
    }
    Ok(seen)
}

/// Waits until the nodes are done joining — over one [`SETTLE_WINDOW`] this
/// process used under [`SETTLED_CORES`] or the nodes opened fewer than one
/// connection per [`SETTLED_NODES_PER_OPEN`] nodes (the idle cost of a large
/// network alone can exceed the cores) — or [`SETTLE_LIMIT`] passed. Returns
/// the seconds it waited and the cores used in the last window.
pub(crate) async fn settle(nodes: &[agora::Node]) -> (f64, f64) {
    let started = Instant::now();
    let (mut cpu_before, mut opened_before) = (cpu_seconds(), connections_opened(nodes));
    loop {
        tokio::time::sleep(SETTLE_WINDOW).await;
        let (cpu, opened) = (cpu_seconds(), connections_opened(nodes));
        let cores = (cpu - cpu_before) / SETTLE_WINDOW.as_secs_f64();
        let quiet = opened.saturating_sub(opened_before) as usize * SETTLED_NODES_PER_OPEN < nodes.len();
        (cpu_before, opened_before) = (cpu, opened);
        if cores < SETTLED_CORES || quiet || started.elapsed() >= SETTLE_LIMIT {
            return (started.elapsed().as_secs_f64(), cores);
        }
    }
}

/// CPU time of this process so far, user and system, in seconds (Linux
/// `/proc/self/stat`, at the usual 100 ticks a second; 0 where it is missing).
pub(crate) fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Connections established so far, summed over the nodes (each connection
/// counts at both ends).
pub(crate) fn connections_opened(nodes: &[agora::Node]) -> u64 {
    nodes.iter().filter_map(agora::Node::network_handle).map(|handle| handle.connections_established()).sum()
}
