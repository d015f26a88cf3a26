//! Gossip handling: how many announcements per second one node takes off the
//! announce topic, verifies and stores, against a raw loop that verifies the same
//! announcements and inserts the same rows into the same schema.
//!
//! The sender is a bare `agora-net` peer that publishes pre-signed announcements
//! of many publishers as fast as the receiver drains them (at most `WINDOW`
//! ahead of what the receiver's catalog holds, so nothing is dropped for a full
//! queue and the figure is the receiver's sustained rate).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::Node;
use agora::core::{SignedManifest, SignedPackageIndex};
use agora::net::{Announcement, NetworkConfig, SignatureValidator, Wire};
use rusqlite::params;

use crate::report::{Figure, Scenario};
use crate::scenarios::Scale;
use crate::scenarios::transfer::address;
use crate::stats::peak_rss_kib;

/// Announcements in flight ahead of the receiver's catalog.
const WINDOW: usize = 512;

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let count = scale.pick(20_000, 2_000);
    let root = tempfile::tempdir()?;
    let packages = crate::data::packages(count, 11);
    let announcements: Vec<Vec<u8>> = packages
        .iter()
        .map(|p| Announcement::Publish { manifest: p.manifest.to_bytes(), index: p.index.to_bytes() }.encode())
        .collect();
    drop(packages);

    let raw_rate = raw_verify_insert(&root.path().join("raw"), &announcements)?;
    let verify_rate = verify_only(&announcements)?;
    let (node_rate, node_seconds) = node_rate(root.path(), &announcements).await?;
    Ok(vec![Scenario {
        name: format!("gossip handling, {count} announcements"),
        figure: Figure::new("one node: gossipsub → verify → catalog", node_rate, "announcements/s"),
        baseline: Some(Figure::new(
            "raw loop: decode + verify + INSERT, one transaction each",
            raw_rate,
            "announcements/s",
        )),
        ratio: Some(node_rate / raw_rate),
        goal: "≥ 20,000 announcements/s".into(),
        met: Some(node_rate >= 20_000.0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![
            format!(
                "decoding + verifying the two record signatures alone runs at {verify_rate:.0}/s on one core \
                 (gossip messages themselves are unsigned)"
            ),
            format!(
                "{count} distinct packages from 16 publishers, sent by a bare agora-net peer over TCP on 127.0.0.1 \
             at most {WINDOW} ahead of the receiver; {node_seconds:.2} s from the first send to the last package \
             stored"
            ),
        ],
    }])
}

/// Announcements per second from the first send until the receiver's catalog
/// holds every package.
async fn node_rate(root: &std::path::Path, announcements: &[Vec<u8>]) -> anyhow::Result<(f64, f64)> {
    let receiver = Node::builder()
        .data_dir(root.join("receiver"))
        .listen(["/ip4/127.0.0.1/tcp/0"])
        .catalog_sync(false)
        .build()
        .await?;
    let mut config = NetworkConfig::new([0x5e; 32]);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    let (sender, mut events, task) = agora::net::spawn(config, Arc::new(SignatureValidator)).await?;
    // The sender hears nothing back on the topic, but its events must be drained.
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    sender.dial(address(&receiver).await?.parse()?).await?;

    let catalog = receiver.store().packages().clone();
    let stored = move || {
        let catalog = catalog.clone();
        async move {
            let stats = tokio::task::spawn_blocking(move || catalog.stats()).await??;
            anyhow::Ok(stats.packages as usize)
        }
    };
    let count = announcements.len();
    let deadline = Instant::now() + Duration::from_secs(300);
    // The first announcement goes out once the receiver's subscription is known.
    let t = loop {
        let t = Instant::now();
        if sender.announce(announcements[0].clone()).await? {
            break t;
        }
        anyhow::ensure!(Instant::now() < deadline, "the receiver never subscribed to the announce topic");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut sent = 1;
    let mut held = 0;
    while held < count {
        anyhow::ensure!(Instant::now() < deadline, "gossip stalled: {held} of {count} stored, {sent} sent");
        while sent < count && sent < held + WINDOW {
            anyhow::ensure!(sender.announce(announcements[sent].clone()).await?, "the receiver went away");
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        held = stored().await?;
    }
    let seconds = t.elapsed().as_secs_f64();
    sender.shutdown().await;
    let _ = task.await;
    drain.abort();
    receiver.shutdown().await;
    Ok((count as f64 / seconds, seconds))
}

/// Decoding and signature checks alone, one core: the floor under both figures.
fn verify_only(announcements: &[Vec<u8>]) -> anyhow::Result<f64> {
    let t = Instant::now();
    for bytes in announcements {
        if let Announcement::Publish { manifest, index } = Announcement::decode(bytes).map_err(anyhow::Error::msg)? {
            SignedPackageIndex::from_bytes(&index)?;
            SignedManifest::from_bytes(&manifest)?;
        }
    }
    Ok(announcements.len() as f64 / t.elapsed().as_secs_f64())
}

/// What the node does per announcement, as a plain loop: decode, verify both
/// signatures, insert the package, manifest, search document, full-text row,
/// tags and category in one transaction.
fn raw_verify_insert(dir: &std::path::Path, announcements: &[Vec<u8>]) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("catalog.sqlite");
    drop(agora::store::Store::open(dir)?);
    let mut connection = rusqlite::Connection::open(&path)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let t = Instant::now();
    for bytes in announcements {
        let Announcement::Publish { manifest, index } = Announcement::decode(bytes).map_err(anyhow::Error::msg)? else {
            anyhow::bail!("generated announcements are publishes");
        };
        let index = SignedPackageIndex::from_bytes(&index)?;
        let manifest = SignedManifest::from_bytes(&manifest)?;
        let (index_body, manifest_body) = (index.index(), manifest.manifest());
        let metadata = &manifest_body.metadata;
        let tx = connection.transaction()?;
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO packages (name, owner, sequence, updated_at, record) VALUES (?1, ?2, ?3, ?4, ?5)
                 RETURNING id",
            )?
            .query_row(
                params![
                    index_body.name.as_str(),
                    index_body.owner.as_bytes().as_slice(),
                    index_body.sequence as i64,
                    index_body.updated_at as i64,
                    index.to_bytes()
                ],
                |row| row.get(0),
            )?;
        let version = manifest_body.version().to_string();
        let published_at = manifest_body.published_at as i64;
        execute(
            &tx,
            "INSERT INTO manifests (package_id, version, digest, size, published_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                version,
                manifest_body.artifact.digest.as_bytes().as_slice(),
                manifest_body.artifact.size as i64,
                published_at,
                manifest.to_bytes()
            ],
        )?;
        execute(
            &tx,
            "INSERT INTO search_docs (package_id, version, description, keywords, categories, publisher, published_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                version,
                metadata.description,
                serde_json::to_string(&metadata.keywords)?,
                serde_json::to_string(&metadata.categories)?,
                manifest_body.publisher.as_bytes().as_slice(),
                published_at
            ],
        )?;
        execute(
            &tx,
            "INSERT INTO search_fts (rowid, name, description, keywords) VALUES (?1, ?2, ?3, ?4)",
            params![id, metadata.name.as_str(), metadata.description, metadata.keywords.join(" ")],
        )?;
        for tag in &metadata.keywords {
            execute(&tx, "INSERT INTO search_tags (tag, package_id) VALUES (?1, ?2)", params![tag, id])?;
        }
        for category in &metadata.categories {
            execute(
                &tx,
                "INSERT INTO search_categories (category, package_id) VALUES (?1, ?2)",
                params![category, id],
            )?;
        }
        tx.commit()?;
    }
    Ok(announcements.len() as f64 / t.elapsed().as_secs_f64())
}

fn execute(tx: &rusqlite::Transaction<'_>, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(params)
}
