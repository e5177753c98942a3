//! The consumer's end of the control socket.
//!
//! [`Connection::connect`] trusts only a producer that runs as this user or root: it checks the
//! socket's directory first ([`crate::socket_dir`]), then who listens on the socket
//! (`SO_PEERCRED`, else [`Error::UntrustedPeer`]). It connects without blocking, so a producer
//! whose listen backlog is full makes it wait a bounded time ([`CONNECT_TIMEOUT`], else
//! [`Error::Backlog`]), never forever. It then does the `HELLO` handshake and checks what the
//! producer describes;
//! [`Connection::open_cpu`] receives a CPU's buffer and doorbell descriptors and maps the buffer
//! read-only. Every answer is validated ([`crate::wire`]) before use. A producer that stops
//! answering is reported as [`Error::Timeout`] (the connection is then unusable: answers could
//! arrive out of step), one that went away as [`Error::Hangup`].

use crate::backing::ReadOnlyMapping;
use crate::error::{AnswerProblem, Error, HandshakeProblem};
use crate::poll_window::PollWindow;
use crate::wire::{
    ClockBody, CpuBody, HelloBody, MAX_FDS, MAX_RESPONSE, Op, PROTOCOL_VERSION, Request, ResponseHeader, StatsBody,
    control_address, control_socket, parse_body, status,
};
use parking_lot::Mutex;
use ring_core::{ClockParams, Geometry, Mode, Stats, TraceClock};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendFlags, SocketFlags};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

/// How long a request may wait for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Connection::connect`] waits for room in a producer's full listen backlog.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client pauses between attempts to connect while the listen backlog is full.
const BACKLOG_RETRY: Duration = Duration::from_millis(5);

/// How long a client polls for an answer before it sleeps, by default (see
/// [`crate::poll_window`], which says why it is short).
pub const DEFAULT_ANSWER_SPIN: Duration = Duration::from_micros(10);

/// Most CPUs a producer may describe.
pub const MAX_CPUS: u32 = 4096;

/// Largest event-format description a producer may announce (the formats of thousands of
/// events take a few hundred KiB): more is refused rather than allocated.
pub const MAX_FORMATS_LEN: u64 = 64 << 20;

/// The events to poll [`Connection::hangup_fd`] for.
pub const HANGUP_POLL: rustix::event::PollFlags = rustix::event::PollFlags::RDHUP;

/// True if `revents` of a poll on [`Connection::hangup_fd`] mean the producer has gone.
pub fn is_hangup(revents: rustix::event::PollFlags) -> bool {
    use rustix::event::PollFlags;
    revents.intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
}

/// An answer received from the producer: its header, body and attached descriptors.
#[derive(Debug)]
pub struct ReceivedAnswer {
    /// The header.
    pub header: ResponseHeader,
    /// The body.
    pub body: Vec<u8>,
    /// Descriptors received with it.
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    /// Set after a timeout or a malformed answer: later answers could be out of step.
    broken: bool,
    /// How long to poll for an answer before sleeping.
    spin: Duration,
}

/// A connection to a producer's control socket.
#[derive(Debug)]
pub struct Connection {
    socket: Mutex<Socket>,
    /// A second descriptor of the socket, to poll for hangup without holding the lock.
    hangup: OwnedFd,
    hello: HelloBody,
    geometry: Geometry,
    path: PathBuf,
    /// The producer's process id, as this process's pid namespace sees it (`SO_PEERCRED`).
    producer_pid: u32,
}

impl Connection {
    /// Connects to the producer serving `path` and does the handshake (see the module: the
    /// directory and the listening process must be trusted; a full listen backlog is waited for
    /// up to [`CONNECT_TIMEOUT`]). A socket or directory that does not exist yet, or a socket
    /// nobody listens on, is an [`Error::Path`] (of kind `NotFound` or `ConnectionRefused`).
    pub fn connect(path: &Path) -> Result<Arc<Self>, Error> {
        Self::connect_within(path, CONNECT_TIMEOUT)
    }

    /// [`Connection::connect`], waiting at most `timeout` for room in a full listen backlog.
    pub fn connect_within(path: &Path, timeout: Duration) -> Result<Arc<Self>, Error> {
        crate::socket_dir::check_for_client(path)?;
        let fd = connect_socket(path, Instant::now() + timeout)?;
        let peer = rustix::net::sockopt::socket_peercred(&fd).map_err(|e| Error::io("SO_PEERCRED", e))?;
        if !crate::users::is_trusted_uid(peer.uid.as_raw()) {
            return Err(Error::UntrustedPeer { path: path.to_path_buf(), uid: peer.uid.as_raw() });
        }
        rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(ANSWER_TIMEOUT))
            .map_err(|e| Error::io("SO_RCVTIMEO", e))?;
        let socket = Mutex::new(Socket { fd, broken: false, spin: DEFAULT_ANSWER_SPIN });
        let answer = call(&socket, Request::new(Op::Hello, 0, u64::from(PROTOCOL_VERSION)), true)?;
        // A producer that refuses the handshake may still say which version it speaks.
        let hello = match (answer.header.status, parse_body::<HelloBody>(&answer.body)) {
            (_, Ok(hello)) if hello.version != PROTOCOL_VERSION => {
                return Err(Error::BadHandshake(HandshakeProblem::Version { producer: hello.version }));
            }
            (status::OK, body) => body?,
            (refusal, _) => return Err(Error::Refused { op: Op::Hello, cpu: 0, status: refusal }),
        };
        let geometry = check_hello(&hello)?;
        let hangup = socket.lock().fd.try_clone().map_err(|e| Error::Io { what: "dup", source: e })?;
        let producer_pid = peer.pid.as_raw_nonzero().get().unsigned_abs();
        Ok(Arc::new(Self { socket, hangup, hello, geometry, path: path.to_path_buf(), producer_pid }))
    }

    /// Sets how long to poll for an answer before sleeping (0: sleep at once).
    pub fn set_answer_spin(&self, spin: Duration) {
        self.socket.lock().spin = spin;
    }

    /// What the producer exports.
    pub fn hello(&self) -> &HelloBody {
        &self.hello
    }

    /// The producer's process id in this process's pid namespace (from `SO_PEERCRED` when it
    /// connected): where its threads' names are, in `/proc/PID/task/`.
    pub fn producer_pid(&self) -> u32 {
        self.producer_pid
    }

    /// The per-CPU buffers' geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket, to poll for hangup with [`HANGUP_POLL`]: it reports `POLLRDHUP`/`POLLHUP` when
    /// the producer goes away. Do not poll it for `POLLIN`: while another thread waits for an
    /// answer on this shared connection, the socket is readable without any hangup.
    pub fn hangup_fd(&self) -> BorrowedFd<'_> {
        self.hangup.as_fd()
    }

    /// True once the producer has gone (its end of the socket is closed), without waiting.
    pub fn hung_up(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(&self.hangup, HANGUP_POLL)];
        let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        rustix::event::poll(&mut fds, Some(&now)).is_ok() && is_hangup(fds[0].revents())
    }

    /// Sends a request and returns its answer; a negative status is [`Error::Refused`].
    pub fn call(&self, op: Op, cpu: u32, arg: u64) -> Result<ReceivedAnswer, Error> {
        call(&self.socket, Request::new(op, cpu, arg), false)
    }

    /// Sends a raw message and returns the raw answer, status unchecked (for tests of the server's
    /// handling of malformed input).
    pub fn call_raw(&self, message: &[u8], op: Op) -> Result<ReceivedAnswer, Error> {
        let mut socket = self.socket.lock();
        send(&socket.fd, message)?;
        receive(&mut socket, op)
    }

    /// CPU `cpu`'s counters, as the producer sees them.
    pub fn stats(&self, cpu: u32) -> Result<Stats, Error> {
        Ok(parse_body::<StatsBody>(&self.call(Op::Stats, cpu, 0)?.body)?)
    }

    /// The conversion of the producer's raw timestamps to nanoseconds of `target`; refused
    /// (`EOPNOTSUPP`) by a producer that cannot relate its clock to `target`.
    pub fn clock(&self, target: TraceClock) -> Result<ClockParams, Error> {
        Ok(parse_body::<ClockBody>(&self.call(Op::Clock, 0, u64::from(target.to_wire()))?.body)?)
    }

    /// The event-format descriptions, fetched in chunks.
    pub fn formats(&self) -> Result<Vec<u8>, Error> {
        let len = usize::try_from(self.hello.formats_len)
            .map_err(|_| Error::BadHandshake(HandshakeProblem::FormatsTooLarge { len: self.hello.formats_len }))?;
        let mut out = Vec::with_capacity(len.min(1 << 24));
        while out.len() < len {
            let chunk = self.call(Op::Formats, 0, out.len() as u64)?.body;
            if chunk.is_empty() {
                return Err(Error::BadAnswer {
                    op: Op::Formats,
                    problem: AnswerProblem::FormatsEnd { end: out.len(), len },
                });
            }
            out.extend_from_slice(&chunk[..chunk.len().min(len - out.len())]);
        }
        Ok(out)
    }

    /// Receives CPU `cpu`'s buffer and doorbell and maps the buffer read-only.
    pub fn open_cpu(self: &Arc<Self>, cpu: u32) -> Result<crate::socket_cpu::SocketCpu, Error> {
        let mut answer = self.call(Op::GetCpu, cpu, 0)?;
        let body: CpuBody = parse_body(&answer.body)?;
        if answer.fds.len() != 2 || body.file_size != self.hello.cpu_file_size {
            let (descriptors, file_size, announced) = (answer.fds.len(), body.file_size, self.hello.cpu_file_size);
            let problem = AnswerProblem::CpuFile { cpu, descriptors, file_size, announced };
            return Err(Error::BadAnswer { op: Op::GetCpu, problem });
        }
        let doorbell = answer.fds.pop().expect("two descriptors");
        let file = answer.fds.pop().expect("two descriptors");
        let mapping =
            ReadOnlyMapping::new(file.as_fd(), self.hello.cpu_file_size as usize, self.hello.meta_page_size as usize)?;
        crate::socket_cpu::SocketCpu::new(self.clone(), cpu, mapping, doorbell)
    }
}

/// A new socket connected to `path`. Connecting does not block: a full listen backlog answers
/// `EAGAIN`, and is tried again until `deadline` ([`Error::Backlog`] then). The socket is left
/// blocking, for requests and answers.
fn connect_socket(path: &Path, deadline: Instant) -> Result<OwnedFd, Error> {
    let addr = control_address(path)?;
    let fd = control_socket(SocketFlags::NONBLOCK)?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Backlog(path.to_path_buf()));
                }
                std::thread::sleep(BACKLOG_RETRY.min(left));
            }
            Err(e) => return Err(Error::path("connecting to", path, e.into())),
        }
    }
    rustix::io::ioctl_fionbio(&fd, false).map_err(|e| Error::io("making the socket blocking", e))?;
    Ok(fd)
}

/// Checks a producer's description: a valid geometry and consistent sizes.
fn check_hello(hello: &HelloBody) -> Result<Geometry, Error> {
    if hello.nr_cpus == 0 || hello.nr_cpus > MAX_CPUS {
        return Err(Error::BadHandshake(HandshakeProblem::NrCpus { nr_cpus: hello.nr_cpus }));
    }
    if hello.formats_len > MAX_FORMATS_LEN {
        return Err(Error::BadHandshake(HandshakeProblem::FormatsTooLarge { len: hello.formats_len }));
    }
    if Mode::from_wire(hello.mode).is_none() {
        return Err(Error::BadHandshake(HandshakeProblem::Mode { mode: hello.mode }));
    }
    let geometry = Geometry::new(hello.subbuf_size, hello.nr_subbufs)?;
    let meta = hello.meta_page_size as usize;
    let expected = (meta as u64).checked_add(geometry.data_len() as u64);
    if !meta.is_multiple_of(4096) || meta < geometry.meta_size() || expected != Some(hello.cpu_file_size) {
        return Err(Error::BadHandshake(HandshakeProblem::Sizes {
            meta_page_size: hello.meta_page_size,
            cpu_file_size: hello.cpu_file_size,
            nr_subbufs: hello.nr_subbufs,
            subbuf_size: hello.subbuf_size,
        }));
    }
    Ok(geometry)
}

fn call(socket: &Mutex<Socket>, req: Request, accept_refusal: bool) -> Result<ReceivedAnswer, Error> {
    let op = Op::from_wire(req.op).expect("requests are built from an Op");
    let mut socket = socket.lock();
    if socket.broken {
        // A producer that went away since is reported as such, so callers read what it left.
        let mut fds = [rustix::event::PollFd::new(&socket.fd, HANGUP_POLL)];
        if rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok()
            && is_hangup(fds[0].revents())
        {
            return Err(Error::Hangup);
        }
        return Err(Error::OutOfStep { op });
    }
    send(&socket.fd, req.as_bytes())?;
    let answer = receive(&mut socket, op)?;
    if answer.header.cpu != req.cpu {
        socket.broken = true;
        return Err(Error::BadAnswer {
            op,
            problem: AnswerProblem::OtherCpu { asked: req.cpu, answered: answer.header.cpu },
        });
    }
    if answer.header.status == status::EUSERS {
        return Err(Error::TooManyClients);
    }
    if answer.header.status < 0 && !accept_refusal {
        return Err(Error::Refused { op, cpu: req.cpu, status: answer.header.status });
    }
    Ok(answer)
}

fn send(fd: &OwnedFd, message: &[u8]) -> Result<(), Error> {
    loop {
        match rustix::net::sendmsg(
            fd,
            &[IoSlice::new(message)],
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN) => return Err(Error::Hangup),
            Err(e) => return Err(Error::io("sending a request", e)),
        }
    }
}

fn receive(socket: &mut Socket, op: Op) -> Result<ReceivedAnswer, Error> {
    let mut buf = vec![0u8; MAX_RESPONSE];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let window = PollWindow::start(socket.spin);
    let got = loop {
        let polling = window.open();
        let flags = if polling { RecvFlags::DONTWAIT } else { RecvFlags::empty() };
        match rustix::net::recvmsg(
            &socket.fd,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC | flags,
        ) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if polling => window.pause(),
            Err(Errno::AGAIN) => {
                socket.broken = true;
                return Err(Error::Timeout(op));
            }
            Err(Errno::CONNRESET) => return Err(Error::Hangup),
            Err(e) => return Err(Error::io("receiving an answer", e)),
        }
    };
    // Take ownership of every descriptor received, so none leaks whatever happens next.
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if got.bytes == 0 {
        return Err(Error::Hangup);
    }
    if got.bytes > buf.len() {
        socket.broken = true;
        return Err(Error::BadAnswer { op, problem: AnswerProblem::TooLong { len: got.bytes } });
    }
    let parsed = ResponseHeader::parse(&buf[..got.bytes], op);
    let (header, body) = match parsed {
        Ok(p) => p,
        Err(e) => {
            socket.broken = true;
            return Err(e.into());
        }
    };
    if header.nr_fds as usize != fds.len() {
        let problem = AnswerProblem::Descriptors { announced: header.nr_fds, received: fds.len() };
        return Err(Error::BadAnswer { op, problem });
    }
    Ok(ReceivedAnswer { header, body: body.to_vec(), fds })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};

    /// A listener on `path` that accepts nothing, and connections filling its backlog.
    fn full_backlog(path: &Path) -> (OwnedFd, Vec<OwnedFd>) {
        let addr = SocketAddrUnix::new(path).unwrap();
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
        rustix::net::bind(&listener, &addr).unwrap();
        rustix::net::listen(&listener, 0).unwrap();
        let mut queued = Vec::new();
        loop {
            let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::NONBLOCK, None)
                .unwrap();
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => queued.push(fd),
                Err(Errno::AGAIN) => return (listener, queued),
                Err(e) => panic!("connecting: {e}"),
            }
            assert!(queued.len() < 100, "the backlog never filled");
        }
    }

    #[test]
    fn a_full_backlog_is_waited_for_until_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let (listener, _queued) = full_backlog(&path);
        let started = Instant::now();
        let refused = connect_socket(&path, started + Duration::from_millis(200));
        let took = started.elapsed();
        assert!(matches!(refused, Err(Error::Backlog(ref p)) if *p == path), "{refused:?}");
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(2), "{took:?}");

        // Room made while a client waits: it connects, and its socket blocks again.
        let accepting = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let accepted = rustix::net::accept(&listener).unwrap();
            (listener, accepted)
        });
        let fd = connect_socket(&path, Instant::now() + Duration::from_secs(5)).expect("room was made");
        let flags = rustix::fs::fcntl_getfl(&fd).unwrap();
        assert!(!flags.contains(rustix::fs::OFlags::NONBLOCK), "requests and answers block");
        drop(accepting.join().unwrap());
    }
}
