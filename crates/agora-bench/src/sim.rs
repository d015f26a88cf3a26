//! `cargo xtask sim --nodes N | --sweep 10,50,100,200,500 [--tcp] [--latency MS]
//! [--loss FRACTION] [--catalog-sync]`: an in-process network of N real nodes, measuring how
//! start-up, memory and file descriptors per node, publish-to-everywhere
//! propagation and DHT lookups grow with N.
//!
//! Nodes talk over in-process memory ports (`/memory/0`, the real Noise and
//! Yamux, no sockets) unless `--tcp` puts them on 127.0.0.1. `--latency` and
//! `--loss` inject one-way latency and a retransmission penalty into every link
//! ([`agora::net::LinkConditions`]). Each node joins through a pseudo-random
//! earlier node ([`Join::AnyEarlier`]), so no node is everyone's first peer.
//!
//! Kademlia's bootstrap on join contacts much of a small network, and gossipsub
//! keeps a long-lived stream on every connection, so no connection idles out
//! (rust-libp2p issue #5190): each node trims its idle connections beyond its
//! peer budget instead (64, down to 48; `agora_net::PeerBudget`), so
//! connections per node level off as N grows.
//!
//! Catalog sync is off unless `--catalog-sync`: every node joins before anything
//! is published, so it would carry nothing, and propagation is gossip's to show.
//! With it on, a node pulls the catalogs of the first peers that connect while
//! one of its 4 sync slots is free, each at most once per 10 minutes.
//!
//! Each size of a sweep runs in a child process of its own, so one size's memory
//! (which the allocator keeps after shutdown) does not hide in the next one's
//! figures, and a size that fails is reported without ending the sweep.
//!
//! Kademlia does not report hops. Each lookup reports the requests it sent (up
//! to three are in flight at once); with injected latency, the sequential hops
//! are estimated as lookup latency ÷ the warm round trip measured in the same
//! run (dials to new peers count as the round trips they cost).
//!
//! Not measured: bandwidth, churn, anything across machines.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora::net::LinkConditions;

use crate::scenarios::network::{
    Join, NetSetup, PROPAGATION_DEADLINE, connections_opened, cpu_seconds, measure_lookups, measure_propagation,
    round_trip, settle, start_nodes,
};
use crate::stats::rss_kib;

/// Packages published (from rotating nodes) per size.
const PUBLISHES: usize = 5;
/// Record lookups per size.
const LOOKUPS: usize = 50;
/// How long the settled network is watched doing nothing before measuring.
const IDLE_WINDOW: Duration = Duration::from_secs(20);
/// Warm round trips measured per size.
const ROUND_TRIPS: usize = 20;

/// What to simulate, from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimOptions {
    /// Network sizes, run one after the other.
    pub(crate) sizes: Vec<usize>,
    /// TCP on 127.0.0.1 instead of memory ports.
    pub(crate) tcp: bool,
    /// One-way latency per link, in milliseconds.
    pub(crate) latency_ms: u64,
    /// Probability of a retransmission penalty per chunk.
    pub(crate) loss: f64,
    /// Nodes pull each new peer's catalog on connect (off by default: see the
    /// module docs).
    pub(crate) catalog_sync: bool,
    /// Set in a child process: run the one size and write its row here.
    pub(crate) row_file: Option<PathBuf>,
}

impl SimOptions {
    /// The arguments that make a child process simulate `nodes` the same way.
    fn child_args(&self, nodes: usize, row_file: &Path) -> Vec<String> {
        let mut args = vec!["sim".to_owned(), "--nodes".to_owned(), nodes.to_string()];
        if self.tcp {
            args.push("--tcp".to_owned());
        }
        if self.catalog_sync {
            args.push("--catalog-sync".to_owned());
        }
        args.extend(["--latency".to_owned(), self.latency_ms.to_string(), "--loss".to_owned(), self.loss.to_string()]);
        args.extend(["--row".to_owned(), row_file.display().to_string()]);
        args
    }

    fn link(&self) -> anyhow::Result<Option<LinkConditions>> {
        if self.latency_ms == 0 && self.loss == 0.0 {
            return Ok(None);
        }
        Ok(Some(LinkConditions::new(Duration::from_millis(self.latency_ms), self.loss)?))
    }

    fn transport(&self) -> &'static str {
        if self.tcp { "tcp" } else { "memory" }
    }
}

/// One size's figures.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    nodes: usize,
    transport: String,
    latency_ms: u64,
    loss: f64,
    start_seconds: f64,
    /// Resident memory gained from before the start until settled, divided by
    /// the number of nodes.
    rss_per_node_mib: f64,
    /// File descriptors opened from before the start until settled, divided by
    /// the number of nodes.
    fds_per_node: f64,
    /// Seconds after start until the joining work died down (see [`settle`]).
    settle_seconds: f64,
    /// Cores this process used in the last second of settling: the idle load
    /// of the whole network when it did settle.
    background_cores: f64,
    /// Open connections per node once settled.
    connections_per_node: f64,
    /// Connections each node took part in (opened by it or to it) from start
    /// until settled.
    opened_per_node: f64,
    /// Cores the settled, idle network used over [`IDLE_WINDOW`].
    idle_cores: f64,
    /// Connections each node took part in per minute of that window (Kademlia's
    /// refreshes dial peers the budget trimmed).
    idle_opened_per_node_minute: f64,
    /// Warm request-response round trip between two neighbours.
    round_trip_p50_ms: f64,
    /// From calling `publish_archive` until every node's catalog has the package.
    propagation_p50_ms: Option<f64>,
    propagation_p99_ms: Option<f64>,
    /// The part of it after `publish_archive` returned: gossip and ingest.
    spread_p50_ms: Option<f64>,
    spread_p99_ms: Option<f64>,
    /// How long `publish_archive` took (a new name is looked up in the DHT first).
    publish_p50_ms: Option<f64>,
    /// Publishes (of [`PUBLISHES`]) that some node did not have after
    /// [`PROPAGATION_DEADLINE`]; p50/p99 cover the others.
    propagation_unreached: usize,
    /// Nodes, summed over publishes, that did not have it by then.
    propagation_unreached_nodes: usize,
    /// Publishes that failed (not counted in the figures), and the first error.
    publish_failures: usize,
    first_publish_failure: Option<String>,
    lookup_p50_ms: Option<f64>,
    lookup_p99_ms: Option<f64>,
    /// Requests Kademlia sent per lookup.
    lookup_requests_p50: Option<f64>,
    lookup_requests_max: Option<f64>,
    /// Lookup latency ÷ round trip: sequential hops, only with injected latency.
    /// (Figures without samples are `None`.)
    hops_p50: Option<f64>,
    hops_max: Option<f64>,
    lookup_misses: usize,
    /// DHT puts and lookups that failed with an error (lookups count as misses too).
    lookup_errors: usize,
    /// Whether nodes pulled each new peer's catalog.
    catalog_sync: bool,
    /// Wall time of this size, start to shutdown.
    seconds: f64,
}

/// What a child process leaves in its row file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Outcome {
    Finished(Box<Row>),
    Failed { error: String },
}

/// A size that did not finish.
#[derive(Debug, serde::Serialize)]
struct Failure {
    nodes: usize,
    error: String,
    seconds: f64,
}

/// Runs the sweep (each size in a child process), or, in a child, the one size.
pub(crate) fn run(options: &SimOptions, out: &Path) -> anyhow::Result<()> {
    if let Some(row_file) = &options.row_file {
        let [nodes] = options.sizes[..] else { anyhow::bail!("a child simulates exactly one size") };
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        // The measuring future runs on the main thread, not queued behind the
        // nodes' tasks on the workers, so it timestamps what it is woken for promptly.
        let outcome = match runtime.block_on(simulate(options, nodes)) {
            Ok(row) => Outcome::Finished(Box::new(row)),
            Err(error) => Outcome::Failed { error: format!("{error:#}") },
        };
        std::fs::write(row_file, serde_json::to_string(&outcome)?)?;
        return match outcome {
            Outcome::Finished(_) => Ok(()),
            Outcome::Failed { error } => Err(anyhow::anyhow!(error)),
        };
    }
    for &n in &options.sizes {
        anyhow::ensure!(n >= 2, "a network needs at least 2 nodes, found {n}");
    }
    options.link()?;
    let started = Instant::now();
    println!(
        "transport {}, latency {} ms one-way, loss {}, catalog sync {}; each size in its own process",
        options.transport(),
        options.latency_ms,
        options.loss,
        if options.catalog_sync { "on" } else { "off" }
    );
    println!(
        "{:>5} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>7} {:>17} {:>9} {:>15} {:>15} {:>9} {:>9} {:>6} {:>7}",
        "nodes",
        "start s",
        "settle s",
        "MiB/node",
        "fd/node",
        "conn/node",
        "opened",
        "idle",
        "rtt ms",
        "propagation ms",
        "publish",
        "spread ms",
        "lookup ms",
        "p50/max",
        "p50/max",
        "misses",
        "wall s"
    );
    println!(
        "{:>5} {:>7} {:>8} {:>8} {:>7} {:>8} {:>8} {:>6} {:>7} {:>17} {:>9} {:>15} {:>15} {:>9} {:>9} {:>6} {:>7}",
        "",
        "",
        "",
        "",
        "",
        "",
        "per node",
        "cores",
        "p50",
        "p50/p99",
        "p50 ms",
        "p50/p99",
        "p50/p99",
        "requests",
        "hops",
        "",
        ""
    );
    let scratch = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for &n in &options.sizes {
        let t = Instant::now();
        let row_file = scratch.path().join(format!("row-{n}.json"));
        match run_child(options, n, &row_file) {
            Ok(row) => {
                print_row(&row);
                rows.push(row);
            }
            Err(error) => {
                println!("{n:>6} failed after {:.1} s: {error:#}", t.elapsed().as_secs_f64());
                failures.push(Failure { nodes: n, error: format!("{error:#}"), seconds: t.elapsed().as_secs_f64() });
            }
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    println!("sweep wall time {wall_seconds:.1} s");
    let report = serde_json::json!({
        "transport": options.transport(),
        "latency_ms": options.latency_ms,
        "loss": options.loss,
        "catalog_sync": options.catalog_sync,
        "retransmission_penalty_ms": agora::net::RETRANSMISSION_PENALTY.as_millis() as u64,
        "propagation_deadline_seconds": PROPAGATION_DEADLINE.as_secs(),
        "wall_seconds": wall_seconds,
        "rows": rows,
        "failures": failures,
    });
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("sim.json"), serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", out.join("sim.json").display());
    anyhow::ensure!(failures.is_empty(), "{} of {} sizes failed", failures.len(), options.sizes.len());
    Ok(())
}

/// Runs one size in a child process of this binary (its progress goes to our
/// stderr) and reads back its row.
fn run_child(options: &SimOptions, nodes: usize, row_file: &Path) -> anyhow::Result<Row> {
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(options.child_args(nodes, row_file))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    let Ok(text) = std::fs::read_to_string(row_file) else {
        anyhow::bail!("the simulation process exited with {status} before writing its figures");
    };
    match serde_json::from_str(&text) {
        Ok(Outcome::Finished(row)) => Ok(*row),
        Ok(Outcome::Failed { error }) => Err(anyhow::anyhow!(error)),
        Err(error) => Err(anyhow::anyhow!("unreadable figures from the simulation process ({error}): {text}")),
    }
}

/// Starts `n` nodes, measures, shuts them down.
async fn simulate(options: &SimOptions, n: usize) -> anyhow::Result<Row> {
    let started = Instant::now();
    let setup = NetSetup {
        tcp: options.tcp,
        link: options.link()?,
        catalog_sync: options.catalog_sync,
        join: Join::AnyEarlier,
    };
    let root = tempfile::tempdir()?;
    let rss_before = rss_kib();
    let fds_before = open_fds();
    let t = Instant::now();
    let nodes = start_nodes(root.path(), n, setup).await?;
    let start_seconds = t.elapsed().as_secs_f64();
    eprintln!("[{n} nodes] started and routable after {start_seconds:.1} s; settling");
    let (settle_seconds, background_cores) = settle(&nodes).await;
    // Measured once settled: joining opens most connections after start.
    let rss_per_node_mib = rss_kib().saturating_sub(rss_before) as f64 / 1024.0 / n as f64;
    let fds_per_node = open_fds().saturating_sub(fds_before) as f64 / n as f64;
    let mut connections = 0;
    for node in &nodes {
        connections +=
            node.network_handle().ok_or_else(|| anyhow::anyhow!("network off"))?.connected_peers().await?.len();
    }
    let opened = connections_opened(&nodes);
    eprintln!(
        "[{n} nodes] settled after {settle_seconds:.1} s ({background_cores:.2} cores busy), {:.1} connections and \
         {rss_per_node_mib:.1} MiB per node, {:.0} connections opened per node; idling {} s",
        connections as f64 / n as f64,
        opened as f64 / n as f64,
        IDLE_WINDOW.as_secs()
    );
    let cpu_before = cpu_seconds();
    tokio::time::sleep(IDLE_WINDOW).await;
    let idle_cores = (cpu_seconds() - cpu_before) / IDLE_WINDOW.as_secs_f64();
    let idle_opened = connections_opened(&nodes).saturating_sub(opened);
    let idle_opened_per_node_minute = idle_opened as f64 / n as f64 * 60.0 / IDLE_WINDOW.as_secs_f64();
    eprintln!(
        "[{n} nodes] idle: {idle_cores:.2} cores, {idle_opened_per_node_minute:.1} connections opened per node per \
         minute; measuring"
    );
    let rtt = round_trip(&nodes[1], &nodes[0], ROUND_TRIPS).await?;
    let seen = measure_propagation(root.path(), &nodes, PUBLISHES).await?;
    if let Some(failure) = &seen.first_failure {
        eprintln!("[{n} nodes] {} of {PUBLISHES} publishes failed, the first: {failure}", seen.failed);
    }
    let (propagation, spread) = (seen.everywhere.summary(), seen.spread.summary());
    let lookups = measure_lookups(&nodes, LOOKUPS).await?;
    for node in &nodes {
        node.shutdown().await;
    }
    drop(nodes);
    let latency = lookups.latency.summary();
    let requests = lookups.requests.summary();
    let hops = |ms: f64| figure(ms / rtt.p50).filter(|_| options.latency_ms > 0);
    Ok(Row {
        nodes: n,
        transport: options.transport().to_owned(),
        catalog_sync: options.catalog_sync,
        latency_ms: options.latency_ms,
        loss: options.loss,
        start_seconds,
        rss_per_node_mib,
        fds_per_node,
        settle_seconds,
        background_cores,
        connections_per_node: connections as f64 / n as f64,
        opened_per_node: opened as f64 / n as f64,
        idle_cores,
        idle_opened_per_node_minute,
        round_trip_p50_ms: rtt.p50,
        propagation_p50_ms: figure(propagation.p50),
        propagation_p99_ms: figure(propagation.p99),
        spread_p50_ms: figure(spread.p50),
        spread_p99_ms: figure(spread.p99),
        publish_p50_ms: figure(seen.publish.summary().p50),
        propagation_unreached: seen.unreached,
        propagation_unreached_nodes: seen.unreached_nodes,
        publish_failures: seen.failed,
        first_publish_failure: seen.first_failure,
        lookup_p50_ms: figure(latency.p50),
        lookup_p99_ms: figure(latency.p99),
        lookup_requests_p50: figure(requests.p50),
        lookup_requests_max: figure(lookups.requests.max()),
        hops_p50: hops(latency.p50),
        hops_max: hops(lookups.latency.max()),
        lookup_misses: lookups.misses,
        lookup_errors: lookups.errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn print_row(row: &Row) {
    let pair = |first: Option<f64>, second: Option<f64>, decimals: usize| match (first, second) {
        (Some(first), Some(second)) => format!("{first:.decimals$}/{second:.decimals$}"),
        _ => "-".to_owned(),
    };
    let mut propagation = pair(row.propagation_p50_ms, row.propagation_p99_ms, 1);
    if row.propagation_unreached > 0 {
        propagation = format!("{propagation} ({} missed)", row.propagation_unreached);
    }
    if row.publish_failures > 0 {
        propagation = format!("{propagation} ({} failed)", row.publish_failures);
    }
    println!(
        "{:>5} {:>7.1} {:>8.1} {:>8.2} {:>7.1} {:>8.1} {:>8.0} {:>6.2} {:>7.2} {:>17} {:>9} {:>15} {:>15} {:>9} {:>9} {:>6} {:>7.1}",
        row.nodes,
        row.start_seconds,
        row.settle_seconds,
        row.rss_per_node_mib,
        row.fds_per_node,
        row.connections_per_node,
        row.opened_per_node,
        row.idle_cores,
        row.round_trip_p50_ms,
        propagation,
        row.publish_p50_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}")),
        pair(row.spread_p50_ms, row.spread_p99_ms, 1),
        pair(row.lookup_p50_ms, row.lookup_p99_ms, 1),
        pair(row.lookup_requests_p50, row.lookup_requests_max, 0),
        pair(row.hops_p50, row.hops_max, 1),
        row.lookup_misses,
        row.seconds
    );
}

/// `value` unless it is NaN or infinite (a summary of no samples).
fn figure(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// Open file descriptors of this process (0 where `/proc` is missing).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}
