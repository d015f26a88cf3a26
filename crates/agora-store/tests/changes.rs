//! Catalog change events against real SQLite files: every committed change to
//! packages or manifests is reported once, with its cause, after the commit and
//! in commit order; failed and rolled-back writes report nothing.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use agora_core::{
    ArtifactData, ArtifactInfo, PackageIndex, PackageMetadata, PublicKey, Publication, Publisher, SecretKey,
    SignedPackageIndex,
};
use agora_store::{CatalogChange, CatalogObserver, ChangeCause, Error, Ingested, Store};

const NOW: u64 = 1_700_000_000;

/// Remembers every call it gets.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<Vec<CatalogChange>>>,
}

impl CatalogObserver for Recorder {
    fn changed(&self, changes: &[CatalogChange]) {
        self.calls.lock().unwrap().push(changes.to_vec());
    }
}

impl Recorder {
    /// The calls since the last `take`, each as `(name, cause)` pairs.
    fn take(&self) -> Vec<Vec<(String, ChangeCause)>> {
        std::mem::take(&mut *self.calls.lock().unwrap())
            .into_iter()
            .map(|call| call.into_iter().map(|change| (change.name.to_string(), change.cause)).collect())
            .collect()
    }
}

fn observed(store: &Store) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder::default());
    store.subscribe(recorder.clone()).unwrap();
    recorder
}

/// A publisher and a copy of its key, for signing hand-built indexes.
fn keyed_publisher() -> (Publisher, SecretKey) {
    let key = SecretKey::generate();
    (Publisher::new(SecretKey::from_bytes(&key.to_bytes())), key)
}

fn sign(publisher: &Publisher, name: &str, version: &str, current: Option<&PackageIndex>) -> Publication {
    let content = format!("{name} {version}").into_bytes();
    let metadata = PackageMetadata::new(name.parse().unwrap(), version.parse().unwrap(), "a package");
    let artifact = ArtifactInfo::compute(&content, 4096).unwrap();
    let (manifest, index) = publisher.publish(metadata, artifact, current, NOW).unwrap();
    Publication { manifest, index, artifact: ArtifactData::Bytes(content.into()) }
}

fn publish(store: &Store, publisher: &Publisher, name: &str, version: &str) -> Publication {
    let current = store.packages().package(&name.parse().unwrap()).unwrap();
    let publication = sign(publisher, name, version, current.as_ref().map(SignedPackageIndex::index));
    store.publish(&publication, NOW).unwrap();
    publication
}

fn change(name: &str, cause: ChangeCause) -> (String, ChangeCause) {
    (name.to_owned(), cause)
}

fn store_in(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(&dir.path().join(name)).unwrap()
}

#[test]
fn each_cause_is_reported_once_with_the_package_and_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let source = store_in(&dir, "source");
    let recorder = observed(&source);
    let (owner, owner_key) = keyed_publisher();

    let first = publish(&source, &owner, "demo", "1.0.0");
    let calls = std::mem::take(&mut *recorder.calls.lock().unwrap());
    assert_eq!(
        calls,
        [vec![CatalogChange {
            name: "demo".parse().unwrap(),
            owner: owner.public_key(),
            keys: vec![owner.public_key()],
            cause: ChangeCause::Published
        }]]
    );
    let second = publish(&source, &owner, "demo", "1.1.0");
    assert_eq!(recorder.take(), [vec![change("demo", ChangeCause::Published)]]);

    let yanked = owner.set_yanked(second.index.index(), &"1.1.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    assert_eq!(source.packages().apply_yank(&yanked).unwrap().yanked.len(), 1);
    assert_eq!(recorder.take(), [vec![change("demo", ChangeCause::Yanked)]]);
    // An owner-signed successor that changes no version is stored but not reported.
    let resigned = PackageIndex { sequence: yanked.index().sequence + 1, ..yanked.index().clone() };
    assert!(source.packages().apply_yank(&resigned.sign(&owner_key).unwrap()).unwrap().is_empty());
    assert!(recorder.take().is_empty());

    // Ingesting on another store: only what is stored is reported.
    let target = store_in(&dir, "target");
    let ingested = observed(&target);
    let packages = target.packages();
    assert_eq!(packages.ingest_index(&first.index).unwrap(), Ingested::Inserted);
    assert_eq!(ingested.take(), [vec![change("demo", ChangeCause::Ingested)]]);
    assert_eq!(packages.ingest_index(&first.index).unwrap(), Ingested::Unchanged);
    assert_eq!(packages.ingest_manifest(&first.manifest).unwrap(), Ingested::Inserted);
    assert_eq!(ingested.take(), [vec![change("demo", ChangeCause::Ingested)]]);
    assert_eq!(packages.ingest_manifest(&first.manifest).unwrap(), Ingested::Unchanged);
    assert!(ingested.take().is_empty(), "unchanged records are not changes");

    // An index and a manifest in one package: one call, the package once.
    assert!(matches!(
        packages.ingest_package(&second.index, std::slice::from_ref(&second.manifest)).unwrap(),
        Ingested::Updated(_)
    ));
    assert_eq!(ingested.take(), [vec![change("demo", ChangeCause::Ingested)]]);
    assert_eq!(packages.ingest_index(&first.index).unwrap(), Ingested::Stale);
    assert!(ingested.take().is_empty(), "stale records are not changes");
    assert!(recorder.take().is_empty(), "one store's observers hear nothing of another's writes");
}

#[test]
fn a_failed_write_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "store");
    let recorder = observed(&store);
    let (owner, _) = keyed_publisher();
    let (thief, _) = keyed_publisher();
    let real = publish(&store, &owner, "demo", "1.0.0");
    recorder.take();

    let stolen = sign(&thief, "demo", "2.0.0", None);
    assert!(store.publish(&stolen, NOW).is_err());
    let yank = owner.set_yanked(real.index.index(), &"1.0.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    store.packages().apply_yank(&yank).unwrap();
    recorder.take();
    // The same yank again has a stale sequence.
    assert!(store.packages().apply_yank(&yank).is_err());

    // A package whose index is fine but whose manifest is not: refused whole.
    let target = store_in(&dir, "target");
    let ingested = observed(&target);
    let other = sign(&owner, "other", "1.0.0", None);
    let foreign = sign(&thief, "other", "1.0.0", None);
    assert!(target.packages().ingest_manifest(&other.manifest).is_err(), "no index yet");
    assert!(target.packages().ingest_package(&other.index, &[foreign.manifest]).is_err());
    assert!(target.packages().package(&"other".parse().unwrap()).unwrap().is_none());
    assert!(recorder.take().is_empty());
    assert!(ingested.take().is_empty());
}

#[test]
fn a_batch_reports_the_packages_it_stored_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "store");
    let (owner, _) = keyed_publisher();
    let (thief, _) = keyed_publisher();
    let known = sign(&owner, "known", "1.0.0", None);
    store.packages().ingest_package(&known.index, std::slice::from_ref(&known.manifest)).unwrap();
    let recorder = observed(&store);

    let good = sign(&owner, "good", "1.0.0", None);
    let bad = sign(&owner, "bad", "1.0.0", None);
    let foreign = sign(&thief, "bad", "1.0.0", None);
    let other = sign(&owner, "other", "1.0.0", None);
    let batch = vec![
        (good.index, vec![good.manifest]),
        (known.index, vec![known.manifest]),
        (bad.index, vec![foreign.manifest]),
        (other.index, vec![other.manifest]),
    ];
    let results = store.packages().ingest_packages(&batch).unwrap();
    assert!(matches!(results[0], Ok(Ingested::Inserted)));
    assert!(matches!(results[1], Ok(Ingested::Unchanged)));
    assert!(results[2].is_err());
    assert!(matches!(results[3], Ok(Ingested::Inserted)));
    assert_eq!(recorder.take(), [vec![change("good", ChangeCause::Ingested), change("other", ChangeCause::Ingested)]]);

    // A batch that stores nothing reports nothing.
    let again = store.packages().ingest_packages(&batch[..2]).unwrap();
    assert!(again.iter().all(|result| matches!(result, Ok(Ingested::Unchanged))));
    assert!(recorder.take().is_empty());
}

/// Reads the stored sequence of `demo` through its own connection, as the
/// observer is called: right after the commit, before any other writer commits.
#[derive(Debug)]
struct SequenceReader {
    connection: Mutex<rusqlite::Connection>,
    seen: Mutex<Vec<u64>>,
}

impl CatalogObserver for SequenceReader {
    fn changed(&self, changes: &[CatalogChange]) {
        assert_eq!(changes.len(), 1);
        let sequence: i64 = self
            .connection
            .lock()
            .unwrap()
            .query_row("SELECT sequence FROM packages WHERE name = 'demo'", [], |row| row.get(0))
            .unwrap();
        self.seen.lock().unwrap().push(sequence as u64);
    }
}

#[test]
fn observers_see_changes_in_commit_order_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, _) = keyed_publisher();
    // 40 successive indexes of one package, sequences 1 to 40.
    let mut chain: Vec<SignedPackageIndex> = Vec::new();
    for minor in 0..40 {
        let publication = sign(&owner, "demo", &format!("1.{minor}.0"), chain.last().map(SignedPackageIndex::index));
        chain.push(publication.index);
    }
    let store = store_in(&dir, "store");
    let connection = rusqlite::Connection::open(dir.path().join("store").join("catalog.sqlite")).unwrap();
    let reader = Arc::new(SequenceReader { connection: Mutex::new(connection), seen: Mutex::default() });
    store.subscribe(reader.clone()).unwrap();

    // Four writers race, each with every fourth index in ascending order: some
    // land, some arrive after a newer one and are stale.
    let chain = Arc::new(chain);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (store, chain) = (store.clone(), chain.clone());
            std::thread::spawn(move || {
                let mut stored = Vec::new();
                for index in chain.iter().skip(writer).step_by(4) {
                    match store.packages().ingest_index(index).unwrap() {
                        Ingested::Inserted | Ingested::Updated(_) => stored.push(index.index().sequence),
                        Ingested::Stale => {}
                        other => panic!("every index is ingested once, by its owner: {other:?}"),
                    }
                }
                stored
            })
        })
        .collect();
    let mut stored: Vec<u64> = writers.into_iter().flat_map(|writer| writer.join().unwrap()).collect();
    stored.sort_unstable();

    let seen = reader.seen.lock().unwrap().clone();
    // Each report saw exactly the commit it reports, and no later one: stored
    // sequences only grow, so commit order is ascending order.
    assert_eq!(seen, stored, "one report per stored index, in commit order");
    assert_eq!(seen.last(), Some(&40));
}

#[test]
fn the_observer_list_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(&dir, "store");
    let recorders: Vec<Arc<Recorder>> = (0..Store::MAX_OBSERVERS).map(|_| observed(&store)).collect();
    let error = store.subscribe(Arc::new(Recorder::default())).unwrap_err();
    assert!(matches!(error, Error::TooManyObservers { max } if max == Store::MAX_OBSERVERS), "{error}");
    let (owner, _) = keyed_publisher();
    publish(&store, &owner, "demo", "1.0.0");
    for recorder in &recorders {
        assert_eq!(recorder.take(), [vec![change("demo", ChangeCause::Published)]]);
    }
}

#[test]
fn a_change_names_the_owner_even_for_a_manifest_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (owner, _) = keyed_publisher();
    let publication = sign(&owner, "demo", "1.0.0", None);
    let store = store_in(&dir, "store");
    store.packages().ingest_index(&publication.index).unwrap();
    let recorder = observed(&store);
    store.packages().ingest_manifest(&publication.manifest).unwrap();
    let owners: Vec<PublicKey> = recorder.calls.lock().unwrap().iter().flatten().map(|change| change.owner).collect();
    assert_eq!(owners, [owner.public_key()]);
}
