//! What ingesting records from peers did, and the unit sync pages carry: the
//! types [`crate::sync`] and [`crate::claims`] share.

use agora_core::IndexChange;

/// What ingesting a record from a peer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// The record was new here and is now stored.
    Inserted,
    /// The index replaced an older one of the same owner; this is what changed.
    Updated(IndexChange),
    /// The same record was already stored.
    Unchanged,
    /// An older copy of the stored index (a lower sequence); ignored.
    Stale,
    /// A competing claim to a known name (an index by another key than the one
    /// this node serves for the name), or new manifests of one, was kept as
    /// evidence; the package as served did not change.
    Contested,
    /// The record proved that its owner signed two different indexes with one
    /// sequence; the proof was kept, the stored index did not change.
    Equivocated,
}

/// One package as sync sends it: the signed wire bytes exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The package index, in [`SignedPackageIndex::to_bytes`] form.
    pub index: Vec<u8>,
    /// Every stored manifest of the package, each in [`SignedManifest::to_bytes`]
    /// form, in no particular order.
    pub manifests: Vec<Vec<u8>>,
}

impl CatalogEntry {
    /// Bytes of the index plus all manifests: what a page's `max_bytes` counts.
    pub fn byte_len(&self) -> usize {
        self.index.len() + self.manifests.iter().map(Vec::len).sum::<usize>()
    }
}
