//! `cargo xtask soak --minutes N [--nodes K] [--seed S]`: a network of real
//! `agora node` processes (the release binary) on 127.0.0.1 under churn, with
//! clients going through the real CLI, and an oracle that checks at the end that
//! nothing acknowledged was lost.
//!
//! - **Topology**: K nodes (default 5), each in its own data dir under
//!   `target/soak/nodes/`, API on `127.0.0.1:0` and libp2p on
//!   `/ip4/127.0.0.1/tcp/0`; each joins through the anchor (node 0) and one other
//!   running node. The anchor is never churned, so one process lives through the
//!   whole run (its memory is the leak signal) and there is always a way in.
//! - **Churn**: about every `--churn-secs` (default 20, ±50%), one of: crash
//!   (SIGKILL), stop (SIGTERM, must exit 0 within 20 s), join (a new data dir, up
//!   to K + 3 data dirs), retire (a stopped node's data dir is deleted; only for
//!   nodes that never published, so a publisher's packages survive its crashes).
//!   The first K nodes publish; nodes that joined later only search, get info
//!   and fetch, so they can be retired and joins keep happening.
//!   Crashed nodes come back on their old data dir after 3–15 s, stopped ones
//!   after 10–45 s. At least max(2, K/2) nodes stay up.
//! - **Clients**: 2 threads, each running one CLI command at a time against a
//!   random running node, paced 0.3–1 s apart: publish (a new package or a new
//!   version of one the node owns; a few KiB, one in eight up to 1 MiB), search
//!   (the exact name of an acknowledged package locally, or a word over the
//!   network), info and fetch of a random acknowledged version (fetched files are
//!   compared byte for byte with the ones generated from the version's seed).
//! - **Oracle** ([`oracle`]): every acknowledged publish with its digest. Failures
//!   are classified: tolerated (the node churned during the command, no holder
//!   was up, too recent to have spread), unexplained (reported), defects (an
//!   answer the oracle contradicts).
//! - **End**: clients stop, every stopped node restarts on its data dir, then
//!   (bounded by `--settle-secs`, default 120) every running node must answer
//!   `GET /v1/packages/NAME/VERSION` (what `agora info` asks) with the right
//!   digest for every acknowledged version, and every version must be fetchable
//!   with the right content from some node (a node other than its home first).
//! - **Report**: every 30 s a line (operations by kind, nodes up, RSS and fds of
//!   each node process from `/proc`); `target/soak/report.{json,md}` at the end
//!   with the verdict. Node logs are scanned for `panicked` as they grow and cut
//!   back past 8 MiB.
//!
//! Not part of `cargo xtask ci`. Only processes started here are signalled, by pid.

mod cluster;
mod oracle;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::stats::Rng;
use cluster::{Running, Slot};
use oracle::{FailureContext, OpKind, Oracle, PublishPlan, WORDS};
use report::{Churn, Counters, FinalCheck, Interval, NodeSample, Soak};

const REPORT_EVERY: Duration = Duration::from_secs(30);
const CLIENTS: usize = 2;
const MAX_NODES: usize = 12;
/// A package this young, or a node up for less, may not have spread yet.
const SPREAD_GRACE_SECS: f64 = 60.0;
const PUBLISH_DEADLINE: Duration = Duration::from_secs(120);
const FETCH_DEADLINE: Duration = Duration::from_secs(120);
const QUERY_DEADLINE: Duration = Duration::from_secs(30);
/// The final fetch check stops trying after this long.
const FINAL_FETCH_BUDGET: Duration = Duration::from_secs(900);

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Options {
    minutes: f64,
    nodes: usize,
    seed: u64,
    churn_secs: f64,
    settle_secs: f64,
    out: PathBuf,
    agora: PathBuf,
}

/// `agora-bench soak --minutes N [--nodes K] [--seed S] [--churn-secs S]
/// [--settle-secs S] [--out DIR] [--agora BIN]`.
pub(crate) fn main(args: &[String]) -> anyhow::Result<()> {
    let mut options = parse(args)?;
    // The clients run in their own scratch dirs, so every path handed to them is absolute.
    std::fs::create_dir_all(&options.out)?;
    options.out = options.out.canonicalize().with_context(|| format!("resolving {}", options.out.display()))?;
    options.agora = options.agora.canonicalize().with_context(|| format!("resolving {}", options.agora.display()))?;
    let command =
        std::env::var("AGORA_SOAK_COMMAND").unwrap_or_else(|_| format!("agora-bench soak {}", args.join(" ")));
    let mut soak = run(&options, command)?;
    soak.judge();
    report::write(&soak, &options.out)?;
    println!("\n{}", soak.summary());
    println!("report written to {}", options.out.join("report.md").display());
    if soak.defects.is_empty() { Ok(()) } else { bail!("the soak found defects") }
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let agora_default = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(format!("agora{}", std::env::consts::EXE_SUFFIX))))
        .unwrap_or_else(|| PathBuf::from("agora"));
    let mut options = Options {
        minutes: 0.0,
        nodes: 5,
        seed: 1,
        churn_secs: 20.0,
        settle_secs: 120.0,
        out: PathBuf::from("target/soak"),
        agora: agora_default,
    };
    let mut minutes = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{arg} needs a value"));
        let number = |text: &String| -> anyhow::Result<f64> {
            text.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| anyhow!("{arg}: `{text}` is not a positive number"))
        };
        match arg.as_str() {
            "--minutes" => minutes = Some(number(value()?)?),
            "--nodes" => {
                let text = value()?;
                options.nodes = text.parse().map_err(|_| anyhow!("--nodes: `{text}` is not a node count"))?;
            }
            "--seed" => {
                let text = value()?;
                options.seed = text.parse().map_err(|_| anyhow!("--seed: `{text}` is not a whole number"))?;
            }
            "--churn-secs" => options.churn_secs = number(value()?)?,
            "--settle-secs" => options.settle_secs = number(value()?)?,
            "--out" => options.out = PathBuf::from(value()?),
            "--agora" => options.agora = PathBuf::from(value()?),
            other => bail!("unknown soak flag `{other}`; expected --minutes N [--nodes K] [--seed S]"),
        }
    }
    options.minutes = minutes.ok_or_else(|| anyhow!("the soak needs --minutes N"))?;
    if !(2..=MAX_NODES).contains(&options.nodes) {
        bail!("--nodes must be from 2 to {MAX_NODES}, not {}", options.nodes);
    }
    if !options.agora.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p agora-cli`", options.agora.display());
    }
    Ok(options)
}

/// What the clients see of one node.
#[derive(Debug, Clone)]
struct NodeView {
    data_dir: PathBuf,
    up: bool,
    incarnation: u32,
    up_since: Instant,
    retired: bool,
}

/// What the clients and the churn loop share.
#[derive(Debug)]
struct Shared {
    view: Vec<NodeView>,
    oracle: Oracle,
    counters: Counters,
    started: Instant,
    /// Slots below this publish (the first `--nodes`); nodes that joined later
    /// only read, so they can be retired for good.
    publishers: usize,
}

impl Shared {
    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn up(&self) -> Vec<usize> {
        (0..self.view.len()).filter(|slot| self.view[*slot].up).collect()
    }

    /// Whether `slot` is no longer the process (`incarnation`) a command talked to.
    fn churned(&self, slot: usize, incarnation: u32) -> bool {
        let node = &self.view[slot];
        !node.up || node.incarnation != incarnation
    }

    fn young(&self, slot: usize) -> bool {
        self.view[slot].up_since.elapsed().as_secs_f64() < SPREAD_GRACE_SECS
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A client thread that panicked leaves the data as it was; keep going.
    shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

enum State {
    Up(Running),
    Down {
        restart_at: Instant,
    },
    Retired,
    /// Did not come back after three tries; left alone.
    Failed,
}

struct Node {
    slot: Slot,
    state: State,
    incarnation: u32,
    failed_starts: u32,
}

/// The churn side: the processes, owned by the main thread only.
struct Cluster {
    nodes: Vec<Node>,
    shared: Arc<Mutex<Shared>>,
    agora: PathBuf,
    root: PathBuf,
    max_slots: usize,
    churn: Churn,
    events: Vec<String>,
    rng: Rng,
}

const MAX_EVENTS: usize = 100;

impl Cluster {
    fn note(&mut self, event: String) {
        let at = lock(&self.shared).secs();
        println!("[{:>6.1} min] {event}", at / 60.0);
        if self.events.len() < MAX_EVENTS {
            self.events.push(format!("{:.1} min: {event}", at / 60.0));
        }
    }

    /// Bootstrap addresses: the anchor and one other running node.
    fn bootstrap_for(&mut self, slot: usize) -> Vec<String> {
        let up: Vec<&Running> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != slot)
            .filter_map(|(_, node)| if let State::Up(running) = &node.state { Some(running) } else { None })
            .collect();
        let mut addresses: Vec<String> = Vec::new();
        if let Some(State::Up(anchor)) = self.nodes.first().map(|n| &n.state)
            && slot != 0
        {
            addresses.push(anchor.listen.clone());
        }
        if !up.is_empty() {
            let pick = up[self.rng.below(up.len())].listen.clone();
            if !addresses.contains(&pick) {
                addresses.push(pick);
            }
        }
        addresses
    }

    fn add_slot(&mut self) -> anyhow::Result<usize> {
        let slot = self.nodes.len();
        let dir = self.root.join(format!("node-{slot}"));
        self.nodes.push(Node {
            slot: Slot::new(dir)?,
            state: State::Down { restart_at: Instant::now() },
            incarnation: 0,
            failed_starts: 0,
        });
        let data_dir = self.nodes[slot].slot.data_dir();
        lock(&self.shared).view.push(NodeView {
            data_dir,
            up: false,
            incarnation: 0,
            up_since: Instant::now(),
            retired: false,
        });
        Ok(slot)
    }

    /// Starts the node of `slot`; on failure it is retried in 30 s, three times.
    fn start(&mut self, slot: usize) -> bool {
        let bootstrap = self.bootstrap_for(slot);
        let fresh = self.nodes[slot].incarnation == 0;
        match self.nodes[slot].slot.start(&self.agora, &bootstrap) {
            Ok(running) => {
                let node = &mut self.nodes[slot];
                node.incarnation += 1;
                node.failed_starts = 0;
                node.state = State::Up(running);
                let incarnation = node.incarnation;
                let mut shared = lock(&self.shared);
                let view = &mut shared.view[slot];
                (view.up, view.incarnation, view.up_since) = (true, incarnation, Instant::now());
                true
            }
            Err(error) => {
                if fresh {
                    self.churn.join_failures += 1;
                } else {
                    self.churn.restart_failures += 1;
                }
                let tail = log_tail(&self.nodes[slot].slot.log_path(), 5);
                let node = &mut self.nodes[slot];
                node.failed_starts += 1;
                node.state = if node.failed_starts >= 3 {
                    State::Failed
                } else {
                    State::Down { restart_at: Instant::now() + Duration::from_secs(30) }
                };
                self.note(format!("node {slot} failed to start: {error:#}; log ends: {tail}"));
                false
            }
        }
    }

    fn up_slots(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|slot| matches!(self.nodes[*slot].state, State::Up(_))).collect()
    }

    /// Marks `slot` down in the clients' view.
    fn hide(&mut self, slot: usize) {
        lock(&self.shared).view[slot].up = false;
    }

    /// Notices node processes that exited on their own.
    fn reap(&mut self) {
        for slot in 0..self.nodes.len() {
            let State::Up(running) = &mut self.nodes[slot].state else { continue };
            let Ok(Some(status)) = running.child.try_wait() else { continue };
            self.hide(slot);
            self.churn.unexpected_exits += 1;
            self.nodes[slot].state = State::Down { restart_at: Instant::now() + Duration::from_secs(5) };
            let tail = log_tail(&self.nodes[slot].slot.log_path(), 5);
            self.note(format!("node {slot} exited on its own with {status}; log ends: {tail}"));
        }
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        for slot in 0..self.nodes.len() {
            if let State::Down { restart_at } = self.nodes[slot].state
                && restart_at <= now
            {
                let fresh = self.nodes[slot].incarnation == 0;
                if self.start(slot) {
                    if fresh {
                        self.churn.joins += 1;
                    } else {
                        self.churn.restarts += 1;
                    }
                }
            }
        }
    }

    fn churn_once(&mut self, min_up: usize) -> anyhow::Result<()> {
        let up = self.up_slots();
        let churnable: Vec<usize> = up.iter().copied().filter(|slot| *slot != 0).collect();
        let live = self.nodes.iter().filter(|n| !matches!(n.state, State::Retired | State::Failed)).count();
        let retirable: Vec<usize> = {
            let shared = lock(&self.shared);
            (1..self.nodes.len())
                .filter(|slot| matches!(self.nodes[*slot].state, State::Down { .. }) && !shared.oracle.is_home(*slot))
                .collect()
        };
        let mut choices: Vec<(&str, usize)> = Vec::new();
        if up.len() > min_up && !churnable.is_empty() {
            choices.extend([("crash", 4), ("stop", 3)]);
        }
        if live < self.max_slots {
            choices.push(("join", 2));
        }
        if !retirable.is_empty() {
            choices.push(("retire", 3));
        }
        let total: usize = choices.iter().map(|c| c.1).sum();
        if total == 0 {
            return Ok(());
        }
        let mut pick = self.rng.below(total);
        let choice = choices.iter().find(|c| {
            if pick < c.1 {
                return true;
            }
            pick -= c.1;
            false
        });
        match choice.map(|c| c.0) {
            Some("crash") => {
                let slot = churnable[self.rng.below(churnable.len())];
                self.hide(slot);
                if let State::Up(running) = &mut self.nodes[slot].state {
                    cluster::end(&mut running.child);
                }
                let down_for = Duration::from_secs(3 + self.rng.below(13) as u64);
                self.nodes[slot].state = State::Down { restart_at: Instant::now() + down_for };
                self.churn.crashes += 1;
            }
            Some("stop") => {
                let slot = churnable[self.rng.below(churnable.len())];
                self.stop(slot);
                let down_for = Duration::from_secs(10 + self.rng.below(36) as u64);
                self.nodes[slot].state = State::Down { restart_at: Instant::now() + down_for };
                self.churn.stops += 1;
            }
            Some("join") => {
                let slot = self.add_slot()?;
                if self.start(slot) {
                    self.churn.joins += 1;
                }
            }
            Some("retire") => {
                let slot = retirable[self.rng.below(retirable.len())];
                self.nodes[slot].state = State::Retired;
                lock(&self.shared).view[slot].retired = true;
                // The log stays for the report; the data is gone for good.
                std::fs::remove_dir_all(self.nodes[slot].slot.data_dir())
                    .with_context(|| format!("removing node {slot}'s data dir"))?;
                self.churn.retires += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// SIGTERM, then counts an unclean stop (non-zero exit, or SIGKILL needed).
    fn stop(&mut self, slot: usize) {
        self.hide(slot);
        let State::Up(running) = &mut self.nodes[slot].state else { return };
        let outcome = cluster::stop(running);
        self.nodes[slot].state = State::Down { restart_at: Instant::now() };
        match outcome {
            Some(status) if status.success() => {}
            other => {
                self.churn.unclean_stops += 1;
                let tail = log_tail(&self.nodes[slot].slot.log_path(), 5);
                let how = other.map_or_else(|| "did not exit within 20 s".to_owned(), |s| format!("exited with {s}"));
                self.note(format!("node {slot} {how} after SIGTERM; log ends: {tail}"));
            }
        }
    }

    fn sample(&mut self, previous: &Counters) -> (Interval, Counters) {
        for node in &mut self.nodes {
            node.slot.scan_log();
        }
        let nodes: Vec<NodeSample> = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(slot, node)| match &node.state {
                State::Up(running) => cluster::sample(running.child.id()).map(|s| NodeSample {
                    slot,
                    incarnation: node.incarnation,
                    rss_kib: s.rss_kib,
                    fds: s.fds,
                }),
                _ => None,
            })
            .collect();
        let shared = lock(&self.shared);
        let counters = shared.counters.clone();
        (Interval::new(shared.secs(), &counters, previous, nodes), counters)
    }

    fn panics(&self) -> BTreeMap<usize, (usize, Vec<String>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.slot.panic_count > 0)
            .map(|(slot, node)| (slot, (node.slot.panic_count, node.slot.panics.clone())))
            .collect()
    }
}

fn run(options: &Options, command: String) -> anyhow::Result<Soak> {
    let root = options.out.join("nodes");
    let clients_root = options.out.join("clients");
    for dir in [&root, &clients_root] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing the last soak's {}", dir.display()))?;
        }
    }
    // Taken before anything runs, so an edit made during a long soak does not show up.
    let (date, commit) = (shell(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]), commit());
    let started = Instant::now();
    let shared = Arc::new(Mutex::new(Shared {
        view: Vec::new(),
        oracle: Oracle::default(),
        counters: Counters::default(),
        started,
        publishers: options.nodes,
    }));
    let mut cluster = Cluster {
        nodes: Vec::new(),
        shared: shared.clone(),
        agora: options.agora.clone(),
        root,
        max_slots: options.nodes + 3,
        churn: Churn::default(),
        events: Vec::new(),
        rng: Rng::new(options.seed),
    };
    let tag = format!("s{}", options.seed % 1000);
    println!(
        "soak: {} nodes, {:.1} min of churn (an event about every {:.0} s), seed {}, binary {}",
        options.nodes,
        options.minutes,
        options.churn_secs,
        options.seed,
        options.agora.display()
    );
    for _ in 0..options.nodes {
        let slot = cluster.add_slot()?;
        if !cluster.start(slot) && slot == 0 {
            bail!("the anchor node did not start: {}", cluster.events.join("; "));
        }
    }
    println!("soak: {} nodes up after {:.1} s", cluster.up_slots().len(), started.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let client = Client {
                shared: shared.clone(),
                stop: stop.clone(),
                agora: options.agora.clone(),
                scratch: clients_root.join(format!("client-{index}")),
                rng: Rng::new(options.seed.wrapping_mul(0x9e37_79b9).wrapping_add(index as u64 + 1)),
                tag: tag.clone(),
            };
            std::thread::spawn(move || client.run())
        })
        .collect();

    let churn_end = started + Duration::from_secs_f64(options.minutes * 60.0);
    let min_up = (options.nodes / 2).max(2);
    let jitter = |rng: &mut Rng| Duration::from_secs_f64(options.churn_secs * (0.5 + rng.below(1000) as f64 / 1000.0));
    let mut next_churn = Instant::now() + jitter(&mut cluster.rng);
    let mut next_report = Instant::now() + REPORT_EVERY;
    let mut intervals = Vec::new();
    let mut counted = Counters::default();
    while Instant::now() < churn_end {
        cluster.reap();
        cluster.restart_due();
        if Instant::now() >= next_churn {
            cluster.churn_once(min_up)?;
            next_churn = Instant::now() + jitter(&mut cluster.rng);
        }
        if Instant::now() >= next_report {
            let (interval, now) = cluster.sample(&counted);
            print_interval(&interval, &cluster, &shared);
            intervals.push(interval);
            counted = now;
            next_report += REPORT_EVERY;
        }
        // Pacing the churn loop, not waiting for a condition.
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("soak: churn over; waiting for the clients' last commands");
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        if client.join().is_err() {
            cluster.note("a client thread panicked".to_owned());
        }
    }
    let (interval, now) = cluster.sample(&counted);
    print_interval(&interval, &cluster, &shared);
    intervals.push(interval);
    counted = now;
    let churn_secs = started.elapsed().as_secs_f64();

    // Everything that is down and kept comes back on its data dir.
    cluster.reap();
    for slot in 0..cluster.nodes.len() {
        if matches!(cluster.nodes[slot].state, State::Down { .. }) && cluster.start(slot) {
            cluster.churn.restarts += 1;
        }
    }
    let mut final_check = settle(&cluster, options.settle_secs);
    fetch_all(&mut cluster, &clients_root.join("final"), &mut final_check)?;
    let (interval, _) = cluster.sample(&counted);
    print_interval(&interval, &cluster, &shared);
    intervals.push(interval);

    for slot in cluster.up_slots() {
        cluster.stop(slot);
    }
    for node in &mut cluster.nodes {
        node.slot.scan_log();
    }
    let shared = lock(&shared);
    let lives = report::lives(&intervals);
    Ok(Soak {
        command,
        date,
        commit,
        machine: crate::report::machine(),
        seed: options.seed,
        minutes: churn_secs / 60.0,
        nodes: options.nodes,
        max_slots: cluster.max_slots,
        clients: CLIENTS,
        churn_every_secs: options.churn_secs,
        churn: cluster.churn,
        counters: shared.counters.clone(),
        packages: shared.oracle.package_count(),
        versions_acked: shared.oracle.acked_count(),
        publishes_unacknowledged: shared.oracle.unacknowledged,
        intervals,
        lives,
        final_check,
        panics: cluster.panics(),
        defects: Vec::new(),
        warnings: Vec::new(),
        events: cluster.events.clone(),
    })
}

fn print_interval(interval: &Interval, cluster: &Cluster, shared: &Mutex<Shared>) {
    let panics: usize = cluster.nodes.iter().map(|n| n.slot.panic_count).sum();
    let acked = lock(shared).oracle.acked_count();
    println!(
        "[{:>6.1} min] up {}/{} | {} | RSS {:.0} MiB | fds {} | acked {acked} | panics {panics}",
        interval.at_secs / 60.0,
        interval.nodes_up,
        cluster.nodes.iter().filter(|n| !matches!(n.state, State::Retired)).count(),
        interval.ops_line(),
        report::mib(interval.rss_total_kib()),
        interval.fds_total()
    );
}

/// Polls every running node for every acknowledged version until all answer
/// with the right digest or `settle_secs` pass.
fn settle(cluster: &Cluster, settle_secs: f64) -> FinalCheck {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(settle_secs);
    let apis: Vec<(usize, std::net::SocketAddr)> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(slot, node)| if let State::Up(r) = &node.state { Some((slot, r.api)) } else { None })
        .collect();
    let expected: Vec<(String, String, String)> = lock(&cluster.shared)
        .oracle
        .acked()
        .map(|((name, version), acked)| (name.clone(), version.clone(), acked.digest.clone()))
        .collect();
    let mut pending: Vec<(usize, std::net::SocketAddr, usize)> =
        apis.iter().flat_map(|(slot, api)| (0..expected.len()).map(move |at| (*slot, *api, at))).collect();
    let mut wrong = Vec::new();
    loop {
        pending.retain(|(_, api, at)| {
            if Instant::now() >= deadline {
                return true;
            }
            let (name, version, digest) = &expected[*at];
            match cluster::http_get(*api, &format!("/v1/packages/{name}/{version}")) {
                Ok((200, body)) => {
                    let served: Option<String> =
                        serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| {
                            v.pointer("/manifest/artifact/digest").and_then(|d| d.as_str()).map(str::to_owned)
                        });
                    if served.as_deref() != Some(digest.as_str()) {
                        wrong.push(format!("{name}@{version} (served {})", served.unwrap_or_default()));
                    }
                    false
                }
                _ => true,
            }
        });
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        // Pacing the polls; the condition is the loop's.
        std::thread::sleep(Duration::from_secs(2));
    }
    wrong.sort();
    wrong.dedup();
    let missing: Vec<(usize, String)> =
        pending.iter().map(|(slot, _, at)| (*slot, format!("{}@{}", expected[*at].0, expected[*at].1))).collect();
    FinalCheck {
        settle_secs: started.elapsed().as_secs_f64(),
        converged: missing.is_empty() && wrong.is_empty(),
        nodes_checked: apis.len(),
        versions: expected.len(),
        missing,
        wrong_digest: wrong,
        ..FinalCheck::default()
    }
}

/// Fetches every acknowledged version through the CLI from a node other than its
/// home (up to two), then from its home; classifies what no node produced.
fn fetch_all(cluster: &mut Cluster, scratch: &Path, check: &mut FinalCheck) -> anyhow::Result<()> {
    std::fs::create_dir_all(scratch)?;
    let started = Instant::now();
    let versions: Vec<(String, String, oracle::Acked)> =
        lock(&cluster.shared).oracle.acked().map(|((n, v), a)| (n.clone(), v.clone(), a.clone())).collect();
    let up = cluster.up_slots();
    let mut unchecked = 0;
    for (name, version, acked) in versions {
        if started.elapsed() > FINAL_FETCH_BUDGET {
            unchecked += 1;
            continue;
        }
        let mut order: Vec<usize> = up.iter().copied().filter(|slot| *slot != acked.home).collect();
        shuffle(&mut order, &mut cluster.rng);
        order.truncate(2);
        if up.contains(&acked.home) {
            order.push(acked.home);
        }
        let mut fetched_from = None;
        for slot in order {
            let data_dir = cluster.nodes[slot].slot.data_dir();
            if fetch_and_verify(&cluster.agora, &data_dir, scratch, &name, &version, &acked).is_ok() {
                fetched_from = Some(slot);
                break;
            }
        }
        let shared = lock(&cluster.shared);
        let holders_kept = acked.holders.iter().any(|slot| !shared.view[*slot].retired);
        drop(shared);
        let label = format!("{name}@{version}");
        match oracle::recovery(fetched_from.is_some(), holders_kept) {
            oracle::Recovery::Recovered => {
                check.recovered += 1;
                if fetched_from == Some(acked.home) {
                    check.recovered_only_at_home += 1;
                }
            }
            oracle::Recovery::HolderRemoved => check.holder_removed.push(label),
            oracle::Recovery::Lost => check.lost.push(label),
        }
    }
    check.fetch_secs = started.elapsed().as_secs_f64();
    if unchecked > 0 {
        cluster.note(format!("{unchecked} versions not fetched: the final fetch check ran out of its budget"));
    }
    Ok(())
}

/// The clients: CLI commands against random running nodes.
struct Client {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    agora: PathBuf,
    scratch: PathBuf,
    rng: Rng,
    tag: String,
}

impl Client {
    fn run(mut self) {
        if let Err(error) = std::fs::create_dir_all(&self.scratch) {
            eprintln!("soak client: cannot create {}: {error}", self.scratch.display());
            return;
        }
        while !self.stop.load(Ordering::SeqCst) {
            let kind = match self.rng.below(10) {
                0 => OpKind::Publish,
                1..=3 => OpKind::Search,
                4..=6 => OpKind::Info,
                _ => OpKind::Fetch,
            };
            self.op(kind);
            // Pacing the load, not waiting for anything.
            std::thread::sleep(Duration::from_millis(300 + self.rng.below(700) as u64));
        }
    }

    /// A random running node that may run `kind`: (slot, incarnation, data dir).
    fn node(&mut self, kind: OpKind) -> Option<(usize, u32, PathBuf)> {
        let shared = lock(&self.shared);
        let mut up = shared.up();
        if kind == OpKind::Publish {
            up.retain(|slot| *slot < shared.publishers);
        }
        if up.is_empty() {
            return None;
        }
        let slot = up[self.rng.below(up.len())];
        let view = &shared.view[slot];
        Some((slot, view.incarnation, view.data_dir.clone()))
    }

    fn op(&mut self, kind: OpKind) {
        let Some((slot, incarnation, data_dir)) = self.node(kind) else { return };
        let outcome = match kind {
            OpKind::Publish => self.publish(slot, &data_dir),
            OpKind::Search => self.search(slot, &data_dir),
            OpKind::Info | OpKind::Fetch => {
                let Some(target) = lock(&self.shared).oracle.pick(&mut self.rng) else { return };
                self.read(kind, slot, &data_dir, target)
            }
        };
        let mut shared = lock(&self.shared);
        match outcome {
            Ok(()) => shared.counters.ok(kind),
            Err(failure) => {
                let mut context = failure.context;
                context.node_churned = shared.churned(slot, incarnation);
                context.recent |= shared.young(slot);
                if let Some(holders) = &failure.holders {
                    context.holder_up = holders.iter().any(|holder| shared.view[*holder].up);
                }
                let class = oracle::classify(kind, context);
                let message = oracle::normalize_error(&failure.message, &self.tag);
                shared.counters.failed(kind, class, &message);
            }
        }
    }

    fn publish(&mut self, slot: usize, data_dir: &Path) -> Result<(), OpFailure> {
        let plan = {
            let mut shared = lock(&self.shared);
            let new_version = self.rng.below(5) < 2;
            shared.oracle.plan(slot, new_version, &self.tag, &mut self.rng)
        };
        let dir = self.scratch.join("package");
        let path = dir.to_string_lossy().into_owned();
        let result = write_package(&dir, &plan).map_err(OpFailure::plain).and_then(|()| {
            manifest_digest(&self.agora, data_dir, &["publish", &path], &self.scratch, PUBLISH_DEADLINE)
        });
        let mut shared = lock(&self.shared);
        match result {
            Ok(digest) => {
                let at = shared.secs();
                shared.oracle.acknowledge(&plan, digest, at);
                Ok(())
            }
            Err(failure) => {
                shared.oracle.unacknowledged += 1;
                Err(failure)
            }
        }
    }

    fn search(&mut self, _slot: usize, data_dir: &Path) -> Result<(), OpFailure> {
        let target = if self.rng.below(2) == 0 { lock(&self.shared).oracle.pick(&mut self.rng) } else { None };
        let (args, wanted, recent) = match &target {
            Some((name, _, acked)) => {
                let recent = lock(&self.shared).secs() - acked.acked_at_secs < SPREAD_GRACE_SECS;
                (vec!["search".to_owned(), name.clone(), "--limit".into(), "5".into()], Some(name.clone()), recent)
            }
            None => {
                let word = WORDS[self.rng.below(WORDS.len())];
                (
                    vec!["search".into(), "--network".into(), word.into(), "--preset".into(), "interactive".into()],
                    None,
                    false,
                )
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = cluster::cli(&self.agora, data_dir, &args, &self.scratch, QUERY_DEADLINE)
            .map_err(|e| OpFailure::plain(e).recent(recent))?;
        if !output.success {
            return Err(OpFailure::message(output.error()).recent(recent));
        }
        let value = output.json().map_err(OpFailure::plain)?;
        if let Some(wanted) = wanted {
            let found = value
                .get("hits")
                .and_then(|h| h.as_array())
                .is_some_and(|hits| hits.iter().any(|hit| hit.get("name").and_then(|n| n.as_str()) == Some(&wanted)));
            let mut shared = lock(&self.shared);
            if found {
                shared.counters.search_found += 1;
            } else {
                shared.counters.search_missed += 1;
            }
        }
        Ok(())
    }

    fn read(
        &mut self,
        kind: OpKind,
        slot: usize,
        data_dir: &Path,
        (name, version, acked): (String, String, oracle::Acked),
    ) -> Result<(), OpFailure> {
        let recent = lock(&self.shared).secs() - acked.acked_at_secs < SPREAD_GRACE_SECS;
        let holders: Vec<usize> = acked.holders.iter().copied().collect();
        let result = if kind == OpKind::Info {
            manifest_digest(
                &self.agora,
                data_dir,
                &["info", &format!("{name}@{version}")],
                &self.scratch,
                QUERY_DEADLINE,
            )
            .and_then(|digest| {
                if digest == acked.digest {
                    Ok(())
                } else {
                    Err(OpFailure::contradiction(format!(
                        "info gave another digest ({digest}, acknowledged {})",
                        acked.digest
                    )))
                }
            })
        } else {
            fetch_and_verify(&self.agora, data_dir, &self.scratch, &name, &version, &acked)
        };
        match result {
            Ok(()) => {
                if kind == OpKind::Fetch {
                    lock(&self.shared).oracle.add_holder(&name, &version, slot);
                }
                Ok(())
            }
            Err(failure) => Err(OpFailure { holders: Some(holders), ..failure.recent(recent) }),
        }
    }
}

/// Why an operation failed, and what the client knows about it.
#[derive(Debug)]
struct OpFailure {
    message: String,
    context: FailureContext,
    /// For info/fetch: who holds the version.
    holders: Option<Vec<usize>>,
}

impl OpFailure {
    fn message(message: String) -> Self {
        Self { message, context: FailureContext::default(), holders: None }
    }

    fn plain(error: anyhow::Error) -> Self {
        Self::message(format!("{error:#}"))
    }

    fn contradiction(message: String) -> Self {
        let mut failure = Self::message(message);
        failure.context.contradicts = true;
        failure
    }

    fn recent(mut self, recent: bool) -> Self {
        self.context.recent |= recent;
        self
    }
}

/// Runs a CLI command that prints `{"manifest": SignedManifest, …}` (`publish`,
/// `info`) and returns the artifact digest it names.
fn manifest_digest(
    agora: &Path,
    data_dir: &Path,
    args: &[&str],
    scratch: &Path,
    deadline: Duration,
) -> Result<String, OpFailure> {
    let output = cluster::cli(agora, data_dir, args, scratch, deadline).map_err(OpFailure::plain)?;
    if !output.success {
        return Err(OpFailure::message(output.error()));
    }
    let value = output.json().map_err(OpFailure::plain)?;
    value
        .pointer("/manifest/manifest/artifact/digest")
        .and_then(|d| d.as_str())
        .map(str::to_owned)
        .ok_or_else(|| OpFailure::message(format!("`agora {}` printed no digest", args[0])))
}

/// `agora fetch NAME@VERSION -o DIR`, then the files compared with the generated ones.
fn fetch_and_verify(
    agora: &Path,
    data_dir: &Path,
    scratch: &Path,
    name: &str,
    version: &str,
    acked: &oracle::Acked,
) -> Result<(), OpFailure> {
    let dest = scratch.join("fetched");
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| OpFailure::plain(e.into()))?;
    }
    let spec = format!("{name}@{version}");
    let dest_text = dest.to_string_lossy().into_owned();
    let output = cluster::cli(agora, data_dir, &["fetch", &spec, "-o", &dest_text], scratch, FETCH_DEADLINE)
        .map_err(OpFailure::plain)?;
    if !output.success {
        return Err(OpFailure::message(output.error()));
    }
    let plan = PublishPlan {
        name: name.to_owned(),
        version: version.to_owned(),
        seed: acked.seed,
        payload: acked.payload,
        home: acked.home,
    };
    for (path, expected) in package_files(&plan) {
        let got = std::fs::read(dest.join(&path)).unwrap_or_default();
        if got != expected {
            return Err(OpFailure::contradiction(format!(
                "fetched {path} differs from the published file ({} bytes, expected {})",
                got.len(),
                expected.len()
            )));
        }
    }
    let _ = std::fs::remove_dir_all(&dest);
    Ok(())
}

/// The files of a planned version, all from its seed.
fn package_files(plan: &PublishPlan) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(plan.seed);
    let (a, b) = (WORDS[rng.below(WORDS.len())], WORDS[rng.below(WORDS.len())]);
    let manifest = format!(
        "[package]\nname = \"{}\"\nversion = \"{}\"\ndescription = \"soak package about {a} and {b}\"\nkeywords = [\"{a}\"]\n",
        plan.name, plan.version
    );
    let readme = format!(
        "# {}\n\nVersion {} of a package the soak generated from seed {}.\n",
        plan.name, plan.version, plan.seed
    );
    let mut payload = vec![0; plan.payload];
    rng.fill(&mut payload);
    vec![
        ("agora.toml".to_owned(), manifest.into_bytes()),
        ("README.md".to_owned(), readme.into_bytes()),
        ("data.bin".to_owned(), payload),
    ]
}

fn write_package(dir: &Path, plan: &PublishPlan) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    for (path, bytes) in package_files(plan) {
        std::fs::write(dir.join(path), bytes)?;
    }
    Ok(())
}

fn shuffle(items: &mut [usize], rng: &mut Rng) {
    for at in (1..items.len()).rev() {
        items.swap(at, rng.below(at + 1));
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shell(command: &[&str]) -> String {
    Command::new(command[0])
        .args(&command[1..])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// `abc1234`, with `+ uncommitted changes` when the worktree differs from it.
fn commit() -> String {
    let hash = shell(&["git", "rev-parse", "--short", "HEAD"]);
    if shell(&["git", "status", "--porcelain", "--untracked-files=no"]).is_empty() {
        hash
    } else {
        format!("{hash} + uncommitted changes")
    }
}
