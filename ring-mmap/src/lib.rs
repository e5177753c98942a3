//! # ring-mmap: hyptrace buffers shared with other processes, and the kernel's
//!
//! A producer process keeps one [ring-core](ring_core) buffer per CPU in a shared file and serves a
//! Unix control socket; consumers in other processes map the files read-only and read pages
//! zero-copy, asking the producer for each new reader page. The byte-level contract (meta area,
//! page format, memory ordering, socket protocol) is `docs/abi.md`; this crate implements both
//! ends of it, and reads the Linux kernel's memory-mapped trace buffers with the same consumer.
//!
//! ```text
//!   producer process                                  consumer process
//!   ┌──────────────────────────────┐                  ┌───────────────────────────────┐
//!   │ writers ──▶ CpuBuffer (cpu N)│  memfd / file    │ ReadOnlyMapping (PROT_READ)    │
//!   │             meta │ sub-bufs ─┼──────────────────┼▶ SharedView ─▶ EventIter      │
//!   │             doorbell eventfd ┼──────────────────┼▶ poll (wait)                   │
//!   │ Server (thread per client)   │  SOCK_SEQPACKET  │ Connection / SocketCpu         │
//!   │   GET_READER_PAGE ─▶ swap ◀──┼──────────────────┼─ Consumer::read_page / drain   │
//!   └──────────────────────────────┘  fds: SCM_RIGHTS └───────────────────────────────┘
//! ```
//!
//! - Producer side: [`ShmProducer`] (buffers in [`Backing`] files: sealed memfds or a
//!   directory), [`Server`] (the socket; any [`Producer`] can be served, e.g. a hypervisor's).
//! - Consumer side: [`Connection`] and [`SocketCpu`], [`KernelCpu`] for tracefs, and
//!   [`Consumer`] over either ([`CpuSource`]): GET_READER_PAGE with the amount read, events
//!   handed out in place, losses reported where they happened, [`Consumer::wait`] on the
//!   doorbell, [`Consumer::drain_remaining`] after the producer died.
//! - Post-mortem: [`BufferDir`] and [`DirCpu`] read a dead producer's buffer directory.
//! - Either side: [`affinity`] runs a thread on the CPUs whose buffers it serves.
//! - The wire format is [`wire`]; the errors, [`Error`].

pub mod affinity;
pub mod backing;
pub mod client;
pub mod consumer;
mod dir_backing;
pub mod doorbell;
pub mod error;
pub mod kernel;
mod lock_holder;
pub mod poll_window;
pub mod postmortem;
mod private_dir;
pub mod producer;
pub mod realtime;
pub mod request_budget;
pub mod server;
pub mod socket_cpu;
pub mod socket_dir;
pub mod truncation;
pub mod users;
pub mod wire;

pub use backing::{Backing, CpuBacking, CpuLayout, OpenBacking, ReadOnlyMapping};
pub use client::Connection;
pub use consumer::{
    Consumer, CpuSource, Damage, DrainScope, Lost, PageCopy, PageLosses, PageRead, ReaderPage, Record, Remaining,
    Wakeup,
};
pub use error::{AnswerProblem, BufferProblem, DirFileProblem, Error, HandshakeProblem, PageRole, Unsafety};
pub use kernel::{KernelCpu, KernelStats, TracefsInstance};
pub use postmortem::{BufferDir, DirCpu};
pub use producer::{Producer, ProducerConfig, ShmProducer};
pub use request_budget::RequestBudget;
pub use server::{Server, ServerOptions, default_socket_path};
pub use socket_cpu::SocketCpu;
