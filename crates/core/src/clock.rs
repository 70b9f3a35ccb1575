//! Wall-clock time in whole unix seconds, behind a trait so that staleness,
//! cooldowns and token times are tested with a frozen clock. Every
//! component of the gateway reads time through this one mechanism.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in whole unix seconds. Injected so that staleness,
/// cooldowns and token times can be tested with a frozen clock.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u64;
}

/// The system clock. A clock set before 1970 reads as 0.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests across the workspace.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now))
    }

    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: u64) {
        // Saturating: a test that advances past u64::MAX gets u64::MAX.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(seconds))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The system clock's unix seconds, for the few places (the command line,
/// log lines) that have no injected [`Clock`].
pub fn unix_now() -> u64 {
    SystemClock.now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_saturates() {
        let clock = ManualClock::new(100);
        assert_eq!(clock.now(), 100);
        clock.advance(5);
        assert_eq!(clock.now(), 105);
        clock.set(u64::MAX - 1);
        clock.advance(10);
        assert_eq!(clock.now(), u64::MAX);
    }

    #[test]
    fn system_clock_reads_a_plausible_unix_time() {
        // 2020-01-01 and 2200-01-01: a sanity window, not an exact value.
        let now = SystemClock.now();
        assert!((1_577_836_800..7_258_118_400).contains(&now), "{now}");
    }
}
