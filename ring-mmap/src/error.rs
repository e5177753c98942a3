//! Errors of ring-mmap.

use crate::wire::{Op, WireError};
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
    /// The peer sent something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
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
        _ => "",
    }
}
