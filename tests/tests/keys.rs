//! Issue 13: `agora key import` used to replace the publisher key silently, so the
//! packages the old key owned could never be updated or yanked again. Now every
//! key is kept in `keys/keyring/`, and switching away from a key that owns
//! packages needs `force`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agora::{ArtifactData, Error, Node, SecretKey, archive, parse_version};
use agora_tests::net::{name, write_package};

#[tokio::test]
async fn importing_a_key_never_strands_the_packages_the_current_key_owns() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder().data_dir(dir.path().join("node")).offline().build().await.unwrap();
    let original = node.export_publisher_key();
    // With nothing published, a key can be switched freely (and back).
    let spare = SecretKey::generate();
    node.import_publisher_key(spare.clone(), false).await.unwrap();
    assert_eq!(node.publisher_key(), spare.public_key());
    node.import_publisher_key(original.clone(), false).await.unwrap();

    let package = dir.path().join("owned");
    write_package(&package, "owned", "1.0.0", b"mine");
    let (_, bytes) = archive::pack(&package, 1 << 30).unwrap();
    node.publish_archive(ArtifactData::Bytes(bytes.into())).await.unwrap();

    let newcomer = SecretKey::generate();
    let error = node.import_publisher_key(newcomer.clone(), false).await.unwrap_err();
    assert!(matches!(&error, Error::KeyOwnsPackages { count: 1, names, .. } if names == "owned"), "{error}");
    assert!(error.to_string().contains("--force"), "{error}");
    assert!(!error.to_string().contains(&newcomer.to_hex()), "an error printed secret material");
    assert_eq!(node.publisher_key(), original.public_key(), "a refused import changed the key");
    let v1 = parse_version("1.0.0").unwrap();
    node.set_yanked(&name("owned"), &v1, true).await.expect("the owner can still yank");

    node.import_publisher_key(newcomer.clone(), true).await.unwrap();
    assert_eq!(node.publisher_key(), newcomer.public_key());
    // Every key used is in the keyring, owner-only, so the old one can come back.
    for key in [&original, &spare, &newcomer] {
        let path = dir.path().join("node/keys/keyring").join(format!("{}.key", key.public_key().to_hex()));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
        assert_eq!(text.trim(), key.to_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
    node.import_publisher_key(original.clone(), true).await.unwrap();
    node.set_yanked(&name("owned"), &v1, false).await.expect("the old key, back, can unyank");
    node.shutdown().await;
}
