//! `SignedPackageIndex::from_bytes` and `PackageIndex::from_trusted_bytes`, the
//! decoders of every package index that arrives from a peer, the DHT or the store.
//! What it asserts: `agora_fuzz::signed::check_signed`.

#![no_main]

use agora_core::SignedPackageIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| agora_fuzz::signed::check_signed::<SignedPackageIndex>(bytes));
