//! Artifact transfer over loopback from 1 and from 3 providers, against a raw TCP
//! copy of the same bytes (file → socket → file) in the same run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora::{ArtifactData, Node, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{Figure, Scenario};
use crate::scenarios::Scale;
use crate::stats::{Rng, peak_rss_kib};

const MIB: u64 = 1024 * 1024;

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let sizes: Vec<u64> = scale.pick(vec![64 * MIB, 512 * MIB], vec![16 * MIB]);
    let mut scenarios = Vec::new();
    for size in sizes {
        scenarios.push(one_size(size, scale).await?);
    }
    Ok(scenarios)
}

async fn one_size(size: u64, scale: Scale) -> anyhow::Result<Scenario> {
    let started = Instant::now();
    let root = tempfile::tempdir()?;
    let name = format!("bench-artifact-{}m", size / MIB);
    let archive = write_archive(root.path(), &name, size)?;
    let limit = size * 2 + MIB;
    let publisher = network_node(&root.path().join("publisher"), None, limit, 3).await?;
    let bootstrap = address(&publisher).await?;
    publisher.publish_archive(ArtifactData::File(archive.clone())).await?;
    let package: agora::PackageName = name.parse()?;
    let version = agora::parse_version("1.0.0")?;
    // Two more nodes fetch it and so become providers.
    let mut providers = vec![publisher];
    for i in 0..2 {
        let node = network_node(&root.path().join(format!("provider-{i}")), Some(&bootstrap), limit, 3).await?;
        wait_routable(&node).await?;
        node.fetch_artifact(&package, &version).await?;
        providers.push(node);
    }
    let rounds = scale.pick(2, 1);
    let (mut one, mut three, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        raw.push(raw_copy(&archive, &root.path().join(format!("raw-{round}"))).await?);
        for (k, rates) in [(1usize, &mut one), (3, &mut three)] {
            let dir = root.path().join(format!("fetcher-{k}-{round}"));
            let fetcher = network_node(&dir, Some(&bootstrap), limit, k).await?;
            wait_routable(&fetcher).await?;
            let archive_size = std::fs::metadata(&archive)?.len();
            let t = Instant::now();
            fetcher.fetch_artifact(&package, &version).await?;
            rates.push(archive_size as f64 / MIB as f64 / t.elapsed().as_secs_f64());
            fetcher.shutdown().await;
            drop(fetcher);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for node in &providers {
        node.shutdown().await;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (one, three, raw) = (mean(&one), mean(&three), mean(&raw));
    let best = one.max(three);
    Ok(Scenario {
        name: format!("artifact transfer, {} MiB", size / MIB),
        figure: Figure::new("3 providers", three, "MB/s"),
        baseline: Some(Figure::new("raw TCP copy file→socket→file", raw, "MB/s")),
        ratio: Some(best / raw),
        goal: "≥ 50% of raw; 3 providers ≥ 1 provider".into(),
        met: Some(best >= 0.5 * raw && three >= one),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![format!(
            "1 provider {one:.0} MB/s, 3 providers {three:.0} MB/s (mean of {rounds} fetch(es) each, fresh node per fetch, provider lookup included)"
        )],
    })
}

async fn network_node(dir: &Path, bootstrap: Option<&str>, limit: u64, max_providers: usize) -> anyhow::Result<Node> {
    let mut builder = Node::builder()
        .data_dir(dir)
        .listen(["/ip4/127.0.0.1/tcp/0"])
        .max_artifact_size(limit)
        .configure(move |config| config.transfer.max_providers = max_providers);
    if let Some(address) = bootstrap {
        builder = builder.bootstrap([address]);
    }
    Ok(builder.build().await?)
}

pub(crate) async fn address(node: &Node) -> anyhow::Result<String> {
    node.status()
        .await?
        .network
        .and_then(|n| n.listen_addrs.into_iter().next())
        .ok_or_else(|| anyhow::anyhow!("node has no listen address"))
}

pub(crate) async fn wait_routable(node: &Node) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if node.status().await?.network.is_some_and(|n| n.routing_table_size > 0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("node never got a routable peer")
}

/// A package archive holding `size` pseudo-random bytes, written streaming.
fn write_archive(dir: &Path, name: &str, size: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.tar.gz"));
    let file = std::fs::File::create(&path)?;
    let gzip = flate2::GzBuilder::new().mtime(0).write(std::io::BufWriter::new(file), flate2::Compression::none());
    let mut tar = tar::Builder::new(gzip);
    let top = format!("{name}-1.0.0");
    let manifest = format!("[package]\nname = \"{name}\"\nversion = \"1.0.0\"\ndescription = \"benchmark payload\"\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{top}/agora.toml"), manifest.as_bytes())?;
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{top}/payload.bin"), RandomReader { rng: Rng::new(size), left: size })?;
    let gzip = tar.into_inner()?;
    gzip.finish()?.flush()?;
    Ok(path)
}

struct RandomReader {
    rng: Rng,
    left: u64,
}

impl std::io::Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        self.rng.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Copies `source` through a loopback TCP connection into `dest`; MB/s.
async fn raw_copy(source: &Path, dest: &Path) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let size = std::fs::metadata(source)?.len();
    let source = source.to_owned();
    let t = Instant::now();
    let sender = tokio::spawn(async move {
        let mut socket = tokio::net::TcpStream::connect(addr).await?;
        let mut file = tokio::fs::File::open(source).await?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            socket.write_all(&buffer[..n]).await?;
        }
        socket.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let (mut socket, _) = listener.accept().await?;
    let mut out = tokio::fs::File::create(dest).await?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        out.write_all(&buffer[..n]).await?;
    }
    out.sync_all().await?;
    sender.await??;
    let rate = size as f64 / MIB as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(dest);
    Ok(rate)
}
