//! `cargo xtask bench [SCENARIO...] [--quick]`: builds `agora-bench` in release and
//! runs it from the project root, writing `target/bench/report.{json,md}` and,
//! for a full run of every scenario, `docs/BENCHMARKS.md`.

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let all = args.iter().all(|a| a.starts_with("--"));
    let command =
        if args.is_empty() { "cargo xtask bench".to_owned() } else { format!("cargo xtask bench {}", args.join(" ")) };
    // The `nat` and `cargo` scenarios (in a run of every scenario too) run the
    // release `agora` binary (in network namespaces, for `nat`).
    if all || args.iter().any(|a| a == "nat" || a == "cargo") {
        crate::cargo(&["build", "--release", "--quiet", "-p", "agora-cli"])?;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| std::path::PathBuf::from("target"), Into::into);
    let agora = std::path::absolute(target.join("release").join(format!("agora{}", std::env::consts::EXE_SUFFIX)))?;
    let mut cargo_args = vec!["run", "--release", "--quiet", "-p", "agora-bench", "--"];
    cargo_args.extend(args.iter().map(String::as_str));
    cargo_args.extend(["--out", "target/bench"]);
    if all && !quick {
        cargo_args.extend(["--docs", "docs/BENCHMARKS.md"]);
    }
    let agora = agora.to_string_lossy();
    crate::cargo_with_env(&cargo_args, &[("AGORA_BENCH_COMMAND", &command), ("AGORA_BIN", &agora)])
}

/// `cargo xtask sim --nodes N | --sweep 10,50,100 [--tcp] [--latency MS] [--loss FRACTION] [--catalog-sync]`:
/// builds `agora-bench` in release and writes `target/bench/sim.json`.
pub(crate) fn sim(args: &[String]) -> anyhow::Result<()> {
    let mut cargo_args = vec!["run", "--release", "--quiet", "-p", "agora-bench", "--", "sim"];
    cargo_args.extend(args.iter().map(String::as_str));
    cargo_args.extend(["--out", "target/bench"]);
    crate::cargo(&cargo_args)
}
