//! The real `cargo` against a node's Cargo gateway: a [`CargoHome`] is a
//! temporary `CARGO_HOME` (its own registry caches, its own `config.toml`) and
//! target dir, so nothing comes from the machine's cargo state or the internet;
//! crates made by a test are written with [`write_crate`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{CommandResult, TestNode};

/// The cargo binary: `$CARGO` (the one running the tests), else `cargo`.
pub fn cargo_bin() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Where the machine's cargo keeps downloaded `.crate` files:
/// `$CARGO_HOME/registry/cache` (default `~/.cargo`).
pub fn machine_crate_cache() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo"));
    home.join("registry").join("cache")
}

/// A temporary `CARGO_HOME` and target dir.
#[derive(Debug)]
pub struct CargoHome {
    root: tempfile::TempDir,
}

impl CargoHome {
    /// A `CARGO_HOME` whose `config.toml` is `config`.
    pub fn new(config: &str) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("home")).unwrap();
        std::fs::write(root.path().join("home").join("config.toml"), config).unwrap();
        Self { root }
    }

    /// A `CARGO_HOME` configured with what `agora cargo config` prints for `node`.
    pub fn for_node(node: &TestNode) -> Self {
        Self::new(&node.ok(&["cargo", "config"]).stdout)
    }

    /// The `CARGO_HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// The shared target dir of the projects built with this home.
    pub fn target_dir(&self) -> PathBuf {
        self.root.path().join("target")
    }

    /// `cargo <args>` in `dir`, with this home and target dir, and none of the
    /// `CARGO_*` variables of the cargo running the tests.
    pub fn command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(cargo_bin());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_") || key == "RUSTC_WRAPPER" || key == "RUSTFLAGS" {
                command.env_remove(&*key);
            }
        }
        command
            .args(args)
            .current_dir(dir)
            .env("CARGO_HOME", self.home())
            .env("CARGO_TARGET_DIR", self.target_dir())
            .env("CARGO_TERM_COLOR", "never")
            .env("CARGO_NET_RETRY", "0")
            .env("CARGO_HTTP_TIMEOUT", "60");
        command
    }

    /// Runs `cargo <args>` in `dir`.
    pub fn run(&self, dir: &Path, args: &[&str]) -> CommandResult {
        CommandResult::from(self.command(dir, args).output().expect("running cargo"))
    }

    /// Runs `cargo <args>` in `dir` and panics unless it succeeds.
    pub fn ok(&self, dir: &Path, args: &[&str]) -> CommandResult {
        let result = self.run(dir, args);
        assert!(result.success, "`cargo {}` in {} failed:\n{result}", args.join(" "), dir.display());
        result
    }
}

/// Writes a crate: `Cargo.toml` and the given files (e.g. `src/lib.rs`).
pub fn write_crate(dir: &Path, cargo_toml: &str, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), cargo_toml).unwrap();
    for (path, contents) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// The `checksum` of each registry package in a `Cargo.lock`, by
/// `(name, version)`.
pub fn lock_checksums(lock: &Path) -> BTreeMap<(String, String), String> {
    let text = std::fs::read_to_string(lock).unwrap_or_else(|error| panic!("{}: {error}", lock.display()));
    let mut checksums = BTreeMap::new();
    for package in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            package.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
                Some(value.trim_matches('"').to_owned())
            })
        };
        if let (Some(name), Some(version), Some(checksum)) = (field("name"), field("version"), field("checksum")) {
            checksums.insert((name, version), checksum);
        }
    }
    checksums
}
