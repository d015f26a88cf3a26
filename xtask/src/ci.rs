//! `cargo xtask ci` and `cargo xtask test`.
//!
//! `ci` runs, in order and stopping at the first failure: the module cycle check
//! ([`crate::cycles`]), the format check, clippy with warnings denied, the tests.

use crate::cargo;

/// The README's test command.
const TEST_COMMAND: &[&str] = &["test", "--workspace"];

pub(crate) fn run() -> anyhow::Result<()> {
    crate::cycles::run()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test(&[])
}

pub(crate) fn test(extra: &[String]) -> anyhow::Result<()> {
    let mut args: Vec<&str> = TEST_COMMAND.to_vec();
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
