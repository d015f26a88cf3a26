//! `/agora/sync/1.0.0`: `SyncRequest` and `SyncResponse`, bare and through
//! `SyncCodec`. What it asserts: `agora_fuzz::frames::check_protocol`, and that a
//! decoded request asks for 1 to `MAX_SYNC_PAGE` packages and a decoded page holds
//! at most `MAX_SYNC_PAGE` entries.

#![no_main]

use agora_fuzz::frames::{Decoded, Protocol, check_protocol};
use agora_net::{MAX_SYNC_PAGE, MAX_SYNC_RESPONSE, SYNC_PROTOCOL, SyncCodec};
use libfuzzer_sys::fuzz_target;

/// The documented frame bounds: requests up to 256 bytes, pages up to 8 MiB.
const PROTOCOL: Protocol = Protocol { name: SYNC_PROTOCOL, max_request: 256, max_response: MAX_SYNC_RESPONSE };

fuzz_target!(|bytes: &[u8]| match check_protocol::<SyncCodec, _, _>(bytes, &PROTOCOL) {
    Decoded::Request(request) => assert!((1..=MAX_SYNC_PAGE).contains(&request.limit)),
    Decoded::Response(page) => assert!(page.entries.len() <= usize::from(MAX_SYNC_PAGE)),
    Decoded::Nothing => {}
});
