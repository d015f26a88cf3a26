//! `SignedManifest::from_bytes` and `Manifest::from_trusted_bytes`, the decoders of
//! every manifest that arrives from a peer, the DHT or the store. What it asserts:
//! `agora_fuzz::signed::check_signed`.

#![no_main]

use agora_core::SignedManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| agora_fuzz::signed::check_signed::<SignedManifest>(bytes));
