//! Pacing a vCPU's exits to a rate: the one schedule both kinds of vCPU thread keep, and that
//! benchmarks pacing another tracer's writers to a rate keep too.

use std::time::{Duration, Instant};

/// The longest a vCPU sleeps before it looks at its stop flag again.
const LONGEST_SLEEP: Duration = Duration::from_millis(50);

/// When a vCPU's exits are due: at a set rate, exit `n` is due `n / rate` seconds after the start
/// and is made as soon as it is due, every exit already due back to back (after a sleep that
/// overran, or time off its CPU); at rate 0, every exit is due at once.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Exits per second; 0: as fast as possible.
    rate: u64,
    start: Instant,
}

impl Pacer {
    /// A schedule of `rate` exits per second (0: as fast as possible) starting now.
    pub fn start(rate: u64) -> Self {
        Self { rate, start: Instant::now() }
    }

    /// How many exits the vCPU may have made once it makes those due now, having made `made`:
    /// at most `made + batch`, so that the caller looks at the clock (and its stop flag) again
    /// after a batch. `None` when none is due yet, after sleeping towards the next one (at most
    /// [`LONGEST_SLEEP`], so the caller looks at its stop flag again soon).
    ///
    /// The clock is read once per call, not per exit: reading it costs as much as recording an
    /// event.
    pub fn due(&self, made: u64, batch: u64) -> Option<u64> {
        if self.rate == 0 {
            return Some(made + batch);
        }
        let rate = u128::from(self.rate);
        // Exits 0..due are due by now.
        let elapsed = self.start.elapsed().as_nanos();
        let due = u64::try_from(elapsed * rate / 1_000_000_000).map_or(u64::MAX, |due| due + 1);
        if due > made {
            return Some(due.min(made + batch));
        }
        let next = u64::try_from(u128::from(made) * 1_000_000_000 / rate).unwrap_or(u64::MAX);
        let next = Duration::from_nanos(next);
        std::thread::sleep(next.saturating_sub(self.start.elapsed()).min(LONGEST_SLEEP));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_due_at_the_rate_in_batches() {
        assert_eq!(Pacer::start(0).due(10, 256), Some(266), "flat out: a whole batch at once");
        let pacer = Pacer::start(1000);
        assert_eq!(pacer.due(0, 256), Some(1), "exit 0 is due at the start");
        let before = Instant::now();
        assert_eq!(pacer.due(5, 256), None, "exit 5 is due 5 ms in");
        assert!(before.elapsed() >= Duration::from_millis(3), "slept towards it");
        std::thread::sleep(Duration::from_millis(20));
        let due = pacer.due(5, 256).unwrap();
        assert!((20..=256).contains(&due), "about 25 due, at most a batch: {due}");
    }
}
