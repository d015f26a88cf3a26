//! Honest disagreement about names, and proof of dishonesty by owners.
//!
//! Trust on first use gives each node *an* owner per name, but two publishers
//! who never saw each other can both claim one name in good faith. A validly
//! signed index by another key is therefore evidence, not an attack: a node keeps
//! it as a competing [`Claim`] (bounded), shows the name as contested, and lets
//! its user choose ([`NameClaims`]). The default owner is the claim the node
//! trusted first; it changes only when the user says so.
//!
//! An owner that signs two different indexes with one sequence has equivocated:
//! it told different peers different truths. The two signed indexes together are
//! an [`Equivocation`], checkable by anyone, gossiped, and shown wherever that
//! owner's packages appear.

use serde::{Deserialize, Serialize};

use crate::encoding::{Decoder, Encoder};
use crate::{Error, PackageName, PublicKey, Result, SignedPackageIndex, Version};

const EQUIVOCATION_DOMAIN: &str = "agora/equivocation/v1";

/// Most competing claims a node keeps per name, besides the one it trusts:
/// enough to show any honest conflict, bounded against a key-grinding flood.
pub const MAX_COMPETING_CLAIMS: usize = 4;

/// One owner's claim to a name, as a node knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The key that signed the claim's index.
    pub owner: PublicKey,
    /// The highest index sequence seen for the claim.
    pub sequence: u64,
    /// Versions the claim's index lists.
    pub versions: usize,
    /// The claim's default version (highest live release), if any.
    pub latest: Option<Version>,
    /// True for the claim this node serves for the name.
    pub default: bool,
}

/// Who claims a name, from one node's point of view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameClaims {
    /// The name.
    pub name: PackageName,
    /// True when the user chose the default owner (`agora trust`); false when it
    /// is simply the first claim this node saw.
    pub chosen: bool,
    /// The default claim first, then competing claims in the order they were seen.
    pub claims: Vec<Claim>,
    /// Owners of claims to this name proven to have equivocated.
    pub equivocated: Vec<PublicKey>,
}

impl NameClaims {
    /// True when more than one key claims the name.
    pub fn contested(&self) -> bool {
        self.claims.len() > 1
    }

    /// The claim this node serves.
    pub fn default_claim(&self) -> Option<&Claim> {
        self.claims.iter().find(|claim| claim.default)
    }
}

/// Two different indexes of one name signed by one key with one sequence: proof
/// that the key's owner equivocated. Building one checks all of that, so holding
/// an `Equivocation` means the proof holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivocation {
    first: SignedPackageIndex,
    second: SignedPackageIndex,
}

impl Equivocation {
    /// Most bytes of an encoded proof (two indexes of at most 1 MiB each would not
    /// fit a gossip message; the record limit applies to each index).
    pub const MAX_LEN: usize = 2 * 1024 * 1024 + 1024;

    /// Checks that `first` and `second` prove an equivocation. The pair is kept in
    /// a canonical order (by wire bytes), so both ways round give one proof.
    pub fn new(first: SignedPackageIndex, second: SignedPackageIndex) -> Result<Self> {
        let (a, b) = (first.index(), second.index());
        let not_a_proof = |reason: String| Err(Error::InvalidIndex(format!("not an equivocation: {reason}")));
        if a.name != b.name {
            return not_a_proof(format!("the indexes are of `{}` and `{}`", a.name, b.name));
        }
        if a.owner != b.owner {
            return not_a_proof(format!("the indexes are signed by {} and {}", a.owner, b.owner));
        }
        if a.sequence != b.sequence {
            return not_a_proof(format!("the sequences differ ({} and {})", a.sequence, b.sequence));
        }
        if a == b {
            return not_a_proof("the two indexes are the same".into());
        }
        let (first, second) = if first.to_bytes() <= second.to_bytes() { (first, second) } else { (second, first) };
        Ok(Self { first, second })
    }

    /// The name both indexes are for.
    pub fn name(&self) -> &PackageName {
        &self.first.index().name
    }

    /// The key that signed both.
    pub fn owner(&self) -> &PublicKey {
        &self.first.index().owner
    }

    /// The sequence both carry.
    pub fn sequence(&self) -> u64 {
        self.first.index().sequence
    }

    /// The two signed indexes, in canonical order.
    pub fn indexes(&self) -> (&SignedPackageIndex, &SignedPackageIndex) {
        (&self.first, &self.second)
    }

    /// The wire form: a domain tag and the two signed indexes, each length-prefixed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut encoder = Encoder::new(EQUIVOCATION_DOMAIN);
        for index in [&self.first, &self.second] {
            let bytes = index.to_bytes();
            encoder.len(bytes.len());
            encoder.raw(&bytes);
        }
        encoder.finish()
    }

    /// Decodes the wire form and checks both signatures and the proof.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > Self::MAX_LEN {
            return Err(Error::Decode {
                what: "equivocation proof",
                reason: format!("{} bytes exceeds the limit of {}", bytes.len(), Self::MAX_LEN),
            });
        }
        let mut decoder = Decoder::new("equivocation proof", EQUIVOCATION_DOMAIN, bytes)?;
        let mut index = || -> Result<SignedPackageIndex> {
            let len = decoder.count(Self::MAX_LEN, 1)?;
            SignedPackageIndex::from_bytes(decoder.take(len)?)
        };
        let (first, second) = (index()?, index()?);
        decoder.finish()?;
        let proof = Self::new(first, second)?;
        if proof.to_bytes() != bytes {
            return Err(Error::Decode {
                what: "equivocation proof",
                reason: "the indexes are not in canonical order".into(),
            });
        }
        Ok(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ArtifactInfo, PackageMetadata, Publisher, SecretKey};

    fn index(key: &SecretKey, name: &str, version: &str, sequence: u64) -> SignedPackageIndex {
        let metadata = PackageMetadata::new(name.parse().unwrap(), version.parse().unwrap(), "x");
        let info = ArtifactInfo::compute(version.as_bytes(), 4096).unwrap();
        let (_, index) = Publisher::new(key.clone()).publish(metadata, info, None, 1).unwrap();
        let mut index = index.into_index();
        index.sequence = sequence;
        index.sign(key).unwrap()
    }

    #[test]
    fn a_proof_needs_one_key_one_name_one_sequence_and_two_contents() {
        let owner = SecretKey::generate();
        let a = index(&owner, "demo", "1.0.0", 5);
        let b = index(&owner, "demo", "2.0.0", 5);
        let proof = Equivocation::new(a.clone(), b.clone()).unwrap();
        assert_eq!(proof, Equivocation::new(b.clone(), a.clone()).unwrap(), "one proof whichever way round");
        assert_eq!((proof.name().as_str(), proof.owner(), proof.sequence()), ("demo", &owner.public_key(), 5));
        let bytes = proof.to_bytes();
        assert_eq!(Equivocation::from_bytes(&bytes).unwrap(), proof);

        assert!(Equivocation::new(a.clone(), a.clone()).is_err(), "the same index twice");
        assert!(Equivocation::new(a.clone(), index(&owner, "demo", "2.0.0", 6)).is_err(), "two sequences");
        assert!(Equivocation::new(a.clone(), index(&owner, "other", "2.0.0", 5)).is_err(), "two names");
        let stranger = SecretKey::generate();
        assert!(Equivocation::new(a, index(&stranger, "demo", "2.0.0", 5)).is_err(), "two keys");

        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(Equivocation::from_bytes(&tampered).is_err(), "a broken signature");
        let mut trailing = bytes;
        trailing.push(0);
        assert!(Equivocation::from_bytes(&trailing).is_err(), "trailing bytes");
    }
}
