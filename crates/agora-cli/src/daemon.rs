//! `agora node`: open the node, serve the API on loopback, stop cleanly on
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The node's log filter when `RUST_LOG` is not set.
const DEFAULT_LOG: &str = "info,libp2p_kad=error";

use crate::cli::{Global, LogFormat, NodeArgs};
use crate::server::{ApiState, router};

/// What a running node records in its data dir so local clients can find it,
/// and check that what answers there is this data dir's node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ApiRecord {
    pub(crate) api: SocketAddr,
    pub(crate) pid: u32,
    /// The node's identity key, which the API proves it holds (`GET /v1/identity`).
    pub(crate) identity: agora::PublicKey,
}

/// The file holding the [`ApiRecord`].
pub(crate) fn api_record_path(data_dir: &Path) -> PathBuf {
    data_dir.join("api.json")
}

pub(crate) async fn run(global: &Global, args: &NodeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let data_dir = global.data_dir.clone().unwrap_or_else(agora::default_data_dir);
    let mut builder = agora::Node::builder().data_dir(&data_dir).env(std::env::vars());
    if let Some(path) = &args.config {
        builder = builder.config_file(path);
    }
    if let Some(addr) = global.api {
        builder = builder.api(addr);
    }
    if let Some(bytes) = args.max_artifact_size {
        builder = builder.max_artifact_size(bytes);
    }
    if !args.listen.is_empty() {
        builder = builder.listen(&args.listen);
    }
    if !args.bootstrap.is_empty() {
        builder = builder.bootstrap(&args.bootstrap);
    }
    if args.offline {
        builder = builder.offline();
    }
    let node = match builder.build().await {
        Ok(node) => node,
        // Says which data dir and what to do already.
        Err(error @ agora::Error::DataDirLocked { .. }) => return Err(error.into()),
        Err(error) => {
            return Err(anyhow::Error::new(error).context(format!("cannot open the node in {}", data_dir.display())));
        }
    };
    // Uploads a crashed node left behind; the lock says no other node uses them.
    let upload_dir = data_dir.join("tmp").join("uploads");
    remove_stale_uploads(&upload_dir).await;
    let requested = node.config().api;
    if !requested.ip().is_loopback() {
        bail!("the API serves only the local machine; use a 127.0.0.1 address instead of {requested}");
    }
    let listener = tokio::net::TcpListener::bind(requested).await.map_err(|error| {
        if error.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("{requested} is already in use — is another node running? Pick another address with --api 127.0.0.1:PORT")
        } else {
            anyhow::anyhow!("cannot listen on {requested}: {error}")
        }
    })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = shutdown_signal()?;
    let token = node.issue_api_token().await?;
    let record_path = api_record_path(&data_dir);
    let record = serde_json::to_string(&ApiRecord { api: addr, pid: std::process::id(), identity: node.identity() })?;
    write_atomically(&record_path, record).await.with_context(|| format!("writing {}", record_path.display()))?;

    let state = Arc::new(ApiState { node: node.clone(), token, addr, upload_dir });
    tracing::info!(api = %addr, data_dir = %data_dir.display(), publisher = %node.publisher_key(), "agora node is running");
    eprintln!("agora node {} running", env!("CARGO_PKG_VERSION"));
    eprintln!("  api:        http://{addr}");
    eprintln!("  data dir:   {}", data_dir.display());
    eprintln!("  publisher:  {}", node.publisher_key());
    if let Some(network) = node.status().await?.network {
        eprintln!("  peer id:    {}", network.peer_id);
        for address in &network.listen_addrs {
            eprintln!("  listening:  {address}");
        }
    } else {
        eprintln!("  network:    off (--offline)");
    }
    eprintln!("press Ctrl-C to stop");

    // No Nagle delay: on a kept-alive connection (cargo keeps them), the last
    // small segment of a reply would otherwise wait for the client's delayed
    // ACK, some 40 ms per response.
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on an API connection");
        }
    });
    let served = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await;
    node.shutdown().await;
    let _ = tokio::fs::remove_file(&record_path).await;
    served.context("serving the API")?;
    tracing::info!("agora node stopped");
    eprintln!("agora node stopped");
    Ok(())
}

/// Writes `contents` to `path` through a temp file beside it, so a client never
/// reads half a record.
async fn write_atomically(path: &Path, contents: String) -> std::io::Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        std::io::Write::write_all(&mut temp, contents.as_bytes())?;
        temp.persist(&path).map(drop).map_err(|error| error.error)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Removes `upload_dir` and everything in it. A failure is logged, not fatal:
/// reads still work, and a publish reports its own error.
async fn remove_stale_uploads(upload_dir: &Path) {
    match tokio::fs::remove_dir_all(upload_dir).await {
        Ok(()) => tracing::debug!(dir = %upload_dir.display(), "removed stale uploads"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(dir = %upload_dir.display(), %error, "cannot remove stale uploads"),
    }
}

fn init_logging(format: LogFormat) {
    // libp2p's Kademlia warns on every automatic bootstrap of a node with no peers
    // yet ("No known peers"): normal for a lone node, so only its errors show by
    // default. RUST_LOG overrides all of it.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Installs the Ctrl-C / SIGTERM handlers now (before the node announces itself
/// in `api.json`, so a signal sent right after start is never lost to the default
/// action) and returns a future that completes on the first signal.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
        let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
            tracing::info!("shutting down");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
    }
}
