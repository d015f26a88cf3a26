//! `cargo xtask fuzz [--seconds N | --runs N] [--seeds] [TARGET...]`: the fuzz
//! targets of `fuzz/` (libFuzzer through `cargo +nightly fuzz`).
//!
//! In order, stopping at the first failure: checks that the nightly toolchain and
//! `cargo fuzz` are there (it installs nothing: `.ci/run` does that), builds the
//! targets once (release with debug assertions and overflow checks, no sanitizer:
//! the code under test has no `unsafe`, see `docs/FUZZING.md`), replays each
//! target's committed corpus (`fuzz/corpus/<target>`), then fuzzes each target in
//! turn for `--seconds` (default 15) or `--runs` executions, with bounded memory
//! and input length. New inputs go to `fuzz/target/corpus/<target>` (not
//! committed), crashes to `fuzz/artifacts/<target>/`, libFuzzer's output to
//! `fuzz/target/logs/<target>.log`. Prints one line per target (executions, time,
//! executions per second, corpus size) and fails if any target crashed.
//!
//! `--seeds` regenerates the committed `seed-*` inputs first (`fuzz/examples/seeds.rs`,
//! built on the default toolchain in the workspace's target directory).
//! No TARGET means every `fuzz/fuzz_targets/*.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

use crate::project_root;

/// Seconds each target runs when neither `--seconds` nor `--runs` is given.
const DEFAULT_SECONDS: u64 = 15;
/// libFuzzer's memory limit per target process.
const RSS_LIMIT_MB: u64 = 2048;
/// Longest input for the archive targets (a small package archive or `.crate`) and
/// for the rest.
const MAX_LEN_ARCHIVE: usize = 64 * 1024;
const MAX_LEN_OTHER: usize = 16 * 1024;
/// Targets that take archives.
const ARCHIVE_TARGETS: &[&str] = &["archive", "unpack", "cargo_publish"];
/// A single input running longer than this is a failure (a hang).
const INPUT_TIMEOUT_SECS: u64 = 30;
/// The target triple cargo-fuzz builds for (its default).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
/// `cargo fuzz build` flags: release, debug assertions and overflow checks, no
/// sanitizer (ASan roughly halves the throughput of safe Rust and finds nothing
/// the Rust checks do not; pass `--sanitizer address` to cargo fuzz by hand).
const BUILD_FLAGS: &[&str] = &["--release", "--debug-assertions", "--sanitizer", "none"];

/// How long each target runs.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Seconds(u64),
    Runs(u64),
}

/// What one target's run did.
#[derive(Debug)]
struct Outcome {
    target: String,
    executions: Option<u64>,
    seconds: f64,
    corpus: Option<u64>,
    crashed: bool,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut budget = Budget::Seconds(DEFAULT_SECONDS);
    let mut seeds = false;
    let mut targets = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => budget = Budget::Seconds(number(args.next(), "--seconds")?),
            "--runs" => budget = Budget::Runs(number(args.next(), "--runs")?),
            "--seeds" => seeds = true,
            flag if flag.starts_with('-') => bail!("unknown flag `{flag}`; expected --seconds, --runs or --seeds"),
            target => targets.push(target.to_owned()),
        }
    }
    let fuzz_dir = project_root().join("fuzz");
    let known = known_targets(&fuzz_dir)?;
    if targets.is_empty() {
        targets = known.clone();
    }
    if let Some(unknown) = targets.iter().find(|target| !known.contains(target)) {
        bail!("unknown fuzz target `{unknown}`; the targets are {}", known.join(", "));
    }

    check_tools()?;
    if seeds {
        write_seeds(&fuzz_dir)?;
    }
    let started = Instant::now();
    let target_dir = fuzz_dir.join("target");
    let target_dir = target_dir.to_str().context("the fuzz directory's path is not UTF-8")?;
    let mut build = vec!["+nightly", "fuzz", "build", "--target-dir", target_dir];
    build.extend(BUILD_FLAGS);
    if let [only] = targets.as_slice() {
        build.push(only);
    }
    run_cargo(&build)?;
    eprintln!("fuzz targets built in {:.0} s", started.elapsed().as_secs_f64());

    let mut outcomes = Vec::new();
    for target in &targets {
        replay(&fuzz_dir, target)?;
        outcomes.push(fuzz(&fuzz_dir, target, budget)?);
    }
    print_table(&outcomes);
    let crashed: Vec<&str> = outcomes.iter().filter(|o| o.crashed).map(|o| o.target.as_str()).collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz target(s) crashed: {} (inputs in fuzz/artifacts/<target>/; reproduce with \
             `cargo +nightly fuzz run <target> <input>`)",
            crashed.join(", ")
        );
    }
    eprintln!("fuzzing done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn number(value: Option<&String>, flag: &str) -> anyhow::Result<u64> {
    let value = value.with_context(|| format!("{flag} needs a number"))?;
    value.parse().with_context(|| format!("{flag} expects a whole number, found `{value}`"))
}

/// The targets: one per `fuzz/fuzz_targets/*.rs`.
fn known_targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut targets = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "rs")
            && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

/// Fails loudly when nightly or cargo-fuzz is missing: the fuzz step never skips.
fn check_tools() -> anyhow::Result<()> {
    let works = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !works(&["+nightly", "--version"]) {
        bail!("the fuzz step needs the nightly toolchain, which is not installed: `rustup toolchain install nightly`");
    }
    if !works(&["+nightly", "fuzz", "--version"]) {
        bail!("the fuzz step needs cargo-fuzz, which is not installed: `cargo install cargo-fuzz --locked`");
    }
    Ok(())
}

fn write_seeds(fuzz_dir: &Path) -> anyhow::Result<()> {
    let manifest = fuzz_dir.join("Cargo.toml");
    let manifest = manifest.to_str().context("the fuzz directory's path is not UTF-8")?;
    // The workspace's target directory: the generator shares its compiled dependencies.
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| project_root().join("target").to_string_lossy().into_owned());
    crate::cargo_with_env(
        &["run", "--manifest-path", manifest, "--example", "seeds"],
        &[("CARGO_TARGET_DIR", &target_dir)],
    )
}

/// Runs `cargo` (through rustup, so that `+nightly` works) in the project root,
/// without the outer cargo's `CARGO_TARGET_DIR`: the fuzz build has its own.
fn run_cargo(args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new("cargo");
    command.env_remove("CARGO_TARGET_DIR");
    crate::run_cargo_command(command, args)
}

fn binary(fuzz_dir: &Path, target: &str) -> PathBuf {
    fuzz_dir.join("target").join(TRIPLE).join("release").join(target)
}

fn max_len(target: &str) -> usize {
    if ARCHIVE_TARGETS.contains(&target) { MAX_LEN_ARCHIVE } else { MAX_LEN_OTHER }
}

/// Runs every committed input of `target` once.
fn replay(fuzz_dir: &Path, target: &str) -> anyhow::Result<()> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let inputs = fs::read_dir(&corpus).map(Iterator::count).unwrap_or(0);
    if inputs == 0 {
        bail!("fuzz target `{target}` has no committed corpus in {}", corpus.display());
    }
    let artifacts = artifacts_dir(fuzz_dir, target)?;
    let output = Command::new(binary(fuzz_dir, target))
        .arg(format!("-artifact_prefix={artifacts}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-runs=0")
        .arg(&corpus)
        .output()
        .with_context(|| format!("running fuzz target {target}"))?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        bail!("fuzz target `{target}` fails on its committed corpus ({} inputs)", inputs);
    }
    eprintln!("{target}: replayed {inputs} committed inputs");
    Ok(())
}

/// Fuzzes `target` for the budget, logging libFuzzer's output.
fn fuzz(fuzz_dir: &Path, target: &str, budget: Budget) -> anyhow::Result<Outcome> {
    let scratch = fuzz_dir.join("target").join("corpus").join(target);
    let logs = fuzz_dir.join("target").join("logs");
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let limit = match budget {
        Budget::Seconds(seconds) => format!("-max_total_time={seconds}"),
        Budget::Runs(runs) => format!("-runs={runs}"),
    };
    let artifacts = artifacts_dir(fuzz_dir, target)?;
    let mut command = Command::new(binary(fuzz_dir, target));
    command
        .arg(format!("-artifact_prefix={artifacts}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-max_len={}", max_len(target)))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(limit)
        .arg("-print_final_stats=1")
        .arg(&scratch)
        .arg(fuzz_dir.join("corpus").join(target))
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("{target}: fuzzing ({budget:?}), log in {}", log_path.display());
    let started = Instant::now();
    let status = command.status().with_context(|| format!("running fuzz target {target}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let outcome = Outcome {
        target: target.to_owned(),
        executions: stat(&text, "stat::number_of_executed_units:"),
        seconds,
        corpus: corpus_size(&text),
        crashed: !status.success(),
    };
    if outcome.crashed {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        eprintln!("{target}: CRASHED ({status})");
    }
    Ok(outcome)
}

fn artifacts_dir(fuzz_dir: &Path, target: &str) -> anyhow::Result<String> {
    let dir = fuzz_dir.join("artifacts").join(target);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(format!("{}/", dir.display()))
}

/// A `stat::name: value` line of `-print_final_stats`.
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines().filter_map(|line| line.strip_prefix(name)).filter_map(|value| value.trim().parse().ok()).next_back()
}

/// The `corp: N/SIZE` of libFuzzer's last status line.
fn corpus_size(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|line| line.split("corp: ").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .filter_map(|count| count.trim().parse().ok())
        .next_back()
}

fn print_table(outcomes: &[Outcome]) {
    let show = |value: Option<u64>| value.map_or_else(|| "?".to_owned(), |value| value.to_string());
    println!("{:<16} {:>12} {:>9} {:>9} {:>7}  result", "target", "executions", "seconds", "exec/s", "corpus");
    for outcome in outcomes {
        let rate = outcome.executions.map(|runs| format!("{:.0}", runs as f64 / outcome.seconds.max(0.001)));
        println!(
            "{:<16} {:>12} {:>9.1} {:>9} {:>7}  {}",
            outcome.target,
            show(outcome.executions),
            outcome.seconds,
            rate.unwrap_or_else(|| "?".to_owned()),
            show(outcome.corpus),
            if outcome.crashed { "CRASHED" } else { "ok" }
        );
    }
}
