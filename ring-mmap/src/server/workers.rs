//! The serving threads: each serves one connection at a time and, between connections, waits
//! idle a while for the acceptor to hand it the next.

use super::Shared;
use super::connection::Client;

/// How long a thread whose connection ended waits for another before it ends.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The serving threads: how many serve a connection, which wait for one.
#[derive(Default)]
pub(super) struct Workers {
    /// Connections being served.
    pub(super) busy: usize,
    /// Each waiting thread and its channel, the last to go idle last.
    pub(super) waiting: Vec<(std::thread::ThreadId, std::sync::mpsc::Sender<Client>)>,
    /// The server is stopping: no thread goes idle.
    pub(super) stopping: bool,
}

/// A serving thread: serves `first`, then each connection the acceptor hands it while it waits
/// idle (starting a thread costs about 100 µs here, several round trips, and a client that
/// connects for one question, as `trace-reader stats` does, would pay it every time), until it
/// has waited [`IDLE_WAIT`] for nothing or the server stops. Between connections it goes back to
/// the CPUs it was started on.
pub(super) fn serve_connections(shared: &Shared, first: Client) {
    let home = rustix::thread::sched_getaffinity(None).ok();
    let me = std::thread::current().id();
    let mut next = Some(first);
    while let Some(client) = next.take() {
        client.run();
        if let Some(home) = &home {
            let _ = rustix::thread::sched_setaffinity(None, home);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut workers = shared.workers.lock();
            workers.busy -= 1;
            if workers.stopping {
                return;
            }
            workers.waiting.push((me, tx));
        }
        next = match rx.recv_timeout(IDLE_WAIT) {
            Ok(client) => Some(client),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let mut workers = shared.workers.lock();
                // Still listed: leave. Taken: the acceptor is sending a connection (or dropped
                // the channel, stopping), so wait for that.
                match workers.waiting.iter().position(|(thread, _)| *thread == me) {
                    Some(at) => {
                        workers.waiting.remove(at);
                        None
                    }
                    None => {
                        drop(workers);
                        rx.recv().ok()
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
        };
    }
}
