//! The one place ring-core takes its atomics from.
//!
//! Normal builds use `core::sync::atomic`; `--cfg loom` builds use loom's instrumented types so
//! the model checker sees every access (the same switch tokio uses). Everything else in the crate
//! imports atomics from here, never from `core` directly.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

/// Atomics for state that only the writing contexts of one buffer touch: the writer's bookkeeping
/// (depth, offsets, counters), the nested-write staging lanes and the per-CPU counter clock.
///
/// Those contexts interrupt each other but never run in parallel: one claimed
/// [`crate::Writer`] at a time, which may move to another thread; the claim's Release (when the
/// writer is released) and Acquire (when it is claimed again) hand this state over with it.
/// Other threads only read the counters as statistics. They stay `core` atomics even under loom:
/// the model checker gains nothing from interleaving accesses no other thread makes, and each
/// tracked access multiplies the schedules it must explore (so loom does not check the handover
/// of this state; it checks the claim's exclusion). Anything another thread reads to synchronise
/// (the tail id, the slot, the links, the claim, shared memory) uses the tracked types above.
pub(crate) mod local {
    pub(crate) use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
}

/// Orders this context against a signal handler or interrupt that runs on the same thread.
///
/// Nested writers (see [`crate::nest`]) run to completion inside the context they interrupt, so a
/// compiler barrier is all the ordering they need; loom has no notion of signal handlers, so under
/// loom this is the same compiler barrier.
#[inline(always)]
pub(crate) fn signal_fence() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Tells the CPU (or loom's scheduler) that we are spinning on another party.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
