//! Issue 13, leaks and late refusals of the real `agora` binary: `fetch -o` into a
//! non-empty directory is refused before anything is downloaded, Ctrl-C during a
//! fetch leaves no temp file or staging directory beside `-o`, and an oversized
//! `agora publish` is refused with the node's limit instead of a broken upload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use agora_tests::{TestNode, manifest, noise, wait_until, write_package};

/// Files in `dir` whose names start with `.` (temp files, staging directories).
fn dot_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

#[test]
fn fetch_into_a_non_empty_directory_is_refused_before_downloading() {
    // The only provider is gone: a fetch that went to the network first would fail
    // on that, not on the destination.
    let mut first = TestNode::start();
    let address = first.listen_address();
    let second = TestNode::start_with(&["--bootstrap", &address]);
    write_package(&first.scratch().join("pkg"), &manifest("occupied", "1.0.0", "x"), &[("a.txt", b"x")]);
    first.ok(&["publish", "pkg"]);
    let found = wait_until(Duration::from_secs(30), || {
        second.run(&["search", "occupied", "--json"]).stdout.contains("occupied")
    });
    assert!(found, "the second node never saw the package:\n{}", second.log());
    assert!(first.stop());
    let out = second.scratch().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    let error = second.fails(&["fetch", "occupied", "-o", "out"]);
    assert!(error.contains("not an empty directory"), "the destination is checked first: {error}");
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
    assert!(dot_files(&second.scratch()).is_empty());
}

#[test]
fn an_oversized_publish_names_the_node_limit() {
    let node = TestNode::start_with(&["--max-artifact-size", "4096"]);
    let package = node.scratch().join("big");
    // Megabytes over it: the node would cut such an upload off mid-stream.
    write_package(&package, &manifest("big", "1.0.0", "too big"), &[("noise.bin", &noise(8 << 20, 3))]);
    let error = node.fails(&["publish", "big"]);
    assert!(error.contains("over the limit of 4096 bytes of this node"), "{error}");
    assert!(!error.contains("error sending request"), "{error}");
}

#[test]
fn ctrl_c_during_a_fetch_leaves_nothing_beside_the_destination() {
    let node = TestNode::start_with(&["--max-artifact-size", "1073741824"]);
    let package = node.scratch().join("large");
    write_package(&package, &manifest("large", "1.0.0", "large"), &[("noise.bin", &noise(96 << 20, 5))]);
    node.ok(&["publish", "large"]);
    let target = node.scratch().join("fetched");
    std::fs::create_dir_all(&target).unwrap();
    let child = node
        .agora()
        .current_dir(&target)
        .args(["fetch", "large", "-o", "out"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the download's temp file exists (mid-download or mid-unpack).
    let started = wait_until(Duration::from_secs(60), || !dot_files(&target).is_empty() || target.join("out").exists());
    assert!(started, "the fetch never started writing");
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        // It finished before the signal: the destination is complete, nothing else.
        eprintln!("the fetch finished before the interrupt arrived");
        assert!(dot_files(&target).is_empty(), "{:?}", dot_files(&target));
        return;
    }
    eprintln!("interrupted: {stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(dot_files(&target).is_empty(), "left behind: {:?}", dot_files(&target));
    assert!(!target.join("out").exists(), "a partial destination was left");
}
