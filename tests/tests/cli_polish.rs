//! Issue 13, CLI polish found on the way: `info` on a package whose every version is
//! yanked shows it (marked) as cargo does, a bad version requirement is called one,
//! and `agora peers` shows each peer's score and why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agora_tests::{TestNode, manifest, wait_until, write_package};

#[test]
fn info_shows_a_package_whose_every_version_is_yanked() {
    let node = TestNode::start();
    write_package(&node.scratch().join("pkg"), &manifest("retired", "1.0.0", "gone"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    node.ok(&["yank", "retired@1.0.0"]);
    let info = node.ok(&["info", "retired"]).stdout;
    assert!(info.lines().next().unwrap_or_default().contains("retired 1.0.0 (yanked)"), "{info}");
    // Fetching still wants an explicit version, as before.
    let error = node.fails(&["fetch", "retired", "-o", "out"]);
    assert!(error.contains("every version of `retired` is yanked"), "{error}");
}

#[test]
fn a_bad_requirement_is_called_a_bad_requirement() {
    let node = TestNode::start();
    let error = node.fails(&["fetch", "anything@~>1"]);
    assert!(error.contains("invalid version requirement `~>1`"), "{error}");
    assert!(error.contains("^1.2"), "the message shows what a requirement looks like: {error}");
}

#[test]
fn peers_shows_score_and_reason() {
    let first = TestNode::start();
    let address = first.listen_address();
    let second = TestNode::start_with(&["--bootstrap", &address]);
    let listed = wait_until(Duration::from_secs(30), || second.run(&["peers"]).stdout.contains("connected"));
    assert!(listed, "the first node never showed as connected:\n{}", second.run(&["peers"]));
    let table = second.ok(&["peers"]).stdout;
    let header = table.lines().next().unwrap_or_default();
    for column in ["PEER", "STATE", "SCORE", "STRIKES", "WHY"] {
        assert!(header.contains(column), "{table}");
    }
    drop(first);
}

#[test]
fn key_import_refuses_to_strand_owned_packages_and_never_prints_the_secret() {
    let node = TestNode::start();
    write_package(&node.scratch().join("pkg"), &manifest("anchored", "1.0.0", "x"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    let secret = "7".repeat(64);
    std::fs::write(node.scratch().join("new.key"), &secret).unwrap();
    let error = node.fails(&["key", "import", "new.key"]);
    assert!(error.contains("--force") && error.contains("anchored"), "{error}");
    assert!(!error.contains(&secret), "the secret was printed");
    let imported = node.ok(&["key", "import", "new.key", "--force"]).stdout;
    assert!(!imported.contains(&secret), "the secret was printed: {imported}");
    // A malformed secret is refused without being echoed.
    std::fs::write(node.scratch().join("bad.key"), format!("{}zz", "7".repeat(62))).unwrap();
    let error = node.fails(&["key", "import", "bad.key"]);
    assert!(!error.contains(&"7".repeat(20)), "a malformed secret was echoed: {error}");
}

#[test]
fn json_errors_are_json_and_exit_codes_are_documented() {
    let node = TestNode::start();
    let result = node.run(&["--json", "info", "absent"]);
    assert_eq!(result.code, Some(1), "a failure exits with 1");
    let body: serde_json::Value = serde_json::from_str(result.stderr.trim())
        .unwrap_or_else(|error| panic!("`--json` printed a non-JSON error ({error}): {}", result.stderr));
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("absent"), "{body}");
    // An error that is not the node's has a code too.
    let body: serde_json::Value =
        serde_json::from_str(node.run(&["--json", "info", "Bad_Name"]).stderr.trim()).expect("JSON");
    assert_eq!(body["error"]["code"], "failed", "{body}");
    // Usage errors exit with 2.
    assert_eq!(node.run(&["info"]).code, Some(2));
    assert_eq!(node.run(&["no-such-command"]).code, Some(2));
}

/// A lone node (no peers, default log level) logs no warnings for being alone,
/// and its publish log line carries words, not Debug dumps.
#[test]
fn a_lone_node_publishes_without_warnings() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let log = std::fs::File::create(root.path().join("node.log")).unwrap();
    let mut node = std::process::Command::new(agora_tests::agora_bin())
        .args(["node", "--api", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(&data)
        .env_remove("RUST_LOG")
        .env_remove("AGORA_API")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || data.join("api.json").exists()), "the node did not start");
    let agora = |args: &[&str]| {
        let output = std::process::Command::new(agora_tests::agora_bin())
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .current_dir(root.path())
            .env_remove("AGORA_API")
            .output()
            .unwrap();
        assert!(output.status.success(), "agora {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    agora(&["new", "alone"]);
    agora(&["publish", "alone"]);
    let logged = || std::fs::read_to_string(root.path().join("node.log")).unwrap_or_default();
    assert!(wait_until(Duration::from_secs(30), || logged().contains("published to the network")), "{}", logged());
    // Alone for a while: libp2p's automatic bootstrap has run (it used to warn
    // "No known peers" within the first second).
    let uptime = || {
        let output = std::process::Command::new(agora_tests::agora_bin())
            .arg("--data-dir")
            .arg(&data)
            .args(["status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .and_then(|status| status["uptime_secs"].as_u64())
    };
    assert!(wait_until(Duration::from_secs(30), || uptime().is_some_and(|secs| secs >= 2)));
    let _ = std::process::Command::new("kill").args(["-INT", &node.id().to_string()]).status();
    let _ = node.wait();
    let text = logged();
    assert!(!text.contains("WARN"), "a lone node warned:\n{text}");
    let line = text.lines().find(|line| line.contains("published to the network")).unwrap_or_default();
    assert!(line.contains("announced=no peers yet") && !line.contains("Some("), "{line}");
}

#[test]
fn info_shows_what_a_package_unpacks_to() {
    let node = TestNode::start();
    write_package(&node.scratch().join("pkg"), &manifest("roomy", "1.0.0", "x"), &[("data.bin", &[1u8; 5000])]);
    node.ok(&["publish", "pkg"]);
    let info = node.ok(&["info", "roomy"]).stdout;
    let line = info.lines().find(|line| line.trim_start().starts_with("unpacked:")).unwrap_or_default();
    assert!(line.contains("KiB") || line.contains("bytes") || line.contains('B'), "{info}");
    let json = node.json(&["info", "roomy"]);
    let unpacked = json["manifest"]["manifest"]["unpacked_size"].as_u64().expect("unpacked_size in the JSON");
    assert!(unpacked >= 5000, "{json}");
}
