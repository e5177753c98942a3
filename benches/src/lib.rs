//! Baselines the benchmarks measure hyptrace against, in the same run on the same machine.
//!
//! [`Floor`] is the least work any tracer must do per event: read the clock and store the
//! timestamp and a 16-byte payload into memory. hyptrace's writer is reported as a ratio to it.

use ring_core::Clock;

/// Timestamp plus 16-byte payload slots, stored round-robin: the cost floor of recording an event.
pub struct Floor<C: Clock> {
    slots: Vec<[u64; 3]>,
    next: usize,
    clock: C,
}

impl<C: Clock> Floor<C> {
    /// A floor writing into `slots` slots (a power of two) stamped by `clock`.
    pub fn new(slots: usize, clock: C) -> Self {
        assert!(slots.is_power_of_two());
        Self { slots: vec![[0; 3]; slots], next: 0, clock }
    }

    /// Records one event.
    #[inline]
    pub fn record(&mut self, payload: &[u8; 16]) {
        let ts = self.clock.now();
        let lo = u64::from_ne_bytes(payload[..8].try_into().expect("8 bytes"));
        let hi = u64::from_ne_bytes(payload[8..].try_into().expect("8 bytes"));
        let mask = self.slots.len() - 1;
        self.slots[self.next & mask] = [ts, lo, hi];
        self.next = self.next.wrapping_add(1);
    }
}

/// A 16-byte payload whose content changes with `i`, so the work cannot be hoisted.
#[inline]
pub fn payload16(i: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&i.to_ne_bytes());
    p[8..].copy_from_slice(&(!i).to_ne_bytes());
    p
}
