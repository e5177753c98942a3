//! trace-cmd's `trace.dat` file, version 6: written by `record`, read back by `report`, and
//! read by `trace-cmd report` and KernelShark.
//!
//! ```text
//!   "\x17\x08\x44tracing" "6\0"  endian:u8  long_size:u8  page_size:u32
//!   "header_page\0"  size:u64  text          (the sub-buffer header's fields)
//!   "header_event\0" size:u64  text          (the event header's encoding)
//!   count:u32  { size:u64 format-text }*      (ftrace's own events)
//!   systems:u32 { "name\0" count:u32 { size:u64 format-text }* }*
//!   size:u32 kallsyms   size:u32 printk-formats   size:u64 saved-cmdlines
//!   nr_cpus:u32  "options  \0" { id:u16 size:u32 bytes }* 0:u16
//!   then a flyrecord section for each buffer, the top-level buffer's first:
//!     "flyrecord\0" { offset:u64 size:u64 }[nr_cpus]
//!     ... padding to a page boundary, then each CPU's pages, page_size bytes each
//! ```
//!
//! A file holds the top-level buffer and any number of named buffers (tracefs instances, for
//! trace-cmd: `trace-cmd record -B NAME`). Each named buffer has a BUFFER option,
//! `offset:u64 "name\0"`, whose offset is where its flyrecord section starts (ours follow one
//! another, each after the pages of the one before), and its CPUs' CPUSTAT options follow one
//! whose text is the heading `"\nBuffer: NAME\n\n"`. Everything else is shared: one page size,
//! one CPU count (every buffer's table has `nr_cpus` entries, empty for CPUs it does not have),
//! one set of event formats, one trace clock (the TRACECLOCK option). `trace-cmd report` merges
//! the buffers' events by time and starts each line of a named buffer with its name; KernelShark
//! opens each buffer as a stream of its own, drawing the CPUs that have pages.
//!
//! All numbers are in the byte order the header announces; we write the host's own. The pages
//! are Linux ring-buffer sub-buffers, `page_size` bytes each (the buffers' sub-buffer size).

mod buffers;
mod page;
mod read;
mod spool;
mod write;

pub use page::{PageBuilder, PageError};
pub use read::{DatBuffer, DatCpu, DatFile, DatPages};
pub use spool::{DIRECT_CHUNK, Spool, SpoolIo};
pub use write::{BufferCpu, BufferSpec, DatInfo, DatWriter};

/// The first ten bytes.
const MAGIC: &[u8; 10] = b"\x17\x08\x44tracing";
/// The version string we write and read.
const VERSION: &[u8] = b"6\0";
/// The tag that starts a buffer's flyrecord section: its CPU table, then its pages.
const FLYRECORD: &[u8] = b"flyrecord\0";
/// Option ids (trace-cmd's `TRACECMD_OPTION_*`).
mod option {
    /// End of options.
    pub const DONE: u16 = 0;
    /// Per-CPU statistics text.
    pub const CPUSTAT: u16 = 2;
    /// An instance buffer's offset and name (its events are not in the top-level flyrecord).
    pub const BUFFER: u16 = 3;
    /// The trace clock list, the one in use in brackets.
    pub const TRACECLOCK: u16 = 4;
    /// A CPU count replacing the header's (trace-cmd writes it for files whose buffers have other
    /// counts than the machine's).
    pub const CPUCOUNT: u16 = 8;
    /// The tool that wrote the file.
    pub const VERSION: u16 = 9;
}

/// The kernel's `events/header_event` text: how event headers are encoded.
pub const HEADER_EVENT: &str = "# compressed entry header\n\
\ttype_len    :    5 bits\n\
\ttime_delta  :   27 bits\n\
\tarray       :   32 bits\n\
\n\
\tpadding     : type == 29\n\
\ttime_extend : type == 30\n\
\ttime_stamp : type == 31\n\
\tdata max type_len  == 28\n";

/// The clock in use in a list of trace clocks as tracefs `trace_clock` (and trace.dat's
/// TRACECLOCK option) give it: `local [global] counter`.
pub fn clock_in_use(list: &str) -> Option<String> {
    Some(list.split('[').nth(1)?.split(']').next()?.to_string())
}

/// The kernel's `events/header_page` text for sub-buffers of `page_size` bytes.
pub fn header_page(page_size: u32) -> String {
    format!(
        "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\
         \tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\
         \tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\
         \tfield: char data;\toffset:16;\tsize:{};\tsigned:0;\n",
        page_size.saturating_sub(16)
    )
}

/// Why a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DatError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Not a trace.dat file.
    #[error("not a trace.dat file (bad magic)")]
    NotTraceDat,
    /// A version or variant this reader does not handle.
    #[error("unsupported trace.dat: {0}")]
    Unsupported(String),
    /// The file is damaged.
    #[error("corrupt trace.dat: {0}")]
    Corrupt(String),
    /// Buffers (or pages, or statistics for them) that a file cannot hold as given.
    #[error("cannot write these buffers: {0}")]
    Buffers(String),
    /// Direct writes were asked for where the file system does not take them.
    #[error("the file system of {} does not take O_DIRECT writes: {source}", dir.display())]
    DirectIo {
        /// Where the spools were to be.
        dir: std::path::PathBuf,
        /// What `fcntl` said.
        source: std::io::Error,
    },
}
