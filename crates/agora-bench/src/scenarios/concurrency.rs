//! Many concurrent reads on one node: errors, latency, memory.

use std::time::Instant;

use agora::{Query, Registry};

use crate::report::{Figure, Scenario};
use crate::scenarios::{Scale, load_catalog, offline_node};
use crate::stats::{Samples, peak_rss_kib, rss_kib};

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let requests = scale.pick(10_000, 2_000);
    let dir = tempfile::tempdir()?;
    let packages = crate::data::packages(10_000, 3);
    let names: Vec<agora::PackageName> = packages.iter().map(|p| p.index.index().name.clone()).collect();
    load_catalog(dir.path(), &packages)?;
    drop(packages);
    let node = offline_node(dir.path()).await?;
    let rss_before = rss_kib();
    let queries = crate::data::queries();
    let t = Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for i in 0..requests {
        let node = node.clone();
        let name = names[(i * 7919) % names.len()].clone();
        let query: Query = queries[i % queries.len()].clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = if i % 2 == 0 { node.get_package(&name).await.is_ok() } else { node.search(&query).await.is_ok() };
            (ok, t.elapsed())
        }));
    }
    let mut samples = Samples::default();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((ok, elapsed)) => {
                samples.push_duration_ms(elapsed);
                errors += usize::from(!ok);
            }
            Err(_) => errors += 1,
        }
    }
    let wall = t.elapsed();
    let rss_after = rss_kib();
    let summary = samples.summary();
    Ok(vec![Scenario {
        name: format!("{requests} concurrent get_package/search on one node"),
        figure: Figure::latency("latency per request", summary),
        baseline: None,
        ratio: None,
        goal: "0 errors, p99 reported, RSS before/after".into(),
        met: Some(errors == 0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![
            format!(
                "{errors} errors; all done in {:.0} ms ({:.0} requests/s)",
                wall.as_secs_f64() * 1e3,
                requests as f64 / wall.as_secs_f64()
            ),
            format!("RSS {:.0} MiB before, {:.0} MiB after", rss_before as f64 / 1024.0, rss_after as f64 / 1024.0),
        ],
    }])
}
