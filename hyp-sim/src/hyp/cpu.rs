//! One CPU's tracing state: a small state machine of atomics shared by the hypervisor's writer and
//! the host's calls, with no lock. Users (the writer, host calls on a loaded buffer) count
//! themselves in `users` and use the buffer while the state is LOADED ([`HypCpu::enter`]); work
//! that replaces or empties the buffer claims the CPU ([`HypCpu::claim`]): it moves the state to
//! BUSY, waits for the users already inside to leave, and holds the CPU's cells alone until its
//! [`ExclusiveCpu`] is released.

use super::HypBuffer;
use ring_core::SubBufLink;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Per-CPU states.
pub(super) mod state {
    /// No buffer.
    pub const EMPTY: u32 = 0;
    /// A buffer, in use.
    pub const LOADED: u32 = 1;
    /// Being set up, torn down or reset: no new users.
    pub const BUSY: u32 = 2;
}

/// One CPU's tracing state.
pub(super) struct HypCpu {
    state: AtomicU32,
    /// Writers and host calls currently using `buffer`.
    users: AtomicU32,
    /// Events the writer skipped because the buffer was being reset or torn down, or another
    /// thread held its writer.
    pub(super) discarded: AtomicU64,
    buffer: UnsafeCell<Option<HypBuffer>>,
    /// The preallocated links while no buffer holds them.
    links: UnsafeCell<Option<Box<[SubBufLink]>>>,
}

// SAFETY: the two UnsafeCells follow one protocol: `buffer` is read (shared) only through a
// `CpuUse`, by a user that counted itself in `users` and then saw `state == LOADED`; it and
// `links` are written only through an `ExclusiveCpu`, by the one caller that moved `state` to BUSY
// (`claim`: by a compare-and-swap from LOADED, or from EMPTY under the global LOADING state) and
// then waited for `users` to drop to zero. Those SeqCst accesses order every user's access before
// the holder's, and the holder's Release store of the next state orders its work before the next
// users'.
unsafe impl Sync for HypCpu {}

/// A user's pass to a CPU's buffer; leaving drops it.
pub(super) struct CpuUse<'a> {
    cpu: &'a HypCpu,
}

impl CpuUse<'_> {
    /// The CPU's buffer, shared with the other users.
    pub(super) fn buffer(&self) -> &HypBuffer {
        // SAFETY: a CpuUse exists only between `users` counting us in and out while the state
        // was LOADED, during which the buffer is present and only read (see `HypCpu`).
        unsafe { (*self.cpu.buffer.get()).as_ref() }.expect("a loaded CPU has a buffer")
    }
}

impl Drop for CpuUse<'_> {
    fn drop(&mut self) {
        // Ordering: Release, so our accesses to the buffer happen before whatever the waiter in
        // `quiesce` does after seeing the count drop (it loads with SeqCst).
        self.cpu.users.fetch_sub(1, Ordering::Release);
    }
}

/// A CPU's cells, while its [`ExclusiveCpu`] is borrowed.
pub(super) struct CpuCells<'h> {
    /// The buffer (`None`: the CPU is EMPTY, or being loaded or unloaded).
    pub(super) buffer: &'h mut Option<HypBuffer>,
    /// The preallocated links, while no buffer holds them.
    pub(super) links: &'h mut Option<Box<[SubBufLink]>>,
}

/// Exclusive hold of a CPU, from a [`HypCpu::claim`]: the state is BUSY and no user is inside, so
/// its cells are the holder's alone. Dropping it puts the state back to what it was claimed
/// from; [`ExclusiveCpu::release`] ends the hold in another state.
pub(super) struct ExclusiveCpu<'a> {
    cpu: &'a HypCpu,
    /// The state the hold ends in.
    release_to: u32,
}

impl ExclusiveCpu<'_> {
    /// The CPU's buffer and links, for as long as this borrow of the hold lasts.
    pub(super) fn cells(&mut self) -> CpuCells<'_> {
        // SAFETY: the hold exists only after `claim` moved the state to BUSY (one claimer wins
        // the compare-and-swap until the hold ends) and `quiesce` saw no user inside; no user
        // enters while it is BUSY (see `HypCpu::enter`). So nothing else touches the cells until
        // the hold is dropped, and the references live no longer than this `&mut self` borrow.
        unsafe { CpuCells { buffer: &mut *self.cpu.buffer.get(), links: &mut *self.cpu.links.get() } }
    }

    /// Ends the hold with the CPU in state `to`.
    pub(super) fn release(mut self, to: u32) {
        self.release_to = to;
    }
}

impl Drop for ExclusiveCpu<'_> {
    fn drop(&mut self) {
        // Ordering: Release, so users that see the new state (SeqCst load in `enter`) see the
        // work done while holding the CPU.
        self.cpu.state.store(self.release_to, Ordering::Release);
    }
}

impl HypCpu {
    pub(super) fn new(links: Box<[SubBufLink]>) -> Self {
        Self {
            state: AtomicU32::new(state::EMPTY),
            users: AtomicU32::new(0),
            discarded: AtomicU64::new(0),
            buffer: UnsafeCell::new(None),
            links: UnsafeCell::new(Some(links)),
        }
    }

    /// Whether the CPU is held for exclusive work (its events are discarded meanwhile).
    pub(super) fn is_busy(&self) -> bool {
        // Ordering: Relaxed; the writer only decides whether to count the events it skips, and
        // an event racing a state change may be counted either way.
        self.state.load(Ordering::Relaxed) == state::BUSY
    }

    /// Enters as a user if the CPU has a buffer.
    pub(super) fn enter(&self) -> Option<CpuUse<'_>> {
        // Ordering: SeqCst on both sides of a Dekker pair with `claim` and `quiesce` (state
        // store, users load): either we see the state change and leave, or it sees our count and
        // waits.
        self.users.fetch_add(1, Ordering::SeqCst);
        if self.state.load(Ordering::SeqCst) == state::LOADED {
            Some(CpuUse { cpu: self })
        } else {
            // Ordering: Release, as in `CpuUse::drop` (we did not touch the buffer).
            self.users.fetch_sub(1, Ordering::Release);
            None
        }
    }

    /// Claims the CPU for exclusive work if its state is `from`: the hold, or the state found.
    /// Returns once no user is inside.
    pub(super) fn claim(&self, from: u32) -> Result<ExclusiveCpu<'_>, u32> {
        // Ordering: SeqCst, as the state store of the Dekker pair in `enter`. A failure only
        // reports the state; nothing is read through it.
        self.state.compare_exchange(from, state::BUSY, Ordering::SeqCst, Ordering::Relaxed)?;
        self.quiesce();
        Ok(ExclusiveCpu { cpu: self, release_to: from })
    }

    /// After `state` was set to BUSY: waits until no user is inside.
    fn quiesce(&self) {
        // Ordering: SeqCst, see `enter`. The users inside are a writer in the middle of one event
        // or a host call in the middle of one swap: a short wait.
        while self.users.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
}
