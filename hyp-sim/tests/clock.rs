//! The trace clock's bank switch under a concurrent writer: the host keeps installing new
//! parameters through UPDATE_CLOCK while the hypervisor's writer reads the clock.
//!
//! The host alternates two parameter sets that convert identically but whose epochs lie 2^40
//! counter ticks apart: a read mixing the epoch of one set with the rest of the other would be
//! off by hours, so every reading the writer takes, bracketed by CLOCK_MONOTONIC, proves it saw
//! one whole set.

use hyp_sim::host::clock::{ClockSync, monotonic_ns};
use hyp_sim::hyp::clock::raw_counter;
use hyp_sim::hyp::{Hyp, call};
use hyp_sim::platform::PlatformBuilder;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[test]
fn the_writer_never_sees_half_a_clock_update() {
    let platform = Arc::new(PlatformBuilder::new(1).build().unwrap());
    let hyp = Arc::new(Hyp::boot(platform, 8));
    let base = ClockSync::start(Duration::from_millis(30)).params();
    // The same conversion with its epoch moved 2^40 ticks later.
    let shift_ticks = 1u64 << 40;
    let moved_ns = ((u128::from(shift_ticks) * u128::from(base.mult)) >> base.shift) as u64;
    let sets = [
        base,
        hyp_sim::hyp::clock::ClockParams {
            epoch_raw: base.epoch_raw + shift_ticks,
            epoch_ns: base.epoch_ns + moved_ns,
            ..base
        },
    ];
    let args = |p: &hyp_sim::hyp::clock::ClockParams| [u64::from(p.mult), u64::from(p.shift), p.epoch_ns, p.epoch_raw];
    assert_eq!(hyp.hvc(call::UPDATE_CLOCK, args(&sets[0])).status, 0);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let updater = {
        let (hyp, stop, done) = (hyp.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut updates = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(hyp.hvc(call::UPDATE_CLOCK, args(&sets[(updates % 2) as usize])).status, 0);
                updates += 1;
                done.store(updates, Ordering::Relaxed);
            }
            updates
        })
    };
    // Read until the host really switched banks many times, however the threads get scheduled.
    let (mut worst, mut readings) = (0i64, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (readings < 100_000 || done.load(Ordering::Relaxed) < 1_000) && std::time::Instant::now() < deadline {
        readings += 1;
        let before = monotonic_ns();
        let now = hyp.clock().now();
        let after = monotonic_ns();
        // Rounding of the two sets and calibration error stay far below a millisecond; a torn
        // read would be off by about 2^40 ticks.
        let err = if now < before { before - now } else { now.saturating_sub(after) } as i64;
        worst = worst.max(err);
        assert!(err < 1_000_000, "reading {now} outside [{before}, {after}] by {err} ns");
    }
    stop.store(true, Ordering::Relaxed);
    let updates = updater.join().unwrap();
    assert!(updates >= 1_000, "the clock really was updated concurrently ({updates} updates)");
    println!("{updates} updates during {readings} readings; worst error {worst} ns; raw now {}", raw_counter());
}
