//! Network search: [`QueryConfig`] says how far and how long to look,
//! [`crate::Node::search_network`] starts a query, and its [`QueryHandle`]
//! streams the hits as they arrive.
//!
//! A query runs in its own task:
//!
//! 1. The local catalog is searched first; its hits are streamed at once.
//! 2. If fewer than `max_results` were found, the `fan_out` connected peers with
//!    the best reputation (blocked peers never) are asked in parallel over
//!    `/agora/search/1.0.0`.
//! 3. Each answer is a list of signed index + default-version manifest pairs.
//!    They are verified (decoding is verification) and stored with the same
//!    atomic ingestion catalog sync uses; then the local search runs again and
//!    the answer's packages are streamed in the catalog's score order. Forged or
//!    malformed entries are dropped and earn the peer an invalid outcome; an
//!    honest answer is a success with its latency; a failed request a failure.
//! 4. The query ends when `max_results` distinct hits (by name and version) were
//!    streamed, when every asked peer answered, or at the deadline — then peers
//!    that did not answer get a timeout outcome and the result is `partial`.
//!
//! The deadline is `timeout`, or with `adaptive_timeout`
//! `min(timeout, max(50 ms, 4 × slowest latency EWMA of the asked peers))`,
//! where any asked peer without a latency record means `timeout` (nothing to
//! adapt to yet).
//!
//! [`QueryHandle::collect_results`] gathers everything into [`SearchResults`]
//! ranked by the local catalog's scores after ingestion (the local search is run
//! once more at the end), so local and remote hits are ranked by one formula.
//!
//! This module does not page (a network search returns one page of at most
//! `max_results`) and never waits past its deadline.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use agora_core::{
    Error as CoreError, PackageName, Query, Registry, Result as CoreResult, SearchHit, SearchResults, SearchScope,
    Version,
};
use agora_net::{NetworkError, PeerId, SearchRequest};
use agora_store::Outcome;
use futures::stream::{FuturesUnordered, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use std::sync::Arc;

use crate::metrics::{QueryOutcome, QueryTimer};
use crate::network::Network;
use crate::services::Services;

/// Lower bound of an adaptive deadline.
const MIN_ADAPTIVE_TIMEOUT: Duration = Duration::from_millis(50);
/// An adaptive deadline is this many times the slowest asked peer's latency EWMA.
const ADAPTIVE_FACTOR: f64 = 4.0;

/// Ids of queries, for tracing.
static NEXT_QUERY_ID: AtomicU64 = AtomicU64::new(1);

/// How a network search looks: how long, how many hits, how many peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryConfig {
    /// The longest the query may take (the hard deadline).
    pub timeout: Duration,
    /// Stop after this many distinct hits (1–100).
    pub max_results: usize,
    /// Peers asked in parallel (1–32).
    pub fan_out: usize,
    /// Derive a tighter deadline from the asked peers' latency (see the module doc).
    pub adaptive_timeout: bool,
}

impl QueryConfig {
    /// Longest allowed `timeout`.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
    /// Largest allowed `max_results`.
    pub const MAX_RESULTS: usize = 100;
    /// Largest allowed `fan_out`.
    pub const MAX_FAN_OUT: usize = 32;

    /// For a person waiting at a prompt: 2 s, 10 hits, the single best peer,
    /// fixed deadline. (On a LAN or loopback an answer takes milliseconds; see
    /// `docs/ARCHITECTURE.md` for measured latencies.)
    pub fn interactive() -> Self {
        Self { timeout: Duration::from_secs(2), max_results: 10, fan_out: 1, adaptive_timeout: false }
    }

    /// The default: 10 s, 20 hits, the 3 best peers, adaptive deadline.
    pub fn balanced() -> Self {
        Self { timeout: Duration::from_secs(10), max_results: 20, fan_out: 3, adaptive_timeout: true }
    }

    /// For tools collecting many hits: 5 s, 50 hits, the 5 best peers, adaptive deadline.
    pub fn batch() -> Self {
        Self { timeout: Duration::from_secs(5), max_results: 50, fan_out: 5, adaptive_timeout: true }
    }

    /// The preset called `name` (`interactive`, `balanced` or `batch`).
    pub fn preset(name: &str) -> CoreResult<Self> {
        match name {
            "interactive" => Ok(Self::interactive()),
            "balanced" => Ok(Self::balanced()),
            "batch" => Ok(Self::batch()),
            other => Err(CoreError::InvalidQuery(format!(
                "unknown search preset `{other}`; expected interactive, balanced or batch"
            ))),
        }
    }

    /// Rejects values no search should run with.
    pub fn validate(&self) -> CoreResult<()> {
        let invalid = |message: String| Err(CoreError::InvalidQuery(message));
        if self.timeout.is_zero() || self.timeout > Self::MAX_TIMEOUT {
            return invalid(format!(
                "timeout must be between 1 ms and {} s, found {} ms",
                Self::MAX_TIMEOUT.as_secs(),
                self.timeout.as_millis()
            ));
        }
        if self.max_results == 0 || self.max_results > Self::MAX_RESULTS {
            return invalid(format!(
                "max_results must be between 1 and {}, found {}",
                Self::MAX_RESULTS,
                self.max_results
            ));
        }
        if self.fan_out == 0 || self.fan_out > Self::MAX_FAN_OUT {
            return invalid(format!("fan_out must be between 1 and {}, found {}", Self::MAX_FAN_OUT, self.fan_out));
        }
        Ok(())
    }

    /// The deadline for asking peers whose latency EWMAs (milliseconds; `None`
    /// when unknown) are `latencies`: `timeout`, or with `adaptive_timeout`
    /// `min(timeout, max(50 ms, 4 × the slowest))`; an unknown latency means `timeout`.
    pub fn deadline_for(&self, latencies: impl IntoIterator<Item = Option<f64>>) -> Duration {
        if !self.adaptive_timeout {
            return self.timeout;
        }
        let mut slowest: Option<f64> = None;
        for latency in latencies {
            match latency {
                Some(ms) if ms.is_finite() && ms >= 0.0 => slowest = Some(slowest.map_or(ms, |s: f64| s.max(ms))),
                _ => return self.timeout,
            }
        }
        let Some(slowest) = slowest else { return self.timeout };
        let adaptive = Duration::from_secs_f64((ADAPTIVE_FACTOR * slowest / 1e3).min(Self::MAX_TIMEOUT.as_secs_f64()));
        self.timeout.min(adaptive.max(MIN_ADAPTIVE_TIMEOUT))
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self::balanced()
    }
}

/// A running network search: a [`Stream`] of [`SearchHit`]s, local hits first,
/// then remote ones as peers answer, each (name, version) once. The stream ends
/// at `max_results`, when every asked peer answered, or at the deadline.
/// Dropping the handle stops the query.
#[derive(Debug)]
pub struct QueryHandle {
    id: u64,
    hits: mpsc::Receiver<SearchHit>,
    done: Option<oneshot::Receiver<SearchResults>>,
    finished: Option<SearchResults>,
}

impl QueryHandle {
    /// The query's id (the `query_id` of its tracing span).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the query ended with partial results; `None` while it runs.
    pub fn partial(&mut self) -> Option<bool> {
        self.poll_done();
        self.finished.as_ref().map(|results| results.partial)
    }

    /// Waits for the query to end and returns every hit, ranked by the local
    /// catalog's scores after the remote hits were stored.
    pub async fn collect_results(mut self) -> SearchResults {
        while self.hits.recv().await.is_some() {}
        if let Some(results) = self.finished.take() {
            return results;
        }
        match self.done.take() {
            Some(done) => done.await.unwrap_or_else(|_| SearchResults { partial: true, ..SearchResults::default() }),
            None => SearchResults { partial: true, ..SearchResults::default() },
        }
    }

    fn poll_done(&mut self) {
        if self.finished.is_none()
            && let Some(done) = &mut self.done
            && let Ok(results) = done.try_recv()
        {
            self.finished = Some(results);
            self.done = None;
        }
    }
}

impl Stream for QueryHandle {
    type Item = SearchHit;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SearchHit>> {
        self.hits.poll_recv(cx)
    }
}

/// Starts a network search (see the module doc).
pub(crate) fn start(
    services: &Arc<Services>,
    network: Option<Network>,
    query: &Query,
    config: QueryConfig,
) -> CoreResult<QueryHandle> {
    config.validate()?;
    let mut query = query.clone();
    query.limit = config.max_results as u32;
    query.offset = 0;
    query.scope = SearchScope::Local;
    query.timeout = None;
    query.validate()?;
    let id = NEXT_QUERY_ID.fetch_add(1, Ordering::Relaxed);
    // At most `max_results` hits are ever sent, so sending never waits.
    let (sender, hits) = mpsc::channel(config.max_results);
    let (done_sender, done) = oneshot::channel();
    let span = tracing::info_span!(
        "query",
        query_id = id,
        fan_out = config.fan_out,
        timeout_ms = config.timeout.as_millis() as u64,
        results = tracing::field::Empty,
        partial = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let timer = services.metrics.search.start();
    let hits_seen = Streamed::new(config.max_results);
    let search = Search { services: services.clone(), network, query, config, sender, streamed: hits_seen };
    services.tasks.spawn(search.run(done_sender, timer).instrument(span));
    Ok(QueryHandle { id, hits, done: Some(done), finished: None })
}

/// The state of one running query.
struct Search {
    services: Arc<Services>,
    network: Option<Network>,
    query: Query,
    config: QueryConfig,
    sender: mpsc::Sender<SearchHit>,
    streamed: Streamed,
}

/// The hits a query streamed: each (name, version) once, at most `max`.
#[derive(Debug)]
struct Streamed {
    seen: HashSet<(PackageName, Version)>,
    hits: Vec<SearchHit>,
    max: usize,
}

impl Streamed {
    fn new(max: usize) -> Self {
        Self { seen: HashSet::new(), hits: Vec::new(), max }
    }

    fn full(&self) -> bool {
        self.hits.len() >= self.max
    }

    /// Keeps `hit` and returns true unless it was seen already or the query is full.
    fn admit(&mut self, hit: &SearchHit) -> bool {
        if self.full() || !self.seen.insert((hit.name.clone(), hit.version.clone())) {
            return false;
        }
        self.hits.push(hit.clone());
        true
    }
}

/// How the peers of one query fared.
#[derive(Debug, Default)]
struct Tally {
    asked: usize,
    answered: usize,
    failed: usize,
    timed_out: Vec<PeerId>,
    cancelled: bool,
    /// The node shut down while peers were still asked.
    stopped: bool,
}

impl Search {
    async fn run(mut self, done: oneshot::Sender<SearchResults>, timer: QueryTimer) {
        let span = tracing::Span::current();
        let mut tally = Tally::default();
        let result = self.gather(&mut tally).await;
        if tally.cancelled {
            tracing::debug!("search cancelled: the handle was dropped");
            self.record_timeouts(&tally.timed_out).await;
            return;
        }
        let (results, outcome) = match result {
            Ok(()) => {
                let partial = !tally.timed_out.is_empty() || tally.failed > 0 || tally.stopped;
                let outcome = if tally.asked > 0 && tally.answered == 0 && tally.timed_out.is_empty() {
                    QueryOutcome::Failed
                } else if partial {
                    QueryOutcome::Partial
                } else {
                    QueryOutcome::Success
                };
                (self.ranked(partial).await, outcome)
            }
            Err(error) => {
                tracing::warn!(%error, "search failed");
                let hits = std::mem::take(&mut self.streamed.hits);
                let total = hits.len() as u64;
                (SearchResults { hits, total, partial: true }, QueryOutcome::Failed)
            }
        };
        let latency = timer.finish(outcome);
        span.record("results", results.hits.len());
        span.record("partial", results.partial);
        span.record("latency_ms", latency.as_secs_f64() * 1e3);
        tracing::debug!(asked = tally.asked, answered = tally.answered, failed = tally.failed, "search finished");
        let _ = done.send(results);
        // Dropping the sender ends the stream; the timeouts go on record after.
        let network = self.network.clone();
        drop(self);
        record(network.as_ref(), &tally.timed_out, Outcome::Timeout).await;
    }

    async fn record_timeouts(&self, peers: &[PeerId]) {
        record(self.network.as_ref(), peers, Outcome::Timeout).await;
    }

    /// Streams local hits, then asks peers; fills `tally`.
    async fn gather(&mut self, tally: &mut Tally) -> CoreResult<()> {
        let local = self.services.registry.search(&self.query).await?;
        for hit in local.hits {
            self.emit(hit).await;
        }
        if self.full() || self.sender.is_closed() {
            tally.cancelled = self.sender.is_closed();
            return Ok(());
        }
        let Some(network) = self.network.clone() else { return Ok(()) };
        let peers = network.search_peers(self.config.fan_out).await?;
        if peers.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.config.deadline_for(peers.iter().map(|(_, latency)| *latency));
        let request = SearchRequest {
            text: self.query.text.clone(),
            categories: self.query.categories.clone(),
            tags: self.query.tags.clone(),
            publisher: self.query.publisher,
            limit: self.config.max_results as u16,
        };
        let mut waiting: HashSet<PeerId> = peers.iter().map(|(peer, _)| *peer).collect();
        tally.asked = waiting.len();
        let mut answers: FuturesUnordered<_> = peers
            .into_iter()
            .map(|(peer, _)| {
                let (handle, request) = (network.handle().clone(), request.clone());
                async move {
                    let asked = Instant::now();
                    let result = handle.request_search(peer, request).await;
                    (peer, result, asked.elapsed())
                }
            })
            .collect();
        let watcher = self.sender.clone();
        let cancel = self.services.cancel.clone();
        while !waiting.is_empty() && !self.full() {
            tokio::select! {
                () = cancel.cancelled() => {
                    // The node shuts down: end with what came in, partial, and hold
                    // nothing against the peers that had no time to answer.
                    tally.stopped = true;
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    tally.timed_out = waiting.drain().collect();
                    break;
                }
                () = watcher.closed() => {
                    tally.cancelled = true;
                    break;
                }
                Some((peer, result, latency)) = answers.next() => {
                    waiting.remove(&peer);
                    match result {
                        Ok(response) => {
                            let answer = network.ingest_search_answer(peer, request.limit, response).await;
                            if answer.valid {
                                tally.answered += 1;
                                let latency_ms = latency.as_secs_f64() * 1e3;
                                network.record(peer, Outcome::Success { latency_ms }).await;
                            } else {
                                // Struck (or, for a storage error, not the peer's fault).
                                tally.failed += 1;
                            }
                            self.emit_remote(&answer.names).await?;
                        }
                        Err(NetworkError::Timeout(_)) => tally.timed_out.push(peer),
                        Err(error) => {
                            tracing::debug!(%peer, %error, "search request failed");
                            tally.failed += 1;
                            network.record(peer, Outcome::Failure).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.streamed.full()
    }

    /// Streams `hit` unless it was streamed already or the query is full.
    async fn emit(&mut self, hit: SearchHit) {
        if self.streamed.admit(&hit) {
            // A closed stream means the handle is gone; `gather` notices.
            let _ = self.sender.send(hit).await;
        }
    }

    /// Runs the local search again (the answer is in the catalog now) and streams
    /// the hits for `names` in score order.
    async fn emit_remote(&mut self, names: &[PackageName]) -> CoreResult<()> {
        if names.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<&PackageName> = names.iter().collect();
        let results = self.services.registry.search(&self.rerun_query()).await?;
        for hit in results.hits {
            if wanted.contains(&hit.name) {
                self.emit(hit).await;
            }
        }
        Ok(())
    }

    fn rerun_query(&self) -> Query {
        Query { limit: Query::MAX_LIMIT, ..self.query.clone() }
    }

    /// Everything streamed, ranked by the catalog's scores now; `total` is how
    /// many packages in the catalog match now.
    async fn ranked(&mut self, partial: bool) -> SearchResults {
        let streamed = std::mem::take(&mut self.streamed.hits);
        let names: HashSet<PackageName> = streamed.iter().map(|hit| hit.name.clone()).collect();
        let Ok(now) = self.services.registry.search(&self.rerun_query()).await else {
            let total = streamed.len() as u64;
            return SearchResults { hits: streamed, total, partial };
        };
        let mut hits: Vec<SearchHit> = now.hits.into_iter().filter(|hit| names.contains(&hit.name)).collect();
        let ranked: HashSet<PackageName> = hits.iter().map(|hit| hit.name.clone()).collect();
        // Streamed packages the catalog no longer ranks this high keep their place at the end.
        let mut seen = ranked;
        for hit in streamed {
            if seen.insert(hit.name.clone()) {
                hits.push(hit);
            }
        }
        hits.truncate(self.config.max_results);
        let total = now.total.max(hits.len() as u64);
        SearchResults { hits, total, partial }
    }
}

/// Records `outcome` for each of `peers`.
async fn record(network: Option<&Network>, peers: &[PeerId], outcome: Outcome) {
    if let Some(network) = network {
        for peer in peers {
            network.record(*peer, outcome).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_as_documented() {
        for preset in ["interactive", "balanced", "batch"] {
            QueryConfig::preset(preset).unwrap().validate().unwrap();
        }
        let interactive = QueryConfig::interactive();
        assert_eq!(
            (interactive.timeout, interactive.max_results, interactive.fan_out, interactive.adaptive_timeout),
            (Duration::from_secs(2), 10, 1, false)
        );
        let balanced = QueryConfig::balanced();
        assert_eq!(
            (balanced.timeout, balanced.max_results, balanced.fan_out, balanced.adaptive_timeout),
            (Duration::from_secs(10), 20, 3, true)
        );
        let batch = QueryConfig::batch();
        assert_eq!(
            (batch.timeout, batch.max_results, batch.fan_out, batch.adaptive_timeout),
            (Duration::from_secs(5), 50, 5, true)
        );
        assert_eq!(QueryConfig::default(), balanced);
        assert!(QueryConfig::preset("fast").unwrap_err().to_string().contains("unknown search preset `fast`"));
    }

    #[test]
    fn absurd_values_are_rejected_with_clear_errors() {
        let base = QueryConfig::interactive();
        let error = |config: QueryConfig| config.validate().unwrap_err().to_string();
        assert_eq!(
            error(QueryConfig { timeout: Duration::ZERO, ..base }),
            "invalid query: timeout must be between 1 ms and 60 s, found 0 ms"
        );
        assert!(error(QueryConfig { timeout: Duration::from_secs(61), ..base }).contains("found 61000 ms"));
        assert_eq!(
            error(QueryConfig { max_results: 0, ..base }),
            "invalid query: max_results must be between 1 and 100, found 0"
        );
        assert!(error(QueryConfig { max_results: 101, ..base }).contains("found 101"));
        assert_eq!(
            error(QueryConfig { fan_out: 0, ..base }),
            "invalid query: fan_out must be between 1 and 32, found 0"
        );
        assert!(error(QueryConfig { fan_out: 33, ..base }).contains("found 33"));
        assert!(
            QueryConfig { timeout: Duration::from_secs(60), max_results: 100, fan_out: 32, ..base }.validate().is_ok()
        );
    }

    #[test]
    fn hits_stream_once_per_name_and_version_up_to_the_limit() {
        let publisher = agora_core::SecretKey::generate().public_key();
        let hit = |name: &str, version: &str| SearchHit {
            name: name.parse().unwrap(),
            version: agora_core::parse_version(version).unwrap(),
            description: String::new(),
            keywords: Vec::new(),
            categories: Vec::new(),
            publisher,
            published_at: 0,
            score: 1.0,
            contested: false,
            equivocated: false,
        };
        let mut streamed = Streamed::new(3);
        assert!(streamed.admit(&hit("a", "1.0.0")));
        // The same hit from another peer (with another score) is a duplicate.
        assert!(!streamed.admit(&SearchHit { score: 9.0, ..hit("a", "1.0.0") }));
        // Another version of the same package is another hit.
        assert!(streamed.admit(&hit("a", "1.1.0")));
        assert!(!streamed.full());
        assert!(streamed.admit(&hit("b", "1.0.0")));
        assert!(streamed.full());
        assert!(!streamed.admit(&hit("c", "1.0.0")));
        let names: Vec<String> = streamed.hits.iter().map(|h| format!("{}@{}", h.name, h.version)).collect();
        assert_eq!(names, ["a@1.0.0", "a@1.1.0", "b@1.0.0"]);
    }

    #[test]
    fn adaptive_deadlines_follow_the_slowest_peer() {
        let fixed = QueryConfig::interactive();
        assert_eq!(fixed.deadline_for([Some(1.0)]), fixed.timeout);
        let adaptive = QueryConfig::balanced();
        // 4 × 100 ms.
        assert_eq!(adaptive.deadline_for([Some(20.0), Some(100.0)]), Duration::from_millis(400));
        // Never under 50 ms.
        assert_eq!(adaptive.deadline_for([Some(1.0)]), Duration::from_millis(50));
        // Never over the timeout.
        assert_eq!(adaptive.deadline_for([Some(60_000.0)]), adaptive.timeout);
        // A peer without a latency record: nothing to adapt to.
        assert_eq!(adaptive.deadline_for([Some(1.0), None]), adaptive.timeout);
        assert_eq!(adaptive.deadline_for([]), adaptive.timeout);
    }
}
