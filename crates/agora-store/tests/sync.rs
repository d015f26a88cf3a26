//! Sync against real SQLite files: ingesting records from (possibly lying) peers,
//! paging the catalog out, serving verified chunks, remembering peers, and the
//! migration that added them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use agora_core::{
    ArtifactData, ArtifactInfo, Error as CoreError, PackageIndex, PackageMetadata, PackageName, Publication, Publisher,
    Query, SearchHit, SecretKey, SignedManifest, SignedPackageIndex,
};
use agora_store::{CatalogStats, Error, Ingested, KnownPeer, Packages, Store};

const NOW: u64 = 1_700_000_000;
const CHUNK: u32 = 4096;

/// A store that publishes, and an empty store that ingests what it is sent.
struct Fixture {
    dir: tempfile::TempDir,
    source: Store,
    target_store: Store,
    target: Packages,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let target_store = Store::open(&dir.path().join("target")).unwrap();
    let target = target_store.packages().clone();
    Fixture { dir, source, target_store, target }
}

/// A publisher and a copy of its key, for signing hand-built indexes.
fn keyed_publisher() -> (Publisher, SecretKey) {
    let key = SecretKey::generate();
    (Publisher::new(SecretKey::from_bytes(&key.to_bytes())), key)
}

fn metadata(name: &str, version: &str, description: &str) -> PackageMetadata {
    PackageMetadata::new(name.parse().unwrap(), version.parse().unwrap(), description)
}

fn sign(
    publisher: &Publisher,
    metadata: PackageMetadata,
    content: &[u8],
    current: Option<&PackageIndex>,
) -> Publication {
    let artifact = ArtifactInfo::compute(content, CHUNK).unwrap();
    let (manifest, index) = publisher.publish(metadata, artifact, current, NOW).unwrap();
    Publication { manifest, index, artifact: ArtifactData::Bytes(content.to_vec().into()) }
}

/// Publishes into `store` on top of its current index.
fn publish(store: &Store, publisher: &Publisher, metadata: PackageMetadata, content: &[u8]) -> Publication {
    let current = store.packages().package(&metadata.name).unwrap();
    let publication = sign(publisher, metadata, content, current.as_ref().map(SignedPackageIndex::index));
    store.publish(&publication, NOW).unwrap();
    publication
}

fn core_error(error: Error) -> CoreError {
    match error {
        Error::Core(error) => error,
        other => panic!("expected a domain error, got {other}"),
    }
}

fn name(text: &str) -> PackageName {
    text.parse().unwrap()
}

fn hits(catalog: &Packages, text: &str) -> Vec<SearchHit> {
    catalog.search(&Query::new(text).limit(100)).unwrap().hits
}

fn found(catalog: &Packages, text: &str) -> Vec<String> {
    hits(catalog, text).iter().map(|hit| format!("{}@{}", hit.name, hit.version)).collect()
}

/// Everything observable about one package in a catalog.
fn package_state(catalog: &Packages, package: &str) -> (Option<SignedPackageIndex>, CatalogStats, Vec<String>) {
    (catalog.package(&name(package)).unwrap(), catalog.stats().unwrap(), found(catalog, ""))
}

#[test]
fn a_new_index_is_trusted_on_first_use_and_searchable_once_a_manifest_arrives() {
    let f = fixture();
    let (owner, _) = keyed_publisher();
    let first = publish(&f.source, &owner, metadata("demo", "1.0.0", "a demo"), b"v1");

    assert_eq!(f.target.ingest_index(&first.index).unwrap(), Ingested::Inserted);
    assert_eq!(f.target.package(&name("demo")).unwrap(), Some(first.index.clone()));
    assert!(found(&f.target, "demo").is_empty(), "a package without manifests is not searchable");

    assert_eq!(f.target.ingest_manifest(&first.manifest).unwrap(), Ingested::Inserted);
    assert_eq!(found(&f.target, "demo"), ["demo@1.0.0"]);
    assert_eq!(f.target.ingest_manifest(&first.manifest).unwrap(), Ingested::Unchanged);
    assert_eq!(f.target.ingest_index(&first.index).unwrap(), Ingested::Unchanged);
    let stats = f.target.stats().unwrap();
    assert_eq!((stats.packages, stats.versions, stats.artifacts), (1, 1, 0), "ingesting records no artifact");
    assert_eq!(f.target.manifest_for_digest(&first.manifest.manifest().artifact.digest).unwrap(), None);

    // A newer index updates; its manifest then moves the search document along.
    let second = publish(&f.source, &owner, metadata("demo", "1.1.0", "a better demo"), b"v2");
    let change = match f.target.ingest_index(&second.index).unwrap() {
        Ingested::Updated(change) => change,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!(change.added, ["1.1.0".parse().unwrap()]);
    assert_eq!(found(&f.target, "demo"), ["demo@1.0.0"], "1.1.0 has no manifest here yet");
    assert_eq!(f.target.ingest_manifest(&second.manifest).unwrap(), Ingested::Inserted);
    assert_eq!(found(&f.target, "better"), ["demo@1.1.0"]);

    // A yank arriving from a peer hides the version from search.
    let yanked = owner.set_yanked(second.index.index(), &"1.1.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    let change = match f.target.ingest_index(&yanked).unwrap() {
        Ingested::Updated(change) => change,
        other => panic!("expected an update, got {other:?}"),
    };
    assert_eq!(change.yanked, ["1.1.0".parse().unwrap()]);
    assert_eq!(found(&f.target, "demo"), ["demo@1.0.0"]);

    // Older copies are ignored without error.
    assert_eq!(f.target.ingest_index(&first.index).unwrap(), Ingested::Stale);
    assert_eq!(f.target.ingest_index(&second.index).unwrap(), Ingested::Stale);
    assert_eq!(f.target.package(&name("demo")).unwrap(), Some(yanked));
}

#[test]
fn lying_and_competing_indexes_never_change_the_package_served() {
    let f = fixture();
    let (owner, owner_key) = keyed_publisher();
    let (thief, thief_key) = keyed_publisher();
    publish(&f.source, &owner, metadata("demo", "1.0.0", "a demo"), b"v1");
    let current = publish(&f.source, &owner, metadata("demo", "1.1.0", "a demo"), b"v2");
    f.target.ingest_index(&current.index).unwrap();
    f.target.ingest_manifest(&current.manifest).unwrap();
    let before = package_state(&f.target, "demo");
    let stored = current.index.index().clone();

    // Equivocation: the owner signs another index with the same sequence. The
    // proof is kept; the index served stays.
    let mut other = stored.clone();
    other.updated_at += 1;
    assert_eq!(f.target.ingest_index(&other.sign(&owner_key).unwrap()).unwrap(), Ingested::Equivocated);
    assert!(f.target.equivocation(&name("demo"), &owner.public_key()).unwrap().is_some());

    // Another key's index for the name is a competing claim, kept as evidence.
    let fresh = sign(&thief, metadata("demo", "9.0.0", "mine now"), b"evil", None);
    assert_eq!(f.target.ingest_index(&fresh.index).unwrap(), Ingested::Contested);
    // A claim follows the succession rules too: this one would drop 9.0.0.
    let takeover = PackageIndex { owner: thief_key.public_key(), sequence: 99, ..stored.clone() };
    let error = core_error(f.target.ingest_index(&takeover.sign(&thief_key).unwrap()).unwrap_err());
    assert!(matches!(error, CoreError::IllegalUpdate { .. }), "{error}");

    // The owner's own successor may not rewrite or drop a published version.
    let mut rewritten = PackageIndex { sequence: stored.sequence + 1, ..stored.clone() };
    rewritten.versions[0].digest = agora_core::Digest::of(b"other bytes");
    let error = core_error(f.target.ingest_index(&rewritten.sign(&owner_key).unwrap()).unwrap_err());
    assert!(matches!(error, CoreError::VersionExists { .. }), "{error}");
    let mut dropped = PackageIndex { sequence: stored.sequence + 1, ..stored.clone() };
    dropped.versions.remove(0);
    let error = core_error(f.target.ingest_index(&dropped.sign(&owner_key).unwrap()).unwrap_err());
    assert!(matches!(error, CoreError::IllegalUpdate { .. }), "{error}");

    assert_eq!(package_state(&f.target, "demo"), before);
}

#[test]
fn manifests_need_a_vouching_index() {
    let f = fixture();
    let (owner, _) = keyed_publisher();
    let (thief, _) = keyed_publisher();
    let real = publish(&f.source, &owner, metadata("demo", "1.0.0", "a demo"), b"v1");

    let error = core_error(f.target.ingest_manifest(&real.manifest).unwrap_err());
    assert!(matches!(error, CoreError::PackageNotFound(_)), "{error}");

    f.target.ingest_index(&real.index).unwrap();
    let before = package_state(&f.target, "demo");

    // Same version and the very same artifact, but signed by another key.
    let forged = sign(&thief, metadata("demo", "1.0.0", "a demo"), b"v1", None);
    assert_eq!(forged.manifest.manifest().artifact, real.manifest.manifest().artifact);
    let error = core_error(f.target.ingest_manifest(&forged.manifest).unwrap_err());
    assert!(matches!(error, CoreError::NotOwner { .. }), "{error}");

    // The owner's key, but an artifact the index does not list.
    let other_bytes = sign(&owner, metadata("demo", "1.0.0", "a demo"), b"other", None);
    let error = core_error(f.target.ingest_manifest(&other_bytes.manifest).unwrap_err());
    assert!(matches!(error, CoreError::IllegalUpdate { .. }), "{error}");
    assert!(error.to_string().contains("digest"), "{error}");

    // A version the stored index does not list (yet).
    let unlisted = sign(&owner, metadata("demo", "2.0.0", "a demo"), b"v2", None);
    let error = core_error(f.target.ingest_manifest(&unlisted.manifest).unwrap_err());
    assert!(matches!(error, CoreError::VersionNotFound { .. }), "{error}");
    assert_eq!(package_state(&f.target, "demo"), before);

    assert_eq!(f.target.ingest_manifest(&real.manifest).unwrap(), Ingested::Inserted);
    assert_eq!(f.target.ingest_manifest(&real.manifest).unwrap(), Ingested::Unchanged);
    assert_eq!(f.target.manifest(&name("demo"), &"1.0.0".parse().unwrap()).unwrap(), Some(real.manifest));
    assert_eq!(found(&f.target, "demo"), ["demo@1.0.0"]);
}

/// 25 packages with 1 to 4 versions each, one of them yanked, one package fully
/// yanked; returns the names in order.
fn populate(store: &Store) -> Vec<String> {
    let publishers = [Publisher::new(SecretKey::generate()), Publisher::new(SecretKey::generate())];
    let mut names = Vec::new();
    for i in 0..25 {
        let package = format!("pkg-{i:02}");
        let publisher = &publishers[i % 2];
        let mut last = None;
        for minor in 0..=(i % 4) {
            let mut meta = metadata(&package, &format!("1.{minor}.0"), &format!("package number {i} release {minor}"));
            meta.keywords = vec![format!("k{}", i % 3)];
            meta.categories = vec![format!("cat{}", i % 2)];
            last = Some(publish(store, publisher, meta, format!("{package} {minor}").as_bytes()));
        }
        let last = last.unwrap();
        if i % 5 == 0 {
            let version = last.manifest.manifest().version();
            let yanked = publisher.set_yanked(last.index.index(), version, true, NOW).unwrap().unwrap();
            store.packages().apply_yank(&yanked).unwrap();
        }
        names.push(package);
    }
    names
}

/// Every page from the start; asserts the cursor is set exactly while pages follow.
fn all_pages(catalog: &Packages, limit: usize, max_bytes: usize) -> Vec<Vec<agora_store::CatalogEntry>> {
    let mut pages = Vec::new();
    let mut cursor: Option<PackageName> = None;
    loop {
        let (entries, next) = catalog.page(cursor.as_ref(), limit, max_bytes).unwrap();
        assert!(!entries.is_empty() || pages.is_empty(), "an empty page after a cursor");
        if let Some(next) = &next {
            let last = SignedPackageIndex::from_bytes(&entries.last().unwrap().index).unwrap();
            assert_eq!(&last.index().name, next, "the cursor is the last entry's name");
        }
        pages.push(entries);
        match next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

fn entry_name(entry: &agora_store::CatalogEntry) -> String {
    SignedPackageIndex::from_bytes(&entry.index).unwrap().index().name.to_string()
}

#[test]
fn pages_visit_every_package_once_in_name_order() {
    let f = fixture();
    let names = populate(&f.source);
    let catalog = f.source.packages();

    let pages = all_pages(catalog, 10, usize::MAX);
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let visited: Vec<String> = pages.iter().flatten().map(entry_name).collect();
    assert_eq!(visited, names);

    // Every blob decodes, and every stored manifest comes along with its index.
    for entry in pages.iter().flatten() {
        let index = SignedPackageIndex::from_bytes(&entry.index).unwrap();
        let versions: BTreeSet<String> = index.index().versions.iter().map(|entry| entry.version.to_string()).collect();
        let manifests: BTreeSet<String> = entry
            .manifests
            .iter()
            .map(|bytes| SignedManifest::from_bytes(bytes).unwrap())
            .inspect(|manifest| assert_eq!(manifest.manifest().name(), &index.index().name))
            .map(|manifest| manifest.manifest().version().to_string())
            .collect();
        assert_eq!(manifests, versions);
    }

    // A byte budget makes pages smaller but never empty, and the walk still
    // covers everything exactly once.
    let sizes: Vec<usize> = pages.iter().flatten().map(agora_store::CatalogEntry::byte_len).collect();
    let budget = sizes.iter().max().unwrap() * 2;
    let small = all_pages(catalog, 10, budget);
    assert!(small.len() > pages.len(), "{} pages under {budget} bytes", small.len());
    for page in &small {
        let total: usize = page.iter().map(agora_store::CatalogEntry::byte_len).sum();
        assert!(page.len() == 1 || total <= budget, "{total} > {budget}");
    }
    assert_eq!(small.iter().flatten().map(entry_name).collect::<Vec<_>>(), names);
    let single = all_pages(catalog, 10, 1);
    assert!(single.iter().all(|page| page.len() == 1));
    assert_eq!(single.len(), 25);

    // Past the end, and an empty catalog.
    assert_eq!(catalog.page(Some(&name("zzz")), 10, usize::MAX).unwrap(), (vec![], None));
    assert_eq!(f.target.page(None, 10, usize::MAX).unwrap(), (vec![], None));
    let (tail, cursor) = catalog.page(Some(&name("pkg-22")), 2, usize::MAX).unwrap();
    assert_eq!(
        (tail.iter().map(entry_name).collect::<Vec<_>>(), cursor),
        (vec!["pkg-23".into(), "pkg-24".into()], None)
    );
}

#[test]
fn a_second_catalog_ingesting_all_pages_ends_up_identical() {
    let f = fixture();
    populate(&f.source);
    let source = f.source.packages();
    for page in all_pages(source, 7, 16 * 1024) {
        for entry in &page {
            let index = SignedPackageIndex::from_bytes(&entry.index).unwrap();
            assert_eq!(f.target.ingest_index(&index).unwrap(), Ingested::Inserted);
        }
        for entry in &page {
            for bytes in &entry.manifests {
                let manifest = SignedManifest::from_bytes(bytes).unwrap();
                assert_eq!(f.target.ingest_manifest(&manifest).unwrap(), Ingested::Inserted);
            }
        }
    }
    let (theirs, ours) = (source.stats().unwrap(), f.target.stats().unwrap());
    assert_eq!((ours.packages, ours.versions, ours.artifacts), (theirs.packages, theirs.versions, 0));
    for text in ["", "package", "number 1", "k2", "release"] {
        assert_eq!(hits(&f.target, text), hits(source, text), "search for {text:?}");
    }
    let query = Query::new("").category("cat1").tag("k0").limit(100);
    assert_eq!(f.target.search(&query).unwrap(), source.search(&query).unwrap());

    // Syncing again is a no-op.
    for entry in all_pages(source, 100, usize::MAX).iter().flatten() {
        let index = SignedPackageIndex::from_bytes(&entry.index).unwrap();
        assert_eq!(f.target.ingest_index(&index).unwrap(), Ingested::Unchanged);
    }
    assert_eq!(f.target.stats().unwrap(), ours);
}

#[test]
fn chunks_are_served_verified_by_digest() {
    let f = fixture();
    let (owner, _) = keyed_publisher();
    let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let publication = publish(&f.source, &owner, metadata("demo", "1.0.0", "a demo"), &content);
    let info = publication.manifest.manifest().artifact.clone();
    let (catalog, artifacts) = (f.source.packages(), f.source.artifacts());

    assert_eq!(artifacts.held().unwrap(), [info.digest]);
    assert_eq!(catalog.manifest_for_digest(&info.digest).unwrap(), Some(publication.manifest.clone()));
    assert_eq!(catalog.manifest_for_digest(&agora_core::Digest::of(b"unknown")).unwrap(), None);

    assert_eq!(info.chunks.len(), 3);
    assert_eq!(artifacts.read_chunk(&info, 0).unwrap().unwrap(), &content[..4096]);
    assert_eq!(artifacts.read_chunk(&info, 1).unwrap().unwrap(), &content[4096..8192]);
    assert_eq!(artifacts.read_chunk(&info, 2).unwrap().unwrap(), &content[8192..]);
    assert_eq!(artifacts.read_chunk(&info, 3).unwrap(), None);
    let absent = ArtifactInfo::compute(b"never stored", CHUNK).unwrap();
    assert_eq!(artifacts.read_chunk(&absent, 0).unwrap(), None);

    // One flipped byte in chunk 1: that chunk is an error, the others still verify.
    let path = artifacts.path_of(&info.digest);
    let mut corrupt = content.clone();
    corrupt[5000] ^= 0xff;
    std::fs::write(&path, &corrupt).unwrap();
    let error = core_error(artifacts.read_chunk(&info, 1).unwrap_err());
    assert!(matches!(error, CoreError::DigestMismatch { expected, .. } if expected == info.chunks[1]), "{error}");
    assert_eq!(artifacts.read_chunk(&info, 0).unwrap().unwrap(), &content[..4096]);

    // A truncated file is corruption too, not a short chunk.
    std::fs::write(&path, &content[..9000]).unwrap();
    let error = core_error(artifacts.read_chunk(&info, 2).unwrap_err());
    assert!(matches!(error, CoreError::DigestMismatch { .. }), "{error}");
}

fn addresses(list: &[&str]) -> Vec<String> {
    list.iter().map(|address| address.to_string()).collect()
}

#[test]
fn peers_are_upserted_merged_and_ordered() {
    let f = fixture();
    let peers = f.target_store.peers();
    assert!(peers.known(10).unwrap().is_empty());
    peers.save("peer-a", &addresses(&["/ip4/1.1.1.1/tcp/1", "/ip4/1.1.1.1/tcp/2"]), NOW).unwrap();
    peers.save("peer-b", &addresses(&["/dns/b.example/tcp/1"]), NOW + 5).unwrap();
    // Seen again at a new address and an old one: newest first, no duplicates.
    peers
        .save("peer-a", &addresses(&["/ip4/1.1.1.1/tcp/3", "/ip4/1.1.1.1/tcp/1", "/ip4/1.1.1.1/tcp/3"]), NOW + 10)
        .unwrap();
    let known = peers.known(10).unwrap();
    assert_eq!(
        known,
        [
            KnownPeer {
                peer_id: "peer-a".into(),
                addresses: addresses(&["/ip4/1.1.1.1/tcp/3", "/ip4/1.1.1.1/tcp/1", "/ip4/1.1.1.1/tcp/2"]),
                last_seen: NOW + 10,
            },
            KnownPeer { peer_id: "peer-b".into(), addresses: addresses(&["/dns/b.example/tcp/1"]), last_seen: NOW + 5 },
        ]
    );
    assert_eq!(peers.known(1).unwrap().len(), 1);
    assert_eq!(peers.known(0).unwrap(), []);

    // At most 16 addresses, the newest kept.
    let many: Vec<String> = (0..20).map(|i| format!("/ip4/10.0.0.{i}/tcp/1")).collect();
    peers.save("peer-b", &many, NOW + 20).unwrap();
    let b = peers.known(1).unwrap().remove(0);
    assert_eq!(b.peer_id, "peer-b");
    assert_eq!(b.addresses, many[..KnownPeer::MAX_ADDRESSES]);
    // Seen with no address: keeps what it had.
    peers.save("peer-b", &[], NOW + 30).unwrap();
    assert_eq!(peers.known(1).unwrap()[0].addresses, many[..KnownPeer::MAX_ADDRESSES]);
    assert_eq!(peers.known(1).unwrap()[0].last_seen, NOW + 30);

    // Survives a reopen.
    drop((f.target, f.target_store));
    let reopened = Store::open(&f.dir.path().join("target")).unwrap();
    assert_eq!(reopened.peers().known(10).unwrap().len(), 2);
}

#[test]
fn the_peer_table_is_bounded_by_dropping_the_least_recently_seen() {
    let f = fixture();
    let peers = f.target_store.peers();
    let total = KnownPeer::MAX_PEERS + 1;
    for i in 0..total {
        peers.save(&format!("peer-{i:04}"), &addresses(&["/memory/1"]), NOW + i as u64).unwrap();
    }
    let known = peers.known(usize::MAX).unwrap();
    assert_eq!(known.len(), KnownPeer::MAX_PEERS);
    assert_eq!(known[0].peer_id, format!("peer-{:04}", total - 1));
    assert_eq!(known.last().unwrap().peer_id, "peer-0001", "the oldest one was dropped");
    assert!(known.windows(2).all(|pair| pair[0].last_seen >= pair[1].last_seen));

    // A peer saved with an old timestamp is still kept over the others it ties with.
    peers.save("latecomer", &[], 0).unwrap();
    let known = peers.known(usize::MAX).unwrap();
    assert_eq!(known.len(), KnownPeer::MAX_PEERS);
    assert_eq!(known.last().unwrap().peer_id, "latecomer");
    assert!(known.iter().all(|peer| peer.peer_id != "peer-0001"));
}

#[test]
fn a_version_1_database_is_upgraded_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, _) = keyed_publisher();
    let published = {
        let store = Store::open(dir.path()).unwrap();
        publish(&store, &owner, metadata("demo", "1.0.0", "a demo"), b"v1")
    };
    // Turn it back into what a build with only the first migration wrote (dropping
    // what later migrations added).
    let path = dir.path().join("catalog.sqlite");
    let user_version = |connection: &rusqlite::Connection| -> i64 {
        connection.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap()
    };
    let raw = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(user_version(&raw), agora_store::SCHEMA_VERSION);
    raw.execute_batch(
        "DROP TABLE peers; DROP INDEX artifacts_lru; DROP INDEX search_tags_package;
         DROP INDEX search_categories_package; DROP TABLE claims; DROP TABLE claim_manifests;
         DROP TABLE equivocations; ALTER TABLE packages DROP COLUMN chosen; PRAGMA user_version = 1;",
    )
    .unwrap();
    let table_exists = |connection: &rusqlite::Connection| -> bool {
        connection
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'peers'", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap()
            == 1
    };
    assert!(!table_exists(&raw));
    drop(raw);

    let store = Store::open(dir.path()).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(user_version(&raw), agora_store::SCHEMA_VERSION);
    assert!(table_exists(&raw));
    assert_eq!(store.packages().package(&name("demo")).unwrap(), Some(published.index));
    assert_eq!(found(store.packages(), "demo"), ["demo@1.0.0"]);
    store.peers().save("peer", &addresses(&["/memory/1"]), NOW).unwrap();
    assert_eq!(store.peers().known(10).unwrap().len(), 1);
}

#[test]
fn a_package_with_one_bad_manifest_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let catalog = store.packages();
    let owner = agora_core::Publisher::new(agora_core::SecretKey::generate());
    let thief = agora_core::Publisher::new(agora_core::SecretKey::generate());
    let metadata = |v: &str| agora_core::PackageMetadata::new("whole".parse().unwrap(), v.parse().unwrap(), "x");
    let info = agora_core::ArtifactInfo::compute(b"one", 4096).unwrap();
    let (manifest, index) = owner.publish(metadata("1.0.0"), info.clone(), None, 1).unwrap();
    // A manifest for the same version signed by another key: the package is refused whole.
    let (foreign, _) = thief.publish(metadata("1.0.0"), info, None, 1).unwrap();
    assert!(catalog.ingest_package(&index, &[foreign]).is_err());
    assert!(catalog.package(&"whole".parse().unwrap()).unwrap().is_none(), "the index landed without its manifest");
    assert_eq!(
        catalog.ingest_package(&index, std::slice::from_ref(&manifest)).unwrap(),
        agora_store::Ingested::Inserted
    );
    assert_eq!(catalog.ingest_package(&index, &[manifest]).unwrap(), agora_store::Ingested::Unchanged);
}

#[test]
fn a_batch_lands_its_good_packages_and_rolls_back_the_bad_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let catalog = store.packages();
    let owner = agora_core::Publisher::new(agora_core::SecretKey::generate());
    let thief = agora_core::Publisher::new(agora_core::SecretKey::generate());
    let package = |publisher: &agora_core::Publisher, name: &str, content: &[u8]| {
        let metadata = agora_core::PackageMetadata::new(name.parse().unwrap(), "1.0.0".parse().unwrap(), "x");
        let info = agora_core::ArtifactInfo::compute(content, 4096).unwrap();
        publisher.publish(metadata, info, None, 1).unwrap()
    };
    let (good_manifest, good_index) = package(&owner, "good", b"g");
    let (_, bad_index) = package(&owner, "bad", b"b");
    let (foreign_manifest, _) = package(&thief, "bad", b"b");
    let (other_manifest, other_index) = package(&owner, "other", b"o");
    let batch = vec![
        (good_index, vec![good_manifest]),
        (bad_index, vec![foreign_manifest]),
        (other_index, vec![other_manifest]),
    ];
    let results = catalog.ingest_packages(&batch).unwrap();
    assert!(matches!(results[0], Ok(agora_store::Ingested::Inserted)));
    assert!(results[1].is_err());
    assert!(matches!(results[2], Ok(agora_store::Ingested::Inserted)));
    assert!(catalog.package(&"bad".parse().unwrap()).unwrap().is_none(), "the bad package's index landed");
    assert_eq!(catalog.stats().unwrap().packages, 2);
}
