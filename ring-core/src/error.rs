//! Errors of ring-core.

/// A buffer geometry or the memory handed over for it is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// Sub-buffer sizes must be powers of two.
    #[error("sub-buffer size {0} is not a power of two")]
    SubBufSizeNotPowerOfTwo(u32),
    /// Sub-buffer size outside the supported range.
    #[error("sub-buffer size {0} is outside 32..=16777216 bytes")]
    SubBufSizeOutOfRange(u32),
    /// Fewer than three sub-buffers (reader page plus two ring pages).
    #[error("{0} sub-buffers given, at least 3 are needed (the reader page and two in the ring)")]
    TooFewSubBufs(u32),
    /// More sub-buffers than ids can name, or more bytes than the address space holds.
    #[error("{0} sub-buffers is too many")]
    TooManySubBufs(u32),
    /// The meta region is smaller than the geometry needs.
    #[error("meta area of {got} bytes given, {need} needed")]
    MetaTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// The sub-buffer region is smaller than the geometry needs.
    #[error("sub-buffer area of {got} bytes given, {need} needed")]
    DataTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
    /// The link array does not have one entry per sub-buffer.
    #[error("{got} sub-buffer links given for {need} sub-buffers")]
    LinkCount {
        /// Links needed.
        need: usize,
        /// Links given.
        got: usize,
    },
    /// A read-only region was given where the producer must write.
    #[error("the producer needs writable memory")]
    ReadOnly,
}

/// A write could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The payload does not fit in one sub-buffer.
    #[error("payload of {len} bytes exceeds the {max}-byte maximum")]
    TooLarge {
        /// Payload length asked for.
        len: usize,
        /// Largest payload this buffer accepts.
        max: usize,
    },
    /// A nested write's payload does not fit in the staging lane.
    #[error("nested write of {len} bytes exceeds the {max}-byte staging lane")]
    NestedTooLarge {
        /// Payload length asked for.
        len: usize,
        /// Largest nested payload.
        max: usize,
    },
    /// Tracing is disabled on this buffer.
    #[error("tracing is disabled")]
    Disabled,
    /// The event was dropped (counted in `dropped`): the ring is full in producer/consumer mode,
    /// a nested writer's staging lane is full, or nesting is deeper than supported.
    #[error("event dropped: buffer full")]
    Dropped,
    /// A write into a reservation went past its payload.
    #[error("write of {len} bytes at {offset} past a {size}-byte reservation")]
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Bytes asked for.
        len: usize,
        /// Size of the reservation.
        size: usize,
    },
}

/// [`crate::CpuBuffer::writer`] was refused: the buffer's writer is claimed already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this buffer's writer is already claimed: one writer per CPU buffer at a time; keep the claimed \
     writer where the CPU's writing happens, or wait until its holder drops it"
)]
pub struct WriterClaimed;

/// A reader-page swap could not be performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    /// Another swap on this CPU is in progress, or the head kept moving under us; try again.
    #[error("another reader is swapping this CPU's reader page, or the writer kept moving the head; retry")]
    Busy,
    /// The consumer claims to have read more than the reader page holds.
    #[error("read {read} exceeds the {commit} bytes committed on the reader page")]
    ReadPastCommit {
        /// Bytes the consumer claimed.
        read: u32,
        /// Bytes committed on the reader page.
        commit: u32,
    },
    /// The consumer gives back less of the reader page than was already given back: the next
    /// consumer would read those events again.
    #[error(
        "read {read} is below the {consumed} bytes of the reader page already consumed; give back at least \
         {consumed} (the meta area's reader.read)"
    )]
    ReadBehind {
        /// Bytes the consumer claimed.
        read: u32,
        /// Bytes of the reader page consumed by earlier requests.
        consumed: u32,
    },
    /// The consumer's `read` falls inside an event: the next consumer would decode from the
    /// middle of it.
    #[error(
        "read {read} does not end an event of the reader page (the next event boundary is at {next}); give \
         back the data offset just past the last record decoded"
    )]
    NotEventBoundary {
        /// Bytes the consumer claimed.
        read: u32,
        /// The first event boundary after `read`.
        next: u32,
    },
    /// The reader page's events do not decode up to the consumer's `read`, so it cannot be
    /// checked to end an event.
    #[error(
        "the reader page does not decode up to read {read} ({error}); give back its whole committed \
         length to skip it"
    )]
    MalformedPage {
        /// Bytes the consumer claimed.
        read: u32,
        /// Why the page does not decode.
        error: crate::decode::DecodeError,
    },
}

impl SwapError {
    /// True if the consumer's `read` was refused ([`crate::check_read`]): the request was wrong,
    /// and retrying it as it is cannot succeed (only [`SwapError::Busy`] is worth retrying).
    pub fn is_bad_read(&self) -> bool {
        !matches!(self, SwapError::Busy)
    }
}
