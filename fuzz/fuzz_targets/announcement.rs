//! Gossip announcements (`Announcement::decode`, topic `agora/v1/announce`).
//!
//! Asserts: an announcement that decodes re-encodes to exactly its bytes and fits
//! in `MAX_ANNOUNCEMENT` when its input did; the records it carries go through
//! the verifying decoders as the node's ingest does, and a publish whose manifest
//! and index both verify can be judged by `Publication::check` (an error or not,
//! never a panic); an equivocation proof that decodes re-encodes to its bytes and
//! is the same proof whichever way round its indexes are given.

#![no_main]

use agora_core::{Equivocation, Publication, SignedManifest, SignedPackageIndex};
use agora_net::{Announcement, MAX_ANNOUNCEMENT, Wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(announcement) = Announcement::decode(bytes) else { return };
    let encoded = announcement.encode();
    assert_eq!(encoded, bytes, "{announcement:?} re-encodes to other bytes");
    assert!(bytes.len() > MAX_ANNOUNCEMENT || encoded.len() <= MAX_ANNOUNCEMENT);
    match &announcement {
        Announcement::Publish { manifest, index } => {
            if let (Ok(manifest), Ok(index)) =
                (SignedManifest::from_bytes(manifest), SignedPackageIndex::from_bytes(index))
            {
                let _ = Publication::check(&manifest, &index, None);
                let _ = Publication::check(&manifest, &index, Some(index.index()));
            }
        }
        Announcement::Index { index } => {
            let _ = SignedPackageIndex::from_bytes(index);
        }
        Announcement::Equivocation { proof } => {
            if let Ok(decoded) = Equivocation::from_bytes(proof) {
                assert_eq!(&decoded.to_bytes(), proof, "an equivocation proof re-encodes to other bytes");
                let (first, second) = decoded.indexes();
                assert!(Equivocation::new(second.clone(), first.clone()).is_ok_and(|again| again == decoded));
            }
        }
    }
});
