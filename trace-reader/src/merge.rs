//! Ordering events of several CPUs by time while they keep arriving.
//!
//! Each round the reader drains every CPU. A CPU that delivered events this round may have more
//! still to come, newer than its last one; a CPU that delivered nothing was caught up. So the
//! events of a round are released in time order up to the oldest "last event" among the CPUs
//! that delivered, and the rest wait for the next round; at the end everything is released.
//! Events a caught-up CPU commits just after it was drained can still come out slightly late:
//! live ordering across CPUs is exact up to that window. A CPU's own events always keep their
//! order, and a loss stays right before the event it was reported with.

use ring_core::ClockParams;
use ring_mmap::{Lost, Record};
use std::collections::VecDeque;
use std::ops::Range;

/// An event or a loss of one CPU, in nanoseconds: what is merged across CPUs and printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergedItem {
    /// An event: its CPU, time in nanoseconds and payload.
    Event {
        /// CPU.
        cpu: u32,
        /// Nanoseconds.
        ns: u64,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Events lost on a CPU, before its next event.
    Lost {
        /// CPU.
        cpu: u32,
        /// How many.
        lost: Lost,
    },
}

impl MergedItem {
    /// A record CPU `cpu` delivered, its timestamp converted to nanoseconds by `clock`.
    pub fn of_record(cpu: u32, record: Record<'_>, clock: &ClockParams) -> Self {
        match record {
            Record::Lost(lost) => MergedItem::Lost { cpu, lost },
            Record::Event(e) => MergedItem::Event { cpu, ns: clock.convert(e.timestamp), payload: e.payload.to_vec() },
        }
    }
}

/// The merger's state: a queue per CPU.
#[derive(Debug)]
pub struct Merger {
    queues: Vec<VecDeque<MergedItem>>,
    /// Whether each CPU delivered events this round, and the time of its last one.
    round: Vec<Option<u64>>,
}

impl Merger {
    /// A merger for CPUs indexed `0..nr`.
    pub fn new(nr: usize) -> Self {
        Self { queues: vec![VecDeque::new(); nr], round: vec![None; nr] }
    }

    /// Adds an item of the CPU at index `cpu_index` (in that CPU's own order).
    pub fn push(&mut self, cpu_index: usize, item: MergedItem) {
        if let MergedItem::Event { ns, .. } = item {
            self.round[cpu_index] = Some(ns);
        }
        self.queues[cpu_index].push_back(item);
    }

    /// Ends a round: hands out, in time order, everything no CPU can still precede. With
    /// `all`, hands out everything (the sources are finished).
    pub fn release(&mut self, all: bool, mut out: impl FnMut(MergedItem)) {
        let horizon = if all { u64::MAX } else { self.round.iter().flatten().copied().min().unwrap_or(u64::MAX) };
        self.release_upto(horizon, |_, item| out(item));
        self.round.iter_mut().for_each(|r| *r = None);
    }

    /// Ends a round of the queues `queues` alone (the CPUs of one of several sources, read in a
    /// pass of their own that began after the shared clock read `caught_up`): the time up to
    /// which that source has delivered everything. A CPU that delivered events may have more
    /// after its last one; every other was caught up when the pass began.
    pub fn source_horizon(&mut self, queues: Range<usize>, caught_up: u64) -> u64 {
        let delivered = self.round[queues.clone()].iter().flatten().copied().min();
        self.round[queues].iter_mut().for_each(|r| *r = None);
        delivered.map_or(caught_up, |last| last.min(caught_up))
    }

    /// Hands out, in time order, every item up to `horizon`, each with the index of its queue.
    pub fn release_upto(&mut self, horizon: u64, mut out: impl FnMut(usize, MergedItem)) {
        loop {
            // The CPU whose front item is oldest; losses go out as soon as they reach the front.
            let mut best: Option<(usize, u64)> = None;
            for (cpu_index, q) in self.queues.iter().enumerate() {
                let key = match q.front() {
                    Some(MergedItem::Lost { .. }) => 0,
                    Some(MergedItem::Event { ns, .. }) => *ns,
                    None => continue,
                };
                if best.is_none_or(|(_, k)| key < k) {
                    best = Some((cpu_index, key));
                }
            }
            match best {
                Some((cpu_index, key)) if key <= horizon => {
                    out(cpu_index, self.queues[cpu_index].pop_front().expect("non-empty"))
                }
                _ => break,
            }
        }
    }

    /// True if nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cpu: u32, ns: u64) -> MergedItem {
        MergedItem::Event { cpu, ns, payload: Vec::new() }
    }

    fn times(items: &[MergedItem]) -> Vec<(u32, u64)> {
        items
            .iter()
            .map(|i| match i {
                MergedItem::Event { cpu, ns, .. } => (*cpu, *ns),
                MergedItem::Lost { cpu, .. } => (*cpu, 0),
            })
            .collect()
    }

    #[test]
    fn events_come_out_in_time_order_held_back_until_safe() {
        let mut m = Merger::new(2);
        m.push(0, ev(0, 10));
        m.push(0, ev(0, 30));
        m.push(1, ev(1, 20));
        let mut out = Vec::new();
        m.release(false, |i| out.push(i));
        // CPU 1 may still deliver events after 20: 30 waits.
        assert_eq!(times(&out), [(0, 10), (1, 20)]);
        m.push(1, ev(1, 25));
        m.release(false, |i| out.push(i));
        assert_eq!(times(&out[2..]), [(1, 25)], "30 still waits for CPU 1 (it delivered up to 25)");
        m.release(false, |i| out.push(i));
        assert_eq!(times(&out[3..]), [(0, 30)], "nobody delivered: 30 goes");
        assert!(m.is_empty());
    }

    #[test]
    fn sources_read_apart_release_up_to_the_one_that_is_behind() {
        // Queues 0-1: source A's CPUs; queue 2: source B's.
        let mut m = Merger::new(3);
        let mut out = Vec::new();
        m.push(0, ev(0, 10));
        m.push(0, ev(0, 40));
        m.push(1, ev(1, 20));
        let a = m.source_horizon(0..2, 100);
        assert_eq!(a, 20, "A's CPU 1 delivered up to 20 and may have more");
        m.push(2, ev(0, 15));
        let b = m.source_horizon(2..3, 30);
        assert_eq!(b, 15, "B delivered up to 15 and may have more");
        m.release_upto(a.min(b), |queue, i| out.push((queue, i)));
        assert_eq!(
            out.iter().map(|(q, i)| (*q, times(std::slice::from_ref(i))[0].1)).collect::<Vec<_>>(),
            [(0, 10), (2, 15)]
        );
        let b = m.source_horizon(2..3, 50);
        assert_eq!(b, 50, "B delivered nothing: it was caught up when its pass began");
        out.clear();
        m.release_upto(a.min(b), |queue, i| out.push((queue, i)));
        assert_eq!(out.len(), 1, "20 goes, 40 waits for A: {out:?}");
        assert_eq!(out[0].0, 1);
    }

    #[test]
    fn losses_stay_before_their_event_and_everything_comes_out_at_the_end() {
        let mut m = Merger::new(2);
        m.push(1, ev(1, 5));
        m.push(0, MergedItem::Lost { cpu: 0, lost: Lost::Count(3) });
        m.push(0, ev(0, 7));
        m.push(0, ev(0, 9));
        m.push(1, ev(1, 100));
        let mut out = Vec::new();
        m.release(true, |i| out.push(i));
        assert_eq!(times(&out), [(0, 0), (1, 5), (0, 7), (0, 9), (1, 100)]);
    }
}
