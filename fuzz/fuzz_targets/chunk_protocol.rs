//! `/agora/artifact/1.0.0`: `ChunkRequest` and `ChunkResponse`, bare and through
//! `ChunkCodec`. What it asserts: `agora_fuzz::frames::check_protocol`, and that a
//! chunk read through the codec is at most the largest chunk size.

#![no_main]

use agora_core::ArtifactInfo;
use agora_fuzz::frames::{Decoded, Protocol, check_protocol};
use agora_net::{ARTIFACT_PROTOCOL, ChunkCodec, ChunkResponse};
use libfuzzer_sys::fuzz_target;

/// The documented frame bounds: a digest and an index (64 bytes at most), a chunk
/// plus its tag.
const PROTOCOL: Protocol =
    Protocol { name: ARTIFACT_PROTOCOL, max_request: 64, max_response: ArtifactInfo::MAX_CHUNK_SIZE as usize + 16 };

fuzz_target!(|bytes: &[u8]| {
    let framed = bytes.first().is_some_and(|mode| mode & 2 != 0);
    if let Decoded::Response(ChunkResponse::Data(data)) = check_protocol::<ChunkCodec, _, _>(bytes, &PROTOCOL)
        && framed
    {
        assert!(data.len() <= ArtifactInfo::MAX_CHUNK_SIZE as usize + 15);
    }
});
