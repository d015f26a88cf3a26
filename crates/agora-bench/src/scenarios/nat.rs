//! Fetching across two home NATs beside the same fetches on a flat network, in
//! the same run: real `agora` processes (the release binary, `$AGORA_BIN`) in
//! real network namespaces (`agora_tests::netns`; needs root, iproute2 and
//! nftables, as the reachability tests do).
//!
//! Each round starts a fresh fetcher that has never met the publisher, then
//! times `agora fetch` of a one-chunk package — cold: provider lookup, the dial
//! through the relay, the hole punch (DCUtR) and the chunk — and then of a
//! 64 MiB package over the connection that punch gave. The flat network runs the
//! same three nodes on one LAN (mDNS off, so the fetcher meets the publisher at
//! the fetch there too).

use std::path::Path;
use std::time::{Duration, Instant};

use agora_tests::netns::{Homes, Lab, Nat};
use agora_tests::{TestNode, manifest, noise, wait_until, write_package};

use crate::report::{Figure, Scenario};
use crate::scenarios::Scale;
use crate::stats::{Samples, peak_rss_kib};

const MIB: usize = 1024 * 1024;
/// The one-chunk package (the default chunk is 256 KiB).
const SMALL: usize = 100_000;
/// How long a fresh fetcher may take to learn both packages.
const DEADLINE: Duration = Duration::from_secs(90);
const SMALL_NAME: &str = "nat-bench-small";
const BIG_NAME: &str = "nat-bench-big";
/// The first host of `Lab::one_lan`.
const FLAT_PUBLIC_IP: &str = "192.168.7.11";

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    tokio::task::spawn_blocking(move || blocking(scale)).await?
}

/// One network's measurements: cold fetch seconds and big-fetch MB/s per round.
#[derive(Default)]
struct Rounds {
    cold_ms: Samples,
    rates: Vec<f64>,
    /// Rounds whose fetcher ended up connected to the publisher other than
    /// directly only (a failed hole punch).
    not_direct: usize,
}

/// The three nodes of one network, whichever it is.
trait Network {
    fn publisher(&self) -> &TestNode;
    fn fetcher(&self) -> &TestNode;
    /// Replaces the fetcher with a fresh one.
    fn new_fetcher(&mut self);
}

impl Network for Homes {
    fn publisher(&self) -> &TestNode {
        &self.publisher
    }
    fn fetcher(&self) -> &TestNode {
        &self.fetcher
    }
    fn new_fetcher(&mut self) {
        Homes::new_fetcher(self);
    }
}

/// Three nodes on one LAN: every one can dial every other.
struct Flat {
    _public: TestNode,
    publisher: TestNode,
    fetcher: TestNode,
    bootstrap: String,
    fetcher_ns: String,
    _lab: Lab,
}

impl Flat {
    fn start() -> Self {
        let (lab, hosts) = Lab::one_lan(3);
        // The bootstrap node declares its address, as the public node at the
        // homes does (AutoNAT cannot confirm a node that only is dialled).
        let mut public = TestNode::unstarted_in(&hosts[0]);
        std::fs::create_dir_all(public.data_dir()).expect("data dir");
        std::fs::write(
            public.data_dir().join("config.toml"),
            format!("[network]\nmdns = false\nexternal_addresses = [\"/ip4/{FLAT_PUBLIC_IP}/tcp/4001\"]\n"),
        )
        .expect("config");
        public.launch(&["--listen", "/ip4/0.0.0.0/tcp/4001"]);
        let bootstrap = format!("/ip4/{FLAT_PUBLIC_IP}/tcp/4001/p2p/{}", public.peer_id());
        let publisher = flat_node(&hosts[1], &bootstrap);
        let fetcher = flat_node(&hosts[2], &bootstrap);
        Self { _public: public, publisher, fetcher, bootstrap, fetcher_ns: hosts[2].clone(), _lab: lab }
    }
}

impl Network for Flat {
    fn publisher(&self) -> &TestNode {
        &self.publisher
    }
    fn fetcher(&self) -> &TestNode {
        &self.fetcher
    }
    fn new_fetcher(&mut self) {
        self.fetcher.stop();
        self.fetcher = flat_node(&self.fetcher_ns, &self.bootstrap);
    }
}

/// A node on the flat LAN with mDNS off, once AutoNAT confirmed its address
/// (`Homes` waits for the relay reservation, the same point at home).
fn flat_node(namespace: &str, bootstrap: &str) -> TestNode {
    let mut node = TestNode::unstarted_in(namespace);
    std::fs::create_dir_all(node.data_dir()).expect("data dir");
    std::fs::write(node.data_dir().join("config.toml"), "[network]\nmdns = false\n").expect("config");
    node.launch(&["--bootstrap", bootstrap]);
    let confirmed = wait_until(DEADLINE, || node.network()["dht_mode"] == "server");
    assert!(confirmed, "no confirmed address on the LAN: {}\n{}", node.network(), node.log());
    node
}

fn blocking(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let big = scale.pick(64 * MIB, 16 * MIB);
    let rounds = scale.pick(3, 1);
    let work = tempfile::tempdir()?;
    let small_bytes = noise(SMALL, 1);
    let big_bytes = noise(big, 2);
    let packages = [(SMALL_NAME, &small_bytes), (BIG_NAME, &big_bytes)];
    for (name, bytes) in packages {
        write_package(&work.path().join(name), &manifest(name, "1.0.0", "nat benchmark"), &[("blob.bin", bytes)]);
    }

    println!("   two homes behind port-preserving NATs, one public node");
    let mut homes = Homes::start(Nat::PortPreserving, "");
    let punched = measure(&mut homes, work.path(), rounds, &big_bytes, true)?;
    drop(homes);
    println!("   flat: the same three nodes on one LAN");
    let mut flat = Flat::start();
    let direct = measure(&mut flat, work.path(), rounds, &big_bytes, false)?;
    drop(flat);

    let seconds = started.elapsed().as_secs_f64();
    let rss = peak_rss_kib() as f64 / 1024.0;
    let cold = punched.cold_ms.summary();
    let cold_flat = direct.cold_ms.summary();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (rate, rate_flat) = (mean(&punched.rates), mean(&direct.rates));
    let mib = big / MIB;
    let not_direct = if punched.not_direct == 0 {
        "every round's fetch ran over a direct (hole-punched) connection".to_owned()
    } else {
        format!("{} of {rounds} rounds ended without a direct connection", punched.not_direct)
    };
    Ok(vec![
        Scenario {
            name: "nat: cold fetch across two NATs, 1 chunk".into(),
            figure: Figure::latency("relay dial + hole punch + first chunk", cold),
            baseline: Some(Figure::latency("flat network, direct dial + first chunk", cold_flat)),
            ratio: Some(cold.p50 / cold_flat.p50),
            goal: "p50 < 3 s (a user waits for it once per peer)".into(),
            met: Some(cold.p50 < 3000.0),
            peak_rss_mib: rss,
            seconds,
            notes: vec![format!(
                "wall time of `agora fetch` of a {SMALL}-byte package by a fresh node that has never met the \
                 publisher ({rounds} rounds, fresh fetcher each); {not_direct}"
            )],
        },
        Scenario {
            name: format!("nat: {mib} MiB fetch over a hole-punched connection"),
            figure: Figure::new("hole-punched TCP", rate, "MB/s"),
            baseline: Some(Figure::new("flat network", rate_flat, "MB/s")),
            ratio: Some(rate / rate_flat),
            goal: "≥ 80% of the flat network".into(),
            met: Some(rate >= 0.8 * rate_flat),
            peak_rss_mib: rss,
            seconds,
            notes: vec![format!(
                "`agora fetch` of {mib} MiB right after the cold fetch, over the connection it opened (mean of \
                 {rounds}); NAT {:?} MB/s, flat {:?} MB/s",
                punched.rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
                direct.rates.iter().map(|r| r.round()).collect::<Vec<_>>()
            )],
        },
    ])
}

fn measure(
    network: &mut dyn Network,
    work: &Path,
    rounds: usize,
    big_bytes: &[u8],
    across_nat: bool,
) -> anyhow::Result<Rounds> {
    for name in [SMALL_NAME, BIG_NAME] {
        network.publisher().ok(&["publish", work.join(name).to_str().unwrap_or_default()]);
    }
    let publisher_id = network.publisher().peer_id();
    let mut out = Rounds::default();
    for round in 0..rounds {
        if round > 0 {
            network.new_fetcher();
        }
        let fetcher = network.fetcher();
        let knows = wait_until(DEADLINE, || {
            let found = fetcher.run(&["search", "nat-bench"]).stdout;
            found.contains(SMALL_NAME) && found.contains(BIG_NAME)
        });
        anyhow::ensure!(knows, "the fetcher never learnt the packages:\n{}", fetcher.log());
        let t = Instant::now();
        fetcher.ok(&["fetch", SMALL_NAME, "-o", "small"]);
        let cold = t.elapsed();
        let t = Instant::now();
        fetcher.ok(&["fetch", BIG_NAME, "-o", "big"]);
        let took = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            std::fs::read(fetcher.scratch().join("big/blob.bin"))? == big_bytes,
            "the big package arrived altered"
        );
        let peers = fetcher.json(&["peers"]);
        let direct = peers.as_array().into_iter().flatten().any(|peer| {
            peer["peer_id"] == publisher_id.as_str()
                && peer["connections"].as_array().is_some_and(|c| c.iter().all(|c| c["kind"] == "direct"))
        });
        if across_nat && !direct {
            out.not_direct += 1;
        }
        let rate = big_bytes.len() as f64 / MIB as f64 / took;
        println!("   round {round}: cold fetch {:.0} ms, {rate:.0} MB/s, direct: {direct}", cold.as_secs_f64() * 1e3);
        out.cold_ms.push_duration_ms(cold);
        out.rates.push(rate);
    }
    Ok(out)
}
