//! `cargo xtask ci` and `cargo xtask test`.

use crate::cargo;

/// The README's test command.
const TEST_COMMAND: &[&str] = &["test", "--workspace"];

pub(crate) fn run() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test(&[])
}

pub(crate) fn test(extra: &[String]) -> anyhow::Result<()> {
    let mut args: Vec<&str> = TEST_COMMAND.to_vec();
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
