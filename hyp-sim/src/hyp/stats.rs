//! What the `STATS` hypercall reports: a CPU's counters ([`ring_core::Stats`]) and the events
//! the hypervisor discarded, more than three result registers hold, so in groups of three.
//!
//! [`GROUPS`] is the one definition of which counter travels in which register of which group:
//! the hypervisor answers `STATS(cpu, group)` with [`HypStats::group`], the host reassembles the
//! groups with [`HypStats::gather`].

use ring_core::Stats;

/// A CPU's counters as the hypervisor reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HypStats {
    /// The buffer's counters, exact.
    pub stats: Stats,
    /// Events the hypervisor never handed to the CPU's writer: skipped while its buffer was
    /// being reset or torn down, or while another thread held its writer (docs/abi.md §2.4).
    pub discarded: u64,
}

/// One result register of `STATS`: the counter it carries.
pub type Register = fn(&mut HypStats) -> &mut u64;

/// The `STATS` groups: group `g` returns the counters of `GROUPS[g]` in its three result
/// registers, in order. A group past the end is a bad argument.
pub const GROUPS: [[Register; 3]; 3] = [
    [|h| &mut h.stats.entries, |h| &mut h.stats.overrun, |h| &mut h.stats.dropped],
    [|h| &mut h.stats.read, |h| &mut h.stats.pages_lost, |h| &mut h.stats.pages_touched],
    [|h| &mut h.stats.swaps, |h| &mut h.stats.full_pages, |h| &mut h.discarded],
];

impl HypStats {
    /// The result registers of `STATS` group `group`, or `None` if there is no such group.
    pub fn group(mut self, group: u64) -> Option<[u64; 3]> {
        let registers = GROUPS.get(usize::try_from(group).ok()?)?;
        Some(registers.map(|register| *register(&mut self)))
    }

    /// The counters from every group's result registers, as `fetch(group)` returns them (a
    /// `STATS` hypercall each), or its first error.
    pub fn gather<E>(mut fetch: impl FnMut(u64) -> Result<[u64; 3], E>) -> Result<Self, E> {
        let mut stats = Self::default();
        for (group, registers) in GROUPS.iter().enumerate() {
            for (register, value) in registers.iter().zip(fetch(group as u64)?) {
                *register(&mut stats) = value;
            }
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_groups_carry_every_reported_counter_once_and_reassemble() {
        // Register r of group g carries 3g + r + 1.
        let sent = HypStats::gather(|g| Ok::<_, ()>([1, 2, 3].map(|r| 3 * g + r))).unwrap();
        let HypStats { stats: s, discarded } = sent;
        // The order in which hyp-sim's hypercall ABI hands out the counters, which a host relies on.
        assert_eq!((s.entries, s.overrun, s.dropped), (1, 2, 3));
        assert_eq!((s.read, s.pages_lost, s.pages_touched), (4, 5, 6));
        assert_eq!((s.swaps, s.full_pages, discarded), (7, 8, 9));
        assert_eq!([0, 1, 2].map(|g| sent.group(g)), [Some([1, 2, 3]), Some([4, 5, 6]), Some([7, 8, 9])]);
        assert_eq!(sent.group(3), None);
        assert_eq!(sent.group(u64::MAX), None);
        assert_eq!(HypStats::gather(|g| if g == 1 { Err(g) } else { Ok([0; 3]) }), Err(1));
    }
}
