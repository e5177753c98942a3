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
//! The windows are short and spent spinning in place, as measured with hyp-sim and
//! `trace-reader record` on that machine. A client polling 100 µs kept a server that shared its
//! CPU from answering, and took CPU from the writers: 9-18% of the events were dropped at rates
//! a 10 µs client window records with next to no loss. Yielding the CPU between polls instead
//! does as well at such rates, but a single `sched_yield` next to a writer running flat out hands
//! it the CPU for a whole time slice: recording a flat-out producer fell from about 17 M to 2 M
//! events/s.

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
}
