//! The control channel's wire format: fixed-size requests and responses on a `SOCK_SEQPACKET`
//! Unix socket (one message per request or response), host byte order.
//!
//! ```text
//!   request  (32 bytes)                     response (32-byte header + body, fds attached)
//!   0  u32 magic "HTRQ"                     0  u32 magic "HTRS"
//!   4  u32 op                               4  u32 op (echoed)
//!   8  u32 cpu                              8  i32 status: 0 or -errno
//!   12 u32 reserved, 0                      12 u32 cpu (echoed)
//!   16 u64 arg                              16 u32 body_len
//!   24 u64 reserved, 0                      20 u32 nr_fds (SCM_RIGHTS attached)
//!                                           24 u64 reserved, 0
//! ```
//!
//! Everything a peer sends is validated here before use: a message of the wrong size, with the
//! wrong magic or non-zero reserved fields is a [`WireError`], never a panic. `docs/abi.md`
//! documents every operation for implementers in other languages.
//!
//! Each number the messages carry for a named value is defined once, by its enum: [`Op`] here,
//! ring-core's [`ring_core::Mode`] and [`ring_core::SwapStatus`] (`to_wire`, `from_wire`), which
//! a hypervisor's own calls use too. Each body a producer answers with is made here, from the
//! ring-core value a [`crate::Producer`] returns (`HelloBody::new`, and `From` for the others;
//! the `CLOCK` body is ring-core's [`ClockParams`] itself), so producers never build one.

use crate::backing::CpuLayout;
use crate::error::Error;
use ring_core::{Arming, ClockParams, Config, ReaderUpdate, Stats};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::os::fd::OwnedFd;
use std::path::Path;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A new control-channel socket: a close-on-exec Unix `SOCK_SEQPACKET`, with `flags` besides
/// (`NONBLOCK` to bind or connect without waiting).
pub(crate) fn control_socket(flags: SocketFlags) -> Result<OwnedFd, Error> {
    rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC | flags, None)
        .map_err(|e| Error::io("socket", e))
}

/// The address of the control socket at `path`.
pub(crate) fn control_address(path: &Path) -> Result<SocketAddrUnix, Error> {
    SocketAddrUnix::new(path).map_err(|e| Error::path("socket path", path, e.into()))
}

/// `Request::magic`: "HTRQ" in little-endian.
pub const REQUEST_MAGIC: u32 = u32::from_le_bytes(*b"HTRQ");
/// `ResponseHeader::magic`: "HTRS" in little-endian.
pub const RESPONSE_MAGIC: u32 = u32::from_le_bytes(*b"HTRS");
/// Version of this protocol, exchanged in [`Op::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest response body (a chunk of [`Op::Formats`]).
pub const MAX_BODY: usize = 16 * 1024;
/// Largest response message.
pub const MAX_RESPONSE: usize = size_of::<ResponseHeader>() + MAX_BODY;
/// Most file descriptors one response carries.
pub const MAX_FDS: usize = 2;

/// Operations a consumer can ask for. Its discriminant is its number on the wire
/// ([`Op::to_wire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// `arg`: the client's protocol version. Body: [`HelloBody`].
    Hello = 1,
    /// `cpu`. Body: [`CpuBody`]; fds: the CPU's buffer (read-only) and its doorbell eventfd.
    GetCpu = 2,
    /// GET_READER_PAGE: `cpu`, `arg`: bytes of the reader page consumed. Body: [`ReaderBody`].
    GetReaderPage = 3,
    /// `cpu`. Body: [`StatsBody`].
    Stats = 4,
    /// Arms the CPU's doorbell: `cpu`, `arg`: watermark in finished pages. Body: [`WaitBody`].
    Wait = 5,
    /// `arg`: byte offset into the event-format descriptions. Body: up to [`MAX_BODY`] bytes.
    Formats = 6,
    /// Body: [`ClockBody`].
    Clock = 7,
}

impl Op {
    const ALL: [Self; 7] = [Op::Hello, Op::GetCpu, Op::GetReaderPage, Op::Stats, Op::Wait, Op::Formats, Op::Clock];

    /// The operation's number, in [`Request::op`] and [`ResponseHeader::op`].
    pub const fn to_wire(self) -> u32 {
        self as u32
    }

    /// The operation numbered `n`, if there is one.
    pub fn from_wire(n: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.to_wire() == n)
    }
}

/// A request.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Request {
    /// [`REQUEST_MAGIC`].
    pub magic: u32,
    /// An [`Op`].
    pub op: u32,
    /// The CPU the request is about (ignored by CPU-less operations).
    pub cpu: u32,
    /// Reserved, 0.
    pub _reserved0: u32,
    /// Operation argument.
    pub arg: u64,
    /// Reserved, 0.
    pub _reserved1: u64,
}

const _: () = assert!(size_of::<Request>() == 32);
const _: () = assert!(core::mem::offset_of!(Request, op) == 4);
const _: () = assert!(core::mem::offset_of!(Request, cpu) == 8);
const _: () = assert!(core::mem::offset_of!(Request, arg) == 16);

/// The fixed part of every response.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ResponseHeader {
    /// [`RESPONSE_MAGIC`].
    pub magic: u32,
    /// The request's op.
    pub op: u32,
    /// 0, or a negative errno (see [`status`]).
    pub status: i32,
    /// The request's cpu.
    pub cpu: u32,
    /// Bytes of body after this header.
    pub body_len: u32,
    /// File descriptors attached (SCM_RIGHTS).
    pub nr_fds: u32,
    /// Reserved, 0.
    pub _reserved: u64,
}

const _: () = assert!(size_of::<ResponseHeader>() == 32);
const _: () = assert!(core::mem::offset_of!(ResponseHeader, status) == 8);
const _: () = assert!(core::mem::offset_of!(ResponseHeader, body_len) == 16);
const _: () = assert!(core::mem::offset_of!(ResponseHeader, nr_fds) == 20);

/// [`Op::Hello`]'s answer: what the producer exports.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct HelloBody {
    /// The producer's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// CPUs (per-CPU buffers), numbered from 0.
    pub nr_cpus: u32,
    /// The buffers' [`ring_core::Mode`], by [`ring_core::Mode::to_wire`]: 0 overwrite, 1 drop.
    pub mode: u32,
    /// Bytes per sub-buffer, header included.
    pub subbuf_size: u32,
    /// Sub-buffers per CPU, reader page included.
    pub nr_subbufs: u32,
    /// Bytes of each CPU's meta area; the sub-buffers follow it in the CPU's file.
    pub meta_page_size: u32,
    /// Bytes of each CPU's file: `meta_page_size + subbuf_size * nr_subbufs`.
    pub cpu_file_size: u64,
    /// Bytes of the event-format descriptions ([`Op::Formats`]).
    pub formats_len: u64,
    /// Reserved, 0.
    pub _reserved: u64,
}

const _: () = assert!(size_of::<HelloBody>() == 48);
const _: () = assert!(core::mem::offset_of!(HelloBody, cpu_file_size) == 24);

impl HelloBody {
    /// The `HELLO` answer of a producer of `nr_cpus` buffers of `config`'s geometry and mode,
    /// each in a file laid out as [`CpuLayout`] says, publishing `formats_len` bytes of formats.
    pub fn new(nr_cpus: u32, config: Config, formats_len: usize) -> Self {
        let layout = CpuLayout { geometry: config.geometry };
        Self {
            version: PROTOCOL_VERSION,
            nr_cpus,
            mode: config.mode.to_wire(),
            subbuf_size: config.geometry.subbuf_size(),
            nr_subbufs: config.geometry.nr_subbufs(),
            meta_page_size: layout.meta_size() as u32,
            cpu_file_size: layout.file_size() as u64,
            formats_len: formats_len as u64,
            _reserved: 0,
        }
    }
}

/// [`Op::GetCpu`]'s answer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CpuBody {
    /// Bytes of the CPU's file (the first fd).
    pub file_size: u64,
    /// Reserved, 0.
    pub _reserved: u64,
}

const _: () = assert!(size_of::<CpuBody>() == 16);

/// [`Op::GetReaderPage`]'s answer: the reader page to read and from where.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ReaderBody {
    /// Sub-buffer id of the reader page.
    pub id: u32,
    /// Bytes of its data already consumed: decode from here to its `commit`.
    pub read: u32,
    /// Events lost between the previous reader page and this one (0 unless swapped).
    pub lost_events: u64,
    /// The swap's [`ring_core::SwapStatus`], by [`ring_core::SwapStatus::to_wire`]: 0 swapped
    /// in a new page; 1 kept (unread data left); 2 kept (the writer is on it).
    pub swap_status: u32,
    /// Reserved, 0.
    pub _reserved: u32,
}

const _: () = assert!(size_of::<ReaderBody>() == 24);
const _: () = assert!(core::mem::offset_of!(ReaderBody, lost_events) == 8);
const _: () = assert!(core::mem::offset_of!(ReaderBody, swap_status) == 16);

impl From<ReaderUpdate> for ReaderBody {
    fn from(u: ReaderUpdate) -> Self {
        Self { id: u.id, read: u.read, lost_events: u.lost_events, swap_status: u.status.to_wire(), _reserved: 0 }
    }
}

/// [`Op::Stats`]'s answer: the CPU's counters, exact as the producer sees them, in ring-core's
/// [`Stats`], whose layout is the ABI's (64 bytes, docs/abi.md §5).
pub type StatsBody = Stats;

/// [`Op::Wait`]'s answer.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct WaitBody {
    /// 1: the watermark is already reached, read now (the doorbell is not armed); 0: armed, the
    /// doorbell eventfd becomes readable when it is reached.
    pub ready: u32,
    /// Finished pages not yet given back, when answered.
    pub full_pages: u32,
}

const _: () = assert!(size_of::<WaitBody>() == 8);

impl From<Arming> for WaitBody {
    fn from(a: Arming) -> Self {
        Self { ready: u32::from(a.ready), full_pages: a.full_pages }
    }
}

/// [`Op::Clock`]'s answer: how to turn raw timestamps into nanoseconds. It is ring-core's
/// [`ClockParams`], whose `#[repr(C)]` layout is this body's (`mult`, `shift`, `epoch_raw`,
/// `epoch_ns`), with [`ClockParams::convert`] the conversion producers and consumers share.
pub type ClockBody = ClockParams;

const _: () = assert!(size_of::<ClockBody>() == 24);

/// Negative errno values carried in [`ResponseHeader::status`].
pub mod status {
    use super::Errno;
    /// Success.
    pub const OK: i32 = 0;
    /// Bad argument: no such CPU; a GET_READER_PAGE `read` past the reader page's commit, below
    /// what was given back of it, or not on a record boundary; formats offset too large.
    pub const EINVAL: i32 = -Errno::INVAL.raw_os_error();
    /// Another consumer owns this CPU, or a concurrent swap was in progress: retry later. To
    /// GET_CPU: the client has not read an earlier answer (descriptors go only to a client that
    /// read every answer).
    pub const EBUSY: i32 = -Errno::BUSY.raw_os_error();
    /// CLOCK: the producer cannot convert its timestamps to the clock asked for.
    pub const EOPNOTSUPP: i32 = -Errno::OPNOTSUPP.raw_os_error();
    /// Unknown operation.
    pub const ENOTTY: i32 = -Errno::NOTTY.raw_os_error();
    /// The producer serves its maximum of clients: this connection's first request is answered
    /// so, and the connection closed.
    pub const EUSERS: i32 = -Errno::USERS.raw_os_error();
    /// Malformed request: wrong size, magic or non-zero reserved field, or an incompatible
    /// protocol version.
    pub const EPROTO: i32 = -Errno::PROTO.raw_os_error();
}

/// Why a message is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message does not have the size its kind requires.
    #[error("message of {got} bytes where {want} were expected")]
    Size {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// Wrong magic number.
    #[error("bad magic {0:#x}")]
    Magic(u32),
    /// A reserved field is not zero.
    #[error("reserved field is not zero")]
    Reserved,
    /// A response answers another request.
    #[error("response to op {got} where op {want} was asked")]
    Mismatch {
        /// Op answered.
        got: u32,
        /// Op asked.
        want: u32,
    },
}

impl Request {
    /// A request for `op`.
    pub fn new(op: Op, cpu: u32, arg: u64) -> Self {
        Self { magic: REQUEST_MAGIC, op: op.to_wire(), cpu, _reserved0: 0, arg, _reserved1: 0 }
    }

    /// Validates a received message.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let req =
            Self::read_from_bytes(bytes).map_err(|_| WireError::Size { got: bytes.len(), want: size_of::<Self>() })?;
        if req.magic != REQUEST_MAGIC {
            return Err(WireError::Magic(req.magic));
        }
        if req._reserved0 != 0 || req._reserved1 != 0 {
            return Err(WireError::Reserved);
        }
        Ok(req)
    }
}

impl ResponseHeader {
    /// The header of a response to `req`.
    pub fn answer(req: &Request, status: i32, body_len: usize, nr_fds: usize) -> Self {
        Self {
            magic: RESPONSE_MAGIC,
            op: req.op,
            status,
            cpu: req.cpu,
            body_len: body_len as u32,
            nr_fds: nr_fds as u32,
            _reserved: 0,
        }
    }

    /// Validates a received response to an `op` request and splits off its body.
    pub fn parse(bytes: &[u8], op: Op) -> Result<(Self, &[u8]), WireError> {
        let (header, body) =
            Self::read_from_prefix(bytes).map_err(|_| WireError::Size { got: bytes.len(), want: size_of::<Self>() })?;
        if header.magic != RESPONSE_MAGIC {
            return Err(WireError::Magic(header.magic));
        }
        if header._reserved != 0 {
            return Err(WireError::Reserved);
        }
        if header.op != op.to_wire() {
            return Err(WireError::Mismatch { got: header.op, want: op.to_wire() });
        }
        if header.body_len as usize != body.len() || body.len() > MAX_BODY {
            return Err(WireError::Size { got: bytes.len(), want: size_of::<Self>() + header.body_len as usize });
        }
        Ok((header, body))
    }
}

/// Reads a fixed-size body, which must be exactly `T`'s size.
pub fn parse_body<T: FromBytes>(body: &[u8]) -> Result<T, WireError> {
    T::read_from_bytes(body).map_err(|_| WireError::Size { got: body.len(), want: size_of::<T>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        let req = Request::new(Op::GetReaderPage, 3, 4096);
        assert_eq!(Request::parse(req.as_bytes()), Ok(req));
        assert_eq!(Request::parse(&req.as_bytes()[..31]), Err(WireError::Size { got: 31, want: 32 }));
        let mut long = req.as_bytes().to_vec();
        long.push(0);
        assert!(matches!(Request::parse(&long), Err(WireError::Size { .. })));
        let mut bad = req;
        bad.magic = 7;
        assert_eq!(Request::parse(bad.as_bytes()), Err(WireError::Magic(7)));
        let mut bad = req;
        bad._reserved1 = 1;
        assert_eq!(Request::parse(bad.as_bytes()), Err(WireError::Reserved));
        assert_eq!(Op::from_wire(3), Some(Op::GetReaderPage));
        assert_eq!(Op::from_wire(99), None);
        // The numbers docs/abi.md §5.2 gives.
        assert_eq!(Op::ALL.map(Op::to_wire), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(Op::ALL.map(|op| Op::from_wire(op.to_wire())), Op::ALL.map(Some));
        assert_eq!(Op::from_wire(0), None);
    }

    #[test]
    fn responses_are_checked_against_the_request() {
        let req = Request::new(Op::Wait, 1, 2);
        let body = WaitBody { ready: 1, full_pages: 3 };
        let mut msg = ResponseHeader::answer(&req, status::OK, size_of::<WaitBody>(), 0).as_bytes().to_vec();
        msg.extend_from_slice(body.as_bytes());
        let (header, got) = ResponseHeader::parse(&msg, Op::Wait).unwrap();
        assert_eq!((header.cpu, header.status), (1, 0));
        assert_eq!(parse_body::<WaitBody>(got), Ok(body));
        assert_eq!(ResponseHeader::parse(&msg, Op::Stats).err(), Some(WireError::Mismatch { got: 5, want: 4 }));
        assert!(ResponseHeader::parse(&msg[..msg.len() - 1], Op::Wait).is_err());
        assert!(parse_body::<StatsBody>(got).is_err());
        // The values docs/abi.md documents (Linux errno numbers).
        assert_eq!((status::EINVAL, status::EBUSY, status::ENOTTY, status::EPROTO), (-22, -16, -25, -71));
        assert_eq!(status::EUSERS, -87);
    }

    #[test]
    fn bodies_are_made_from_ring_core_values() {
        use ring_core::{Geometry, Mode, SwapStatus};
        let config = Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop };
        let h = HelloBody::new(2, config, 10);
        assert_eq!((h.version, h.nr_cpus, h.mode, h.subbuf_size, h.nr_subbufs), (1, 2, 1, 4096, 4));
        assert_eq!((h.meta_page_size, h.cpu_file_size, h.formats_len, h._reserved), (4096, 5 * 4096, 10, 0));
        let update = ReaderUpdate { status: SwapStatus::WriterOnPage, id: 3, read: 48, lost_events: 7 };
        let reader = ReaderBody { id: 3, read: 48, lost_events: 7, swap_status: 2, _reserved: 0 };
        assert_eq!(ReaderBody::from(update), reader);
        assert_eq!(WaitBody::from(Arming { ready: true, full_pages: 2 }), WaitBody { ready: 1, full_pages: 2 });
        assert_eq!(WaitBody::from(Arming { ready: false, full_pages: 0 }), WaitBody { ready: 0, full_pages: 0 });
    }

    #[test]
    fn the_stats_body_is_the_counters_in_docs_abi_order() {
        let stats = Stats {
            entries: 1,
            overrun: 2,
            dropped: 3,
            read: 4,
            pages_lost: 5,
            pages_touched: 6,
            swaps: 7,
            full_pages: 8,
        };
        assert_eq!(stats.as_bytes(), [1u64, 2, 3, 4, 5, 6, 7, 8].as_bytes(), "docs/abi.md §5.2's order");
    }
}
