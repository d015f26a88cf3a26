//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`: exactly what CI runs (the module cycle check, format check,
//!   clippy with warnings denied, the workspace tests).
//! - `cargo xtask cycles`: fails if, in any crate of the workspace, a module imports a
//!   module that imports it back (directly or through a longer cycle); prints each
//!   cycle with one `file:line` per import in it.
//! - `cargo xtask test`: the workspace tests only (`cargo test --workspace`).
//! - `cargo xtask bench [SCENARIO...] [--quick]`: the benchmarks (release build),
//!   each figure beside a baseline measured in the same run.
//! - `cargo xtask sim --nodes N | --sweep 10,50,100 [--tcp] [--latency MS]
//!   [--loss FRACTION] [--catalog-sync]`: an in-process network of N nodes on memory ports (or
//!   127.0.0.1), showing how lookups, propagation and memory grow with N.
//! - `cargo xtask fuzz [--seconds N | --runs N] [--seeds] [TARGET...]`: builds the
//!   `fuzz/` targets with nightly cargo-fuzz, replays their corpora, fuzzes each.
//! - `cargo xtask soak --minutes N [--nodes K] [--seed S]`: real `agora node` processes on
//!   127.0.0.1 under churn (crashes, stops, joins) with CLI clients and an oracle; not in CI.

mod bench;
mod ci;
mod cycles;
mod fuzz;
mod soak;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("cycles") => cycles::run(),
        Some("test") => ci::test(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("sim") => bench::sim(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!(
                "usage: cargo xtask <ci|cycles|test|bench|sim|fuzz|soak> [args]\n\n  ci     module cycle check, fmt check, clippy -D warnings, tests (what CI runs)\n  cycles fail if a module imports a module that imports it back (in any crate)\n  test   cargo test --workspace [args]\n  bench  [SCENARIO...] [--quick]\n  sim    --nodes N | --sweep 10,50,100 [--tcp] [--latency MS] [--loss FRACTION] [--catalog-sync]\n  fuzz   [--seconds N | --runs N] [--seeds] [TARGET...] (nightly cargo-fuzz; default 15 s per target)\n  soak   --minutes N [--nodes K] [--seed S]: real node processes under churn (not in CI)"
            );
            Ok(())
        }
        Some(other) => bail!("unknown xtask `{other}`; try `cargo xtask help`"),
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map_or(manifest_dir.clone(), PathBuf::from)
}

/// Runs `cargo <args>` in the project root, failing on a non-zero exit.
pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

/// Like [`cargo`], with extra environment variables for the child.
pub(crate) fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.envs(env.iter().copied());
    run_cargo_command(command, args)
}

/// Runs `command` (a cargo) with `args` in the project root, echoing the command
/// line and failing on a non-zero exit.
pub(crate) fn run_cargo_command(mut command: Command, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("$ cargo {}", args.join(" "));
    let status = command
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}
