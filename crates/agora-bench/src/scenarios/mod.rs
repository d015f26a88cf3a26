//! The scenarios. Each returns a [`crate::report::Scenario`].

pub(crate) mod cargo;
pub(crate) mod concurrency;
pub(crate) mod gossip;
pub(crate) mod nat;
pub(crate) mod network;
pub(crate) mod search;
pub(crate) mod start;
pub(crate) mod sync;
pub(crate) mod transfer;

use std::path::Path;

use agora::Node;

use crate::data::Package;

/// Sizes for a full run and for `--quick`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    pub(crate) quick: bool,
}

impl Scale {
    pub(crate) fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// Loads `packages` into the store under `data_dir` (as a node's catalog) without
/// the network: the setup step of several scenarios.
pub(crate) fn load_catalog(data_dir: &Path, packages: &[Package]) -> anyhow::Result<()> {
    let store = agora::store::Store::open(&data_dir.join("store"))?;
    for page in packages.chunks(1000) {
        let batch: Vec<_> = page.iter().map(|p| (p.index.clone(), vec![p.manifest.clone()])).collect();
        for outcome in store.packages().ingest_packages(&batch)? {
            outcome?;
        }
    }
    Ok(())
}

/// An offline node on `data_dir`.
pub(crate) async fn offline_node(data_dir: &Path) -> anyhow::Result<Node> {
    Ok(Node::builder().data_dir(data_dir).offline().build().await?)
}
