//! The node's clock, injected so that policy (cooldowns, bans, eviction order,
//! transfer stall deadlines) can be driven by tests without waiting for the wall clock.
//!
//! Policy code takes `now` from a [`Clock`] once and passes it down as a value;
//! it never reads the time itself. This is not a timer: tasks that sleep still
//! sleep on tokio's timer (a sleep decides only *when* to look again).

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the node reads the time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Monotonic time, for durations and deadlines.
    fn now(&self) -> Instant;
    /// Unix seconds, for what is persisted (last seen, bans, last use).
    fn unix_now(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]); both of its
/// readings start at the real time of its creation.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    unix_start: u64,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at the current real time.
    pub fn new() -> Self {
        Self { start: Instant::now(), unix_start: SystemClock.unix_now(), offset: Mutex::new(Duration::ZERO) }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn unix_now(&self) -> u64 {
        self.unix_start + self.offset().as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let (then, unix_then) = (clock.now(), clock.unix_now());
        assert_eq!(clock.now(), then);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - then, Duration::from_secs(90));
        assert_eq!(clock.unix_now() - unix_then, 90);
    }
}
