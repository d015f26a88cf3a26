//! Adversarial peers: a raw libp2p swarm speaking Agora's protocols
//! ([`agora_tests::rogue`]) sends forged, foreign-owned, rewritten, oversized and garbage
//! data to an honest in-process node. Every test checks that the bad input is
//! neither stored nor served, that it is counted against the rogue where that
//! code path keeps strikes, and that the honest node keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agora::net::{
    Announcement, ChunkRequest, ChunkResponse, PeerId, RecordKey, SyncEntry, SyncRequest, SyncResponse, Wire,
};
use agora::{
    ArtifactInfo, Digest, Node, PackageIndex, PackageMetadata, PublicKey, Publisher, Registry, SecretKey,
    SignedManifest, SignedPackageIndex, VersionEntry, parse_version,
};
use agora_tests::net::{
    DEADLINE, TestNet, artifact_path, downloads_dir, name, never_block, searchable, staging_files, wait_providers,
    wait_until,
};
use agora_tests::rogue::{Proto, Reply, Rogue, frame, unframe};
use agora_tests::{files_under, unix_now};
use libp2p::kad;

// ---------------------------------------------------------------------------
// Signed data a rogue can make: with its own keys, never with the honest ones.

/// A publisher key the rogue controls.
struct Author {
    secret: SecretKey,
}

impl Author {
    fn new() -> Self {
        Self { secret: SecretKey::generate() }
    }

    fn key(&self) -> PublicKey {
        self.secret.public_key()
    }

    /// A valid manifest and sequence-1 index for `name@version` with `content`.
    fn publish(&self, package: &str, version: &str, content: &[u8]) -> (SignedManifest, SignedPackageIndex) {
        let metadata = PackageMetadata::new(
            name(package),
            parse_version(version).unwrap(),
            format!("package {package} from a rogue"),
        );
        let info = ArtifactInfo::compute(content, 4096).unwrap();
        Publisher::new(self.secret.clone()).publish(metadata, info, None, unix_now()).unwrap()
    }

    /// An index of `package` with `sequence`, listing the versions of `manifests`.
    fn index(&self, package: &str, sequence: u64, manifests: &[&SignedManifest]) -> SignedPackageIndex {
        let versions = manifests
            .iter()
            .map(|manifest| VersionEntry {
                version: manifest.manifest().version().clone(),
                digest: manifest.manifest().artifact.digest,
                size: manifest.manifest().artifact.size,
                yanked: false,
                publisher: None,
            })
            .collect();
        PackageIndex::new(name(package), self.key(), sequence, unix_now(), versions).sign(&self.secret).unwrap()
    }
}

fn publish_announcement(manifest: &SignedManifest, index: &SignedPackageIndex) -> Vec<u8> {
    Announcement::Publish { manifest: manifest.to_bytes(), index: index.to_bytes() }.encode()
}

/// `bytes` with the last byte (inside the 64-byte signature) flipped.
fn flip_signature(mut bytes: Vec<u8>) -> Vec<u8> {
    *bytes.last_mut().unwrap() ^= 0x01;
    bytes
}

fn index_key(package: &str) -> RecordKey {
    RecordKey::Index(name(package))
}

fn manifest_key(package: &str, version: &str) -> RecordKey {
    RecordKey::Manifest(name(package), parse_version(version).unwrap())
}

// ---------------------------------------------------------------------------
// What the honest node holds.

/// The index of `package` in `node`'s catalog (no network fallback).
async fn catalog_index(node: &Node, package: &str) -> Option<SignedPackageIndex> {
    match node.registry().get_package(&name(package)).await {
        Ok(index) => Some(index),
        Err(agora::core::Error::PackageNotFound(_)) => None,
        Err(error) => panic!("reading `{package}` from the catalog: {error}"),
    }
}

/// What `node`'s DHT lookup returns for `key` (its own store: the rogue is a
/// DHT client, so the honest node has nobody else to ask).
async fn dht_value(node: &Node, key: RecordKey) -> Option<Vec<u8>> {
    node.network_handle().expect("network").get_record(key).await.expect("record lookup")
}

async fn dht_records(node: &Node) -> usize {
    node.status().await.unwrap().network.unwrap().dht_records
}

/// Waits until `node` counts at least `at_least` strikes against `peer`.
async fn wait_strikes(node: &Node, peer: &PeerId, at_least: u32, what: &str) {
    let counted = wait_until(DEADLINE, || async { node.strikes(peer) >= at_least }).await;
    assert!(counted, "{what}: expected {at_least} strikes against the rogue, the node counts {}", node.strikes(peer));
}

/// One honest node that never blocks anyone, and a rogue connected to it; returns
/// the net, the rogue and the node's peer id.
async fn node_and_rogue() -> (TestNet, Rogue, PeerId) {
    let net = TestNet::with(1, never_block).await;
    let rogue = Rogue::spawn();
    let honest = rogue.connect(net.node(0)).await;
    (net, rogue, honest)
}

/// The honest node still publishes, finds and serves its own packages.
async fn assert_still_works(net: &TestNet, index: usize, package: &str) {
    let node = net.node(index);
    node.status().await.expect("status still answers");
    let published = net.publish(index, package, "1.0.0", format!("{package} honest content").as_bytes()).await;
    assert!(published.created);
    assert!(wait_until(DEADLINE, || searchable(node, package)).await, "`{package}` is searchable");
    let artifact = node.fetch_artifact(&name(package), &parse_version("1.0.0").unwrap()).await.expect("fetch");
    assert_eq!(artifact.manifest(), &published.manifest);
}

// ---------------------------------------------------------------------------
// 1. Forged DHT records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_dht_records_are_refused_and_struck() {
    let (net, rogue, honest) = node_and_rogue().await;
    let node = net.node(0);
    let records_before = dht_records(node).await;
    let author = Author::new();
    let (manifest, index) = author.publish("forged", "1.0.0", b"forged content");
    let (_, elsewhere) = author.publish("elsewhere", "1.0.0", b"elsewhere content");

    let attacks: Vec<(&str, kad::RecordKey, Vec<u8>)> = vec![
        ("an index with a flipped signature byte", index_key("forged").to_kad(), flip_signature(index.to_bytes())),
        (
            "a manifest with a flipped signature byte",
            manifest_key("forged", "1.0.0").to_kad(),
            flip_signature(manifest.to_bytes()),
        ),
        ("a valid index under another name's key", index_key("forged").to_kad(), elsewhere.to_bytes()),
        ("garbage under an index key", index_key("garbage").to_kad(), b"not a signed index".to_vec()),
        ("a record under a key that is not Agora's", kad::RecordKey::new(&"/not/agora"), index.to_bytes()),
    ];
    for (strikes, (what, key, value)) in (1..).zip(attacks) {
        let query = rogue.put_record_to(key, value, honest).await;
        rogue.query_result(query).await.unwrap_or_else(|error| panic!("{what}: the put was not answered: {error}"));
        wait_strikes(node, &rogue.peer_id, strikes, what).await;
    }

    assert_eq!(dht_value(node, index_key("forged")).await, None, "the forged index is not in the DHT store");
    assert_eq!(dht_value(node, manifest_key("forged", "1.0.0")).await, None, "the forged manifest is not stored");
    assert_eq!(dht_value(node, index_key("garbage")).await, None);
    assert_eq!(dht_records(node).await, records_before, "no record was added to the DHT store");
    assert!(catalog_index(node, "forged").await.is_none(), "the catalog does not hold the forged package");
    assert!(catalog_index(node, "elsewhere").await.is_none());
    assert!(!searchable(node, "forged").await);
    assert_still_works(&net, 0, "after-forgery").await;
}

// ---------------------------------------------------------------------------
// 2. A known name signed by another key. Such a claim is refused (the name keeps
// its first owner) but is honest disagreement, not misbehaviour (issue 13: two
// publishers claiming one name ended in mutual bans that split the network), so
// it never strikes the peer that sent it. Forged and malformed records still do.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_name_is_not_taken_over_through_dht_or_sync() {
    let net = TestNet::with(1, never_block).await;
    let node = net.node(0);
    let published = net.publish(0, "claimed", "1.0.0", b"the owner's content").await;
    assert!(wait_until(DEADLINE, || async { dht_value(node, index_key("claimed")).await.is_some() }).await);

    let thief = Author::new();
    let (stolen_manifest, _) = thief.publish("claimed", "1.0.0", b"the thief's content");
    let (newer_manifest, _) = thief.publish("claimed", "2.0.0", b"the thief's new version");
    let stolen_index = thief.index("claimed", 5, &[&stolen_manifest, &newer_manifest]);

    // Through the DHT: the other key's index and manifest are refused without a
    // strike; a forged copy then strikes once (and marks that the puts before it
    // were handled).
    let rogue = Rogue::spawn();
    let honest = rogue.connect(node).await;
    for (key, value) in [
        (index_key("claimed"), stolen_index.to_bytes()),
        (manifest_key("claimed", "2.0.0"), newer_manifest.to_bytes()),
        (index_key("claimed"), flip_signature(stolen_index.to_bytes())),
    ] {
        let query = rogue.put_record_to(key.to_kad(), value, honest).await;
        rogue.query_result(query).await.expect("put answered");
    }
    wait_strikes(node, &rogue.peer_id, 1, "a forged record").await;
    assert_eq!(node.strikes(&rogue.peer_id), 1, "another key's valid claim counted as a strike");

    // Through catalog sync: a second rogue answers the honest node's sync with
    // the stolen index, a forged one and garbage.
    let syncing = Rogue::spawn();
    let page = SyncResponse {
        entries: vec![
            SyncEntry { index: stolen_index.to_bytes(), manifests: vec![newer_manifest.to_bytes()] },
            SyncEntry { index: flip_signature(stolen_index.to_bytes()), manifests: Vec::new() },
            SyncEntry { index: b"garbage".to_vec(), manifests: vec![b"more garbage".to_vec()] },
        ],
        next: None,
    };
    syncing.set_reply(Proto::Sync, Reply::Fixed(frame(&page.encode()))).await;
    syncing.connect(node).await;
    syncing.poll("a sync request", |state| (!state.requests(Proto::Sync).is_empty()).then_some(())).await;
    wait_strikes(node, &syncing.peer_id, 2, "a sync page with a forged and a garbage index").await;
    assert_eq!(node.strikes(&syncing.peer_id), 2, "the other key's valid claim in the page counted as a strike");

    let index = node.get_package(&name("claimed")).await.unwrap();
    assert_eq!(index.index().owner, node.publisher_key(), "the owner did not change");
    assert_eq!(index.index().sequence, 1);
    assert_eq!(index.index().versions.len(), 1);
    let version = node.get_version(&name("claimed"), &parse_version("1.0.0").unwrap()).await.unwrap();
    assert_eq!(version, published.manifest);
    assert!(catalog_index(node, "claimed").await.unwrap().index().entry(&parse_version("2.0.0").unwrap()).is_none());
    assert_still_works(&net, 0, "after-takeover").await;
}

/// The node's own publishes do not teach the DHT validator their owner, so a
/// foreign-signed index with a higher sequence replaces the owner's record in
/// the local DHT store (the catalog refuses it; the DHT serves it on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_name_takeover_never_enters_the_dht_store() {
    let net = TestNet::with(1, never_block).await;
    let node = net.node(0);
    net.publish(0, "claimed", "1.0.0", b"the owner's content").await;
    assert!(wait_until(DEADLINE, || async { dht_value(node, index_key("claimed")).await.is_some() }).await);
    let thief = Author::new();
    let (stolen_manifest, _) = thief.publish("claimed", "1.0.0", b"the thief's content");
    let stolen_index = thief.index("claimed", 5, &[&stolen_manifest]);

    let rogue = Rogue::spawn();
    let honest = rogue.connect(node).await;
    let query = rogue.put_record_to(index_key("claimed").to_kad(), stolen_index.to_bytes(), honest).await;
    rogue.query_result(query).await.expect("put answered");
    // A forged copy after it strikes once: the contested one before it did not.
    let query =
        rogue.put_record_to(index_key("claimed").to_kad(), flip_signature(stolen_index.to_bytes()), honest).await;
    rogue.query_result(query).await.expect("put answered");
    wait_strikes(node, &rogue.peer_id, 1, "a forged index").await;
    assert_eq!(node.strikes(&rogue.peer_id), 1, "another key's valid claim counted as a strike");

    let served = dht_value(node, index_key("claimed")).await.expect("the owner's record");
    let served = SignedPackageIndex::from_bytes(&served).unwrap();
    assert_eq!(served.index().owner, node.publisher_key(), "the DHT store serves the thief's index");
}

// ---------------------------------------------------------------------------
// 3. Rewriting a published version over gossip.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_a_published_version_over_gossip_is_rejected() {
    let net = TestNet::with(1, never_block).await;
    let node = net.node(0);
    let published = net.publish(0, "stable", "1.0.0", b"stable content").await;
    let rogue = Rogue::spawn();
    rogue.connect(node).await;
    let v1 = parse_version("1.0.0").unwrap();

    // Another key claims the honest package's name with other bytes for 1.0.0: a
    // contested claim, refused, not a strike (the owner's own rewrites below are).
    let thief = Author::new();
    let (fake, _) = thief.publish("stable", "1.0.0", b"rewritten content");
    rogue.gossip(publish_announcement(&fake, &thief.index("stable", 2, &[&fake]))).await;

    // The rogue's own name, first seen here: accepted. Then it rewrites its 1.0.0.
    let owner = Author::new();
    let (original, first) = owner.publish("mine", "1.0.0", b"original content");
    rogue.gossip(publish_announcement(&original, &first)).await;
    assert!(wait_until(DEADLINE, || async { catalog_index(node, "mine").await.is_some() }).await);
    assert_eq!(node.get_version(&name("stable"), &v1).await.unwrap(), published.manifest);
    assert_eq!(node.get_package(&name("stable")).await.unwrap().index().owner, node.publisher_key());
    assert_eq!(node.strikes(&rogue.peer_id), 0, "neither another key's claim nor a valid first publish strikes");

    let (rewritten, same_sequence) = owner.publish("mine", "1.0.0", b"rewritten content");
    let attacks = [
        (
            "1.0.0 rewritten in a successor index",
            publish_announcement(&rewritten, &owner.index("mine", 2, &[&rewritten])),
        ),
        ("1.0.0 rewritten under the same sequence", publish_announcement(&rewritten, &same_sequence)),
        (
            "an index update rewriting 1.0.0",
            Announcement::Index { index: owner.index("mine", 3, &[&rewritten]).to_bytes() }.encode(),
        ),
        (
            "an index update dropping 1.0.0",
            Announcement::Index { index: owner.index("mine", 4, &[]).to_bytes() }.encode(),
        ),
    ];
    for (strikes, (what, data)) in (1..).zip(attacks) {
        rogue.gossip(data).await;
        wait_strikes(node, &rogue.peer_id, strikes, what).await;
    }
    assert_eq!(node.strikes(&rogue.peer_id), 4, "exactly the owner's four rewrites struck");
    let index = catalog_index(node, "mine").await.unwrap();
    assert_eq!(index.index().sequence, 1);
    assert_eq!(index.index().entry(&v1).unwrap().digest, original.manifest().artifact.digest);
    assert_eq!(node.get_version(&name("mine"), &v1).await.unwrap(), original);
    assert_still_works(&net, 0, "after-rewrite").await;
}

/// An owner that signs two different indexes with one sequence is proven to have
/// equivocated: the node keeps the proof (no strike: the peer may only relay
/// what the owner signed), gossips it so other nodes flag the owner too, and
/// search marks the owner's packages. A garbage proof is struck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_owner_is_flagged_on_every_node_without_a_strike() {
    let net = TestNet::with(2, never_block).await;
    net.wait_connected().await;
    let (node, other) = (net.node(0), net.node(1));
    let rogue = Rogue::spawn();
    rogue.connect(node).await;

    let owner = Author::new();
    let (first, index) = owner.publish("twofaced", "1.0.0", b"what some peers are told");
    rogue.gossip(publish_announcement(&first, &index)).await;
    net.wait_searchable_everywhere("twofaced").await;
    let (second, _) = owner.publish("twofaced", "2.0.0", b"what other peers are told");
    let lie = owner.index("twofaced", index.index().sequence, &[&first, &second]);
    rogue.gossip(Announcement::Index { index: lie.to_bytes() }.encode()).await;

    for (at, node) in [(0, node), (1, other)] {
        let flagged = wait_until(DEADLINE, || async {
            node.claims(&name("twofaced")).await.is_ok_and(|claims| claims.equivocated == [owner.key()])
        })
        .await;
        assert!(flagged, "node {at} never flagged the equivocating owner");
        let hits = node.search(&agora::Query::new("twofaced")).await.unwrap().hits;
        assert!(hits.iter().all(|hit| hit.equivocated) && !hits.is_empty(), "node {at}: {hits:?}");
        assert_eq!(node.get_package(&name("twofaced")).await.unwrap(), index, "node {at} keeps the first index");
    }
    assert_eq!(node.strikes(&rogue.peer_id), 0, "relaying an owner's two signatures is not the relayer's fault");

    rogue.gossip(Announcement::Equivocation { proof: b"not a proof".to_vec() }.encode()).await;
    wait_strikes(node, &rogue.peer_id, 1, "a garbage equivocation proof").await;
    assert_still_works(&net, 0, "after-equivocation").await;
}

/// A publish announcement whose (valid, self-owned) index and manifest disagree is
/// rejected and struck, yet the index lands in the catalog: the rogue gets the
/// name (trust on first use) and a searchable version without a manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_publish_announcement_leaves_nothing_behind() {
    let (net, rogue, _) = node_and_rogue().await;
    let node = net.node(0);
    let author = Author::new();
    let (listed, _) = author.publish("halfway", "1.0.0", b"what the index lists");
    let (shipped, _) = author.publish("halfway", "1.0.0", b"what the manifest describes");
    rogue.gossip(publish_announcement(&shipped, &author.index("halfway", 1, &[&listed]))).await;
    wait_strikes(node, &rogue.peer_id, 1, "a publish whose manifest contradicts its index").await;
    assert!(catalog_index(node, "halfway").await.is_none(), "the rejected announcement's index was stored");
    assert!(!searchable(node, "halfway").await);
}

/// Announcements sent back to back reach the catalog writer together and are
/// committed in batches; a bad one inside a batch is rolled back alone and struck,
/// every good one around it lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_announcement_in_a_burst_takes_down_only_itself() {
    let (net, rogue, _) = node_and_rogue().await;
    let node = net.node(0);
    let author = Author::new();
    let burst = 300;
    for i in 0..burst {
        if i == burst / 2 {
            let (listed, _) = author.publish("contradiction", "1.0.0", b"what the index lists");
            let (shipped, _) = author.publish("contradiction", "1.0.0", b"what the manifest describes");
            rogue.gossip(publish_announcement(&shipped, &author.index("contradiction", 1, &[&listed]))).await;
        }
        let package = format!("burst-{i:03}");
        let (manifest, index) = author.publish(&package, "1.0.0", package.as_bytes());
        rogue.gossip(publish_announcement(&manifest, &index)).await;
    }
    let all_landed = wait_until(DEADLINE, || async {
        node.store().packages().stats().is_ok_and(|stats| stats.packages as usize == burst)
    })
    .await;
    assert!(all_landed, "the catalog holds {:?} packages, {burst} were announced", node.store().packages().stats());
    wait_strikes(node, &rogue.peer_id, 1, "the contradicting announcement in the burst").await;
    assert_eq!(node.strikes(&rogue.peer_id), 1, "only the bad announcement is a strike");
    assert!(catalog_index(node, "contradiction").await.is_none());
    for i in [0, burst / 2 - 1, burst / 2, burst - 1] {
        let package = format!("burst-{i:03}");
        let manifest = node.get_version(&name(&package), &parse_version("1.0.0").unwrap()).await.unwrap();
        assert_eq!(manifest.manifest().artifact.digest, Digest::of(package.as_bytes()));
    }
}

// ---------------------------------------------------------------------------
// 4. Gossip that fails validation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_tampered_gossip_is_rejected() {
    let net = TestNet::with(2, never_block).await;
    let node = net.node(0);
    let rogue = Rogue::spawn();
    rogue.connect(node).await;
    let author = Author::new();
    let (manifest, index) = author.publish("tampered", "1.0.0", b"tampered content");

    // A byte of the manifest body (its description) changed after signing.
    let mut tampered = manifest.to_bytes();
    let at = tampered.windows(5).position(|window| window == b"from ").expect("the description");
    tampered[at] ^= 0x20;
    let mut trailing = publish_announcement(&manifest, &index);
    trailing.push(0);
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", b"\xde\xad\xbe\xef garbage on the topic".to_vec()),
        ("an unknown announcement tag", vec![7, 0, 0, 0, 0]),
        ("an index announcement holding garbage", Announcement::Index { index: b"junk".to_vec() }.encode()),
        (
            "a publish with a tampered manifest",
            Announcement::Publish { manifest: tampered, index: index.to_bytes() }.encode(),
        ),
        (
            "a publish with a forged index signature",
            Announcement::Publish { manifest: manifest.to_bytes(), index: flip_signature(index.to_bytes()) }.encode(),
        ),
        ("a valid publish with a trailing byte", trailing),
    ];
    for (strikes, (what, data)) in (1..).zip(attacks) {
        rogue.gossip(data).await;
        wait_strikes(node, &rogue.peer_id, strikes, what).await;
    }
    assert!(catalog_index(node, "tampered").await.is_none());
    assert!(!searchable(node, "tampered").await);
    assert_eq!(dht_value(node, index_key("tampered")).await, None);

    // An honest publisher's announcement still lands.
    net.publish(1, "honest-news", "1.0.0", b"honest news").await;
    net.wait_searchable_everywhere("honest-news").await;
    assert_eq!(node.strikes(&net.node(1).network_handle().unwrap().peer_id()), 0);
    assert_still_works(&net, 0, "after-garbage").await;
}

// ---------------------------------------------------------------------------
// 5. Oversized gossip and records.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_gossip_and_records_are_dropped() {
    let (net, rogue, honest) = node_and_rogue().await;
    let node = net.node(0);
    let records_before = dht_records(node).await;

    // Past gossipsub's transmit limit: dropped by the codec, before the node sees it.
    rogue.gossip(Announcement::Index { index: vec![0x42; 2 * 1024 * 1024 + 1] }.encode()).await;
    // Past the packet limit of Kademlia (2 MiB): dropped by the codec.
    let huge = rogue.put_record_to(index_key("huger").to_kad(), vec![0x42; 3 * 1024 * 1024], honest).await;
    // Within the packet limit, over the record limit (1 MiB): refused and struck.
    let big = rogue.put_record_to(index_key("huge").to_kad(), vec![0x42; 1024 * 1024 + 1024], honest).await;
    rogue.query_result(big).await.expect("the big put is answered");
    wait_strikes(node, &rogue.peer_id, 1, "a record over 1 MiB").await;
    assert!(rogue.query_result(huge).await.is_err(), "the honest node never acknowledges a 3 MiB record");

    assert_eq!(dht_value(node, index_key("huge")).await, None);
    assert_eq!(dht_value(node, index_key("huger")).await, None);
    assert_eq!(dht_records(node).await, records_before);
    assert!(catalog_index(node, "huge").await.is_none());
    assert_eq!(node.status().await.unwrap().registry.packages, 0, "nothing entered the catalog");
    assert_still_works(&net, 0, "after-oversize").await;
}

// ---------------------------------------------------------------------------
// 6. Bad chunks from a provider.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunks_fail_the_download_and_are_never_stored() {
    let (net, rogue, _) = node_and_rogue().await;
    let node = net.node(0);

    // The rogue's own, valid package: the honest node stores its manifest and index.
    let author = Author::new();
    let content = b"bait content ".repeat(1000);
    let (manifest, index) = author.publish("bait", "1.0.0", &content);
    let info = manifest.manifest().artifact.clone();
    assert!(info.chunks.len() > 1);
    rogue.gossip(publish_announcement(&manifest, &index)).await;
    let v1 = parse_version("1.0.0").unwrap();
    assert!(wait_until(DEADLINE, || async { node.registry().get_version(&name("bait"), &v1).await.is_ok() }).await);

    // It provides the artifact and answers every chunk request with bad bytes.
    rogue.start_providing(info.digest).await;
    wait_providers(node, info.digest, &[rogue.peer_id]).await;

    let chunk_len = info.chunk_range(0).unwrap().1 as usize;
    let replies: Vec<(&str, Vec<u8>)> = vec![
        ("a chunk of the right length with the wrong bytes", frame(&ChunkResponse::Data(vec![0; chunk_len]).encode())),
        ("a short chunk", frame(&ChunkResponse::Data(content[..100].to_vec()).encode())),
        (
            "the wrong chunk (chunk 1 for chunk 0)",
            frame(&ChunkResponse::Data(content[chunk_len..2 * chunk_len].to_vec()).encode()),
        ),
        ("an unknown response tag", frame(&[9, 1, 2, 3])),
        ("a frame length of 0xFFFFFFFF", vec![0xff; 4]),
    ];
    for (strikes, (what, reply)) in (1..).zip(replies) {
        rogue.set_reply(Proto::Artifact, Reply::Fixed(reply)).await;
        let requests = rogue.requests(Proto::Artifact).await;
        let fetched = node.fetch_artifact(&name("bait"), &v1).await;
        assert!(fetched.is_err(), "{what}: the download must fail, got {fetched:?}");
        assert!(rogue.requests(Proto::Artifact).await > requests, "{what}: the rogue was asked");
        wait_strikes(node, &rogue.peer_id, strikes, what).await;
        assert!(!artifact_path(node, &info.digest).exists(), "{what}: no artifact file");
        assert_staging_holds_only_verified_chunks(node, &info, what);
    }
    let stored = files_under(&node.data_dir().join("store").join("artifacts"));
    assert!(stored.is_empty(), "no artifact file at all: {stored:?}");
    assert!(matches!(
        node.registry().fetch_artifact(&name("bait"), &v1).await,
        Err(agora::core::Error::ArtifactUnavailable { .. })
    ));
    assert_eq!(node.status().await.unwrap().registry.artifacts, 0);
    assert_still_works(&net, 0, "after-bad-chunks").await;
}

/// A failed transfer may keep staging files for resuming, but only with chunks
/// that verified; with none verified it keeps nothing.
fn assert_staging_holds_only_verified_chunks(node: &agora::Node, info: &agora::ArtifactInfo, what: &str) {
    let (part, have) = staging_files(node, &info.digest);
    let Ok(marks) = std::fs::read(&have) else {
        assert!(files_under(&downloads_dir(node)).is_empty(), "{what}: no staging file without a chunk map");
        return;
    };
    let bytes = std::fs::read(&part).unwrap();
    assert!(marks.contains(&1), "{what}: staging kept although no chunk verified");
    for (index, mark) in marks.iter().enumerate() {
        if *mark == 1 {
            let (offset, len) = info.chunk_range(index).unwrap();
            let chunk = &bytes[offset as usize..offset as usize + len as usize];
            assert_eq!(Digest::of(chunk), info.chunks[index], "{what}: staged chunk {index} does not verify");
        }
    }
}

// ---------------------------------------------------------------------------
// 7. Garbage on the request-response protocols.

/// Malformed requests, each one on both protocols.
fn junk_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("a frame length of 0xFFFFFFFF", vec![0xff; 4]),
        ("an empty frame", frame(&[])),
        ("a frame of words", frame(b"definitely not a request")),
        ("a frame over the protocol's limit", frame(&[0; 300])),
        ("a valid chunk request with trailing bytes", {
            let mut request = ChunkRequest { digest: Digest::of(b"x"), index: 0 }.encode();
            request.extend_from_slice(&[0; 3]);
            frame(&request)
        }),
        ("a sync request with a page limit of 0", frame(&[0, 0, 0])),
        ("a truncated frame", vec![0, 0, 0, 50, 1, 2, 3]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_requests_get_no_answer_and_the_node_keeps_serving() {
    let mut net = TestNet::with(1, never_block).await;
    let published = net.publish(0, "served", "1.0.0", &b"served content ".repeat(1000)).await;
    let node = net.node(0).clone();
    let rogue = Rogue::spawn();
    let honest = rogue.connect(&node).await;

    for proto in [Proto::Artifact, Proto::Sync] {
        for (what, bytes) in junk_requests() {
            let answer = rogue.request(proto, honest, bytes).await;
            assert!(answer.is_err(), "{proto:?}, {what}: the node must not answer, it sent {answer:?}");
        }
    }

    // The node still answers well-formed requests, on the same connection.
    node.status().await.expect("status still answers");
    let page = rogue.request(Proto::Sync, honest, frame(&SyncRequest { after: None, limit: 10 }.encode())).await;
    let page = SyncResponse::decode(unframe(&page.expect("a sync page"))).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].manifests, vec![published.manifest.to_bytes()]);
    let info = &published.manifest.manifest().artifact;
    let request = ChunkRequest { digest: info.digest, index: 0 };
    let chunk = rogue.request(Proto::Artifact, honest, frame(&request.encode())).await.expect("a chunk");
    match ChunkResponse::decode(unframe(&chunk)).unwrap() {
        ChunkResponse::Data(bytes) => assert_eq!(Digest::of(&bytes), info.chunks[0]),
        other => panic!("expected chunk 0, got {other:?}"),
    }

    // And an honest newcomer still syncs the catalog from it.
    let newcomer = net.add_node().await;
    assert!(wait_until(DEADLINE, || searchable(net.node(newcomer), "served")).await, "the newcomer synced");
    assert_eq!(node.strikes(&net.node(newcomer).network_handle().unwrap().peer_id()), 0);
    assert_still_works(&net, 0, "after-junk").await;
}

/// libp2p-request-response 0.30 never reports a failed `read_request` to the
/// behaviour (the request id is not pending yet, so it only logs at debug), so
/// the actor's `InboundFailure::Io(InvalidData)` branch never runs: garbage
/// requests cost the sender nothing. (Garbage *responses* are struck: see the
/// bad-chunk test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_requests_are_struck() {
    let (net, rogue, honest) = node_and_rogue().await;
    let node = net.node(0);
    let mut strikes = 0;
    for proto in [Proto::Artifact, Proto::Sync] {
        // All but the truncated frame, which may just be a broken stream.
        for (what, bytes) in junk_requests().into_iter().filter(|(what, _)| !what.contains("truncated")) {
            assert!(rogue.request(proto, honest, bytes).await.is_err());
            strikes += 1;
            wait_strikes(node, &rogue.peer_id, strikes, &format!("{proto:?}: {what}")).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The DHT store and the catalog must agree on what is valid.

/// The validator only checks signatures and known owners, so a record the
/// owner signed but that breaks the index rules (1.0.0 rewritten) enters the
/// local DHT store, and stays there, served to every lookup, after the catalog
/// refused it and struck the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewriting_record_is_not_kept_in_the_dht_store() {
    let (net, rogue, honest) = node_and_rogue().await;
    let node = net.node(0);
    let owner = Author::new();
    let (original, first) = owner.publish("mine", "1.0.0", b"original content");
    rogue.gossip(publish_announcement(&original, &first)).await;
    assert!(wait_until(DEADLINE, || async { catalog_index(node, "mine").await.is_some() }).await);

    let (rewritten, _) = owner.publish("mine", "1.0.0", b"rewritten content");
    let rewrite = owner.index("mine", 2, &[&rewritten]);
    let query = rogue.put_record_to(index_key("mine").to_kad(), rewrite.to_bytes(), honest).await;
    rogue.query_result(query).await.expect("put answered");
    wait_strikes(node, &rogue.peer_id, 1, "an index rewriting 1.0.0").await;
    let query = rogue.put_record_to(manifest_key("mine", "1.0.0").to_kad(), rewritten.to_bytes(), honest).await;
    rogue.query_result(query).await.expect("put answered");
    wait_strikes(node, &rogue.peer_id, 2, "a manifest rewriting 1.0.0").await;

    assert_eq!(catalog_index(node, "mine").await.unwrap().index().sequence, 1, "the catalog refused it");
    let served = dht_value(node, index_key("mine")).await;
    assert!(served != Some(rewrite.to_bytes()), "the DHT store serves the index rewriting 1.0.0");
    let served = dht_value(node, manifest_key("mine", "1.0.0")).await;
    assert!(served != Some(rewritten.to_bytes()), "the DHT store serves the rewritten manifest of 1.0.0");
}
