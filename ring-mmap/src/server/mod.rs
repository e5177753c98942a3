//! The producer's control socket: a `SOCK_SEQPACKET` Unix socket, each connection served by a
//! thread of its own (one whose last connection ended, or a new one, handed it by the thread
//! that accepts them).
//!
//! The socket file is created mode 0600 and every peer's credentials (`SO_PEERCRED`) must carry
//! the producer's effective uid. Requests are answered in order, one message each
//! ([`crate::wire`]), which the server makes from what the [`Producer`] returns in ring-core's
//! types. Nothing a peer sends can stop the server: malformed messages get an `EPROTO` answer,
//! unknown operations `ENOTTY`, bad arguments `EINVAL`; a peer that does not read its answers,
//! or hangs up, is dropped; the others keep being served. Descriptors (GET_CPU) go only to a
//! client that has read every earlier answer (see `unread_answers`), so no client can use up the
//! descriptors this process may have in flight. Each connection has a request budget
//! ([`crate::request_budget`]): a client asking faster than it allows is served later, so none
//! can take more than a share of a CPU.
//!
//! One client at a time consumes a CPU (swaps its reader page, arms its doorbell): the first to
//! do so owns it until it disconnects; others get `EBUSY`. Any client may map a CPU's buffer
//! read-only for non-consuming snapshots. When the server stops (or its process dies) every
//! client's socket reaches end of file: that is the consumers' hangup.
//!
//! ```text
//!   Server::start ── listen: private directory, bind (0600), listen
//!        │
//!        ▼
//!   "hyptrace-socket" thread: accept ─── peer not this user ──▶ closed
//!        │                         └──── MAX_CLIENTS served ──▶ full_table: EUSERS, closed
//!        ▼ (hand over)
//!   "hyptrace-client" threads (workers): an idle one, or a new one
//!        │ each serves one connection at a time
//!        ▼
//!   connection: budget ─▶ poll (spin window) ─▶ receive ─▶ dispatch ─▶ send
//!                                                             │
//!                                              Producer call, cpu_owners
//! ```
//!
//! Which file does what:
//! - this file: the public API ([`Server`], [`ServerOptions`]) and what the threads share;
//! - `listen`: where the socket lives and who may connect: the socket's private directory, the
//!   socket file (replacing a stale one), its mode, the peer's uid;
//! - `accept`: the accepting thread, which checks each peer and hands the connection over;
//! - `full_table`: connections beyond [`MAX_CLIENTS`], answered `EUSERS`;
//! - `workers`: the pool of serving threads, and how long an idle one lingers;
//! - `connection`: serving one connection: its budget, polling window and hangup;
//! - `dispatch`: a request turned into a [`Producer`] call and its answer;
//! - `messages`: a request read from the socket, an answer sent on it;
//! - `cpu_owners`: which client consumes each CPU;
//! - `unread_answers`: whether a client has read its answers, before descriptors go to it.

mod accept;
mod connection;
mod cpu_owners;
mod dispatch;
mod full_table;
mod listen;
mod messages;
mod unread_answers;
mod workers;

pub use listen::default_socket_path;

use crate::error::Error;
use crate::producer::Producer;
use crate::request_budget::{DEFAULT_BUDGET, RequestBudget};
use accept::Acceptor;
use cpu_owners::CpuOwners;
use parking_lot::Mutex;
use rustix::event::EventfdFlags;
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use workers::Workers;

/// Most clients served at once; a connection beyond them has its first request answered
/// `EUSERS` and is closed.
pub const MAX_CLIENTS: usize = 64;

/// How long the server keeps polling without sleeping after it served a request, by default.
///
/// Consumers ask for pages in bursts while they drain, so staying awake briefly for the next
/// request of a burst saves a wakeup per round trip (see [`crate::poll_window`]). An idle
/// producer never polls: a window only follows a request; none follows a WAIT answered "armed"
/// (the client sleeps on its doorbell: its burst is over), and a client whose requests come
/// later than the window gets one only now and then ([`crate::poll_window`]'s `ClientWindows`).
/// A connection served from the CPUs its client consumes ([`ServerOptions::on_consumed_cpus`])
/// never polls: its consumer runs there too, and would wait for the poller to stop.
pub const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// How a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Keep polling without sleeping this long after serving a client's request, unless that
    /// request armed its doorbell or the connection is served from its client's CPUs
    /// ([`ServerOptions::on_consumed_cpus`]) (0: always sleep).
    pub spin: std::time::Duration,
    /// Serve under real-time scheduling where the process may ([`crate::realtime`]): for a
    /// producer that stands in for a hypervisor, whose hypercalls never wait for the host's
    /// scheduler. [`Server::realtime`] says whether it was granted.
    pub realtime: bool,
    /// Serve each client on the CPUs whose buffers it consumes, where this machine has them:
    /// its thread moves there when it begins consuming one. For a producer whose buffer `n` is
    /// written on CPU `n` (as a hypervisor's are, for its physical CPUs) and a consumer reading
    /// each CPU from that CPU: a hypervisor runs a hypercall on the CPU that makes it, so the
    /// swap answers without waking another CPU. A connection served there does not poll for
    /// its client's next request ([`ServerOptions::spin`]): it answers and sleeps.
    pub on_consumed_cpus: bool,
    /// How many requests each connection may have served ([`crate::request_budget`]): beyond
    /// it, the connection's requests wait, so that no client can take more than a share of a
    /// CPU from what the producer traces.
    pub budget: RequestBudget,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { spin: DEFAULT_SPIN, realtime: false, on_consumed_cpus: false, budget: DEFAULT_BUDGET }
    }
}

/// A running control-socket server. Stops (and removes its socket file) when dropped.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
    /// Whether the thread runs under real-time scheduling, or why not ([`Server::realtime`]).
    realtime: Result<bool, Errno>,
    /// What its threads share: which client consumes each CPU.
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `path` (replacing a stale socket file, refusing one another producer serves) and
    /// serves `producer` on a new thread.
    pub fn start(path: &Path, producer: Arc<dyn Producer>) -> Result<Self, Error> {
        Self::start_with(path, producer, ServerOptions::default())
    }

    /// [`Server::start`] with explicit options.
    pub fn start_with(path: &Path, producer: Arc<dyn Producer>, options: ServerOptions) -> Result<Self, Error> {
        let listener = listen::bind(path)?;
        let stop = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| Error::io("eventfd", e))?;
        let stop_rx = stop.try_clone().map_err(|e| Error::Io { what: "dup", source: e })?;
        let owners = CpuOwners::new(producer.nr_cpus());
        let shared = Arc::new(Shared { producer, owners, options, workers: Mutex::default() });
        let served = Arc::clone(&shared);
        let (granted_tx, granted) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("hyptrace-socket".into())
            .spawn(move || {
                let _ =
                    granted_tx.send(if options.realtime { crate::realtime::enter().map(|()| true) } else { Ok(false) });
                Acceptor::new(listener, stop_rx, served).run()
            })
            .map_err(|e| Error::Io { what: "spawning the server thread", source: e })?;
        // The thread sends before it serves; a thread that died before that was refused nothing.
        let realtime = granted.recv().unwrap_or(Ok(false));
        Ok(Self { path: path.to_path_buf(), stop, thread: Some(thread), realtime, shared })
    }

    /// Whether the server's threads run under real-time scheduling (asked for with
    /// [`ServerOptions::realtime`]; the accepting thread takes it, and the thread it starts for
    /// each connection inherits it): `Ok(false)` if it was not asked for, the error if it was
    /// refused (`EPERM`: the process lacks the privilege).
    pub fn realtime(&self) -> Result<bool, Errno> {
        self.realtime
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a connected client consumes CPU `cpu` (it asked for the CPU's reader page or
    /// armed its doorbell, and has not disconnected yet).
    pub fn is_consumed(&self, cpu: u32) -> bool {
        self.shared.owners.is_consumed(cpu)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the acceptor and every client's thread share.
struct Shared {
    producer: Arc<dyn Producer>,
    /// The client consuming each CPU.
    owners: CpuOwners,
    options: ServerOptions,
    /// The serving threads: which are busy, which wait.
    workers: Mutex<Workers>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("owners", &self.owners).finish_non_exhaustive()
    }
}
