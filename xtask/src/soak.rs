//! `cargo xtask soak --minutes N [--nodes K] [--seed S]`: builds the `agora`
//! binary and `agora-bench` in release, then runs `agora-bench soak`, which
//! churns a network of real `agora node` processes on 127.0.0.1 and writes
//! `target/soak/report.{json,md}` (see `crates/agora-bench/src/soak.rs`). Not
//! part of `cargo xtask ci`; fails when the soak found defects.

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    crate::cargo(&["build", "--release", "--quiet", "-p", "agora-cli", "-p", "agora-bench"])?;
    let command = format!("cargo xtask soak {}", args.join(" "));
    let mut cargo_args = vec!["run", "--release", "--quiet", "-p", "agora-bench", "--", "soak"];
    cargo_args.extend(args.iter().map(String::as_str));
    cargo_args.extend(["--out", "target/soak"]);
    crate::cargo_with_env(&cargo_args, &[("AGORA_SOAK_COMMAND", command.trim_end())])
}
