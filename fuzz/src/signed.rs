//! The one check behind the `signed_manifest` and `signed_index` targets: both
//! records are a canonical body plus a 64-byte signature, decoded by a verifying
//! and a trusting decoder.

use std::fmt::Debug;

use agora_core::{Error, Manifest, PackageIndex, PublicKey, Result, SecretKey, SignedManifest, SignedPackageIndex};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Input, fuzz_key, signed_by_fuzz_key};

/// A signed record type and its unsigned content.
pub trait SignedRecord: Sized + Debug + PartialEq + Serialize + DeserializeOwned {
    /// The unsigned content.
    type Unsigned: Clone + Debug + PartialEq;
    /// The verifying decoder.
    fn from_bytes(bytes: &[u8]) -> Result<Self>;
    /// The wire form.
    fn to_bytes(&self) -> Vec<u8>;
    /// Re-checks the signature.
    fn verify(&self) -> Result<()>;
    /// The content.
    fn unsigned(&self) -> &Self::Unsigned;
    /// The decoder that skips the signature.
    fn from_trusted_bytes(bytes: &[u8]) -> Result<Self::Unsigned>;
    /// What the signature covers.
    fn canonical_bytes(unsigned: &Self::Unsigned) -> Vec<u8>;
    /// The structural rules.
    fn validate(unsigned: &Self::Unsigned) -> Result<()>;
    /// The key that must sign it.
    fn signer(unsigned: &Self::Unsigned) -> PublicKey;
    /// Signs.
    fn sign(unsigned: Self::Unsigned, key: &SecretKey) -> Result<Self>;
}

impl SignedRecord for SignedManifest {
    type Unsigned = Manifest;
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        SignedManifest::from_bytes(bytes)
    }
    fn to_bytes(&self) -> Vec<u8> {
        SignedManifest::to_bytes(self)
    }
    fn verify(&self) -> Result<()> {
        SignedManifest::verify(self)
    }
    fn unsigned(&self) -> &Manifest {
        self.manifest()
    }
    fn from_trusted_bytes(bytes: &[u8]) -> Result<Manifest> {
        Manifest::from_trusted_bytes(bytes)
    }
    fn canonical_bytes(unsigned: &Manifest) -> Vec<u8> {
        unsigned.canonical_bytes()
    }
    fn validate(unsigned: &Manifest) -> Result<()> {
        unsigned.validate()
    }
    fn signer(unsigned: &Manifest) -> PublicKey {
        unsigned.publisher
    }
    fn sign(unsigned: Manifest, key: &SecretKey) -> Result<Self> {
        unsigned.sign(key)
    }
}

impl SignedRecord for SignedPackageIndex {
    type Unsigned = PackageIndex;
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        SignedPackageIndex::from_bytes(bytes)
    }
    fn to_bytes(&self) -> Vec<u8> {
        SignedPackageIndex::to_bytes(self)
    }
    fn verify(&self) -> Result<()> {
        SignedPackageIndex::verify(self)
    }
    fn unsigned(&self) -> &PackageIndex {
        self.index()
    }
    fn from_trusted_bytes(bytes: &[u8]) -> Result<PackageIndex> {
        PackageIndex::from_trusted_bytes(bytes)
    }
    fn canonical_bytes(unsigned: &PackageIndex) -> Vec<u8> {
        unsigned.canonical_bytes()
    }
    fn validate(unsigned: &PackageIndex) -> Result<()> {
        unsigned.validate()
    }
    fn signer(unsigned: &PackageIndex) -> PublicKey {
        unsigned.owner
    }
    fn sign(unsigned: PackageIndex, key: &SecretKey) -> Result<Self> {
        unsigned.sign(key)
    }
}

/// The fuzz target body. Mode byte: even, the data is a whole wire form (body +
/// signature); odd, the data is a body, signed here with the fuzz key.
///
/// Asserts: whatever decodes is in canonical form (re-encoding gives exactly the
/// input bytes) and valid; the verifying and the trusting decoders agree and
/// differ only by the signature check; the JSON form round-trips; a decoded
/// record, signed again, decodes to itself.
pub fn check_signed<R: SignedRecord>(bytes: &[u8]) {
    let input = Input::new(bytes);
    let wire = if input.mode % 2 == 0 { input.data.to_vec() } else { signed_by_fuzz_key(input.data) };
    let trusted = R::from_trusted_bytes(&wire);
    let signed = R::from_bytes(&wire);
    if let Ok(unsigned) = &trusted {
        let body = &wire[..wire.len() - 64];
        assert_eq!(R::canonical_bytes(unsigned), body, "a decoded record re-encodes to other bytes");
        R::validate(unsigned).expect("a decoded record is valid");
        if R::signer(unsigned) == fuzz_key().public_key() {
            let resigned = R::sign(unsigned.clone(), &fuzz_key()).expect("a decoded record can be signed again");
            assert_eq!(R::from_bytes(&resigned.to_bytes()).ok().as_ref(), Some(&resigned));
        }
    }
    match (&trusted, &signed) {
        (Ok(unsigned), Ok(signed)) => {
            assert_eq!(signed.unsigned(), unsigned, "the two decoders disagree");
            assert_eq!(signed.to_bytes(), wire, "a verified record re-encodes to other bytes");
            signed.verify().expect("a decoded record verifies");
            let json = serde_json::to_vec(signed).expect("a record serializes to JSON");
            let back: R = serde_json::from_slice(&json).expect("its JSON decodes");
            assert_eq!(&back, signed, "the JSON form does not round-trip");
        }
        (Ok(_), Err(error)) => {
            assert!(matches!(error, Error::InvalidSignature { .. }), "only the signature may differ: {error}")
        }
        (Err(_), Ok(signed)) => panic!("the verifying decoder accepted what the trusting one refused: {signed:?}"),
        (Err(_), Err(_)) => {}
    }
}
