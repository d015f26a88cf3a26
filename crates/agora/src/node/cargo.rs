//! The node as a Cargo registry: crates published by `cargo publish` or imported
//! from `.crate` files (signed with the publisher key like any package, their
//! index line inside the signed manifest), the sparse-index files cargo reads,
//! rendered from signed manifests only, and the `.crate` bytes, checked against
//! the signed `cksum` before they go out.
//!
//! Two views of one catalog: the extra registry ([`CrateView::Registry`], every
//! crate by Agora's ownership rules) and the crates.io mirror
//! ([`CrateView::Mirror`], only crates a trusted key owns: the node's publisher
//! key and `[cargo] trusted_publishers`). The HTTP routes are the CLI's.

use agora_core::{
    ArtifactData, CrateName, Digest, Error as CoreError, PackageIndex, PublicKey, Registry, SignedManifest, Version,
};

use super::Node;
use super::registry::Published;
use crate::Result;
use crate::cargo::{self, PreparedCrate};

/// Which of the node's two Cargo registries a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrateView {
    /// The extra registry (`[registries.agora]`): every crate, owned as Agora's
    /// rules say (the first claim, or the one the user trusts).
    Registry,
    /// The crates.io replacement: only crates whose current owners include a
    /// trusted key.
    Mirror,
}

/// One crate's file of cargo's sparse index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateIndexFile {
    /// One JSON line per version, each ending in `\n`.
    pub text: String,
    /// A strong validator of `text` (quoted, as an `ETag` header carries it).
    pub etag: String,
}

impl Node {
    /// `cargo publish`: the body of `PUT /api/v1/crates/new` checked
    /// ([`cargo::prepare_publish`], within `max_artifact_size`) and published
    /// like [`Node::import_crate`].
    pub async fn publish_cargo(&self, body: Vec<u8>) -> Result<Published> {
        let limit = self.config().max_artifact_size;
        let (prepared, crate_bytes) = tokio::task::spawn_blocking(move || {
            cargo::prepare_publish(&body, limit).map(|(prepared, crate_bytes)| (prepared, crate_bytes.to_vec()))
        })
        .await
        .map_err(crate::blocking::join_error)??;
        self.publish_prepared(prepared, crate_bytes).await
    }

    /// `agora cargo import`: an existing `.crate` file published as it is, its
    /// index line derived from its normalized `Cargo.toml`
    /// ([`cargo::prepare_import`]). The same version with the same bytes again is
    /// a no-op (`created` false); with other bytes, [`CoreError::VersionExists`].
    pub async fn import_crate(&self, crate_bytes: Vec<u8>) -> Result<Published> {
        let limit = self.config().max_artifact_size;
        let (prepared, crate_bytes) =
            tokio::task::spawn_blocking(move || cargo::prepare_import(&crate_bytes, limit).map(|p| (p, crate_bytes)))
                .await
                .map_err(crate::blocking::join_error)??;
        self.publish_prepared(prepared, crate_bytes).await
    }

    async fn publish_prepared(&self, prepared: PreparedCrate, crate_bytes: Vec<u8>) -> Result<Published> {
        let PreparedCrate { metadata, entry, unpacked_size } = prepared;
        let artifact = {
            let (bytes, chunk_size) = (crate_bytes.clone(), self.config().chunk_size);
            tokio::task::spawn_blocking(move || agora_core::ArtifactInfo::compute(&bytes, chunk_size))
                .await
                .map_err(crate::blocking::join_error)??
        };
        let _guard = self.inner.publish_lock.lock().await;
        let current = self.current_index(&metadata.name).await?;
        if let Some(published) = self.already_published(current.as_ref(), &metadata, artifact.digest).await? {
            return Ok(published);
        }
        if let Some(current) = &current
            && let Some(spelled) = self.crate_spelling(current).await?
        {
            cargo::check_spelling(&spelled, &entry.name)?;
        }
        let (manifest, index) = self.publisher().publish_crate(
            metadata,
            artifact,
            Some(unpacked_size),
            entry,
            current.as_ref(),
            self.services().unix_now(),
        )?;
        let artifact = ArtifactData::Bytes(crate_bytes.into());
        self.publish(agora_core::Publication { manifest: manifest.clone(), index, artifact }).await?;
        tracing::info!(package = %manifest.manifest().metadata.name, version = %manifest.manifest().version(), "crate published");
        Ok(Published { manifest, created: true })
    }

    /// The name a crate is spelled with: that of its latest version's entry.
    async fn crate_spelling(&self, index: &PackageIndex) -> Result<Option<CrateName>> {
        let Some(latest) = index.versions.last() else { return Ok(None) };
        let manifest = self.get_version(&index.name, &latest.version).await?;
        Ok(manifest.manifest().cargo.as_ref().map(|entry| entry.name.clone()))
    }

    /// Whether `view` shows the crate whose index is `index`.
    pub fn shows_crate(&self, index: &PackageIndex, view: CrateView) -> bool {
        match view {
            CrateView::Registry => true,
            CrateView::Mirror => index.current_owners().iter().any(|owner| self.trusts_for_mirror(owner)),
        }
    }

    /// The node's own publisher key or one in `[cargo] trusted_publishers`.
    pub fn trusts_for_mirror(&self, key: &PublicKey) -> bool {
        *key == self.publisher_key() || self.config().cargo.trusted_publishers.contains(key)
    }

    /// The index file of `name` in `view`, `None` for a crate the view does not
    /// know (never published, or owned by an untrusted key in the mirror). Every
    /// line comes from a signed manifest (from the catalog or the network), its
    /// `yanked` from the signed index.
    pub async fn crate_index(&self, name: &CrateName, view: CrateView) -> Result<Option<CrateIndexFile>> {
        let package = name.package_name();
        let index = match self.get_package(&package).await {
            Ok(index) => index.into_index(),
            Err(CoreError::PackageNotFound(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        if !self.shows_crate(&index, view) {
            return Ok(None);
        }
        let mut text = String::new();
        for version in &index.versions {
            let manifest = self.get_version(&package, &version.version).await?;
            let Some(line) = cargo::index_line(manifest.manifest(), version.yanked) else {
                return Err(
                    CoreError::InvalidManifest(format!("{package}@{} has no crate entry", version.version)).into()
                );
            };
            text.push_str(&line);
            text.push('\n');
        }
        let etag = format!("\"{}\"", &Digest::of(text.as_bytes()).to_hex()[..32]);
        Ok(Some(CrateIndexFile { text, etag }))
    }

    /// The `.crate` bytes of `name`@`version` in `view`, fetched from peers
    /// first if this node does not hold them, and checked: their SHA-256 is the
    /// signed `cksum`, or nothing is served ([`CoreError::DigestMismatch`]).
    pub async fn crate_file(&self, name: &CrateName, version: &Version, view: CrateView) -> Result<Vec<u8>> {
        let package = name.package_name();
        let index = self.get_package(&package).await?.into_index();
        if !self.shows_crate(&index, view) {
            return Err(CoreError::PackageNotFound(package).into());
        }
        let reader = self.fetch_artifact(&package, version).await?;
        let manifest: SignedManifest = reader.manifest().clone();
        let bytes = reader.read_to_vec().await?;
        let expected = manifest.manifest().artifact.digest;
        let actual = Digest::of(&bytes);
        if actual != expected {
            return Err(CoreError::DigestMismatch { expected, actual }.into());
        }
        Ok(bytes)
    }
}
