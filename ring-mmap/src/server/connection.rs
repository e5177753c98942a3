//! Serving one connection: waiting for its requests (within its request budget, polling
//! without sleeping while its window is open), answering each in order, and what is left when
//! it hangs up or the server stops.

use super::Shared;
use super::dispatch::answer;
use super::messages::{OutgoingAnswer, echo_of, receive, send_answer};
use super::unread_answers;
use crate::poll_window::ClientWindows;
use crate::request_budget::Bucket;
use crate::wire::{Request, status};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// One connection, served by a thread of its own.
pub(super) struct Client {
    fd: OwnedFd,
    id: u64,
    stop: Arc<OwnedFd>,
    shared: Arc<Shared>,
    /// While one is open, its next request is expected soon: poll for it instead of sleeping.
    windows: ClientWindows,
    /// What it may still ask for before its requests wait.
    budget: Bucket,
    /// The CPUs this thread was moved to ([`super::ServerOptions::on_consumed_cpus`]).
    placed_on: Vec<u32>,
}

/// What serving a client's message left.
enum Served {
    /// The client is gone or misbehaved: drop it.
    Gone,
    /// Answered; poll for its next request a while.
    Awake,
    /// Answered; it sleeps on its doorbell now.
    Asleep,
}

impl Client {
    /// The accepted connection `fd`, known as `id`, served until it hangs up or `stop` is
    /// readable, with a full request budget.
    pub(super) fn new(fd: OwnedFd, id: u64, stop: Arc<OwnedFd>, shared: Arc<Shared>) -> Self {
        let budget = Bucket::new(shared.options.budget, std::time::Instant::now());
        Self { fd, id, stop, shared, windows: ClientWindows::default(), budget, placed_on: Vec::new() }
    }

    /// Serves the connection until it hangs up or the server stops, then frees the CPUs it
    /// consumed.
    pub(super) fn run(mut self) {
        let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        loop {
            // A client that spent its budget waits, its requests in the socket.
            if let Some(wait) = self.budget.wait(std::time::Instant::now()) {
                if !self.rest(wait) {
                    break;
                }
                continue;
            }
            // Poll without sleeping while the client's window is open (see `ServerOptions::spin`).
            let polling = self.windows.open();
            let mut fds = [PollFd::new(&*self.stop, PollFlags::IN), PollFd::new(&self.fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, polling.is_some().then_some(&zero)) {
                Ok(0) if polling.is_some() => {
                    if let Some(window) = &polling {
                        window.pause();
                    }
                    continue;
                }
                Ok(_) | Err(Errno::INTR) => {}
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            let [stop, ready] = [fds[0].revents(), fds[1].revents()];
            if !stop.is_empty() {
                break;
            }
            if ready.intersects(PollFlags::IN) {
                self.windows.request();
                let sleeps = match self.serve_one() {
                    Served::Gone => break,
                    Served::Awake => false,
                    Served::Asleep => true,
                };
                self.windows.answered(self.shared.options.spin, sleeps);
            } else if ready.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL) {
                break;
            }
        }
        self.shared.owners.release(self.id, &*self.shared.producer);
    }

    /// Sleeps `wait` (the client's budget is spent), unless the server stops or the client hangs
    /// up first: false then.
    fn rest(&self, wait: std::time::Duration) -> bool {
        let timeout = rustix::event::Timespec {
            tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: wait.subsec_nanos().into(),
        };
        // No events asked of the client's socket: its requests wait; a hangup is still reported.
        let mut fds = [PollFd::new(&*self.stop, PollFlags::IN), PollFd::new(&self.fd, PollFlags::empty())];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
        fds[0].revents().is_empty() && !fds[1].revents().intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
    }

    /// Reads and answers one message.
    fn serve_one(&mut self) -> Served {
        let msg = match receive(self.fd.as_fd()) {
            Ok(msg) if msg.len == 0 => return Served::Gone, // end of file
            Ok(msg) => msg,
            Err(Errno::AGAIN | Errno::INTR) => return Served::Awake,
            Err(_) => return Served::Gone,
        };
        // A message longer than the buffer was truncated; `msg.len` still says how long it was,
        // so it fails `Request::parse`'s size check below.
        let bytes = msg.bytes();
        let (req, mut answer, claimed) = match Request::parse(bytes) {
            Ok(req) if msg.len == size_of::<Request>() => {
                let (answer, claimed) = answer(&self.shared, self.id, &req);
                (req, answer, claimed)
            }
            _ => (echo_of(bytes), OutgoingAnswer::status(status::EPROTO), false),
        };
        // Descriptors only to a client that read every earlier answer: at most one answer with
        // descriptors in flight per connection (`unread_answers`).
        if !answer.fds.is_empty() && !unread_answers::all_read(self.fd.as_fd()) {
            answer = OutgoingAnswer::status(status::EBUSY);
        }
        let sent = send_answer(self.fd.as_fd(), &req, &answer);
        self.budget.served(answer.swapped);
        let sleeps = answer.sleeps;
        // The answer borrows the producer's descriptors through `self.shared`: done with it.
        drop(answer);
        if claimed && self.shared.options.on_consumed_cpus {
            self.move_to_consumed_cpus();
        }
        match sent {
            false => Served::Gone,
            true if sleeps => Served::Asleep,
            true => Served::Awake,
        }
    }

    /// Moves this thread to the CPUs its client consumes, those of them it may run on (a
    /// thread keeps its CPUs where it may run on none of them).
    fn move_to_consumed_cpus(&mut self) {
        let cpus = self.shared.owners.owned_by(self.id);
        if cpus != self.placed_on && crate::affinity::run_on(&cpus).is_ok_and(|on| !on.is_empty()) {
            self.placed_on = cpus;
            self.windows.beside_client();
        }
    }
}
