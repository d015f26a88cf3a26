//! `agora demo`: a small network in this process on 127.0.0.1, showing publish,
//! gossip, search, DHT lookup and provider download end to end, with timings.

use std::time::{Duration, Instant};

use agora::{ArtifactData, Node, Query, Registry, archive};
use anyhow::{Context, bail};
use serde_json::json;

const SAMPLES: [(&str, &str); 3] = [
    ("hello-template", "a starter template that prints hello"),
    ("json-toolkit", "parse and pretty-print json documents"),
    ("web-scaffold", "scaffolding for a small web service"),
];
const DEADLINE: Duration = Duration::from_secs(30);

pub(crate) async fn run(nodes: usize, json_output: bool) -> anyhow::Result<()> {
    if !(2..=32).contains(&nodes) {
        bail!("--nodes must be between 2 and 32, found {nodes}");
    }
    let root = tempfile::tempdir().context("creating a temp dir for the demo")?;
    let say = |line: String| {
        if !json_output {
            println!("{line}");
        }
    };
    let started = Instant::now();
    let mut network = Vec::with_capacity(nodes);
    let first = start_node(root.path(), 0, None).await?;
    let bootstrap = first
        .status()
        .await?
        .network
        .and_then(|n| n.listen_addrs.into_iter().next())
        .context("node 0 has no address")?;
    say(format!("node 0  {}  (bootstrap)", short(&bootstrap)));
    network.push(first);
    for i in 1..nodes {
        let node = start_node(root.path(), i, Some(&bootstrap)).await?;
        say(format!("node {i}  joined through node 0"));
        network.push(node);
    }
    let connected = wait_until(|| async {
        for node in &network[1..] {
            if node.status().await.ok().and_then(|s| s.network).is_none_or(|n| n.connected_peers.is_empty()) {
                return false;
            }
        }
        true
    })
    .await;
    if !connected {
        bail!("the demo nodes did not connect within {DEADLINE:?}");
    }
    say(format!("{nodes} nodes up and connected in {:.0?}\n", started.elapsed()));

    let mut report = Vec::new();
    for (name, description) in SAMPLES {
        let dir = root.path().join("packages").join(name);
        archive::write_skeleton(&dir, &name.parse()?)?;
        let manifest_path = dir.join(archive::MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path)?;
        let text = text
            .lines()
            .map(|line| {
                if line.starts_with("description") {
                    format!("description = \"{description}\"")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&manifest_path, text)?;
        let (_, bytes) = archive::pack(&dir, 1 << 30)?;
        let published_at = Instant::now();
        let published = network[0].publish_archive(ArtifactData::Bytes(bytes.clone().into())).await?;
        let version = published.manifest.manifest().version().clone();
        say(format!("published {name}@{version} on node 0 ({} bytes)", bytes.len()));
        for (i, node) in network.iter().enumerate().skip(1) {
            let seen = wait_until(|| async {
                node.search(&Query::new(name)).await.is_ok_and(|r| r.hits.iter().any(|h| h.name.as_str() == name))
            })
            .await;
            if !seen {
                bail!("node {i} never saw {name} in its catalog");
            }
            let searchable = published_at.elapsed();
            let info_started = Instant::now();
            let manifest = node.get_version(&name.parse()?, &version).await?;
            let info_time = info_started.elapsed();
            let fetch_started = Instant::now();
            let fetched = node.fetch_artifact(&name.parse()?, &version).await?.read_to_vec().await?;
            let fetch_time = fetch_started.elapsed();
            if fetched != bytes || manifest.manifest().artifact.digest != published.manifest.manifest().artifact.digest
            {
                bail!("node {i} fetched different bytes for {name}");
            }
            say(format!(
                "  node {i}: searchable after {searchable:>9.1?}, info {info_time:>9.1?}, fetched {} bytes in {fetch_time:>9.1?}, sha256 ok",
                fetched.len()
            ));
            report.push(json!({
                "package": name, "node": i,
                "searchable_ms": searchable.as_secs_f64() * 1e3,
                "info_ms": info_time.as_secs_f64() * 1e3,
                "fetch_ms": fetch_time.as_secs_f64() * 1e3,
            }));
        }
    }
    for node in &network {
        node.shutdown().await;
    }
    if json_output {
        println!("{}", serde_json::to_string_pretty(&json!({ "nodes": nodes, "results": report }))?);
    } else {
        println!(
            "\ndone in {:.1?}: every package published on node 0 was found, inspected and fetched byte for byte on every other node",
            started.elapsed()
        );
    }
    Ok(())
}

async fn start_node(root: &std::path::Path, index: usize, bootstrap: Option<&str>) -> anyhow::Result<Node> {
    let mut builder = Node::builder().data_dir(root.join(format!("node-{index}"))).listen(["/ip4/127.0.0.1/tcp/0"]);
    if let Some(address) = bootstrap {
        builder = builder.bootstrap([address]);
    }
    Ok(builder.build().await?)
}

async fn wait_until<F: std::future::Future<Output = bool>>(mut condition: impl FnMut() -> F) -> bool {
    let end = Instant::now() + DEADLINE;
    while Instant::now() < end {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn short(address: &str) -> String {
    match address.rsplit_once("/p2p/") {
        Some((head, peer)) => format!("{head}/p2p/{}…", &peer[..peer.len().min(12)]),
        None => address.to_owned(),
    }
}
