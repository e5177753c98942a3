//! Doorbells as eventfds: the writer's [`ring_core::Doorbell`] on the producer side, a pollable
//! file descriptor on the consumer side (received through `GET_CPU`).

use crate::error::Error;
use rustix::event::EventfdFlags;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// A doorbell that makes an eventfd readable.
#[derive(Debug)]
pub struct EventFdDoorbell {
    fd: OwnedFd,
}

impl EventFdDoorbell {
    /// A new, non-blocking eventfd.
    pub fn new() -> Result<Self, Error> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| Error::io("eventfd", e))?;
        Ok(Self { fd })
    }

    /// The eventfd, to hand to consumers.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl ring_core::Doorbell for EventFdDoorbell {
    fn ring(&self) {
        // Adds 1 to the counter. The only failure of a non-blocking eventfd write is a counter
        // about to overflow, when it is readable anyway.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }
}

/// Empties an eventfd's counter (after a wakeup). Returns whether it was non-zero.
pub fn clear(fd: BorrowedFd<'_>) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::io::read(fd, &mut buf), Ok(8))
}
