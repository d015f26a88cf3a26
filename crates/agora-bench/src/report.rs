//! The report: `report.json`, `report.md`, and the `docs/BENCHMARKS.md` table.

use std::path::Path;

use serde::Serialize;

use crate::stats::Summary;

/// One scenario's result: a figure beside its baseline from the same run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) figure: Figure,
    pub(crate) baseline: Option<Figure>,
    /// figure / baseline in the direction the goal is stated.
    pub(crate) ratio: Option<f64>,
    pub(crate) goal: String,
    pub(crate) met: Option<bool>,
    pub(crate) peak_rss_mib: f64,
    pub(crate) seconds: f64,
    pub(crate) notes: Vec<String>,
}

/// A measured value.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) unit: String,
    pub(crate) summary: Option<Summary>,
}

impl Figure {
    pub(crate) fn new(label: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        Self { label: label.into(), value, unit: unit.into(), summary: None }
    }

    pub(crate) fn latency(label: impl Into<String>, summary: Summary) -> Self {
        Self { label: label.into(), value: summary.p50, unit: "ms".into(), summary: Some(summary) }
    }

    fn describe(&self) -> String {
        match &self.summary {
            Some(s) => format!(
                "{}: p50 {} / p95 {} / p99 {} ms (n={})",
                self.label,
                fmt(s.p50),
                fmt(s.p95),
                fmt(s.p99),
                s.count
            ),
            None => format!("{}: {} {}", self.label, fmt(self.value), self.unit),
        }
    }
}

/// Prints a scenario as it finishes.
pub(crate) fn print(scenario: &Scenario) {
    println!("== {} ({:.1} s, peak RSS {:.0} MiB)", scenario.name, scenario.seconds, scenario.peak_rss_mib);
    println!("   figure:   {}", scenario.figure.describe());
    if let Some(baseline) = &scenario.baseline {
        println!("   baseline: {}", baseline.describe());
    }
    if let Some(ratio) = scenario.ratio {
        println!("   ratio:    {ratio:.2}");
    }
    let verdict = match scenario.met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "(no verdict)",
    };
    println!("   goal:     {} — {verdict}", scenario.goal);
    for note in &scenario.notes {
        println!("   note:     {note}");
    }
}

/// In `docs/BENCHMARKS.md`, everything from this line on is written by hand
/// (profiles, the simulation sweep) and kept when the table is regenerated.
const HAND_WRITTEN: &str = "<!-- Hand-written from here on; `cargo xtask bench` keeps it. -->";

/// Writes `report.json` and `report.md` into `out`, and the same table into
/// `docs`, keeping the hand-written part of `docs` (see [`HAND_WRITTEN`]).
pub(crate) fn write(
    scenarios: &[Scenario],
    out: &Path,
    docs: Option<&Path>,
    command: &str,
    seconds: f64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let machine = machine();
    let json =
        serde_json::json!({ "command": command, "machine": machine, "seconds": seconds, "scenarios": scenarios });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    let markdown = markdown(scenarios, command, &machine, seconds);
    std::fs::write(out.join("report.md"), &markdown)?;
    if let Some(docs) = docs {
        let kept = std::fs::read_to_string(docs)
            .ok()
            .and_then(|old| old.find(HAND_WRITTEN).map(|at| old[at..].to_owned()))
            .unwrap_or_else(|| format!("{HAND_WRITTEN}\n"));
        std::fs::write(docs, format!("{markdown}\n{kept}"))?;
    }
    Ok(())
}

fn markdown(scenarios: &[Scenario], command: &str, machine: &str, seconds: f64) -> String {
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(&format!(
        "Produced by `{command}` on {machine}, {:.1} min in all (the release build not included). Every figure \
         stands beside a baseline measured in the same run (interleaved where both are latencies). Release build; \
         loopback only.\n\n",
        seconds / 60.0
    ));
    out.push_str(
        "| scenario | figure | baseline (same run) | ratio | goal | met | peak RSS |\n|---|---|---|---|---|---|---|\n",
    );
    for s in scenarios {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} MiB |\n",
            s.name,
            s.figure.describe(),
            s.baseline.as_ref().map_or_else(|| "—".to_owned(), Figure::describe),
            s.ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}")),
            s.goal,
            match s.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            },
            s.peak_rss_mib
        ));
    }
    let notes: Vec<String> =
        scenarios.iter().flat_map(|s| s.notes.iter().map(move |n| format!("- **{}**: {n}", s.name))).collect();
    if !notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

/// `2 cores (model), 24 GiB`.
pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(|| "unknown memory".into(), |kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0));
    format!("{cpus} cores ({model}), {memory}")
}

fn fmt(value: f64) -> String {
    if value.is_nan() {
        "n/a".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
