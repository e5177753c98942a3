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

use crate::backing::CpuLayout;
use crate::error::Error;
use crate::full_table::FullTable;
use crate::poll_window::ClientWindows;
use crate::producer::Producer;
use crate::request_budget::{Bucket, DEFAULT_BUDGET, RequestBudget};
use crate::unread_answers;
use crate::wire::{CpuBody, HelloBody, MAX_BODY, MAX_FDS, Op, ReaderBody, Request, ResponseHeader, WaitBody, status};
use parking_lot::Mutex;
use ring_core::SwapStatus;
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    SocketAddrUnix, SocketFlags, SocketType,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use zerocopy::IntoBytes;

/// Most clients served at once; a connection beyond them has its first request answered
/// `EUSERS` and is closed.
pub const MAX_CLIENTS: usize = 64;

/// How long the acceptor pauses after `accept` fails for want of resources (descriptors, memory).
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// How long the server keeps polling without sleeping after it served a request, by default.
///
/// Consumers ask for pages in bursts while they drain, so staying awake briefly for the next
/// request of a burst saves a wakeup per round trip (see [`crate::poll_window`]). An idle
/// producer never polls: a window only follows a request; none follows a WAIT answered "armed"
/// (the client sleeps on its doorbell: its burst is over), and a client whose requests come
/// later than the window gets one only now and then ([`crate::poll_window`]'s `ClientWindows`).
pub const DEFAULT_SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// How a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Keep polling without sleeping this long after serving a client's request, unless that
    /// request armed its doorbell (0: always sleep).
    pub spin: std::time::Duration,
    /// Serve under real-time scheduling where the process may ([`crate::realtime`]): for a
    /// producer that stands in for a hypervisor, whose hypercalls never wait for the host's
    /// scheduler. [`Server::realtime`] says whether it was granted.
    pub realtime: bool,
    /// Serve each client on the CPUs whose buffers it consumes, where this machine has them:
    /// its thread moves there when it begins consuming one. For a producer whose buffer `n` is
    /// written on CPU `n` (as a hypervisor's are, for its physical CPUs) and a consumer reading
    /// each CPU from that CPU: a hypervisor runs a hypercall on the CPU that makes it, so the
    /// swap answers without waking another CPU.
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

/// The socket path used when none is given: `$XDG_RUNTIME_DIR/hyptrace.sock`, or
/// `/tmp/hyptrace-<euid>/hyptrace.sock` (in a directory only this user may enter).
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("hyptrace.sock"),
        _ => PathBuf::from(format!("/tmp/hyptrace-{}", crate::users::euid())).join("hyptrace.sock"),
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
        let listener = bind(path)?;
        let stop = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(|e| Error::io("eventfd", e))?;
        let stop_rx = stop.try_clone().map_err(|e| Error::Io { what: "dup", source: e })?;
        let owners = Mutex::new(vec![None; producer.nr_cpus() as usize]);
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
        self.shared.owners.lock().get(cpu as usize).is_some_and(Option::is_some)
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

/// Creates, binds and listens on the socket at `path`.
fn bind(path: &Path) -> Result<OwnedFd, Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        prepare_dir(parent, path == default_socket_path())?;
    }
    let addr = SocketAddrUnix::new(path).map_err(|e| Error::path("socket path", path, e.into()))?;
    if path.exists() {
        let probe = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| Error::io("socket", e))?;
        match rustix::net::connect(&probe, &addr) {
            Ok(()) => {
                return Err(Error::path("serving", path, std::io::Error::from(std::io::ErrorKind::AddrInUse)));
            }
            // Nobody listens: a socket file left by a producer that died.
            Err(Errno::CONNREFUSED) => std::fs::remove_file(path).map_err(|e| Error::path("removing", path, e))?,
            Err(e) => return Err(Error::path("probing", path, e.into())),
        }
    }
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(|e| Error::io("socket", e))?;
    rustix::net::bind(&sock, &addr).map_err(|e| Error::path("binding", path, e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::path("chmod", path, e))?;
    rustix::net::listen(&sock, 16).map_err(|e| Error::path("listening on", path, e.into()))?;
    Ok(sock)
}

/// Creates the socket's directory (mode 0700) if missing. The default directory, when it
/// exists, must be private to us ([`crate::socket_dir::check_private_dir`]), or someone could
/// swap the socket.
fn prepare_dir(dir: &Path, is_default: bool) -> Result<(), Error> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) if is_default => crate::socket_dir::check_private_dir(dir),
        Ok(_) => Ok(()),
        Err(_) => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::path("creating", parent, e))?;
            }
            // Created closed (the umask only takes bits away), so it is never open to others.
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::path("chmod", dir, e)),
                // Created by someone else meanwhile: judged as any existing directory.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && is_default => {
                    crate::socket_dir::check_private_dir(dir)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(Error::path("creating", dir, e)),
            }
        }
    }
}

/// What the acceptor and every client's thread share.
struct Shared {
    producer: Arc<dyn Producer>,
    /// The client consuming each CPU.
    owners: Mutex<Vec<Option<u64>>>,
    options: ServerOptions,
    /// The serving threads: which are busy, which wait.
    workers: Mutex<Workers>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("owners", &*self.owners.lock()).finish_non_exhaustive()
    }
}

impl Shared {
    /// Takes `cpu` for `client` unless another client consumes it (`None` then): `Some(false)`
    /// if `client` owned it already, `Some(true)` if it takes it now.
    fn claim(&self, cpu: u32, client: u64) -> Option<bool> {
        let mut owners = self.owners.lock();
        let owner = owners.get_mut(cpu as usize)?;
        match *owner {
            Some(o) if o != client => None,
            Some(_) => Some(false),
            None => {
                *owner = Some(client);
                Some(true)
            }
        }
    }

    /// The CPUs `client` consumes.
    fn owned_by(&self, client: u64) -> Vec<u32> {
        let owners = self.owners.lock();
        owners.iter().enumerate().filter(|(_, o)| **o == Some(client)).map(|(cpu, _)| cpu as u32).collect()
    }

    /// Frees the CPUs `client` consumed, disarming their doorbells.
    fn release(&self, client: u64) {
        let mut owners = self.owners.lock();
        for (cpu, owner) in owners.iter_mut().enumerate() {
            if *owner == Some(client) {
                *owner = None;
                self.producer.disarm_doorbell(cpu as u32);
            }
        }
    }
}

/// The thread that accepts connections, each served by a thread of its own: an idle one when
/// there is one ([`serve_connections`]), else a new one.
struct Acceptor {
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
    fn new(listener: OwnedFd, stop: OwnedFd, shared: Arc<Shared>) -> Self {
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

    fn run(mut self) {
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
            let same_user = rustix::net::sockopt::socket_peercred(&fd).is_ok_and(|cred| cred.uid.as_raw() == self.euid);
            if !same_user {
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
            let client = Client {
                fd,
                id: self.next_id,
                stop: Arc::clone(&self.stop),
                shared: Arc::clone(&self.shared),
                windows: ClientWindows::default(),
                budget: Bucket::new(self.shared.options.budget, std::time::Instant::now()),
                placed_on: Vec::new(),
            };
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

/// How long a thread whose connection ended waits for another before it ends.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The serving threads: how many serve a connection, which wait for one.
#[derive(Default)]
struct Workers {
    /// Connections being served.
    busy: usize,
    /// Each waiting thread and its channel, the last to go idle last.
    waiting: Vec<(std::thread::ThreadId, std::sync::mpsc::Sender<Client>)>,
    /// The server is stopping: no thread goes idle.
    stopping: bool,
}

/// A serving thread: serves `first`, then each connection the acceptor hands it while it waits
/// idle (starting a thread costs about 100 µs here, several round trips, and a client that
/// connects for one question, as `trace-reader stats` does, would pay it every time), until it
/// has waited [`IDLE_WAIT`] for nothing or the server stops. Between connections it goes back to
/// the CPUs it was started on.
fn serve_connections(shared: &Shared, first: Client) {
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

/// One connection, served by a thread of its own.
struct Client {
    fd: OwnedFd,
    id: u64,
    stop: Arc<OwnedFd>,
    shared: Arc<Shared>,
    /// While one is open, its next request is expected soon: poll for it instead of sleeping.
    windows: ClientWindows,
    /// What it may still ask for before its requests wait.
    budget: Bucket,
    /// The CPUs this thread was moved to ([`ServerOptions::on_consumed_cpus`]).
    placed_on: Vec<u32>,
}

impl Client {
    fn run(mut self) {
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
        self.shared.release(self.id);
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
        let mut buf = [0u8; 64];
        // No room for ancillary data: descriptors a client sends are discarded by the kernel.
        let mut no_fds = RecvAncillaryBuffer::default();
        let got = rustix::net::recvmsg(
            &self.fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut no_fds,
            RecvFlags::TRUNC | RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        );
        let len = match got {
            Ok(msg) if msg.bytes == 0 => return Served::Gone, // end of file
            Ok(msg) => msg.bytes,
            Err(Errno::AGAIN | Errno::INTR) => return Served::Awake,
            Err(_) => return Served::Gone,
        };
        // A message longer than the buffer was truncated; `len` still says how long it was, so it
        // fails `Request::parse`'s size check below.
        let bytes = &buf[..len.min(buf.len())];
        let (req, mut answer, claimed) = match Request::parse(bytes) {
            Ok(req) if len == size_of::<Request>() => {
                let (answer, claimed) = answer(&self.shared, self.id, &req);
                (req, answer, claimed)
            }
            _ => (echo_of(bytes), OutgoingAnswer::status(status::EPROTO), false),
        };
        // Descriptors only to a client that read every earlier answer: at most one answer with
        // descriptors in flight per connection ([`crate::unread_answers`]).
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
        let cpus = self.shared.owned_by(self.id);
        if cpus != self.placed_on && crate::affinity::run_on(&cpus).is_ok_and(|on| !on.is_empty()) {
            self.placed_on = cpus;
        }
    }
}

/// An answer to send back to a client: status, body, file descriptors.
struct OutgoingAnswer<'p> {
    status: i32,
    body: Vec<u8>,
    fds: Vec<BorrowedFd<'p>>,
    /// The client sleeps on its doorbell after this answer: no request is due from it soon.
    sleeps: bool,
    /// A GET_READER_PAGE answer that swapped in a new reader page.
    swapped: bool,
}

impl<'p> OutgoingAnswer<'p> {
    fn status(status: i32) -> Self {
        Self { status, body: Vec::new(), fds: Vec::new(), sleeps: false, swapped: false }
    }

    fn body(body: &(impl IntoBytes + zerocopy::Immutable)) -> Self {
        Self { status: status::OK, body: body.as_bytes().to_vec(), fds: Vec::new(), sleeps: false, swapped: false }
    }
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

/// Answers a well-formed request of `client`; true with it if the client began consuming a CPU.
fn answer<'p>(shared: &'p Shared, client: u64, req: &Request) -> (OutgoingAnswer<'p>, bool) {
    let producer = &*shared.producer;
    let Some(op) = Op::from_wire(req.op) else {
        return (OutgoingAnswer::status(status::ENOTTY), false);
    };
    let cpu_ok = req.cpu < producer.nr_cpus();
    let answer = match op {
        Op::Hello => {
            let hello = HelloBody::new(producer.nr_cpus(), producer.config(), producer.formats().len());
            let mut answer = OutgoingAnswer::body(&hello);
            if req.arg != u64::from(hello.version) {
                answer.status = status::EPROTO;
            }
            answer
        }
        Op::Clock => OutgoingAnswer::body(&producer.clock()),
        Op::Formats => {
            let formats = producer.formats();
            match usize::try_from(req.arg).ok().filter(|&at| at <= formats.len()) {
                Some(at) => OutgoingAnswer {
                    status: status::OK,
                    body: formats[at..].iter().take(MAX_BODY).copied().collect(),
                    fds: Vec::new(),
                    sleeps: false,
                    swapped: false,
                },
                None => OutgoingAnswer::status(status::EINVAL),
            }
        }
        _ if !cpu_ok => OutgoingAnswer::status(status::EINVAL),
        Op::GetCpu => {
            let (file, doorbell) = producer.cpu_fds(req.cpu);
            let layout = CpuLayout { geometry: producer.config().geometry };
            let mut answer = OutgoingAnswer::body(&CpuBody { file_size: layout.file_size() as u64, _reserved: 0 });
            answer.fds = vec![file, doorbell];
            answer
        }
        Op::Stats => {
            producer.stats(req.cpu).map_or(OutgoingAnswer::status(status::EBUSY), |s| OutgoingAnswer::body(&s))
        }
        Op::GetReaderPage | Op::Wait => {
            let Some(newly) = shared.claim(req.cpu, client) else {
                return (OutgoingAnswer::status(status::EBUSY), false);
            };
            if op == Op::Wait {
                let pages = u32::try_from(req.arg).unwrap_or(u32::MAX);
                let arming = producer.arm_doorbell(req.cpu, pages);
                return (
                    OutgoingAnswer { sleeps: !arming.ready, ..OutgoingAnswer::body(&WaitBody::from(arming)) },
                    newly,
                );
            }
            let Ok(read) = u32::try_from(req.arg) else {
                return (OutgoingAnswer::status(status::EINVAL), newly);
            };
            let answer = match producer.swap_reader_page(req.cpu, read) {
                Ok(update) => OutgoingAnswer {
                    swapped: update.status == SwapStatus::Swapped,
                    ..OutgoingAnswer::body(&ReaderBody::from(update))
                },
                Err(e) if e.is_bad_read() => OutgoingAnswer::status(status::EINVAL),
                Err(_) => OutgoingAnswer::status(status::EBUSY),
            };
            return (answer, newly);
        }
    };
    (answer, false)
}

/// The op and cpu to echo in the answer to a malformed message (what of them could be read).
pub(crate) fn echo_of(bytes: &[u8]) -> Request {
    let word = |at: usize| bytes.get(at..at + 4).map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    Request { magic: word(0), op: word(4), cpu: word(8), _reserved0: 0, arg: 0, _reserved1: 0 }
}

/// Sends one answer. False if the client must be dropped (gone, or not reading its answers).
fn send_answer(fd: BorrowedFd<'_>, req: &Request, answer: &OutgoingAnswer<'_>) -> bool {
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
