//! The floor: the least work any tracer must do per event — read the clock, store the timestamp
//! and the payload into memory. hyptrace's writer is reported as a ratio to it.

use crate::payload::Record;
use ring_core::Clock;

/// Slots of [`Record`]s (timestamp plus `N`-byte payload), stored round-robin: the cost floor of recording an
/// event.
pub struct Floor<C: Clock, const N: usize> {
    slots: Vec<Record<N>>,
    next: usize,
    clock: C,
}

impl<C: Clock, const N: usize> Floor<C, N> {
    /// A floor storing into about `bytes` bytes of slots (a power-of-two count of them, so the
    /// loop wraps with a mask) stamped by `clock`.
    pub fn new(bytes: usize, clock: C) -> Self {
        let count = (bytes / size_of::<Record<N>>()).next_power_of_two();
        Self { slots: vec![(0, [0; N]); count], next: 0, clock }
    }

    /// Records one event.
    #[inline]
    pub fn record(&mut self, payload: &[u8; N]) {
        let timestamp = self.clock.now();
        let mask = self.slots.len() - 1;
        self.slots[self.next & mask] = (timestamp, *payload);
        self.next = self.next.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring_core::CounterClock;

    #[test]
    fn the_floor_wraps_round_its_slots() {
        let mut floor = Floor::<_, 16>::new(4 * 24, CounterClock::new(0));
        assert_eq!(floor.slots.len(), 4);
        for i in 0..6 {
            floor.record(&[i; 16]);
        }
        assert_eq!(floor.slots[1], (5, [5; 16]));
    }
}
