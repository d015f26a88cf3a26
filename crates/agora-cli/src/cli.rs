//! Command-line arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Agora: a decentralized package registry.
#[derive(Debug, Parser)]
#[command(name = "agora", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The node's data directory [default: the user data directory + /agora].
    #[arg(long, global = true, env = "AGORA_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address of the node's HTTP API [default: what the running node recorded in
    /// its data dir, else 127.0.0.1:7420].
    #[arg(long, global = true, env = "AGORA_API", value_name = "ADDR")]
    pub(crate) api: Option<SocketAddr>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a node: the local catalog, artifact store and HTTP API.
    Node(NodeArgs),
    /// Create a new package skeleton with its agora.toml.
    New {
        /// Directory to create.
        dir: PathBuf,
        /// Package name [default: the directory name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Pack, sign and publish a package directory (or an existing .tar.gz).
    Publish {
        /// Package directory or archive.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Validate and pack, but do not upload.
        #[arg(long)]
        dry_run: bool,
        /// Print the files that would be packed, one per line, and exit (no node
        /// needed). `.gitignore` and `.agoraignore` decide what is left out.
        #[arg(long, conflicts_with = "dry_run")]
        list: bool,
    },
    /// Search the catalog (and with --network, ask peers too).
    Search(SearchArgs),
    /// Show a package, or one version of it: NAME or NAME@VERSION.
    Info {
        /// NAME[@VERSION]
        spec: String,
    },
    /// List every version of a package.
    Versions {
        /// Package name.
        name: String,
    },
    /// Download, verify and unpack a package: NAME, NAME@VERSION or NAME@REQ (e.g. demo@^1.2).
    Fetch {
        /// NAME[@VERSION|@REQ]
        spec: String,
        /// Directory to unpack into (must not exist or be empty) [default: ./NAME-VERSION].
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Yank a version (still fetchable by exact version, no longer chosen by default).
    Yank {
        /// NAME@VERSION
        spec: String,
        /// Undo a yank.
        #[arg(long)]
        undo: bool,
    },
    /// Choose whose claim to a contested name this node serves (`agora info NAME`
    /// lists the claims). Kept across restarts; undo by trusting the other key.
    Trust {
        /// Package name.
        name: String,
        /// The owner's public key (hex), as `agora info NAME` shows it.
        owner: String,
    },
    /// Keep a fetched artifact: pinned artifacts are never evicted (NAME@VERSION).
    Pin {
        /// NAME@VERSION
        spec: String,
    },
    /// Let a pinned artifact be evicted again when space is needed (NAME@VERSION).
    Unpin {
        /// NAME@VERSION
        spec: String,
    },
    /// Show the node's status.
    Status,
    /// List known and connected peers.
    Peers,
    /// Start a small network of nodes in this process on 127.0.0.1, publish sample
    /// packages on one, and find, inspect and fetch them from the others.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// Manage the node's publisher key.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// List or change the owners of a package (any current owner may).
    Owner {
        #[command(subcommand)]
        command: OwnerCommand,
    },
    /// Use the node from cargo: its Cargo registry and crates.io mirror.
    Cargo {
        #[command(subcommand)]
        command: CargoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CargoCommand {
    /// Publish existing `.crate` files as they are (e.g. from
    /// ~/.cargo/registry/cache/*/), each index line derived from the crate's own
    /// Cargo.toml. Directories are searched for `*.crate` files.
    Import {
        /// `.crate` files or directories holding them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the `.cargo/config.toml` that makes cargo use this node: as an
    /// extra registry named `agora`, and as a mirror replacing crates.io.
    Config,
    /// Print the node's current API token (cargo's credential provider runs this).
    Token,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OwnerCommand {
    /// Print the owners of a package.
    List {
        /// Package name.
        name: String,
    },
    /// Add a co-owner: it can publish, yank and change owners as this key can.
    Add {
        /// Package name.
        name: String,
        /// The new owner's public key (hex; `agora key show` on its node).
        key: String,
    },
    /// Remove an owner (at least one must remain; removing this node's own key
    /// leaves the package to the others).
    Remove {
        /// Package name.
        name: String,
        /// The owner's public key (hex).
        key: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// Words to look for in names, descriptions and keywords.
    #[arg(default_value = "")]
    pub(crate) text: String,
    /// Only packages in this category (or its subcategories). Repeatable.
    #[arg(long)]
    pub(crate) category: Vec<String>,
    /// Only packages with this keyword. Repeatable; all must match.
    #[arg(long)]
    pub(crate) tag: Vec<String>,
    /// Only packages owned by this publisher key (hex).
    #[arg(long)]
    pub(crate) publisher: Option<String>,
    /// Results per page (1-100) of a local search.
    #[arg(long, default_value_t = 10, conflicts_with = "network")]
    pub(crate) limit: u32,
    /// Results to skip in a local search.
    #[arg(long, default_value_t = 0, conflicts_with = "network")]
    pub(crate) offset: u32,
    /// Also ask the best connected peers; their hits are verified and stored.
    #[arg(long)]
    pub(crate) network: bool,
    /// Settings of a network search [default: balanced].
    #[arg(long, value_enum, requires = "network")]
    pub(crate) preset: Option<SearchPreset>,
    /// Deadline of a network search in milliseconds (1-60000) [default: the preset's].
    #[arg(long, value_name = "N", requires = "network")]
    pub(crate) timeout_ms: Option<u64>,
    /// Peers asked in parallel (1-32) [default: the preset's].
    #[arg(long, value_name = "N", requires = "network")]
    pub(crate) fan_out: Option<usize>,
    /// Stop after this many hits (1-100) [default: the preset's].
    #[arg(long, value_name = "N", requires = "network")]
    pub(crate) max_results: Option<usize>,
}

/// Network search presets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SearchPreset {
    /// 2 s, 10 hits, 1 peer, fixed deadline.
    Interactive,
    /// 10 s, 20 hits, 3 peers, adaptive deadline.
    Balanced,
    /// 5 s, 50 hits, 5 peers, adaptive deadline.
    Batch,
}

impl SearchPreset {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Balanced => "balanced",
            Self::Batch => "batch",
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Config file [default: <data dir>/config.toml if present].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Largest artifact accepted, in bytes.
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_artifact_size: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Peer-to-peer listen address (repeatable) [default: /ip4/0.0.0.0/tcp/0].
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<String>,
    /// Peer to join through, ending in /p2p/<peer id> (repeatable).
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// Run without the peer-to-peer network.
    #[arg(long)]
    pub(crate) offline: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Print the publisher public key.
    Show,
    /// Print the publisher secret key (or write it to a file, owner-only).
    Export {
        /// File to write instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Make a key from a file ('-' for standard input) the publisher key; every
    /// earlier key is kept in <data dir>/keys/keyring/.
    Import {
        /// File holding the hex secret key.
        file: PathBuf,
        /// Switch even though the current key owns packages (they can then no
        /// longer be updated or yanked from this node).
        #[arg(long)]
        force: bool,
    },
    /// Replace the publisher key with a new one and hand every package the old
    /// key owns to it (signed by the old key, which stays in the keyring).
    Rotate,
}
