//! The thread that accepts connections: it closes those of other users, refuses those beyond
//! [`MAX_CLIENTS`] (`full_table`), and hands each other one to a serving thread (`workers`).

use super::connection::Client;
use super::full_table::FullTable;
use super::workers::serve_connections;
use super::{MAX_CLIENTS, Shared, listen};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// How long the acceptor pauses after `accept` fails for want of resources (descriptors, memory).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// The thread that accepts connections, each served by a thread of its own: an idle one when
/// there is one ([`serve_connections`]), else a new one.
pub(super) struct Acceptor {
    listener: OwnedFd,
    /// Connections refused while the client table was full, until their first request is
    /// answered.
    full_table: FullTable,
    stop: Arc<OwnedFd>,
    shared: Arc<Shared>,
    next_id: u64,
    threads: Vec<JoinHandle<()>>,
    euid: u32,
}

impl Acceptor {
    pub(super) fn new(listener: OwnedFd, stop: OwnedFd, shared: Arc<Shared>) -> Self {
        let euid = crate::users::euid();
        Self {
            listener,
            full_table: FullTable::default(),
            stop: Arc::new(stop),
            shared,
            next_id: 1,
            threads: Vec::new(),
            euid,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let mut fds = vec![PollFd::new(&*self.stop, PollFlags::IN), PollFd::new(&self.listener, PollFlags::IN)];
            fds.extend(self.full_table.poll_fds());
            let timeout = self.full_table.poll_timeout();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) | Err(Errno::INTR) => {}
                // Out of memory for the poll set; back off instead of spinning.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
            let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
            drop(fds);
            if !revents[0].is_empty() {
                break;
            }
            self.full_table.serve(&revents[2..]);
            if !revents[1].is_empty() {
                self.accept();
            }
        }
        // Idle threads see their channel close; busy ones see the stop descriptor, which stays
        // readable, and do not go idle again.
        {
            let mut workers = self.shared.workers.lock();
            workers.stopping = true;
            workers.waiting.clear();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    fn accept(&mut self) {
        loop {
            let fd = match rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => fd,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return,
                // Anything else (EMFILE, ENOBUFS, ...) leaves the connection queued and the
                // listener readable: pause before the next poll rather than spin on it.
                Err(_) => {
                    std::thread::sleep(ACCEPT_BACKOFF);
                    return;
                }
            };
            if !listen::peer_is(&fd, self.euid) {
                continue; // dropping `fd` closes the connection, without a word to a stranger
            }
            {
                let mut workers = self.shared.workers.lock();
                if workers.busy >= MAX_CLIENTS {
                    drop(workers);
                    self.full_table.refuse(fd);
                    continue;
                }
                workers.busy += 1;
            }
            let client = Client::new(fd, self.next_id, Arc::clone(&self.stop), Arc::clone(&self.shared));
            self.next_id += 1;
            self.hand_over(client);
        }
    }

    /// Gives `client` (counted busy) to an idle thread, or to a new one. A thread started by a
    /// real-time thread is real-time too. If none can be started, the connection is closed.
    fn hand_over(&mut self, mut client: Client) {
        loop {
            let Some((_, waiting)) = self.shared.workers.lock().waiting.pop() else { break };
            match waiting.send(client) {
                Ok(()) => return,
                // That thread has gone: try the next.
                Err(std::sync::mpsc::SendError(back)) => client = back,
            }
        }
        self.threads.retain(|t| !t.is_finished());
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("hyptrace-client".into())
            .spawn(move || serve_connections(&shared, client));
        match spawned {
            Ok(thread) => self.threads.push(thread),
            Err(_) => self.shared.workers.lock().busy -= 1,
        }
    }
}
