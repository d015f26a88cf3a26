//! Writes the seed corpora, `fuzz/corpus/<target>/seed-*`: small valid inputs for
//! every target, encoded from real signed records, frames and packed archives (the
//! fixed fuzz key signs them all, so runs are reproducible). Run it with
//! `cargo xtask fuzz --seeds`; it replaces the `seed-*` files and leaves every
//! other corpus file alone.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use agora::archive::pack;
use agora_core::Digest;
use agora_fuzz::{Input, full_metadata, sample_publications};
use agora_net::{
    Announcement, ChunkRequest, ChunkResponse, RecordKey, SearchEntry, SearchRequest, SearchResponse, SyncEntry,
    SyncRequest, SyncResponse, Wire, provider_key,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let publications = sample_publications();
    let manifests: Vec<Vec<u8>> = publications.iter().map(|(manifest, _)| manifest.to_bytes()).collect();
    let indexes: Vec<Vec<u8>> = publications.iter().map(|(_, index)| index.to_bytes()).collect();
    let body = |wire: &[u8]| wire[..wire.len() - 64].to_vec();

    let mut seeds = Seeds::default();
    for (manifest, index) in manifests.iter().zip(&indexes) {
        seeds.add("signed_manifest", Input::encode(0, manifest));
        seeds.add("signed_manifest", Input::encode(1, &body(manifest)));
        seeds.add("signed_index", Input::encode(0, index));
        seeds.add("signed_index", Input::encode(1, &body(index)));
        seeds.add("announcement", Announcement::Publish { manifest: manifest.clone(), index: index.clone() }.encode());
        seeds.add("announcement", Announcement::Index { index: index.clone() }.encode());
    }

    for (manifest, (signed_manifest, signed_index)) in manifests.iter().zip(&publications) {
        let name = signed_manifest.manifest().name().clone();
        let version = signed_manifest.manifest().version().clone();
        let index_key = RecordKey::Index(name.clone()).to_string().into_bytes();
        let manifest_key = RecordKey::Manifest(name, version).to_string().into_bytes();
        let index = signed_index.to_bytes();
        seeds.add("dht_record", record(0, &index_key, &index));
        seeds.add("dht_record", record(1, &index_key, &body(&index)));
        seeds.add("dht_record", record(0, &manifest_key, manifest));
        seeds.add("dht_record", record(1, &manifest_key, &body(manifest)));
        let provider = provider_key(&signed_manifest.manifest().artifact.digest);
        seeds.add("dht_record", record(0, provider.as_ref(), &[]));
    }

    let digest = Digest::of(b"chunk");
    add_messages(
        &mut seeds,
        "chunk_protocol",
        &[&ChunkRequest { digest, index: 3 }],
        &[
            &ChunkResponse::Data(b"chunk bytes".to_vec()),
            &ChunkResponse::NotFound,
            &ChunkResponse::OutOfRange,
            &ChunkResponse::Unavailable,
        ],
    );
    let sync_page = SyncResponse {
        entries: vec![SyncEntry { index: indexes[0].clone(), manifests: vec![manifests[0].clone()] }],
        next: Some("multi".parse()?),
    };
    add_messages(
        &mut seeds,
        "sync_protocol",
        &[&SyncRequest { after: None, limit: 256 }, &SyncRequest { after: Some("a".parse()?), limit: 1 }],
        &[&SyncResponse::default(), &sync_page],
    );
    let search = SearchRequest {
        text: "json parser".into(),
        categories: vec!["encoding".into()],
        tags: vec!["fast".into(), "serde".into()],
        publisher: Some(agora_fuzz::fuzz_key().public_key()),
        limit: 20,
    };
    let hits =
        SearchResponse { entries: vec![SearchEntry { index: indexes[1].clone(), manifest: manifests[1].clone() }] };
    add_messages(
        &mut seeds,
        "search_protocol",
        &[&search, &SearchRequest { limit: 1, ..SearchRequest::default() }],
        &[&SearchResponse::default(), &hits],
    );

    for (name, files) in sample_packages() {
        let dir = tempfile::tempdir()?;
        for (path, content) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().ok_or("a file without a parent")?)?;
            fs::write(&path, content)?;
            if path.extension().is_some_and(|extension| extension == "sh") {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
            }
        }
        let (_, archive) = pack(dir.path(), 1 << 20).map_err(|error| format!("packing {name}: {error}"))?;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(archive.as_slice()).read_to_end(&mut tar)?;
        for target in ["archive", "unpack"] {
            seeds.add(target, Input::encode(0, &archive));
            seeds.add(target, Input::encode(1, &tar));
        }
    }

    for text in [MINIMAL_TOML.to_owned(), full_toml()] {
        seeds.add("agora_toml", text.into_bytes());
    }
    for text in ["", "max_artifact_size = 1000\n[cache]\nmax_entries = 5\n", FULL_CONFIG] {
        seeds.add("node_config", text.as_bytes().to_vec());
    }
    let queries = ["json parser", "  JSON   Parser ", "web-server_kit", "\u{130}x \u{3a3}\u{3a3}."];
    for text in queries {
        seeds.add("query", text.as_bytes().to_vec());
    }

    for (top, cargo_toml, request) in sample_crates() {
        let tar = crate_tar(top, cargo_toml)?;
        seeds.add("cargo_publish", Input::encode(1, &tar));
        let body = serde_json::from_str::<agora::cargo::PublishRequest>(request)?.to_body(&agora_fuzz::gzip(&tar));
        seeds.add("cargo_publish", Input::encode(0, &body));
    }

    seeds.write(&corpus)
}

/// Seed files per target, numbered in the order they were added.
#[derive(Default)]
struct Seeds(Vec<(&'static str, Vec<u8>)>);

impl Seeds {
    fn add(&mut self, target: &'static str, bytes: Vec<u8>) {
        self.0.push((target, bytes));
    }

    fn write(self, corpus: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let targets: std::collections::BTreeSet<&str> = self.0.iter().map(|(target, _)| *target).collect();
        for target in &targets {
            let dir = corpus.join(target);
            fs::create_dir_all(&dir)?;
            for entry in fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with("seed-")) {
                    fs::remove_file(path)?;
                }
            }
        }
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for (target, bytes) in self.0 {
            let count = counts.entry(target).or_default();
            fs::write(corpus.join(target).join(format!("seed-{count:02}")), bytes)?;
            *count += 1;
        }
        for (target, count) in counts {
            println!("{target}: {count} seeds");
        }
        Ok(())
    }
}

/// A DHT record input: mode, key length, key, value.
fn record(mode: u8, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![mode, key.len() as u8];
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(value);
    bytes
}

/// Each message bare (mode 0 requests, 1 responses) and framed (2 and 3).
fn add_messages(seeds: &mut Seeds, target: &'static str, requests: &[&dyn Encode], responses: &[&dyn Encode]) {
    for (direction, messages) in [(0u8, requests), (1, responses)] {
        for message in messages {
            let payload = message.bytes();
            seeds.add(target, Input::encode(direction, &payload));
            let mut framed = (payload.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&payload);
            seeds.add(target, Input::encode(direction | 2, &framed));
        }
    }
}

/// `Wire::encode` as an object-safe method.
trait Encode {
    fn bytes(&self) -> Vec<u8>;
}

impl<T: Wire> Encode for T {
    fn bytes(&self) -> Vec<u8> {
        self.encode()
    }
}

const MINIMAL_TOML: &str = "[package]\nname = \"a\"\nversion = \"0.0.1\"\ndescription = \"x\"\n";

fn full_toml() -> String {
    let metadata = full_metadata();
    let list = |values: &[String]| values.iter().map(|value| format!("{value:?}")).collect::<Vec<_>>().join(", ");
    let mut text = format!(
        "[package]\nname = \"{}\"\nversion = \"{}\"\ndescription = {:?}\nkeywords = [{}]\ncategories = [{}]\n\
         license = {:?}\nauthors = [{}]\nhomepage = {:?}\nrepository = {:?}\n\n[dependencies]\n",
        metadata.name,
        metadata.version,
        metadata.description,
        list(&metadata.keywords),
        list(&metadata.categories),
        metadata.license.unwrap_or_default(),
        list(&metadata.authors),
        metadata.homepage.unwrap_or_default(),
        metadata.repository.unwrap_or_default(),
    );
    for (name, requirement) in &metadata.dependencies {
        text.push_str(&format!("{name} = \"{requirement}\"\n"));
    }
    text
}

const FULL_CONFIG: &str = r#"api = "127.0.0.1:7420"
max_artifact_size = 268435456
chunk_size = 262144

[cache]
max_entries = 10000
ttl_secs = 600
search_ttl_secs = 30

[network]
enabled = true
listen = ["/ip4/0.0.0.0/tcp/0", "/memory/0"]
bootstrap = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
query_timeout_ms = 10000
request_timeout_ms = 10000
catalog_sync = true
max_peers = 64

[transfer]
max_providers = 3
requests_per_provider = 4
chunk_timeout_ms = 10000

[reputation]
invalid_threshold = 3
ban_secs = 3600

[storage]
max_cached_bytes = 10737418240
"#;

/// Package directories to pack: the smallest, one with every manifest field,
/// nested directories, an executable and a path over 100 bytes, one with an empty file.
fn sample_packages() -> Vec<(&'static str, Vec<(String, Vec<u8>)>)> {
    let long = format!("src/{}/deep.rs", "long-directory-name".repeat(6));
    vec![
        ("minimal", vec![("agora.toml".into(), MINIMAL_TOML.into())]),
        (
            "full",
            vec![
                ("agora.toml".into(), full_toml().into_bytes()),
                ("README.md".into(), b"# fuzz-full\n".to_vec()),
                ("run.sh".into(), b"#!/bin/sh\necho hi\n".to_vec()),
                ("src/lib.rs".into(), b"pub fn f() {}\n".to_vec()),
                (long, b"// deep\n".to_vec()),
            ],
        ),
        (
            "empty-file",
            vec![
                ("agora.toml".into(), MINIMAL_TOML.replace("\"a\"", "\"b\"").into_bytes()),
                ("empty".into(), Vec::new()),
                (".hidden/x".into(), b"x".to_vec()),
            ],
        ),
    ]
}

/// `.crate` files to seed `cargo_publish` with: top directory, normalized
/// `Cargo.toml` and the publish request cargo sends for it. The smallest, one
/// with every kind of dependency and both feature syntaxes, an old one (`[project]`,
/// underscored tables, no edition).
fn sample_crates() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "a-0.1.0",
            "[package]\nname = \"a\"\nversion = \"0.1.0\"\ndescription = \"x\"\n",
            r#"{"name":"a","vers":"0.1.0","deps":[],"features":{},"description":"x"}"#,
        ),
        (
            "Fuzz-Crate-0.3.1",
            r#"[package]
edition = "2021"
rust-version = "1.70"
name = "Fuzz-Crate"
version = "0.3.1"
authors = ["A. Author <a@example.org>"]
description = "every kind of dependency"
keywords = ["fuzz"]
categories = ["development-tools::testing"]
license = "MIT"
links = "z"

[dependencies.serde]
version = "1.0.100"
features = ["derive"]
optional = true

[build-dependencies.cc]
version = ">=1.0, <2"

[dev-dependencies.tempfile]
version = "3"

[features]
default = ["std"]
json = ["dep:serde", "rng?/serde"]
std = []

[target."cfg(unix)".dependencies.rng]
version = "0.8"
package = "rand"
default-features = false
"#,
            r#"{"name":"Fuzz-Crate","vers":"0.3.1","deps":[
{"optional":true,"default_features":true,"name":"serde","features":["derive"],"version_req":"^1.0.100","target":null,"kind":"normal","registry":"https://github.com/rust-lang/crates.io-index","explicit_name_in_toml":null},
{"optional":false,"default_features":true,"name":"tempfile","features":[],"version_req":"^3","target":null,"kind":"dev","registry":null,"explicit_name_in_toml":null},
{"optional":false,"default_features":true,"name":"cc","features":[],"version_req":">=1.0, <2","target":null,"kind":"build","registry":null,"explicit_name_in_toml":null},
{"optional":false,"default_features":false,"name":"rand","features":[],"version_req":"^0.8","target":"cfg(unix)","kind":"normal","registry":null,"explicit_name_in_toml":"rng"}],
"features":{"default":["std"],"json":["dep:serde","rng?/serde"],"std":[]},"authors":["A. Author <a@example.org>"],
"description":"every kind of dependency","keywords":["fuzz"],"categories":["development-tools::testing"],
"license":"MIT","links":"z","rust_version":"1.70","badges":{}}"#,
        ),
        (
            "old-0.1.0",
            "[project]\nname = \"old\"\nversion = \"0.1.0\"\n[dev_dependencies]\nlog = \"0.3\"\n\
             [target.x86_64-pc-windows-gnu.dependencies]\nwinapi = \"0.2\"\n",
            r#"{"name":"old","vers":"0.1.0","deps":[
{"name":"log","version_req":"^0.3","kind":"dev"},{"name":"winapi","version_req":"^0.2","target":"x86_64-pc-windows-gnu"}]}"#,
        ),
    ]
}

/// A tar as `cargo package` writes it: `<top>/Cargo.toml` and a source file.
fn crate_tar(top: &str, cargo_toml: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in [("Cargo.toml", cargo_toml.as_bytes()), ("src/lib.rs", b"pub fn f() {}\n".as_slice())] {
        let mut header = tar::Header::new_gnu();
        header.set_path(format!("{top}/{path}"))?;
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, contents)?;
    }
    Ok(builder.into_inner()?)
}
