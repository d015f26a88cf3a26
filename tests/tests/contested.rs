//! Issue 13 (#1), through the real binary: two publishers who never saw each other
//! claim one name; once their nodes meet, both show the name as contested (in
//! `info`, in `search` and in the API) with no strike or ban, and a user picks the
//! claim they want with `agora trust`, which then is what `fetch` gets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use agora_tests::{TestNode, manifest, read_tree, wait_until, write_package};

const DEADLINE: Duration = Duration::from_secs(30);

fn publish(node: &TestNode, content: &[u8]) {
    let dir = node.scratch().join("conflict");
    write_package(&dir, &manifest("conflict-pkg", "1.0.0", "claimed twice"), &[("who.txt", content)]);
    node.ok(&["publish", dir.to_str().unwrap()]);
}

#[test]
fn a_name_claimed_twice_is_shown_as_contested_and_the_user_chooses() {
    let first = TestNode::start();
    let mut second = TestNode::start();
    publish(&first, b"the first publisher's");
    publish(&second, b"the second publisher's");
    let first_key = first.json(&["key", "show"])["public_key"].as_str().unwrap().to_owned();

    // The second node meets the first.
    assert!(second.stop());
    second.launch(&["--bootstrap", &first.listen_address()]);
    for (which, node) in [("first", &first), ("second", &second)] {
        let contested =
            wait_until(DEADLINE, || node.run(&["info", "conflict-pkg"]).stdout.contains("contested: 2 keys"));
        assert!(contested, "the {which} node never showed the conflict:\n{}", node.run(&["info", "conflict-pkg"]));
        let search = node.ok(&["search", "conflict"]).stdout;
        assert!(search.contains("conflict-pkg (contested)"), "{which}: {search}");
        let info = node.json(&["info", "conflict-pkg"]);
        assert_eq!(info["claims"]["claims"].as_array().unwrap().len(), 2, "{which}: {info}");
        let peers = node.json(&["peers"]);
        for peer in peers.as_array().unwrap() {
            let standing = &peer["standing"];
            assert!(standing.is_null() || standing["invalid"] == 0, "{which} struck a peer: {peer}");
            assert!(standing.is_null() || standing["banned_until"] == 0, "{which} banned a peer: {peer}");
        }
    }
    // Each node serves the claim it saw first: its own.
    let served = |node: &TestNode| node.json(&["info", "conflict-pkg"])["index"]["index"]["owner"].clone();
    assert_eq!(served(&first), first_key.as_str());
    assert_ne!(served(&second), first_key.as_str());

    // A key that claims nothing is refused, and nothing changes.
    let stranger = agora::SecretKey::generate().public_key().to_hex();
    let error = second.fails(&["trust", "conflict-pkg", &stranger]);
    assert!(error.contains("no claim to `conflict-pkg`"), "{error}");
    assert_ne!(served(&second), first_key.as_str());

    // The second node's user prefers the first publisher's package.
    let trusted = second.ok(&["trust", "conflict-pkg", &first_key]).stdout;
    assert!(trusted.contains("1 other claim kept"), "{trusted}");
    assert_eq!(served(&second), first_key.as_str());
    let info = second.ok(&["info", "conflict-pkg"]).stdout;
    assert!(info.contains("(you chose it)"), "{info}");
    second.ok(&["fetch", "conflict-pkg", "-o", "out"]);
    let files = read_tree(&second.scratch().join("out"));
    let who = files.iter().find(|(path, _)| path.ends_with("who.txt")).expect("who.txt");
    assert_eq!(who.1, b"the first publisher's");

    // The choice survives a restart.
    assert!(second.stop());
    second.launch(&[]);
    assert_eq!(served(&second), first_key.as_str());
}
