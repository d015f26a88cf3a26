//! The soak's real `agora node` processes: one slot per data dir, started,
//! stopped with SIGTERM, killed with SIGKILL and restarted on the same data dir,
//! always on 127.0.0.1 with OS-chosen ports. Only the processes started here are
//! ever signalled, by their pid. Also: the one-shot CLI runner with a deadline, a
//! minimal HTTP GET for the oracle's bulk checks, `/proc` sampling and the
//! bounded log scan.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// How long a node may take to write its `api.json`.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM.
pub(crate) const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// A node's log is cut back to nothing once it grows past this (after scanning).
const LOG_CAP_BYTES: u64 = 8 << 20;
/// Panic excerpts kept per node.
const MAX_PANICS_KEPT: usize = 10;

/// A running node process.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) api: SocketAddr,
    /// What another node passes to `--bootstrap`.
    pub(crate) listen: String,
}

impl Drop for Running {
    /// However the soak ends, no node it started outlives it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            end(&mut self.child);
        }
    }
}

/// One data dir and the log of every process that ran on it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) dir: PathBuf,
    log_offset: u64,
    /// `panicked` lines (with the line after), across incarnations.
    pub(crate) panics: Vec<String>,
    pub(crate) panic_count: usize,
}

impl Slot {
    pub(crate) fn new(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("data")).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, log_offset: 0, panics: Vec::new(), panic_count: 0 })
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    /// Starts `agora node` on this slot's data dir, joining through `bootstrap`,
    /// and waits (polling, up to [`START_DEADLINE`]) until it recorded its API
    /// address and reported its listen address.
    pub(crate) fn start(&self, agora: &Path, bootstrap: &[String]) -> anyhow::Result<Running> {
        let record = self.data_dir().join("api.json");
        // A killed node leaves its record behind; the new one writes its own.
        let _ = std::fs::remove_file(&record);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path())?;
        let mut command = Command::new(agora);
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["node", "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env_remove("AGORA_API")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for address in bootstrap {
            command.args(["--bootstrap", address]);
        }
        let mut child = command.spawn().with_context(|| format!("spawning {}", agora.display()))?;
        let pid = child.id();
        let deadline = Instant::now() + START_DEADLINE;
        let api = loop {
            if let Some(status) = child.try_wait()? {
                bail!("the node exited during start with {status}");
            }
            if let Some(api) = read_record(&record, pid) {
                break api;
            }
            if Instant::now() >= deadline {
                end(&mut child);
                bail!("the node wrote no api.json within {START_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let status = match http_get(api, "/v1/status") {
            Ok((200, body)) => body,
            Ok((code, body)) => {
                end(&mut child);
                bail!("GET /v1/status answered {code}: {}", String::from_utf8_lossy(&body));
            }
            Err(error) => {
                end(&mut child);
                return Err(error.context("GET /v1/status after start"));
            }
        };
        let status: serde_json::Value = serde_json::from_slice(&status).context("decoding the status")?;
        let Some(listen) = status.pointer("/network/listen_addrs/0").and_then(|a| a.as_str()) else {
            end(&mut child);
            bail!("the node's status lists no listen address: {status}");
        };
        Ok(Running { listen: listen.to_owned(), api, child })
    }

    /// Reads what the node logged since the last scan, counts `panicked` lines,
    /// and cuts the log back once it is over [`LOG_CAP_BYTES`] (the node appends,
    /// so it keeps writing at the new end).
    pub(crate) fn scan_log(&mut self) {
        let Ok(mut file) = std::fs::OpenOptions::new().read(true).write(true).open(self.log_path()) else { return };
        let Ok(length) = file.metadata().map(|m| m.len()) else { return };
        if length < self.log_offset {
            self.log_offset = 0;
        }
        if file.seek(SeekFrom::Start(self.log_offset)).is_err() {
            return;
        }
        let mut text = Vec::new();
        if file.read_to_end(&mut text).is_err() {
            return;
        }
        // Only whole lines; a partial last line is read again next time.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1);
        let lines: Vec<&str> = std::str::from_utf8(&text[..whole]).unwrap_or_default().lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if line.contains("panicked") {
                self.panic_count += 1;
                if self.panics.len() < MAX_PANICS_KEPT {
                    let next = lines.get(at + 1).copied().unwrap_or_default();
                    self.panics.push(format!("{line}\n{next}"));
                }
            }
        }
        self.log_offset += whole as u64;
        if self.log_offset > LOG_CAP_BYTES {
            let _ = file.set_len(0);
            let _ = writeln!(file, "[soak: log cut back after {} bytes had been scanned]", self.log_offset);
            self.log_offset = 0;
        }
    }
}

/// Sends SIGTERM to `running` and waits for it to exit; SIGKILL after
/// [`STOP_DEADLINE`]. Returns the exit status, or `None` when it had to be killed.
pub(crate) fn stop(running: &mut Running) -> Option<ExitStatus> {
    let pid = running.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + STOP_DEADLINE;
    loop {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            end(&mut running.child);
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL (what a crash or the OOM killer does), then reaps it.
pub(crate) fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What `/proc/<pid>` says about a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessSample {
    pub(crate) rss_kib: u64,
    pub(crate) fds: u64,
}

pub(crate) fn sample(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = crate::stats::status_kib(&status, "VmRSS:")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count() as u64);
    Some(ProcessSample { rss_kib, fds })
}

/// What a finished CLI command printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl CliOutput {
    /// The error the CLI reported (`--json`: `{"error": {"code", "message"}}`).
    pub(crate) fn error(&self) -> String {
        let parsed: Option<serde_json::Value> =
            self.stderr.lines().rev().find_map(|line| serde_json::from_str(line).ok());
        match parsed.as_ref().and_then(|v| v.pointer("/error/message")).and_then(|m| m.as_str()) {
            Some(message) => {
                let code = parsed.as_ref().and_then(|v| v.pointer("/error/code")).and_then(|c| c.as_str());
                format!("{}: {message}", code.unwrap_or("failed"))
            }
            None => self.stderr.lines().last().unwrap_or("no output").to_owned(),
        }
    }

    pub(crate) fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.stdout).map_err(|error| anyhow!("the CLI printed invalid JSON ({error})"))
    }
}

/// Runs `agora --data-dir DIR --json ARGS` in `scratch` (its output goes through
/// files there, so nothing blocks on a full pipe); kills it after `deadline`.
pub(crate) fn cli(
    agora: &Path,
    data_dir: &Path,
    args: &[&str],
    scratch: &Path,
    deadline: Duration,
) -> anyhow::Result<CliOutput> {
    let (out_path, err_path) = (scratch.join("stdout"), scratch.join("stderr"));
    let mut child = Command::new(agora)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .args(args)
        .current_dir(scratch)
        .env_remove("AGORA_API")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("spawning {}", agora.display()))?;
    let end_at = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= end_at {
            end(&mut child);
            bail!("`agora {}` did not finish within {deadline:?}", args.first().copied().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(CliOutput {
        success: status.success(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

/// `GET path` on a node's API (HTTP/1.1, `Connection: close`): status and body.
/// Only for JSON routes, which send a `Content-Length` (no chunked bodies).
pub(crate) fn http_get(api: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&api, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n")?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let head_end =
        reply.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header in the reply"))?;
    let head = String::from_utf8_lossy(&reply[..head_end]);
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow!("no status in `{}`", head.lines().next().unwrap_or_default()))?;
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        bail!("GET {path}: a chunked reply, which this client does not decode");
    }
    Ok((code, reply[head_end + 4..].to_vec()))
}

fn read_record(path: &Path, pid: u32) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    if value.get("pid")?.as_u64()? != u64::from(pid) {
        return None;
    }
    value.get("api")?.as_str()?.parse().ok()
}
