//! Catalog sync of a large catalog to a new node, against the raw insert rate of
//! the same rows into the same schema.

use std::time::{Duration, Instant};

use agora::Node;

use crate::report::{Figure, Scenario};
use crate::scenarios::transfer::address;
use crate::scenarios::{Scale, load_catalog};
use crate::stats::peak_rss_kib;

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let count = scale.pick(100_000, 10_000);
    let root = tempfile::tempdir()?;
    let packages = crate::data::packages(count, 7);
    load_catalog(&root.path().join("source"), &packages)?;

    let raw_rate = raw_insert_rate(&root.path().join("raw"), &packages)?;
    drop(packages);

    let source = Node::builder().data_dir(root.path().join("source")).listen(["/ip4/127.0.0.1/tcp/0"]).build().await?;
    let bootstrap = address(&source).await?;
    let t = Instant::now();
    let joiner = Node::builder()
        .data_dir(root.path().join("joiner"))
        .listen(["/ip4/127.0.0.1/tcp/0"])
        .bootstrap([bootstrap])
        .build()
        .await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let packages = joiner.status().await?.registry.packages;
        if packages as usize >= count {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "sync stalled at {packages} of {count}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sync_rate = count as f64 / t.elapsed().as_secs_f64();
    joiner.shutdown().await;
    source.shutdown().await;
    Ok(vec![Scenario {
        name: format!("catalog sync of {count} manifests to a new node"),
        figure: Figure::new("sync (pages over request-response, verify, ingest)", sync_rate, "manifests/s"),
        baseline: Some(Figure::new("raw INSERTs into the same schema, 256 per transaction", raw_rate, "manifests/s")),
        ratio: Some(sync_rate / raw_rate),
        goal: "≥ 20,000 manifests/s".into(),
        met: Some(sync_rate >= 20_000.0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec!["time from the joiner's start to its catalog holding every package".into()],
    }])
}

/// Inserts the packages' rows with plain SQL (no decoding, no verification, no
/// rules) into a fresh catalog; rows per second.
fn raw_insert_rate(dir: &std::path::Path, packages: &[crate::data::Package]) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("catalog.sqlite");
    drop(agora::store::Store::open(dir)?);
    let mut connection = rusqlite::Connection::open(&path)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    type Row = (String, Vec<u8>, Vec<u8>, String, Vec<u8>);
    let rows: Vec<Row> = packages
        .iter()
        .map(|p| {
            let index = p.index.index();
            let manifest = p.manifest.manifest();
            (
                index.name.to_string(),
                index.owner.as_bytes().to_vec(),
                p.index.to_bytes(),
                manifest.version().to_string(),
                p.manifest.to_bytes(),
            )
        })
        .collect();
    let t = Instant::now();
    for batch in rows.chunks(256) {
        let tx = connection.transaction()?;
        for (name, owner, index, version, manifest) in batch {
            let id: i64 = tx.query_row(
                "INSERT INTO packages (name, owner, sequence, updated_at, record) VALUES (?1, ?2, 1, 0, ?3) RETURNING id",
                rusqlite::params![name, owner, index],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO manifests (package_id, version, digest, size, published_at, record) VALUES (?1, ?2, x'00', 0, 0, ?3)",
                rusqlite::params![id, version, manifest],
            )?;
            tx.execute(
                "INSERT INTO search_fts (rowid, name, description, keywords) VALUES (?1, ?2, '', '')",
                rusqlite::params![id, name],
            )?;
        }
        tx.commit()?;
    }
    Ok(rows.len() as f64 / t.elapsed().as_secs_f64())
}
