//! Whether a client has read every answer sent to it: what the server checks before it sends an
//! answer carrying file descriptors.
//!
//! Descriptors sent over a Unix socket and not yet received count against the *sender's* limit
//! of open files (`RLIMIT_NOFILE`, per user): once they exceed it, every `SCM_RIGHTS` message that
//! user sends fails with `ETOOMANYREFS`. A client that asked for a CPU's descriptors again and
//! again without reading the answers would thus stop the producer from handing descriptors to
//! anyone. So the server sends descriptors only to a client with no answer left unread: each
//! connection has at most one descriptor-carrying answer in flight.

use rustix::io::Errno;
use rustix::ioctl::{Getter, Opcode};
use std::os::fd::BorrowedFd;

/// `SIOCOUTQ` (the same number as `TIOCOUTQ`): bytes sent on a socket that its peer has not
/// received yet; for a Unix socket, the memory its unreceived messages hold.
const SIOCOUTQ: Opcode = libc::TIOCOUTQ as Opcode;

/// True if the peer of `socket` has received every message sent on it. A socket that cannot say
/// counts as not having read them.
pub(super) fn all_read(socket: BorrowedFd<'_>) -> bool {
    unreceived_bytes(socket) == Ok(0)
}

/// Bytes of the messages sent on `socket` that its peer has not received.
fn unreceived_bytes(socket: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    // SAFETY: SIOCOUTQ writes one `int` through its argument, which `Getter` provides.
    unsafe { rustix::ioctl::ioctl(socket, Getter::<SIOCOUTQ, libc::c_int>::new()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    use std::os::fd::AsFd;

    #[test]
    fn a_message_counts_until_the_peer_receives_it() {
        let (a, b) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        assert!(all_read(a.as_fd()));
        rustix::net::send(&a, b"answer", SendFlags::empty()).unwrap();
        assert!(!all_read(a.as_fd()));
        assert!(unreceived_bytes(a.as_fd()).unwrap() > 0);
        let mut buf = [0u8; 16];
        rustix::net::recv(&b, &mut buf, RecvFlags::empty()).unwrap();
        assert!(all_read(a.as_fd()));
    }
}
