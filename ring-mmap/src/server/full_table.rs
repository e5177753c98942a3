//! Connections that came while the server's client table was full: each has its first request
//! answered `EUSERS` ("the producer serves its maximum of clients"), then is closed, so the
//! client can tell that from a producer that went away.
//!
//! The accepting thread keeps them and polls them with the listener; it never blocks on one. A
//! connection that sends nothing within [`ANSWER_WAIT`] is closed without an answer, and so is
//! any beyond [`MAX_WAITING`] of them at once.

use super::messages::{OutgoingAnswer, echo_of, receive, send_answer};
use crate::wire::status;
use rustix::event::{PollFd, PollFlags, Timespec};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Most refused connections waiting for their first request at once.
const MAX_WAITING: usize = 16;

/// How long a refused connection may take to send its first request.
const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// How often the accepting thread wakes while refused connections wait, to close those that
/// waited too long.
const EXPIRY_CHECK: Timespec = Timespec { tv_sec: 0, tv_nsec: 100_000_000 };

/// The refused connections waiting for their first request, with when they were accepted.
#[derive(Debug, Default)]
pub(super) struct FullTable {
    waiting: Vec<(OwnedFd, Instant)>,
}

impl FullTable {
    /// Takes a connection the full table refused (closing it at once if [`MAX_WAITING`] wait).
    pub(super) fn refuse(&mut self, fd: OwnedFd) {
        if self.waiting.len() < MAX_WAITING {
            self.waiting.push((fd, Instant::now()));
        }
    }

    /// What to poll for the waiting connections, in order.
    pub(super) fn poll_fds(&self) -> impl Iterator<Item = PollFd<'_>> {
        self.waiting.iter().map(|(fd, _)| PollFd::new(fd, PollFlags::IN))
    }

    /// The poll timeout while connections wait (none otherwise: nothing expires).
    pub(super) fn poll_timeout(&self) -> Option<Timespec> {
        (!self.waiting.is_empty()).then_some(EXPIRY_CHECK)
    }

    /// After a poll of [`FullTable::poll_fds`] that gave `revents`: answers the connections whose
    /// request came and closes them, with those that hung up or waited too long.
    pub(super) fn serve(&mut self, revents: &[PollFlags]) {
        let now = Instant::now();
        let mut i = 0;
        self.waiting.retain(|(fd, since)| {
            let ready = revents.get(i).copied().unwrap_or(PollFlags::empty());
            i += 1;
            if ready.intersects(PollFlags::IN) {
                answer_full(fd);
                return false;
            }
            ready.is_empty() && now.duration_since(*since) < ANSWER_WAIT
        });
    }
}

/// Reads the first request on `fd` and answers it `EUSERS`, without waiting on the client.
fn answer_full(fd: &OwnedFd) {
    match receive(fd.as_fd()) {
        // Whatever the request, its op and cpu are echoed, as every answer does.
        Ok(msg) if msg.len > 0 => {
            send_answer(fd.as_fd(), &echo_of(msg.bytes()), &OutgoingAnswer::status(status::EUSERS));
        }
        _ => {}
    }
}
