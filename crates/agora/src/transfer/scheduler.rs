//! The chunk scheduler of one artifact transfer: which provider is asked for
//! which chunk, when a provider is dropped, and when the transfer is done or has
//! failed.
//!
//! [`ChunkScheduler`] is a state machine in the manner of rust-libp2p's
//! `ClosestPeersIter`: the driver reports what happened
//! ([`ChunkScheduler::chunk_arrived`], [`ChunkScheduler::chunk_failed`],
//! [`ChunkScheduler::provider_added`], [`ChunkScheduler::provider_dropped`]) and
//! asks [`ChunkScheduler::next`] what to do now. The rules it keeps:
//!
//! - the missing chunks wait in one queue; up to `max_providers` providers are
//!   asked at once, each for up to `requests_per_provider` chunks, so a faster
//!   provider serves more chunks;
//! - a chunk is in flight to at most one provider at a time: there is no endgame
//!   duplication (with chunks of a few hundred KiB and several providers, the
//!   last chunks cost one round trip each; duplicating them would double the
//!   load on providers and make "who served this" ambiguous);
//! - a provider that sends a bad chunk, refuses, errs or stalls (a request
//!   unanswered for `chunk_timeout`) is dropped for this transfer and never asked
//!   again, and its chunks go back to the front of the queue;
//! - free provider slots are taken by providers that ran dry but are still good
//!   first, then by standby providers in rank order;
//! - every run ends in [`Action::Done`] or [`Action::Failed`], never with work
//!   left and nothing in flight.
//!
//! It deliberately does no I/O and holds no opinion on bytes: it sends no
//! request, verifies no digest, writes no file, reads no clock (time comes in as
//! `now`) and records no reputation. Those belong to the driver, which also
//! decides what a local write error means (it is not a provider's fault, so it
//! is not reported here).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How one transfer is scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchedulerSettings {
    /// Providers asked at once (at least one is).
    pub(crate) max_providers: usize,
    /// Chunk requests in flight per provider (at least one is).
    pub(crate) requests_per_provider: usize,
    /// A chunk request unanswered for this long marks its provider as stalled.
    pub(crate) chunk_timeout: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self { max_providers: 3, requests_per_provider: 4, chunk_timeout: Duration::from_secs(10) }
    }
}

/// Why a chunk request did not bring a chunk, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChunkFailure {
    /// The bytes did not match the chunk's digest or length.
    Invalid,
    /// The provider answered without the chunk (not found, out of range, unavailable).
    Refused,
    /// The request failed (connection closed, protocol error, ...).
    Error(String),
    /// The driver's own timer (or the network's) gave up on the request.
    Timeout,
}

/// What a drop means for the provider's reputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropKind {
    /// It sent bad bytes.
    Invalid,
    /// It refused or the request failed.
    Failure,
    /// It did not answer in time.
    Timeout,
}

/// Why a provider was dropped from a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// It sent a chunk that did not verify.
    BadChunk { index: usize },
    /// It answered without the chunk.
    Refused { index: usize },
    /// The request for the chunk failed.
    Error { index: usize, message: String },
    /// The chunk did not come within the timeout.
    Stalled { index: usize, waited: Duration },
    /// The driver removed it ([`ChunkScheduler::provider_dropped`]).
    Removed(String),
}

impl DropReason {
    /// What the drop means for the provider's reputation; `None` for a removal
    /// the driver made itself.
    pub(crate) fn kind(&self) -> Option<DropKind> {
        match self {
            Self::BadChunk { .. } => Some(DropKind::Invalid),
            Self::Refused { .. } | Self::Error { .. } => Some(DropKind::Failure),
            Self::Stalled { .. } => Some(DropKind::Timeout),
            Self::Removed(_) => None,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadChunk { index } => write!(formatter, "sent a bad chunk {index}"),
            Self::Refused { index } => write!(formatter, "refused chunk {index}"),
            Self::Error { index, message } => write!(formatter, "chunk {index} failed: {message}"),
            Self::Stalled { index, waited } => write!(formatter, "stalled: no chunk {index} within {waited:?}"),
            Self::Removed(reason) => formatter.write_str(reason),
        }
    }
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action<P> {
    /// Ask `peer` for chunk `index` (the request's timer runs from the `now`
    /// given to [`ChunkScheduler::next`]).
    Request { peer: P, index: usize },
    /// `peer` is out of this transfer: tell its reputation, and cancel or ignore
    /// its other requests (their answers no longer count).
    Drop { peer: P, reason: DropReason, kind: DropKind },
    /// Every chunk is verified.
    Done,
    /// Chunks are missing and no provider is left to ask.
    Failed(TransferFailure<P>),
}

/// How a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransferFailure<P> {
    /// Chunks still missing.
    pub(crate) missing: usize,
    /// Chunks in all.
    pub(crate) total: usize,
    /// Every provider the transfer knew, in the order they were tried (those
    /// removed before their turn last), with why each was dropped. A failed
    /// transfer has no provider left, so each has a reason; one that never
    /// answered was dropped as [`DropReason::Stalled`].
    pub(crate) providers: Vec<(P, DropReason)>,
}

impl<P: fmt::Display> fmt::Display for TransferFailure<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { missing, total, providers } = self;
        if providers.is_empty() {
            return write!(formatter, "{missing} of {total} chunks are missing and no provider was found");
        }
        let tried = providers.len();
        let plural = if tried == 1 { "" } else { "s" };
        write!(
            formatter,
            "{missing} of {total} chunks are still missing and no provider is left after trying {tried} provider{plural} ("
        )?;
        for (position, (peer, reason)) in providers.iter().enumerate() {
            let separator = if position == 0 { "" } else { "; " };
            write!(formatter, "{separator}{peer}: {reason}")?;
        }
        formatter.write_str(")")
    }
}

/// The chunk scheduler of one transfer. See the module documentation.
#[derive(Debug)]
pub(crate) struct ChunkScheduler<P> {
    settings: SchedulerSettings,
    /// One mark per chunk: verified (resumed or arrived).
    verified: Vec<bool>,
    resumed: usize,
    done: usize,
    /// Missing chunks not in flight, next first. With the chunks in flight they
    /// are exactly the missing chunks.
    queue: VecDeque<usize>,
    /// Every provider the transfer knows, best rank first (late ones behind).
    /// Bounded by what the driver hands in: its provider lookup is bounded.
    providers: Vec<Provider<P>>,
    positions: HashMap<P, usize>,
    /// Providers in the order they were first asked.
    tried: Vec<P>,
    /// Drops reported by the driver's calls, handed out by the next `next`.
    reports: Vec<Action<P>>,
    /// `Done` or `Failed`, once reached.
    outcome: Option<Action<P>>,
}

impl<P: Copy + Eq + Hash + Ord + fmt::Debug> ChunkScheduler<P> {
    /// A transfer of `chunks` chunks of which those in `verified` are already
    /// staged (indexes out of range are ignored), from `providers` ranked best
    /// first (repeats are ignored).
    pub(crate) fn new(
        chunks: usize,
        verified: impl IntoIterator<Item = usize>,
        providers: impl IntoIterator<Item = P>,
        settings: SchedulerSettings,
    ) -> Self {
        let settings = SchedulerSettings {
            max_providers: settings.max_providers.max(1),
            requests_per_provider: settings.requests_per_provider.max(1),
            chunk_timeout: settings.chunk_timeout,
        };
        let mut marks = vec![false; chunks];
        for index in verified {
            if let Some(mark) = marks.get_mut(index) {
                *mark = true;
            }
        }
        let resumed = marks.iter().filter(|mark| **mark).count();
        let queue = (0..chunks).filter(|index| !marks[*index]).collect();
        let mut scheduler = Self {
            settings,
            verified: marks,
            resumed,
            done: resumed,
            queue,
            providers: Vec::new(),
            positions: HashMap::new(),
            tried: Vec::new(),
            reports: Vec::new(),
            outcome: None,
        };
        for peer in providers {
            scheduler.provider_added(peer);
        }
        scheduler
    }

    /// A provider found late goes to the back of standby. Returns false (and
    /// does nothing) if the provider is already known, dropped included, or the
    /// transfer has ended.
    pub(crate) fn provider_added(&mut self, peer: P) -> bool {
        if self.outcome.is_some() || self.positions.contains_key(&peer) {
            return false;
        }
        self.positions.insert(peer, self.providers.len());
        self.providers.push(Provider { peer, state: ProviderState::Standby, in_flight: Vec::new(), served: 0 });
        true
    }

    /// The driver removes a provider (it disconnected, was blocked, ...): it is
    /// never asked again and its chunks in flight go back to the front of the
    /// queue. No [`Action::Drop`] follows, since the driver knows. Returns false
    /// if the provider is unknown or already dropped.
    pub(crate) fn provider_dropped(&mut self, peer: P, reason: impl Into<String>) -> bool {
        match self.positions.get(&peer) {
            Some(&position) if !self.providers[position].is_dropped() => {
                self.drop_provider(position, DropReason::Removed(reason.into()), None);
                true
            }
            _ => false,
        }
    }

    /// Whether an answer from `peer` for chunk `index` would count now (it was
    /// asked and not dropped since): the driver skips writing stale answers.
    pub(crate) fn is_expected(&self, peer: P, index: usize) -> bool {
        self.live_request(peer, index).is_some()
    }

    /// Chunk `index` from `peer` verified and was written. Returns how long it
    /// took, or `None` if the answer does not count: `peer` was not asked for
    /// it or was dropped meanwhile (the driver may report such stale answers).
    /// An answer that comes after `chunk_timeout` but before `next` noticed the
    /// stall still counts.
    pub(crate) fn chunk_arrived(&mut self, peer: P, index: usize, now: Instant) -> Option<Duration> {
        let (position, slot) = self.live_request(peer, index)?;
        let provider = &mut self.providers[position];
        let (_, sent) = provider.in_flight.remove(slot);
        provider.served += 1;
        self.verified[index] = true;
        self.done += 1;
        Some(now.saturating_duration_since(sent))
    }

    /// The request of chunk `index` from `peer` failed: the provider is dropped
    /// (reported by the next `next`) and its chunks go back to the front of the
    /// queue, this one first. Returns false (and does nothing) for a stale
    /// report, as [`ChunkScheduler::chunk_arrived`].
    pub(crate) fn chunk_failed(&mut self, peer: P, index: usize, failure: ChunkFailure, now: Instant) -> bool {
        let Some((position, slot)) = self.live_request(peer, index) else { return false };
        let (_, sent) = self.providers[position].in_flight[slot];
        let reason = match failure {
            ChunkFailure::Invalid => DropReason::BadChunk { index },
            ChunkFailure::Refused => DropReason::Refused { index },
            ChunkFailure::Error(message) => DropReason::Error { index, message },
            ChunkFailure::Timeout => DropReason::Stalled { index, waited: now.saturating_duration_since(sent) },
        };
        self.drop_provider(position, reason.clone(), Some(index));
        if let Some(kind) = reason.kind() {
            self.reports.push(Action::Drop { peer, reason, kind });
        }
        true
    }

    /// What to do at `now`: the drops reported since the last call, providers
    /// dropped for stalling (a request sent at `sent` stalls once
    /// `now >= sent + chunk_timeout`), the requests to send, and, once the
    /// transfer ends, `Done` or `Failed` last. After the end every call returns
    /// that outcome alone.
    pub(crate) fn next(&mut self, now: Instant) -> Vec<Action<P>> {
        if let Some(outcome) = &self.outcome {
            return vec![outcome.clone()];
        }
        let mut actions = std::mem::take(&mut self.reports);
        self.expire(now, &mut actions);
        self.assign(now, &mut actions);
        if self.in_flight() == 0 {
            // Nothing in flight: either nothing is missing, or no provider could
            // take the queue (every one is dropped).
            debug_assert_eq!(self.queue.len(), self.verified.len() - self.done);
            let outcome = if self.queue.is_empty() { Action::Done } else { Action::Failed(self.failure()) };
            self.outcome = Some(outcome.clone());
            actions.push(outcome);
        }
        actions
    }

    /// The earliest instant at which `next` would drop a provider for
    /// stalling; `None` if nothing is in flight (or the timeout is too long to
    /// represent).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.providers
            .iter()
            .flat_map(|provider| &provider.in_flight)
            .filter_map(|(_, sent)| sent.checked_add(self.settings.chunk_timeout))
            .min()
    }

    #[cfg(test)]
    /// Chunks in all.
    pub(crate) fn chunks_total(&self) -> usize {
        self.verified.len()
    }

    #[cfg(test)]
    /// Chunks verified, resumed ones included.
    pub(crate) fn chunks_done(&self) -> usize {
        self.done
    }

    /// Chunks that were verified when the transfer began.
    pub(crate) fn chunks_resumed(&self) -> usize {
        self.resumed
    }

    #[cfg(test)]
    /// Whether chunk `index` is verified.
    pub(crate) fn is_verified(&self, index: usize) -> bool {
        self.verified.get(index).copied().unwrap_or(false)
    }

    /// Chunk requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.providers.iter().map(|provider| provider.in_flight.len()).sum()
    }

    /// Verified chunks `peer` served in this transfer.
    pub(crate) fn provider_chunks(&self, peer: &P) -> usize {
        self.positions.get(peer).map_or(0, |position| self.providers[*position].served)
    }

    /// Why `peer` was dropped, if it was.
    pub(crate) fn dropped(&self, peer: &P) -> Option<&DropReason> {
        let position = self.positions.get(peer)?;
        match &self.providers[*position].state {
            ProviderState::Dropped(reason) => Some(reason),
            _ => None,
        }
    }

    #[cfg(test)]
    /// Providers in the order they were first asked.
    pub(crate) fn tried(&self) -> &[P] {
        &self.tried
    }

    /// Providers that served at least one verified chunk, in the order tried.
    pub(crate) fn served_by(&self) -> Vec<P> {
        self.tried.iter().copied().filter(|peer| self.provider_chunks(peer) > 0).collect()
    }

    /// The position of `peer` and of its request for `index`, if that request
    /// is in flight and counts.
    fn live_request(&self, peer: P, index: usize) -> Option<(usize, usize)> {
        let position = *self.positions.get(&peer)?;
        let provider = &self.providers[position];
        if provider.is_dropped() {
            return None;
        }
        let slot = provider.in_flight.iter().position(|(asked, _)| *asked == index)?;
        Some((position, slot))
    }

    /// Marks a provider dropped and puts its chunks in flight back at the front
    /// of the queue, `first` before the others (which keep the order they were
    /// sent in).
    fn drop_provider(&mut self, position: usize, reason: DropReason, first: Option<usize>) {
        let provider = &mut self.providers[position];
        provider.state = ProviderState::Dropped(reason);
        let mut returned: Vec<usize> = provider.in_flight.drain(..).map(|(index, _)| index).collect();
        if let Some(first) = first
            && let Some(at) = returned.iter().position(|index| *index == first)
        {
            returned.remove(at);
            returned.insert(0, first);
        }
        for index in returned.into_iter().rev() {
            self.queue.push_front(index);
        }
    }

    /// Drops every provider with a request outstanding for `chunk_timeout` at
    /// `now`, naming its oldest such request.
    fn expire(&mut self, now: Instant, actions: &mut Vec<Action<P>>) {
        let timeout = self.settings.chunk_timeout;
        for position in 0..self.providers.len() {
            let provider = &self.providers[position];
            let stalled = provider
                .in_flight
                .iter()
                .filter(|(_, sent)| sent.checked_add(timeout).is_some_and(|deadline| deadline <= now))
                .min_by_key(|(_, sent)| *sent)
                .copied();
            if let Some((index, sent)) = stalled {
                let peer = provider.peer;
                let reason = DropReason::Stalled { index, waited: now.saturating_duration_since(sent) };
                self.drop_provider(position, reason.clone(), Some(index));
                actions.push(Action::Drop { peer, reason, kind: DropKind::Timeout });
            }
        }
    }

    /// Hands queued chunks to the active providers in rank order, then fills
    /// free provider slots (good idle providers first, then standby in rank
    /// order), then lets providers with nothing left to do go idle.
    fn assign(&mut self, now: Instant, actions: &mut Vec<Action<P>>) {
        for position in 0..self.providers.len() {
            if self.providers[position].state == ProviderState::Active {
                self.fill(position, now, actions);
            }
        }
        let mut active = self.providers.iter().filter(|provider| provider.state == ProviderState::Active).count();
        while !self.queue.is_empty() && active < self.settings.max_providers {
            let Some(position) = self.next_provider() else { break };
            let provider = &mut self.providers[position];
            if provider.state == ProviderState::Standby {
                self.tried.push(provider.peer);
            }
            provider.state = ProviderState::Active;
            active += 1;
            self.fill(position, now, actions);
        }
        for provider in &mut self.providers {
            if provider.state == ProviderState::Active && provider.in_flight.is_empty() {
                provider.state = ProviderState::Idle;
            }
        }
    }

    /// Requests queued chunks from one provider up to its limit.
    fn fill(&mut self, position: usize, now: Instant, actions: &mut Vec<Action<P>>) {
        let provider = &mut self.providers[position];
        while provider.in_flight.len() < self.settings.requests_per_provider {
            let Some(index) = self.queue.pop_front() else { break };
            provider.in_flight.push((index, now));
            actions.push(Action::Request { peer: provider.peer, index });
        }
    }

    /// The provider to take a free slot: the best-ranked idle one, else the
    /// best-ranked one on standby.
    fn next_provider(&self) -> Option<usize> {
        let find = |wanted: &ProviderState| self.providers.iter().position(|provider| provider.state == *wanted);
        find(&ProviderState::Idle).or_else(|| find(&ProviderState::Standby))
    }

    fn failure(&self) -> TransferFailure<P> {
        let reason_of = |peer: &P| self.dropped(peer).map(|reason| (*peer, reason.clone()));
        let untried = self.providers.iter().map(|provider| &provider.peer).filter(|peer| !self.tried.contains(peer));
        TransferFailure {
            missing: self.verified.len() - self.done,
            total: self.verified.len(),
            providers: self.tried.iter().chain(untried).filter_map(reason_of).collect(),
        }
    }
}

/// One provider's part in the transfer.
#[derive(Debug)]
struct Provider<P> {
    peer: P,
    state: ProviderState,
    /// Chunk indexes asked for and when, at most `requests_per_provider`.
    in_flight: Vec<(usize, Instant)>,
    /// Verified chunks it served.
    served: usize,
}

impl<P> Provider<P> {
    fn is_dropped(&self) -> bool {
        matches!(self.state, ProviderState::Dropped(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProviderState {
    /// Not asked yet.
    Standby,
    /// Holds a provider slot.
    Active,
    /// Ran out of work while good; takes a slot again before standby providers.
    Idle,
    /// Out of this transfer.
    Dropped(DropReason),
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn settings(max_providers: usize, requests_per_provider: usize, timeout: Duration) -> SchedulerSettings {
        SchedulerSettings { max_providers, requests_per_provider, chunk_timeout: timeout }
    }

    fn requests(actions: &[Action<u32>]) -> Vec<(u32, usize)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Request { peer, index } => Some((*peer, *index)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_bad_chunk_drops_its_provider_and_goes_to_another() {
        let now = Instant::now();
        let mut scheduler = ChunkScheduler::new(2, [], [1, 2], settings(1, 1, 10 * MS));
        assert_eq!(requests(&scheduler.next(now)), [(1, 0)]);
        assert!(scheduler.chunk_failed(1, 0, ChunkFailure::Invalid, now + MS));
        let actions = scheduler.next(now + MS);
        assert_eq!(
            actions[0],
            Action::Drop { peer: 1, reason: DropReason::BadChunk { index: 0 }, kind: DropKind::Invalid }
        );
        assert_eq!(requests(&actions), [(2, 0)], "the bad chunk is asked for first, from the standby provider");
        assert!(!scheduler.is_expected(1, 0), "the dropped provider's answers are stale: not written");
        assert!(scheduler.is_expected(2, 0) && !scheduler.is_expected(2, 1), "only what was asked is expected");
        assert_eq!(scheduler.chunk_arrived(1, 0, now + 2 * MS), None, "the dropped provider's late answer");
        assert_eq!(scheduler.chunk_arrived(2, 0, now + 3 * MS), Some(2 * MS));
        assert_eq!(requests(&scheduler.next(now + 3 * MS)), [(2, 1)]);
        assert!(scheduler.chunk_arrived(2, 1, now + 4 * MS).is_some());
        assert_eq!(scheduler.next(now + 4 * MS), [Action::Done]);
        assert_eq!(scheduler.served_by(), [2]);
        assert_eq!(scheduler.tried(), [1, 2]);
    }

    #[test]
    fn a_stall_times_out_at_exactly_sent_plus_chunk_timeout() {
        let sent = Instant::now();
        let timeout = 10 * MS;
        let mut scheduler = ChunkScheduler::new(1, [], [1, 2], settings(1, 1, timeout));
        assert_eq!(requests(&scheduler.next(sent)), [(1, 0)]);
        assert_eq!(scheduler.deadline(), Some(sent + timeout));
        assert!(scheduler.next(sent + timeout - Duration::from_nanos(1)).is_empty());
        let actions = scheduler.next(sent + timeout);
        assert_eq!(
            actions,
            [
                Action::Drop {
                    peer: 1,
                    reason: DropReason::Stalled { index: 0, waited: timeout },
                    kind: DropKind::Timeout
                },
                Action::Request { peer: 2, index: 0 },
            ]
        );
        assert_eq!(scheduler.deadline(), Some(sent + 2 * timeout));
    }

    #[test]
    fn a_resumed_transfer_requests_only_the_missing_chunks() {
        let now = Instant::now();
        let mut scheduler = ChunkScheduler::new(5, [1, 3], [7], settings(2, 8, 10 * MS));
        assert_eq!((scheduler.chunks_done(), scheduler.chunks_resumed()), (2, 2));
        assert_eq!(requests(&scheduler.next(now)), [(7, 0), (7, 2), (7, 4)]);
        for index in [4, 0, 2] {
            assert!(scheduler.chunk_arrived(7, index, now).is_some());
        }
        assert_eq!(scheduler.next(now), [Action::Done]);
        assert_eq!(scheduler.provider_chunks(&7), 3);
    }

    #[test]
    fn nothing_missing_is_done_at_once_and_no_provider_is_failed_at_once() {
        let now = Instant::now();
        let mut complete = ChunkScheduler::<u32>::new(3, [0, 1, 2], [], SchedulerSettings::default());
        assert_eq!(complete.next(now), [Action::Done]);
        let mut empty = ChunkScheduler::new(0, [], [1], SchedulerSettings::default());
        assert_eq!(empty.next(now), [Action::Done]);
        let mut stranded = ChunkScheduler::<u32>::new(3, [1], [], SchedulerSettings::default());
        let failure = TransferFailure { missing: 2, total: 3, providers: Vec::new() };
        assert_eq!(stranded.next(now), [Action::Failed(failure.clone())]);
        assert_eq!(stranded.next(now), [Action::Failed(failure)], "the outcome stays");
    }

    #[test]
    fn a_good_provider_that_ran_dry_is_reused_before_standby() {
        let now = Instant::now();
        let mut scheduler = ChunkScheduler::new(3, [], [1, 2, 3], settings(2, 1, 10 * MS));
        assert_eq!(requests(&scheduler.next(now)), [(1, 0), (2, 1)]);
        assert!(scheduler.chunk_arrived(1, 0, now).is_some());
        assert_eq!(requests(&scheduler.next(now)), [(1, 2)]);
        assert!(scheduler.chunk_arrived(1, 2, now).is_some());
        assert!(scheduler.next(now).is_empty(), "provider 1 ran dry and goes idle");
        assert!(scheduler.chunk_failed(2, 1, ChunkFailure::Refused, now));
        let actions = scheduler.next(now);
        assert_eq!(requests(&actions), [(1, 1)], "the idle provider, not standby provider 3");
        assert_eq!(scheduler.tried(), [1, 2]);
    }

    #[test]
    fn a_late_provider_waits_behind_standby_and_a_dropped_one_is_not_taken_back() {
        let now = Instant::now();
        let mut scheduler = ChunkScheduler::new(1, [], [1, 2], settings(1, 1, 10 * MS));
        assert!(scheduler.provider_added(3));
        assert!(!scheduler.provider_added(2), "already known");
        assert_eq!(requests(&scheduler.next(now)), [(1, 0)]);
        assert!(scheduler.provider_dropped(1, "disconnected"));
        assert!(!scheduler.provider_added(1), "dropped providers stay dropped");
        assert!(scheduler.provider_dropped(2, "blocked"));
        assert_eq!(scheduler.next(now), [Action::Request { peer: 3, index: 0 }], "no Drop for a removal");
        assert!(scheduler.chunk_failed(3, 0, ChunkFailure::Error("reset".into()), now));
        let Some(Action::Failed(failure)) = scheduler.next(now).pop() else { panic!("the transfer should fail") };
        assert_eq!(
            failure.to_string(),
            "1 of 1 chunks are still missing and no provider is left after trying 3 providers \
             (1: disconnected; 3: chunk 0 failed: reset; 2: blocked)"
        );
    }

    /// How a simulated provider answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Behaviour {
        Good,
        Bad,
        Refusing,
        Erroring,
        Stalling,
        /// Good, bad or timing out, by the roll of the dice.
        Flaky,
    }

    fn behaviour() -> impl Strategy<Value = Behaviour> {
        prop_oneof![
            3 => Just(Behaviour::Good),
            1 => Just(Behaviour::Bad),
            1 => Just(Behaviour::Refusing),
            1 => Just(Behaviour::Erroring),
            1 => Just(Behaviour::Stalling),
            2 => Just(Behaviour::Flaky),
        ]
    }

    /// A request the simulated network holds; it may still be answered after
    /// its provider was dropped (a stale answer).
    #[derive(Debug, Clone, Copy)]
    struct Sent {
        peer: u32,
        index: usize,
        at: Instant,
    }

    /// A driver over a simulated network that checks every rule as it goes.
    struct Simulation {
        scheduler: ChunkScheduler<u32>,
        settings: SchedulerSettings,
        behaviours: BTreeMap<u32, Behaviour>,
        late: Vec<(u32, Behaviour)>,
        /// Dropped, by the scheduler or by the driver.
        dropped: HashSet<u32>,
        /// Drops the scheduler must report, with their kind.
        expected_drops: BTreeMap<u32, DropKind>,
        reported_drops: HashSet<u32>,
        sent: Vec<Sent>,
        missing_at_start: Vec<usize>,
        /// Chunks "written": those the scheduler accepted.
        written: Vec<usize>,
        now: Instant,
        outcome: Option<Action<u32>>,
    }

    impl Simulation {
        fn is_live(&self, request: &Sent) -> bool {
            !self.dropped.contains(&request.peer)
        }

        fn live(&self) -> impl Iterator<Item = &Sent> {
            self.sent.iter().filter(|request| self.is_live(request))
        }

        /// Plays one event chosen by `dice` (`None`: the dice ran out, so time
        /// moves on by a whole timeout).
        fn event(&mut self, dice: Option<u16>) {
            let timeout_ms = self.settings.chunk_timeout.as_millis() as u64;
            let Some(dice) = dice else {
                self.now += self.settings.chunk_timeout;
                return;
            };
            let pick = usize::from(dice / 16);
            match dice % 16 {
                0..=2 => self.now += MS * (pick as u64 % (2 * timeout_ms + 1)) as u32,
                3 => {
                    if let Some((peer, behaviour)) = self.late.pop() {
                        self.behaviours.insert(peer, behaviour);
                        assert!(self.scheduler.provider_added(peer));
                    }
                }
                4 => {
                    let peers: Vec<u32> = self.behaviours.keys().copied().collect();
                    if let Some(peer) = peers.get(pick % peers.len().max(1)) {
                        let fresh = !self.dropped.contains(peer);
                        assert_eq!(self.scheduler.provider_dropped(*peer, "disconnected"), fresh);
                        self.dropped.insert(*peer);
                    }
                }
                5 => {
                    // A spurious answer: a peer reports a chunk it was not asked for.
                    let peer = (pick % 8) as u32;
                    let index = pick % (self.scheduler.chunks_total() + 1);
                    let asked = self.live().any(|request| request.peer == peer && request.index == index);
                    if !asked {
                        let before = self.scheduler.chunks_done();
                        assert_eq!(self.scheduler.chunk_arrived(peer, index, self.now), None);
                        assert!(!self.scheduler.chunk_failed(peer, index, ChunkFailure::Invalid, self.now));
                        assert_eq!(self.scheduler.chunks_done(), before);
                    }
                }
                _ => {
                    if self.sent.is_empty() {
                        return;
                    }
                    let request = self.sent[pick % self.sent.len()];
                    let answer = match (self.behaviours[&request.peer], pick % 3) {
                        (Behaviour::Good, _) | (Behaviour::Flaky, 0) => Ok(()),
                        (Behaviour::Bad, _) | (Behaviour::Flaky, 1) => Err(ChunkFailure::Invalid),
                        (Behaviour::Refusing, _) => Err(ChunkFailure::Refused),
                        (Behaviour::Erroring, _) => Err(ChunkFailure::Error("reset".into())),
                        (Behaviour::Stalling | Behaviour::Flaky, _) => {
                            // No answer, unless the driver's own timer (shorter
                            // than the scheduler's) gives up.
                            if request.at + self.settings.chunk_timeout / 2 > self.now {
                                return;
                            }
                            Err(ChunkFailure::Timeout)
                        }
                    };
                    self.sent.retain(|other| !(other.peer == request.peer && other.index == request.index));
                    let live = self.is_live(&request);
                    match answer {
                        Ok(()) => {
                            let counted = self.scheduler.chunk_arrived(request.peer, request.index, self.now);
                            assert_eq!(counted.is_some(), live, "only answers to live requests count");
                            if counted.is_some() {
                                self.written.push(request.index);
                            }
                        }
                        Err(failure) => {
                            let kind = match failure {
                                ChunkFailure::Invalid => DropKind::Invalid,
                                ChunkFailure::Timeout => DropKind::Timeout,
                                _ => DropKind::Failure,
                            };
                            let counted = self.scheduler.chunk_failed(request.peer, request.index, failure, self.now);
                            assert_eq!(counted, live, "only failures of live requests count");
                            if counted {
                                self.dropped.insert(request.peer);
                                self.expected_drops.insert(request.peer, kind);
                            }
                        }
                    }
                }
            }
        }

        /// Calls `next` and checks what it says.
        fn advance(&mut self) {
            let actions = self.scheduler.next(self.now);
            if let Some(outcome) = &self.outcome {
                assert_eq!(actions.as_slice(), std::slice::from_ref(outcome), "the outcome stays");
                return;
            }
            for (position, action) in actions.iter().enumerate() {
                match action {
                    Action::Request { peer, index } => {
                        assert!(self.behaviours.contains_key(peer), "{peer} is a provider");
                        assert!(!self.dropped.contains(peer), "dropped provider {peer} asked again");
                        assert!(!self.scheduler.is_verified(*index) && !self.written.contains(index));
                        assert!(self.live().all(|request| request.index != *index), "chunk {index} asked twice");
                        self.sent.push(Sent { peer: *peer, index: *index, at: self.now });
                    }
                    Action::Drop { peer, reason, kind } => {
                        assert!(self.reported_drops.insert(*peer), "{peer} dropped twice");
                        assert_eq!(reason.kind(), Some(*kind));
                        match self.expected_drops.remove(peer) {
                            Some(expected) => assert_eq!(*kind, expected),
                            None => {
                                assert_eq!(*kind, DropKind::Timeout);
                                let timeout = self.settings.chunk_timeout;
                                let stalled = self
                                    .live()
                                    .any(|request| request.peer == *peer && request.at + timeout <= self.now);
                                assert!(stalled, "{peer} dropped without a stalled request");
                                self.dropped.insert(*peer);
                            }
                        }
                    }
                    Action::Done | Action::Failed(_) => {
                        assert_eq!(position, actions.len() - 1, "the outcome comes last");
                        self.outcome = Some(action.clone());
                    }
                }
            }
            assert!(self.expected_drops.is_empty(), "drops reported by the driver are handed out");
            let mut peers: BTreeMap<u32, usize> = BTreeMap::new();
            for request in self.live() {
                *peers.entry(request.peer).or_default() += 1;
            }
            assert!(peers.len() <= self.settings.max_providers.max(1), "too many providers at once");
            assert!(peers.values().all(|count| *count <= self.settings.requests_per_provider.max(1)));
            assert_eq!(self.scheduler.in_flight(), self.live().count());
            let resumed = self.scheduler.chunks_resumed();
            assert_eq!(self.scheduler.chunks_done(), resumed + self.written.len());
            match &self.outcome {
                Some(Action::Done) => {
                    let mut written = self.written.clone();
                    written.sort_unstable();
                    assert_eq!(written, self.missing_at_start, "every missing chunk is written once");
                    assert_eq!(self.scheduler.chunks_done(), self.scheduler.chunks_total());
                }
                Some(Action::Failed(failure)) => {
                    let left: Vec<&u32> = self.behaviours.keys().filter(|peer| !self.dropped.contains(peer)).collect();
                    assert!(left.is_empty(), "failed with providers {left:?} left");
                    assert!(failure.missing > 0);
                    assert_eq!(failure.missing, self.missing_at_start.len() - self.written.len());
                    let listed: Vec<u32> = failure.providers.iter().map(|(peer, _)| *peer).collect();
                    assert_eq!(&listed[..self.scheduler.tried().len()], self.scheduler.tried());
                    assert_eq!(listed.len(), self.behaviours.len());
                }
                _ => {
                    assert!(self.live().count() > 0, "work left and nothing in flight");
                    let timeout = self.settings.chunk_timeout;
                    let earliest = self.live().map(|request| request.at + timeout).min();
                    assert_eq!(self.scheduler.deadline(), earliest);
                    assert!(earliest.is_some_and(|deadline| deadline > self.now));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn simulated_transfers_keep_every_rule(
            chunks in 0usize..12,
            resumed in proptest::collection::vec(any::<bool>(), 12),
            providers in proptest::collection::vec(behaviour(), 0..6),
            late in proptest::collection::vec(behaviour(), 0..3),
            max_providers in 0usize..4,
            requests_per_provider in 0usize..4,
            timeout_ms in 1u32..40,
            dice in proptest::collection::vec(any::<u16>(), 0..300),
        ) {
            let settings = settings(max_providers, requests_per_provider, MS * timeout_ms);
            let verified: Vec<usize> = (0..chunks).filter(|index| resumed[*index]).collect();
            let peers = 0..providers.len() as u32;
            let scheduler = ChunkScheduler::new(chunks, verified.clone(), peers.clone(), settings.clone());
            let late: Vec<(u32, Behaviour)> =
                late.into_iter().enumerate().map(|(offset, behaviour)| (100 + offset as u32, behaviour)).collect();
            let (initial_providers, total_providers) = (providers.len(), providers.len() + late.len());
            let mut simulation = Simulation {
                scheduler,
                settings,
                behaviours: peers.zip(providers).collect(),
                late,
                dropped: HashSet::new(),
                expected_drops: BTreeMap::new(),
                reported_drops: HashSet::new(),
                sent: Vec::new(),
                missing_at_start: (0..chunks).filter(|index| !resumed[*index]).collect(),
                written: Vec::new(),
                now: Instant::now(),
                outcome: None,
            };
            simulation.advance();
            // Once the dice run out, every step moves time by a whole timeout,
            // which drops every provider in flight: so a few more steps at most.
            let bound = dice.len() + total_providers + 2;
            let mut steps = 0;
            while simulation.outcome.is_none() {
                prop_assert!(steps < bound, "no outcome after {steps} steps");
                simulation.event(dice.get(steps).copied());
                simulation.advance();
                steps += 1;
            }
            simulation.advance();
            if chunks == verified.len() || initial_providers == 0 {
                prop_assert_eq!(steps, 0, "decided at once");
            }
        }
    }
}
