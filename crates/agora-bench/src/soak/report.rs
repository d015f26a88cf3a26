//! The soak's figures: counters by operation, the 30-second intervals, each node
//! process's memory over its life, the verdict, and `report.{json,md}`. Pure
//! except for [`write`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::oracle::{Failure, OpKind};

/// Outcomes of one kind of operation.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct KindCounts {
    pub(crate) ok: u64,
    pub(crate) tolerated: u64,
    pub(crate) unexplained: u64,
    pub(crate) defects: u64,
}

impl KindCounts {
    pub(crate) fn failed(&self) -> u64 {
        self.tolerated + self.unexplained + self.defects
    }

    fn minus(&self, earlier: &KindCounts) -> KindCounts {
        KindCounts {
            ok: self.ok - earlier.ok,
            tolerated: self.tolerated - earlier.tolerated,
            unexplained: self.unexplained - earlier.unexplained,
            defects: self.defects - earlier.defects,
        }
    }
}

/// Every client operation so far.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Counters {
    pub(crate) kinds: BTreeMap<OpKind, KindCounts>,
    /// `kind [class] normalized message` → count.
    pub(crate) errors: BTreeMap<String, u64>,
    /// Local searches for a package's exact name that found it / did not.
    pub(crate) search_found: u64,
    pub(crate) search_missed: u64,
}

impl Counters {
    pub(crate) fn ok(&mut self, kind: OpKind) {
        self.kinds.entry(kind).or_default().ok += 1;
    }

    pub(crate) fn failed(&mut self, kind: OpKind, failure: Failure, message: &str) {
        let counts = self.kinds.entry(kind).or_default();
        let class = match failure {
            Failure::Tolerated => {
                counts.tolerated += 1;
                "tolerated"
            }
            Failure::Unexplained => {
                counts.unexplained += 1;
                "unexplained"
            }
            Failure::Defect => {
                counts.defects += 1;
                "DEFECT"
            }
        };
        *self.errors.entry(format!("{} [{class}] {message}", kind.name())).or_default() += 1;
    }

    pub(crate) fn get(&self, kind: OpKind) -> KindCounts {
        self.kinds.get(&kind).copied().unwrap_or_default()
    }
}

/// Churn events so far.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Churn {
    pub(crate) joins: u64,
    pub(crate) stops: u64,
    pub(crate) crashes: u64,
    pub(crate) restarts: u64,
    pub(crate) retires: u64,
    /// A node that did not come up on its old data dir (a defect).
    pub(crate) restart_failures: u64,
    /// A new node that did not come up (a defect).
    pub(crate) join_failures: u64,
    /// SIGTERM ended in a non-zero exit or needed SIGKILL after the deadline.
    pub(crate) unclean_stops: u64,
    /// A node process that exited without being told to.
    pub(crate) unexpected_exits: u64,
}

/// One node process at one sampling time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct NodeSample {
    pub(crate) slot: usize,
    pub(crate) incarnation: u32,
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

/// One reporting interval.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Interval {
    pub(crate) at_secs: f64,
    pub(crate) nodes_up: usize,
    /// Operations in this interval (not cumulative).
    pub(crate) ops: BTreeMap<OpKind, KindCounts>,
    pub(crate) nodes: Vec<NodeSample>,
}

impl Interval {
    pub(crate) fn new(at_secs: f64, now: &Counters, before: &Counters, nodes: Vec<NodeSample>) -> Self {
        let ops = OpKind::ALL.iter().map(|kind| (*kind, now.get(*kind).minus(&before.get(*kind)))).collect();
        Self { at_secs, nodes_up: nodes.len(), ops, nodes }
    }

    pub(crate) fn rss_total_kib(&self) -> u64 {
        self.nodes.iter().map(|n| n.rss_kib).sum()
    }

    pub(crate) fn fds_total(&self) -> u64 {
        self.nodes.iter().map(|n| n.fds).sum()
    }

    /// `publish 3/0 search 10/1 …` (ok/failed), for the progress line.
    pub(crate) fn ops_line(&self) -> String {
        OpKind::ALL
            .iter()
            .map(|kind| {
                let counts = self.ops.get(kind).copied().unwrap_or_default();
                format!("{} {}/{}", kind.name(), counts.ok, counts.failed())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One node process's memory over its life.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Life {
    pub(crate) slot: usize,
    pub(crate) incarnation: u32,
    pub(crate) samples: usize,
    pub(crate) first_secs: f64,
    pub(crate) last_secs: f64,
    pub(crate) first_kib: u64,
    pub(crate) last_kib: u64,
    pub(crate) max_kib: u64,
    /// See [`steady_growth`].
    pub(crate) steady_growth: bool,
}

/// Groups the intervals' samples by process (slot, incarnation).
pub(crate) fn lives(intervals: &[Interval]) -> Vec<Life> {
    let mut series: BTreeMap<(usize, u32), Vec<(f64, u64)>> = BTreeMap::new();
    for interval in intervals {
        for node in &interval.nodes {
            series.entry((node.slot, node.incarnation)).or_default().push((interval.at_secs, node.rss_kib));
        }
    }
    series
        .into_iter()
        .map(|((slot, incarnation), samples)| {
            let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
            Life {
                slot,
                incarnation,
                samples: samples.len(),
                first_secs: samples[0].0,
                last_secs: samples[samples.len() - 1].0,
                first_kib: rss[0],
                last_kib: rss[rss.len() - 1],
                max_kib: rss.iter().copied().max().unwrap_or(0),
                steady_growth: steady_growth(&rss),
            }
        })
        .collect()
}

/// The memory a process has from the data alone, beside the longest-lived
/// process: the median first sample of processes started in the last
/// `window_secs` before `end_secs` (on data dirs as full as the old process's),
/// and that old process's last sample. `None` without such processes.
pub(crate) fn fresh_beside_oldest(lives: &[Life], end_secs: f64, window_secs: f64) -> Option<(u64, &Life)> {
    let oldest = lives.iter().max_by(|a, b| (a.last_secs - a.first_secs).total_cmp(&(b.last_secs - b.first_secs)))?;
    let mut fresh: Vec<u64> = lives
        .iter()
        .filter(|life| life.first_secs >= end_secs - window_secs && life.first_secs < end_secs)
        .map(|life| life.first_kib)
        .collect();
    fresh.sort_unstable();
    fresh.get(fresh.len() / 2).map(|median| (*median, oldest))
}

/// Whether memory grew steadily: at least 8 samples, and (leaving out the first,
/// taken while the node warms up) the mean of each quarter is above the one
/// before it, and the last quarter's is over 25% and 8 MiB above the first's.
/// A node that levels off, or goes up and down, is not flagged.
pub(crate) fn steady_growth(rss_kib: &[u64]) -> bool {
    if rss_kib.len() < 8 {
        return false;
    }
    let samples = &rss_kib[1..];
    let quarter = samples.len() / 4;
    let means: Vec<f64> = (0..4)
        .map(|q| {
            let part = &samples[q * quarter..if q == 3 { samples.len() } else { (q + 1) * quarter }];
            part.iter().sum::<u64>() as f64 / part.len() as f64
        })
        .collect();
    let rising = means.windows(2).all(|pair| pair[1] > pair[0]);
    let (first, last) = (means[0], means[3]);
    rising && last > first * 1.25 && last - first > 8.0 * 1024.0
}

/// The final oracle check.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FinalCheck {
    pub(crate) settle_secs: f64,
    /// Whether every running node answered for every acknowledged version.
    pub(crate) converged: bool,
    pub(crate) nodes_checked: usize,
    pub(crate) versions: usize,
    /// (node slot, `name@version`) still unanswered when the settle deadline passed.
    pub(crate) missing: Vec<(usize, String)>,
    /// Versions some running node answered with another digest.
    pub(crate) wrong_digest: Vec<String>,
    pub(crate) recovered: usize,
    /// Recovered only from the node it was published on.
    pub(crate) recovered_only_at_home: usize,
    pub(crate) lost: Vec<String>,
    pub(crate) holder_removed: Vec<String>,
    pub(crate) fetch_secs: f64,
}

/// Everything the soak measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Soak {
    pub(crate) command: String,
    pub(crate) date: String,
    pub(crate) commit: String,
    pub(crate) machine: String,
    pub(crate) seed: u64,
    pub(crate) minutes: f64,
    pub(crate) nodes: usize,
    pub(crate) max_slots: usize,
    pub(crate) clients: usize,
    pub(crate) churn_every_secs: f64,
    pub(crate) churn: Churn,
    pub(crate) counters: Counters,
    pub(crate) packages: usize,
    pub(crate) versions_acked: usize,
    pub(crate) publishes_unacknowledged: u64,
    pub(crate) intervals: Vec<Interval>,
    pub(crate) lives: Vec<Life>,
    pub(crate) final_check: FinalCheck,
    /// slot → `panicked` count and the first excerpts.
    pub(crate) panics: BTreeMap<usize, (usize, Vec<String>)>,
    pub(crate) defects: Vec<String>,
    pub(crate) warnings: Vec<String>,
    /// What happened that a defect count alone does not say (which restart failed, how).
    pub(crate) events: Vec<String>,
}

impl Soak {
    /// Fills [`Soak::defects`] and [`Soak::warnings`] from the figures.
    pub(crate) fn judge(&mut self) {
        let mut defects = Vec::new();
        let check = &self.final_check;
        if !check.lost.is_empty() {
            defects.push(format!("{} acknowledged versions lost: {}", check.lost.len(), list(&check.lost)));
        }
        if !check.wrong_digest.is_empty() {
            defects.push(format!("wrong digest served for {}", list(&check.wrong_digest)));
        }
        if !check.missing.is_empty() {
            let shown: Vec<String> = check.missing.iter().map(|(slot, v)| format!("{v} on node {slot}")).collect();
            defects.push(format!(
                "{} (node, version) pairs unanswered after {:.0} s of settling: {}",
                check.missing.len(),
                check.settle_secs,
                list(&shown)
            ));
        }
        let churn = &self.churn;
        for (count, what) in [
            (churn.restart_failures, "restarts on the old data dir failed"),
            (churn.join_failures, "new nodes failed to start"),
            (churn.unexpected_exits, "node processes exited without being told to"),
            (churn.unclean_stops, "SIGTERM stops were not clean (non-zero exit or killed after 20 s)"),
        ] {
            if count > 0 {
                defects.push(format!("{count} {what}"));
            }
        }
        let panics: usize = self.panics.values().map(|(count, _)| count).sum();
        if panics > 0 {
            defects.push(format!("{panics} `panicked` lines in node logs"));
        }
        let op_defects: u64 = self.counters.kinds.values().map(|c| c.defects).sum();
        if op_defects > 0 {
            defects.push(format!("{op_defects} operations got answers the oracle contradicts"));
        }
        for life in self.lives.iter().filter(|life| life.steady_growth) {
            defects.push(format!(
                "node {} (run {}) RSS grew steadily: {:.1} → {:.1} MiB over {:.0} min",
                life.slot,
                life.incarnation,
                mib(life.first_kib),
                mib(life.last_kib),
                (life.last_secs - life.first_secs) / 60.0
            ));
        }
        let mut warnings = Vec::new();
        let unexplained: u64 = self.counters.kinds.values().map(|c| c.unexplained).sum();
        if unexplained > 0 {
            warnings.push(format!("{unexplained} operations failed for reasons churn does not explain (see errors)"));
        }
        if !check.holder_removed.is_empty() {
            warnings.push(format!(
                "{} versions unrecoverable because every holder was removed on purpose",
                check.holder_removed.len()
            ));
        }
        self.defects = defects;
        self.warnings = warnings;
    }

    pub(crate) fn verdict(&self) -> String {
        if self.defects.is_empty() {
            format!("PASS: no defects ({} warnings)", self.warnings.len())
        } else {
            format!("FAIL: {} defects: {}", self.defects.len(), self.defects.join("; "))
        }
    }

    /// The summary printed at the end and at the top of `report.md`.
    pub(crate) fn summary(&self) -> String {
        let mut out = String::new();
        let minutes = self.minutes.max(1.0 / 60.0);
        let c = &self.churn;
        let _ = writeln!(
            out,
            "churn: {} joins, {} stops (SIGTERM), {} crashes (SIGKILL), {} restarts, {} retired \
             ({:.1} events/min)",
            c.joins,
            c.stops,
            c.crashes,
            c.restarts,
            c.retires,
            (c.joins + c.stops + c.crashes + c.retires) as f64 / minutes
        );
        for kind in OpKind::ALL {
            let k = self.counters.get(kind);
            let _ = writeln!(
                out,
                "{:<8} {:>6} ok {:>5} failed ({} tolerated, {} unexplained, {} defects)",
                kind.name(),
                k.ok,
                k.failed(),
                k.tolerated,
                k.unexplained,
                k.defects
            );
        }
        let f = &self.final_check;
        let _ = writeln!(
            out,
            "oracle: {} packages, {} versions acknowledged ({} publishes unacknowledged); after {:.0} s settling \
             {} of {} nodes answered for all: {}; recovered {} ({} only from their home node), lost {}, holder \
             removed {}",
            self.packages,
            self.versions_acked,
            self.publishes_unacknowledged,
            f.settle_secs,
            f.nodes_checked - f.missing.iter().map(|(slot, _)| *slot).collect::<std::collections::BTreeSet<_>>().len(),
            f.nodes_checked,
            if f.converged { "yes" } else { "NO" },
            f.recovered,
            f.recovered_only_at_home,
            f.lost.len(),
            f.holder_removed.len()
        );
        if let (Some(first), Some(last)) = (self.intervals.first(), self.intervals.last()) {
            let max = self.intervals.iter().map(Interval::rss_total_kib).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "RSS total: {:.0} MiB at start ({} nodes), {:.0} MiB at end ({} nodes), max {:.0} MiB",
                mib(first.rss_total_kib()),
                first.nodes_up,
                mib(last.rss_total_kib()),
                last.nodes_up,
                mib(max)
            );
        }
        let end = self.minutes * 60.0;
        if let Some((fresh, oldest)) = fresh_beside_oldest(&self.lives, end, 360.0) {
            let _ = writeln!(
                out,
                "RSS beside the data: the longest-lived process (node {}, {:.0} min) ended at {:.1} MiB; processes \
                 started in the last 6 min of churn began at a median {:.1} MiB",
                oldest.slot,
                (oldest.last_secs - oldest.first_secs) / 60.0,
                mib(oldest.last_kib),
                mib(fresh)
            );
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        let _ = writeln!(out, "verdict: {}", self.verdict());
        out
    }

    pub(crate) fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Soak\n");
        let _ = writeln!(
            out,
            "`{}` on {}, {} (commit {}), seed {}: {} nodes to start with (at most {} data dirs), {} clients, a \
             churn event about every {:.0} s, {:.1} min of churn.\n",
            self.command,
            self.machine,
            self.date,
            self.commit,
            self.seed,
            self.nodes,
            self.max_slots,
            self.clients,
            self.churn_every_secs,
            self.minutes
        );
        let _ = writeln!(out, "```\n{}```\n", self.summary());
        let _ =
            writeln!(out, "## Operations\n\n| kind | ok | tolerated | unexplained | defects |\n|---|---|---|---|---|");
        for kind in OpKind::ALL {
            let k = self.counters.get(kind);
            let _ =
                writeln!(out, "| {} | {} | {} | {} | {} |", kind.name(), k.ok, k.tolerated, k.unexplained, k.defects);
        }
        let _ = writeln!(
            out,
            "\nLocal searches for an acknowledged package's exact name: {} found it, {} did not (yet).\n",
            self.counters.search_found, self.counters.search_missed
        );
        let _ = writeln!(out, "## Errors\n\n| count | kind [class] message |\n|---|---|");
        let mut errors: Vec<(&String, &u64)> = self.counters.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (message, count) in errors.iter().take(30) {
            let _ = writeln!(out, "| {count} | {} |", message.replace('|', "\\|"));
        }
        let _ = writeln!(
            out,
            "\n## Memory per node process\n\n| node | run | samples | from – to (min) | RSS first | last | max | \
             steady growth |\n|---|---|---|---|---|---|---|---|"
        );
        for life in &self.lives {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} – {:.1} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} |",
                life.slot,
                life.incarnation,
                life.samples,
                life.first_secs / 60.0,
                life.last_secs / 60.0,
                mib(life.first_kib),
                mib(life.last_kib),
                mib(life.max_kib),
                if life.steady_growth { "**yes**" } else { "no" }
            );
        }
        let _ = writeln!(
            out,
            "\n## Intervals\n\n| t (min) | nodes up | ops ok/failed | RSS total | fds total |\n|---|---|---|---|---|"
        );
        for interval in &self.intervals {
            let _ = writeln!(
                out,
                "| {:.1} | {} | {} | {:.0} MiB | {} |",
                interval.at_secs / 60.0,
                interval.nodes_up,
                interval.ops_line(),
                mib(interval.rss_total_kib()),
                interval.fds_total()
            );
        }
        if !self.events.is_empty() {
            let _ = writeln!(out, "\n## Events\n");
            for event in &self.events {
                let _ = writeln!(out, "- {}", event.replace('\n', " / "));
            }
        }
        if !self.panics.is_empty() {
            let _ = writeln!(out, "\n## Panics\n");
            for (slot, (count, excerpts)) in &self.panics {
                let _ = writeln!(out, "node {slot}: {count}\n\n```\n{}\n```", excerpts.join("\n"));
            }
        }
        let _ = writeln!(out, "\n## Verdict\n\n{}", self.verdict());
        out
    }
}

/// Writes `report.json` and `report.md` into `out`.
pub(crate) fn write(soak: &Soak, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(soak)?)?;
    std::fs::write(out.join("report.md"), soak.markdown())?;
    Ok(())
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The first few items, and how many more.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut out = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN {
        let _ = write!(out, " and {} more", items.len() - SHOWN);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024;

    #[test]
    fn steady_growth_is_flagged_and_a_plateau_is_not() {
        let leak: Vec<u64> = (0..20).map(|i| (40 + 2 * i) * MIB).collect();
        assert!(steady_growth(&leak));
        // Warms up, then levels off.
        let plateau: Vec<u64> = (0..20).map(|i| (40 + 4 * i.min(5)) * MIB).collect();
        assert!(!steady_growth(&plateau));
        // Goes up and down.
        let noisy: Vec<u64> = (0..20).map(|i| if i % 2 == 0 { 40 * MIB } else { 60 * MIB }).collect();
        assert!(!steady_growth(&noisy));
        // Grows, but by less than 8 MiB.
        let small: Vec<u64> = (0..20).map(|i| 40 * MIB + i * 200).collect();
        assert!(!steady_growth(&small));
        assert!(!steady_growth(&leak[..7]), "too few samples to tell");
    }

    fn interval(at: f64, nodes: &[(usize, u32, u64)]) -> Interval {
        let nodes =
            nodes.iter().map(|&(slot, incarnation, rss)| NodeSample { slot, incarnation, rss_kib: rss, fds: 10 });
        Interval::new(at, &Counters::default(), &Counters::default(), nodes.collect())
    }

    #[test]
    fn lives_follow_each_process_and_the_verdict_names_the_defects() {
        let intervals = vec![
            interval(30.0, &[(0, 1, 40 * MIB), (1, 1, 50 * MIB)]),
            interval(60.0, &[(0, 1, 45 * MIB), (1, 2, 30 * MIB)]),
            interval(90.0, &[(0, 1, 42 * MIB), (1, 2, 31 * MIB)]),
        ];
        let lives = lives(&intervals);
        assert_eq!(lives.len(), 3);
        let anchor = &lives[0];
        assert_eq!((anchor.slot, anchor.samples, anchor.first_kib, anchor.last_kib), (0, 3, 40 * MIB, 42 * MIB));
        assert_eq!(anchor.max_kib, 45 * MIB);
        assert_eq!((lives[2].incarnation, lives[2].first_secs, lives[2].last_secs), (2, 60.0, 90.0));
        let (fresh, oldest) = fresh_beside_oldest(&lives, 90.0, 40.0).unwrap();
        assert_eq!((fresh, oldest.slot), (30 * MIB, 0), "node 1's second run began at 60 s");
        assert!(fresh_beside_oldest(&lives, 90.0, 10.0).is_none());

        let mut counters = Counters::default();
        counters.ok(OpKind::Fetch);
        counters.failed(OpKind::Fetch, Failure::Tolerated, "unavailable: no provider");
        counters.failed(OpKind::Fetch, Failure::Tolerated, "unavailable: no provider");
        counters.failed(OpKind::Info, Failure::Unexplained, "timeout");
        assert_eq!(counters.get(OpKind::Fetch), KindCounts { ok: 1, tolerated: 2, unexplained: 0, defects: 0 });
        assert_eq!(counters.errors["fetch [tolerated] unavailable: no provider"], 2);
        let mut soak = Soak {
            command: "cargo xtask soak".into(),
            date: "today".into(),
            commit: "abc".into(),
            machine: "m".into(),
            seed: 1,
            minutes: 1.5,
            nodes: 2,
            max_slots: 4,
            clients: 2,
            churn_every_secs: 20.0,
            churn: Churn::default(),
            counters,
            packages: 1,
            versions_acked: 1,
            publishes_unacknowledged: 0,
            intervals,
            lives,
            final_check: FinalCheck { converged: true, recovered: 1, ..FinalCheck::default() },
            panics: BTreeMap::new(),
            defects: Vec::new(),
            warnings: Vec::new(),
            events: Vec::new(),
        };
        soak.judge();
        assert!(soak.verdict().starts_with("PASS"), "{}", soak.verdict());
        assert_eq!(soak.warnings.len(), 1, "the unexplained info failure is a warning");
        soak.churn.restart_failures = 1;
        soak.final_check.lost = vec!["a@1.0.0".into()];
        soak.judge();
        assert!(soak.verdict().starts_with("FAIL: 2 defects"), "{}", soak.verdict());
        assert!(soak.markdown().contains("| fetch | 1 | 2 | 0 | 0 |"));
    }
}
