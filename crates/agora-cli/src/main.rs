//! `agora`: run a node (`agora node`) and talk to it (`agora publish`, `search`,
//! `info`, `fetch`, …) over its local HTTP API.
//!
//! The binary is a thin shell: node logic lives in the `agora` crate; this crate
//! holds argument parsing, the HTTP server and client, and terminal output.

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
    let cli = cli::Cli::parse();
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
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
