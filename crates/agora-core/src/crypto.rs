//! Keys, signatures and SHA-256 digests, each with a hex text form for JSON and
//! display. Secret keys never print their secret.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Bytes or text that do not decode as the expected value. Converts into
/// [`Error::Decode`](crate::Error::Decode).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// Why it failed.
    pub reason: String,
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn finish(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }
}

/// An ed25519 public key: the identity of a publisher.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| DecodeError { what: "public key", reason: "not a valid ed25519 point".into() })
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify(message, &signature).is_ok()
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// An ed25519 secret key. `Debug` shows only the public half.
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        // The OS random source failing is not recoverable for key generation.
        #[allow(clippy::expect_used)]
        getrandom::getrandom(&mut seed).expect("the operating system's random source is unavailable");
        Self::from_bytes(&seed)
    }

    /// Builds a key from its 32-byte seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Parses the 64-character hex form of the seed.
    /// The error never repeats the text: a mistyped secret must not end up in logs.
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| DecodeError {
            what: "secret key",
            reason: format!("expected 64 hex characters, found {} characters", text.trim().chars().count()),
        })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The 32-byte seed. Handle with care.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The seed as hex. Handle with care.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps raw signature bytes.
    pub const fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

fn decode_hex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|_| DecodeError {
        what,
        reason: format!("expected {} hex characters, found `{}`", N * 2, truncate(text)),
    })?;
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

macro_rules! hex_text_form {
    ($type:ty, $len:literal, $what:literal, $build:expr) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(&self.as_bytes()[..]))
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($type), self)
            }
        }

        impl FromStr for $type {
            type Err = DecodeError;

            fn from_str(text: &str) -> Result<Self> {
                let bytes = decode_hex::<$len>(text, $what)?;
                $build(bytes)
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_text_form!(Digest, 32, "digest", |bytes| Ok(Digest(bytes)));
hex_text_form!(PublicKey, 32, "public key", |bytes: [u8; 32]| PublicKey::from_bytes(&bytes));
hex_text_form!(Signature, 64, "signature", |bytes| Ok(Signature(bytes)));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms_round_trip() {
        let key = SecretKey::generate();
        let public = key.public_key();
        assert_eq!(public.to_string().parse::<PublicKey>().ok(), Some(public));
        let signature = key.sign(b"message");
        assert_eq!(signature.to_string().parse::<Signature>().ok(), Some(signature));
        let digest = Digest::of(b"abc");
        assert_eq!(digest.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(SecretKey::from_hex(&key.to_hex()).map(|k| k.public_key()).ok(), Some(public));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let key = SecretKey::generate();
        let printed = format!("{key:?}");
        assert!(!printed.contains(&key.to_hex()));
        assert!(printed.contains(&key.public_key().to_hex()));
    }

    #[test]
    fn bad_hex_is_a_clear_error() {
        let error = "zz".parse::<Digest>().unwrap_err();
        assert!(error.to_string().contains("expected 64 hex characters"), "{error}");
        let secretish = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeX";
        let error = SecretKey::from_hex(secretish).unwrap_err().to_string();
        assert!(!error.contains("0123456789abcdef"), "a secret key's error repeats it: {error}");
        assert!(error.contains("expected 64 hex characters"), "{error}");
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = SecretKey::generate();
        let signature = key.sign(b"hello");
        assert!(key.public_key().verify(b"hello", &signature));
        assert!(!key.public_key().verify(b"hellO", &signature));
        assert!(!SecretKey::generate().public_key().verify(b"hello", &signature));
    }
}
