//! Real network topologies for reachability tests: Linux network namespaces,
//! veth pairs, bridges, and routers doing NAT with nftables, built with `ip`
//! and `nft` (CI runs as root; `.ci/run` installs nftables).
//!
//! [`Lab::two_homes`] builds the "internet" (a bridge in its own namespace,
//! 203.0.113.0/24), one public host on it (203.0.113.10), and two home LANs
//! (192.168.1.0/24 and 192.168.2.0/24), each behind a router namespace
//! (203.0.113.1 and .2) that masquerades LAN traffic and drops every packet
//! from the internet that does not belong to a connection the LAN opened, as a
//! home router does. [`Nat::PortPreserving`] keeps source ports (an
//! endpoint-independent mapping: hole punching works); [`Nat::Symmetric`] picks
//! a random port per connection (endpoint-dependent: it cannot).
//! [`Lab::one_lan`] builds one LAN of hosts on a bridge, for mDNS.
//!
//! No packet leaves the namespaces; dropping the [`Lab`] deletes them all (their
//! veths go with them). A test that cannot build a lab (not root, no `nft`)
//! panics saying why: it never passes without running.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{TestNode, wait_until};

/// How a home router maps its LAN's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `masquerade`: Linux keeps the source port when it is free.
    PortPreserving,
    /// `masquerade random,fully-random`: a random port per connection.
    Symmetric,
}

/// A set of namespaces, deleted on drop.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
}

/// The public host's address in [`Lab::two_homes`].
pub const PUBLIC_IP: &str = "203.0.113.10";

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    fn new() -> Self {
        let prefix = format!("ag{}x{}", std::process::id() % 100_000, LABS.fetch_add(1, Ordering::Relaxed));
        let lab = Self { prefix, namespaces: Vec::new() };
        for tool in ["ip", "nft"] {
            let found = Command::new(tool).arg("-V").output().is_ok_and(|output| output.status.success());
            assert!(found, "netns tests need `{tool}` (iproute2, nftables) and root: run them through .ci/run");
        }
        lab
    }

    /// The public host and the two LAN hosts: `(public, [lan1, lan2])`, as
    /// namespace names.
    pub fn two_homes(nat: Nat) -> (Self, String, [String; 2]) {
        let mut lab = Self::new();
        let internet = lab.namespace("net");
        run(&["ip", "-n", &internet, "link", "add", "br0", "type", "bridge"]);
        run(&["ip", "-n", &internet, "link", "set", "br0", "up"]);
        let public = lab.namespace("pub");
        lab.wire(&internet, &public, "wan", &format!("{PUBLIC_IP}/24"));
        let mut hosts = Vec::new();
        for home in 1..=2u8 {
            let router = lab.namespace(&format!("r{home}"));
            lab.wire(&internet, &router, "wan", &format!("203.0.113.{home}/24"));
            let host = lab.namespace(&format!("h{home}"));
            lab.link(&router, "lan", &format!("192.168.{home}.1/24"), &host, "lan", &format!("192.168.{home}.10/24"));
            run(&["ip", "-n", &host, "route", "add", "default", "via", &format!("192.168.{home}.1")]);
            run(&["ip", "netns", "exec", &router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let masquerade = match nat {
                Nat::PortPreserving => "masquerade",
                Nat::Symmetric => "masquerade random,fully-random",
            };
            nft(&router, &router_rules(masquerade));
            hosts.push(host);
        }
        let hosts = [hosts.remove(0), hosts.remove(0)];
        (lab, public, hosts)
    }

    /// `count` hosts on one LAN (192.168.7.0/24, a bridge in its own namespace).
    pub fn one_lan(count: u8) -> (Self, Vec<String>) {
        let mut lab = Self::new();
        let switch = lab.namespace("sw");
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"]);
        let hosts = (1..=count)
            .map(|n| {
                let host = lab.namespace(&format!("l{n}"));
                lab.wire(&switch, &host, "lan", &format!("192.168.7.{}/24", 10 + n));
                run(&["ip", "-n", &host, "route", "add", "224.0.0.0/4", "dev", "lan"]);
                host
            })
            .collect();
        (lab, hosts)
    }

    /// Creates a namespace with loopback up.
    fn namespace(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        let output = Command::new("ip").args(["netns", "add", &full]).output().expect("running ip");
        assert!(
            output.status.success(),
            "cannot create network namespace {full} (netns tests need root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.namespaces.push(full.clone());
        run(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// A veth from `host` (named `device`, with `address`) to the bridge `br0` in `switch`.
    fn wire(&self, switch: &str, host: &str, device: &str, address: &str) {
        let port = format!("p{}", self.namespaces.len());
        self.link(switch, &port, "", host, device, address);
        run(&["ip", "-n", switch, "link", "set", &port, "master", "br0"]);
    }

    /// A veth pair between two namespaces, each end renamed and addressed (an
    /// empty address leaves that end without one).
    fn link(&self, a: &str, a_dev: &str, a_addr: &str, b: &str, b_dev: &str, b_addr: &str) {
        let n = self.namespaces.len();
        let (x, y) = (format!("{}va{n}", self.prefix), format!("{}vb{n}", self.prefix));
        run(&["ip", "link", "add", &x, "type", "veth", "peer", "name", &y]);
        for (end, ns, device, address) in [(&x, a, a_dev, a_addr), (&y, b, b_dev, b_addr)] {
            run(&["ip", "link", "set", end, "netns", ns]);
            run(&["ip", "-n", ns, "link", "set", end, "name", device]);
            if !address.is_empty() {
                run(&["ip", "-n", ns, "addr", "add", address, "dev", device]);
            }
            run(&["ip", "-n", ns, "link", "set", device, "up"]);
        }
    }
}

/// [`Lab::two_homes`] with its nodes running: the public node (its addresses
/// declared, as a server's are) and one node per home, each bootstrapped from
/// the public node and holding a relay reservation on it.
#[derive(Debug)]
pub struct Homes {
    /// The public node, 203.0.113.10, TCP and QUIC on port 4001.
    pub public: TestNode,
    /// The node at home 1.
    pub publisher: TestNode,
    /// The node at home 2.
    pub fetcher: TestNode,
    /// Dropped last: the namespaces outlive the nodes in them.
    pub lab: Lab,
    bootstrap: String,
    lan2: String,
}

/// How long a reservation may take once a home node runs.
const RESERVATION_DEADLINE: Duration = Duration::from_secs(60);

impl Homes {
    /// Builds the topology and starts the three nodes; `public_config` is
    /// appended to the public node's `config.toml` (after its `[network]`
    /// table, so it may add keys to it or open `[network.relay]`).
    pub fn start(nat: Nat, public_config: &str) -> Self {
        let (lab, public_ns, [lan1, lan2]) = Lab::two_homes(nat);
        let mut public = TestNode::unstarted_in(&public_ns);
        std::fs::create_dir_all(public.data_dir()).expect("public data dir");
        std::fs::write(
            public.data_dir().join("config.toml"),
            format!(
                "[network]\nexternal_addresses = [\"/ip4/{PUBLIC_IP}/tcp/4001\", \"/ip4/{PUBLIC_IP}/udp/4001/quic-v1\"]\n{public_config}"
            ),
        )
        .expect("public config");
        public.launch(&["--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4001/quic-v1"]);
        let bootstrap = format!("/ip4/{PUBLIC_IP}/tcp/4001/p2p/{}", public.peer_id());
        let mut publisher = TestNode::unstarted_in(&lan1);
        publisher.launch(&["--bootstrap", &bootstrap]);
        let fetcher = Self::home_node(&lan2, &bootstrap);
        Self::wait_for_reservation(&publisher);
        Self { public, publisher, fetcher, lab, bootstrap, lan2 }
    }

    /// Replaces the fetcher with a fresh node (new identity, empty data dir) at
    /// home 2, holding a reservation: one that has never met the publisher.
    pub fn new_fetcher(&mut self) {
        self.fetcher.stop();
        self.fetcher = Self::home_node(&self.lan2, &self.bootstrap);
    }

    fn home_node(namespace: &str, bootstrap: &str) -> TestNode {
        let mut node = TestNode::unstarted_in(namespace);
        node.launch(&["--bootstrap", bootstrap]);
        Self::wait_for_reservation(&node);
        node
    }

    fn wait_for_reservation(node: &TestNode) {
        let reserved = wait_until(RESERVATION_DEADLINE, || {
            node.network()["relay_addrs"].as_array().is_some_and(|a| !a.is_empty())
        });
        assert!(reserved, "no relay reservation: {}\n{}", node.network(), node.log());
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for namespace in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", namespace]).status();
        }
    }
}

/// A home router's ruleset: masquerade what leaves the WAN; forward only what
/// the LAN opened (and its replies); drop anything new arriving on the WAN, for
/// the router itself too (no RST that would tell a dialer to give up early).
fn router_rules(masquerade: &str) -> String {
    format!(
        "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat;\n    oifname \"wan\" {masquerade}\n  }}\n}}\n\
         table inet filter {{\n  chain forward_lan {{\n    type filter hook forward priority filter; policy drop;\n    \
         ct state established,related accept\n    iifname \"lan\" accept\n  }}\n  chain input_wan {{\n    \
         type filter hook input priority filter; policy accept;\n    iifname \"wan\" ct state established,related accept\n    \
         iifname \"wan\" drop\n  }}\n}}\n"
    )
}

/// Runs `work` on a thread inside network namespace `namespace`: the sockets it
/// opens are that namespace's (a test reaching a node's HTTP API there).
pub fn within<T: Send>(namespace: &str, work: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsFd as _;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let handle = std::fs::File::open(format!("/run/netns/{namespace}"))
                    .unwrap_or_else(|e| panic!("opening network namespace {namespace}: {e}"));
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .unwrap_or_else(|e| panic!("entering network namespace {namespace}: {e}"));
                work()
            })
            .join()
            .expect("the thread in the namespace panicked")
    })
}

fn nft(namespace: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", namespace, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running nft");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "nft in {namespace}: {}\n{rules}", String::from_utf8_lossy(&output.stderr));
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output().expect("running a setup command");
    assert!(output.status.success(), "`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}
