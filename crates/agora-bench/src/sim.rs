//! `cargo xtask sim --nodes N` / `--sweep 10,50,100`: an in-process network of N
//! real nodes over TCP on 127.0.0.1, measuring how start-up, memory per node,
//! publish-to-everywhere propagation and DHT lookups grow with N.
//!
//! Not yet: MemoryTransport (so thousands of nodes would need thousands of
//! sockets), and injected per-link latency or loss.

use std::time::Instant;

use crate::scenarios::network::{measure_lookups, measure_propagation, start_nodes};
use crate::stats::rss_kib;

/// One row of the sweep.
#[derive(Debug, serde::Serialize)]
struct Row {
    nodes: usize,
    start_seconds: f64,
    rss_per_node_mib: f64,
    propagation_p50_ms: f64,
    propagation_p99_ms: f64,
    lookup_p50_ms: f64,
    lookup_p99_ms: f64,
    lookup_misses: usize,
}

pub(crate) async fn run(sizes: &[usize], out: &std::path::Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    println!(
        "{:>6} {:>9} {:>12} {:>17} {:>17} {:>7}",
        "nodes", "start s", "MiB/node", "propagation p50/p99", "lookup p50/p99", "misses"
    );
    for &n in sizes {
        anyhow::ensure!(n >= 2, "a network needs at least 2 nodes");
        let root = tempfile::tempdir()?;
        let rss_before = rss_kib();
        let t = Instant::now();
        let nodes = start_nodes(root.path(), n, true).await?;
        let start_seconds = t.elapsed().as_secs_f64();
        let rss_per_node_mib = (rss_kib().saturating_sub(rss_before)) as f64 / 1024.0 / n as f64;
        let propagation = measure_propagation(root.path(), &nodes, 5).await?;
        let (lookups, misses) = measure_lookups(&nodes, 20).await?;
        for node in &nodes {
            node.shutdown().await;
        }
        drop(nodes);
        let row = Row {
            nodes: n,
            start_seconds,
            rss_per_node_mib,
            propagation_p50_ms: propagation.p50,
            propagation_p99_ms: propagation.p99,
            lookup_p50_ms: lookups.p50,
            lookup_p99_ms: lookups.p99,
            lookup_misses: misses,
        };
        println!(
            "{:>6} {:>9.1} {:>12.1} {:>8.1}/{:<8.1} {:>8.1}/{:<8.1} {:>7}",
            row.nodes,
            row.start_seconds,
            row.rss_per_node_mib,
            row.propagation_p50_ms,
            row.propagation_p99_ms,
            row.lookup_p50_ms,
            row.lookup_p99_ms,
            row.lookup_misses
        );
        rows.push(row);
    }
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("sim.json"), serde_json::to_string_pretty(&rows)?)?;
    println!("written to {}", out.join("sim.json").display());
    Ok(())
}
