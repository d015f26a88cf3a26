//! `cargo fetch` through a node's crates.io mirror beside the same fetch from a
//! cargo `directory` source of the same crates, in the same run; and the
//! mirror's index latency under 32 concurrent clients.
//!
//! Node A imports the machine's cargo cache (`agora cargo import`); a project
//! depends on a few crates whose dependency closure (resolved by cargo against
//! the mirror, all targets) is [`ROOTS`]'s. Each round starts a fresh node B
//! that trusts A's key and holds nothing, and a fresh `CARGO_HOME`, then times
//! `cargo fetch` with the project's lockfile: cargo reads B's index and
//! downloads every `.crate` file through B, which fetches each from A (verified
//! chunks). The baseline is the same `cargo fetch` with crates.io replaced by a
//! `directory` source holding the same crates unpacked (as `cargo vendor`
//! writes them), which involves no network at all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agora_tests::cargo::{CargoHome, lock_checksums, machine_crate_cache, write_crate};
use agora_tests::{TestNode, wait_until};

use crate::report::{Figure, Scenario};
use crate::scenarios::Scale;
use crate::stats::{Samples, peak_rss_kib};

/// The project's dependencies: crates with no platform-specific dependencies
/// outside the cache, whose closure is about 30 crates.
const ROOTS: &[(&str, &str)] = &[
    ("serde_json", "1"),
    ("toml", "*"),
    ("semver", "1"),
    ("hex", "0.4"),
    ("thiserror", "2"),
    ("flate2", "1"),
    ("bytes", "1"),
    ("smallvec", "1"),
];
const CLIENTS: usize = 32;
const DEADLINE: Duration = Duration::from_secs(120);

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    tokio::task::spawn_blocking(move || blocking(scale)).await?
}

fn blocking(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let rounds = scale.pick(5, 2);
    let per_client = scale.pick(200, 50);
    let cache = machine_crate_cache();
    anyhow::ensure!(cache.is_dir(), "no cargo cache at {}: build the workspace first", cache.display());
    let work = tempfile::tempdir()?;

    let a = TestNode::start();
    let imported = a.ok(&["cargo", "import", &cache.to_string_lossy()]);
    println!("   {}", imported.stdout.lines().last().unwrap_or_default());
    let key = a.ok(&["key", "show"]).stdout.trim().to_owned();

    // The project and its lockfile, resolved once against a mirror.
    let project = work.path().join("project");
    let dependencies: String = ROOTS.iter().map(|(name, req)| format!("{name} = \"{req}\"\n")).collect();
    write_crate(
        &project,
        &format!(
            "[package]\nname = \"bench\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{dependencies}"
        ),
        &[("src/main.rs", "fn main() {}\n")],
    );
    let b = trusting_node(&a, &key);
    wait_for_index(&b, &ROOTS.iter().map(|(name, _)| *name).collect::<Vec<_>>())?;
    CargoHome::for_node(&b).ok(&project, &["generate-lockfile"]);
    let lock = lock_checksums(&project.join("Cargo.lock"));
    drop(b);
    let vendor = work.path().join("vendor");
    vendor_directory(&cache, &lock, &vendor)?;
    let directory_config = format!(
        "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
        vendor.display()
    );

    let (mut through_agora, mut from_directory) = (Samples::default(), Samples::default());
    let mut unpack_only = Samples::default();
    let mut index = Samples::default();
    let closure: Vec<&str> = lock.keys().map(|(name, _)| name.as_str()).collect();
    for round in 0..rounds {
        let b = trusting_node(&a, &key);
        // A running node: its catalog has caught up with A's (catalog sync), but
        // it holds none of the .crate files.
        wait_for_index(&b, &closure)?;
        let cargo = CargoHome::for_node(&b);
        let begun = Instant::now();
        cargo.ok(&project, &["fetch", "--locked", "--quiet"]);
        through_agora.push_duration_ms(begun.elapsed());
        let held = b.json(&["status"])["storage"]["cached_artifacts"].as_u64().unwrap_or(0);
        anyhow::ensure!(held as usize >= lock.len(), "B holds {held} of {} crates after the fetch", lock.len());
        let directory = CargoHome::new(&directory_config);
        let begun = Instant::now();
        directory.ok(&project, &["fetch", "--locked", "--quiet"]);
        from_directory.push_duration_ms(begun.elapsed());
        // Cargo's own share: the same fetch again with every .crate already in
        // its cache, only the unpacking into registry/src left to do.
        std::fs::remove_dir_all(cargo.home().join("registry").join("src"))?;
        let begun = Instant::now();
        cargo.ok(&project, &["fetch", "--locked", "--quiet"]);
        unpack_only.push_duration_ms(begun.elapsed());
        if round == rounds - 1 {
            index = index_latency(&b, &lock, per_client);
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib() as f64 / 1024.0;
    let (fetch, baseline, index) = (through_agora.summary(), from_directory.summary(), index.summary());
    let ratio = fetch.p50 / baseline.p50;
    let unpack = unpack_only.summary();
    Ok(vec![
        Scenario {
            name: format!("cargo: `cargo fetch` of a {}-crate closure through a node's mirror", lock.len()),
            figure: Figure::latency("through node B (crates only on node A)", fetch),
            baseline: Some(Figure::latency("cargo `directory` source of the same crates", baseline)),
            ratio: Some(ratio),
            goal: "within 2× of the directory source".into(),
            met: Some(ratio <= 2.0),
            peak_rss_mib: rss,
            seconds,
            notes: vec![
                format!(
                    "wall time of `cargo fetch --locked`, fresh CARGO_HOME and fresh node B (catalog synced, no \
                     .crate held) each of {rounds} rounds; B fetches every .crate from A when cargo asks"
                ),
                format!(
                    "cargo's own unpacking of the same .crate files (the fetch again with its registry cache full, \
                     registry/src removed): p50 {:.0} ms — a cost every registry source has and the directory \
                     source does not",
                    unpack.p50
                ),
            ],
        },
        Scenario {
            name: format!("cargo: mirror index requests, {CLIENTS} concurrent clients"),
            figure: Figure::latency("GET /cargo/mirror/index/… on node B", index),
            baseline: None,
            ratio: None,
            goal: "p50 < 2 ms".into(),
            met: Some(index.p50 < 2.0),
            peak_rss_mib: rss,
            seconds,
            notes: vec![format!(
                "{CLIENTS} threads × {per_client} requests, each thread on one kept-alive loopback connection (as \
                 cargo's client), over the closure's {} index files (warm)",
                lock.len()
            )],
        },
    ])
}

/// A fresh node that bootstraps from `a` and trusts `key` for its mirror.
fn trusting_node(a: &TestNode, key: &str) -> TestNode {
    let mut node = TestNode::unstarted();
    let _ = std::fs::create_dir_all(node.data_dir());
    let _ = std::fs::write(node.data_dir().join("config.toml"), format!("[cargo]\ntrusted_publishers = [\"{key}\"]\n"));
    node.launch(&["--bootstrap", &a.listen_address()]);
    node
}

/// `name`'s path in cargo's sparse index.
fn index_path(name: &str) -> String {
    agora::cargo::CrateName::parse(name).map(|name| name.index_path()).unwrap_or_default()
}

/// Waits until `node`'s mirror serves the index file of every crate in `names`.
fn wait_for_index(node: &TestNode, names: &[&str]) -> anyhow::Result<()> {
    for name in names {
        let path = format!("/cargo/mirror/index/{}", index_path(name));
        let found = wait_until(DEADLINE, || node.request("GET", &path, &[], b"").status == 200);
        anyhow::ensure!(found, "{path} never appeared on the fresh node");
    }
    Ok(())
}

/// `vendor/<name>-<version>/` for each locked crate, unpacked from the cache,
/// with the `.cargo-checksum.json` a directory source needs.
fn vendor_directory(
    cache: &Path,
    lock: &std::collections::BTreeMap<(String, String), String>,
    vendor: &Path,
) -> anyhow::Result<()> {
    let registries: Vec<PathBuf> = std::fs::read_dir(cache)?.filter_map(|entry| Some(entry.ok()?.path())).collect();
    for ((name, version), checksum) in lock {
        let file = format!("{name}-{version}.crate");
        let Some(path) = registries.iter().map(|dir| dir.join(&file)).find(|path| path.exists()) else {
            anyhow::bail!("{file} is not in the cargo cache");
        };
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&path)?));
        archive.unpack(vendor)?;
        let json = serde_json::json!({ "files": {}, "package": checksum });
        std::fs::write(vendor.join(format!("{name}-{version}")).join(".cargo-checksum.json"), json.to_string())?;
    }
    Ok(())
}

/// Per-request latency (ms) of `per_client` index requests from each of
/// [`CLIENTS`] threads at once, each thread on one kept-alive connection (as
/// cargo's HTTP/1.1 client does).
fn index_latency(
    node: &TestNode,
    lock: &std::collections::BTreeMap<(String, String), String>,
    per_client: usize,
) -> Samples {
    let paths: Vec<String> = lock.keys().map(|(name, _)| format!("/cargo/mirror/index/{}", index_path(name))).collect();
    let api = node.api();
    let all = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let paths = &paths;
                scope.spawn(move || -> std::io::Result<Vec<Duration>> {
                    let mut connection = KeepAlive::connect(api)?;
                    let mut times = Vec::with_capacity(per_client);
                    for request in 0..per_client {
                        let path = &paths[(client + request) % paths.len()];
                        let begun = Instant::now();
                        if connection.get(path)? == 200 {
                            times.push(begun.elapsed());
                        }
                    }
                    Ok(times)
                })
            })
            .collect();
        workers.into_iter().filter_map(|worker| worker.join().ok()?.ok()).flatten().collect::<Vec<_>>()
    });
    let mut samples = Samples::default();
    for elapsed in all {
        samples.push_duration_ms(elapsed);
    }
    samples
}

/// A minimal HTTP/1.1 client on one kept-alive connection, for replies with a
/// `Content-Length`.
struct KeepAlive {
    stream: std::io::BufReader<std::net::TcpStream>,
    host: std::net::SocketAddr,
}

impl KeepAlive {
    fn connect(host: std::net::SocketAddr) -> std::io::Result<Self> {
        let stream = std::net::TcpStream::connect(host)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self { stream: std::io::BufReader::new(stream), host })
    }

    /// `GET path`; returns the status once the whole body is read.
    fn get(&mut self, path: &str) -> std::io::Result<u16> {
        use std::io::{BufRead, Read, Write};
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.stream.get_mut().write_all(request.as_bytes())?;
        let (mut status, mut length, mut line) = (0u16, 0usize, String::new());
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if status == 0 {
                status = header.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
            } else if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok(status)
    }
}
