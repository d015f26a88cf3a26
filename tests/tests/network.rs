//! Real nodes over TCP on 127.0.0.1: publish on one node, find, inspect and fetch
//! from every other one.

#![allow(clippy::unwrap_used)]

use agora::{Registry, parse_version};
use agora_tests::net::{DEADLINE, TestNet, artifact_bytes, name, searchable, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_publish_search_info_fetch() {
    let net = TestNet::new(2).await;
    let content = b"two node content".repeat(10_000);
    let published = net.publish(0, "twin", "1.0.0", &content).await;
    net.wait_searchable_everywhere("twin").await;
    let version = parse_version("1.0.0").unwrap();
    let manifest = net.node(1).get_version(&name("twin"), &version).await.unwrap();
    assert_eq!(manifest, published.manifest);
    let artifact = net.node(1).fetch_artifact(&name("twin"), &version).await.unwrap();
    let expected = artifact_bytes(&net.node(0).fetch_artifact(&name("twin"), &version).await.unwrap().data);
    assert_eq!(artifact_bytes(&artifact.data), expected);
    assert!(wait_until(DEADLINE, || searchable(net.node(1), "twin")).await);
}
