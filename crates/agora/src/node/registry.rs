//! The node as a [`Registry`]: reads come from the local catalog (through the
//! read cache) and fall back to the DHT; writes are stored locally and then
//! sent to the network in the background. Also publishing from an archive and
//! yanking with the node's own publisher key.

use agora_core::{
    ArtifactData, ArtifactHasher, ArtifactReader, Error as CoreError, IndexChange, PackageIndex, PackageName,
    PublicKey, Publication, Query, Registry, RegistryMetadata, Result as CoreResult, SearchResults, SignedManifest,
    SignedPackageIndex, Version, VersionEntry,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Node;
use crate::{Error, Result, archive};

/// The result of publishing an archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    /// The signed manifest now in the registry.
    pub manifest: SignedManifest,
    /// False when this exact version and content was already published, in which
    /// case nothing changed.
    pub created: bool,
}

/// What [`Node::rotate_publisher_key`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRotation {
    /// The key replaced (kept in the keyring).
    pub old: PublicKey,
    /// The publisher key from now on.
    pub new: PublicKey,
    /// The packages handed from the old key to the new one.
    pub packages: Vec<PackageName>,
}

impl Node {
    /// Publishes a packed archive (`.tar.gz` with `<name>-<version>/agora.toml`):
    /// reads and validates its manifest, hashes it, signs the manifest and the
    /// successor index with the publisher key, and stores it. Publishing the same
    /// version with the same bytes again is a no-op; with other bytes, an error.
    pub async fn publish_archive(&self, archive_data: ArtifactData) -> Result<Published> {
        let limit = self.config().max_artifact_size;
        let chunk_size = self.config().chunk_size;
        let (metadata, info, unpacked) = {
            let data = archive_data.clone();
            tokio::task::spawn_blocking(move || inspect_archive(&data, limit, chunk_size))
                .await
                .map_err(crate::blocking::join_error)??
        };
        let _guard = self.inner.publish_lock.lock().await;
        let current = self.current_index(&metadata.name).await?;
        if let Some(published) = self.already_published(current.as_ref(), &metadata, info.digest).await? {
            return Ok(published);
        }
        let (manifest, index) = self.publisher().publish_unpacked(
            metadata,
            info,
            Some(unpacked),
            current.as_ref(),
            self.services().unix_now(),
        )?;
        self.publish(Publication { manifest: manifest.clone(), index, artifact: archive_data }).await?;
        Ok(Published { manifest, created: true })
    }

    /// Yanks (or with `yanked = false`, restores) a version, signed with the
    /// publisher key. Returns what changed (nothing if it already was so).
    pub async fn set_yanked(&self, name: &PackageName, version: &Version, yanked: bool) -> Result<IndexChange> {
        let _guard = self.inner.publish_lock.lock().await;
        let Some(current) = self.current_index(name).await? else {
            return Err(CoreError::PackageNotFound(name.clone()).into());
        };
        match self.publisher().set_yanked(&current, version, yanked, self.services().unix_now())? {
            Some(next) => Ok(self.yank(next).await?),
            None => Ok(IndexChange::default()),
        }
    }

    /// Makes `owners` the owners of `name` (at most [`agora_core::MAX_OWNERS`]),
    /// signed with the publisher key, which must be a current owner and need not
    /// stay one. The change is recorded in the index, stored, and sent to the
    /// network like a yank. Returns the new index.
    pub async fn set_owners(&self, name: &PackageName, owners: Vec<PublicKey>) -> Result<PackageIndex> {
        let _guard = self.inner.publish_lock.lock().await;
        let Some(current) = self.current_index(name).await? else {
            return Err(CoreError::PackageNotFound(name.clone()).into());
        };
        let next = self.publisher().change_owners(&current, owners, self.services().unix_now())?;
        self.yank(next.clone()).await?;
        tracing::info!(package = %name, owners = next.index().current_owners().len(), "owners changed");
        Ok(next.into_index())
    }

    /// Replaces the publisher key with a new random one and hands every package
    /// the old key owns to the new key, each with an owner change the old key
    /// signs (so every node, even one that missed updates, sees the new key
    /// descend from the old). The old key stays in the keyring. Returns the new
    /// public key and the names handed over.
    pub async fn rotate_publisher_key(&self) -> Result<KeyRotation> {
        let _guard = self.inner.publish_lock.lock().await;
        let old = self.export_publisher_key();
        let new = agora_core::SecretKey::generate();
        let key = old.public_key();
        let owned = self.services().blocking(move |store| store.packages().owned_by(&key)).await?;
        let (publisher, now) = (agora_core::Publisher::new(old.clone()), self.services().unix_now());
        let mut updates = Vec::with_capacity(owned.len());
        for index in owned {
            let index = index.into_index();
            let owners = index
                .current_owners()
                .iter()
                .map(|owner| if *owner == old.public_key() { new.public_key() } else { *owner })
                .collect();
            updates.push(publisher.change_owners(&index, owners, now)?);
        }
        let public = new.public_key();
        self.switch_publisher_key(&old, new).await?;
        let mut packages = Vec::with_capacity(updates.len());
        for update in updates {
            packages.push(update.index().name.clone());
            self.yank(update).await?;
        }
        tracing::info!(old = %old.public_key(), new = %public, packages = packages.len(), "publisher key rotated");
        Ok(KeyRotation { old: old.public_key(), new: public, packages })
    }

    /// Publishing `metadata`'s version with `digest` again: `Some` (nothing to
    /// do) when `current` lists it with the same digest, `None` when it is new.
    ///
    /// # Errors
    ///
    /// [`CoreError::VersionExists`] when the version exists with other bytes.
    pub(super) async fn already_published(
        &self,
        current: Option<&PackageIndex>,
        metadata: &agora_core::PackageMetadata,
        digest: agora_core::Digest,
    ) -> Result<Option<Published>> {
        let Some(existing) = current.and_then(|index| index.entry(&metadata.version)) else { return Ok(None) };
        if existing.digest != digest {
            return Err(CoreError::VersionExists {
                name: metadata.name.clone(),
                version: metadata.version.clone(),
                existing: existing.digest,
            }
            .into());
        }
        let manifest = self.registry().get_version(&metadata.name, &metadata.version).await?;
        Ok(Some(Published { manifest, created: false }))
    }

    pub(super) async fn current_index(&self, name: &PackageName) -> Result<Option<PackageIndex>> {
        match self.get_package(name).await {
            Ok(index) => Ok(Some(index.into_index())),
            Err(CoreError::PackageNotFound(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// Reads the manifest out of an archive of at most `limit` bytes and hashes it;
/// the archive may unpack to [`archive::unpacked_limit`] bytes. All the checks
/// `publish_archive` makes on the uploaded bytes before it signs anything; public
/// (hidden) only for the `archive` fuzz target.
#[doc(hidden)]
pub fn inspect_archive(
    data: &ArtifactData,
    limit: u64,
    chunk_size: u32,
) -> Result<(agora_core::PackageMetadata, agora_core::ArtifactInfo, u64)> {
    use std::io::Read;
    let mut hasher = ArtifactHasher::new(chunk_size)?;
    let (metadata, contents) = match data {
        ArtifactData::Bytes(bytes) => {
            if bytes.len() as u64 > limit {
                return Err(CoreError::ArtifactTooLarge { size: bytes.len() as u64, limit }.into());
            }
            hasher.update(bytes);
            archive::inspect(&bytes[..], archive::unpacked_limit(bytes.len() as u64, limit))?
        }
        ArtifactData::File(path) => {
            let size = std::fs::metadata(path).map_err(|error| Error::io(path, error))?.len();
            if size > limit {
                return Err(CoreError::ArtifactTooLarge { size, limit }.into());
            }
            let mut file = std::fs::File::open(path).map_err(|error| Error::io(path, error))?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = file.read(&mut buffer).map_err(|error| Error::io(path, error))?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
            let file = std::fs::File::open(path).map_err(|error| Error::io(path, error))?;
            archive::inspect(std::io::BufReader::new(file), archive::unpacked_limit(size, limit))?
        }
    };
    Ok((metadata, hasher.finish()?, contents.bytes))
}

#[async_trait]
impl Registry for Node {
    async fn publish(&self, publication: Publication) -> CoreResult<()> {
        let (manifest, index) = (publication.manifest.clone(), publication.index.clone());
        self.registry().publish(publication).await?;
        if let Some(network) = self.network() {
            network.publish_in_background(manifest, index);
        }
        Ok(())
    }

    async fn get_package(&self, name: &PackageName) -> CoreResult<SignedPackageIndex> {
        match (self.registry().get_package(name).await, self.network()) {
            (Err(CoreError::PackageNotFound(_)), Some(network)) => network.index_from_dht(name).await,
            (result, _) => result,
        }
    }

    async fn get_version(&self, name: &PackageName, version: &Version) -> CoreResult<SignedManifest> {
        match (self.registry().get_version(name, version).await, self.network()) {
            (Err(CoreError::PackageNotFound(_) | CoreError::VersionNotFound { .. }), Some(network)) => {
                network.manifest_from_dht(name, version).await
            }
            (result, _) => result,
        }
    }

    async fn list_versions(&self, name: &PackageName) -> CoreResult<Vec<VersionEntry>> {
        Ok(self.get_package(name).await?.into_index().versions)
    }

    /// `SearchScope::Local` searches the catalog; `SearchScope::Network` runs
    /// [`Node::search_network`] with the balanced preset, `query.limit` as
    /// `max_results` and `query.timeout` (if set) as the timeout, and collects it.
    /// A network search is one page: its offset must be 0.
    async fn search(&self, query: &Query) -> CoreResult<SearchResults> {
        match query.scope {
            agora_core::SearchScope::Local => self.registry().search(query).await,
            agora_core::SearchScope::Network => {
                query.validate()?;
                if query.offset != 0 {
                    return Err(CoreError::InvalidQuery(format!(
                        "a network search returns one page; offset must be 0, found {}",
                        query.offset
                    )));
                }
                let mut config = crate::QueryConfig::balanced();
                config.max_results = query.limit as usize;
                if let Some(timeout) = query.timeout {
                    config.timeout = timeout;
                }
                Ok(self.search_network(query, config)?.collect_results().await)
            }
        }
    }

    /// The local copy as a reader (each chunk verified as it is read: one pass
    /// over the file), else the artifact downloaded ([`Node::fetch`]) and then read.
    async fn fetch_artifact(&self, name: &PackageName, version: &Version) -> CoreResult<ArtifactReader> {
        match self.registry().fetch_artifact(name, version).await {
            Ok(reader) => {
                self.mark_used(reader.manifest().manifest().artifact.digest).await;
                Ok(reader)
            }
            Err(error) if error.is_not_found() && self.network().is_some() => {
                self.fetch(name, version).await?.finish().await
            }
            Err(error) => Err(error),
        }
    }

    async fn yank(&self, index: SignedPackageIndex) -> CoreResult<IndexChange> {
        let change = self.registry().yank(index.clone()).await?;
        if let Some(network) = self.network() {
            network.announce_index_in_background(index);
        }
        Ok(change)
    }

    async fn metadata(&self) -> CoreResult<RegistryMetadata> {
        let mut metadata = self.registry().metadata().await?;
        metadata.backend = "node".into();
        Ok(metadata)
    }
}
