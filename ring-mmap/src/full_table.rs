//! Connections that came while the server's client table was full: each has its first request
//! answered `EUSERS` ("the producer serves its maximum of clients"), then is closed, so the
//! client can tell that from a producer that went away.
//!
//! The accepting thread keeps them and polls them with the listener; it never blocks on one. A
//! connection that sends nothing within [`ANSWER_WAIT`] is closed without an answer, and so is
//! any beyond [`MAX_WAITING`] of them at once.

use crate::server::echo_of;
use crate::wire::{ResponseHeader, status};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendFlags};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// Most refused connections waiting for their first request at once.
pub(crate) const MAX_WAITING: usize = 16;

/// How long a refused connection may take to send its first request.
pub(crate) const ANSWER_WAIT: Duration = Duration::from_secs(1);

/// How often the accepting thread wakes while refused connections wait, to close those that
/// waited too long.
const EXPIRY_CHECK: Timespec = Timespec { tv_sec: 0, tv_nsec: 100_000_000 };

/// The refused connections waiting for their first request, with when they were accepted.
#[derive(Debug, Default)]
pub(crate) struct FullTable {
    waiting: Vec<(OwnedFd, Instant)>,
}

impl FullTable {
    /// Takes a connection the full table refused (closing it at once if [`MAX_WAITING`] wait).
    pub(crate) fn refuse(&mut self, fd: OwnedFd) {
        if self.waiting.len() < MAX_WAITING {
            self.waiting.push((fd, Instant::now()));
        }
    }

    /// What to poll for the waiting connections, in order.
    pub(crate) fn poll_fds(&self) -> impl Iterator<Item = PollFd<'_>> {
        self.waiting.iter().map(|(fd, _)| PollFd::new(fd, PollFlags::IN))
    }

    /// The poll timeout while connections wait (none otherwise: nothing expires).
    pub(crate) fn poll_timeout(&self) -> Option<Timespec> {
        (!self.waiting.is_empty()).then_some(EXPIRY_CHECK)
    }

    /// After a poll of [`FullTable::poll_fds`] that gave `revents`: answers the connections whose
    /// request came and closes them, with those that hung up or waited too long.
    pub(crate) fn serve(&mut self, revents: &[PollFlags]) {
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
    let mut buf = [0u8; 64];
    let got = rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut buf)],
        &mut RecvAncillaryBuffer::default(),
        RecvFlags::TRUNC | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    );
    let len = match got {
        Ok(msg) if msg.bytes > 0 => msg.bytes.min(buf.len()),
        _ => return,
    };
    // Whatever the request, its op and cpu are echoed, as every answer does.
    let header = ResponseHeader::answer(&echo_of(&buf[..len]), status::EUSERS, 0, 0);
    loop {
        match rustix::net::sendmsg(
            fd,
            &[IoSlice::new(header.as_bytes())],
            &mut SendAncillaryBuffer::default(),
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Err(Errno::INTR) => continue,
            _ => return,
        }
    }
}
