//! How both ends of the control socket wait for a message they expect within microseconds: by
//! polling for a short window before they sleep.
//!
//! Waking a sleeping thread costs tens of microseconds on a virtual machine (about 50 µs on the
//! 2-CPU machine of `docs/perf.md`), several times a whole request and answer. So after a request
//! the server keeps polling for the next one ([`crate::server::DEFAULT_SPIN`], 50 µs: a draining
//! consumer's next request comes well within it), and a client polls for its answer
//! ([`crate::client::DEFAULT_ANSWER_SPIN`], 10 µs: an awake server on another CPU answers within a
//! few), before either sleeps.
//!
//! A server answering from the CPUs its client consumes does not poll at all (see
//! [`ClientWindows`]): the consumer it would wait for runs there too.
//!
//! The windows are short, and spent spinning in place rather than yielding, for reasons
//! measured with hyp-sim and `trace-reader record` on that machine. A longer client window keeps
//! a server that shares its CPU from answering and takes CPU from the writers: with 100 µs, 9-18%
//! of the events are dropped at rates a 10 µs window records with next to no loss. Yielding the
//! CPU between polls does as well at such rates, but a single `sched_yield` next to a writer
//! running flat out hands it the CPU for a whole time slice: recording a flat-out producer drops
//! from about 17 M to 2 M events/s with it.

use std::time::{Duration, Instant};

/// One wait's polling window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollWindow {
    until: Instant,
}

impl PollWindow {
    /// A window of `length` from now (0: sleep at once).
    pub(crate) fn start(length: Duration) -> Self {
        Self { until: Instant::now() + length }
    }

    /// True while the window lasts: poll instead of sleeping.
    pub(crate) fn open(&self) -> bool {
        Instant::now() < self.until
    }

    /// Between two polls.
    pub(crate) fn pause(&self) {
        std::hint::spin_loop();
    }
}

/// After a window closed without the client's next request, how many of its requests go without
/// a window before one is tried again.
const SKIP_AFTER_MISS: u32 = 7;

/// The server's polling windows for one client: one after each request, while they pay, and
/// none once the server answers from the client's CPUs.
///
/// A consumer's requests come in bursts: while it drains, one request per page, each soon after
/// the last answer if its pages are small (a few microseconds to copy 4 KiB), later than any
/// window if they are large (copying 64 KiB and writing it to a file takes longer than a
/// wakeup). A window that closes before the next request costs its whole length in CPU for
/// nothing, so after one does, the next [`SKIP_AFTER_MISS`] requests get none and then one is
/// tried again. No window follows a request that sends the client to sleep on its doorbell.
///
/// A server thread moved to the CPUs its client consumes ([`crate::ServerOptions::on_consumed_cpus`])
/// shares them with a consumer that reads each CPU from that CPU, as `trace-reader` does: polling
/// there would keep that consumer from sending the very request polled for (at the same
/// real-time priority it cannot take the CPU from the poller; below it, it waits the whole
/// window) and takes the CPU from the writers besides, while the round trip it would save is two
/// switches on one CPU, with no other CPU to wake. Such a thread never polls
/// ([`ClientWindows::beside_client`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientWindows {
    current: Option<PollWindow>,
    /// Requests to go without a window.
    skip: u32,
    /// The server runs on the client's CPUs: no windows.
    beside_client: bool,
}

impl ClientWindows {
    /// The client's window, while it is open.
    pub(crate) fn open(&self) -> Option<PollWindow> {
        self.current.filter(PollWindow::open)
    }

    /// A request of the client came in (call before answering it).
    pub(crate) fn request(&mut self) {
        if self.current.take().is_some_and(|w| !w.open()) {
            self.skip = SKIP_AFTER_MISS;
        }
    }

    /// The server now runs on the CPUs its client consumes: it answers and sleeps from now on.
    pub(crate) fn beside_client(&mut self) {
        self.beside_client = true;
        self.current = None;
    }

    /// Its request was answered: poll `length` for the next one unless `sleeps` (the client
    /// sleeps on its doorbell now), the server runs beside the client, or windows are not paying.
    pub(crate) fn answered(&mut self, length: Duration, sleeps: bool) {
        self.current = None;
        if sleeps || length.is_zero() || self.beside_client {
            return;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        self.current = Some(PollWindow::start(length));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_close_when_their_time_is_up() {
        assert!(!PollWindow::start(Duration::ZERO).open(), "a zero window sleeps at once");
        let window = PollWindow::start(Duration::from_millis(20));
        assert!(window.open());
        window.pause();
        std::thread::sleep(Duration::from_millis(25));
        assert!(!window.open());
    }

    #[test]
    fn client_windows_follow_requests_while_they_catch_the_next_one() {
        let long = Duration::from_secs(60);
        let mut w = ClientWindows::default();
        assert!(w.open().is_none(), "no window before a request");
        w.answered(long, false);
        assert!(w.open().is_some());
        w.request();
        w.answered(long, true);
        assert!(w.open().is_none(), "a client that sleeps on its doorbell gets no window");
        w.answered(Duration::ZERO, false);
        assert!(w.open().is_none(), "a zero length never polls");
    }

    #[test]
    fn a_server_beside_its_client_never_polls() {
        let long = Duration::from_secs(60);
        let mut w = ClientWindows::default();
        w.answered(long, false);
        assert!(w.open().is_some(), "a window after a request, on another CPU");
        w.beside_client();
        assert!(w.open().is_none(), "the open window ends when the server moves beside its client");
        for _ in 0..2 * SKIP_AFTER_MISS {
            w.request();
            w.answered(long, false);
            assert!(w.open().is_none(), "no window on the client's CPUs");
        }
    }

    #[test]
    fn a_window_that_closed_unused_stops_windows_for_a_while() {
        let mut w = ClientWindows::default();
        w.answered(Duration::from_millis(1), false);
        std::thread::sleep(Duration::from_millis(5));
        // The next request came after the window had closed: a miss.
        w.request();
        for _ in 0..SKIP_AFTER_MISS {
            w.answered(Duration::from_secs(60), false);
            assert!(w.open().is_none(), "skipped after a miss");
            w.request();
        }
        w.answered(Duration::from_secs(60), false);
        assert!(w.open().is_some(), "tried again");
        // It caught the request: windows go on.
        w.request();
        w.answered(Duration::from_secs(60), false);
        assert!(w.open().is_some());
    }
}
