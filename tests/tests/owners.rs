//! Issue 13 (#2): a package outlives a lost laptop. An owner adds a co-owner,
//! who publishes and yanks as the founder could; the founder's key can hand the
//! name over to a new key (`rotate`); every node follows, including one that
//! was offline while the owners changed, and none treats the new keys as
//! another claim to the name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agora::{Registry, parse_version};
use agora_tests::net::{DEADLINE, TestNet, name, v1, wait_until};
use agora_tests::{TestNode, manifest, wait_until as wait_until_sync, write_package};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_owner_publishes_and_every_node_follows_the_new_owners() {
    let mut net = TestNet::new(2).await;
    net.wait_connected().await;
    let (founder, partner) = (net.node(0).publisher_key(), net.node(1).publisher_key());
    net.publish(0, "shared", "1.0.0", b"the founder's first version").await;
    net.wait_searchable_everywhere("shared").await;
    // A third node goes offline before the owners change.
    let late = net.add_node().await;
    net.wait_searchable_everywhere("shared").await;
    net.stop(late).await;

    // Not an owner yet: the partner cannot publish the name.
    let before = net.node(1).set_owners(&name("shared"), vec![partner]).await.unwrap_err();
    assert!(before.to_string().contains("not"), "{before}");

    net.node(0).set_owners(&name("shared"), vec![founder, partner]).await.expect("add a co-owner");
    let follows = wait_until(DEADLINE, || async {
        net.node(1).get_package(&name("shared")).await.is_ok_and(|index| index.index().is_owner(&partner))
    })
    .await;
    assert!(follows, "the partner's node never saw itself as an owner");
    let published = net.publish(1, "shared", "1.1.0", b"the partner's version").await;
    assert!(published.created);
    let v11 = parse_version("1.1.0").unwrap();
    for index in [0, 1] {
        let seen =
            wait_until(DEADLINE, || async { net.node(index).get_version(&name("shared"), &v11).await.is_ok() }).await;
        assert!(seen, "node {index} never got the co-owner's version");
        let claims = net.node(index).claims(&name("shared")).await.unwrap();
        assert!(!claims.contested(), "node {index} took the co-owner for another claim: {claims:?}");
    }
    // The founder yanks the partner's version: both are owners.
    net.node(0).set_yanked(&name("shared"), &v11, true).await.expect("a co-owner yanks");

    // The late node comes back: it missed the change, and follows the chain of owners.
    net.restart(late, Some(&net.address(0).await)).await;
    let caught_up =
        wait_until(DEADLINE, || async { net.node(late).get_version(&name("shared"), &v11).await.is_ok() }).await;
    assert!(caught_up, "the late node never accepted the co-owner's version");
    let index = net.node(late).get_package(&name("shared")).await.unwrap();
    assert_eq!(index.index().current_owners(), [founder, partner]);
    assert!(index.index().entry(&v11).unwrap().yanked);
    assert!(!net.node(late).claims(&name("shared")).await.unwrap().contested());
    assert_eq!(net.node(late).get_version(&name("shared"), &v1()).await.unwrap().manifest().publisher, founder);
}

#[test]
fn rotating_the_key_hands_every_package_over_and_peers_follow() {
    let first = TestNode::start();
    let second = TestNode::start_with(&["--bootstrap", &first.listen_address()]);
    for package in ["alpha", "beta"] {
        let dir = first.scratch().join(package);
        write_package(&dir, &manifest(package, "1.0.0", "handed over"), &[("a.txt", package.as_bytes())]);
        first.ok(&["publish", dir.to_str().unwrap()]);
    }
    let seen = wait_until_sync(DEADLINE, || second.run(&["info", "beta"]).success);
    assert!(seen, "the second node never got the packages");
    let old = first.json(&["key", "show"])["public_key"].as_str().unwrap().to_owned();

    let rotated = first.json(&["key", "rotate"]);
    let new = rotated["new"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["packages"], serde_json::json!(["alpha", "beta"]));
    assert_eq!(first.json(&["key", "show"])["public_key"], new.as_str());
    assert!(first.data_dir().join("keys/keyring").join(format!("{old}.key")).exists(), "the old key is kept");

    // The new key publishes; the second node follows the hand-over and takes it.
    let dir = first.scratch().join("alpha-2");
    write_package(&dir, &manifest("alpha", "2.0.0", "by the new key"), &[("a.txt", b"v2")]);
    first.ok(&["publish", dir.to_str().unwrap()]);
    let owners = first.json(&["owner", "list", "alpha"]);
    assert_eq!(owners["owners"], serde_json::json!([new]));
    let followed = wait_until_sync(DEADLINE, || second.run(&["info", "alpha@2.0.0"]).success);
    assert!(followed, "the second node never accepted the new key's version:\n{}", second.log());
    let info = second.json(&["info", "alpha"]);
    assert_eq!(
        info["claims"]["claims"].as_array().unwrap().len(),
        1,
        "the new key was taken for another claim: {info}"
    );
    assert_eq!(second.json(&["owner", "list", "alpha"])["owners"], serde_json::json!([new]));

    // Owners are managed from the CLI too; the last owner cannot be removed.
    let error = first.fails(&["owner", "remove", "alpha", &new]);
    assert!(error.contains("at least one owner"), "{error}");
    first.ok(&["owner", "add", "beta", &old]);
    assert_eq!(first.json(&["owner", "list", "beta"])["owners"], serde_json::json!([new, old]));
}
