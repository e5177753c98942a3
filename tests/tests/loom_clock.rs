//! Loom models of the clock latch ([`ring_core::clock_latch`]) a hypervisor's writers read on
//! every event while the host recalibrates: every interleaving (up to `LOOM_MAX_PREEMPTIONS`) of
//! a bank switch against a writer stamping events, and of two updates against each other.
//!
//! Run with `LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" cargo test --release -p hyptrace-tests
//! --test loom_clock`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use ring_core::clock_latch::{ClockLatch, ClockParams};

/// Parameter set `i`: every field a different function of `i`, so a mix of two sets shows.
fn set(i: u32) -> ClockParams {
    ClockParams { mult: i, shift: i + 1, epoch_ns: u64::from(i) * 3, epoch_raw: u64::from(i) * 5 }
}

/// The writer reads the clock twice while the host installs set 2 over set 1: each read is one
/// whole set, and time never goes back to the old set after the new one was seen.
#[test]
fn a_bank_switch_never_shows_a_writer_half_an_update() {
    loom::model(|| {
        let clock = Arc::new(ClockLatch::new(set(1)));
        let host = {
            let clock = clock.clone();
            thread::spawn(move || assert!(clock.update(set(2)), "the only update runs"))
        };
        let writer = {
            let clock = clock.clone();
            thread::spawn(move || [clock.params(), clock.params()])
        };
        host.join().expect("host");
        let [first, second] = writer.join().expect("writer");
        for p in [first, second] {
            assert!(p == set(1) || p == set(2), "torn parameters: {p:?}");
        }
        assert!(!(first == set(2) && second == set(1)), "went back to the old parameters");
        assert_eq!(clock.params(), set(2), "the update is in force once it returned");
    });
}

/// Two updates at once: one may be refused, never both, and whatever is in force is one whole
/// set that an accepted update installed.
#[test]
fn concurrent_updates_never_mix_their_parameters() {
    loom::model(|| {
        let clock = Arc::new(ClockLatch::new(set(1)));
        let updates: Vec<_> = [2, 3]
            .into_iter()
            .map(|i| {
                let clock = clock.clone();
                thread::spawn(move || (i, clock.update(set(i))))
            })
            .collect();
        let accepted: Vec<u32> =
            updates.into_iter().map(|u| u.join().expect("updater")).filter(|&(_, ok)| ok).map(|(i, _)| i).collect();
        assert!(!accepted.is_empty(), "at least one update runs");
        let now = clock.params();
        assert!(accepted.iter().any(|&i| now == set(i)), "{now:?} is not an accepted set {accepted:?}");
    });
}
