//! Competing claims and equivocation proofs against real SQLite files: another
//! key's valid claim to a known name is kept as evidence (bounded) and travels
//! with sync pages, the package served changes only when the user trusts a
//! claim, and an owner's two indexes with one sequence become a proof that flags
//! it in search.

#![allow(clippy::unwrap_used)]

use agora_core::{
    ArtifactData, ArtifactInfo, Equivocation, Error as CoreError, MAX_COMPETING_CLAIMS, PackageIndex, PackageMetadata,
    PackageName, Publication, Publisher, Query, SearchHit, SecretKey, SignedPackageIndex,
};
use agora_store::{ChangeCause, Error, Ingested, Store};

const NOW: u64 = 1_700_000_000;

fn name(text: &str) -> PackageName {
    text.parse().unwrap()
}

fn sign(key: &SecretKey, package: &str, version: &str, current: Option<&PackageIndex>) -> Publication {
    let content = format!("{package} {version} by {}", key.public_key()).into_bytes();
    let metadata = PackageMetadata::new(name(package), version.parse().unwrap(), format!("{package} by its owner"));
    let artifact = ArtifactInfo::compute(&content, 4096).unwrap();
    let (manifest, index) = Publisher::new(key.clone()).publish(metadata, artifact, current, NOW).unwrap();
    Publication { manifest, index, artifact: ArtifactData::Bytes(content.into()) }
}

fn ingest(store: &Store, publication: &Publication) -> Ingested {
    store.packages().ingest_package(&publication.index, std::slice::from_ref(&publication.manifest)).unwrap()
}

fn hit(store: &Store, text: &str) -> SearchHit {
    let hits = store.packages().search(&Query::new(text)).unwrap().hits;
    assert_eq!(hits.len(), 1, "{hits:?}");
    hits.into_iter().next().unwrap()
}

fn owners(store: &Store, package: &str) -> Vec<(agora_core::PublicKey, bool)> {
    let claims = store.packages().claims(&name(package)).unwrap().unwrap();
    claims.claims.iter().map(|claim| (claim.owner, claim.default)).collect()
}

#[test]
fn a_competing_claim_is_kept_as_evidence_and_the_first_owner_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node")).unwrap();
    let (first, second) = (SecretKey::generate(), SecretKey::generate());
    let mine = sign(&first, "conflict-pkg", "1.0.0", None);
    let theirs = sign(&second, "conflict-pkg", "2.0.0", None);
    assert_eq!(ingest(&store, &mine), Ingested::Inserted);
    assert!(!hit(&store, "conflict").contested);

    assert_eq!(ingest(&store, &theirs), Ingested::Contested);
    assert_eq!(ingest(&store, &theirs), Ingested::Unchanged, "the same claim twice is nothing new");
    assert_eq!(store.packages().package(&name("conflict-pkg")).unwrap().as_ref(), Some(&mine.index));
    let claims = store.packages().claims(&name("conflict-pkg")).unwrap().unwrap();
    assert!(claims.contested() && !claims.chosen);
    assert_eq!(owners(&store, "conflict-pkg"), [(first.public_key(), true), (second.public_key(), false)]);
    assert_eq!(claims.claims[1].latest, Some("2.0.0".parse().unwrap()));
    let found = hit(&store, "conflict");
    assert!(found.contested, "search marks the name");
    assert_eq!((found.version.to_string(), found.publisher), ("1.0.0".into(), first.public_key()));

    // The claim's owner publishes again: the claim follows, the default does not move.
    let newer = sign(&second, "conflict-pkg", "2.1.0", Some(theirs.index.index()));
    assert_eq!(ingest(&store, &newer), Ingested::Contested);
    let claims = store.packages().claims(&name("conflict-pkg")).unwrap().unwrap();
    assert_eq!(claims.claims[1].latest, Some("2.1.0".parse().unwrap()));
    assert_eq!(store.packages().package(&name("conflict-pkg")).unwrap().as_ref(), Some(&mine.index));

    // At most MAX_COMPETING_CLAIMS competing claims are kept.
    for _ in 0..MAX_COMPETING_CLAIMS + 2 {
        ingest(&store, &sign(&SecretKey::generate(), "conflict-pkg", "3.0.0", None));
    }
    assert_eq!(owners(&store, "conflict-pkg").len(), 1 + MAX_COMPETING_CLAIMS);

    // A claim whose manifest its index does not vouch for changes nothing.
    let rogue = SecretKey::generate();
    let listed = sign(&rogue, "other-pkg", "1.0.0", None);
    ingest(&store, &sign(&first, "other-pkg", "1.0.0", None));
    let unlisted = sign(&rogue, "other-pkg", "5.0.0", None);
    let error = store.packages().ingest_package(&listed.index, &[unlisted.manifest]).unwrap_err();
    assert!(matches!(error, Error::Core(CoreError::VersionNotFound { .. })), "{error}");
    assert_eq!(owners(&store, "other-pkg").len(), 1, "nothing of the rejected claim was kept");
}

#[test]
fn trusting_a_claim_swaps_it_with_the_default_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    let (first, second) = (SecretKey::generate(), SecretKey::generate());
    let mine = sign(&first, "conflict-pkg", "1.0.0", None);
    let theirs = sign(&second, "conflict-pkg", "2.0.0", None);
    {
        let store = Store::open(&path).unwrap();
        ingest(&store, &mine);
        ingest(&store, &theirs);
        let stranger = SecretKey::generate().public_key();
        let error = store.packages().trust(&name("conflict-pkg"), &stranger).unwrap_err();
        assert!(
            matches!(&error, Error::Core(CoreError::NoSuchClaim { known, .. }) if known.contains(&second.public_key().to_hex())),
            "{error}"
        );

        let claims = store.packages().trust(&name("conflict-pkg"), &second.public_key()).unwrap();
        assert!(claims.chosen && claims.contested());
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.packages().package(&name("conflict-pkg")).unwrap().as_ref(), Some(&theirs.index));
    let version = "2.0.0".parse().unwrap();
    assert_eq!(store.packages().manifest(&name("conflict-pkg"), &version).unwrap().as_ref(), Some(&theirs.manifest));
    assert_eq!(store.packages().manifest(&name("conflict-pkg"), &"1.0.0".parse().unwrap()).unwrap(), None);
    assert_eq!(owners(&store, "conflict-pkg"), [(second.public_key(), true), (first.public_key(), false)]);
    assert!(store.packages().claims(&name("conflict-pkg")).unwrap().unwrap().chosen);
    let found = hit(&store, "conflict");
    assert_eq!(
        (found.version.to_string(), found.publisher, found.contested),
        ("2.0.0".into(), second.public_key(), true)
    );

    // What peers send afterwards does not undo the choice: the old default is a claim now.
    let newer = sign(&first, "conflict-pkg", "1.1.0", Some(mine.index.index()));
    assert_eq!(ingest(&store, &newer), Ingested::Contested);
    assert_eq!(store.packages().package(&name("conflict-pkg")).unwrap().as_ref(), Some(&theirs.index));

    // And the user can go back, with the old default's manifests intact.
    store.packages().trust(&name("conflict-pkg"), &first.public_key()).unwrap();
    assert_eq!(store.packages().package(&name("conflict-pkg")).unwrap().as_ref(), Some(&newer.index));
    assert_eq!(
        store.packages().manifest(&name("conflict-pkg"), &"1.0.0".parse().unwrap()).unwrap(),
        Some(mine.manifest)
    );
}

#[test]
fn sync_pages_carry_claims_so_a_new_node_sees_the_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let target = Store::open(&dir.path().join("target")).unwrap();
    let (first, second) = (SecretKey::generate(), SecretKey::generate());
    ingest(&source, &sign(&first, "alpha", "1.0.0", None));
    ingest(&source, &sign(&first, "conflict-pkg", "1.0.0", None));
    ingest(&source, &sign(&second, "conflict-pkg", "2.0.0", None));
    ingest(&source, &sign(&first, "zeta", "1.0.0", None));

    // Pages of two entries: the claim never splits from its default.
    let mut after = None;
    let mut pages = Vec::new();
    loop {
        let (entries, cursor) = source.packages().page(after.as_ref(), 2, usize::MAX).unwrap();
        pages.push(entries.len());
        let batch: Vec<_> = entries
            .iter()
            .map(|entry| {
                let index = SignedPackageIndex::from_bytes(&entry.index).unwrap();
                let manifests = entry
                    .manifests
                    .iter()
                    .map(|bytes| agora_core::SignedManifest::from_bytes(bytes).unwrap())
                    .collect();
                (index, manifests)
            })
            .collect();
        for outcome in target.packages().ingest_packages(&batch).unwrap() {
            outcome.unwrap();
        }
        match cursor {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, [1, 2, 1], "alpha alone, then conflict-pkg with its claim, then zeta");
    assert_eq!(owners(&target, "conflict-pkg"), [(first.public_key(), true), (second.public_key(), false)]);
    assert!(hit(&target, "conflict").contested);
}

#[test]
fn an_equivocating_owner_is_proven_and_flagged_and_its_proof_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node")).unwrap();
    let changes = std::sync::Arc::new(Changes::default());
    store.subscribe(changes.clone()).unwrap();
    let owner = SecretKey::generate();
    let published = sign(&owner, "twofaced", "1.0.0", None);
    ingest(&store, &published);
    ingest(&store, &sign(&owner, "honest-looking", "1.0.0", None));
    assert!(!hit(&store, "honest").equivocated);

    // Same sequence, another version list: what two peers might each be told.
    let other = sign(&owner, "twofaced", "9.9.9", None);
    assert_eq!(other.index.index().sequence, published.index.index().sequence);
    assert_eq!(store.packages().ingest_index(&other.index).unwrap(), Ingested::Equivocated);
    assert_eq!(store.packages().ingest_index(&other.index).unwrap(), Ingested::Unchanged, "one proof is enough");
    assert_eq!(store.packages().package(&name("twofaced")).unwrap().as_ref(), Some(&published.index));
    let proof = store.packages().equivocation(&name("twofaced"), &owner.public_key()).unwrap().unwrap();
    assert_eq!(proof, Equivocation::new(published.index.clone(), other.index.clone()).unwrap());
    assert!(changes.saw(ChangeCause::Equivocated));

    // The owner is flagged on every package of theirs, not only the one it lied about.
    assert!(hit(&store, "honest").equivocated);
    assert!(hit(&store, "twofaced").equivocated);
    let claims = store.packages().claims(&name("honest-looking")).unwrap().unwrap();
    assert_eq!(claims.equivocated, [owner.public_key()]);

    // A proof from gossip lands in a store that never saw either index.
    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    assert_eq!(fresh.packages().ingest_equivocation(&proof).unwrap(), Ingested::Equivocated);
    assert_eq!(fresh.packages().ingest_equivocation(&proof).unwrap(), Ingested::Unchanged);
}

/// Remembers which causes it was told of.
#[derive(Debug, Default)]
struct Changes(std::sync::Mutex<Vec<ChangeCause>>);

impl agora_store::CatalogObserver for Changes {
    fn changed(&self, changes: &[agora_store::CatalogChange]) {
        self.0.lock().unwrap().extend(changes.iter().map(|change| change.cause));
    }
}

impl Changes {
    fn saw(&self, cause: ChangeCause) -> bool {
        self.0.lock().unwrap().contains(&cause)
    }
}
