//! Clock parameters a writer reads while another party updates them: the conversion of a raw
//! counter to nanoseconds ([`ClockParams`], defined in [`crate::clock`]) that a host calibrates
//! and hands to a hypervisor (`UPDATE_CLOCK`), read by the hypervisor's writers on every event.
//!
//! The parameters live in two banks behind a sequence counter (a seqcount "latch"): an update
//! writes one bank while readers use the other, then switches them, so a writer stamping an
//! event never waits and never sees half of an update:
//!
//! ```text
//!   update (one at a time)                      read (any number, any time)
//!   seq += 1    (release) -> readers use bank 1  s = seq (acquire)
//!   write bank 0                                 read bank[s & 1]
//!   seq += 1    (release) -> readers use bank 0  fence(acquire)
//!   write bank 1                                 seq == s ? done : retry
//! ```
//!
//! A read retries only if an update ran across it; updates come every few hundred milliseconds.

pub use crate::clock::ClockParams;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence, spin_hint};

#[derive(Debug)]
struct Bank {
    mult: AtomicU32,
    shift: AtomicU32,
    epoch_ns: AtomicU64,
    epoch_raw: AtomicU64,
}

impl Bank {
    fn new(p: ClockParams) -> Self {
        Self {
            mult: AtomicU32::new(p.mult),
            shift: AtomicU32::new(p.shift),
            epoch_ns: AtomicU64::new(p.epoch_ns),
            epoch_raw: AtomicU64::new(p.epoch_raw),
        }
    }

    fn store(&self, p: ClockParams) {
        // Ordering: Relaxed; published by the Release increment of `seq` that follows.
        self.mult.store(p.mult, Ordering::Relaxed);
        self.shift.store(p.shift, Ordering::Relaxed);
        self.epoch_ns.store(p.epoch_ns, Ordering::Relaxed);
        self.epoch_raw.store(p.epoch_raw, Ordering::Relaxed);
    }

    fn load(&self) -> ClockParams {
        // Ordering: Relaxed; validated by the reader's fence and second `seq` load.
        ClockParams {
            mult: self.mult.load(Ordering::Relaxed),
            shift: self.shift.load(Ordering::Relaxed),
            epoch_ns: self.epoch_ns.load(Ordering::Relaxed),
            epoch_raw: self.epoch_raw.load(Ordering::Relaxed),
        }
    }
}

/// Clock parameters in two banks behind their latch (see the module documentation).
#[derive(Debug)]
pub struct ClockLatch {
    seq: AtomicU32,
    banks: [Bank; 2],
    updating: AtomicBool,
}

impl Default for ClockLatch {
    fn default() -> Self {
        Self::new(ClockParams::IDENTITY)
    }
}

impl ClockLatch {
    /// A clock with `params` in both banks.
    pub fn new(params: ClockParams) -> Self {
        Self { seq: AtomicU32::new(0), banks: [Bank::new(params), Bank::new(params)], updating: AtomicBool::new(false) }
    }

    /// Installs new parameters. Only one update runs at a time: a concurrent one is refused
    /// (`false`) rather than waited for.
    pub fn update(&self, params: ClockParams) -> bool {
        // Ordering: Acquire pairs with the Release that ends the previous update, so this one
        // starts from its `seq`.
        if self.updating.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        // Ordering (the latch): each Release increment publishes the bank written before it;
        // the fence after it orders it before the writes to the bank readers just left.
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Release);
        fence(Ordering::Release);
        self.banks[0].store(params);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
        fence(Ordering::Release);
        self.banks[1].store(params);
        // Ordering: Release, see the Acquire above.
        self.updating.store(false, Ordering::Release);
        true
    }

    /// The parameters in force.
    pub fn params(&self) -> ClockParams {
        loop {
            // Ordering: Acquire pairs with the updater's Release increments (the bank it selects
            // is fully written); the Acquire fence pairs with the updater's Release fences: if
            // the bank reads saw a later update's writes, the second `seq` load sees its
            // increment and the read is retried.
            let s = self.seq.load(Ordering::Acquire);
            let p = self.banks[(s & 1) as usize].load();
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s {
                return p;
            }
            spin_hint();
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer reading the clock while the host updates it always sees one whole parameter set.
    #[test]
    #[cfg_attr(miri, ignore = "a timed race; the loom model covers the latch exhaustively")]
    fn readers_never_see_a_half_update() {
        let clock = Arc::new(ClockLatch::new(ClockParams { mult: 1, shift: 0, epoch_ns: 0, epoch_raw: 0 }));
        let stop = Arc::new(AtomicBool::new(false));
        let updater = {
            let (clock, stop) = (clock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    // Every field of set i is a function of i: a mix of two sets is detectable.
                    assert!(clock.update(ClockParams {
                        mult: i as u32,
                        shift: (i % 7) as u32,
                        epoch_ns: i * 3,
                        epoch_raw: i * 5
                    }));
                    i += 1;
                }
                i
            })
        };
        // Read until many different parameter sets went by, however the two threads get scheduled.
        let (mut seen, mut last) = (0u32, 0u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen < 1_000 && std::time::Instant::now() < deadline {
            let p = clock.params();
            let i = u64::from(p.mult);
            if i > 0 && !(i == 1 && p.epoch_ns == 0) {
                assert_eq!((p.shift, p.epoch_ns, p.epoch_raw), ((i % 7) as u32, i * 3, i * 5), "torn: {p:?}");
                if i != last {
                    seen += 1;
                    last = i;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let updates = updater.join().unwrap();
        assert!(seen >= 1_000, "the race really ran: {seen} parameter sets seen over {updates} updates");
    }

    #[test]
    fn a_concurrent_update_is_refused_not_waited_for() {
        let clock = ClockLatch::default();
        clock.updating.store(true, Ordering::Relaxed);
        assert!(!clock.update(ClockParams::IDENTITY));
        clock.updating.store(false, Ordering::Relaxed);
        assert!(clock.update(ClockParams { mult: 2, ..ClockParams::IDENTITY }));
        assert_eq!(clock.params().mult, 2);
    }
}
