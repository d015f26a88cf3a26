//! Node start with a large catalog: from `build()` to answering `status()`, the
//! call behind `GET /v1/status`.

use std::time::Instant;

use agora::Node;

use crate::report::{Figure, Scenario};
use crate::scenarios::{Scale, load_catalog};
use crate::stats::{Samples, peak_rss_kib};

pub(crate) async fn run(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let count = scale.pick(100_000, 10_000);
    let dir = tempfile::tempdir()?;
    load_catalog(dir.path(), &crate::data::packages(count, 11))?;
    let mut samples = Samples::default();
    for _ in 0..scale.pick(5, 2) {
        let t = Instant::now();
        let node = Node::builder().data_dir(dir.path()).listen(["/ip4/127.0.0.1/tcp/0"]).build().await?;
        node.status().await?;
        samples.push_duration_ms(t.elapsed());
        node.shutdown().await;
    }
    let summary = samples.summary();
    Ok(vec![Scenario {
        name: format!("node start with a {count}-package catalog"),
        figure: Figure::latency("build + first status (network on)", summary),
        baseline: None,
        ratio: None,
        goal: "< 200 ms".into(),
        met: Some(summary.p50 < 200.0),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec!["republishing and re-dialing continue in the background after start".into()],
    }])
}
