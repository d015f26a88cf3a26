//! The node's metrics: one Prometheus registry (`prometheus-client`, the crate
//! libp2p's own metrics use) holding [`QueryMetrics`] for network searches and
//! DHT record lookups and — registered by the network task
//! under the `libp2p_` prefix — libp2p's swarm, Kademlia, Gossipsub, Identify and
//! Ping metrics. `GET /metrics` serves [`NodeMetrics::encode`]; `agora status`
//! shows [`QueryStats`].
//!
//! It is not a metrics server or a time series: counters only grow, and the
//! latency quantiles are estimated from fixed histogram buckets.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// The content type of [`crate::Node::encode_metrics`]'s output (and of `GET /metrics`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds (the last bucket, `+Inf`, is implicit).
const LATENCY_BOUNDS: [f64; 16] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

/// The node's metrics registry and the metrics the facade records itself.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    registry: Arc<Mutex<Registry>>,
    /// Network searches ([`crate::Node::search_network`]).
    pub(crate) search: QueryMetrics,
    /// DHT record lookups (index and manifest fallbacks).
    pub(crate) dht_get: QueryMetrics,
}

impl Default for NodeMetrics {
    /// A registry with the query metrics (`agora_search_*`, `agora_dht_get_*`) registered.
    fn default() -> Self {
        let mut registry = Registry::default();
        let agora = registry.sub_registry_with_prefix("agora");
        let search = QueryMetrics::register(agora, "search", "network searches");
        let dht_get = QueryMetrics::register(agora, "dht_get", "DHT record lookups");
        Self { registry: Arc::new(Mutex::new(registry)), search, dht_get }
    }
}

impl NodeMetrics {
    /// The registry, for the network task to add libp2p's metrics to.
    pub(crate) fn registry(&self) -> Arc<Mutex<Registry>> {
        self.registry.clone()
    }

    /// Everything in the OpenMetrics text format ([`METRICS_CONTENT_TYPE`]).
    pub(crate) fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%error, "could not encode the metrics");
            let _ = writeln!(text, "# EOF");
        }
        text
    }
}

/// How one query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryOutcome {
    /// Complete answer.
    Success,
    /// Ended at its deadline (or without some sources): the answer may lack hits.
    Partial,
    /// No answer.
    Failed,
}

/// Counters, an in-flight gauge and a latency histogram for one kind of query.
/// `total` counts started queries; a query whose caller went away before it
/// ended (a dropped `QueryHandle`) counts in `total` only.
#[derive(Debug, Clone)]
pub(crate) struct QueryMetrics {
    total: Counter,
    succeeded: Counter,
    partial: Counter,
    failed: Counter,
    in_flight: Gauge,
    latency: LatencyHistogram,
}

impl QueryMetrics {
    /// Registers `<name>_queries_total`, `<name>_succeeded_total`,
    /// `<name>_partial_total`, `<name>_failed_total`, `<name>_in_flight` and
    /// `<name>_latency_seconds` in `registry`.
    pub(crate) fn register(registry: &mut Registry, name: &str, what: &str) -> Self {
        let metrics = Self::unregistered();
        registry.register(format!("{name}_queries"), format!("Started {what}"), metrics.total.clone());
        registry.register(format!("{name}_succeeded"), format!("Completed {what}"), metrics.succeeded.clone());
        registry.register(
            format!("{name}_partial"),
            format!("{what} that ended at their deadline with partial results"),
            metrics.partial.clone(),
        );
        registry.register(format!("{name}_failed"), format!("Failed {what}"), metrics.failed.clone());
        registry.register(format!("{name}_in_flight"), format!("Running {what}"), metrics.in_flight.clone());
        registry.register(
            format!("{name}_latency_seconds"),
            format!("Duration of finished {what}"),
            metrics.latency.clone(),
        );
        metrics
    }

    fn unregistered() -> Self {
        Self {
            total: Counter::default(),
            succeeded: Counter::default(),
            partial: Counter::default(),
            failed: Counter::default(),
            in_flight: Gauge::default(),
            latency: LatencyHistogram::default(),
        }
    }

    /// Counts a query as started; finish it with [`QueryTimer::finish`].
    pub(crate) fn start(&self) -> QueryTimer {
        self.total.inc();
        self.in_flight.inc();
        QueryTimer { metrics: self.clone(), started: Instant::now() }
    }

    /// A snapshot.
    pub(crate) fn stats(&self) -> QueryStats {
        let (p50_ms, p95_ms, p99_ms) =
            (self.latency.quantile_ms(0.50), self.latency.quantile_ms(0.95), self.latency.quantile_ms(0.99));
        QueryStats {
            total: self.total.get(),
            succeeded: self.succeeded.get(),
            partial: self.partial.get(),
            failed: self.failed.get(),
            in_flight: self.in_flight.get().max(0) as u64,
            latency_count: self.latency.count(),
            p50_ms,
            p95_ms,
            p99_ms,
        }
    }
}

/// One running query. Dropping it without [`QueryTimer::finish`] only takes it
/// out of the in-flight gauge (the caller went away).
#[derive(Debug)]
pub(crate) struct QueryTimer {
    metrics: QueryMetrics,
    started: Instant,
}

impl QueryTimer {
    /// Records the outcome and the latency; returns the latency.
    pub(crate) fn finish(self, outcome: QueryOutcome) -> Duration {
        let elapsed = self.started.elapsed();
        match outcome {
            QueryOutcome::Success => self.metrics.succeeded.inc(),
            QueryOutcome::Partial => self.metrics.partial.inc(),
            QueryOutcome::Failed => self.metrics.failed.inc(),
        };
        self.metrics.latency.observe(elapsed);
        elapsed
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// What `agora status` shows about one kind of query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Queries started.
    pub total: u64,
    /// Queries that completed.
    pub succeeded: u64,
    /// Queries that ended at their deadline (or without some sources) with partial results.
    pub partial: u64,
    /// Queries that failed.
    pub failed: u64,
    /// Queries running now.
    pub in_flight: u64,
    /// Finished queries in the latency histogram (succeeded + partial + failed).
    pub latency_count: u64,
    /// Median latency in milliseconds, estimated from the histogram (`None`: no query yet).
    pub p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Query metrics in [`crate::NodeStatus`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryMetricsStatus {
    /// Network searches.
    pub search: QueryStats,
    /// DHT record lookups.
    pub dht_get: QueryStats,
}

impl NodeMetrics {
    /// The query metrics as `agora status` shows them.
    pub(crate) fn status(&self) -> QueryMetricsStatus {
        QueryMetricsStatus { search: self.search.stats(), dht_get: self.dht_get.stats() }
    }
}

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS`], in seconds) that
/// can estimate quantiles; exported as a Prometheus histogram.
#[derive(Debug, Clone, Default)]
pub(crate) struct LatencyHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for HistogramInner {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BOUNDS.len());
        self.inner.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_micros.fetch_add(latency.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside its bucket
    /// (as Prometheus' `histogram_quantile` does); observations over the last
    /// bound count as the last bound. `None` when nothing was observed.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self.inner.buckets.iter().map(|count| count.load(Ordering::Relaxed)).collect();
        quantile(&counts, q).map(|seconds| seconds * 1e3)
    }
}

/// The `q` quantile (in seconds) of per-bucket `counts` over [`LATENCY_BOUNDS`].
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (index, &count) in counts.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = LATENCY_BOUNDS.get(index) else {
                return LATENCY_BOUNDS.last().copied();
            };
            let lower = if index == 0 { 0.0 } else { LATENCY_BOUNDS[index - 1] };
            let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        below += count;
    }
    LATENCY_BOUNDS.last().copied()
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.buckets.iter().map(|count| count.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = self.inner.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let histogram = LatencyHistogram::default();
        assert_eq!(histogram.quantile_ms(0.5), None);
        // 100 observations of 3 ms land in the (2.5 ms, 5 ms] bucket.
        for _ in 0..100 {
            histogram.observe(Duration::from_millis(3));
        }
        let p50 = histogram.quantile_ms(0.5).unwrap();
        assert!((p50 - 3.75).abs() < 1e-9, "{p50}");
        assert!((histogram.quantile_ms(1.0).unwrap() - 5.0).abs() < 1e-9);
        // One slow outlier moves p99 (rank 99.99 of 101) but not p50.
        histogram.observe(Duration::from_millis(700));
        assert!(histogram.quantile_ms(0.5).unwrap() < 5.0);
        assert!(histogram.quantile_ms(0.999).unwrap() > 500.0);
        assert_eq!(histogram.count(), 101);
    }

    #[test]
    fn quantiles_over_many_buckets_are_ordered() {
        let histogram = LatencyHistogram::default();
        for ms in 1..=1000u64 {
            histogram.observe(Duration::from_millis(ms));
        }
        let (p50, p95, p99) = (
            histogram.quantile_ms(0.5).unwrap(),
            histogram.quantile_ms(0.95).unwrap(),
            histogram.quantile_ms(0.99).unwrap(),
        );
        assert!(p50 <= p95 && p95 <= p99, "{p50} {p95} {p99}");
        // The true median is 500 ms: in the (250, 500] ms bucket.
        assert!((250.0..=500.0).contains(&p50), "{p50}");
        assert!((500.0..=1000.0).contains(&p99), "{p99}");
        // Beyond the last bound counts as the last bound.
        let slow = LatencyHistogram::default();
        slow.observe(Duration::from_secs(120));
        assert_eq!(slow.quantile_ms(0.5), Some(60_000.0));
    }

    #[test]
    fn timers_count_outcomes_and_in_flight() {
        let metrics = QueryMetrics::unregistered();
        let first = metrics.start();
        let second = metrics.start();
        let third = metrics.start();
        assert_eq!(metrics.stats().in_flight, 3);
        first.finish(QueryOutcome::Success);
        second.finish(QueryOutcome::Partial);
        drop(third);
        let stats = metrics.stats();
        assert_eq!((stats.total, stats.succeeded, stats.partial, stats.failed, stats.in_flight), (3, 1, 1, 0, 0));
        assert_eq!(stats.latency_count, 2);
        assert!(stats.p50_ms.is_some());
    }

    #[test]
    fn the_registry_encodes_as_openmetrics_text() {
        let mut registry = Registry::default();
        let metrics = QueryMetrics::register(registry.sub_registry_with_prefix("agora"), "search", "searches");
        metrics.start().finish(QueryOutcome::Success);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE agora_search_queries counter"), "{text}");
        assert!(text.contains("agora_search_queries_total 1"), "{text}");
        assert!(text.contains("agora_search_latency_seconds_count 1"), "{text}");
        assert!(text.contains("agora_search_latency_seconds_bucket{le=\"+Inf\"} 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
