//! The archive reader as a node runs it on an upload (`POST /v1/packages`):
//! `agora::archive::manifest_from_archive` and `agora::inspect_archive` (the size
//! check, the hashing and the manifest read `Node::publish_archive` does before it
//! signs), then the signing itself.
//!
//! Mode byte: bit 0 clear, the data is the upload as it is; set, the data is a tar,
//! gzipped here (so the gzip checksum holds and mutations reach the tar reader).
//! Bits 1-7 pick the size of the reads when the archive is read a second time in
//! pieces.
//!
//! Asserts: errors, never panics; the result (the metadata, or the kind of error)
//! does not depend on how the input is split into reads; `inspect_archive`
//! refuses an upload over the node's `max_artifact_size` and otherwise accepts
//! exactly what `manifest_from_archive` accepts, with the same metadata and the
//! artifact's real digest, size and chunks; whatever it accepts the node can sign,
//! and the signed manifest and index decode on a receiving node to the same values
//! and pass `Publication::check`.

#![no_main]

use agora::archive::{manifest_from_archive, unpacked_limit};
use agora_core::{ArtifactData, ArtifactInfo, Publication, Publisher, SignedManifest, SignedPackageIndex};
use agora_fuzz::{Input, Trickle, fuzz_key, gzip};
use libfuzzer_sys::fuzz_target;

/// The node's `max_artifact_size` here: small, so the size bounds are reachable.
const MAX_ARTIFACT_SIZE: u64 = 64 * 1024;
const CHUNK_SIZE: u32 = 4096;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::new(bytes);
    let upload = if input.mode & 1 == 1 { gzip(input.data) } else { input.data.to_vec() };
    let step = usize::from(input.mode >> 1) + 1;
    let limit = unpacked_limit(upload.len() as u64, MAX_ARTIFACT_SIZE);

    let whole = manifest_from_archive(upload.as_slice(), limit);
    let pieces = manifest_from_archive(Trickle::new(&upload, step), limit);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // The message may differ (a corrupt deflate stream is found sooner or later
        // depending on how much the tar reader asked for), the kind of error not.
        (Err(a), Err(b)) => {
            assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b), "{a} / {b}: depends on the read size")
        }
        _ => panic!("the result depends on the read size: {whole:?} / {pieces:?}"),
    }

    let inspected = agora::inspect_archive(&ArtifactData::Bytes(upload.clone().into()), MAX_ARTIFACT_SIZE, CHUNK_SIZE);
    if upload.len() as u64 > MAX_ARTIFACT_SIZE {
        assert!(inspected.is_err(), "an upload over max_artifact_size was accepted");
        return;
    }
    let (metadata, info) = match (whole, inspected) {
        (Ok(expected), Ok((metadata, info, unpacked))) => {
            assert_eq!(metadata, expected);
            let counted = agora::archive::inspect(&upload[..], limit).map(|(_, contents)| contents.bytes);
            assert_eq!(counted.ok(), Some(unpacked), "the unpacked size depends on the limit");
            (metadata, info)
        }
        (Err(_), Err(_)) => return,
        (whole, inspected) => panic!("inspect_archive disagrees with manifest_from_archive: {whole:?} / {inspected:?}"),
    };
    assert_eq!(Some(&info), ArtifactInfo::compute(&upload, CHUNK_SIZE).ok().as_ref(), "the upload was hashed wrongly");

    let (manifest, index) = Publisher::new(fuzz_key())
        .publish(metadata, info, None, 1_700_000_000)
        .expect("the node can sign what it accepted");
    assert_eq!(SignedManifest::from_bytes(&manifest.to_bytes()).ok().as_ref(), Some(&manifest));
    assert_eq!(SignedPackageIndex::from_bytes(&index.to_bytes()).ok().as_ref(), Some(&index));
    Publication::check(&manifest, &index, None).expect("a receiving node accepts the publication");
});
