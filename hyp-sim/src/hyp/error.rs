//! What a hypercall can fail with. Each failure has its own variant (so tests can tell which rule
//! refused an input) and a negative errno, which is what the host sees in the status register.

/// A hypercall failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HypError {
    /// No such hypercall.
    #[error("unknown hypercall")]
    UnknownCall,
    /// An argument is out of range (a CPU, an event id, a flag, a read amount...).
    #[error("argument out of range")]
    BadArgument,
    /// The descriptor does not lie in RAM.
    #[error("descriptor outside RAM")]
    DescOutsideRam,
    /// The descriptor's size does not match its CPU count, or exceeds the maximum.
    #[error("descriptor size does not match its contents")]
    DescSize,
    /// Wrong descriptor magic or version.
    #[error("not a version-1 trace descriptor")]
    DescMagic,
    /// A reserved descriptor field is not zero.
    #[error("reserved descriptor field set")]
    DescReserved,
    /// No CPU, or more CPUs than the machine has.
    #[error("bad CPU count")]
    CpuCount,
    /// A CPU id the machine does not have.
    #[error("no such CPU")]
    CpuId,
    /// The same CPU twice.
    #[error("CPU described twice")]
    DuplicateCpu,
    /// Sub-buffer size not a power of two, or out of range.
    #[error("bad sub-buffer size")]
    SubBufSize,
    /// Fewer than 3 sub-buffers per CPU, or more than the hypervisor can track.
    #[error("bad sub-buffer count")]
    SubBufCount,
    /// Unknown buffer mode.
    #[error("bad buffer mode")]
    Mode,
    /// A page address or length not aligned to 4096.
    #[error("unaligned page")]
    Misaligned,
    /// A meta area smaller than the geometry needs.
    #[error("meta area too small")]
    MetaSize,
    /// A data area not exactly `subbuf_size * nr_subbufs` bytes.
    #[error("data area of the wrong size")]
    DataSize,
    /// Donated pages outside RAM (or spanning two regions).
    #[error("pages outside RAM")]
    OutsideRam,
    /// Donated ranges overlap.
    #[error("donated pages overlap")]
    Overlap,
    /// Tracing buffers are already loaded.
    #[error("already loaded")]
    AlreadyLoaded,
    /// No tracing buffers are loaded.
    #[error("not loaded")]
    NotLoaded,
    /// Another operation on the same state is in progress; retry.
    #[error("busy, retry")]
    Busy,
}

impl HypError {
    /// The negative errno the host sees.
    pub fn code(self) -> i64 {
        use rustix::io::Errno;
        let errno = match self {
            HypError::UnknownCall => Errno::NOSYS,
            HypError::DescOutsideRam | HypError::OutsideRam => Errno::FAULT,
            HypError::DuplicateCpu => Errno::EXIST,
            HypError::AlreadyLoaded => Errno::BUSY,
            HypError::NotLoaded => Errno::NOENT,
            HypError::Busy => Errno::AGAIN,
            HypError::BadArgument
            | HypError::DescSize
            | HypError::DescMagic
            | HypError::DescReserved
            | HypError::CpuCount
            | HypError::CpuId
            | HypError::SubBufSize
            | HypError::SubBufCount
            | HypError::Mode
            | HypError::Misaligned
            | HypError::MetaSize
            | HypError::DataSize
            | HypError::Overlap => Errno::INVAL,
        };
        -i64::from(errno.raw_os_error())
    }
}
