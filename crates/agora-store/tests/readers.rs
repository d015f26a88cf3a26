//! Artifact readers against real files: exactly the artifact's bytes, nothing
//! unverified handed out (corrupted, truncated and extended files), and leases
//! that eviction respects.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::{self, Read};

use agora_core::{ArtifactData, ArtifactInfo, Error as CoreError, PackageMetadata, Publication, Publisher, SecretKey};
use agora_store::{ArtifactReader, Error, Store};

const NOW: u64 = 1_700_000_000;
const CHUNK: u32 = 4096;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    Fixture { _dir: dir, store }
}

/// 10 000 bytes: three chunks of 4096, 4096 and 1808 bytes.
fn three_chunks(seed: u8) -> Vec<u8> {
    (0..10_000u32).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Stores `content` as a cached (unpinned) download at `now`.
fn download(store: &Store, content: &[u8], now: u64) -> ArtifactInfo {
    let info = ArtifactInfo::compute(content, CHUNK).unwrap();
    store.artifacts().put(&info, &ArtifactData::Bytes(content.to_vec().into())).unwrap();
    store.artifacts().record(&info.digest, info.size, false, now).unwrap();
    info
}

/// Reads in `step`-byte pieces until the end or an error; returns the bytes
/// handed out and the error, if any.
fn read_in_steps(reader: &mut ArtifactReader, step: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; step];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return (bytes, None),
            Ok(read) => bytes.extend_from_slice(&buffer[..read]),
            Err(error) => return (bytes, Some(error)),
        }
    }
}

/// The digest mismatch inside a reader's I/O error.
fn mismatch(error: io::Error) -> CoreError {
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    match error.downcast::<Error>() {
        Ok(Error::Core(error @ CoreError::DigestMismatch { .. })) => error,
        other => panic!("expected a digest mismatch inside the i/o error, got {other:?}"),
    }
}

#[test]
fn a_reader_returns_exactly_the_bytes_of_a_three_chunk_artifact() {
    let f = fixture();
    let content = three_chunks(0);
    let info = download(&f.store, &content, NOW);
    assert_eq!(info.chunks.len(), 3);
    let artifacts = f.store.artifacts();

    // Pieces that straddle chunk boundaries.
    let mut reader = artifacts.open(&info).unwrap().unwrap();
    assert_eq!((reader.len(), reader.info()), (10_000, &info));
    let (bytes, error) = read_in_steps(&mut reader, 1000);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(bytes, content);
    assert_eq!(reader.read(&mut [0u8; 16]).unwrap(), 0, "still at the end");

    // Whole chunks.
    let mut reader = artifacts.open(&info).unwrap().unwrap();
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &content[..4096]);
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &content[4096..8192]);
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &content[8192..]);
    assert_eq!(reader.next_chunk().unwrap(), None);
    assert_eq!(reader.next_chunk().unwrap(), None);

    // Mixed: what `read` left of a chunk comes first.
    let mut reader = artifacts.open(&info).unwrap().unwrap();
    let mut start = [0u8; 100];
    reader.read_exact(&mut start).unwrap();
    assert_eq!(start, content[..100]);
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &content[100..4096]);
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, &content[4096..]);

    // Not held: no reader, and verify says so.
    let absent = ArtifactInfo::compute(b"never stored", CHUNK).unwrap();
    assert!(artifacts.open(&absent).unwrap().is_none());
    assert!(!artifacts.verify(&absent).unwrap());
    assert!(artifacts.verify(&info).unwrap());
}

#[test]
fn a_corrupted_chunk_fails_before_any_of_its_bytes_are_returned() {
    let f = fixture();
    let content = three_chunks(0);
    let info = download(&f.store, &content, NOW);
    let artifacts = f.store.artifacts();
    let mut corrupt = content.clone();
    corrupt[5000] ^= 0xff;
    fs::write(artifacts.path_of(&info.digest), &corrupt).unwrap();

    let mut reader = artifacts.open(&info).unwrap().unwrap();
    let (bytes, error) = read_in_steps(&mut reader, 1000);
    assert_eq!(bytes, &content[..4096], "exactly the chunk before the corrupted one");
    let error = mismatch(error.expect("the corrupted chunk must fail"));
    assert!(matches!(error, CoreError::DigestMismatch { expected, .. } if expected == info.chunks[1]), "{error}");
    // It keeps failing; it does not skip ahead to the next chunk.
    mismatch(reader.read(&mut [0u8; 1000]).unwrap_err());

    let mut reader = artifacts.open(&info).unwrap().unwrap();
    assert_eq!(reader.next_chunk().unwrap().unwrap(), &content[..4096]);
    let error = reader.next_chunk().unwrap_err();
    assert!(matches!(error, Error::Core(CoreError::DigestMismatch { expected, .. }) if expected == info.chunks[1]));
    assert!(reader.next_chunk().is_err());

    let error = artifacts.verify(&info).unwrap_err();
    assert!(matches!(error, Error::Core(CoreError::DigestMismatch { .. })), "{error}");
}

#[test]
fn truncated_and_extended_files_fail() {
    let f = fixture();
    let content = three_chunks(0);
    let info = download(&f.store, &content, NOW);
    let artifacts = f.store.artifacts();
    let path = artifacts.path_of(&info.digest);

    // Cut inside the last chunk, and cut right at a chunk boundary.
    for cut in [9000, 8192] {
        fs::write(&path, &content[..cut]).unwrap();
        let mut reader = artifacts.open(&info).unwrap().unwrap();
        let (bytes, error) = read_in_steps(&mut reader, 3000);
        assert_eq!(bytes, &content[..8192], "cut at {cut}");
        let error = mismatch(error.expect("a truncated file must fail"));
        assert!(matches!(error, CoreError::DigestMismatch { expected, .. } if expected == info.chunks[2]), "{error}");
        assert!(artifacts.verify(&info).is_err(), "cut at {cut}");
    }

    // Every chunk intact, then more: the last chunk is withheld.
    fs::write(&path, [content.as_slice(), b"trailing bytes"].concat()).unwrap();
    let mut reader = artifacts.open(&info).unwrap().unwrap();
    let (bytes, error) = read_in_steps(&mut reader, 3000);
    assert_eq!(bytes, &content[..8192]);
    let error = mismatch(error.expect("an extended file must fail"));
    assert!(matches!(error, CoreError::DigestMismatch { expected, .. } if expected == info.digest), "{error}");
    assert!(artifacts.verify(&info).is_err());

    // The same for an artifact of a single chunk: nothing at all is handed out.
    let small = download(&f.store, b"small", NOW);
    fs::write(artifacts.path_of(&small.digest), b"small!").unwrap();
    let mut reader = artifacts.open(&small).unwrap().unwrap();
    let (bytes, error) = read_in_steps(&mut reader, 3000);
    assert!(bytes.is_empty());
    mismatch(error.expect("an extended file must fail"));
}

#[test]
fn an_open_reader_holds_off_eviction_until_it_is_dropped() {
    let f = fixture();
    let content = three_chunks(0);
    let read = download(&f.store, &content, NOW);
    let other = download(&f.store, &three_chunks(1), NOW + 1);
    let (artifacts, storage) = (f.store.artifacts(), f.store.storage());

    let mut reader = artifacts.open(&read).unwrap().unwrap();
    let mut start = vec![0u8; 1000];
    reader.read_exact(&mut start).unwrap();
    // The least recently used one is leased: eviction skips it and takes the next.
    assert_eq!(storage.evict(0).unwrap(), [other.digest]);
    assert!(artifacts.has(&read.digest).unwrap());
    assert!(artifacts.path_of(&read.digest).exists());
    assert_eq!(storage.usage().unwrap().cached_bytes, 10_000, "over budget while the reader lives");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!([start, rest].concat(), content);
    assert!(storage.evict(0).unwrap().is_empty(), "still leased until dropped");

    drop(reader);
    assert_eq!(storage.evict(0).unwrap(), [read.digest]);
    assert!(!artifacts.has(&read.digest).unwrap());
    assert!(!artifacts.path_of(&read.digest).exists());
    assert!(artifacts.open(&read).unwrap().is_none());
}

#[test]
fn leases_add_up_and_hold_off_eviction_without_a_reader() {
    let f = fixture();
    let info = download(&f.store, &three_chunks(0), NOW);
    let (artifacts, storage) = (f.store.artifacts(), f.store.storage());
    let first = artifacts.lease(&info.digest);
    let second = artifacts.lease(&info.digest);
    assert_eq!(first.digest(), &info.digest);
    let reader = artifacts.open(&info).unwrap().unwrap();
    drop(first);
    drop(reader);
    assert!(storage.evict(0).unwrap().is_empty());
    assert!(artifacts.verify(&info).unwrap());
    drop(second);
    assert_eq!(storage.evict(0).unwrap(), [info.digest]);
}

#[test]
fn readers_racing_eviction_never_lose_their_file() {
    let f = fixture();
    let contents: Vec<Vec<u8>> = (0..4u8).map(three_chunks).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Evicts everything it can, as fast as it can, until told to stop.
    let evictor = {
        let (store, done) = (f.store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut evicted = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                evicted += store.storage().evict(0).unwrap().len();
            }
            evicted
        })
    };
    let artifacts = f.store.artifacts();
    let mut read = 0;
    for round in 0..200 {
        let content = &contents[round % contents.len()];
        let info = download(&f.store, content, NOW + round as u64);
        // Evicted before it could be opened: fine, that is what eviction is for.
        let Some(mut reader) = artifacts.open(&info).unwrap() else { continue };
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes, content);
        assert!(artifacts.path_of(&info.digest).exists(), "round {round}: the file went while a reader held it");
        assert!(artifacts.has(&info.digest).unwrap(), "round {round}: the row went while a reader held it");
        read += 1;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let evicted = evictor.join().unwrap();
    assert!(read > 0 && evicted > 0, "the race never happened: {read} read, {evicted} evicted");
}

#[test]
fn open_artifact_finds_the_version_and_reads_it() {
    let f = fixture();
    let publisher = Publisher::new(SecretKey::generate());
    let content = three_chunks(7);
    let info = ArtifactInfo::compute(&content, CHUNK).unwrap();
    let metadata = PackageMetadata::new("demo".parse().unwrap(), "1.0.0".parse().unwrap(), "a demo");
    let (manifest, index) = publisher.publish(metadata, info.clone(), None, NOW).unwrap();
    f.store
        .publish(&Publication { manifest, index, artifact: ArtifactData::Bytes(content.clone().into()) }, NOW)
        .unwrap();

    let name = "demo".parse().unwrap();
    assert!(f.store.open_artifact(&name, &"2.0.0".parse().unwrap()).unwrap().is_none());
    let (manifest, reader) = f.store.open_artifact(&name, &"1.0.0".parse().unwrap()).unwrap().unwrap();
    assert_eq!(manifest.manifest().artifact, info);
    let mut bytes = Vec::new();
    reader.unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, content);

    fs::remove_file(f.store.artifacts().path_of(&info.digest)).unwrap();
    let (_, reader) = f.store.open_artifact(&name, &"1.0.0".parse().unwrap()).unwrap().unwrap();
    assert!(reader.is_none(), "known version, artifact not held");
}
