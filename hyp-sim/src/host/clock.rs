//! The host's side of the trace clock: calibrating the raw cycle counter against
//! `CLOCK_MONOTONIC` into `mult/shift/epoch` for the hypervisor, and measuring how far the
//! hypervisor's conversion has drifted by the time of each recalibration.
//!
//! The first calibration uses a short window; every recalibration measures the counter's rate
//! over everything since the start (a longer baseline is a more exact rate) and moves the epoch to
//! now, so the conversion never drifts far between updates.

use crate::hyp::clock::{ClockParams, raw_counter};
use std::time::Duration;

/// A simultaneous reading of both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Raw counter.
    pub raw: u64,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub ns: u64,
}

/// Nanoseconds of the clock `id`.
fn clock_ns(id: rustix::time::ClockId) -> u64 {
    let ts = rustix::time::clock_gettime(id);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(rustix::time::ClockId::Monotonic)
}

/// A reading of `inner` between two of `outer`, dated at their midpoint: the tightest of a few
/// tries, so the two clocks' readings are as nearly simultaneous as this thread can make them.
fn read_between<T>(outer: impl Fn() -> u64, inner: impl Fn() -> T) -> (u64, T) {
    let mut best: Option<(u64, u64, T)> = None;
    for _ in 0..8 {
        let before = outer();
        let value = inner();
        let width = outer().saturating_sub(before);
        if best.as_ref().is_none_or(|(w, ..)| width < *w) {
            best = Some((width, before + width / 2, value));
        }
    }
    let (_, at, value) = best.expect("eight tries");
    (at, value)
}

/// How far `CLOCK_BOOTTIME` is ahead of `CLOCK_MONOTONIC` (the time the host spent
/// suspended).
pub fn boot_offset_ns() -> u64 {
    let (boot, mono) = read_between(|| clock_ns(rustix::time::ClockId::Boottime), monotonic_ns);
    boot.saturating_sub(mono)
}

/// Reads both clocks at once (the counter between two monotonic reads).
pub fn sample() -> Sample {
    let (ns, raw) = read_between(monotonic_ns, raw_counter);
    Sample { raw, ns }
}

/// The conversion that maps `a` and `b` onto each other, with its epoch at `b`: the largest
/// shift (at most 32) whose multiplier fits in 32 bits, for the finest resolution.
pub fn params_between(a: Sample, b: Sample) -> ClockParams {
    let dr = u128::from(b.raw.saturating_sub(a.raw)).max(1);
    let dn = u128::from(b.ns.saturating_sub(a.ns));
    let mut shift = 32u32;
    loop {
        let mult = (dn << shift) / dr;
        if mult <= u128::from(u32::MAX) || shift == 0 {
            let mult = u32::try_from(mult).unwrap_or(u32::MAX).max(1);
            return ClockParams { mult, shift, epoch_ns: b.ns, epoch_raw: b.raw };
        }
        shift -= 1;
    }
}

/// Keeps the hypervisor's clock on the host's.
#[derive(Debug)]
pub struct ClockSync {
    first: Sample,
    current: ClockParams,
    /// Largest drift seen at a recalibration, in ns (signed: hypervisor minus host).
    max_drift: i64,
    /// Drift at the last recalibration.
    last_drift: i64,
    /// Recalibrations done.
    updates: u64,
}

/// How far the hypervisor's clock may drift before the host warns.
pub const DRIFT_WARNING_NS: i64 = 1_000;

impl ClockSync {
    /// Calibrates over `window`.
    pub fn start(window: Duration) -> Self {
        let first = sample();
        std::thread::sleep(window);
        let current = params_between(first, sample());
        Self { first, current, max_drift: 0, last_drift: 0, updates: 0 }
    }

    /// The parameters in force.
    pub fn params(&self) -> ClockParams {
        self.current
    }

    /// Measures the drift of the parameters in force and computes new ones (to hand to the
    /// hypervisor). Returns them with the drift, in ns.
    pub fn recalibrate(&mut self) -> (ClockParams, i64) {
        let now = sample();
        let drift = self.current.convert(now.raw) as i64 - now.ns as i64;
        self.last_drift = drift;
        if drift.abs() > self.max_drift.abs() {
            self.max_drift = drift;
        }
        self.updates += 1;
        self.current = params_between(self.first, now);
        (self.current, drift)
    }

    /// (largest drift, last drift, recalibrations), drifts in ns.
    pub fn report(&self) -> (i64, i64, u64) {
        (self.max_drift, self.last_drift, self.updates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_time_moved_by_the_boot_offset_is_boot_time() {
        let boot_ns = || clock_ns(rustix::time::ClockId::Boottime);
        let offset = boot_offset_ns();
        let before = boot_ns();
        let moved = monotonic_ns() + offset;
        let after = boot_ns();
        // Within the readings' own spread, and a scheduling hiccup's worth.
        assert!(before.saturating_sub(100_000) <= moved && moved <= after + 100_000, "{before} {moved} {after}");
    }

    #[test]
    fn params_map_the_two_samples_onto_each_other() {
        let a = Sample { raw: 1_000_000, ns: 5_000_000_000 };
        let b = Sample { raw: 3_001_000_000, ns: 6_000_000_000 }; // 3 GHz
        let p = params_between(a, b);
        assert_eq!(p.convert(b.raw), b.ns);
        let back = p.convert(a.raw) as i64 - a.ns as i64;
        assert!(back.abs() <= 1, "{back}");
        assert!(p.shift == 32 && p.mult > 0, "{p:?}");
        let slow = params_between(Sample { raw: 0, ns: 0 }, Sample { raw: 1000, ns: 1_000_000_000 });
        assert_eq!(slow.convert(1000), 1_000_000_000, "1 kHz counter: large mult, smaller shift");
        let stuck = params_between(b, b);
        assert_eq!(stuck.convert(b.raw), b.ns, "no progress does not divide by zero");
    }

    /// The conversion stays within a few microseconds of CLOCK_MONOTONIC (the bound on the
    /// clock's error), and recalibration reports that drift.
    #[test]
    fn the_converted_counter_tracks_the_monotonic_clock() {
        let mut sync = ClockSync::start(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(150));
        let (params, drift) = sync.recalibrate();
        assert!(drift.abs() < 20_000, "drift after 150 ms: {drift} ns");
        let s = sample();
        let err = params.convert(s.raw) as i64 - s.ns as i64;
        assert!(err.abs() < 5_000, "error right after recalibrating: {err} ns");
        assert_eq!(sync.report().2, 1);
    }
}
