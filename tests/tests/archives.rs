//! Issue 13, strict archives: a node publishes (signs and serves) exactly the bytes
//! it validated, and an archive that unpacks to far more than it weighs is refused.
//! Before, a `.tar.gz` of two gzip members passed validation on its first member
//! and the node signed and served both; a 2 MiB archive unpacking to 2.1 GB was
//! accepted (the unpack limit was 4 GiB whatever `max_artifact_size` said).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use agora::archive::{self, ArchiveError};
use agora::{ArtifactData, Error, Node, Query, Registry};
use agora_tests::net::write_package;

async fn offline_node(dir: &Path) -> Node {
    Node::builder().data_dir(dir.join("node")).offline().build().await.expect("node starts")
}

fn packed(dir: &Path, name: &str) -> Vec<u8> {
    let package = dir.join("packages").join(name);
    write_package(&package, name, "1.0.0", b"hello");
    archive::pack(&package, 1 << 30).expect("pack").1
}

async fn published_count(node: &Node) -> u64 {
    node.search(&Query::new("")).await.expect("search").total
}

#[tokio::test]
async fn an_archive_with_a_second_gzip_member_is_refused_and_nothing_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path()).await;
    // The second member carries another package's files (a hidden script, its own agora.toml).
    let two_members = [packed(dir.path(), "cover"), packed(dir.path(), "payload")].concat();
    let error = node.publish_archive(ArtifactData::Bytes(two_members.into())).await.unwrap_err();
    assert!(
        matches!(&error, Error::Archive(ArchiveError::NotAnArchive(message)) if message.contains("gzip stream")),
        "{error}"
    );
    let mut trailing = packed(dir.path(), "cover");
    trailing.extend_from_slice(b"#!/bin/sh\n");
    assert!(node.publish_archive(ArtifactData::Bytes(trailing.into())).await.is_err());
    assert_eq!(published_count(&node).await, 0, "a refused archive published something");
    // The same package alone is fine.
    let published = node.publish_archive(ArtifactData::Bytes(packed(dir.path(), "cover").into())).await.unwrap();
    assert!(published.created);
    node.shutdown().await;
}

#[tokio::test]
async fn an_archive_that_unpacks_to_far_more_than_it_weighs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path()).await;
    let package = dir.path().join("bomb");
    write_package(&package, "bomb", "1.0.0", b"x");
    std::fs::write(package.join("zeros.bin"), vec![0u8; 64 << 20]).unwrap();
    let (_, bytes) = archive::pack(&package, 1 << 30).expect("pack");
    assert!(bytes.len() < 1 << 20, "64 MiB of zeros packs to {} bytes", bytes.len());
    let error = node.publish_archive(ArtifactData::Bytes(bytes.into())).await.unwrap_err();
    assert!(matches!(error, Error::Archive(ArchiveError::TooLarge { .. })), "{error}");
    assert_eq!(published_count(&node).await, 0);
    node.shutdown().await;
}

/// The manifest records what the archive unpacks to, so `info` shows it before
/// anyone downloads the package; and the size is signed like the rest.
#[tokio::test]
async fn the_unpacked_size_is_recorded_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let node = offline_node(dir.path()).await;
    let package = dir.path().join("sized");
    write_package(&package, "sized", "1.0.0", b"hello");
    std::fs::write(package.join("data.bin"), vec![7u8; 300_000]).unwrap();
    let (_, bytes) = archive::pack(&package, 1 << 30).expect("pack");
    let (_, contents) = archive::inspect(&bytes[..], 1 << 30).expect("inspect");
    let published = node.publish_archive(ArtifactData::Bytes(bytes.into())).await.expect("publish");
    let manifest = published.manifest.manifest();
    assert_eq!(manifest.unpacked_size, Some(contents.bytes));
    let on_disk: u64 = agora_tests::files_under(&package).iter().map(|path| path.metadata().unwrap().len()).sum();
    assert_eq!(contents.bytes, on_disk, "every byte of every file, nothing else");
    let wire = published.manifest.to_bytes();
    assert_eq!(agora::SignedManifest::from_bytes(&wire).unwrap(), published.manifest);
    node.shutdown().await;
}
