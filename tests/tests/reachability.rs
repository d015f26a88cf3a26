//! Reachability across real NATs, with the real binary in real network
//! namespaces (`agora_tests::netns`; needs root and nftables, which CI has):
//! two home LANs, each behind a router that masquerades and drops unsolicited
//! packets, and one public node. A node at one home publishes; a node at the
//! other finds it through the public node and fetches it — over a hole-punched
//! direct connection when the routers keep ports, and not at all past the
//! relay's limit when they do not (the error names the limit). And two nodes on
//! one LAN find each other with mDNS, with no bootstrap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use agora_tests::netns::{Homes, Lab, Nat};
use agora_tests::{TestNode, manifest, noise, wait_until, write_package};
use serde_json::Value;

/// How long reservations, hole punching and gossip may take.
const DEADLINE: Duration = Duration::from_secs(60);
/// The package's size: bigger than the relay's default 1 MiB circuit limit.
const SIZE: usize = 2_000_000;

/// Publishes a `SIZE`-byte package on the publisher and waits until the
/// fetcher's search finds it; returns its bytes.
fn publish(homes: &Homes, name: &str) -> Vec<u8> {
    let bytes = noise(SIZE, 7);
    let dir = homes.publisher.scratch().join("pkg");
    write_package(&dir, &manifest(name, "1.0.0", "from behind a home router"), &[("blob.bin", &bytes)]);
    homes.publisher.ok(&["publish", dir.to_str().unwrap()]);
    let found = wait_until(DEADLINE, || homes.fetcher.run(&["search", name]).stdout.contains(name));
    assert!(found, "the package never reached the other home:\n{}", homes.fetcher.log());
    let info = homes.fetcher.json(&["info", name]);
    assert_eq!(info["manifest"]["manifest"]["description"], "from behind a home router", "{info}");
    bytes
}

#[test]
fn a_node_at_home_fetches_from_a_node_at_another_home_over_a_hole_punched_connection() {
    let homes = Homes::start(Nat::PortPreserving, "");
    // Behind NAT: private, a DHT client, no address announced but the relayed one.
    let publisher = homes.publisher.network();
    assert_eq!(publisher["reachability"], "private", "{publisher}");
    assert_eq!(publisher["dht_mode"], "client", "{publisher}");
    assert_eq!(publisher["external_addrs"], Value::Array(Vec::new()), "{publisher}");
    let announced = format!("{} {}", publisher["external_addrs"], publisher["relay_addrs"]);
    assert!(!announced.contains("/ip4/192.168."), "a private address was announced: {publisher}");
    let public = homes.public.network();
    assert_eq!(public["reachability"], "public", "{public}");
    assert_eq!(public["dht_mode"], "server", "{public}");
    assert_eq!(public["relaying"], true, "{public}");

    let bytes = publish(&homes, "across-nat");
    let started = Instant::now();
    homes.fetcher.ok(&["fetch", "across-nat", "-o", "got"]);
    let took = started.elapsed();
    assert_eq!(std::fs::read(homes.fetcher.scratch().join("got/blob.bin")).unwrap(), bytes);

    let publisher_id = publisher["peer_id"].as_str().unwrap().to_owned();
    let peers = homes.fetcher.json(&["peers"]);
    let to_publisher = peers.as_array().unwrap().iter().find(|p| p["peer_id"] == publisher_id.as_str()).unwrap();
    let kinds: Vec<&str> =
        to_publisher["connections"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["direct"], "the fetch did not run over a direct connection: {to_publisher}");
    let address = to_publisher["connections"][0]["address"].as_str().unwrap();
    assert!(address.starts_with("/ip4/203.0.113.1/"), "not the publisher's router: {address}");
    let fetcher = homes.fetcher.network();
    assert!(
        fetcher["hole_punch_successes"].as_u64().unwrap() >= 1
            || homes.publisher.network()["hole_punch_successes"].as_u64().unwrap() >= 1,
        "{fetcher}"
    );
    // The same as gauges and counters on /metrics.
    let metrics = homes.fetcher.get("/metrics");
    for line in ["agora_net_reachability{state=\"private\"} 1", "agora_net_connections{kind=\"direct\"} "] {
        assert!(metrics.contains(line), "no `{line}` in /metrics:\n{metrics}");
    }
    let punched = metrics + &homes.publisher.get("/metrics");
    assert!(punched.contains("agora_net_hole_punch_successes_total 1"), "{punched}");
    let public = homes.public.get("/metrics");
    assert!(public.contains("agora_net_relaying 1"), "{public}");
    eprintln!("fetched {SIZE} bytes across two NATs over a hole-punched connection in {took:?}");
}

#[test]
fn past_symmetric_nats_a_fetch_bigger_than_the_relay_limit_fails_naming_it_and_leaves_nothing() {
    let homes = Homes::start(Nat::Symmetric, "");
    publish(&homes, "too-big-for-relay");
    let error = homes.fetcher.fails(&["fetch", "too-big-for-relay", "-o", "got"]);
    assert!(error.contains("relay limit is 1048576 bytes"), "{error}");
    assert!(!homes.fetcher.scratch().join("got").exists(), "the fetch left an output dir");
    let downloads = homes.fetcher.data_dir().join("tmp/downloads");
    let left: Vec<_> = std::fs::read_dir(&downloads).map(|dir| dir.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "staging files left: {left:?}");
}

#[test]
fn past_symmetric_nats_a_fetch_within_the_relay_limit_completes_over_the_relay() {
    // A relay whose circuits carry 8 MiB: enough for the 2 MB package.
    let homes = Homes::start(Nat::Symmetric, "[network.relay]\nmax_circuit_bytes = 8388608\n");
    let bytes = publish(&homes, "over-the-relay");
    homes.fetcher.ok(&["fetch", "over-the-relay", "-o", "got"]);
    assert_eq!(std::fs::read(homes.fetcher.scratch().join("got/blob.bin")).unwrap(), bytes);
    let publisher_id = homes.publisher.peer_id();
    let peers = homes.fetcher.json(&["peers"]);
    let to_publisher = peers.as_array().unwrap().iter().find(|p| p["peer_id"] == publisher_id.as_str()).unwrap();
    let connections = to_publisher["connections"].as_array().unwrap();
    assert!(!connections.is_empty(), "{to_publisher}");
    for connection in connections {
        assert_eq!(connection["kind"], "relayed", "a direct connection through a symmetric NAT? {to_publisher}");
        assert_eq!(connection["relay"], homes.public.peer_id().as_str(), "{to_publisher}");
    }
    let table = homes.fetcher.ok(&["peers"]).stdout;
    assert!(table.contains("relayed"), "`agora peers` does not show the relayed peer:\n{table}");
    let fetcher = homes.fetcher.network();
    assert_eq!(fetcher["hole_punch_successes"], 0, "{fetcher}");
}

#[test]
fn two_nodes_on_one_lan_find_each_other_by_mdns_without_bootstrap() {
    let (_lab, hosts) = Lab::one_lan(2);
    let mut first = TestNode::unstarted_in(&hosts[0]);
    first.launch(&[]);
    let mut second = TestNode::unstarted_in(&hosts[1]);
    second.launch(&[]);
    let first_id = first.network()["peer_id"].as_str().unwrap().to_owned();
    let met = wait_until(DEADLINE, || second.network()["connected_peers"].to_string().contains(&first_id));
    assert!(met, "mDNS did not connect them:\n{}", second.log());
    // Each confirms the other can dial its LAN address (AutoNAT), so the DHT
    // serves on the LAN.
    for node in [&first, &second] {
        let serving = wait_until(DEADLINE, || node.network()["dht_mode"] == "server");
        assert!(serving, "{}\n{}", node.network(), node.log());
    }
    let dir = first.scratch().join("pkg");
    write_package(&dir, &manifest("on-the-lan", "1.0.0", "found by mdns"), &[("a.txt", b"lan bytes")]);
    first.ok(&["publish", dir.to_str().unwrap()]);
    let found = wait_until(DEADLINE, || second.run(&["search", "on-the-lan"]).stdout.contains("on-the-lan"));
    assert!(found, "{}", second.log());
    second.ok(&["fetch", "on-the-lan", "-o", "got"]);
    assert_eq!(std::fs::read(second.scratch().join("got/a.txt")).unwrap(), b"lan bytes");
}
