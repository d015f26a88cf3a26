//! Test harness for Agora's workspace-level integration tests.
//!
//! [`net::TestNet`] runs N in-process nodes on 127.0.0.1 in temp dirs, and
//! [`rogue::Rogue`] attacks them as a raw libp2p peer.
//! [`TestNode`] runs the real `agora` binary as a node on `127.0.0.1:0` in a
//! temporary data directory, finds its API address from the file the node writes,
//! runs CLI commands against it, and stops it on drop. Nothing here sleeps for a
//! fixed time: waits poll a condition until a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cargo;
pub mod net;
pub mod netns;
pub mod rogue;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a node may take to start.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// The `agora` binary under test: `$AGORA_BIN`, else the one cargo built next to
/// this test executable (`cargo test --workspace` builds it).
pub fn agora_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("AGORA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/agora
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile> directory");
    let bin = profile_dir.join(format!("agora{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: run the tests with `cargo test --workspace` (which builds the binary) or set AGORA_BIN",
        bin.display()
    );
    bin
}

/// Polls `condition` until it holds or `deadline` passes; returns whether it held.
pub fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `agora node` in a temp dir.
#[derive(Debug)]
pub struct TestNode {
    child: Option<Child>,
    root: tempfile::TempDir,
    api: SocketAddr,
    /// The network namespace the node and its CLI commands run in (see
    /// [`netns`]); `None`: the host's, listening on 127.0.0.1 only.
    netns: Option<String>,
}

impl TestNode {
    /// Starts a node with default settings.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a node with extra `agora node` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut node = Self::unstarted();
        node.launch(extra);
        node
    }

    /// A temp dir for a node that is not running yet (prepare its data dir, then
    /// [`TestNode::launch`] it).
    pub fn unstarted() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        Self { child: None, root, api: "127.0.0.1:0".parse().unwrap(), netns: None }
    }

    /// A node that will run in network namespace `netns`, listening on TCP and
    /// QUIC on all its interfaces; its CLI commands run there too (its API is on
    /// that namespace's loopback, so [`TestNode::url`] does not reach it).
    pub fn unstarted_in(netns: &str) -> Self {
        let mut node = Self::unstarted();
        node.netns = Some(netns.to_owned());
        node
    }

    /// The command that runs `agora`: in the node's namespace, if it has one.
    fn agora_command(&self) -> Command {
        match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(agora_bin());
                command
            }
            None => Command::new(agora_bin()),
        }
    }

    /// (Re)starts the node process on the same data dir.
    pub fn launch(&mut self, extra: &[&str]) {
        if let Some(status) = self.try_launch(extra, &[]) {
            panic!("agora node exited during start with {status}:\n{}", self.log());
        }
    }

    /// [`TestNode::launch`] with extra environment variables (such as a crash
    /// point), tolerating an exit during start: `Some(status)` when the process
    /// ended before it served its API, `None` once it serves.
    pub fn try_launch(&mut self, extra: &[&str], env: &[(&str, &str)]) -> Option<ExitStatus> {
        assert!(self.child.is_none(), "node already running");
        let record = self.data_dir().join("api.json");
        let _ = std::fs::remove_file(&record);
        let log = std::fs::File::create(self.root.path().join("node.log")).unwrap();
        // Listen addresses in `extra` replace the default ones.
        let listen: &[&str] = match self.netns {
            _ if extra.contains(&"--listen") => &[],
            None => &["--listen", "/ip4/127.0.0.1/tcp/0"],
            Some(_) => &["--listen", "/ip4/0.0.0.0/tcp/0", "--listen", "/ip4/0.0.0.0/udp/0/quic-v1"],
        };
        // `ip netns exec` execs the program: the child's pid is the node's.
        let child = self
            .agora_command()
            .arg("node")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--api", "127.0.0.1:0"])
            .args(listen)
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("AGORA_API")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning agora node");
        self.child = Some(child);
        let mut exited = None;
        let ready = wait_until(START_DEADLINE, || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                exited = Some(status);
                return true;
            }
            record.exists()
        });
        if let Some(status) = exited {
            self.child = None;
            return Some(status);
        }
        assert!(ready, "agora node did not start within {START_DEADLINE:?}:\n{}", self.log());
        let text = wait_for_json(&record);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        self.api = value["api"].as_str().unwrap().parse().unwrap();
        None
    }

    /// Waits for the node process to end by itself (it is not signalled) and
    /// returns its exit status; `None` if it still runs after `deadline`.
    pub fn wait_for_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let mut status = None;
        wait_until(deadline, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Stops the node with SIGINT (as Ctrl-C would) and waits for it to exit.
    /// Returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let mut status = None;
        wait_until(Duration::from_secs(20), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        match status {
            Some(status) => status.success(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        }
    }

    /// Kills the node with SIGKILL (no cleanup of any kind, as a crash or the OOM
    /// killer would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs another `agora node` on this node's data dir and waits for it to
    /// exit. `None` if it was still running after `deadline` (it is then killed).
    pub fn run_another_node(&self, deadline: Duration) -> Option<CommandResult> {
        let log = self.root.path().join("another-node.log");
        let mut child = Command::new(agora_bin())
            .arg("node")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .env("RUST_LOG", "info")
            .env_remove("AGORA_API")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning agora node");
        let mut status = None;
        wait_until(deadline, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        };
        Some(CommandResult {
            success: status.success(),
            code: status.code(),
            stdout: String::new(),
            stderr: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// The node's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// A scratch directory for the test, removed with the node.
    pub fn scratch(&self) -> PathBuf {
        let dir = self.root.path().join("scratch");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The API address.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// `http://<api><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// The API token the node issued.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("api-token")).unwrap().trim().to_owned()
    }

    /// The first address the node listens on, with `/p2p/<peer id>`: what another
    /// node passes to `--bootstrap`.
    pub fn listen_address(&self) -> String {
        self.network()["listen_addrs"][0].as_str().expect("the node listens").to_owned()
    }

    /// The body of `GET <path>` on the node's HTTP API (from inside its network
    /// namespace, if it has one), e.g. `/metrics`.
    pub fn get(&self, path: &str) -> String {
        let response = self.request("GET", path, &[], b"");
        assert_eq!(response.status, 200, "GET {path}: {}", response.body);
        response.body
    }

    /// One HTTP/1.1 request to the node's API (from inside its network
    /// namespace, if it has one): `headers` as `(name, value)`, `body` sent with
    /// its `Content-Length`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let request = || {
            use std::io::{Read as _, Write as _};
            let mut stream = std::net::TcpStream::connect(self.api).expect("connecting to the node's API");
            stream.set_read_timeout(Some(Duration::from_secs(60))).expect("read timeout");
            let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.api);
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            stream.write_all(head.as_bytes()).expect("sending the request");
            // The node may answer (and close) before reading all of a refused body.
            let _ = stream.write_all(body);
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response);
            response
        };
        let response = match &self.netns {
            Some(netns) => netns::within(netns, request),
            None => request(),
        };
        HttpResponse::parse(&response)
    }

    /// The `network` part of `agora status --json`.
    pub fn network(&self) -> serde_json::Value {
        self.json(&["status"])["network"].clone()
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> String {
        self.network()["peer_id"].as_str().expect("status has a peer id").to_owned()
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("node.log")).unwrap_or_default()
    }

    /// An `agora` command pointed at this node, run in the scratch directory.
    pub fn agora(&self) -> Command {
        let mut command = self.agora_command();
        command.arg("--data-dir").arg(self.data_dir()).current_dir(self.scratch()).env_remove("AGORA_API");
        command
    }

    /// Runs `agora <args>` against this node.
    pub fn run(&self, args: &[&str]) -> CommandResult {
        CommandResult::from(self.agora().args(args).output().expect("running agora"))
    }

    /// Runs `agora <args>` and panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> CommandResult {
        let result = self.run(args);
        assert!(result.success, "`agora {}` failed:\n{}\nnode log:\n{}", args.join(" "), result, self.log());
        result
    }

    /// Runs `agora <args> --json` successfully and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let result = self.ok(&all);
        serde_json::from_str(&result.stdout)
            .unwrap_or_else(|e| panic!("`agora {}` printed invalid JSON ({e}):\n{}", all.join(" "), result.stdout))
    }

    /// Runs `agora <args>`, expects failure, and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let result = self.run(args);
        assert!(!result.success, "`agora {}` should have failed but printed:\n{}", args.join(" "), result);
        assert_eq!(result.code, Some(1), "failures exit with code 1");
        result.stderr
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A raw HTTP response: status, headers (names lowercase), body as text.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code (0 if the response had no status line).
    pub status: u16,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, chunked encoding undone.
    pub body: String,
}

impl HttpResponse {
    fn parse(response: &[u8]) -> Self {
        let split = response.windows(4).position(|window| window == b"\r\n\r\n");
        let (head, raw_body) = match split {
            Some(at) => (&response[..at], &response[at + 4..]),
            None => (response, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok());
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
        let body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
        Self { status: status.unwrap_or(0), headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// A chunked body's content.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    while let Some(end) = body.windows(2).position(|window| window == b"\r\n") {
        let size = std::str::from_utf8(&body[..end]).ok().and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
        let rest = &body[end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                content.extend_from_slice(&rest[..size]);
                body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    content
}

/// What a finished command printed.
#[derive(Debug)]
pub struct CommandResult {
    /// Exit status was zero.
    pub success: bool,
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for CommandResult {
    fn from(output: Output) -> Self {
        Self {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for CommandResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Writes a package directory with the given `agora.toml` and files.
pub fn write_package(dir: &Path, manifest: &str, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("agora.toml"), manifest).unwrap();
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// A minimal valid `agora.toml`.
pub fn manifest(name: &str, version: &str, description: &str) -> String {
    format!("[package]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"{description}\"\n")
}

/// Every file under `dir` (relative path → bytes), sorted; `dir` must exist.
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    let mut out: Vec<_> = files_under(dir)
        .into_iter()
        .map(|path| (path.strip_prefix(dir).unwrap().to_owned(), std::fs::read(&path).unwrap()))
        .collect();
    out.sort();
    out
}

/// Every file under `dir`, at any depth (none when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// An endless xorshift64 sequence from `seed` (made odd, so never all zeros).
pub fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    let mut state = seed | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    })
}

/// `len` incompressible bytes (the low byte of each [`xorshift`] word), so an
/// archive of them is about as big as they are.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    xorshift(seed).take(len).map(|word| word as u8).collect()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn wait_for_json(path: &Path) -> String {
    // The node writes the record in one call; a reader may still see it empty.
    let mut text = String::new();
    wait_until(Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).is_ok()
    });
    text
}

/// A small tmpfs mounted at a directory for one test (a disk that fills up),
/// unmounted when dropped. Needs root, as CI has: without it the test fails
/// loudly rather than passing without having run.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `20m`) at `dir`.
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "this test needs to mount a tmpfs (run as root, as CI does): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir: dir.to_owned() }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a node still closing its files does not keep the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
