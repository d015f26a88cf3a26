//! The Cargo gateway with the real `cargo`: crates published with `cargo
//! publish` on one node build with `cargo build` on another; a crates.io mirror
//! made with `agora cargo import` from the machine's cargo cache replaces
//! crates.io; yank, search, and bad input refused the way cargo reports it.
//! Every `CARGO_HOME` is a temp dir: nothing comes from the internet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use agora::core::Digest;
use agora_tests::cargo::{CargoHome, lock_checksums, machine_crate_cache, write_crate};
use agora_tests::{TestNode, wait_until};

const UTIL_TOML: &str = r#"[package]
name = "agora_demo_util"
version = "0.1.0"
edition = "2021"
description = "Small helpers for the Agora cargo gateway test"
license = "MIT"
keywords = ["agora", "gateway"]
"#;

const LIB_TOML: &str = r#"[package]
name = "agora-demo-lib"
version = "0.2.0"
edition = "2021"
description = "A greeting library with an optional loud feature"
license = "MIT"

[features]
default = []
loud = ["dep:agora_demo_util"]

[dependencies]
agora_demo_util = { version = "0.1", registry = "agora", optional = true }
"#;

const LIB_RS: &str = r#"pub fn greeting() -> String {
    #[cfg(feature = "loud")]
    return agora_demo_util::shout("hello from agora");
    #[cfg(not(feature = "loud"))]
    return "hello from agora".to_string();
}
"#;

const APP_TOML: &str = r#"[package]
name = "agora-demo-app"
version = "1.0.0"
edition = "2021"
description = "A binary that greets through agora-demo-lib"
license = "MIT"

[dependencies]
agora-demo-lib = { version = "0.2", registry = "agora", features = ["loud"] }
"#;

const APP_RS: &str = "fn main() { println!(\"{}\", agora_demo_lib::greeting()); }\n";

/// Writes the three test crates under `dir` and publishes them with cargo.
fn publish_demo_crates(cargo: &CargoHome, dir: &Path) {
    write_crate(
        &dir.join("util"),
        UTIL_TOML,
        &[("src/lib.rs", "pub fn shout(s: &str) -> String { s.to_uppercase() + \"!\" }\n")],
    );
    write_crate(&dir.join("lib"), LIB_TOML, &[("src/lib.rs", LIB_RS)]);
    write_crate(&dir.join("app"), APP_TOML, &[("src/main.rs", APP_RS)]);
    for name in ["util", "lib", "app"] {
        cargo.ok(&dir.join(name), &["publish", "--registry", "agora"]);
    }
}

/// A consumer project depending on `dependencies` (TOML lines).
fn write_consumer(dir: &Path, dependencies: &str, main: &str) {
    let toml = format!(
        "[package]\nname = \"consumer\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{dependencies}\n"
    );
    write_crate(dir, &toml, &[("src/main.rs", main)]);
}

/// The SHA-256 (hex) of the `.crate` file cargo packaged for `name`-`version`
/// (under `<target>/package/`, where `cargo publish` leaves it).
fn packaged_digest(cargo: &CargoHome, name: &str, version: &str) -> String {
    fn find(dir: &Path, file: &str) -> Option<std::path::PathBuf> {
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                if let Some(found) = find(&path, file) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|name| name == file) {
                return Some(path);
            }
        }
        None
    }
    let package = cargo.target_dir().join("package");
    let file = format!("{name}-{version}.crate");
    let path = find(&package, &file).unwrap_or_else(|| panic!("no {file} under {}", package.display()));
    Digest::of(&std::fs::read(&path).unwrap()).to_hex()
}

/// Waits until `node` serves the index file at `path` (`/cargo/…`).
fn wait_for_index(node: &TestNode, path: &str) {
    let found = wait_until(Duration::from_secs(60), || node.request("GET", path, &[], b"").status == 200);
    assert!(found, "{path} never appeared:\n{}", node.log());
}

fn cached_artifacts(node: &TestNode) -> u64 {
    node.json(&["status"])["storage"]["cached_artifacts"].as_u64().unwrap()
}

#[test]
fn crates_published_with_cargo_on_one_node_build_on_another() {
    let a = TestNode::start();
    let b = TestNode::start_with(&["--bootstrap", &a.listen_address()]);
    let cargo_a = CargoHome::for_node(&a);
    publish_demo_crates(&cargo_a, &a.scratch());

    // A serves what cargo needs to resolve, one signed line per version.
    let line = a.get("/cargo/index/ag/or/agora-demo-lib");
    let line: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(line["name"], "agora-demo-lib");
    assert_eq!(line["vers"], "0.2.0");
    assert_eq!(line["features2"]["loud"], serde_json::json!(["dep:agora_demo_util"]), "{line}");
    assert_eq!(line["deps"][0]["name"], "agora_demo_util");
    assert_eq!(line["deps"][0]["optional"], true);
    assert_eq!(line["cksum"], packaged_digest(&cargo_a, "agora-demo-lib", "0.2.0"));

    // B has never held them: it serves the index from the network and fetches
    // the .crate files from A when cargo asks.
    wait_for_index(&b, "/cargo/index/ag/or/agora-demo-lib");
    wait_for_index(&b, "/cargo/index/ag/or/agora_demo_util");
    assert_eq!(cached_artifacts(&b), 0);
    let cargo_b = CargoHome::for_node(&b);
    let consumer = b.scratch().join("consumer");
    write_consumer(
        &consumer,
        "agora-demo-lib = { version = \"0.2\", registry = \"agora\", features = [\"loud\"] }",
        "fn main() { println!(\"{}\", agora_demo_lib::greeting()); }\n",
    );
    let run = cargo_b.ok(&consumer, &["run", "--quiet"]);
    assert_eq!(run.stdout.trim(), "HELLO FROM AGORA!");
    assert!(cached_artifacts(&b) >= 2, "B fetched both .crate files:\n{}", b.log());

    // The lockfile's checksums are the artifacts' digests, as A packaged them.
    let checksums = lock_checksums(&consumer.join("Cargo.lock"));
    for (name, version) in [("agora-demo-lib", "0.2.0"), ("agora_demo_util", "0.1.0")] {
        assert_eq!(
            checksums.get(&(name.to_owned(), version.to_owned())),
            Some(&packaged_digest(&cargo_a, name, version)),
            "{name} {version} in {checksums:?}"
        );
    }

    // The binary crate installs from B too.
    let root = b.scratch().join("installed");
    cargo_b.ok(
        &b.scratch(),
        &["install", "--quiet", "--registry", "agora", "agora-demo-app", "--root", root.to_str().unwrap()],
    );
    let output = std::process::Command::new(root.join("bin").join("agora-demo-app")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "HELLO FROM AGORA!");
}

#[test]
fn yank_search_near_duplicates_and_tokens_work_as_cargo_expects() {
    let node = TestNode::start();
    let cargo = CargoHome::for_node(&node);
    let dir = node.scratch();
    write_crate(&dir.join("util"), UTIL_TOML, &[("src/lib.rs", "pub fn one() -> u32 { 1 }\n")]);
    cargo.ok(&dir.join("util"), &["publish", "--registry", "agora", "--no-verify"]);

    // A project locked to 0.1.0 keeps building after the yank; a new one cannot
    // select it.
    let locked = dir.join("locked");
    write_consumer(
        &locked,
        "agora_demo_util = { version = \"0.1\", registry = \"agora\" }",
        "fn main() { assert_eq!(agora_demo_util::one(), 1); }\n",
    );
    cargo.ok(&locked, &["build", "--quiet"]);
    cargo.ok(&dir, &["yank", "--registry", "agora", "agora_demo_util@0.1.0"]);
    let index = node.get("/cargo/index/ag/or/agora_demo_util");
    assert!(index.contains("\"yanked\":true"), "{index}");
    cargo.ok(&locked, &["build", "--quiet", "--locked"]);
    let fresh = dir.join("fresh");
    write_consumer(&fresh, "agora_demo_util = { version = \"0.1\", registry = \"agora\" }", "fn main() {}\n");
    let refused = cargo.run(&fresh, &["generate-lockfile"]);
    assert!(!refused.success && refused.stderr.contains("yanked"), "{refused}");
    cargo.ok(&dir, &["yank", "--registry", "agora", "--undo", "agora_demo_util@0.1.0"]);
    cargo.ok(&fresh, &["generate-lockfile"]);
    let added = dir.join("added");
    write_consumer(&added, "", "fn main() {}\n");
    cargo.ok(&added, &["add", "--registry", "agora", "agora_demo_util"]);
    let manifest = std::fs::read_to_string(added.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("agora_demo_util = { version = \"0.1.0\", registry = \"agora\" }"), "{manifest}");

    // Agora's own CLI sees the crate in its namespace, and fetches the .crate
    // file cargo downloads.
    let info = node.json(&["info", "crates/agora_demo_util"]);
    assert_eq!(info["index"]["index"]["name"], "crates/agora_demo_util", "{info}");
    assert_eq!(info["manifest"]["manifest"]["cargo"]["name"], "agora_demo_util", "{info}");
    node.ok(&["fetch", "crates/agora_demo_util@0.1.0"]);
    let fetched = std::fs::read(dir.join("agora_demo_util-0.1.0.crate")).unwrap();
    assert_eq!(Digest::of(&fetched).to_hex(), packaged_digest(&cargo, "agora_demo_util", "0.1.0"));

    // Search by name and by description.
    for words in ["agora_demo_util", "helpers gateway"] {
        let found = cargo.ok(&dir, &["search", "--registry", "agora", words]);
        assert!(found.stdout.contains("agora_demo_util = \"0.1.0\""), "{words}: {found}");
        assert!(found.stdout.contains("Small helpers for the Agora cargo gateway test"), "{found}");
    }

    // Another spelling of the same name is refused, nothing stored.
    let respelled = UTIL_TOML.replace("agora_demo_util", "Agora-Demo-Util").replace("0.1.0", "0.2.0");
    write_crate(&dir.join("respelled"), &respelled, &[("src/lib.rs", "\n")]);
    let refused = cargo.run(&dir.join("respelled"), &["publish", "--registry", "agora", "--no-verify"]);
    assert!(!refused.success && refused.stderr.contains("already published as `agora_demo_util`"), "{refused}");

    // A wrong token (cargo's own token, no credential provider) is refused.
    let index = format!("[registries.agora]\nindex = \"sparse+http://{}/cargo/index/\"\n", node.api());
    let plain = CargoHome::new(&index);
    let bumped = UTIL_TOML.replace("0.1.0", "0.3.0");
    write_crate(&dir.join("bumped"), &bumped, &[("src/lib.rs", "\n")]);
    let mut publish = plain.command(&dir.join("bumped"), &["publish", "--registry", "agora", "--no-verify"]);
    let refused =
        agora_tests::CommandResult::from(publish.env("CARGO_REGISTRIES_AGORA_TOKEN", "wrong").output().unwrap());
    assert!(!refused.success && refused.stderr.contains("invalid token"), "{refused}");
    let mut publish = plain.command(&dir.join("bumped"), &["publish", "--registry", "agora", "--no-verify"]);
    let accepted =
        agora_tests::CommandResult::from(publish.env("CARGO_REGISTRIES_AGORA_TOKEN", node.token()).output().unwrap());
    assert!(accepted.success, "{accepted}");
    let index = node.get("/cargo/index/ag/or/agora_demo_util");
    assert_eq!(index.lines().count(), 2, "0.1.0 and 0.3.0 only: {index}");
}

#[test]
fn a_crates_io_mirror_imported_from_the_cargo_cache_replaces_crates_io() {
    let cache = machine_crate_cache();
    let crates = std::fs::read_dir(&cache).map(|dirs| dirs.count()).unwrap_or(0);
    assert!(crates > 0, "no cargo cache at {}: build the workspace first (it fills it)", cache.display());
    let a = TestNode::start();
    let import = a.ok(&["cargo", "import", cache.to_str().unwrap()]);
    assert!(import.stdout.contains(" 0 failed"), "{import}");

    // B trusts A's key for its mirror; C trusts no one but itself.
    let key = a.ok(&["key", "show"]).stdout.trim().to_owned();
    let mut b = TestNode::unstarted();
    std::fs::create_dir_all(b.data_dir()).unwrap();
    std::fs::write(b.data_dir().join("config.toml"), format!("[cargo]\ntrusted_publishers = [\"{key}\"]\n")).unwrap();
    b.launch(&["--bootstrap", &a.listen_address()]);
    let c = TestNode::start_with(&["--bootstrap", &a.listen_address()]);
    wait_for_index(&b, "/cargo/mirror/index/se/rd/serde_json");
    wait_for_index(&c, "/cargo/index/se/rd/serde_json");
    let untrusted = c.request("GET", "/cargo/mirror/index/se/rd/serde_json", &[], b"");
    assert_eq!(untrusted.status, 404, "a stranger's serde_json is not in C's mirror: {}", untrusted.body);

    // The index answers conditional requests.
    let first = b.request("GET", "/cargo/mirror/index/se/rd/serde_json", &[], b"");
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = b.request("GET", "/cargo/mirror/index/se/rd/serde_json", &[("If-None-Match", &etag)], b"");
    assert_eq!(again.status, 304);

    let cargo = CargoHome::for_node(&b);
    let project = b.scratch().join("project");
    write_consumer(
        &project,
        "serde_json = \"1\"\nhex = \"0.4\"",
        "fn main() { let v: serde_json::Value = serde_json::from_str(\"[1,2]\").unwrap(); println!(\"{} {}\", v[1], hex::encode([0xab])); }\n",
    );
    let run = cargo.ok(&project, &["run", "--quiet"]);
    assert_eq!(run.stdout.trim(), "2 ab");
    let lock = lock_checksums(&project.join("Cargo.lock"));
    let serde_json = lock.iter().find(|((name, _), _)| name == "serde_json").expect("serde_json is locked");
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .map(|dir| dir.unwrap().path().join(format!("serde_json-{}.crate", serde_json.0.1)))
        .find(|path| path.exists())
        .expect("the locked serde_json came from the cache");
    assert_eq!(*serde_json.1, Digest::of(&std::fs::read(file).unwrap()).to_hex(), "crates.io's checksum, unchanged");
}

#[test]
fn bad_publish_requests_get_cargo_errors_and_store_nothing() {
    use agora::cargo::PublishRequest;
    let node = TestNode::start_with(&[]);
    let token = node.token();
    let put = |body: &[u8], token: Option<&str>| {
        let headers: Vec<(&str, &str)> = token.map(|token| ("Authorization", token)).into_iter().collect();
        node.request("PUT", "/cargo/api/v1/crates/new", &headers, body)
    };
    let detail = |response: &agora_tests::HttpResponse| -> String {
        response.json()["errors"][0]["detail"].as_str().unwrap_or_else(|| panic!("{}", response.body)).to_owned()
    };
    let toml = "[package]\nname = \"bad-input\"\nversion = \"1.0.0\"\ndescription = \"d\"\n";
    let crate_file = crate_bytes("bad-input-1.0.0", toml);
    let mut request = PublishRequest::new("bad-input", "1.0.0");
    request.description = Some("d".into());
    let good = request.to_body(&crate_file);

    for (body, status, expected) in [
        (&b"\x05\x00"[..], 400, "malformed publish request"),
        (&good[..good.len() - 1], 400, "malformed publish request"),
        (&[&good[..], b"x"].concat()[..], 400, "malformed publish request"),
        (&PublishRequest::new("bad-input", "2.0.0").to_body(&crate_file)[..], 400, "version 2.0.0"),
        (&request_for("other-name", &crate_file)[..], 400, "other-name"),
        (&request.to_body(b"not a gzip")[..], 400, "not a valid gzip"),
    ] {
        let response = put(body, Some(&token));
        assert_eq!(response.status, status, "{}", response.body);
        assert!(detail(&response).contains(expected), "expected `{expected}` in {}", response.body);
    }
    for (token, expected) in [(None, "needs the node's API token"), (Some("wrong"), "invalid token")] {
        let response = put(&good, token);
        assert_eq!(response.status, 403);
        assert!(detail(&response).contains(expected), "{}", response.body);
    }
    assert_eq!(node.request("GET", "/cargo/index/ba/d-/bad-input", &[], b"").status, 404, "nothing was stored");
    // The same body with the token is accepted: the refusals were about the input.
    assert_eq!(put(&good, Some(&token)).status, 200);
    assert_eq!(node.request("GET", "/cargo/index/ba/d-/bad-input", &[], b"").status, 200);

    // Over the node's size limit: refused from the declared length.
    let mut small = TestNode::unstarted();
    small.launch(&["--max-artifact-size", "1024"]);
    let big = request.to_body(&vec![0u8; 4096]);
    let response = small.request("PUT", "/cargo/api/v1/crates/new", &[("Authorization", &small.token())], &big);
    assert_eq!(response.status, 413, "{}", response.body);
    assert!(detail(&response).contains("over the limit of 1024 bytes"), "{}", response.body);
}

/// A publish body for crate `name` with the given `.crate` bytes.
fn request_for(name: &str, crate_file: &[u8]) -> Vec<u8> {
    let mut request = agora::cargo::PublishRequest::new(name, "1.0.0");
    request.description = Some("d".into());
    request.to_body(crate_file)
}

/// A `.crate` file: `top/Cargo.toml` and `top/src/lib.rs`.
fn crate_bytes(top: &str, cargo_toml: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in [("Cargo.toml", cargo_toml.as_bytes()), ("src/lib.rs", b"\n".as_slice())] {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("{top}/{path}"), contents).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &tar).unwrap();
    encoder.finish().unwrap()
}
