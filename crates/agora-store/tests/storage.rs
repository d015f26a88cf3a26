//! Local artifact storage policy against real files: pins, usage, LRU eviction
//! (rows first, then files), and adopting finished downloads.

#![allow(clippy::unwrap_used)]

use std::fs;

use agora_core::{ArtifactData, ArtifactInfo, Digest, Error as CoreError, PackageMetadata, Publication, Publisher};
use agora_store::{Error, StorageUsage, Store};

const NOW: u64 = 1_700_000_000;
const CHUNK: u32 = 4096;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    Fixture { dir, store }
}

fn digest(name: &str) -> Digest {
    Digest::of(name.as_bytes())
}

/// Stores `content` as a cached (unpinned) download at `now`.
fn download(store: &Store, content: &[u8], now: u64) -> Digest {
    let info = ArtifactInfo::compute(content, CHUNK).unwrap();
    store.artifacts().put(&info, &ArtifactData::Bytes(content.to_vec().into())).unwrap();
    store.artifacts().record(&info.digest, info.size, false, now).unwrap();
    info.digest
}

#[test]
fn pins_and_usage() {
    let f = fixture();
    let (artifacts, storage) = (f.store.artifacts(), f.store.storage());
    assert_eq!(storage.usage().unwrap(), StorageUsage::default());
    artifacts.record(&digest("a"), 100, false, NOW).unwrap();
    artifacts.record(&digest("b"), 20, false, NOW).unwrap();
    artifacts.record(&digest("c"), 3, true, NOW).unwrap();
    assert_eq!(
        storage.usage().unwrap(),
        StorageUsage { pinned_artifacts: 1, pinned_bytes: 3, cached_artifacts: 2, cached_bytes: 120 }
    );

    assert!(storage.set_pinned(&digest("a"), true).unwrap());
    assert!(storage.set_pinned(&digest("a"), true).unwrap(), "pinning twice is fine");
    assert!(!storage.set_pinned(&digest("missing"), true).unwrap());
    assert!(!artifacts.has(&digest("missing")).unwrap(), "pinning does not record an artifact");
    assert_eq!(
        storage.usage().unwrap(),
        StorageUsage { pinned_artifacts: 2, pinned_bytes: 103, cached_artifacts: 1, cached_bytes: 20 }
    );
    assert!(storage.set_pinned(&digest("c"), false).unwrap());
    assert_eq!(
        storage.usage().unwrap(),
        StorageUsage { pinned_artifacts: 1, pinned_bytes: 100, cached_artifacts: 2, cached_bytes: 23 }
    );
    // Usage agrees with the overall stats.
    let stats = f.store.packages().stats().unwrap();
    assert_eq!((stats.artifacts, stats.artifact_bytes), (3, 123));
}

#[test]
fn eviction_is_least_recently_used_first_with_ties_broken() {
    let f = fixture();
    let (artifacts, storage) = (f.store.artifacts(), f.store.storage());
    // stored_at = last_used = the time given.
    artifacts.record(&digest("old"), 10, false, 1).unwrap();
    artifacts.record(&digest("tie-stored-early"), 10, false, 2).unwrap();
    artifacts.record(&digest("tie-stored-late"), 10, false, 3).unwrap();
    artifacts.record(&digest("recent"), 10, false, 4).unwrap();
    artifacts.record(&digest("pinned-old"), 1000, true, 0).unwrap();
    // Same last_used for the two ties; stored_at decides.
    storage.touch(&digest("tie-stored-late"), 50).unwrap();
    storage.touch(&digest("tie-stored-early"), 50).unwrap();
    storage.touch(&digest("missing"), 50).unwrap();
    // Same last_used and stored_at: the digest decides.
    let (x, y) = (digest("same-x"), digest("same-y"));
    artifacts.record(&x, 10, false, 40).unwrap();
    artifacts.record(&y, 10, false, 40).unwrap();
    let (first, second) = if x < y { (x, y) } else { (y, x) };

    let order = [digest("old"), digest("recent"), first, second, digest("tie-stored-early"), digest("tie-stored-late")];
    let candidates = |max: u64| -> Vec<Digest> {
        storage
            .eviction_candidates(max)
            .unwrap()
            .into_iter()
            .map(|(digest, size)| {
                assert_eq!(size, 10);
                digest
            })
            .collect()
    };
    // 60 cached bytes in all (the pinned 1000 do not count).
    assert!(candidates(60).is_empty());
    assert!(candidates(u64::MAX).is_empty());
    assert_eq!(candidates(59), order[..1]);
    assert_eq!(candidates(50), order[..1]);
    assert_eq!(candidates(49), order[..2]);
    assert_eq!(candidates(15), order[..5]);
    // Even at a limit of 0, pinned artifacts are never candidates.
    assert_eq!(candidates(0), order);

    // Using an artifact moves it to the back of the line.
    storage.touch(&digest("old"), 100).unwrap();
    assert_eq!(candidates(50), [digest("recent")]);
}

#[test]
fn pinned_artifacts_are_never_forgotten_or_evicted() {
    let f = fixture();
    let publisher = Publisher::new(agora_core::SecretKey::generate());
    let metadata = PackageMetadata::new("mine".parse().unwrap(), "1.0.0".parse().unwrap(), "mine");
    let content = vec![7u8; 10_000];
    let info = ArtifactInfo::compute(&content, CHUNK).unwrap();
    let (manifest, index) = publisher.publish(metadata, info.clone(), None, NOW).unwrap();
    f.store.publish(&Publication { manifest, index, artifact: ArtifactData::Bytes(content.into()) }, NOW).unwrap();

    let error = f.store.storage().forget(&info.digest).unwrap_err();
    assert!(matches!(error, Error::Pinned(pinned) if pinned == info.digest), "{error}");
    assert!(f.store.artifacts().has(&info.digest).unwrap());
    // Forgetting what is not held is nothing.
    f.store.storage().forget(&digest("missing")).unwrap();

    // Far over a limit of 0, and still kept.
    assert!(f.store.storage().eviction_candidates(0).unwrap().is_empty());
    assert!(f.store.storage().evict(0).unwrap().is_empty());
    assert!(f.store.artifacts().verify(&info).unwrap());
    assert_eq!(f.store.storage().usage().unwrap().pinned_bytes, 10_000);
}

#[test]
fn evict_removes_rows_then_files() {
    let f = fixture();
    let oldest = download(&f.store, &[1u8; 5000], NOW);
    let middle = download(&f.store, &[2u8; 5000], NOW + 1);
    let newest = download(&f.store, &[3u8; 5000], NOW + 2);
    let pinned = download(&f.store, &[4u8; 50_000], NOW - 100);
    f.store.storage().set_pinned(&pinned, true).unwrap();
    f.store.storage().touch(&oldest, NOW + 3).unwrap();

    let evicted = f.store.storage().evict(6000).unwrap();
    assert_eq!(evicted, [middle, newest]);
    for digest in &evicted {
        assert!(!f.store.artifacts().has(digest).unwrap());
        assert!(!f.store.artifacts().path_of(digest).exists(), "evicted file left on disk");
    }
    for digest in [oldest, pinned] {
        assert!(f.store.artifacts().has(&digest).unwrap());
        assert!(f.store.artifacts().path_of(&digest).exists());
    }
    assert_eq!(
        f.store.storage().usage().unwrap(),
        StorageUsage { pinned_artifacts: 1, pinned_bytes: 50_000, cached_artifacts: 1, cached_bytes: 5000 }
    );
    assert!(f.store.storage().evict(6000).unwrap().is_empty(), "already within the limit");

    // A row whose file is already gone is still evicted.
    fs::remove_file(f.store.artifacts().path_of(&oldest)).unwrap();
    assert_eq!(f.store.storage().evict(0).unwrap(), [oldest]);
    assert_eq!(f.store.artifacts().held().unwrap(), [pinned]);
}

#[test]
fn adopt_moves_a_verified_download_into_place() {
    let f = fixture();
    let downloads = f.dir.path().join("data").join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let content: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let info = ArtifactInfo::compute(&content, CHUNK).unwrap();
    let source = downloads.join("part-1");
    fs::write(&source, &content).unwrap();

    let stored = f.store.artifacts().adopt(&info, &source).unwrap();
    assert!(stored.created);
    assert_eq!(stored.path, f.store.artifacts().path_of(&info.digest));
    assert!(!source.exists(), "the source was moved, not copied");
    assert_eq!(fs::read(&stored.path).unwrap(), content);
    assert!(f.store.artifacts().verify(&info).unwrap());

    // Adopting the same artifact again replaces it with an identical copy.
    fs::write(&source, &content).unwrap();
    let again = f.store.artifacts().adopt(&info, &source).unwrap();
    assert!(!again.created);
    assert!(!source.exists());
    assert_eq!(fs::read(&again.path).unwrap(), content);
}

#[test]
fn adopt_refuses_a_mismatch_and_leaves_the_source() {
    let f = fixture();
    let downloads = f.dir.path().join("data").join("downloads");
    fs::create_dir_all(&downloads).unwrap();
    let promised: Vec<u8> = vec![9u8; 10_000];
    let info = ArtifactInfo::compute(&promised, CHUNK).unwrap();

    let mut other = promised.clone();
    other[5000] = 0;
    let mut lying_chunks = info.clone();
    lying_chunks.chunks[1] = Digest::of(b"x");
    let cases: [(&ArtifactInfo, Vec<u8>); 4] = [
        (&info, other),
        (&info, [promised.as_slice(), b"more"].concat()),
        (&info, promised[..9000].to_vec()),
        (&lying_chunks, promised.clone()),
    ];
    for (i, (expected, content)) in cases.into_iter().enumerate() {
        let source = downloads.join(format!("bad-{i}"));
        fs::write(&source, &content).unwrap();
        let error = f.store.artifacts().adopt(expected, &source).unwrap_err();
        let Error::Core(error) = error else { panic!("case {i}: expected a domain error, got {error}") };
        assert!(matches!(error, CoreError::DigestMismatch { .. } | CoreError::InvalidManifest(_)), "case {i}: {error}");
        assert_eq!(fs::read(&source).unwrap(), content, "case {i}: the source must be left in place");
        assert!(!f.store.artifacts().path_of(&expected.digest).exists(), "case {i}: something was stored");
    }
    assert!(!f.store.artifacts().verify(&info).unwrap());

    // The download path (chunks already verified by the caller) checks the size
    // and the whole digest, with the same errors and the source left in place.
    let mut other = promised.clone();
    other[0] = 1;
    let cases = [other, [promised.as_slice(), b"more"].concat(), promised[..9000].to_vec()];
    for (i, content) in cases.into_iter().enumerate() {
        let source = downloads.join(format!("bad-verified-{i}"));
        fs::write(&source, &content).unwrap();
        let error = f.store.artifacts().adopt_chunk_verified(&info, &source).unwrap_err();
        let Error::Core(error) = error else { panic!("case {i}: expected a domain error, got {error}") };
        assert!(matches!(error, CoreError::DigestMismatch { .. } | CoreError::InvalidManifest(_)), "case {i}: {error}");
        assert_eq!(fs::read(&source).unwrap(), content, "case {i}: the source must be left in place");
        assert!(!f.store.artifacts().path_of(&info.digest).exists(), "case {i}: something was stored");
    }
    let source = downloads.join("good");
    fs::write(&source, &promised).unwrap();
    let stored = f.store.artifacts().adopt_chunk_verified(&info, &source).unwrap();
    assert!(stored.created && !source.exists());
    assert!(f.store.artifacts().verify(&info).unwrap());
    assert_eq!(stored.path, f.store.artifacts().path_of(&info.digest));

    // A missing source is an I/O error.
    let error = f.store.artifacts().adopt(&info, &downloads.join("absent")).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
}
