//! Agora's benchmarks. Run them with `cargo xtask bench [SCENARIO...] [--quick]`,
//! which builds this in release and writes `target/bench/report.{json,md}` and
//! `docs/BENCHMARKS.md`. Every figure is printed beside a baseline measured in the
//! same run, with the ratio and the goal. Nothing here is a timed test assertion.
//! `agora-bench soak` (run by `cargo xtask soak`) is the soak of real node
//! processes under churn; see `soak.rs`.

mod data;
mod report;
mod scenarios;
mod sim;
mod soak;
mod stats;

use std::path::PathBuf;

use scenarios::Scale;
use sim::SimOptions;

const SCENARIOS: &[&str] = &[
    "search",
    "throughput",
    "propagation",
    "dht",
    "transfer",
    "concurrency",
    "sync",
    "gossip",
    "start",
    "nat",
    "cargo",
];

fn main() -> anyhow::Result<()> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if all.first().map(String::as_str) == Some("soak") {
        return soak::main(&all[1..]);
    }
    let mut quick = false;
    let mut out = PathBuf::from("target/bench");
    let mut docs: Option<PathBuf> = None;
    let mut chosen = Vec::new();
    let mut sim: Option<SimOptions> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "sim" => {
                sim.get_or_insert_with(SimOptions::default);
            }
            "--nodes" | "--sweep" => {
                let list =
                    args.next().ok_or_else(|| anyhow::anyhow!("{arg} needs a number or a list like 10,50,100"))?;
                let sizes: Vec<usize> = list
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|_| anyhow::anyhow!("`{n}` is not a node count")))
                    .collect::<anyhow::Result<_>>()?;
                sim.get_or_insert_with(SimOptions::default).sizes.extend(sizes);
            }
            "--tcp" => sim.get_or_insert_with(SimOptions::default).tcp = true,
            "--catalog-sync" => sim.get_or_insert_with(SimOptions::default).catalog_sync = true,
            "--latency" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--latency needs milliseconds"))?;
                sim.get_or_insert_with(SimOptions::default).latency_ms = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("--latency: `{value}` is not a whole number of milliseconds"))?;
            }
            "--loss" => {
                let value = args.next().ok_or_else(|| anyhow::anyhow!("--loss needs a fraction from 0 to 1"))?;
                sim.get_or_insert_with(SimOptions::default).loss =
                    value.parse().map_err(|_| anyhow::anyhow!("--loss: `{value}` is not a fraction from 0 to 1"))?;
            }
            "--row" => {
                let path = args.next().ok_or_else(|| anyhow::anyhow!("--row needs a file"))?;
                sim.get_or_insert_with(SimOptions::default).row_file = Some(PathBuf::from(path));
            }
            "--quick" => quick = true,
            "--out" => {
                out = args.next().map(PathBuf::from).ok_or_else(|| anyhow::anyhow!("--out needs a directory"))?
            }
            "--docs" => {
                docs = Some(args.next().map(PathBuf::from).ok_or_else(|| anyhow::anyhow!("--docs needs a file"))?)
            }
            "--list" => {
                println!("{}", SCENARIOS.join("\n"));
                return Ok(());
            }
            name if SCENARIOS.contains(&name) => chosen.push(name.to_owned()),
            other => anyhow::bail!("unknown scenario or flag `{other}`; scenarios: {}", SCENARIOS.join(", ")),
        }
    }
    if let Some(mut options) = sim {
        if options.sizes.is_empty() {
            options.sizes = vec![10, 50];
        }
        return sim::run(&options, &out);
    }
    if chosen.is_empty() {
        chosen = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    }
    let command = std::env::var("AGORA_BENCH_COMMAND").unwrap_or_else(|_| "cargo xtask bench".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scale = Scale { quick };
    let mut results = Vec::new();
    let started = std::time::Instant::now();
    for name in &chosen {
        println!("-- running {name}{}", if quick { " (quick)" } else { "" });
        let scenarios = runtime.block_on(async {
            match name.as_str() {
                "search" => scenarios::search::latency(scale).await,
                "throughput" => scenarios::search::throughput(scale).await,
                "propagation" => scenarios::network::propagation(scale).await,
                "dht" => scenarios::network::dht_lookup(scale).await,
                "transfer" => scenarios::transfer::run(scale).await,
                "concurrency" => scenarios::concurrency::run(scale).await,
                "sync" => scenarios::sync::run(scale).await,
                "gossip" => scenarios::gossip::run(scale).await,
                "start" => scenarios::start::run(scale).await,
                "nat" => scenarios::nat::run(scale).await,
                "cargo" => scenarios::cargo::run(scale).await,
                _ => unreachable!("checked above"),
            }
        })?;
        for scenario in &scenarios {
            report::print(scenario);
        }
        results.extend(scenarios);
    }
    report::write(&results, &out, docs.as_deref(), &command, started.elapsed().as_secs_f64())?;
    println!("report written to {}", out.join("report.md").display());
    Ok(())
}
