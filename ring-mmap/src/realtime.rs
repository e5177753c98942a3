//! Real-time scheduling for the threads that answer a producer's control socket.
//!
//! A hypervisor runs a hypercall the moment the host makes it: the host's CPU traps into it, and
//! nothing the host schedules comes first. A producer that answers GET_READER_PAGE from a thread
//! of an ordinary process is queued behind whatever else runs on the CPUs (a simulated
//! hypervisor's own vCPU threads, busy by design), for up to a scheduler time slice per request.
//! Under `SCHED_FIFO` its answers come as soon as a request arrives instead. A serving thread
//! only runs to answer, and polls at most a short window ([`crate::poll_window`]) before it sleeps,
//! so it cannot take a CPU for long; the kernel's real-time throttling bounds it besides.
//!
//! A consumer may take the same priority for its reader threads (`trace-reader record
//! --realtime`), so that a reader woken by a finished page runs at once. It should then sleep for
//! its answers at once ([`crate::Connection::set_answer_spin`] of zero): a serving thread on the
//! same CPU at the same priority cannot take the CPU from a client polling for its answer.

use rustix::io::Errno;

/// The `SCHED_FIFO` priority taken: the lowest, above every normal thread.
pub const PRIORITY: i32 = 1;

/// Moves the calling thread to `SCHED_FIFO` at [`PRIORITY`]. Fails with `EPERM` without the
/// privilege (`CAP_SYS_NICE`, or an `RLIMIT_RTPRIO` of at least 1).
pub fn enter() -> Result<(), Errno> {
    let param = libc::sched_param { sched_priority: PRIORITY };
    // SAFETY: `sched_setscheduler` reads the one `sched_param` it is given, which lives across
    // the call; pid 0 is the calling thread. It has no other memory effects.
    let ret = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if ret == 0 {
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error();
    Err(errno.map_or(Errno::INVAL, Errno::from_raw_os_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy of the calling thread.
    fn policy() -> i32 {
        // SAFETY: no arguments but the pid (0: the calling thread); no memory is touched.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn a_thread_enters_real_time_or_is_refused_for_want_of_privilege() {
        std::thread::spawn(|| match enter() {
            Ok(()) => assert_eq!(policy(), libc::SCHED_FIFO),
            Err(e) => {
                assert_eq!(e, Errno::PERM, "only a missing privilege refuses it");
                assert_eq!(policy(), libc::SCHED_OTHER, "a refused thread keeps its policy");
            }
        })
        .join()
        .unwrap();
    }
}
