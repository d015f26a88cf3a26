//! Network search: fan-out over `/agora/search/1.0.0` between real in-process
//! nodes, and against hostile raw libp2p peers ([`agora_tests::rogue`]) that never
//! answer or answer with forged or malformed hits. Also the query metrics, the
//! `/metrics` endpoint of the real binary and the CLI's `search --network`.
//!
//! Packages are planted straight into one node's catalog (no gossip, no DHT put)
//! on nodes with catalog sync off, so exactly the planted nodes hold them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use agora::net::{PeerId, SearchEntry, SearchResponse, Wire};
use agora::{
    ArtifactInfo, Node, PackageMetadata, PeerStanding, Publisher, Query, QueryConfig, Registry, SearchResults,
    SearchScope, SecretKey, SignedManifest, SignedPackageIndex, parse_version,
};
use agora_tests::net::{DEADLINE, TestNet, name, no_catalog_sync, searchable, wait_until};
use agora_tests::rogue::{Proto, Reply, Rogue, frame};
use agora_tests::unix_now;
use futures::StreamExt;

/// A signed package `name@1.0.0` described by `description`, owned by `author`.
fn package(author: &SecretKey, package: &str, description: &str) -> (SignedManifest, SignedPackageIndex) {
    let mut metadata = PackageMetadata::new(name(package), parse_version("1.0.0").unwrap(), description);
    metadata.keywords = vec!["search-test".into()];
    let info = ArtifactInfo::compute(package.as_bytes(), 4096).unwrap();
    Publisher::new(author.clone()).publish(metadata, info, None, unix_now()).unwrap()
}

/// Puts a package into `node`'s catalog only: no gossip, no DHT.
async fn plant(node: &Node, (manifest, index): &(SignedManifest, SignedPackageIndex)) {
    let store = node.store().clone();
    let (manifest, index) = (manifest.clone(), index.clone());
    tokio::task::spawn_blocking(move || store.packages().ingest_package(&index, &[manifest])).await.unwrap().unwrap();
    node.registry().invalidate_searches();
}

fn config(timeout_ms: u64, max_results: usize, fan_out: usize) -> QueryConfig {
    QueryConfig { timeout: Duration::from_millis(timeout_ms), max_results, fan_out, adaptive_timeout: false }
}

fn names(results: &SearchResults) -> Vec<String> {
    results.hits.iter().map(|hit| hit.name.to_string()).collect()
}

async fn standing(node: &Node, peer: &str) -> PeerStanding {
    let peers = node.peers().await.unwrap();
    let info = peers.iter().find(|info| info.peer_id == peer).unwrap_or_else(|| panic!("{peer} is not known"));
    info.standing.clone().unwrap_or_else(|| panic!("{peer} has no reputation record"))
}

async fn search(node: &Node, text: &str, config: QueryConfig) -> SearchResults {
    node.search_network(&Query::new(text), config).unwrap().collect_results().await
}

/// One node holding only `planted` (described by `description`), and a rogue
/// connected to it that takes every search and never answers; returns the net,
/// the rogue and the node's peer id.
async fn node_and_silent_rogue(planted: &str, description: &str) -> (TestNet, Rogue, PeerId) {
    let net = TestNet::with(1, no_catalog_sync).await;
    plant(net.node(0), &package(&SecretKey::generate(), planted, description)).await;
    let silent = Rogue::answering(Proto::Search, Reply::Stall);
    let node = silent.connect(net.node(0)).await;
    (net, silent, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_finds_a_package_only_one_of_ten_nodes_has() {
    let net = TestNet::with(10, no_catalog_sync).await;
    let lonely = package(&SecretKey::generate(), "lonely-parser", "a parser nobody else has");
    plant(net.node(7), &lonely).await;
    let searcher = net.node(0);
    assert!(!searchable(searcher, "lonely-parser").await, "only node 7 has it");
    assert!(searcher.search(&Query::new("lonely")).await.unwrap().hits.is_empty());

    let results = search(searcher, "lonely", config(10_000, 10, 32)).await;
    assert_eq!(names(&results), ["lonely-parser"]);
    assert!(!results.partial);
    assert_eq!(results.total, 1);
    // Verified and stored: the next local search finds it.
    assert!(searchable(searcher, "lonely-parser").await);
    assert_eq!(searcher.registry().get_package(&name("lonely-parser")).await.unwrap(), lonely.1);
    // Honest answers are successes with a latency.
    let holder = standing(searcher, &net.peer_id(7).await).await;
    assert!(holder.successes >= 1 && holder.latency_ms.is_some(), "{holder:?}");
    assert_eq!((holder.invalid, holder.timeouts), (0, 0));

    // The same through the Registry trait with the network scope.
    let other = net.node(3);
    let query = Query { scope: SearchScope::Network, ..Query::new("lonely") };
    assert!(!searchable(other, "lonely-parser").await);
    let results = other.search(&query).await.unwrap();
    assert_eq!(names(&results), ["lonely-parser"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_hit_from_several_peers_streams_once() {
    let net = TestNet::with(4, no_catalog_sync).await;
    let shared = package(&SecretKey::generate(), "shared-widget", "a widget everyone has");
    let single = package(&SecretKey::generate(), "single-widget", "a widget one peer has");
    for index in 1..4 {
        plant(net.node(index), &shared).await;
    }
    plant(net.node(2), &single).await;
    let handle = net.node(0).search_network(&Query::new("widget"), config(10_000, 10, 32)).unwrap();
    let streamed: Vec<String> = handle.map(|hit| format!("{}@{}", hit.name, hit.version)).collect().await;
    let mut sorted = streamed.clone();
    sorted.sort();
    assert_eq!(sorted, ["shared-widget@1.0.0", "single-widget@1.0.0"], "streamed {streamed:?}");
    // All three holders answered (so the duplicate really came three times).
    for index in 1..4 {
        let holder = standing(net.node(0), &net.peer_id(index).await).await;
        assert!(holder.successes >= 1, "node {index}: {holder:?}");
    }
    let results = search(net.node(0), "widget", config(10_000, 10, 32)).await;
    assert_eq!(results.hits.len(), 2);
    assert!(!results.partial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_stops_at_max_results_without_waiting_for_slow_peers() {
    let net = TestNet::with(4, no_catalog_sync).await;
    let author = SecretKey::generate();
    for (index, package_name) in [(1, "early-a"), (1, "early-b"), (2, "early-c"), (2, "early-d"), (3, "early-e")] {
        plant(net.node(index), &package(&author, package_name, "an early bird")).await;
    }
    // A peer that takes every search and never answers.
    let silent = Rogue::answering(Proto::Search, Reply::Stall);
    silent.connect(net.node(0)).await;

    let started = Instant::now();
    let mut handle = net.node(0).search_network(&Query::new("early"), config(20_000, 3, 32)).unwrap();
    let mut streamed = Vec::new();
    while let Some(hit) = handle.next().await {
        streamed.push(hit.name.to_string());
    }
    let elapsed = started.elapsed();
    assert_eq!(streamed.len(), 3, "{streamed:?}");
    assert_eq!(handle.partial(), Some(false));
    assert!(elapsed < Duration::from_secs(15), "the query waited for the silent peer: {elapsed:?}");
    let results = search(net.node(0), "early", config(20_000, 3, 32)).await;
    assert_eq!(results.hits.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_makes_the_result_partial_and_earns_a_timeout() {
    let (net, silent, _) = node_and_silent_rogue("local-thing", "a thing this node has").await;
    let node = net.node(0);

    let started = Instant::now();
    let results = search(node, "thing", config(500, 10, 4)).await;
    let elapsed = started.elapsed();
    assert_eq!(names(&results), ["local-thing"], "local hits come back at the deadline");
    assert!(results.partial);
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "the deadline was not kept: {elapsed:?}");
    assert_eq!(silent.requests(Proto::Search).await, 1);
    let rogue = silent.peer_id.to_string();
    assert!(
        wait_until(DEADLINE, || async { standing(node, &rogue).await.timeouts == 1 }).await,
        "{:?}",
        standing(node, &rogue).await
    );
    let stats = node.status().await.unwrap().queries.search;
    assert_eq!((stats.total, stats.partial, stats.succeeded, stats.failed, stats.in_flight), (1, 1, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_hits_are_dropped_and_the_peer_penalised() {
    let net = TestNet::with(1, no_catalog_sync).await;
    let node = net.node(0);
    let author = SecretKey::generate();
    let (honest_manifest, honest_index) = package(&author, "honest-gadget", "a real gadget");
    let (forged_manifest, forged_index) = package(&author, "forged-gadget", "a forged gadget");
    let mut forged_bytes = forged_manifest.to_bytes();
    *forged_bytes.last_mut().unwrap() ^= 1;
    let answer = SearchResponse {
        entries: vec![
            SearchEntry { index: honest_index.to_bytes(), manifest: honest_manifest.to_bytes() },
            SearchEntry { index: forged_index.to_bytes(), manifest: forged_bytes },
        ],
    };
    let forger = Rogue::answering(Proto::Search, Reply::Fixed(frame(&answer.encode())));
    forger.connect(node).await;
    let garbler = Rogue::answering(Proto::Search, Reply::Fixed(frame(&[0xff; 12])));
    garbler.connect(node).await;

    let results = search(node, "gadget", config(10_000, 10, 4)).await;
    assert_eq!(names(&results), ["honest-gadget"], "the valid hit stays, the forged one is dropped");
    assert!(results.partial, "two peers gave no valid answer");
    assert!(node.registry().get_package(&name("forged-gadget")).await.is_err(), "nothing forged is stored");
    assert_eq!(node.strikes(&forger.peer_id), 1);
    assert!(wait_until(DEADLINE, || async { node.strikes(&garbler.peer_id) >= 1 }).await, "garbage is a strike");
    assert_eq!(standing(node, &forger.peer_id.to_string()).await.successes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_search_requests_are_struck() {
    let (net, rogue, target) = node_and_silent_rogue("kept-secret", "never sent to a garbler").await;
    let node = net.node(0);
    rogue.send(Proto::Search, target, frame(&[9, 9, 9])).await;
    assert!(wait_until(DEADLINE, || async { node.strikes(&rogue.peer_id) >= 1 }).await, "garbage is a strike");
    // A well-formed frame asking for more than 100 hits is garbage too.
    let mut too_many = agora::net::SearchRequest { text: "kept".into(), limit: 1, ..Default::default() }.encode();
    let length = too_many.len();
    too_many[length - 2..].copy_from_slice(&500u16.to_be_bytes());
    rogue.send(Proto::Search, target, frame(&too_many)).await;
    assert!(wait_until(DEADLINE, || async { node.strikes(&rogue.peer_id) >= 2 }).await, "an absurd limit is a strike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_matching_nothing_anywhere_is_empty_and_complete() {
    let net = TestNet::with(3, no_catalog_sync).await;
    plant(net.node(1), &package(&SecretKey::generate(), "something-else", "unrelated")).await;
    let results = search(net.node(0), "qwertyuiop", config(10_000, 10, 32)).await;
    assert!(results.hits.is_empty());
    assert!(!results.partial);
    assert_eq!(results.total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_limits_and_timeouts_are_clear_errors() {
    let net = TestNet::new(1).await;
    let node = net.node(0);
    let query = Query::new("x");
    let error = |config: QueryConfig| node.search_network(&query, config).unwrap_err().to_string();
    assert!(error(config(0, 10, 1)).contains("timeout must be between 1 ms and 60 s, found 0 ms"));
    assert!(error(config(600_000, 10, 1)).contains("found 600000 ms"));
    assert!(error(config(1000, 0, 1)).contains("max_results must be between 1 and 100, found 0"));
    assert!(error(config(1000, 1000, 1)).contains("found 1000"));
    assert!(error(config(1000, 10, 0)).contains("fan_out must be between 1 and 32, found 0"));
    assert!(error(config(1000, 10, 500)).contains("found 500"));
    let network = |query: Query| Query { scope: SearchScope::Network, ..query };
    let error = node.search(&network(Query::new("x").limit(1000))).await.unwrap_err().to_string();
    assert!(error.contains("limit must be between 1 and 100"), "{error}");
    let error = node.search(&network(Query::new("x").offset(20))).await.unwrap_err().to_string();
    assert!(error.contains("offset must be 0"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_searches_at_once_all_complete_and_are_counted() {
    let net = TestNet::with(3, no_catalog_sync).await;
    plant(net.node(1), &package(&SecretKey::generate(), "busy-bee", "a busy package")).await;
    plant(net.node(2), &package(&SecretKey::generate(), "busy-ant", "another busy package")).await;
    let node = net.node(0).clone();
    let mut searches = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let node = node.clone();
        searches.spawn(async move { search(&node, "busy", config(30_000, 10, 2)).await });
    }
    let mut complete = 0;
    let mut partial = 0;
    while let Some(results) = searches.join_next().await {
        let results = results.unwrap();
        complete += 1;
        partial += usize::from(results.partial);
        assert!(!results.hits.is_empty());
    }
    assert_eq!(complete, 200);
    eprintln!("200 concurrent searches: {partial} partial");
    let stats = node.status().await.unwrap().queries.search;
    assert_eq!(stats.total, 200);
    assert_eq!(stats.succeeded + stats.partial + stats.failed, 200, "{stats:?}");
    assert_eq!(stats.partial, partial as u64);
    assert_eq!(stats.latency_count, 200);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.p50_ms.is_some() && stats.p99_ms >= stats.p50_ms, "{stats:?}");

    // DHT lookups count too: one lookup for a name nobody has.
    assert!(node.get_package(&name("nowhere-at-all")).await.is_err());
    let dht = node.status().await.unwrap().queries.dht_get;
    assert_eq!((dht.total, dht.latency_count, dht.in_flight), (1, 1, 0), "{dht:?}");
    let text = node.encode_metrics();
    assert!(text.contains("agora_search_queries_total 200"), "{text}");
    assert!(text.contains("agora_search_latency_seconds_count 200"));
    assert!(text.contains("agora_dht_get_queries_total 1"));
    assert!(text.contains("libp2p_"), "libp2p's own metrics are in the same registry");
    check_prometheus_text(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_latency_on_ten_nodes() {
    let net = TestNet::with(10, no_catalog_sync).await;
    let author = SecretKey::generate();
    for index in [2, 5, 8] {
        plant(net.node(index), &package(&author, &format!("measured-{index}"), "a measured package")).await;
    }
    let mut latencies = Vec::new();
    for round in 0..10 {
        for (index, node) in net.running() {
            let started = Instant::now();
            let results = search(node, "measured", config(5_000, 20, 3)).await;
            latencies.push(started.elapsed());
            assert!(!results.partial, "round {round}, node {index}");
        }
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "fan-out search latency on 10 nodes (fan_out 3, {} searches): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}

#[test]
fn the_binary_serves_metrics_and_searches_the_network_from_the_cli() {
    let node = agora_tests::TestNode::start();
    let response = reqwest::blocking::get(node.url("/metrics")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().unwrap();
    check_prometheus_text(&text);
    for metric in [
        "agora_search_queries_total",
        "agora_search_succeeded_total",
        "agora_search_partial_total",
        "agora_search_failed_total",
        "agora_search_in_flight",
        "agora_search_latency_seconds_bucket",
        "agora_dht_get_queries_total",
        "agora_dht_get_latency_seconds_count",
        "libp2p_swarm_",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics:\n{text}");
    }

    let output = node.ok(&["search", "--network", "nothing-here", "--preset", "interactive", "--timeout-ms", "300"]);
    assert!(output.stdout.contains("no packages match"), "{output}");
    let json = node.json(&["search", "--network", "nothing-here", "--fan-out", "2", "--max-results", "5"]);
    assert_eq!(json["partial"], false);
    let error = node.fails(&["search", "--network", "x", "--max-results", "500"]);
    assert!(error.contains("max_results must be between 1 and 100, found 500"), "{error}");
    let error = node.fails(&["search", "--network", "x", "--timeout-ms", "0"]);
    assert!(error.contains("timeout must be between"), "{error}");
    let response = reqwest::blocking::get(node.url("/v1/search?q=x&fan_out=3")).unwrap();
    assert_eq!(response.status(), 400, "network parameters need network=true");

    let status = node.ok(&["status"]);
    assert!(status.stdout.contains("searches:") && status.stdout.contains("dht gets:"), "{status}");
    let json = node.json(&["status"]);
    assert_eq!(json["queries"]["search"]["total"], 2, "{json}");
    let text = reqwest::blocking::get(node.url("/metrics")).unwrap().text().unwrap();
    assert!(text.contains("agora_search_queries_total 2"), "{text}");
}

/// Checks every line of an OpenMetrics text exposition: comments are `# HELP`,
/// `# TYPE`, `# UNIT` or the final `# EOF`; samples are a metric name, optional
/// `{label="value",...}` and a number.
fn check_prometheus_text(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    let is_name = |name: &str| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = 0;
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "bad comment line: {line}");
            assert!(is_name(name), "bad metric name in: {line}");
            if kind == "TYPE" {
                let kinds = ["counter", "gauge", "histogram", "info", "unknown", "summary", "stateset"];
                assert!(kinds.contains(&parts.next().unwrap_or("")), "bad type in: {line}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in: {line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value `{value}` in: {line}"
        );
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in: {line}"));
                for label in split_labels(labels) {
                    let (key, quoted) = label.split_once('=').unwrap_or_else(|| panic!("bad label in: {line}"));
                    assert!(is_name(key), "bad label name in: {line}");
                    assert!(
                        quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
                        "bad label value in: {line}"
                    );
                }
                name
            }
            None => series,
        };
        assert!(is_name(name), "bad metric name in: {line}");
        samples += 1;
    }
    assert!(samples > 0, "no samples");
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(labels: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (index, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&labels[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        parts.push(&labels[start..]);
    }
    parts
}
