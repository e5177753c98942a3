//! Stopping a vCPU from another thread, even one whose guest never exits.
//!
//! A vCPU thread is inside `KVM_RUN` for as long as its guest runs without an exit: for a guest
//! that loops without one, for good. The way out is the one VMMs use: a signal to that thread
//! interrupts `KVM_RUN`, which returns `EINTR` ([`crate::Exit::Interrupted`]).
//!
//! ```text
//!  vCPU thread: Vcpu::run                        any thread: VcpuStop::stop
//!  ──────────────────────                        ──────────────────────────
//!  lock; stopped? → Interrupted (no entry)       lock; stopped = true
//!        else in_guest = this thread; unlock           in_guest = Some(thread)?
//!  ioctl(KVM_RUN) ──▶ guest ……                         → pthread_kill(thread, SIGRTMIN)
//!        ◀── EINTR (the signal) or an exit       unlock; in 1 ms, look again: resend
//!  lock; in_guest = None; unlock                 until in_guest is None (or 1 s passed)
//! ```
//!
//! The signal can land after the vCPU thread looked at `stopped` but before it entered
//! `KVM_RUN`: its handler (which does nothing) runs then, and `KVM_RUN` starts as if nothing
//! happened. So the stopper sends it again every millisecond until the thread has left the
//! guest. It only signals a thread between the two locked sections above, which cannot end
//! while the stopper holds the lock: the second section runs even when `KVM_RUN` unwinds.
//!
//! The signal is `SIGRTMIN` (the lowest real-time signal the C library leaves to programs), as in
//! Firecracker; its handler is installed once per process, when the first [`crate::Vm`] is made,
//! and each thread unblocks it the first time it enters a guest.
//! It is installed without `SA_RESTART`, but is only ever sent to a thread inside `Vcpu::run`.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::Error;

/// How long [`VcpuStop::stop`] waits between two signals.
const RESEND_EVERY: Duration = Duration::from_millis(1);
/// How long [`VcpuStop::stop`] keeps signalling a vCPU thread that stays in `KVM_RUN`.
const GIVE_UP_AFTER: Duration = Duration::from_secs(1);

/// The signal that interrupts `KVM_RUN`.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

/// The kick signal's handler: its delivery is all that is needed (it makes `KVM_RUN` return).
extern "C" fn on_kick(_signal: libc::c_int, _info: *mut libc::siginfo_t, _context: *mut libc::c_void) {}

/// Installs the kick signal's handler, once per process.
pub(crate) fn install_handler() -> Result<(), Error> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick).map_err(|error| error.to_string())
        })
        .clone()
        .map_err(|reason| Error::KickSignal { reason })
}

/// Whether a vCPU is stopped, and which thread is inside its guest.
#[derive(Debug, Default)]
struct State {
    stopped: bool,
    in_guest: Option<libc::pthread_t>,
}

/// The shared half of a vCPU's stop, held by the [`crate::Vcpu`] and its [`VcpuStop`]s.
#[derive(Debug, Default)]
pub(crate) struct StopState {
    state: Mutex<State>,
}

impl StopState {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The sections it guards cannot panic: a poisoned lock holds a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `enter` (one `KVM_RUN`) as the calling thread's stay in the guest, where a stop can
    /// reach it; `None`, without running it, once the vCPU is stopped.
    pub(crate) fn in_guest<T>(&self, enter: impl FnOnce() -> T) -> Result<Option<T>, Error> {
        accept_kicks_here()?;
        {
            let mut state = self.lock();
            if state.stopped {
                return Ok(None);
            }
            // SAFETY: `pthread_self` has no preconditions and always succeeds.
            state.in_guest = Some(unsafe { libc::pthread_self() });
        }
        let _leaving = LeaveGuest(self);
        Ok(Some(enter()))
    }
}

/// Unblocks the kick signal in the calling thread, the first time it enters a guest. A thread
/// starts with its creator's signal mask, and programs often block signals in their threads (so
/// that one thread of their own takes them): a blocked kick would stay pending without
/// interrupting `KVM_RUN`, and the vCPU could not be stopped. (A thread that blocks it again
/// afterwards cannot be stopped inside its guest: `VcpuStop::stop` says so with
/// `Error::StillInGuest`.)
fn accept_kicks_here() -> Result<(), Error> {
    thread_local! {
        static ACCEPTS_KICKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !ACCEPTS_KICKS.get() {
        vmm_sys_util::signal::unblock_signal(kick_signal())
            .map_err(|error| Error::KickSignal { reason: error.to_string() })?;
        ACCEPTS_KICKS.set(true);
    }
    Ok(())
}

/// Clears the thread inside the guest when `StopState::in_guest` ends, returning or unwinding.
struct LeaveGuest<'s>(&'s StopState);

impl Drop for LeaveGuest<'_> {
    fn drop(&mut self) {
        self.0.lock().in_guest = None;
    }
}

/// Stops one vCPU from any thread: it does not enter its guest again, and leaves it now if it is
/// inside. From [`crate::Vcpu::stopper`]; `Send`, `Sync` and cloneable.
#[derive(Debug, Clone)]
pub struct VcpuStop {
    shared: Arc<StopState>,
    vcpu: usize,
}

impl VcpuStop {
    pub(crate) fn new(shared: Arc<StopState>, vcpu: usize) -> Self {
        Self { shared, vcpu }
    }

    /// Stops the vCPU: from now on [`crate::Vcpu::run`] returns [`crate::Exit::Interrupted`]
    /// without entering the guest, and a thread inside it now is made to leave (see the module
    /// docs). Returns once no thread is inside the guest, or [`Error::StillInGuest`] if one
    /// still is after a second of signals.
    pub fn stop(&self) -> Result<(), Error> {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        loop {
            {
                let mut state = self.shared.lock();
                state.stopped = true;
                let Some(thread) = state.in_guest else { return Ok(()) };
                // SAFETY: `thread` is inside `StopState::in_guest`, between setting `in_guest`
                // and clearing it (in `LeaveGuest::drop`, which runs even when `KVM_RUN`
                // unwinds), which it cannot do while this lock is held: it is a live thread. The signal's handler is installed (`Vm::new` did it before any vCPU
                // existed) and does nothing.
                unsafe { libc::pthread_kill(thread, kick_signal()) };
            }
            if Instant::now() >= deadline {
                return Err(Error::StillInGuest { vcpu: self.vcpu });
            }
            std::thread::sleep(RESEND_EVERY);
        }
    }
}
