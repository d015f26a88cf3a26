//! Crash tests: the real `agora` binary is killed with SIGKILL at the crash
//! points of `agora_store::crash` (publish, ingest, catalog sync, fetch,
//! eviction), restarted on the same data dir, and its store is checked against
//! an oracle:
//!
//! - nothing half-written: every manifest is listed by its package's index with
//!   its digest and size, every artifact row has its complete file and every file
//!   its row (no orphans), every held file re-hashes to its manifest's digest,
//!   the temp dirs are empty and `tmp/downloads` holds only resumable pairs;
//! - nothing acknowledged lost: a publish the API answered, and packages the node
//!   showed before the crash, are there afterwards (a published artifact pinned,
//!   readable and verified);
//! - the node starts cleanly, serves, redoes the interrupted operation (resuming a
//!   staged download), and stops cleanly.
//!
//! The store is opened directly (`agora::store::Store::open`) only while no node
//! runs on the data dir: the node's lock (`<data dir>/lock`) is not taken by the
//! store itself, so the test keeps that rule.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use agora::core::{ArtifactInfo, Digest, PackageMetadata, Publisher, SecretKey, SignedManifest, SignedPackageIndex};
use agora::store::Store;
use agora_tests::{TestNode, files_under, manifest, noise, unix_now, wait_until, write_package};

/// How long an armed node may take to reach its crash point once driven there.
const CRASH_DEADLINE: Duration = Duration::from_secs(60);
/// How long a restarted node may take to get back what its peer still has.
const RECOVER_DEADLINE: Duration = Duration::from_secs(30);
const SIGKILL: i32 = 9;
/// Small chunks, so a 40 KiB artifact is ten of them.
const SMALL_CHUNKS: &str = "chunk_size = 4096\n";

// --- publish ---------------------------------------------------------------

#[test]
fn a_crash_after_the_artifact_file_keeps_the_acknowledged_publish_and_leaves_no_orphan() {
    let mut node = offline_armed("publish.file_written#2");
    write_noise_package(&node, "kept", 1);
    write_noise_package(&node, "lost", 2);
    node.ok(&["publish", "kept"]);
    let in_flight = node.run(&["publish", "lost"]);
    assert!(!in_flight.success, "the publish that crashed the node was answered:\n{in_flight}");
    assert_crashed(&mut node, None, "publish.file_written#2");

    node.launch(&["--offline"]);
    let kept = read_artifact(&node, "kept", "1.0.0");
    assert_eq!(node.run(&["info", "lost"]).code, Some(1), "an unanswered publish half-landed");
    assert!(node.stop());
    let catalog = audit(&node, Staging::None);
    catalog.assert_published(&kept);
    assert_eq!(catalog.names(), ["kept"]);
    assert_eq!(catalog.held.len(), 1, "the crashed publish's file was kept");

    // It serves afterwards: the lost version can be published again.
    node.launch(&["--offline"]);
    node.ok(&["publish", "lost"]);
    read_artifact(&node, "lost", "1.0.0");
}

#[test]
fn a_crash_while_the_artifact_is_a_temp_file_stores_nothing() {
    let mut node = crash_publishing("partial", "publish.temp_written");
    let temp = node.data_dir().join("store").join("artifacts").join("tmp");
    assert_eq!(files_under(&temp).len(), 1, "the artifact's temp file should still be there");
    node.launch(&["--offline"]);
    assert_eq!(node.run(&["info", "partial"]).code, Some(1));
    assert!(node.stop());
    let catalog = audit(&node, Staging::None);
    assert!(catalog.packages.is_empty() && catalog.held.is_empty(), "{catalog:?}");
}

#[test]
fn a_crash_inside_the_publish_transaction_stores_nothing() {
    let mut node = crash_publishing("torn", "publish.in_transaction");
    node.launch(&["--offline"]);
    assert_eq!(node.run(&["info", "torn"]).code, Some(1));
    assert_eq!(node.run(&["search", "torn", "--json"]).stdout.matches("\"torn\"").count(), 0);
    assert!(node.stop());
    let catalog = audit(&node, Staging::None);
    assert!(catalog.packages.is_empty() && catalog.held.is_empty(), "{catalog:?}");
}

#[test]
fn a_crash_after_the_publish_commit_keeps_the_whole_package() {
    let mut node = crash_publishing("landed", "publish.committed");
    node.launch(&["--offline"]);
    let landed = read_artifact(&node, "landed", "1.0.0");
    assert!(node.run(&["search", "landed", "--json"]).stdout.contains("\"landed\""), "not searchable");
    assert!(node.stop());
    audit(&node, Staging::None).assert_published(&landed);
}

// --- records from peers ------------------------------------------------------

#[test]
fn a_crash_before_storing_a_gossiped_record_loses_nothing_the_peer_still_has() {
    let (source, mut node) = connected_pair("ingest.verified");
    publish_noise(&source, "rumour", 5);
    assert_crashed(&mut node, None, "ingest.verified");
    let catalog = audit(&node, Staging::None);
    assert!(catalog.packages.is_empty(), "stored before the writer had it: {:?}", catalog.names());

    node.launch(&["--bootstrap", &source.listen_address()]);
    wait_to_know(&node, "rumour");
    assert!(node.stop());
    assert_eq!(audit(&node, Staging::None).names(), ["rumour"]);
}

#[test]
fn a_crash_after_committing_a_gossiped_record_keeps_it() {
    let (source, mut node) = connected_pair("ingest.committed");
    publish_noise(&source, "told", 6);
    assert_crashed(&mut node, None, "ingest.committed");
    // Straight from the crashed data dir, before any peer could bring it again.
    let catalog = audit(&node, Staging::None);
    assert_eq!(catalog.names(), ["told"], "a committed ingest was lost");
    assert!(catalog.held.is_empty(), "records bring no artifact");

    node.launch(&["--offline"]);
    node.ok(&["info", "told"]);
    assert!(node.stop());
}

#[test]
fn a_crash_inside_a_sync_page_transaction_stores_none_of_the_page() {
    crash_during_sync(5, "ingest.in_transaction#3", |crashed, _| {
        assert!(crashed.packages.is_empty(), "part of an uncommitted page landed: {:?}", crashed.names());
    });
}

#[test]
fn a_crash_between_sync_pages_keeps_the_stored_page_and_syncs_the_rest_later() {
    // Two pages of 256.
    crash_during_sync(300, "sync.page_stored", |crashed, seeded| {
        assert_eq!(crashed.names(), seeded[..256], "the first page, whole and nothing else");
    });
}

/// A source node with `count` seeded packages; a node armed at `point` syncs
/// from it and dies. `check` judges the crashed node's catalog (and the seeded
/// names); restarted, the node must sync every seeded package.
fn crash_during_sync(count: usize, point: &str, check: impl FnOnce(&Catalog, &[String])) {
    let mut source = TestNode::unstarted();
    let seeded = seed_catalog(&source.data_dir(), count);
    source.launch(&[]);
    let mut node = TestNode::unstarted();
    let early = node.try_launch(&["--bootstrap", &source.listen_address()], &[crash_at(point)]);
    assert_crashed(&mut node, early, point);
    check(&audit(&node, Staging::None), &seeded);

    node.launch(&["--bootstrap", &source.listen_address()]);
    let all = wait_until(RECOVER_DEADLINE, || package_count(&node) == count as u64);
    assert!(all, "the catalog never came whole:\n{}", node.log());
    assert!(node.stop());
    assert_eq!(audit(&node, Staging::None).names(), seeded);
}

// --- fetch and eviction ------------------------------------------------------

#[test]
fn a_crash_with_chunks_staged_resumes_from_them() {
    let (resumed, artifact) = crash_during_fetch("fetch.chunk_staged#4", Staging::Resumable, 0);
    assert!(resumed > 0 && resumed < artifact.size, "resumed {resumed} of {} bytes", artifact.size);
}

#[test]
fn a_crash_with_every_chunk_staged_resumes_without_downloading() {
    let (resumed, artifact) = crash_during_fetch("fetch.staged", Staging::Resumable, 0);
    assert_eq!(resumed, artifact.size, "the whole staged file should have been reused");
}

#[test]
fn a_crash_after_moving_the_download_into_the_store_fetches_it_again() {
    // The file in the store without its row is not taken for a held artifact.
    let (resumed, _) = crash_during_fetch("fetch.adopted", Staging::Any, 0);
    assert_eq!(resumed, 0, "nothing staged is left to resume");
}

#[test]
fn a_crash_after_recording_the_download_keeps_it() {
    let (resumed, _) = crash_during_fetch("fetch.recorded", Staging::Any, 1);
    assert_eq!(resumed, 0, "a held artifact is not transferred again");
}

#[test]
fn a_crash_during_eviction_leaves_no_orphan_file() {
    let source = started_with_config(SMALL_CHUNKS);
    let (old, new) = (publish_noise(&source, "old", 7), publish_noise(&source, "new", 8));
    // Room for one of them.
    let mut node = unstarted_with_config("[storage]\nmax_cached_bytes = 50000\n");
    assert_eq!(node.try_launch(&["--bootstrap", &source.listen_address()], &[crash_at("evict.row_forgotten")]), None);
    wait_to_know(&node, "new");
    assert_eq!(fetch(&node, "old", "1.0.0").error, None);
    // Used in an earlier second than the new one (LRU times are in seconds), so
    // it is the one evicted.
    let fetched_at = unix_now();
    assert!(wait_until(Duration::from_secs(3), || unix_now() > fetched_at));
    let _ = fetch(&node, "new", "1.0.0");
    assert_crashed(&mut node, None, "evict.row_forgotten");

    node.launch(&["--bootstrap", &source.listen_address()]);
    assert_eq!(read_artifact(&node, "new", "1.0.0"), new);
    assert_eq!(node.json(&["status"])["registry"]["artifacts"], 1, "the evicted one is back or the new one gone");
    assert!(node.stop());
    let catalog = audit(&node, Staging::None);
    assert_eq!(catalog.held, BTreeSet::from([new.digest]), "{catalog:?}");
    assert!(!catalog.held.contains(&old.digest));
}

// --- helpers -------------------------------------------------------------------

/// A source node with one 40 KiB package in 4 KiB chunks; a second node armed at
/// `point` fetches it and dies; restarted, it must hold `held_after_restart`
/// artifacts, then fetches it again. Returns the bytes the second fetch resumed
/// from staging, and the artifact.
fn crash_during_fetch(point: &str, staging_after_crash: Staging, held_after_restart: u64) -> (u64, ArtifactInfo) {
    let source = started_with_config(SMALL_CHUNKS);
    let artifact = publish_noise(&source, "wanted", 9);
    let mut node = TestNode::unstarted();
    assert_eq!(node.try_launch(&["--bootstrap", &source.listen_address()], &[crash_at(point)]), None);
    wait_to_know(&node, "wanted");
    let _ = fetch(&node, "wanted", "1.0.0");
    assert_crashed(&mut node, None, point);
    let staged = files_under(&node.data_dir().join("tmp/downloads"));
    match staging_after_crash {
        Staging::Resumable => assert_eq!(staged.len(), 2, "expected a .part and a .have: {staged:?}"),
        Staging::Any | Staging::None => {}
    }

    node.launch(&["--bootstrap", &source.listen_address()]);
    assert_eq!(node.json(&["status"])["registry"]["artifacts"], held_after_restart, "held after the restart");
    let line = fetch(&node, "wanted", "1.0.0");
    assert_eq!(line.error, None, "the fetch after the crash failed:\n{}", node.log());
    assert_eq!(read_artifact(&node, "wanted", "1.0.0"), artifact);
    assert!(node.stop());
    let catalog = audit(&node, Staging::None);
    assert_eq!(catalog.held, BTreeSet::from([artifact.digest]));
    (line.resumed_bytes, artifact)
}

/// A node in a temp dir whose `config.toml` is `config`, not started.
fn unstarted_with_config(config: &str) -> TestNode {
    let node = TestNode::unstarted();
    std::fs::create_dir_all(node.data_dir()).unwrap();
    std::fs::write(node.data_dir().join("config.toml"), config).unwrap();
    node
}

/// [`unstarted_with_config`], started.
fn started_with_config(config: &str) -> TestNode {
    let mut node = unstarted_with_config(config);
    node.launch(&[]);
    node
}

/// Waits until `node`'s local catalog has `name`.
fn wait_to_know(node: &TestNode, name: &str) {
    assert!(wait_until(RECOVER_DEADLINE, || knows(node, name)), "{name} never arrived:\n{}", node.log());
}

/// Packages in `node`'s catalog.
fn package_count(node: &TestNode) -> u64 {
    node.json(&["status"])["registry"]["packages"].as_u64().unwrap()
}

/// `AGORA_CRASH_AT=point`.
fn crash_at(point: &str) -> (&'static str, &str) {
    (agora::store::crash::ENV, point)
}

/// Waits until `node` died by SIGKILL at `point` (`name` or `name#N`); `early` is
/// its exit status if it already died during start.
fn assert_crashed(node: &mut TestNode, early: Option<ExitStatus>, point: &str) {
    let status = early.or_else(|| node.wait_for_exit(CRASH_DEADLINE));
    let status = status.unwrap_or_else(|| panic!("no crash at `{point}` within {CRASH_DEADLINE:?}:\n{}", node.log()));
    assert_eq!(status.signal(), Some(SIGKILL), "the node ended with {status}, not SIGKILL:\n{}", node.log());
    let name = point.split('#').next().unwrap();
    let fired = format!("crash point `{name}` reached");
    assert!(node.log().contains(&fired), "another point or signal killed it:\n{}", node.log());
    let error = node.fails(&["status"]);
    // Its record is stale (or, dead during start, not written yet).
    assert!(error.contains("no node is listening") || error.contains("no node is running"), "after a crash: {error}");
}

/// A source node (4 KiB chunks, no crash point) and a second node armed at
/// `point`, connected, with the second's catalog sync of the source done, so
/// what the source publishes next reaches it as gossip and DHT records.
fn connected_pair(point: &str) -> (TestNode, TestNode) {
    let source = started_with_config(SMALL_CHUNKS);
    let source_id = source.json(&["status"])["network"]["peer_id"].as_str().unwrap().to_owned();
    let mut node = TestNode::unstarted();
    assert_eq!(node.try_launch(&["--bootstrap", &source.listen_address()], &[crash_at(point)]), None);
    // A verified sync answer from the source: the sync of its (empty) catalog is over.
    let synced = wait_until(RECOVER_DEADLINE, || {
        node.json(&["peers"]).as_array().unwrap().iter().any(|peer| {
            peer["peer_id"] == source_id.as_str() && peer["standing"]["successes"].as_u64().unwrap_or(0) > 0
        })
    });
    assert!(synced, "the nodes never synced:\n{}", node.log());
    (source, node)
}

/// An offline node armed at `point` publishes `name` and dies before answering;
/// returns it dead.
fn crash_publishing(name: &str, point: &str) -> TestNode {
    let mut node = offline_armed(point);
    write_noise_package(&node, name, 4);
    let answer = node.run(&["publish", name]);
    assert!(!answer.success, "the publish that crashed the node was answered:\n{answer}");
    assert_crashed(&mut node, None, point);
    let uploads = node.data_dir().join("tmp").join("uploads");
    assert!(!files_under(&uploads).is_empty(), "a crashed upload leaves its file (for the restart to remove)");
    node
}

/// An offline node armed at `point`, started.
fn offline_armed(point: &str) -> TestNode {
    let mut node = TestNode::unstarted();
    assert_eq!(node.try_launch(&["--offline"], &[crash_at(point)]), None, "died during start:\n{}", node.log());
    node
}

/// Writes the package directory `<scratch>/<name>` of `name@1.0.0` with 40 KB of
/// noise from `seed` (about ten 4 KiB chunks).
fn write_noise_package(node: &TestNode, name: &str, seed: u64) {
    let dir = node.scratch().join(name);
    write_package(&dir, &manifest(name, "1.0.0", "crash test"), &[("noise.bin", &noise(40_000, seed))]);
}

/// Publishes a [`write_noise_package`] from `node` and returns its artifact.
fn publish_noise(node: &TestNode, name: &str, seed: u64) -> ArtifactInfo {
    write_noise_package(node, name, seed);
    node.ok(&["publish", name]);
    manifest_of(node, name, "1.0.0").manifest().artifact.clone()
}

/// `count` packages `seeded-NNNN` (index and manifest, no artifact file) of a
/// fresh publisher written straight into the store under `data_dir`, in one
/// transaction; their names, sorted.
fn seed_catalog(data_dir: &Path, count: usize) -> Vec<String> {
    let store = Store::open(&data_dir.join("store")).unwrap();
    let publisher = Publisher::new(SecretKey::generate());
    let now = unix_now();
    let batch: Vec<(SignedPackageIndex, Vec<SignedManifest>)> = (0..count)
        .map(|i| {
            let name = format!("seeded-{i:04}");
            let info = ArtifactInfo::compute(name.as_bytes(), ArtifactInfo::MIN_CHUNK_SIZE).unwrap();
            let metadata = PackageMetadata::new(name.parse().unwrap(), "1.0.0".parse().unwrap(), "seeded");
            let (manifest, index) = publisher.publish(metadata, info, None, now).unwrap();
            (index, vec![manifest])
        })
        .collect();
    for outcome in store.packages().ingest_packages(&batch).unwrap() {
        outcome.unwrap();
    }
    (0..count).map(|i| format!("seeded-{i:04}")).collect()
}

/// Whether `node`'s local catalog has `name` (a local search, no DHT lookup).
fn knows(node: &TestNode, name: &str) -> bool {
    let result = node.run(&["search", name, "--json"]);
    result.success && result.stdout.contains(&format!("\"{name}\""))
}

/// The manifest `node` serves for `name@version`.
fn manifest_of(node: &TestNode, name: &str, version: &str) -> SignedManifest {
    let response = reqwest::blocking::get(node.url(&format!("/v1/packages/{name}/{version}"))).unwrap();
    assert_eq!(response.status(), 200, "{name}@{version}:\n{}", node.log());
    response.json().unwrap()
}

/// Reads `name@version`'s artifact through the API and checks its bytes against
/// the manifest's digest and size; returns the artifact.
fn read_artifact(node: &TestNode, name: &str, version: &str) -> ArtifactInfo {
    let info = manifest_of(node, name, version).manifest().artifact.clone();
    let response = reqwest::blocking::get(node.url(&format!("/v1/packages/{name}/{version}/artifact"))).unwrap();
    assert_eq!(response.status(), 200, "{name}@{version}'s artifact:\n{}", node.log());
    let bytes = response.bytes().unwrap();
    assert_eq!((Digest::of(&bytes), bytes.len() as u64), (info.digest, info.size), "{name}@{version}'s bytes");
    info
}

/// The last progress line of `POST …/fetch`.
#[derive(Debug, Default)]
struct FetchEnd {
    error: Option<String>,
    resumed_bytes: u64,
}

/// Makes `node` hold `name@version` (`POST …/fetch`) and returns how it ended; a
/// node that died on the way gives an error.
fn fetch(node: &TestNode, name: &str, version: &str) -> FetchEnd {
    let http = reqwest::blocking::Client::builder().timeout(CRASH_DEADLINE).build().unwrap();
    let url = node.url(&format!("/v1/packages/{name}/{version}/fetch"));
    let body = match http.post(url).bearer_auth(node.token()).send().and_then(|response| response.text()) {
        Ok(body) => body,
        Err(error) => return FetchEnd { error: Some(error.to_string()), resumed_bytes: 0 },
    };
    let Some(last) = body.lines().last().and_then(|line| serde_json::from_str::<serde_json::Value>(line).ok()) else {
        return FetchEnd { error: Some(format!("no progress line in {body:?}")), resumed_bytes: 0 };
    };
    FetchEnd {
        error: last["error"].as_str().map(str::to_owned),
        resumed_bytes: last["progress"]["resumed_bytes"].as_u64().unwrap_or(0),
    }
}

/// What `tmp/downloads` may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staging {
    /// Nothing.
    None,
    /// Exactly a `.part` and `.have` pair per artifact (a transfer to resume).
    Resumable,
    /// Anything the node cleans or resumes (checked later).
    Any,
}

/// A consistent catalog: package name → versions; held artifacts.
#[derive(Debug)]
struct Catalog {
    packages: BTreeMap<String, Vec<String>>,
    held: BTreeSet<Digest>,
    /// Held artifacts that eviction would never take.
    pinned: BTreeSet<Digest>,
}

impl Catalog {
    fn names(&self) -> Vec<String> {
        self.packages.keys().cloned().collect()
    }

    /// A local publish: held, pinned, its file intact (checked by the audit).
    fn assert_published(&self, artifact: &ArtifactInfo) {
        assert!(self.held.contains(&artifact.digest), "a published artifact is not held: {self:?}");
        assert!(self.pinned.contains(&artifact.digest), "a published artifact is evictable: {self:?}");
    }
}

/// Checks the store of a node that is not running (crashed or stopped) and
/// returns its catalog. The files are listed before the store is opened (which
/// clears its temp dir): what is checked is what the node left.
fn audit(node: &TestNode, staging: Staging) -> Catalog {
    assert!(node.pid().is_none(), "the store is opened only while no node runs on it");
    let data = node.data_dir();
    let root = data.join("store").join("artifacts");
    let files: BTreeSet<Digest> =
        files_under(&root.join("sha256")).iter().map(|path| digest_of_path(&root, path)).collect();
    assert_eq!(files_under(&root.join("tmp")), Vec::<PathBuf>::new(), "half-written artifact files left");
    let uploads = files_under(&data.join("tmp").join("uploads"));
    assert!(uploads.is_empty(), "uploads left behind: {uploads:?}");
    check_staging(&data.join("tmp").join("downloads"), staging);

    let store = Store::open(&data.join("store")).unwrap();
    let held: BTreeSet<Digest> = store.artifacts().held().unwrap().into_iter().collect();
    assert_eq!(held, files, "artifact rows and files differ (rows without files, or orphan files)");
    for digest in &held {
        let manifest = store.packages().manifest_for_digest(digest).unwrap();
        let manifest = manifest.unwrap_or_else(|| panic!("held artifact {digest} belongs to no manifest"));
        assert!(store.artifacts().verify(&manifest.manifest().artifact).unwrap(), "{digest} vanished");
    }
    let evictable: BTreeSet<Digest> =
        store.storage().eviction_candidates(0).unwrap().into_iter().map(|(digest, _)| digest).collect();
    let pinned = held.difference(&evictable).copied().collect();

    let (entries, next) = store.packages().page(None, 100_000, usize::MAX).unwrap();
    assert_eq!(next, None);
    let mut packages = BTreeMap::new();
    let mut versions = 0;
    for entry in entries {
        let index = SignedPackageIndex::from_bytes(&entry.index).unwrap().into_index();
        let mut listed = Vec::new();
        for bytes in &entry.manifests {
            let manifest = SignedManifest::from_bytes(bytes).unwrap();
            let manifest = manifest.manifest();
            let listing = index.entry(manifest.version()).unwrap_or_else(|| {
                panic!("a manifest of {}@{} its index does not list", index.name, manifest.version())
            });
            assert_eq!((listing.digest, listing.size), (manifest.artifact.digest, manifest.artifact.size));
            listed.push(manifest.version().to_string());
            versions += 1;
        }
        packages.insert(index.name.to_string(), listed);
    }
    let stats = store.packages().stats().unwrap();
    assert_eq!((stats.packages, stats.versions), (packages.len() as u64, versions));
    Catalog { packages, held, pinned }
}

/// `<root>/sha256/ab/<hex>` → the digest, checking the layout.
fn digest_of_path(root: &Path, path: &Path) -> Digest {
    let relative = path.strip_prefix(root.join("sha256")).unwrap();
    let parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    let digest = parts.get(1).and_then(|name| name.parse::<Digest>().ok());
    match digest {
        Some(digest) if parts.len() == 2 && parts[1].starts_with(&parts[0]) => digest,
        _ => panic!("a stray file in the artifact store: {}", path.display()),
    }
}

/// `tmp/downloads` holds what `staging` allows: with `Resumable`, `.part`/`.have`
/// pairs only.
fn check_staging(dir: &Path, staging: Staging) {
    let names: BTreeSet<String> =
        files_under(dir).iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
    match staging {
        Staging::None => assert!(names.is_empty(), "staging files left: {names:?}"),
        Staging::Any => {}
        Staging::Resumable => {
            for name in &names {
                let (stem, other) = match name.rsplit_once('.') {
                    Some((stem, "part")) => (stem, "have"),
                    Some((stem, "have")) => (stem, "part"),
                    _ => panic!("a stray staging file {name}"),
                };
                assert!(names.contains(&format!("{stem}.{other}")), "{name} without its pair: {names:?}");
            }
        }
    }
}
