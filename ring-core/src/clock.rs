//! Clocks the writer stamps events with, and the conversion of their readings to nanoseconds.
//!
//! Timestamps are raw clock values; whoever publishes the buffer says how to convert them to
//! nanoseconds, with a [`ClockParams`] (mult/shift/epoch), which producers and consumers alike
//! use. A clock only has to be monotonic per CPU: the writer never lets time go backwards within
//! a buffer (a reading older than the previous event is stamped with the previous event's time).

use crate::sync::AtomicU64;
use crate::sync::Ordering;
use crate::sync::local::AtomicU64 as LocalU64;
use core::mem::offset_of;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// How to turn a raw clock value into nanoseconds, as docs/abi.md §3.3 gives it:
/// `ns = epoch_ns + (((raw - epoch_raw) * mult) >> shift)` for `raw >= epoch_raw`, and
/// `ns = epoch_ns - (((epoch_raw - raw) * mult) >> shift)` for an older one: the difference taken
/// as an unsigned magnitude, scaled in 128 bits, and the addition or subtraction wrapping at 2⁶⁴.
///
/// Its layout is the control socket's `CLOCK` answer and a buffer directory's `clock` file
/// (docs/abi.md §5.2: 24 bytes, host byte order), so it is sent and read as it is.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ClockParams {
    /// Multiplier.
    pub mult: u32,
    /// Shift.
    pub shift: u32,
    /// Raw clock value at the epoch.
    pub epoch_raw: u64,
    /// Nanoseconds at the epoch.
    pub epoch_ns: u64,
}

const _: () = assert!(size_of::<ClockParams>() == 24);
const _: () = assert!(offset_of!(ClockParams, mult) == 0);
const _: () = assert!(offset_of!(ClockParams, shift) == 4);
const _: () = assert!(offset_of!(ClockParams, epoch_raw) == 8);
const _: () = assert!(offset_of!(ClockParams, epoch_ns) == 16);

/// The host clock a consumer wants a producer's timestamps converted to, so that they line up
/// with another trace of that host (the Linux kernel's, recorded with the trace clock of that
/// name): the `CLOCK` request's `arg` (docs/abi.md §5.2).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceClock {
    /// The producer's own nanoseconds, whatever their epoch: enough for a trace read on its own.
    Own = 0,
    /// `CLOCK_MONOTONIC`: the kernel's `mono` trace clock.
    Mono = 1,
    /// `CLOCK_BOOTTIME` (monotonic, and counting time suspended): the kernel's `boot` clock.
    Boot = 2,
}

impl TraceClock {
    /// Every clock a producer can be asked for.
    pub const ALL: [Self; 3] = [Self::Own, Self::Mono, Self::Boot];

    /// The clock's number in a `CLOCK` request.
    pub const fn to_wire(self) -> u32 {
        self as u32
    }

    /// The clock numbered `n` ([`TraceClock::to_wire`]), if there is one.
    pub fn from_wire(n: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| u64::from(c.to_wire()) == n)
    }

    /// The Linux kernel's name of this trace clock (tracefs `trace_clock`), if it has one.
    pub const fn tracefs_name(self) -> Option<&'static str> {
        match self {
            Self::Own => None,
            Self::Mono => Some("mono"),
            Self::Boot => Some("boot"),
        }
    }

    /// The clock the kernel names `name`, if a producer can be asked for it.
    pub fn from_tracefs_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.tracefs_name() == Some(name))
    }
}

impl ClockParams {
    /// Raw clock values are nanoseconds.
    pub const IDENTITY: Self = Self { mult: 1, shift: 0, epoch_raw: 0, epoch_ns: 0 };

    /// `raw` in nanoseconds.
    pub fn convert(&self, raw: u64) -> u64 {
        let scale = |d: u64| ((u128::from(d) * u128::from(self.mult)) >> self.shift.min(127)) as u64;
        if raw >= self.epoch_raw {
            self.epoch_ns.wrapping_add(scale(raw - self.epoch_raw))
        } else {
            self.epoch_ns.wrapping_sub(scale(self.epoch_raw - raw))
        }
    }
}

/// A source of raw timestamps.
pub trait Clock {
    /// The current time in this clock's units.
    fn now(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline(always)]
    fn now(&self) -> u64 {
        (**self).now()
    }
}

/// The CPU's cycle counter: `rdtsc` on x86-64, `cntvct_el0` on arm64.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleClock;

#[cfg(target_arch = "x86_64")]
impl Clock for CycleClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        // SAFETY: `rdtsc` has no preconditions on x86-64 (every x86-64 CPU implements it).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
}

#[cfg(target_arch = "aarch64")]
impl Clock for CycleClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        let v: u64;
        // SAFETY: reading the virtual counter is permitted at EL0 on every arm64 OS we target
        // (Linux sets CNTKCTL_EL1.EL0VCTEN) and has no side effects.
        unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
        v
    }
}

/// A per-CPU event counter used as a clock: each reading is one more than the last.
///
/// Give each CPU's buffer its own counter. It is a plain load and store, not an atomic
/// read-modify-write, so a nested writer (signal handler) may read the same value as the context it
/// interrupted; the buffer still keeps time monotonic.
#[derive(Debug, Default)]
pub struct CounterClock {
    next: LocalU64,
}

impl CounterClock {
    /// A counter starting at `start`.
    pub fn new(start: u64) -> Self {
        Self { next: LocalU64::new(start) }
    }
}

impl Clock for CounterClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        // Ordering: Relaxed; the counter is only ever advanced by its own CPU's writer and
        // carries no data.
        let v = self.next.load(Ordering::Relaxed);
        self.next.store(v.wrapping_add(1), Ordering::Relaxed);
        v
    }
}

/// A clock that only moves when told to; for tests and models.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        Self { now: AtomicU64::new(start) }
    }

    /// Sets the time.
    pub fn set(&self, t: u64) {
        // Ordering: Relaxed; tests set the time from the writer's own thread or before starting it.
        self.now.store(t, Ordering::Relaxed);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: u64) {
        // Ordering: Relaxed, as in `set`.
        self.now.fetch_add(d, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        // Ordering: Relaxed; see `set`.
        self.now.load(Ordering::Relaxed)
    }
}

/// Nanoseconds of the host's monotonic clock since the first `MonotonicClock` was made in this
/// process (so every CPU's buffer shares one epoch).
///
/// The epoch is fixed when the clock is made ([`MonotonicClock::new`]), not at its first
/// reading: a reading may come from a nested writer in a signal handler, which must not be the
/// one to initialise a `OnceLock` (re-entering one from a handler can deadlock).
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: std::time::Instant,
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock counting from this process's epoch (set by the first one made).
    pub fn new() -> Self {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        Self { epoch: *EPOCH.get_or_init(std::time::Instant::now) }
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn conversion_scales_and_offsets() {
        let p = ClockParams { mult: 3 << 30, shift: 31, epoch_ns: 1_000, epoch_raw: 500 };
        assert_eq!(p.convert(500), 1_000);
        assert_eq!(p.convert(600), 1_150);
        assert_eq!(p.convert(400), 850, "before the epoch counts backwards");
        assert_eq!(ClockParams::IDENTITY.convert(12345), 12345);
        let big = ClockParams { mult: u32::MAX, shift: 0, epoch_ns: 0, epoch_raw: 0 };
        assert_eq!(big.convert(1 << 40), ((1u128 << 40) * u128::from(u32::MAX)) as u64, "no overflow panic");
        let wraps = ClockParams { mult: 1, shift: 0, epoch_ns: 5, epoch_raw: 10 };
        assert_eq!(wraps.convert(4), u64::MAX, "subtraction wraps at 2^64");
        assert_eq!(ClockParams { epoch_ns: u64::MAX, ..wraps }.convert(11), 0, "and so does addition");
    }

    #[test]
    fn counter_and_manual_clocks() {
        let c = CounterClock::new(5);
        assert_eq!((c.now(), c.now(), c.now()), (5, 6, 7));
        let m = ManualClock::new(10);
        m.advance(5);
        assert_eq!(m.now(), 15);
        m.set(3);
        let by_ref: &ManualClock = &m;
        assert_eq!(Clock::now(&by_ref), 3);
    }

    // Miri cannot execute `rdtsc`/`mrs`: the cycle clock is tested natively only.
    #[cfg(all(any(target_arch = "x86_64", target_arch = "aarch64"), not(miri)))]
    #[test]
    fn cycle_clock_moves_forward() {
        let a = CycleClock.now();
        let b = CycleClock.now();
        assert!(b >= a);
    }

    #[cfg(feature = "std")]
    #[test]
    fn monotonic_clock_is_monotonic() {
        let a = MonotonicClock::new().now();
        std::thread::sleep(std::time::Duration::from_millis(1));
        assert!(MonotonicClock::new().now() >= a + 1_000_000);
    }
}
