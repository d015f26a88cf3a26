//! Samples and their summaries.

use std::time::Duration;

use serde::Serialize;

/// Latency samples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples(Vec<f64>);

/// p50/p95/p99 and mean of a sample set, in the unit of the samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) p50: f64,
    pub(crate) p95: f64,
    pub(crate) p99: f64,
    pub(crate) mean: f64,
}

impl Samples {
    pub(crate) fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    pub(crate) fn push_duration_ms(&mut self, elapsed: Duration) {
        self.push(elapsed.as_secs_f64() * 1e3);
    }

    /// The largest sample (NaN when there is none).
    pub(crate) fn max(&self) -> f64 {
        self.0.iter().copied().reduce(f64::max).unwrap_or(f64::NAN)
    }

    pub(crate) fn summary(&self) -> Summary {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> f64 {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let rank = ((sorted.len() as f64) * q).ceil() as usize;
            sorted[rank.clamp(1, sorted.len()) - 1]
        };
        let mean = if sorted.is_empty() { f64::NAN } else { sorted.iter().sum::<f64>() / sorted.len() as f64 };
        Summary { count: sorted.len(), p50: quantile(0.50), p95: quantile(0.95), p99: quantile(0.99), mean }
    }
}

/// Peak resident set size of this process so far, in KiB (Linux `VmHWM`).
pub(crate) fn peak_rss_kib() -> u64 {
    read_status_kib("VmHWM:")
}

/// Current resident set size, in KiB (Linux `VmRSS`).
pub(crate) fn rss_kib() -> u64 {
    read_status_kib("VmRSS:")
}

fn read_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|status| status_kib(&status, field)).unwrap_or(0)
}

/// A `field` (such as `VmRSS:`) of a `/proc/<pid>/status` text, in KiB.
pub(crate) fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
}

#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let value = self.next().to_le_bytes();
            chunk.copy_from_slice(&value[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut samples = Samples::default();
        for value in 1..=100 {
            samples.push(f64::from(value));
        }
        let summary = samples.summary();
        assert_eq!((summary.p50, summary.p95, summary.p99), (50.0, 95.0, 99.0));
    }

    #[test]
    fn the_generator_is_deterministic() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!((0..5).map(|_| a.next()).collect::<Vec<_>>(), (0..5).map(|_| b.next()).collect::<Vec<_>>());
    }
}
