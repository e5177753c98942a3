//! One connection's messages: a request read from the socket, an answer sent back with the
//! descriptors it carries.

use crate::wire::{MAX_BODY, MAX_FDS, Request, ResponseHeader, status};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use zerocopy::IntoBytes;

/// A message read from a client, kept up to the size of the buffer.
pub(super) struct Received {
    buf: [u8; 64],
    /// How long the message was; longer than the buffer if it was truncated.
    pub(super) len: usize,
}

impl Received {
    /// What of the message the buffer holds.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }
}

/// Reads one message from `fd` without waiting. A length of 0 is end of file.
pub(super) fn receive(fd: BorrowedFd<'_>) -> Result<Received, Errno> {
    let mut buf = [0u8; 64];
    // No room for ancillary data: descriptors a client sends are discarded by the kernel.
    let mut no_fds = RecvAncillaryBuffer::default();
    let msg = rustix::net::recvmsg(
        fd,
        &mut [IoSliceMut::new(&mut buf)],
        &mut no_fds,
        RecvFlags::TRUNC | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
    )?;
    Ok(Received { buf, len: msg.bytes })
}

/// The op and cpu to echo in the answer to a malformed message (what of them could be read).
pub(super) fn echo_of(bytes: &[u8]) -> Request {
    let word = |at: usize| bytes.get(at..at + 4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    Request { magic: word(0), op: word(4), cpu: word(8), _reserved0: 0, arg: 0, _reserved1: 0 }
}

/// An answer to send back to a client: status, body, file descriptors.
pub(super) struct OutgoingAnswer<'p> {
    pub(super) status: i32,
    pub(super) body: Vec<u8>,
    pub(super) fds: Vec<BorrowedFd<'p>>,
    /// The client sleeps on its doorbell after this answer: no request is due from it soon.
    pub(super) sleeps: bool,
    /// A GET_READER_PAGE answer that swapped in a new reader page.
    pub(super) swapped: bool,
}

impl<'p> OutgoingAnswer<'p> {
    pub(super) fn status(status: i32) -> Self {
        Self { status, body: Vec::new(), fds: Vec::new(), sleeps: false, swapped: false }
    }

    pub(super) fn body(body: &(impl IntoBytes + zerocopy::Immutable)) -> Self {
        Self::bytes(body.as_bytes().to_vec())
    }

    pub(super) fn bytes(body: Vec<u8>) -> Self {
        Self { status: status::OK, body, fds: Vec::new(), sleeps: false, swapped: false }
    }
}

/// Sends one answer. False if the client must be dropped (gone, or not reading its answers).
pub(super) fn send_answer(fd: BorrowedFd<'_>, req: &Request, answer: &OutgoingAnswer<'_>) -> bool {
    debug_assert!(answer.body.len() <= MAX_BODY && answer.fds.len() <= MAX_FDS);
    let header = ResponseHeader::answer(req, answer.status, answer.body.len(), answer.fds.len());
    let iov = [IoSlice::new(header.as_bytes()), IoSlice::new(&answer.body)];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !answer.fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&answer.fds)) {
        return false;
    }
    loop {
        match rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
            Ok(_) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
