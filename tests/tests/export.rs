//! `agora::export`: an artifact written out of a node into a file of the caller's
//! is exactly its bytes, and a failed export (a chunk that no longer verifies)
//! leaves the destination as it was, with no temp file beside it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use agora::{ArtifactData, Node, Published, Registry, archive};
use agora_tests::net::{name, v1, write_package};
use agora_tests::noise;

/// Small chunks, so an artifact of a few dozen KiB has a middle chunk.
const CHUNK: u32 = 4096;

/// An offline node in `dir` publishing with 4 KiB chunks.
async fn node(dir: &Path) -> Node {
    Node::builder()
        .data_dir(dir.join("node"))
        .offline()
        .configure(|config| config.chunk_size = CHUNK)
        .build()
        .await
        .expect("node starts")
}

/// Packs and publishes `name@1.0.0` holding `content`; returns the result and
/// the archive's bytes.
async fn publish(node: &Node, dir: &Path, name: &str, content: &[u8]) -> (Published, Vec<u8>) {
    let package = dir.join("packages").join(name);
    write_package(&package, name, "1.0.0", content);
    let (_, bytes) = archive::pack(&package, 1 << 30).expect("pack");
    let published = node.publish_archive(ArtifactData::Bytes(bytes.clone().into())).await.expect("publish");
    (published, bytes)
}

/// Flips one byte in the middle chunk of the stored copy of `published`.
fn corrupt_middle_chunk(node: &Node, published: &Published) {
    let info = &published.manifest.manifest().artifact;
    let middle = info.chunks.len() / 2;
    assert!(middle > 0 && middle + 1 < info.chunks.len(), "the artifact needs a middle chunk: {info:?}");
    let path = node.store().artifacts().path_of(&info.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let (offset, len) = info.chunk_range(middle).unwrap();
    let at = (offset + u64::from(len) / 2) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_exported_artifact_is_exactly_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let (published, bytes) = publish(&node, dir.path(), "exported", &noise(40_000, 11)).await;
    assert!(published.manifest.manifest().artifact.chunks.len() > 2, "a multi-chunk artifact");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("exported-1.0.0.tar.gz");

    let reader = node.fetch_artifact(&name("exported"), &v1()).await.expect("the node holds it");
    let exported = agora::export(reader, &dest).await.expect("export");
    assert_eq!(std::fs::read(&dest).unwrap(), bytes, "the file differs from the published archive");
    assert_eq!(exported.bytes, bytes.len() as u64);
    assert_eq!(exported.manifest, published.manifest);
    assert_eq!(exported.path, dest);
    assert_eq!(entries(&out), [dest], "nothing but the artifact beside it");
    node.shutdown().await;
}

#[tokio::test]
async fn an_export_that_fails_verification_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let (published, _) = publish(&node, dir.path(), "rotten", &noise(40_000, 12)).await;
    corrupt_middle_chunk(&node, &published);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("rotten-1.0.0.tar.gz");

    // The catalog's reader verifies chunk by chunk, so the chunks before the
    // corrupted one are read (and written to the temp file) before it fails.
    let reader = node.registry().fetch_artifact(&name("rotten"), &v1()).await.expect("a reader");
    let error = agora::export(reader, &dest).await.expect_err("a corrupted chunk fails the export");
    match error.as_registry_error() {
        Some(agora::core::Error::DigestMismatch { expected, .. }) => {
            let info = &published.manifest.manifest().artifact;
            assert_eq!(expected, info.chunks[info.chunks.len() / 2], "the middle chunk is the one that failed");
        }
        other => panic!("expected a digest mismatch, got {other:?} ({error})"),
    }
    assert!(!dest.exists(), "a failed export left a file at the destination");
    assert!(entries(&out).is_empty(), "a failed export left {:?} behind", entries(&out));
    node.shutdown().await;
}

#[tokio::test]
async fn a_failed_export_keeps_the_file_it_would_replace_and_a_good_one_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let (rotten, _) = publish(&node, dir.path(), "rotten", &noise(40_000, 13)).await;
    let (_, good) = publish(&node, dir.path(), "good", &noise(40_000, 14)).await;
    corrupt_middle_chunk(&node, &rotten);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("package.tar.gz");
    std::fs::write(&dest, b"the copy the user already had").unwrap();

    let reader = node.registry().fetch_artifact(&name("rotten"), &v1()).await.expect("a reader");
    let error = agora::export(reader, &dest).await.expect_err("a corrupted chunk fails the export");
    assert!(
        matches!(error.as_registry_error(), Some(agora::core::Error::DigestMismatch { .. })),
        "expected a digest mismatch, got {error}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"the copy the user already had", "a failed export touched it");
    assert_eq!(entries(&out), std::slice::from_ref(&dest), "a failed export left a temp file behind");

    let reader = node.fetch_artifact(&name("good"), &v1()).await.expect("the node holds it");
    let exported = agora::export(reader, &dest).await.expect("export");
    assert_eq!(std::fs::read(&dest).unwrap(), good, "a successful export replaces the file");
    assert_eq!(exported.bytes, good.len() as u64);
    assert_eq!(entries(&out), [dest], "nothing but the artifact beside it");
    node.shutdown().await;
}
