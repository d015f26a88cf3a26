//! `agora`: run a node (`agora node`) and talk to it (`agora publish`, `search`,
//! `info`, `fetch`, …) over its local HTTP API.
//!
//! The binary is a thin shell: node logic lives in the `agora` crate; this crate
//! holds argument parsing, the HTTP server and client, and terminal output.

mod api;
mod cargo_commands;
mod cli;
mod client;
mod commands;
mod daemon;
mod demo;
mod output;
mod server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    // Usage errors exit with 2 (clap's own exit), failures with 1.
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if json {
                // `--json`: errors are JSON too, on stderr, with the node's stable code
                // when the node refused (`failed` for anything else).
                let code =
                    error.downcast_ref::<client::NodeRefused>().map_or("failed", |refused| refused.code.as_str());
                let body = serde_json::json!({ "error": { "code": code, "message": format!("{error:#}") } });
                eprintln!("{body}");
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `agora search … | head` closes our stdout early; `println!` then panics with a
/// broken pipe. Like other Unix tools, stop quietly instead of printing a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
