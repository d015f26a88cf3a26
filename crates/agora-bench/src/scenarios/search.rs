//! Local search on a large catalog: `Registry::search` on a node versus the same
//! queries as raw SQL on the same SQLite file, interleaved A B A B.

use std::time::Instant;

use agora::{Query, Registry};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, params_from_iter};

use crate::report::{Figure, Scenario};
use crate::scenarios::{Scale, load_catalog, offline_node};
use crate::stats::{Samples, peak_rss_kib};

pub(crate) async fn latency(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let catalog_size = scale.pick(100_000, 10_000);
    let rounds = scale.pick(300, 30);
    let dir = tempfile::tempdir()?;
    let packages = crate::data::packages(catalog_size, 42);
    let setup = Instant::now();
    load_catalog(dir.path(), &packages)?;
    let load_secs = setup.elapsed().as_secs_f64();
    drop(packages);
    let node = offline_node(dir.path()).await?;
    let local = agora::LocalRegistry::new(node.store().clone(), node.config().max_artifact_size);
    let raw = Connection::open_with_flags(dir.path().join("store/catalog.sqlite"), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let queries = crate::data::queries();
    // Warm every path once.
    for query in &queries {
        node.search(query).await?;
        local.search(query).await?;
        raw_search(&raw, query)?;
    }
    let (mut cached, mut uncached, mut baseline) = (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..rounds {
        for query in &queries {
            let t = Instant::now();
            raw_search(&raw, query)?;
            baseline.push_duration_ms(t.elapsed());
            let t = Instant::now();
            local.search(query).await?;
            uncached.push_duration_ms(t.elapsed());
            let t = Instant::now();
            node.search(query).await?;
            cached.push_duration_ms(t.elapsed());
        }
    }
    let (u, b, c) = (uncached.summary(), baseline.summary(), cached.summary());
    let met = u.p50 <= 1.5 * b.p50 && u.p99 <= 3.0 * b.p99 && u.p50 < 1.0;
    let rss = peak_rss_kib() as f64 / 1024.0;
    let seconds = started.elapsed().as_secs_f64();
    Ok(vec![Scenario {
        name: format!("local search, {catalog_size}-package catalog, mixed queries"),
        figure: Figure::latency("Registry::search (catalog, no cache)", u),
        baseline: Some(Figure::latency("raw SQL, same file", b)),
        ratio: Some(u.p50 / b.p50),
        goal: "p50 ≤ 1.5× and p99 ≤ 3× raw; p50 < 1 ms".into(),
        met: Some(met),
        peak_rss_mib: rss,
        seconds,
        notes: vec![
            format!("p99 ratio {:.2}", u.p99 / b.p99),
            format!(
                "through the node's moka cache (what repeated searches get): p50 {:.3} / p99 {:.3} ms",
                c.p50, c.p99
            ),
            format!(
                "catalog loaded in {load_secs:.1} s ({:.0} packages/s, verify + insert)",
                catalog_size as f64 / load_secs
            ),
        ],
    }])
}

pub(crate) async fn throughput(scale: Scale) -> anyhow::Result<Vec<Scenario>> {
    let started = Instant::now();
    let catalog_size = scale.pick(100_000, 10_000);
    let seconds_each = scale.pick(3.0, 0.5);
    let dir = tempfile::tempdir()?;
    load_catalog(dir.path(), &crate::data::packages(catalog_size, 42))?;
    let node = offline_node(dir.path()).await?;
    let local = agora::LocalRegistry::new(node.store().clone(), node.config().max_artifact_size);
    let queries = crate::data::queries();
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get) * 2;
    let mut node_rates = Vec::new();
    let mut raw_rates = Vec::new();
    for _ in 0..2 {
        raw_rates.push(raw_throughput(&dir.path().join("store/catalog.sqlite"), &queries, workers, seconds_each)?);
        node_rates.push(registry_throughput(&local, &queries, workers * 4, seconds_each).await);
    }
    let node_rate = node_rates.iter().sum::<f64>() / node_rates.len() as f64;
    let raw_rate = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    Ok(vec![Scenario {
        name: "search throughput, one node, all cores".into(),
        figure: Figure::new("Registry::search (catalog, no cache)", node_rate, "searches/s"),
        baseline: Some(Figure::new(format!("raw SQL, {workers} threads"), raw_rate, "searches/s")),
        ratio: Some(node_rate / raw_rate),
        goal: "≥ 70% of raw".into(),
        met: Some(node_rate >= 0.7 * raw_rate),
        peak_rss_mib: peak_rss_kib() as f64 / 1024.0,
        seconds: started.elapsed().as_secs_f64(),
        notes: vec![format!("runs interleaved raw/node twice, {seconds_each} s each; {catalog_size}-package catalog")],
    }])
}

async fn registry_throughput(registry: &agora::LocalRegistry, queries: &[Query], tasks: usize, seconds: f64) -> f64 {
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for task in 0..tasks {
        let registry = registry.clone();
        let queries = queries.to_vec();
        handles.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut i = task;
            while Instant::now() < deadline {
                if registry.search(&queries[i % queries.len()]).await.is_ok() {
                    done += 1;
                }
                i += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.unwrap_or(0);
    }
    total as f64 / seconds
}

fn raw_throughput(path: &std::path::Path, queries: &[Query], threads: usize, seconds: f64) -> anyhow::Result<f64> {
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let path = path.to_owned();
            let queries = queries.to_vec();
            std::thread::spawn(move || -> anyhow::Result<u64> {
                let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                let mut done = 0u64;
                let mut i = thread;
                while Instant::now() < deadline {
                    raw_search(&connection, &queries[i % queries.len()])?;
                    done += 1;
                    i += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut total = 0;
    for handle in handles {
        total += handle.join().map_err(|_| anyhow::anyhow!("raw search thread panicked"))??;
    }
    Ok(total as f64 / seconds)
}

/// The catalog's search as plain SQL (the same statements `agora-store` runs:
/// count, then rank inside the full-text index and join the page), without
/// decoding, verification, runtime hops or result types. Kept independent of the
/// code under measurement on purpose; keep the two in step.
pub(crate) fn raw_search(connection: &Connection, query: &Query) -> anyhow::Result<usize> {
    let terms = query.terms();
    let mut filters = Vec::new();
    let mut filter_args: Vec<Value> = Vec::new();
    if !query.categories.is_empty() {
        let alternatives = vec!["category = ? OR (category >= ? AND category < ?)"; query.categories.len()];
        filters.push(format!("IN (SELECT package_id FROM search_categories WHERE {})", alternatives.join(" OR ")));
        for category in &query.categories {
            filter_args.extend([
                Value::Text(category.clone()),
                Value::Text(format!("{category}/")),
                Value::Text(format!("{category}0")),
            ]);
        }
    }
    for tag in &query.tags {
        filters.push("IN (SELECT package_id FROM search_tags WHERE tag = ?)".into());
        filter_args.push(Value::Text(tag.clone()));
    }
    let where_on = |column: &str| {
        if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.iter().map(|f| format!("{column} {f}")).collect::<Vec<_>>().join(" AND "))
        }
    };
    let (count_sql, ranked, order, mut args, count_args) = if terms.is_empty() {
        let filter = where_on("d.package_id");
        (
            format!("SELECT count(*) FROM search_docs d {filter}"),
            format!(
                "SELECT d.package_id AS id, 0.0 AS score FROM search_docs d CROSS JOIN packages p ON p.id = d.package_id \
                 {filter} ORDER BY p.name ASC LIMIT ? OFFSET ?"
            ),
            "p.name ASC",
            filter_args.clone(),
            filter_args,
        )
    } else {
        let last = terms.len() - 1;
        let expression: Vec<String> = terms
            .iter()
            .enumerate()
            .map(|(i, t)| if i == last { format!("\"{t}\"*") } else { format!("\"{t}\"") })
            .collect();
        let expression = Value::Text(expression.join(" "));
        let filter = where_on("id");
        let count_sql = if filters.is_empty() {
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH ?".to_owned()
        } else {
            format!(
                "WITH matches AS MATERIALIZED (SELECT rowid AS id FROM search_fts WHERE search_fts MATCH ?) \
                 SELECT count(*) FROM matches {filter}"
            )
        };
        let ranked = format!(
            "WITH matches AS MATERIALIZED (SELECT rowid AS id, bm25(search_fts, 10.0, 1.0, 4.0) AS rank \
             FROM search_fts WHERE search_fts MATCH ?) \
             SELECT id, (CASE WHEN id = (SELECT id FROM packages WHERE name = ?) THEN 1000.0 ELSE 0.0 END) - rank AS score \
             FROM matches {filter} ORDER BY score DESC, id ASC LIMIT ? OFFSET ?"
        );
        let mut count_args = vec![expression.clone()];
        count_args.extend(filter_args.iter().cloned());
        let mut args = vec![expression, Value::Text(query.text.trim().to_lowercase())];
        args.extend(filter_args);
        (count_sql, ranked, "r.score DESC, r.id ASC", args, count_args)
    };
    let _total: i64 =
        connection.prepare_cached(&count_sql)?.query_row(params_from_iter(&count_args), |row| row.get(0))?;
    args.push(Value::Integer(i64::from(query.limit)));
    args.push(Value::Integer(i64::from(query.offset)));
    let sql = format!(
        "SELECT p.name, d.version, d.description, d.keywords, d.categories, d.publisher, d.published_at, r.score \
         FROM ({ranked}) r CROSS JOIN search_docs d ON d.package_id = r.id CROSS JOIN packages p ON p.id = r.id \
         ORDER BY {order}"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement.query(params_from_iter(&args))?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let _: String = row.get(0)?;
        count += 1;
    }
    Ok(count)
}
