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
    wait_for_roots(&b)?;
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
    let mut index = Samples::default();
    for round in 0..rounds {
        let b = trusting_node(&a, &key);
        wait_for_roots(&b)?;
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
        if round == rounds - 1 {
            index = index_latency(&b, &lock, per_client);
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib() as f64 / 1024.0;
    let (fetch, baseline, index) = (through_agora.summary(), from_directory.summary(), index.summary());
    let ratio = fetch.p50 / baseline.p50;
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
            notes: vec![format!(
                "wall time of `cargo fetch --locked`, fresh CARGO_HOME and fresh node B each of {rounds} rounds; B \
                 reads every index file from the network and fetches every .crate from A"
            )],
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
                "{CLIENTS} threads × {per_client} requests, each a new loopback connection, over the closure's {} \
                 index files (warm)",
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

fn wait_for_roots(node: &TestNode) -> anyhow::Result<()> {
    for (name, _) in ROOTS {
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
/// [`CLIENTS`] threads at once.
fn index_latency(
    node: &TestNode,
    lock: &std::collections::BTreeMap<(String, String), String>,
    per_client: usize,
) -> Samples {
    let paths: Vec<String> = lock.keys().map(|(name, _)| format!("/cargo/mirror/index/{}", index_path(name))).collect();
    let all = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let paths = &paths;
                scope.spawn(move || {
                    let mut times = Vec::with_capacity(per_client);
                    for request in 0..per_client {
                        let path = &paths[(client + request) % paths.len()];
                        let begun = Instant::now();
                        let response = node.request("GET", path, &[], b"");
                        times.push((begun.elapsed(), response.status));
                    }
                    times
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap_or_default()).collect::<Vec<_>>()
    });
    let mut samples = Samples::default();
    for (elapsed, status) in all {
        if status == 200 {
            samples.push_duration_ms(elapsed);
        }
    }
    samples
}
