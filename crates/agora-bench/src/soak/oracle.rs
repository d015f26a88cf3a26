//! What the soak expects the network to hold: every publish a node acknowledged,
//! with its digest and the seed its files were generated from, who holds it, and
//! how a failed operation is classified. Pure bookkeeping: no processes, no clock
//! (times come in as seconds since the soak started).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::stats::Rng;

/// Words package descriptions are made of (and searches look for).
pub(crate) const WORDS: &[&str] =
    &["json", "http", "async", "template", "cache", "graph", "queue", "crypto", "archive", "matrix", "parser", "tree"];

/// An operation the clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OpKind {
    Publish,
    Search,
    Info,
    Fetch,
}

impl OpKind {
    pub(crate) const ALL: [OpKind; 4] = [OpKind::Publish, OpKind::Search, OpKind::Info, OpKind::Fetch];

    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKind::Publish => "publish",
            OpKind::Search => "search",
            OpKind::Info => "info",
            OpKind::Fetch => "fetch",
        }
    }
}

/// One version to publish: everything its files are generated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublishPlan {
    pub(crate) name: String,
    pub(crate) version: String,
    /// Seeds the generated files, so they can be compared after a fetch.
    pub(crate) seed: u64,
    /// Bytes of incompressible payload.
    pub(crate) payload: usize,
    /// The slot of the node it is published on (its owner key lives there).
    pub(crate) home: usize,
}

/// An acknowledged version.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Acked {
    pub(crate) digest: String,
    pub(crate) seed: u64,
    pub(crate) payload: usize,
    pub(crate) home: usize,
    pub(crate) acked_at_secs: f64,
    /// Slots known to hold the artifact: the home node and every node a fetch
    /// through succeeded on.
    pub(crate) holders: BTreeSet<usize>,
}

#[derive(Debug, Clone)]
struct PackageRecord {
    home: usize,
    /// Next minor version to try (a failed attempt burns its number, so a version
    /// is never published twice with different content).
    next_minor: u32,
}

/// The acknowledged publishes and the attempts that were not acknowledged.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    packages: BTreeMap<String, PackageRecord>,
    acked: BTreeMap<(String, String), Acked>,
    created: u64,
    pub(crate) unacknowledged: u64,
}

impl Oracle {
    /// Plans the next publish on `home`: a new version of a package `home` owns
    /// when `new_version` and it owns one, else a new package.
    pub(crate) fn plan(&mut self, home: usize, new_version: bool, tag: &str, rng: &mut Rng) -> PublishPlan {
        let owned: Vec<&String> =
            self.packages.iter().filter(|(_, record)| record.home == home).map(|(name, _)| name).collect();
        let name = if new_version && !owned.is_empty() {
            owned[rng.below(owned.len())].clone()
        } else {
            self.created += 1;
            let name = format!("{tag}-{}-{:05}", WORDS[rng.below(WORDS.len())], self.created);
            self.packages.insert(name.clone(), PackageRecord { home, next_minor: 0 });
            name
        };
        let record = self.packages.get_mut(&name).expect("planned names are recorded");
        let version = format!("1.{}.0", record.next_minor);
        record.next_minor += 1;
        // Mostly a few KiB, one in eight up to 1 MiB.
        let payload = if rng.below(8) == 0 { 64 * 1024 + rng.below(960 * 1024) } else { 1024 + rng.below(32 * 1024) };
        PublishPlan { name, version, seed: rng.next(), payload, home }
    }

    /// Records that the node acknowledged `plan` with `digest`.
    pub(crate) fn acknowledge(&mut self, plan: &PublishPlan, digest: String, at_secs: f64) {
        let acked = Acked {
            digest,
            seed: plan.seed,
            payload: plan.payload,
            home: plan.home,
            acked_at_secs: at_secs,
            holders: BTreeSet::from([plan.home]),
        };
        self.acked.insert((plan.name.clone(), plan.version.clone()), acked);
    }

    /// A pseudo-random acknowledged version.
    pub(crate) fn pick(&self, rng: &mut Rng) -> Option<(String, String, Acked)> {
        if self.acked.is_empty() {
            return None;
        }
        let ((name, version), acked) = self.acked.iter().nth(rng.below(self.acked.len()))?;
        Some((name.clone(), version.clone(), acked.clone()))
    }

    /// `slot` now holds `name@version` (a fetch through it succeeded).
    pub(crate) fn add_holder(&mut self, name: &str, version: &str, slot: usize) {
        if let Some(acked) = self.acked.get_mut(&(name.to_owned(), version.to_owned())) {
            acked.holders.insert(slot);
        }
    }

    /// Whether `slot` is the home of a package (its data dir must then be kept).
    pub(crate) fn is_home(&self, slot: usize) -> bool {
        self.packages.values().any(|record| record.home == slot)
    }

    /// Every acknowledged version.
    pub(crate) fn acked(&self) -> impl Iterator<Item = (&(String, String), &Acked)> {
        self.acked.iter()
    }

    pub(crate) fn acked_count(&self) -> usize {
        self.acked.len()
    }

    pub(crate) fn package_count(&self) -> usize {
        self.packages.len()
    }
}

/// What was around a failed operation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FailureContext {
    /// The node the command talked to stopped, crashed or restarted meanwhile.
    pub(crate) node_churned: bool,
    /// For a fetch: some node known to hold the artifact was up.
    pub(crate) holder_up: bool,
    /// The package was acknowledged, or the node (re)started, only moments ago.
    pub(crate) recent: bool,
    /// The answer contradicted the oracle (another digest, other bytes).
    pub(crate) contradicts: bool,
}

/// How a failed operation counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Failure {
    /// Expected under churn: the node went away, the only holders were down, or
    /// the package had not had time to spread.
    Tolerated,
    /// Not explained by churn, but no data was contradicted (a timeout, a search
    /// that missed): reported, not a defect.
    Unexplained,
    /// The network answered something the oracle contradicts.
    Defect,
}

/// Classifies a failed `kind` operation.
pub(crate) fn classify(kind: OpKind, context: FailureContext) -> Failure {
    if context.contradicts {
        return Failure::Defect;
    }
    if context.node_churned {
        return Failure::Tolerated;
    }
    match kind {
        OpKind::Fetch if !context.holder_up || context.recent => Failure::Tolerated,
        OpKind::Info | OpKind::Search if context.recent => Failure::Tolerated,
        _ => Failure::Unexplained,
    }
}

/// Where an acknowledged version stands after the settle period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Recovery {
    /// Fetched with the right content from some node.
    Recovered,
    /// No running node could produce it, and every holder's data dir is gone
    /// (the soak removed it on purpose).
    HolderRemoved,
    /// No running node could produce it although a holder's data dir was kept.
    Lost,
}

/// `fetched`: some node produced the right bytes; `holders_kept`: the data dir
/// of at least one holder still exists.
pub(crate) fn recovery(fetched: bool, holders_kept: bool) -> Recovery {
    match (fetched, holders_kept) {
        (true, _) => Recovery::Recovered,
        (false, false) => Recovery::HolderRemoved,
        (false, true) => Recovery::Lost,
    }
}

/// Replaces what differs from one occurrence of an error to the next (numbers,
/// digests, the soak's package names, addresses) so messages can be counted.
pub(crate) fn normalize_error(message: &str, tag: &str) -> String {
    let mut out = String::new();
    for word in message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if word.contains(tag) {
            out.push_str("<pkg>");
        } else if bare.len() >= 20 && bare.chars().all(|c| c.is_ascii_alphanumeric()) {
            // A peer id or a digest.
            out.push_str(&word.replace(bare, "<id>"));
        } else if word.contains('/') && (word.contains("tmp") || word.contains("soak")) {
            out.push_str("<path>");
        } else {
            let mut previous_digit = false;
            for c in word.chars() {
                if c.is_ascii_digit() {
                    if !previous_digit {
                        out.push('N');
                    }
                    previous_digit = true;
                } else {
                    out.push(c);
                    previous_digit = false;
                }
            }
        }
    }
    const MAX: usize = 160;
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect::<String>() + "…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_never_reused_and_stay_with_their_home() {
        let mut oracle = Oracle::default();
        let mut rng = Rng::new(7);
        let first = oracle.plan(1, true, "s1", &mut rng);
        assert_eq!(first.version, "1.0.0", "a home with no package gets a new one");
        // An attempt that is never acknowledged still burns its version.
        let second = oracle.plan(1, true, "s1", &mut rng);
        assert_eq!((second.name.as_str(), second.version.as_str()), (first.name.as_str(), "1.1.0"));
        oracle.acknowledge(&second, "d".into(), 3.0);
        let third = oracle.plan(1, true, "s1", &mut rng);
        assert_eq!(third.version, "1.2.0");
        // Another home never gets a version of a package it does not own.
        let other = oracle.plan(2, true, "s1", &mut rng);
        assert_ne!(other.name, first.name);
        assert!(oracle.is_home(1) && oracle.is_home(2) && !oracle.is_home(3));
        assert_eq!((oracle.package_count(), oracle.acked_count()), (2, 1));
        let (name, version, acked) = oracle.pick(&mut rng).unwrap();
        assert_eq!((name, version), (first.name.clone(), "1.1.0".to_owned()));
        assert_eq!(acked.holders, BTreeSet::from([1]));
        oracle.add_holder(&first.name, "1.1.0", 4);
        assert_eq!(oracle.acked().next().unwrap().1.holders, BTreeSet::from([1, 4]));
        assert!(first.name.starts_with("s1-") && PackageName::parse(&first.name).is_ok());
    }

    use agora::PackageName;

    #[test]
    fn failures_are_told_apart() {
        let none = FailureContext::default();
        assert_eq!(classify(OpKind::Info, FailureContext { contradicts: true, ..none }), Failure::Defect);
        assert_eq!(classify(OpKind::Publish, FailureContext { node_churned: true, ..none }), Failure::Tolerated);
        assert_eq!(classify(OpKind::Fetch, FailureContext { holder_up: false, ..none }), Failure::Tolerated);
        assert_eq!(classify(OpKind::Fetch, FailureContext { holder_up: true, ..none }), Failure::Unexplained);
        assert_eq!(classify(OpKind::Info, FailureContext { recent: true, ..none }), Failure::Tolerated);
        assert_eq!(classify(OpKind::Info, none), Failure::Unexplained);
        assert_eq!(classify(OpKind::Publish, FailureContext { recent: true, ..none }), Failure::Unexplained);
        assert_eq!(recovery(true, false), Recovery::Recovered);
        assert_eq!(recovery(false, false), Recovery::HolderRemoved);
        assert_eq!(recovery(false, true), Recovery::Lost);
    }

    #[test]
    fn error_messages_are_counted_without_their_particulars() {
        let a = normalize_error("package `s9-json-00012` not found on 127.0.0.1:40123 after 10000 ms", "s9");
        let b = normalize_error("package `s9-tree-00400` not found on 127.0.0.1:3812 after 10000 ms", "s9");
        assert_eq!(a, b);
        assert_eq!(a, "package <pkg> not found on N.N.N.N:N after N ms");
        let peer = normalize_error("after trying 1 provider (12D3KooWSaLLqdWokUsFznBVQTizNApEzNEf: chunk)", "s9");
        assert_eq!(peer, "after trying N provider (<id>: chunk)");
        assert!(normalize_error(&"x".repeat(500), "s9").chars().count() <= 161);
    }
}
