//! The `agora` binary's own smoke tests. Having an integration test here also makes
//! `cargo test --workspace` build `target/<profile>/agora`, which the workspace
//! tests (`tests/`) run as the real binary.

use std::process::Command;

fn agora(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agora")).args(args).output().expect("the agora binary runs")
}

#[test]
fn help_lists_every_command() {
    let output = agora(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for command in [
        "node", "new", "publish", "search", "info", "versions", "fetch", "yank", "pin", "unpin", "status", "peers",
        "key", "demo",
    ] {
        assert!(help.contains(&format!("  {command} ")), "`agora --help` does not list `{command}`:\n{help}");
    }
}

#[test]
fn unknown_commands_and_bad_flags_fail_with_usage() {
    let output = agora(&["frobnicate"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
    let output = agora(&["search", "--limit", "many"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid value 'many'"));
}
