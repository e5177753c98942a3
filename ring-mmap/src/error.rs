//! Errors of ring-mmap.

use crate::client::{MAX_CPUS, MAX_FORMATS_LEN};
use crate::wire::{ClockBody, MAX_RESPONSE, Op, PROTOCOL_VERSION, WireError};
use ring_core::Geometry;
use std::path::{Path, PathBuf};

/// What can go wrong producing, serving or consuming a shared buffer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file or socket path could not be used.
    #[error("{what} {}: {source}", path.display())]
    Path {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A producer was configured with no CPUs.
    #[error("a producer needs at least one CPU: set ProducerConfig::nr_cpus to 1 or more")]
    NoCpus,
    /// The producer answered a request in a way the protocol does not allow.
    #[error("the producer's answer to {op:?} breaks the protocol: {problem}; {FAULTY_PRODUCER}")]
    BadAnswer {
        /// The request answered.
        op: Op,
        /// What is wrong with the answer.
        problem: AnswerProblem,
    },
    /// The connection fell out of step (after a timeout or a malformed answer) and no longer
    /// sends requests: an answer still on its way could be taken for a later request's.
    #[error(
        "not sending {op:?}: this connection fell out of step after an earlier timeout or malformed \
         answer, and a late answer could be taken for this one; open a new connection"
    )]
    OutOfStep {
        /// The request not sent.
        op: Op,
    },
    /// The producer's handshake (its HELLO answer) describes what this consumer cannot read.
    #[error("cannot accept the producer's handshake: {0}")]
    BadHandshake(HandshakeProblem),
    /// A buffer's memory or file does not have the size, layout or seals it must have.
    #[error("cannot read the buffer: {0}")]
    BadBuffer(BufferProblem),
    /// A file of a buffer directory read post-mortem is not what a producer leaves there.
    #[error(
        "cannot recover {}: {problem}; a hyptrace producer leaves no such file: check that its directory \
         is a producer's buffer directory, and that nothing else wrote to it",
        path.display()
    )]
    BadDirFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: DirFileProblem,
    },
    /// A page that the buffer's writer named (its producer in an answer or its meta area, or the
    /// kernel in its meta page) does not exist.
    #[error(
        "cpu {cpu}: {role} is sub-buffer {id}, which does not exist (the buffer has {nr_subbufs} \
         sub-buffers); {FAULTY_WRITER}"
    )]
    NoSuchPage {
        /// CPU.
        cpu: u32,
        /// The sub-buffer id named.
        id: u32,
        /// How many sub-buffers the buffer has.
        nr_subbufs: u32,
        /// What the page was named as.
        role: PageRole,
    },
    /// A reader page was said to be read further than it holds, or to a position no event starts
    /// at (one not 4-byte aligned).
    #[error(
        "cpu {cpu}: reader page {id} was said to be read to {read}, past its commit of {commit} bytes \
         or not at a 4-byte boundary; {FAULTY_WRITER}"
    )]
    BadReadPosition {
        /// CPU.
        cpu: u32,
        /// Sub-buffer id of the reader page.
        id: u32,
        /// The read position given.
        read: u32,
        /// The bytes committed on the page.
        commit: u32,
    },
    /// A message was malformed.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// The producer refused a request.
    #[error("producer refused {op:?} for cpu {cpu}: {}{}", std::io::Error::from_raw_os_error(-status), refusal_hint(*op, *status))]
    Refused {
        /// The request.
        op: Op,
        /// Its CPU.
        cpu: u32,
        /// The negative errno it answered.
        status: i32,
    },
    /// The producer has gone (its socket closed).
    #[error("the producer has gone away")]
    Hangup,
    /// The producer serves as many clients as it allows at once and closed this connection
    /// (`EUSERS`).
    #[error(
        "the producer already serves its maximum of clients at once; close another of its readers, or \
         retry once one has left"
    )]
    TooManyClients,
    /// A live producer holds this buffer file (it is not the post-mortem of a dead one, and no
    /// second producer may take it over).
    #[error("a running producer is using {}; read it through its control socket", .0.display())]
    ProducerAlive(PathBuf),
    /// A producer about to take a buffer directory over (`--force`) found its files open in
    /// post-mortem readers (which hold shared locks), not in a producer.
    #[error(
        "{} is being read post-mortem by process {pid} (a `trace-reader recover` or the like): let it \
         finish, or stop it, before a producer takes the directory over",
        path.display()
    )]
    BeingRecovered {
        /// The buffer file.
        path: PathBuf,
        /// A process holding it open for reading.
        pid: u32,
    },
    /// A process of another user holds a lock on this buffer file: it may be that user's
    /// producer, or anything of theirs that opened the file; it is not this user's producer.
    #[error(
        "{} is locked by process {pid}, which runs as uid {uid}, another user: not a producer of \
         yours (if it is theirs, read it through their producer's control socket; otherwise use \
         a directory of your own)",
        path.display()
    )]
    LockedByAnotherUser {
        /// The buffer file.
        path: PathBuf,
        /// The process holding the lock (as `/proc/locks` names it).
        pid: u32,
        /// The uid it runs as.
        uid: u32,
    },
    /// A buffer file this user may not read: it belongs to another user.
    #[error("cannot open {}: it belongs to uid {owner} (mode {mode:04o}); read it as that user", path.display())]
    AnotherUsersFile {
        /// The file, or the directory that could not be entered.
        path: PathBuf,
        /// Its owner's uid.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// A producer's buffer directory that is not safe to write in: another user could replace
    /// or read what the producer puts there.
    #[error(
        "refusing the buffer directory {}: {problem}; use a directory only you can write: one of \
         yours with mode 0700 (chmod 0700 {}), or a path that does not exist yet (it is created so)",
        path.display(),
        path.display()
    )]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: Unsafety,
    },
    /// A file in a producer's buffer directory that the producer will not write: not a regular
    /// file of this user's with a single name.
    #[error(
        "refusing {}: {problem}; a buffer directory must hold only your own regular files: remove \
         it, or use another directory",
        path.display()
    )]
    UnsafeFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: Unsafety,
    },
    /// A producer's buffer directory holds the buffers of a producer that has gone, which
    /// starting this one would destroy.
    #[error(
        "{} holds the buffers of a producer that has gone: read them with `trace-reader recover \
         {}`, then remove them (its cpuN files), or pass --force to overwrite them",
        path.display(),
        path.display()
    )]
    DirHoldsBuffers {
        /// The directory.
        path: PathBuf,
    },
    /// A buffer file whose meta area was never written: most likely its producer died while
    /// creating it, and nothing was ever recorded in it.
    #[error(
        "{} is not an initialised hyptrace buffer (its meta area is blank): its producer most \
         likely died while creating it, before recording anything",
        path.display()
    )]
    NotInitialised {
        /// The file.
        path: PathBuf,
    },
    /// The socket's directory could be changed by a user other than this one and root, so
    /// whatever listens there may not be the producer it seems ([`crate::socket_dir`]).
    #[error(
        "not trusting the socket directory {}: {problem}; another user could have put the socket \
         there (a control socket's directory must be a real directory of this user or root that \
         others cannot write to, the default one mode 0700: remove it and let the producer create \
         it, or put the socket in a directory of your own)",
        path.display()
    )]
    UntrustedDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: Unsafety,
    },
    /// The process listening on the socket runs as another user than this one or root: its
    /// buffers and answers could be forged.
    #[error(
        "the producer at {} runs as uid {uid}, neither this user nor root: not trusting it \
         (read a producer as the user it runs as, and find out who put this socket there)",
        path.display()
    )]
    UntrustedPeer {
        /// The socket path.
        path: PathBuf,
        /// The listening process's uid (`SO_PEERCRED`).
        uid: u32,
    },
    /// The producer's listen backlog stayed full until the connection's deadline.
    #[error("the producer at {} is not accepting connections (its backlog is full); try again", .0.display())]
    Backlog(PathBuf),
    /// A buffer file this process maps shrank: its mapping no longer shows the producer's data
    /// ([`crate::truncation`]).
    #[error(
        "the buffer file {} shrank while mapped: another process truncated it, so what was read \
         from it is unreliable (keep other users from writing to the producer's buffer directory, \
         or let the producer use memfds)",
        .0.display()
    )]
    Truncated(PathBuf),
    /// The producer did not answer in time.
    #[error("the producer did not answer {0:?} in time")]
    Timeout(Op),
    /// The buffer's memory does not describe a usable buffer.
    #[error("unusable buffer: {0}")]
    View(#[from] ring_core::ViewError),
    /// A reader page did not decode.
    #[error("reader page {id} of cpu {cpu} is malformed: {error}")]
    Malformed {
        /// CPU.
        cpu: u32,
        /// Sub-buffer id.
        id: u32,
        /// What was wrong.
        error: ring_core::DecodeError,
    },
    /// The buffer cannot do this (e.g. a non-consuming snapshot of a kernel buffer).
    #[error(transparent)]
    Snapshot(#[from] ring_core::SnapshotError),
    /// The producer's buffers could not be built.
    #[error(transparent)]
    Geometry(#[from] ring_core::GeometryError),
}

impl Error {
    pub(crate) fn io(what: &'static str, errno: rustix::io::Errno) -> Self {
        Error::Io { what, source: errno.into() }
    }

    pub(crate) fn path(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Path { what, path: path.to_path_buf(), source }
    }

    /// The errno of a refused request, if this is one.
    pub fn refused_errno(&self) -> Option<i32> {
        match self {
            Error::Refused { status, .. } => Some(-status),
            _ => None,
        }
    }
}

/// What to do about a producer that breaks the protocol.
const FAULTY_PRODUCER: &str = "the producer is faulty: report this to its maintainers";

/// What is wrong with a producer's answer ([`Error::BadAnswer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerProblem {
    /// It answers for another CPU than the request's.
    #[error("it is for cpu {answered}, the request for cpu {asked}")]
    OtherCpu {
        /// The request's CPU.
        asked: u32,
        /// The answer's CPU.
        answered: u32,
    },
    /// It is longer than any answer may be.
    #[error("it is {len} bytes long, more than the {MAX_RESPONSE} an answer may be")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Its header announces another number of descriptors than came with it.
    #[error("it announces {announced} descriptors, and {received} came")]
    Descriptors {
        /// The descriptors its header announces.
        announced: u32,
        /// The descriptors received.
        received: usize,
    },
    /// FORMATS gave no more bytes before the length the handshake announced.
    #[error("the event formats end at byte {end} of the {len} the handshake announced")]
    FormatsEnd {
        /// Bytes received.
        end: usize,
        /// Bytes announced.
        len: usize,
    },
    /// GET_CPU handed over other descriptors than a CPU's buffer and doorbell, or a buffer of
    /// another size than the handshake announced.
    #[error(
        "it hands over {descriptors} descriptors for cpu {cpu}'s buffer of {file_size} bytes, where 2 \
         (the buffer and its doorbell) and {announced} bytes (as the handshake announced) are expected"
    )]
    CpuFile {
        /// The CPU asked for.
        cpu: u32,
        /// The descriptors received.
        descriptors: usize,
        /// The buffer's size the answer gives.
        file_size: u64,
        /// The buffer's size the handshake announced.
        announced: u64,
    },
    /// GET_READER_PAGE gave a swap status that does not exist.
    #[error("it gives cpu {cpu}'s reader page the unknown swap status {status}")]
    SwapStatus {
        /// The CPU asked for.
        cpu: u32,
        /// The status given.
        status: u32,
    },
}

/// What in a producer's handshake this consumer cannot accept ([`Error::BadHandshake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeProblem {
    /// It speaks another protocol version.
    #[error(
        "it speaks protocol version {producer}, this consumer {PROTOCOL_VERSION}: read the producer with \
         a consumer of the producer's hyptrace release"
    )]
    Version {
        /// The producer's protocol version.
        producer: u32,
    },
    /// It describes no CPUs, or more than a consumer accepts.
    #[error("it describes {nr_cpus} CPUs, where 1 to {MAX_CPUS} are accepted; {FAULTY_PRODUCER}")]
    NrCpus {
        /// The CPUs it describes.
        nr_cpus: u32,
    },
    /// It announces event formats larger than a consumer accepts.
    #[error(
        "it announces {len} bytes of event formats, more than the {MAX_FORMATS_LEN} accepted; give the \
         producer fewer event formats"
    )]
    FormatsTooLarge {
        /// The length announced.
        len: u64,
    },
    /// It names a buffer mode that does not exist.
    #[error("it names the unknown buffer mode {mode}; {FAULTY_PRODUCER}")]
    Mode {
        /// The mode's wire number.
        mode: u32,
    },
    /// Its sizes disagree with one another.
    #[error(
        "its sizes disagree: meta page {meta_page_size}, file {cpu_file_size}, {nr_subbufs} x \
         {subbuf_size} sub-buffers (a CPU's file must be its meta page, a multiple of 4096 bytes that \
         holds the meta area, followed by the sub-buffers); {FAULTY_PRODUCER}"
    )]
    Sizes {
        /// The meta page's size.
        meta_page_size: u32,
        /// A CPU file's size.
        cpu_file_size: u64,
        /// The number of sub-buffers.
        nr_subbufs: u32,
        /// A sub-buffer's size.
        subbuf_size: u32,
    },
}

/// What is wrong with a buffer's memory or file ([`Error::BadBuffer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufferProblem {
    /// The meta area asked for cannot start the mapping: not a whole number of pages, or longer
    /// than the mapping.
    #[error(
        "a meta area of {meta_size} bytes cannot start a {len}-byte mapping: it must be a multiple of \
         4096 bytes no longer than the mapping; map the buffer with the sizes its producer or the \
         kernel gives"
    )]
    MetaLayout {
        /// The meta area's size asked for.
        meta_size: usize,
        /// The mapping's length asked for.
        len: usize,
    },
    /// The file is shorter than the buffer it should hold.
    #[error(
        "the buffer file has {size} bytes, where {expected} are needed: it was cut short, or its size \
         is misdescribed (by its meta area, or by its producer's handshake); it cannot be mapped"
    )]
    FileTooShort {
        /// The file's size.
        size: u64,
        /// The size the buffer needs.
        expected: usize,
    },
    /// A producer's memfd is not sealed against shrinking: it could vanish under the mapping.
    #[error(
        "the buffer memfd can still be shrunk (F_SEAL_SHRINK missing), which would crash its readers: \
         a producer must seal its memfds (docs/abi.md §1); {FAULTY_PRODUCER}"
    )]
    Unsealed,
    /// A producer's CPU buffer has no hyptrace meta extension, which the handshake promises.
    #[error("cpu {cpu}'s meta area has no hyptrace meta extension, which its handshake promises; {FAULTY_PRODUCER}")]
    NoExtension {
        /// The CPU.
        cpu: u32,
    },
    /// A producer's CPU buffer has another geometry than the handshake announced.
    #[error(
        "cpu {cpu}'s meta area describes {geometry:?}, where the handshake announced {announced:?}; {FAULTY_PRODUCER}"
    )]
    NotAsAnnounced {
        /// The CPU.
        cpu: u32,
        /// The geometry the meta area describes.
        geometry: Geometry,
        /// The geometry the handshake announced.
        announced: Geometry,
    },
    /// The meta area changed the buffer's geometry while a consumer read it.
    #[error(
        "cpu {cpu}'s meta area changed the buffer's geometry from {from:?} to {to:?} while it was read; {FAULTY_WRITER}"
    )]
    GeometryChanged {
        /// The CPU.
        cpu: u32,
        /// The geometry when consuming began.
        from: Geometry,
        /// The geometry the meta area describes now.
        to: Geometry,
    },
    /// The kernel's meta page gives a size that is not a whole number of pages.
    #[error(
        "the kernel's meta page gives its size as {meta_size} bytes, not a multiple of 4096: this \
         kernel's trace_pipe_raw mapping is not one this reader knows; report this, naming the kernel"
    )]
    KernelMetaPage {
        /// The size it gives.
        meta_size: usize,
    },
    /// The kernel's meta page describes a buffer larger than the address space.
    #[error(
        "the kernel's meta page of {meta_size} bytes describes {geometry:?}, larger than the address \
         space: this kernel's trace_pipe_raw mapping is not one this reader knows; report this, naming \
         the kernel"
    )]
    KernelTooLarge {
        /// The meta page's size.
        meta_size: usize,
        /// The geometry it describes.
        geometry: Geometry,
    },
}

/// What is wrong with a file of a buffer directory read post-mortem ([`Error::BadDirFile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DirFileProblem {
    /// A formats or clock file larger than any a producer writes.
    #[error("it is larger than {MAX_FORMATS_LEN} bytes")]
    TooLarge,
    /// A CPU file shorter than the start of a meta area, where its geometry is.
    #[error("it is too short for a meta area ({len} bytes)")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// A CPU file whose meta area has no hyptrace meta extension, which a producer always writes.
    #[error("its meta area has no hyptrace meta extension")]
    NoExtension,
    /// A clock file of another size than a clock conversion.
    #[error("it has {len} bytes, where a clock conversion has {}", size_of::<ClockBody>())]
    ClockSize {
        /// Its length.
        len: usize,
    },
}

/// What to do about a buffer whose writer breaks its contract.
const FAULTY_WRITER: &str =
    "whatever writes this buffer (its producer, or the kernel) is faulty: report this to its maintainers";

/// What a page named by a buffer's writer was named as ([`Error::NoSuchPage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageRole {
    /// The reader page: in a GET_READER_PAGE answer, or the meta area's `reader.id`.
    #[error("the reader page")]
    Reader,
    /// A page the meta area lists for reading (its `data_index[]`), read after the producer
    /// stopped.
    #[error("a page the meta area lists")]
    Listed,
}

/// What makes a directory or file unfit to trust: a producer's buffer directory or a file in it
/// ([`Error::UnsafeDir`], [`Error::UnsafeFile`]), or a control socket's directory
/// ([`Error::UntrustedDir`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unsafety {
    /// It is a symbolic link, which could point anywhere.
    #[error("it is a symbolic link")]
    SymbolicLink,
    /// It is not a directory.
    #[error("it is not a directory")]
    NotADirectory,
    /// It is not a regular file (a file in the buffer directory).
    #[error("it is not a regular file")]
    NotARegularFile,
    /// It belongs to a user not trusted with it.
    #[error("it is owned by uid {owner}, not by this user (uid {euid})")]
    OwnedBy {
        /// Its owner's uid.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// Group or others have permissions on it (a directory that must be private).
    #[error("it is group- or world-accessible (mode {mode:04o})")]
    OpenToOthers {
        /// Its permission bits.
        mode: u32,
    },
    /// Group or others may write to it and it is not sticky: they could replace what is in it.
    #[error("its mode {mode:04o} lets group or others replace what is in it")]
    ReplaceableByOthers {
        /// Its permission bits.
        mode: u32,
    },
    /// In a directory others may write to (a sticky one), the control socket is not a socket.
    #[error("others may write to it, and the socket in it is not a socket")]
    NotASocket,
    /// In a directory others may write to (a sticky one), the control socket is another user's.
    #[error("others may write to it, and the socket in it belongs to uid {owner}")]
    ForeignSocket {
        /// The socket file's owner.
        owner: u32,
    },
    /// It has more than one name: another may be a file that must not be overwritten.
    #[error("it has {links} hard links (another name of it may be elsewhere)")]
    HardLinked {
        /// Its number of names.
        links: u64,
    },
}

/// What a refusal most likely means, where the errno alone does not say.
fn refusal_hint(op: Op, status: i32) -> &'static str {
    match (op, status) {
        (Op::GetReaderPage | Op::Wait, crate::wire::status::EBUSY) => {
            " (another client is consuming this CPU: each CPU has one consumer at a time, while \
             reads that do not consume, snapshots, need no claim)"
        }
        (Op::GetCpu, crate::wire::status::EBUSY) => {
            " (an earlier answer on this connection is still unread: descriptors are only sent to a \
             client that read every answer, so read each answer before sending the next request)"
        }
        (Op::Clock, crate::wire::status::EOPNOTSUPP) => {
            " (the producer cannot put its timestamps on that clock exactly, so its events cannot be \
             merged with a trace on it: record the other trace on a clock the producer offers, \
             such as the kernel's `mono`)"
        }
        _ => "",
    }
}
