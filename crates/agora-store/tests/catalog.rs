//! The catalog against real SQLite files: publish, read, yank, search, and every
//! rejected write leaving the store exactly as it was.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use agora_core::{
    ArtifactData, ArtifactInfo, Error as CoreError, PackageMetadata, Publication, Publisher, Query, SecretKey,
    SignedPackageIndex, Version,
};
use agora_store::{CatalogStats, Error, Store};
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    Fixture { _dir: dir, store }
}

fn metadata(name: &str, version: &str, description: &str) -> PackageMetadata {
    PackageMetadata::new(name.parse().unwrap(), version.parse().unwrap(), description)
}

fn publication(
    publisher: &Publisher,
    metadata: PackageMetadata,
    content: &str,
    current: Option<&SignedPackageIndex>,
) -> agora_core::Result<Publication> {
    let artifact = ArtifactInfo::compute(content.as_bytes(), 4096).unwrap();
    let (manifest, index) = publisher.publish(metadata, artifact, current.map(|c| c.index()), NOW)?;
    Ok(Publication { manifest, index, artifact: ArtifactData::Bytes(content.as_bytes().to_vec().into()) })
}

fn publish(store: &Store, publisher: &Publisher, metadata: PackageMetadata, content: &str) -> SignedPackageIndex {
    let current = store.packages().package(&metadata.name).unwrap();
    let publication = publication(publisher, metadata, content, current.as_ref()).unwrap();
    store.publish(&publication, NOW).unwrap();
    publication.index
}

fn snapshot(store: &Store) -> (CatalogStats, Vec<String>) {
    let hits = store.packages().search(&Query::new("").limit(100)).unwrap().hits;
    (store.packages().stats().unwrap(), hits.iter().map(|h| format!("{}@{}", h.name, h.version)).collect())
}

fn core_error(error: Error) -> CoreError {
    match error {
        Error::Core(error) => error,
        other => panic!("expected a domain error, got {other}"),
    }
}

#[test]
fn publish_read_back_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(SecretKey::generate());
    {
        let store = Store::open(dir.path()).unwrap();
        publish(&store, &publisher, metadata("demo", "1.0.0", "a demo"), "v1");
        publish(&store, &publisher, metadata("demo", "1.1.0", "a better demo"), "v2");
    }
    let store = Store::open(dir.path()).unwrap();
    let name = "demo".parse().unwrap();
    let index = store.packages().package(&name).unwrap().unwrap();
    assert_eq!(index.index().sequence, 2);
    assert_eq!(index.index().owner, publisher.public_key());
    let version: Version = "1.0.0".parse().unwrap();
    let (manifest, reader) = store.open_artifact(&name, &version).unwrap().unwrap();
    assert_eq!(manifest.manifest().metadata.description, "a demo");
    let mut bytes = Vec::new();
    reader.unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"v1");
    let stats = store.packages().stats().unwrap();
    assert_eq!((stats.packages, stats.versions, stats.artifacts, stats.artifact_bytes), (1, 2, 2, 4));
    let hits = store.packages().search(&Query::new("demo")).unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].version.to_string(), "1.1.0");
}

#[test]
fn same_version_with_other_content_is_rejected_and_changes_nothing() {
    let f = fixture();
    let publisher = Publisher::new(SecretKey::generate());
    let index = publish(&f.store, &publisher, metadata("demo", "1.0.0", "a demo"), "original");
    let before = snapshot(&f.store);
    // The publisher refuses to build it…
    let refused = publication(&publisher, metadata("demo", "1.0.0", "a demo"), "other", Some(&index)).unwrap_err();
    assert!(matches!(refused, CoreError::VersionExists { .. }));
    // …and a hand-built one (a fresh index from scratch) is refused by the store.
    let forged = publication(&publisher, metadata("demo", "1.0.0", "a demo"), "other", None).unwrap();
    let error = core_error(f.store.publish(&forged, NOW).unwrap_err());
    assert!(matches!(error, CoreError::VersionExists { .. }), "{error}");
    assert_eq!(snapshot(&f.store), before);
    let digest = forged.manifest.manifest().artifact.digest;
    assert!(!f.store.artifacts().path_of(&digest).exists(), "rejected artifact left on disk");
}

#[test]
fn another_key_cannot_publish_or_yank() {
    let f = fixture();
    let owner = Publisher::new(SecretKey::generate());
    let thief = Publisher::new(SecretKey::generate());
    let index = publish(&f.store, &owner, metadata("demo", "1.0.0", "a demo"), "v1");
    let before = snapshot(&f.store);

    let stolen = publication(&thief, metadata("demo", "1.1.0", "mine now"), "evil", None).unwrap();
    let error = core_error(f.store.publish(&stolen, NOW).unwrap_err());
    assert!(matches!(error, CoreError::NotOwner { .. }), "{error}");

    // A yank signed by the thief over a copy of the owner's index.
    let mut copy = index.index().clone();
    copy.owner = thief.public_key();
    let forged_yank = thief.set_yanked(&copy, &"1.0.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    let error = core_error(f.store.packages().apply_yank(&forged_yank).unwrap_err());
    assert!(matches!(error, CoreError::NotOwner { .. }), "{error}");
    assert_eq!(snapshot(&f.store), before);
}

#[test]
fn yank_hides_from_search_and_stale_yanks_are_refused() {
    let f = fixture();
    let publisher = Publisher::new(SecretKey::generate());
    publish(&f.store, &publisher, metadata("demo", "1.0.0", "a demo"), "v1");
    let index = publish(&f.store, &publisher, metadata("demo", "1.1.0", "a demo"), "v2");
    let yanked = publisher.set_yanked(index.index(), &"1.1.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    let change = f.store.packages().apply_yank(&yanked).unwrap();
    assert_eq!(change.yanked.len(), 1);
    let hits = f.store.packages().search(&Query::new("demo")).unwrap().hits;
    assert_eq!(hits[0].version.to_string(), "1.0.0");

    let error = core_error(f.store.packages().apply_yank(&yanked).unwrap_err());
    assert!(matches!(error, CoreError::StaleSequence { .. }), "{error}");

    let all = publisher.set_yanked(yanked.index(), &"1.0.0".parse().unwrap(), true, NOW).unwrap().unwrap();
    f.store.packages().apply_yank(&all).unwrap();
    assert!(f.store.packages().search(&Query::new("demo")).unwrap().hits.is_empty());
    // Still inspectable and fetchable, as in cargo.
    assert!(f.store.open_artifact(&"demo".parse().unwrap(), &"1.0.0".parse().unwrap()).unwrap().is_some());
}

#[test]
fn a_corrupt_row_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let publisher = Publisher::new(SecretKey::generate());
    publish(&store, &publisher, metadata("demo", "1.0.0", "a demo"), "v1");
    let raw = rusqlite::Connection::open(dir.path().join("catalog.sqlite")).unwrap();
    raw.execute("UPDATE packages SET record = x'00010203'", []).unwrap();
    drop(raw);
    let error = store.packages().package(&"demo".parse().unwrap()).unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error}");
}

#[test]
fn ranking_prefix_filters_and_paging() {
    let f = fixture();
    let alice = Publisher::new(SecretKey::generate());
    let bob = Publisher::new(SecretKey::generate());
    let mut json = metadata("json", "1.0.0", "the reference json parser");
    json.categories = vec!["encoding".into()];
    publish(&f.store, &alice, json, "a");
    let mut fast = metadata("fast-json", "2.0.0", "json json json parser, very json");
    fast.keywords = vec!["json".into(), "fast".into()];
    fast.categories = vec!["encoding/json".into()];
    publish(&f.store, &bob, fast, "b");
    let mut web = metadata("web-template", "0.1.0", "a web server template");
    web.keywords = vec!["web".into(), "template".into()];
    web.categories = vec!["templates".into()];
    publish(&f.store, &alice, web, "c");

    let names = |query: Query| -> Vec<String> {
        f.store.packages().search(&query).unwrap().hits.into_iter().map(|h| h.name.to_string()).collect()
    };
    // The exact name wins over a package that says "json" more often.
    assert_eq!(names(Query::new("json")), ["json", "fast-json"]);
    // The last word matches as a prefix.
    assert_eq!(names(Query::new("templ")), ["web-template"]);
    assert_eq!(names(Query::new("serv")), ["web-template"]);
    // Every word must match.
    assert!(names(Query::new("json template")).is_empty());
    // Category filters match the category and its subcategories.
    assert_eq!(names(Query::new("").category("encoding")), ["fast-json", "json"]);
    assert_eq!(names(Query::new("").category("encoding/json")), ["fast-json"]);
    assert!(names(Query::new("").category("encod")).is_empty());
    assert_eq!(names(Query::new("").tag("fast").tag("json")), ["fast-json"]);
    assert!(names(Query::new("").tag("fast").tag("web")).is_empty());
    assert_eq!(names(Query::new("").publisher(alice.public_key())), ["json", "web-template"]);
    // Text and filters together, with the exact name still first.
    assert_eq!(names(Query::new("json").category("encoding")), ["json", "fast-json"]);
    assert_eq!(names(Query::new("json").category("encoding/json")), ["fast-json"]);
    assert_eq!(names(Query::new("json").tag("fast")), ["fast-json"]);
    assert_eq!(names(Query::new("json").publisher(alice.public_key())), ["json"]);
    assert!(names(Query::new("json").tag("web")).is_empty());
    assert_eq!(f.store.packages().search(&Query::new("json").category("encoding")).unwrap().total, 2);
    assert_eq!(f.store.packages().search(&Query::new("a").publisher(alice.public_key())).unwrap().total, 1);
    // Paging keeps the total, with and without text, and pages do not overlap.
    let page = f.store.packages().search(&Query::new("").limit(2).offset(2)).unwrap();
    assert_eq!((page.total, page.hits.len()), (3, 1));
    let first = f.store.packages().search(&Query::new("json").limit(1)).unwrap();
    let second = f.store.packages().search(&Query::new("json").limit(1).offset(1)).unwrap();
    assert_eq!((first.total, second.total), (2, 2));
    assert_eq!(first.hits[0].name.as_str(), "json");
    assert_eq!(second.hits[0].name.as_str(), "fast-json");
    // Punctuation in the text is not FTS syntax.
    assert!(names(Query::new("\"json* OR (NEAR")).is_empty());
    assert!(f.store.packages().search(&Query::new("x").limit(0)).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the filters, search returns exactly the packages a naive scan keeps.
    #[test]
    fn filters_agree_with_a_naive_scan(
        packages in proptest::collection::vec(
            (proptest::sample::subsequence(vec!["alpha", "beta", "gamma"], 0..=3),
             proptest::sample::subsequence(vec!["web", "web/api", "cli"], 0..=2),
             any::<bool>()),
            1..12),
        tag_filter in proptest::sample::subsequence(vec!["alpha", "beta", "gamma"], 0..=2),
        category_filter in proptest::option::of(proptest::sample::select(vec!["web", "web/api", "cli"])),
        by_first in any::<bool>(),
    ) {
        let f = fixture();
        let publishers = [Publisher::new(SecretKey::generate()), Publisher::new(SecretKey::generate())];
        let mut expected = Vec::new();
        for (i, (tags, categories, first)) in packages.iter().enumerate() {
            let name = format!("pkg{i:02}");
            let mut meta = metadata(&name, "1.0.0", "some package");
            meta.keywords = tags.iter().map(|t| t.to_string()).collect();
            meta.categories = categories.iter().map(|c| c.to_string()).collect();
            let publisher = &publishers[usize::from(!*first)];
            publish(&f.store, publisher, meta, &name);
            let tag_ok = tag_filter.iter().all(|t| tags.contains(t));
            let category_ok = category_filter.is_none_or(|wanted| {
                categories.iter().any(|c| *c == wanted || c.starts_with(&format!("{wanted}/")))
            });
            let publisher_ok = !by_first || *first;
            if tag_ok && category_ok && publisher_ok {
                expected.push(name);
            }
        }
        let mut query = Query::new("").limit(100);
        for tag in &tag_filter {
            query = query.tag(*tag);
        }
        if let Some(category) = category_filter {
            query = query.category(category);
        }
        if by_first {
            query = query.publisher(publishers[0].public_key());
        }
        let results = f.store.packages().search(&query).unwrap();
        let names: Vec<String> = results.hits.iter().map(|h| h.name.to_string()).collect();
        prop_assert_eq!(results.total as usize, expected.len());
        prop_assert_eq!(names, expected.clone());
        // The same filters under a text every package matches (the ranked path).
        query.text = "some".into();
        let results = f.store.packages().search(&query).unwrap();
        let mut names: Vec<String> = results.hits.iter().map(|h| h.name.to_string()).collect();
        names.sort();
        prop_assert_eq!(results.total as usize, expected.len());
        prop_assert_eq!(names, expected);
    }
}
