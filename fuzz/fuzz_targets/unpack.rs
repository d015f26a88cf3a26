//! `agora::archive::unpack` (what `agora fetch` runs on an archive from a peer)
//! into a fresh temporary directory, with a small limit, and `pack` of what it
//! wrote.
//!
//! Mode byte: bit 0 clear, the data is the archive as it is; set, the data is a
//! tar, gzipped here.
//!
//! Asserts: errors, never panics; nothing is ever written outside the
//! destination, and nothing at all is left when unpacking fails; no symbolic link
//! is ever created; the files written are exactly what the summary reports, at
//! most the limit in bytes; unpacking succeeds exactly when
//! `manifest_from_archive` accepts the archive, and the unpacked `agora.toml`
//! reads back as the same metadata; the unpacked directory packs again, to an
//! archive with the same metadata, and unpacking and packing that gives the same
//! bytes (packing is deterministic and a fixed point).

#![no_main]

use std::fs;
use std::path::Path;

use agora::archive::{UnpackSummary, manifest_from_archive, pack, read_manifest, unpack};
use agora_fuzz::{Input, gzip};
use libfuzzer_sys::fuzz_target;

/// The unpack limit: small, so floods of entries and big files hit it.
const LIMIT: u64 = 256 * 1024;
/// Limits for repacking, which the fixed point must not run into.
const REPACK_LIMIT: u64 = 16 * 1024 * 1024;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::new(bytes);
    let archive = if input.mode & 1 == 1 { gzip(input.data) } else { input.data.to_vec() };
    // A RAM disk where there is one: the target does a few file operations per run.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temp dir");
    let parent = base.path().join("parent");
    fs::create_dir(&parent).expect("the parent directory");
    let dest = parent.join("dest");

    let unpacked = unpack(archive.as_slice(), &dest, LIMIT);
    let expected = manifest_from_archive(archive.as_slice(), LIMIT);
    let Ok(summary) = unpacked else {
        assert!(expected.is_err(), "unpack failed ({unpacked:?}) on an archive manifest_from_archive accepts");
        let left: Vec<_> = fs::read_dir(&parent).expect("the parent").collect();
        assert!(left.is_empty(), "a failed unpack left {left:?} behind");
        return;
    };
    let metadata = match expected {
        Ok(metadata) => metadata,
        Err(error) => panic!("unpack accepted an archive manifest_from_archive refuses: {error}"),
    };
    assert_eq!(written(&parent, &dest), summary, "the summary is not what was written");
    assert!(summary.bytes <= LIMIT);
    assert_eq!(read_manifest(&dest).expect("the unpacked agora.toml"), metadata);

    let (repacked_metadata, repacked) = pack(&dest, REPACK_LIMIT).expect("an unpacked package packs again");
    assert_eq!(repacked_metadata, metadata);
    assert_eq!(manifest_from_archive(repacked.as_slice(), REPACK_LIMIT).expect("the repacked archive reads"), metadata);
    let again = parent.join("again");
    unpack(repacked.as_slice(), &again, REPACK_LIMIT).expect("the repacked archive unpacks");
    let (_, twice) = pack(&again, REPACK_LIMIT).expect("it packs once more");
    assert!(twice == repacked, "packing is not a fixed point");
});

/// Walks everything below `parent` (without following links), checking that it all
/// lies inside `dest` and holds no link; returns the files and bytes inside `dest`.
fn written(parent: &Path, dest: &Path) -> UnpackSummary {
    let mut summary = UnpackSummary::default();
    let mut pending = vec![parent.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("a directory unpack wrote") {
            let path = entry.expect("a directory entry").path();
            assert!(path.starts_with(dest), "unpack wrote {} outside {}", path.display(), dest.display());
            let metadata = fs::symlink_metadata(&path).expect("metadata");
            if metadata.is_dir() {
                pending.push(path);
            } else {
                assert!(metadata.is_file(), "unpack made {} neither a file nor a directory", path.display());
                summary.files += 1;
                summary.bytes += metadata.len();
            }
        }
    }
    summary
}
