//! The real `agora` binary against a real node: the quick start, and every kind of
//! bad input leaving the node exactly as it was.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_tests::{CommandResult, TestNode, agora_bin, files_under, manifest, noise, read_tree, write_package};
use serde_json::Value;

/// How long a second `agora node` on a data dir in use may take to give up.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(20);

fn package_count(node: &TestNode) -> (u64, u64) {
    let status = node.json(&["status"]);
    (status["registry"]["packages"].as_u64().unwrap(), status["registry"]["versions"].as_u64().unwrap())
}

fn names(results: &Value) -> Vec<String> {
    results["hits"].as_array().unwrap().iter().map(|hit| hit["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn quick_start_new_publish_search_info_fetch_yank() {
    let node = TestNode::start();
    let work = node.scratch();
    node.ok(&["new", "hello-agora"]);
    std::fs::write(work.join("hello-agora/data.bin"), (0..=255u8).cycle().take(300_000).collect::<Vec<u8>>()).unwrap();

    let published = node.json(&["publish", "hello-agora"]);
    assert_eq!(published["created"], true);
    let digest = published["manifest"]["manifest"]["artifact"]["digest"].as_str().unwrap().to_owned();

    // The archive is deterministic: packing again locally gives the digest the node signed.
    let dry = node.json(&["publish", "hello-agora", "--dry-run"]);
    assert_eq!(dry["digest"], digest.as_str());

    let results = node.json(&["search", "hello"]);
    assert_eq!(names(&results), ["hello-agora"]);
    let table = node.ok(&["search", "hello"]).stdout;
    assert!(table.starts_with("NAME") && table.contains("hello-agora  0.1.0"), "{table}");

    let info = node.json(&["info", "hello-agora"]);
    assert_eq!(info["manifest"]["manifest"]["version"], "0.1.0");
    assert_eq!(info["manifest"]["manifest"]["artifact"]["digest"], digest.as_str());
    let text = node.ok(&["info", "hello-agora@0.1.0"]).stdout;
    assert!(text.contains("sha256") && text.contains(&digest), "{text}");

    let fetched = node.json(&["fetch", "hello-agora", "-o", "fetched"]);
    assert_eq!(fetched["digest"], digest.as_str());
    assert_eq!(
        read_tree(&work.join("fetched")),
        read_tree(&work.join("hello-agora")),
        "fetched files differ from the published ones"
    );

    // Yank: gone from search, still inspectable and fetchable by exact version.
    assert!(node.ok(&["yank", "hello-agora@0.1.0"]).stdout.contains("Yanked"));
    assert!(names(&node.json(&["search", "hello"])).is_empty());
    let versions = node.json(&["versions", "hello-agora"]);
    assert_eq!(versions[0]["yanked"], true);
    node.ok(&["fetch", "hello-agora@0.1.0", "-o", "after-yank"]);
    let error = node.fails(&["fetch", "hello-agora", "-o", "nope"]);
    assert!(error.contains("yanked"), "{error}");
    assert!(node.ok(&["yank", "hello-agora@0.1.0", "--undo"]).stdout.contains("Unyanked"));
    assert_eq!(names(&node.json(&["search", "hello"])), ["hello-agora"]);
}

#[test]
fn versions_requirements_and_filters() {
    let node = TestNode::start();
    let work = node.scratch();
    for (version, body) in [("1.0.0", "one"), ("1.2.0", "two"), ("2.0.0", "three")] {
        let mut toml = manifest("multi", version, "a package with several versions");
        toml.push_str("keywords = [\"cli\", \"demo\"]\ncategories = [\"tools/cli\"]\n");
        write_package(&work.join(format!("multi-{version}")), &toml, &[("body.txt", body.as_bytes())]);
        node.ok(&["publish", &format!("multi-{version}")]);
    }
    write_package(&work.join("other"), &manifest("other", "0.1.0", "unrelated"), &[]);
    node.ok(&["publish", "other"]);

    let fetched = node.json(&["fetch", "multi@^1", "-o", "req"]);
    assert_eq!(fetched["version"], "1.2.0");
    assert_eq!(std::fs::read_to_string(work.join("req/body.txt")).unwrap(), "two");
    assert_eq!(node.json(&["info", "multi"])["manifest"]["manifest"]["version"], "2.0.0");
    assert_eq!(node.json(&["versions", "multi"]).as_array().unwrap().len(), 3);

    assert_eq!(names(&node.json(&["search", "", "--category", "tools"])), ["multi"]);
    assert_eq!(names(&node.json(&["search", "", "--tag", "cli", "--tag", "demo"])), ["multi"]);
    assert!(names(&node.json(&["search", "", "--tag", "nope"])).is_empty());
    let page = node.json(&["search", "", "--limit", "1"]);
    assert_eq!((page["total"].as_u64(), page["hits"].as_array().unwrap().len()), (Some(2), 1));
    let error = node.fails(&["search", "x", "--limit", "1000"]);
    assert!(error.contains("limit must be between 1 and 100"), "{error}");
}

#[test]
fn malformed_or_missing_manifests_are_refused_and_change_nothing() {
    let node = TestNode::start();
    let work = node.scratch();

    std::fs::create_dir_all(work.join("empty")).unwrap();
    let error = node.fails(&["publish", "empty"]);
    assert!(error.contains("agora.toml") && error.contains("agora new"), "{error}");

    write_package(&work.join("broken"), "[package]\nname = \"broken\"\nversion = \n", &[]);
    let error = node.fails(&["publish", "broken"]);
    assert!(error.contains("line 3"), "toml errors point at the line: {error}");

    write_package(&work.join("typo"), &format!("{}licence = \"MIT\"\n", manifest("typo", "1.0.0", "x")), &[]);
    let error = node.fails(&["publish", "typo"]);
    assert!(error.contains("licence"), "{error}");

    write_package(&work.join("badname"), &manifest("Bad Name", "1.0.0", "x"), &[]);
    let error = node.fails(&["publish", "badname"]);
    assert!(error.contains("invalid package name"), "{error}");

    write_package(&work.join("badversion"), &manifest("fine", "1.0", "x"), &[]);
    let error = node.fails(&["publish", "badversion"]);
    assert!(error.contains("1.0"), "{error}");

    let error = node.fails(&["info", "Not-Valid"]);
    assert!(error.contains("invalid package name"), "{error}");
    let error = node.fails(&["info", "missing"]);
    assert!(error.contains("package `missing` not found"), "{error}");
    let error = node.fails(&["new", "Bad Dir"]);
    assert!(error.contains("--name"), "{error}");

    assert_eq!(package_count(&node), (0, 0));
}

#[test]
fn a_second_publish_with_other_content_is_refused() {
    let node = TestNode::start();
    let work = node.scratch();
    write_package(&work.join("pkg"), &manifest("immutable", "1.0.0", "first"), &[("a.txt", b"original")]);
    node.ok(&["publish", "pkg"]);
    // Same content again: a no-op, not an error.
    assert!(node.ok(&["publish", "pkg"]).stdout.contains("nothing changed"));
    std::fs::write(work.join("pkg/a.txt"), b"changed").unwrap();
    let error = node.fails(&["publish", "pkg"]);
    assert!(error.contains("already published") && error.contains("immutable"), "{error}");
    node.ok(&["fetch", "immutable@1.0.0", "-o", "out"]);
    assert_eq!(std::fs::read(work.join("out/a.txt")).unwrap(), b"original");
    assert_eq!(package_count(&node), (1, 1));
}

#[test]
fn another_key_cannot_publish_or_yank_an_owned_name() {
    let node = TestNode::start();
    let work = node.scratch();
    write_package(&work.join("v1"), &manifest("owned", "1.0.0", "mine"), &[]);
    node.ok(&["publish", "v1"]);
    node.ok(&["key", "export", "-o", "owner.key"]);
    let owner = node.ok(&["key", "show"]).stdout.trim().to_owned();

    std::fs::write(work.join("intruder.key"), format!("{}\n", "7".repeat(64))).unwrap();
    let intruder = node.json(&["key", "import", "intruder.key", "--force"])["public_key"].as_str().unwrap().to_owned();
    assert_ne!(intruder, owner);

    let error = node.fails(&["yank", "owned@1.0.0"]);
    assert!(error.contains("is owned by key") && error.contains(&owner), "{error}");
    write_package(&work.join("v2"), &manifest("owned", "1.1.0", "stolen"), &[]);
    let error = node.fails(&["publish", "v2"]);
    assert!(error.contains("is owned by key"), "{error}");
    let versions = node.json(&["versions", "owned"]);
    assert_eq!(versions.as_array().unwrap().len(), 1);
    assert_eq!(versions[0]["yanked"], false);

    // The owner's key, imported back, works again.
    node.ok(&["key", "import", "owner.key"]);
    node.ok(&["yank", "owned@1.0.0"]);
    node.ok(&["publish", "v2"]);
}

#[test]
fn an_artifact_over_the_size_limit_is_refused() {
    let node = TestNode::start_with(&["--max-artifact-size", "4096"]);
    let work = node.scratch();
    // Incompressible bytes, so the archive really is over the limit.
    let noise = noise(50_000, 0x9e37_79b9_7f4a_7c15);
    write_package(&work.join("big"), &manifest("big", "1.0.0", "too big"), &[("noise.bin", &noise)]);
    let error = node.fails(&["publish", "big"]);
    assert!(error.contains("over the limit of 4096 bytes"), "{error}");
    assert_eq!(package_count(&node), (0, 0));
    let leftovers = std::fs::read_dir(node.data_dir().join("tmp/uploads")).map(|dir| dir.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "upload temp files left behind");
}

#[test]
fn an_artifact_corrupted_on_disk_is_never_served() {
    let node = TestNode::start();
    let work = node.scratch();
    write_package(&work.join("pkg"), &manifest("fragile", "1.0.0", "x"), &[("a.txt", b"payload")]);
    let digest =
        node.json(&["publish", "pkg"])["manifest"]["manifest"]["artifact"]["digest"].as_str().unwrap().to_owned();
    let path = node.data_dir().join("store/artifacts/sha256").join(&digest[..2]).join(&digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let error = node.fails(&["fetch", "fragile", "-o", "out"]);
    assert!(error.contains("corrupted"), "{error}");
    assert!(!work.join("out").exists(), "a failed fetch left a directory behind");
    let leftovers: Vec<_> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("pkg")], "a failed fetch left files behind");
}

#[test]
fn the_http_api_refuses_bad_requests_with_json_errors() {
    let node = TestNode::start();
    let http = reqwest::blocking::Client::new();
    let error_code = |response: reqwest::blocking::Response, status: u16| -> String {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().expect("error bodies are JSON");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        body["error"]["code"].as_str().unwrap().to_owned()
    };

    let response = http.post(node.url("/v1/packages")).body(vec![1, 2, 3]).send().unwrap();
    assert_eq!(error_code(response, 401), "unauthorized");
    let response = http.post(node.url("/v1/packages")).bearer_auth("wrong").body(vec![1, 2, 3]).send().unwrap();
    assert_eq!(error_code(response, 401), "unauthorized");
    let response = http.post(node.url("/v1/key/export")).send().unwrap();
    assert_eq!(error_code(response, 401), "unauthorized");

    let token = node.token();
    let response =
        http.post(node.url("/v1/packages")).bearer_auth(&token).body(b"not a tarball".to_vec()).send().unwrap();
    assert_eq!(error_code(response, 400), "invalid_archive");
    let response = http.post(node.url("/v1/packages")).bearer_auth(&token).send().unwrap();
    assert_eq!(error_code(response, 400), "bad_request");
    let response = http
        .post(node.url("/v1/packages/demo/1.0.0/yank"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"yanked\": ")
        .send()
        .unwrap();
    assert_eq!(error_code(response, 400), "bad_request");
    let response = http
        .post(node.url("/v1/key/import"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "secret_key": "xyz" }))
        .send()
        .unwrap();
    assert_eq!(error_code(response, 400), "bad_request");

    assert_eq!(error_code(http.get(node.url("/v1/packages/Bad_Name")).send().unwrap(), 400), "bad_request");
    assert_eq!(error_code(http.get(node.url("/v1/packages/demo/not-a-version")).send().unwrap(), 400), "bad_request");
    assert_eq!(error_code(http.get(node.url("/v1/packages/absent")).send().unwrap(), 404), "not_found");
    assert_eq!(error_code(http.get(node.url("/v1/search?limit=1000")).send().unwrap(), 400), "invalid");
    assert_eq!(error_code(http.get(node.url("/v1/search?limit=abc")).send().unwrap(), 400), "bad_request");
    assert_eq!(error_code(http.get(node.url("/v1/nope")).send().unwrap(), 404), "not_found");

    assert_eq!(package_count(&node), (0, 0));
    // The key did not change either.
    let key: Value = http.get(node.url("/v1/key")).send().unwrap().json().unwrap();
    assert_eq!(key["public_key"].as_str().unwrap(), node.ok(&["key", "show"]).stdout.trim());
}

#[test]
fn without_a_node_the_cli_says_how_to_start_one() {
    let node = TestNode::start();
    let mut stopped = node;
    assert!(stopped.stop(), "the node exits cleanly on SIGINT:\n{}", stopped.log());
    assert!(!stopped.data_dir().join("api.json").exists(), "a stopped node removes its address record");
    // Reserve a free port and release it so nothing is listening there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let api = format!("127.0.0.1:{port}");
    let error = stopped.fails(&["--api", &api, "search", "x"]);
    assert!(error.contains(&format!("no node is listening on {api}")) && error.contains("agora node"), "{error}");
}

#[test]
fn a_restarted_node_keeps_its_keys_and_catalog() {
    let mut node = TestNode::start();
    let work = node.scratch();
    write_package(&work.join("pkg"), &manifest("durable", "1.0.0", "survives restarts"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    let before = node.json(&["status"]);
    assert!(node.stop());
    node.launch(&[]);
    let after = node.json(&["status"]);
    assert_eq!(after["publisher"], before["publisher"]);
    assert_eq!(after["identity"], before["identity"]);
    assert_eq!(names(&node.json(&["search", "durable"])), ["durable"]);
    node.ok(&["fetch", "durable", "-o", "out"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["keys/publisher.key", "keys/identity.key", "api-token"] {
            let mode = std::fs::metadata(node.data_dir().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file} must be owner-only");
        }
    }
}

#[test]
fn two_nodes_from_the_command_line() {
    let first = TestNode::start();
    let status = first.json(&["status"]);
    let address = status["network"]["listen_addrs"][0].as_str().unwrap().to_owned();
    assert!(address.starts_with("/ip4/127.0.0.1/tcp/") && address.contains("/p2p/"), "{address}");
    let second = TestNode::start_with(&["--bootstrap", &address]);

    let work = first.scratch();
    write_package(
        &work.join("shared"),
        &manifest("shared-pkg", "1.0.0", "published on the first node"),
        &[("a.txt", b"hi")],
    );
    first.ok(&["publish", "shared"]);

    let found = agora_tests::wait_until(std::time::Duration::from_secs(30), || {
        second.run(&["search", "shared", "--json"]).stdout.contains("shared-pkg")
    });
    assert!(found, "the second node never saw the package:\n{}", second.log());
    let info = second.json(&["info", "shared-pkg"]);
    assert_eq!(info["manifest"]["manifest"]["description"], "published on the first node");
    second.ok(&["fetch", "shared-pkg", "-o", "got"]);
    assert_eq!(std::fs::read(second.scratch().join("got/a.txt")).unwrap(), b"hi");

    let peers = second.json(&["peers"]);
    let first_id = status["network"]["peer_id"].as_str().unwrap();
    assert!(peers.as_array().unwrap().iter().any(|p| p["peer_id"] == first_id && p["connected"] == true), "{peers}");
    let table = second.ok(&["status"]).stdout;
    assert!(table.contains("peer id:") && table.contains("1 connected (1 direct, 0 relayed"), "{table}");

    // On a single-host network (every listen address on loopback) the listen
    // addresses are the external ones, and the DHT serves; nothing is relayed.
    let network = &status["network"];
    assert_eq!(network["reachability"], "public", "{network}");
    assert_eq!(network["dht_mode"], "server", "{network}");
    assert_eq!(network["external_addrs"], network["listen_addrs"], "{network}");
    let to_first = peers.as_array().unwrap().iter().find(|p| p["peer_id"] == first_id).unwrap();
    let kinds: Vec<&str> =
        to_first["connections"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["direct"], "{to_first}");
    assert!(table.contains("reachability:") && table.contains("public"), "{table}");
}

#[test]
fn a_proxy_in_the_environment_does_not_take_the_calls_to_the_local_node() {
    let node = TestNode::start();
    let work = node.scratch();
    write_package(&work.join("pkg"), &manifest("proxied", "1.0.0", "x"), &[("a.txt", b"direct")]);
    node.ok(&["publish", "pkg"]);
    // A proxy that is not there: a command that honoured it could not reach the node.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = format!("http://127.0.0.1:{port}");
    let run = |args: &[&str]| {
        let mut command = node.agora();
        for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            command.env(name, &proxy);
        }
        let result = agora_tests::CommandResult::from(
            command.env_remove("NO_PROXY").env_remove("no_proxy").args(args).output().unwrap(),
        );
        assert!(result.success, "`agora {}` with HTTP_PROXY={proxy} failed:\n{result}", args.join(" "));
        result.stdout
    };
    assert!(run(&["search", "proxied"]).contains("proxied"));
    assert!(run(&["info", "proxied"]).contains("proxied 1.0.0"));
    assert!(run(&["status"]).contains("packages:      1"));
    run(&["fetch", "proxied", "-o", "out"]);
    assert_eq!(std::fs::read(work.join("out/a.txt")).unwrap(), b"direct");
}

#[test]
fn a_package_whose_only_provider_is_gone_is_unavailable_not_an_internal_error() {
    let mut first = TestNode::start();
    let address = first.listen_address();
    let second = TestNode::start_with(&["--bootstrap", &address]);
    let work = first.scratch();
    write_package(&work.join("pkg"), &manifest("stranded", "1.0.0", "held only by the first node"), &[("a.txt", b"x")]);
    first.ok(&["publish", "pkg"]);
    let found = agora_tests::wait_until(std::time::Duration::from_secs(30), || {
        second.run(&["search", "stranded", "--json"]).stdout.contains("stranded")
    });
    assert!(found, "the second node never saw the package:\n{}", second.log());
    assert!(first.stop(), "the first node exits cleanly on SIGINT:\n{}", first.log());

    // Whether the second node still has the stopped node's provider record decides
    // which of the two "no provider" reasons it gives; both mean the same to a user.
    let says_no_provider = |message: &str| {
        message.starts_with("fetching stranded@1.0.0: ")
            && (message.contains("no provider is left") || message.contains("no reachable provider"))
    };
    let response = reqwest::blocking::get(second.url("/v1/packages/stranded/1.0.0/artifact")).unwrap();
    assert_eq!(response.status().as_u16(), 503, "a provider that cannot be reached is a 503");
    let body: Value = response.json().expect("error bodies are JSON");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(says_no_provider(message), "{message}");

    let error = second.fails(&["fetch", "stranded", "-o", "out"]);
    let line =
        error.lines().find(|line| line.starts_with("error: ")).unwrap_or_else(|| panic!("no error line: {error}"));
    assert!(says_no_provider(line.trim_start_matches("error: ")), "{error}");
    assert!(!line.contains("internal"), "{error}");
    let leftovers: Vec<_> = std::fs::read_dir(second.scratch()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "a failed fetch left {leftovers:?} behind");
}

/// `agora status`'s identity of a running node.
fn identity(node: &TestNode) -> String {
    node.json(&["status"])["identity"].as_str().unwrap().to_owned()
}

/// The status code and `error.code` of an error reply, checking that its body is
/// the documented JSON.
fn error_code(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().unwrap();
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a {status} reply is not JSON ({e}; content-type {content_type:?}): {text:?}"));
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{status}: {body}");
    assert_eq!(content_type.as_deref(), Some("application/json"), "{status}: {body}");
    (status, body["error"]["code"].as_str().unwrap_or_else(|| panic!("{status} without a code: {body}")).to_owned())
}

#[test]
fn a_second_node_on_the_same_data_dir_refuses_to_start_and_changes_nothing() {
    let node = TestNode::start();
    let dir = node.data_dir();
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap();
    let (record, token, before) = (read("api.json"), read("api-token"), identity(&node));

    let another = node.run_another_node(REFUSAL_DEADLINE).expect("a second node on the same data dir kept running");
    assert!(!another.success, "a second node on the same data dir started:\n{another}");
    let expected = format!(
        "error: another agora node (pid {}) is using the data dir {}; stop it first",
        node.pid().unwrap(),
        dir.display()
    );
    assert!(another.stderr.contains(&expected), "expected {expected:?} in:\n{}", another.stderr);

    // The first node is untouched: its record, token and store, and it still answers.
    assert_eq!(read("api.json"), record, "api.json was rewritten");
    assert_eq!(read("api-token"), token, "api-token was rewritten");
    assert_eq!(identity(&node), before);
    write_package(&node.scratch().join("pkg"), &manifest("after-refusal", "1.0.0", "x"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    node.ok(&["fetch", "after-refusal", "-o", "out"]);
}

#[test]
fn a_node_killed_with_sigkill_does_not_leave_its_data_dir_locked() {
    let mut node = TestNode::start();
    write_package(&node.scratch().join("pkg"), &manifest("survivor", "1.0.0", "x"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    node.kill();

    node.launch(&[]);
    assert_eq!(names(&node.json(&["search", "survivor"])), ["survivor"]);
    // The new node holds the data dir in turn.
    let another = node.run_another_node(REFUSAL_DEADLINE).expect("a second node on the same data dir kept running");
    let expected = format!("another agora node (pid {}) is using the data dir", node.pid().unwrap());
    assert!(!another.success && another.stderr.contains(&expected), "expected {expected:?} in:\n{another}");
}

#[test]
fn stale_uploads_are_removed_when_a_node_starts() {
    let mut node = TestNode::unstarted();
    let uploads = node.data_dir().join("tmp/uploads");
    std::fs::create_dir_all(uploads.join("nested")).unwrap();
    std::fs::write(uploads.join(".tmpCRASHED"), b"half an upload").unwrap();
    std::fs::write(uploads.join("nested/leftover"), b"x").unwrap();
    node.launch(&[]);
    assert_eq!(files_under(&uploads), Vec::<std::path::PathBuf>::new(), "stale uploads survived the start");
    write_package(&node.scratch().join("pkg"), &manifest("fresh", "1.0.0", "x"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
}

#[test]
fn the_cli_talks_only_to_the_node_of_its_data_dir() {
    let a = TestNode::start();
    write_package(&a.scratch().join("pkg"), &manifest("victim", "1.0.0", "on node a"), &[("a.txt", b"x")]);
    a.ok(&["publish", "pkg"]);
    let mut b = TestNode::start();
    let b_identity = identity(&b);
    assert!(b.stop());
    let not_running = format!("no node is running for the data dir {}", b.data_dir().display());

    // No record: not whatever answers on the default port.
    let error = b.fails(&["status"]);
    assert!(error.contains(&not_running), "{error}");

    // A stale record pointing at node A's port (what a killed node leaves behind
    // when another node later gets its port).
    let record = serde_json::json!({ "api": a.api(), "pid": 1, "identity": b_identity });
    std::fs::write(b.data_dir().join("api.json"), record.to_string()).unwrap();
    let error = b.fails(&["status"]);
    assert!(error.contains(&not_running) && error.contains(&b_identity), "{error}");
    let error = b.fails(&["yank", "victim@1.0.0"]);
    assert!(error.contains(&not_running), "{error}");
    let error = b.fails(&["--api", &a.api().to_string(), "search", "victim"]);
    assert!(error.contains(&not_running), "--api does not skip the check against the data dir's record: {error}");
    assert_eq!(a.json(&["versions", "victim"])[0]["yanked"], false);

    // A data dir without a record and an explicit --api: reads go to that address.
    let elsewhere = tempfile::tempdir().unwrap();
    let status = CommandResult::from(
        std::process::Command::new(agora_bin())
            .arg("--data-dir")
            .arg(elsewhere.path())
            .args(["--api", &a.api().to_string(), "status", "--json"])
            .env_remove("AGORA_API")
            .output()
            .unwrap(),
    );
    assert!(status.success, "{status}");
    assert_eq!(serde_json::from_str::<Value>(&status.stdout).unwrap()["identity"], identity(&a).as_str());
}

#[test]
fn the_cli_never_sends_its_token_to_a_node_it_could_not_verify() {
    let mut b = TestNode::start();
    let b_identity = identity(&b);
    write_package(&b.scratch().join("pkg"), &manifest("mine", "1.0.0", "x"), &[("a.txt", b"x")]);
    b.ok(&["publish", "pkg"]);
    assert!(b.stop());
    let token = b.token();
    let someone_else = agora::SecretKey::generate().public_key().to_hex();
    // A listener that claims another identity, then one that claims B's own
    // (anyone can copy a public key) without holding B's identity key.
    for claimed in [someone_else, b_identity.clone()] {
        let listener = Eavesdropper::start(&claimed);
        let record = serde_json::json!({ "api": listener.addr, "pid": 1, "identity": b_identity });
        std::fs::write(b.data_dir().join("api.json"), record.to_string()).unwrap();
        let not_running = format!("no node is running for the data dir {}", b.data_dir().display());
        for args in [
            &["yank", "mine@1.0.0"][..],
            &["pin", "mine@1.0.0"],
            &["fetch", "mine@1.0.0", "-o", "out"],
            &["publish", "pkg"],
            &["key", "export", "-o", "stolen.key"],
            &["status"],
        ] {
            let error = b.fails(args);
            let heard = listener.heard();
            assert!(
                !heard.contains(&token),
                "`agora {}` sent the token to a listener claiming {claimed}:\n{heard}",
                args.join(" ")
            );
            assert!(error.contains(&not_running), "`agora {}` claiming {claimed}: {error}", args.join(" "));
        }
        let heard = listener.heard();
        assert!(heard.contains("GET /v1/identity?challenge="), "the CLI never asked who answers: {heard}");
    }
}

#[test]
fn every_post_needs_the_token_including_fetch() {
    let node = TestNode::start();
    write_package(&node.scratch().join("pkg"), &manifest("held", "1.0.0", "x"), &[("a.txt", b"x")]);
    node.ok(&["publish", "pkg"]);
    let http = reqwest::blocking::Client::new();
    for path in [
        "/v1/packages",
        "/v1/packages/held/1.0.0/fetch",
        "/v1/packages/held/1.0.0/yank",
        "/v1/packages/held/1.0.0/pin",
        "/v1/key/export",
        "/v1/key/import",
        "/v1/no-such-route",
    ] {
        let response = http.post(node.url(path)).json(&serde_json::json!({})).send().unwrap();
        assert_eq!(error_code(response), (401, "unauthorized".to_owned()), "POST {path} without the token");
    }
    let response = http.post(node.url("/v1/packages/held/1.0.0/fetch")).bearer_auth(node.token()).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let lines = response.text().unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(last["progress"]["state"]["phase"], "done", "{lines}");
    assert!(last.get("error").is_none(), "{lines}");
}

#[test]
fn the_http_api_answers_only_requests_for_its_own_address() {
    let node = TestNode::start();
    let port = node.api().port();
    let http = reqwest::blocking::Client::new();
    let with_host = |host: &str| http.get(node.url("/v1/status")).header("host", host).send().unwrap();
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        "127.0.0.1".to_owned(),
        "".to_owned(),
    ] {
        let (status, code) = error_code(with_host(&host));
        assert_eq!((status, code.as_str()), (421, "bad_host"), "Host: {host:?}");
    }
    for host in
        [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("LocalHost:{port}"), format!("[::1]:{port}")]
    {
        let response = with_host(&host);
        assert_eq!(response.status().as_u16(), 200, "Host: {host}");
        assert_eq!(response.json::<Value>().unwrap()["api"], node.api().to_string());
    }
    // A request with the token but the wrong Host is refused too (DNS rebinding).
    let response = http
        .post(node.url("/v1/packages/x/1.0.0/yank"))
        .header("host", format!("evil.example:{port}"))
        .bearer_auth(node.token())
        .json(&serde_json::json!({ "yanked": true }))
        .send()
        .unwrap();
    assert_eq!(error_code(response), (421, "bad_host".to_owned()));

    // No CORS: no response lets another origin read it, and a preflight is refused.
    let response = http.get(node.url("/v1/status")).header("origin", "http://evil.example").send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
    let preflight = http
        .request(reqwest::Method::OPTIONS, node.url("/v1/packages"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .unwrap();
    assert!(!preflight.status().is_success(), "a preflight got {}", preflight.status());
    let cors: Vec<_> =
        preflight.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).cloned().collect();
    assert!(cors.is_empty(), "a preflight got CORS headers {cors:?}");
    let _ = error_code(preflight);
}

#[test]
fn every_error_status_has_a_json_body() {
    let node = TestNode::start();
    let http = reqwest::blocking::Client::new();
    let response = http.get(node.url("/v1/packages")).send().unwrap();
    let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(error_code(response), (405, "method_not_allowed".to_owned()));
    assert!(allow.is_some_and(|allow| allow.contains("POST")), "405 keeps its Allow header");
    let response = http.put(node.url("/v1/status")).bearer_auth(node.token()).send().unwrap();
    assert_eq!(error_code(response), (405, "method_not_allowed".to_owned()));
    // axum's own rejections: a path parameter that is not UTF-8, a JSON body
    // without its content type.
    assert_eq!(error_code(http.get(node.url("/v1/packages/%FF")).send().unwrap()), (400, "bad_request".to_owned()));
    let response = http
        .post(node.url("/v1/packages/x/1.0.0/yank"))
        .bearer_auth(node.token())
        .body("{\"yanked\": true}")
        .send()
        .unwrap();
    assert_eq!(error_code(response), (400, "bad_request".to_owned()));
    assert_eq!(error_code(http.get(node.url("/v1/nope")).send().unwrap()), (404, "not_found".to_owned()));
}

/// A TCP listener that answers every HTTP request with 200 and the identity it
/// claims (in the `x-agora-identity` header and the body), and keeps every byte
/// it was sent.
struct Eavesdropper {
    addr: SocketAddr,
    heard: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Eavesdropper {
    fn start(claimed: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let body = serde_json::json!({ "identity": claimed }).to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-agora-identity: {claimed}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let thread = std::thread::spawn({
            let (heard, done) = (heard.clone(), done.clone());
            move || {
                for stream in listener.incoming() {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let request = read_request(&mut stream);
                    heard.lock().unwrap().extend_from_slice(&request);
                    let _ = stream.write_all(reply.as_bytes());
                }
            }
        });
        Self { addr, heard, done, thread: Some(thread) }
    }

    fn heard(&self) -> String {
        String::from_utf8_lossy(&self.heard.lock().unwrap()).into_owned()
    }
}

impl Drop for Eavesdropper {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One HTTP/1.1 request: its head and a `content-length` body, or what arrived
/// before the client stopped sending.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut data = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return data;
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return data,
            Ok(read) => data.extend_from_slice(&buffer[..read]),
        }
    }
}

#[test]
fn a_bootstrap_address_may_name_its_host() {
    let first = TestNode::start();
    let address = first.listen_address();
    let named = address.replacen("/ip4/127.0.0.1/", "/dns4/localhost/", 1);
    assert_ne!(named, address);
    let second = TestNode::start_with(&["--bootstrap", &named]);
    let first_id = first.peer_id();
    let met = agora_tests::wait_until(std::time::Duration::from_secs(30), || {
        second.network()["connected_peers"].to_string().contains(&first_id)
    });
    assert!(met, "the DNS bootstrap address was not dialled:\n{}", second.log());
}
