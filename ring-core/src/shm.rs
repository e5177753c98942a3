//! The audited module for memory shared with another party.
//!
//! The meta area and the sub-buffers are written by the producer while consumers (threads here,
//! or other processes through a mapping) read them, and a hostile peer may scribble on them. Such
//! memory is never turned into a `&[u8]` or `&T`: every access goes through [`ShmRegion`], which
//! performs one atomic load or store per field, at that field's own width (mixed-size accesses to
//! the same bytes never race), after a bounds and alignment check. Values read here are untrusted
//! until the caller validates them.
//!
//! Two rules keep this sound with Rust's memory model:
//! - Loads a consumer performs are `Relaxed`, followed by an acquire fence where acquire semantics
//!   are needed. Relaxed word-sized loads are the atomic operations Rust permits on read-only
//!   memory, which is how consumers map the buffers.
//! - Stores only happen through a region built for writing ([`ShmRegion::read_only`] is false).
//!
//! Consumers reading a read-only mapping load 64-bit fields with one atomic load, which Rust
//! guarantees to be a plain load only where 64-bit atomics are native: consuming from read-only
//! memory is supported on 64-bit targets (x86-64, arm64). The writer has no such limit.
//!
//! Under `--cfg loom` the region is an owned array of loom `AtomicU32` words so the model checker
//! sees every shared access; a 64-bit field is then two 32-bit words (high word stored first, low
//! word carrying the ordering), which is exact for every 64-bit field ring-core writes because
//! none of them is read for synchronisation through its high half.

#[cfg(not(loom))]
use crate::sync::AtomicU64;
use crate::sync::{AtomicU32, Ordering, fence};
#[cfg(not(loom))]
use core::marker::PhantomData;
#[cfg(not(loom))]
use core::ptr::NonNull;

/// Alignment every region must have (the widest field is a `u64`).
pub const SHM_ALIGN: usize = 8;

/// A byte range of shared memory accessed only through atomics.
pub struct ShmRegion {
    #[cfg(not(loom))]
    base: NonNull<u8>,
    #[cfg(loom)]
    words: alloc::boxed::Box<[AtomicU32]>,
    len: usize,
    read_only: bool,
    #[cfg(all(feature = "std", not(loom)))]
    owned: bool,
}

// SAFETY: every access to the region's bytes is an atomic operation performed through `&self`,
// so sharing the handle between threads cannot create a data race.
unsafe impl Send for ShmRegion {}
// SAFETY: as above; there is no unsynchronised interior state besides the atomically accessed bytes.
unsafe impl Sync for ShmRegion {}

impl core::fmt::Debug for ShmRegion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmRegion").field("len", &self.len).field("read_only", &self.read_only).finish()
    }
}

impl ShmRegion {
    /// Wraps `len` bytes at `base` for reading and writing.
    ///
    /// # Safety
    /// - `base` is aligned to [`SHM_ALIGN`] and valid for reads and writes of `len` bytes for as long
    ///   as this region, or anything built on it, exists;
    /// - within this process those bytes are accessed only atomically (through regions like this
    ///   one) while the region exists; other processes may do as they like.
    #[cfg(not(loom))]
    pub unsafe fn from_raw_parts(base: NonNull<u8>, len: usize) -> Self {
        assert_eq!(base.as_ptr() as usize % SHM_ALIGN, 0, "shared region must be 8-byte aligned");
        Self {
            base,
            len,
            read_only: false,
            #[cfg(feature = "std")]
            owned: false,
        }
    }

    /// Wraps `len` bytes at `base` that this process may only read (a `PROT_READ` mapping).
    ///
    /// # Safety
    /// As [`ShmRegion::from_raw_parts`], except that `base` need only be valid for reads.
    #[cfg(not(loom))]
    pub unsafe fn from_raw_parts_read_only(base: NonNull<u8>, len: usize) -> Self {
        // SAFETY: the caller upholds the contract of `from_raw_parts` minus writability, and the
        // region never stores because `read_only` is set below.
        let mut region = unsafe { Self::from_raw_parts(base, len) };
        region.read_only = true;
        region
    }

    /// Allocates a zeroed region of `len` bytes on the heap, owned by the returned value.
    #[cfg(all(feature = "std", not(loom)))]
    pub fn alloc_zeroed(len: usize) -> Self {
        let layout = Self::heap_layout(len);
        // SAFETY: the layout has a non-zero size (heap_layout rounds up to at least 8 bytes).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else { std::alloc::handle_alloc_error(layout) };
        // SAFETY: freshly allocated, aligned to SHM_ALIGN, `len` bytes, reached only through
        // this region until it is dropped (which frees it).
        let mut region = unsafe { Self::from_raw_parts(base, len) };
        region.owned = true;
        region
    }

    /// Allocates a zeroed region of `len` bytes as loom words.
    #[cfg(loom)]
    pub fn alloc_zeroed(len: usize) -> Self {
        let words = (0..len.div_ceil(4)).map(|_| AtomicU32::new(0)).collect();
        Self { words, len, read_only: false }
    }

    #[cfg(all(feature = "std", not(loom)))]
    fn heap_layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len.max(SHM_ALIGN).next_multiple_of(SHM_ALIGN), SHM_ALIGN)
            .expect("shared region size overflows a Layout")
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the region has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if this process may only read the region.
    #[inline]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// True if a field of `width` bytes at `off` lies inside the region and is naturally aligned.
    #[inline]
    pub fn fits(&self, off: usize, width: usize) -> bool {
        off.is_multiple_of(width) && off.checked_add(width).is_some_and(|end| end <= self.len)
    }

    #[inline]
    #[track_caller]
    fn check(&self, off: usize, width: usize) {
        assert!(
            self.fits(off, width),
            "shared-memory access of {width} bytes at {off} outside region of {} bytes",
            self.len
        );
    }

    #[inline]
    #[track_caller]
    fn check_store(&self, off: usize, width: usize) {
        assert!(!self.read_only, "store to a read-only shared region");
        self.check(off, width);
    }

    /// The `u32` at `off` as an atomic.
    ///
    /// # Safety
    /// `off` is 4-aligned and `off + 4 <= self.len()`.
    #[cfg(not(loom))]
    #[inline]
    unsafe fn word32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: the caller puts `off..off + 4` inside the region and 4-aligned (the base is
        // 8-aligned); the constructor's contract makes the bytes valid for the region's lifetime
        // and accessed only atomically, at this width, within this process.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off).cast()) }
    }

    /// The `u64` at `off` as an atomic.
    ///
    /// # Safety
    /// `off` is 8-aligned and `off + 8 <= self.len()`.
    #[cfg(not(loom))]
    #[inline]
    unsafe fn word64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: as in `word32`, for an 8-byte, 8-aligned field.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast()) }
    }

    /// The `u32` at `off` (loom: an element of the word array, bounds-checked anyway).
    ///
    /// # Safety
    /// As the non-loom version.
    #[cfg(loom)]
    #[inline]
    unsafe fn word32(&self, off: usize) -> &AtomicU32 {
        &self.words[off / 4]
    }

    /// Relaxed load of the `u32` at `off`. Panics if the field is outside the region.
    #[inline]
    #[track_caller]
    pub fn load_u32(&self, off: usize) -> u32 {
        self.check(off, 4);
        // SAFETY: `check` proved the field inside the region and aligned.
        unsafe { self.word32(off) }.load(Ordering::Relaxed)
    }

    /// Load of the `u32` at `off` with acquire semantics (a relaxed load, then an acquire fence).
    #[inline]
    #[track_caller]
    pub fn load_u32_acquire(&self, off: usize) -> u32 {
        let v = self.load_u32(off);
        fence(Ordering::Acquire);
        v
    }

    /// Relaxed load of the `u64` at `off` (8-aligned). Panics if outside the region.
    #[inline]
    #[track_caller]
    pub fn load_u64(&self, off: usize) -> u64 {
        self.check(off, 8);
        #[cfg(not(loom))]
        {
            // SAFETY: `check` proved the 8-byte field inside the region and aligned.
            unsafe { self.word64(off) }.load(Ordering::Relaxed)
        }
        // SAFETY: `check` proved the 8-byte field inside the region and aligned.
        #[cfg(loom)]
        unsafe {
            let lo = self.word32(off).load(Ordering::Relaxed);
            let hi = self.word32(off + 4).load(Ordering::Relaxed);
            (u64::from(hi) << 32) | u64::from(lo)
        }
    }

    /// Load of the `u64` at `off` with acquire semantics (a relaxed load, then an acquire fence).
    #[inline]
    #[track_caller]
    pub fn load_u64_acquire(&self, off: usize) -> u64 {
        let v = self.load_u64(off);
        fence(Ordering::Acquire);
        v
    }

    /// Store of the `u32` at `off` with `order` (`Relaxed` or `Release`).
    #[inline]
    #[track_caller]
    pub fn store_u32(&self, off: usize, v: u32, order: Ordering) {
        self.check_store(off, 4);
        // SAFETY: `check_store` proved the field inside the region and aligned.
        unsafe { self.word32(off) }.store(v, order);
    }

    /// Store of the `u64` at `off` with `order` (`Relaxed` or `Release`).
    #[inline]
    #[track_caller]
    pub fn store_u64(&self, off: usize, v: u64, order: Ordering) {
        self.check_store(off, 8);
        // SAFETY: `check_store` proved the 8-byte field inside the region and aligned.
        unsafe { self.store_u64_unchecked(off, v, order) }
    }

    /// Store of the `u32` at `off` without the bounds check, for the writer's fast path.
    ///
    /// # Safety
    /// `off` is 4-aligned, `off + 4 <= self.len()`, and the region is writable.
    #[inline(always)]
    pub unsafe fn store_u32_unchecked(&self, off: usize, v: u32, order: Ordering) {
        debug_assert!(self.fits(off, 4) && !self.read_only);
        // SAFETY: the caller's contract is `word32`'s.
        unsafe { self.word32(off) }.store(v, order);
    }

    /// Store of the `u64` at `off` without the bounds check, for the writer's fast path.
    ///
    /// # Safety
    /// `off` is 8-aligned, `off + 8 <= self.len()`, and the region is writable.
    #[inline(always)]
    pub unsafe fn store_u64_unchecked(&self, off: usize, v: u64, order: Ordering) {
        debug_assert!(self.fits(off, 8) && !self.read_only);
        #[cfg(not(loom))]
        // SAFETY: the caller's contract covers the 8 bytes at `off`.
        unsafe {
            self.word64(off).store(v, order);
        }
        // SAFETY: the caller's contract covers the 8 bytes at `off`.
        #[cfg(loom)]
        unsafe {
            self.word32(off + 4).store((v >> 32) as u32, Ordering::Relaxed);
            self.word32(off).store(v as u32, order);
        }
    }

    /// [`ShmRegion::store_bytes`] without the bounds check, for the writer's fast path.
    ///
    /// # Safety
    /// `off` is 4-aligned, `off + bytes.len().next_multiple_of(4) <= self.len()`, and the region
    /// is writable.
    #[inline(always)]
    pub unsafe fn store_bytes_unchecked(&self, off: usize, bytes: &[u8]) {
        debug_assert!(bytes.is_empty() || self.fits(off + bytes.len().next_multiple_of(4) - 4, 4));
        // SAFETY: `store_words` only asks for 4-aligned words in
        // `off..off + bytes.len().next_multiple_of(4)`, which the caller's contract puts inside
        // the region: `word32`'s contract.
        let word = |at: usize| unsafe { self.word32(at) };
        // SAFETY: as just said, `word` is sound for every offset `store_words` passes it.
        unsafe { store_words(word, off, bytes) }
    }

    /// The writer's fast path for one small event: stores its `header` word at `at`, its
    /// `payload` right after (as [`ShmRegion::store_bytes_unchecked`]), then `commit` at
    /// `commit_at` with release ordering, so a reader that acquires `commit` sees both.
    ///
    /// One function rather than three calls so the region's base is loaded once: an atomic store
    /// may, as far as the compiler knows, change the region handle itself, so separate calls
    /// reload it after every store (four extra loads for a 16-byte payload).
    ///
    /// # Safety
    /// `at` is 4-aligned and `at + 4 + payload.len().next_multiple_of(4) <= self.len()`;
    /// `commit_at` is 8-aligned and `commit_at + 8 <= self.len()`; the region is writable.
    #[inline(always)]
    pub unsafe fn store_event_unchecked(&self, at: usize, header: u32, payload: &[u8], commit_at: usize, commit: u64) {
        debug_assert!(self.fits(at, 4) && self.fits(commit_at, 8) && !self.read_only);
        #[cfg(not(loom))]
        {
            let base = self.base.as_ptr();
            // SAFETY: called only for the header word and, through `store_words`, the payload's
            // words, which the caller's contract puts inside the region at their natural
            // alignment (the base is 8-aligned); the constructor's contract makes those bytes
            // valid and accessed only atomically at this width in this process.
            let word = |at: usize| unsafe { AtomicU32::from_ptr(base.add(at).cast()) };
            word(at).store(header, Ordering::Relaxed);
            // SAFETY: `store_words` only asks for words in `at + 4..` up to the payload's padded
            // end, inside the region by the caller's contract.
            unsafe { store_words(word, at + 4, payload) };
            // Ordering: Release, so the stores above are visible to whoever acquires `commit`.
            // SAFETY: the caller's contract puts the 8-aligned commit word inside the region.
            unsafe { AtomicU64::from_ptr(base.add(commit_at).cast()) }.store(commit, Ordering::Release);
        }
        // SAFETY: the caller's contract is that of each of these calls.
        #[cfg(loom)]
        unsafe {
            self.store_u32_unchecked(at, header, Ordering::Relaxed);
            self.store_bytes_unchecked(at + 4, payload);
            self.store_u64_unchecked(commit_at, commit, Ordering::Release);
        }
    }

    /// Stores `bytes` at `off` (4-aligned) as whole native-endian words, zero-filling the tail of
    /// the last word. Writes `bytes.len().div_ceil(4) * 4` bytes.
    #[inline]
    #[track_caller]
    pub fn store_bytes(&self, off: usize, bytes: &[u8]) {
        let padded = bytes.len().next_multiple_of(4);
        if padded == 0 {
            return;
        }
        self.check_store(off, 4);
        self.check(off + padded - 4, 4);
        // SAFETY: the checks above put the first and last word, and so every word between, inside
        // the region and 4-aligned.
        unsafe { self.store_bytes_unchecked(off, bytes) }
    }

    /// Stores `bytes` at an arbitrary offset `off`, merging partial words at both ends with the
    /// bytes already there. Only the party that owns those bytes may call this.
    #[track_caller]
    pub fn store_bytes_unaligned(&self, off: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = off.checked_add(bytes.len()).expect("offset overflow");
        let first = off & !3;
        let last = (end - 1) & !3;
        self.check_store(first, 4);
        self.check(last, 4);
        let mut word_at = first;
        while word_at <= last {
            // SAFETY: `first..=last` are 4-aligned words the checks above put inside the region.
            let atom = unsafe { self.word32(word_at) };
            let mut word = atom.load(Ordering::Relaxed).to_ne_bytes();
            for (i, b) in word.iter_mut().enumerate() {
                let at = word_at + i;
                if (off..end).contains(&at) {
                    *b = bytes[at - off];
                }
            }
            atom.store(u32::from_ne_bytes(word), Ordering::Relaxed);
            word_at += 4;
        }
    }

    /// Copies `out.len()` bytes starting at `off` (4-aligned) into `out` with relaxed word loads.
    /// The copy may be torn if the bytes change meanwhile; callers validate it afterwards.
    #[inline]
    #[track_caller]
    pub fn load_bytes(&self, off: usize, out: &mut [u8]) {
        self.whole().load_bytes(off, out);
    }

    /// The whole region as a [`ShmSpan`].
    #[inline]
    pub fn whole(&self) -> ShmSpan<'_> {
        ShmSpan {
            #[cfg(not(loom))]
            start: self.base,
            #[cfg(not(loom))]
            region: PhantomData,
            #[cfg(loom)]
            region: self,
            #[cfg(loom)]
            start: 0,
            len: self.len,
        }
    }

    /// The `len` bytes at `off` (4-aligned) as a [`ShmSpan`], or `None` if they are not inside the
    /// region.
    #[inline]
    pub fn span(&self, off: usize, len: usize) -> Option<ShmSpan<'_>> {
        self.whole().sub(off, len)
    }
}

/// A checked window of a [`ShmRegion`]: `len` bytes from a 4-aligned offset, read only through
/// atomic loads like the region itself. Offsets given to its methods are relative to the window
/// and checked against its length alone, so a read through it costs one comparison and no trip
/// through the region handle: what the decoder reads each event through ([`crate::ShmPage`],
/// [`crate::ShmBytes`]).
#[derive(Clone, Copy)]
pub struct ShmSpan<'a> {
    #[cfg(not(loom))]
    start: NonNull<u8>,
    #[cfg(not(loom))]
    region: PhantomData<&'a ShmRegion>,
    #[cfg(loom)]
    region: &'a ShmRegion,
    #[cfg(loom)]
    start: usize,
    len: usize,
}

// SAFETY: a span is a shared borrow of part of a region, which is `Sync`; every access through it
// is atomic.
unsafe impl Send for ShmSpan<'_> {}
// SAFETY: as above.
unsafe impl Sync for ShmSpan<'_> {}

impl core::fmt::Debug for ShmSpan<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmSpan").field("len", &self.len).finish_non_exhaustive()
    }
}

impl<'a> ShmSpan<'a> {
    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the span has no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes at `off` (4-aligned) of this span, or `None` if they are not inside it.
    #[inline]
    pub fn sub(&self, off: usize, len: usize) -> Option<ShmSpan<'a>> {
        if !off.is_multiple_of(4) || off.checked_add(len).is_none_or(|end| end > self.len) {
            return None;
        }
        // SAFETY: just checked.
        Some(unsafe { self.sub_unchecked(off, len) })
    }

    /// [`ShmSpan::sub`] without its checks, for the decoder's fast path.
    ///
    /// # Safety
    /// `off` is 4-aligned and `off + len <= self.len()`.
    #[inline(always)]
    pub unsafe fn sub_unchecked(&self, off: usize, len: usize) -> ShmSpan<'a> {
        debug_assert!(off.is_multiple_of(4) && off.checked_add(len).is_some_and(|end| end <= self.len));
        ShmSpan {
            // SAFETY: the caller puts `off` within the span.
            #[cfg(not(loom))]
            start: unsafe { self.start.add(off) },
            #[cfg(not(loom))]
            region: PhantomData,
            #[cfg(loom)]
            region: self.region,
            #[cfg(loom)]
            start: self.start + off,
            len,
        }
    }

    /// True if a field of `width` bytes at `off` lies inside the span and is naturally aligned
    /// in memory.
    #[inline]
    fn fits(&self, off: usize, width: usize) -> bool {
        #[cfg(not(loom))]
        let addr = self.start.as_ptr().addr();
        #[cfg(loom)]
        let addr = self.start;
        addr.wrapping_add(off).is_multiple_of(width) && off.checked_add(width).is_some_and(|end| end <= self.len)
    }

    /// The `u32` at `off` as an atomic.
    ///
    /// # Safety
    /// `self.fits(off, 4)`.
    #[inline(always)]
    unsafe fn word32(&self, off: usize) -> &'a AtomicU32 {
        // SAFETY: the caller puts the field inside the span, which lies inside its region, at
        // 4-byte alignment; the region's constructor makes those bytes valid for its lifetime and
        // accessed only atomically, at this width, within this process.
        #[cfg(not(loom))]
        unsafe {
            AtomicU32::from_ptr(self.start.as_ptr().add(off).cast())
        }
        // SAFETY: as above (loom's word array).
        #[cfg(loom)]
        unsafe {
            self.region.word32(self.start + off)
        }
    }

    #[inline(always)]
    #[track_caller]
    fn check(&self, off: usize, width: usize) {
        if !self.fits(off, width) {
            out_of_span(off, width, self.len);
        }
    }

    /// Relaxed load of the `u32` at `off` (4-aligned). Panics if it is outside the span.
    #[inline(always)]
    #[track_caller]
    pub fn load_u32(&self, off: usize) -> u32 {
        self.check(off, 4);
        // SAFETY: `check` proved the field inside the span and aligned.
        unsafe { self.word32(off) }.load(Ordering::Relaxed)
    }

    /// [`ShmSpan::load_u32`] without its check, for the decoder's fast path.
    ///
    /// # Safety
    /// `off` is 4-aligned and `off + 4 <= self.len()`.
    #[inline(always)]
    pub unsafe fn load_u32_unchecked(&self, off: usize) -> u32 {
        debug_assert!(self.fits(off, 4));
        // SAFETY: the caller's contract is `word32`'s (the span starts 4-aligned).
        unsafe { self.word32(off) }.load(Ordering::Relaxed)
    }

    /// Relaxed load of the `u64` at `off` (8-aligned in memory). Panics if it is outside the
    /// span.
    #[inline]
    #[track_caller]
    pub fn load_u64(&self, off: usize) -> u64 {
        self.check(off, 8);
        #[cfg(not(loom))]
        {
            // SAFETY: `check` proved the 8-byte field inside the span and 8-aligned; as in
            // `word32`, the bytes are valid and only accessed atomically at this width.
            unsafe { AtomicU64::from_ptr(self.start.as_ptr().add(off).cast()) }.load(Ordering::Relaxed)
        }
        #[cfg(loom)]
        self.region.load_u64(self.start + off)
    }

    /// Load of the `u64` at `off` with acquire semantics (a relaxed load, then an acquire fence).
    #[inline]
    #[track_caller]
    pub fn load_u64_acquire(&self, off: usize) -> u64 {
        let v = self.load_u64(off);
        fence(Ordering::Acquire);
        v
    }

    /// Copies `out.len()` bytes starting at `off` (4-aligned) into `out` with relaxed word loads,
    /// reading whole words (the last one may extend past `out`, not past the span). The copy may
    /// be torn if the bytes change meanwhile; callers validate it afterwards.
    // Always inlined: consumers copy each event's payload out with it, and at a few words per
    // event an out-of-line call costs more than the copy.
    #[inline(always)]
    #[track_caller]
    pub fn load_bytes(&self, off: usize, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let padded = out.len().next_multiple_of(4);
        if !(off.is_multiple_of(4) && off.checked_add(padded).is_some_and(|end| end <= self.len)) {
            out_of_span(off, padded, self.len);
        }
        // Pairs of words are stored into `out` as one 8-byte value: a caller that then reads a
        // `u64` field of the copy gets it forwarded from one store instead of stalling on two.
        let (pairs, rest) = out.as_chunks_mut::<8>();
        // SAFETY: the check above put `off..off + padded`, every word loaded below, inside the
        // span, 4-aligned (the span starts 4-aligned).
        unsafe {
            for (i, pair) in pairs.iter_mut().enumerate() {
                let first = self.word32(off + 8 * i).load(Ordering::Relaxed);
                let second = self.word32(off + 8 * i + 4).load(Ordering::Relaxed);
                *pair = join_words(first, second).to_ne_bytes();
            }
            let mut at = off + 8 * pairs.len();
            let (words, rest) = rest.as_chunks_mut::<4>();
            for word in words {
                *word = self.word32(at).load(Ordering::Relaxed).to_ne_bytes();
                at += 4;
            }
            if !rest.is_empty() {
                let word = self.word32(at).load(Ordering::Relaxed).to_ne_bytes();
                let n = rest.len();
                rest.copy_from_slice(&word[..n]);
            }
        }
    }
}

/// The panic of an access outside a span, out of the inlined paths.
#[cold]
#[inline(never)]
#[track_caller]
fn out_of_span(off: usize, width: usize, len: usize) -> ! {
    panic!("shared-memory access of {width} bytes at {off} outside span of {len} bytes (or misaligned)")
}

/// Stores `bytes` as whole native-endian words from offset `off`, the tail of the last word
/// zero-filled, each through the atomic `word(offset)` gives: the loop of
/// [`ShmRegion::store_bytes_unchecked`] and [`ShmRegion::store_event_unchecked`] (which loads the
/// region's base once for all its stores).
///
/// # Safety
/// `word` is sound to call for every 4-aligned offset in `off..off + bytes.len().next_multiple_of(4)`.
#[inline(always)]
unsafe fn store_words<'r>(word: impl Fn(usize) -> &'r AtomicU32, off: usize, bytes: &[u8]) {
    let (words, rest) = bytes.as_chunks::<4>();
    for (i, w) in words.iter().enumerate() {
        word(off + 4 * i).store(u32::from_ne_bytes(*w), Ordering::Relaxed);
    }
    if !rest.is_empty() {
        let mut last = [0u8; 4];
        last[..rest.len()].copy_from_slice(rest);
        word(off + 4 * words.len()).store(u32::from_ne_bytes(last), Ordering::Relaxed);
    }
}

/// The `u64` whose native-endian bytes are those of `first` followed by those of `second`.
#[inline(always)]
fn join_words(first: u32, second: u32) -> u64 {
    if cfg!(target_endian = "little") {
        u64::from(first) | u64::from(second) << 32
    } else {
        u64::from(first) << 32 | u64::from(second)
    }
}

#[cfg(all(feature = "std", not(loom)))]
impl Drop for ShmRegion {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: `owned` regions come from `alloc_zeroed` with exactly this layout, and no
            // access can follow because we hold the region by value.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), Self::heap_layout(self.len)) };
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_bounds() {
        let r = ShmRegion::alloc_zeroed(64);
        r.store_u32(4, 0xdead_beef, Ordering::Relaxed);
        r.store_u64(8, u64::MAX - 1, Ordering::Release);
        assert_eq!(r.load_u32(4), 0xdead_beef);
        assert_eq!(r.load_u64_acquire(8), u64::MAX - 1);
        assert!(r.fits(60, 4));
        assert!(!r.fits(62, 4));
        assert!(!r.fits(60, 8));
        assert!(!r.fits(usize::MAX - 1, 4));
    }

    #[test]
    #[should_panic(expected = "outside region")]
    fn out_of_bounds_panics_instead_of_reading() {
        let r = ShmRegion::alloc_zeroed(16);
        r.load_u32(16);
    }

    #[test]
    fn byte_copies_pad_and_merge() {
        let r = ShmRegion::alloc_zeroed(32);
        r.store_bytes(0, &[1, 2, 3, 4, 5]);
        let mut out = [0u8; 8];
        r.load_bytes(0, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 0, 0, 0]);
        r.store_bytes_unaligned(6, &[9, 9, 9]);
        let mut out = [0u8; 11];
        r.load_bytes(0, &mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 0, 9, 9, 9, 0, 0]);
    }

    #[test]
    fn spans_read_relative_to_their_start_and_stay_inside() {
        let r = ShmRegion::alloc_zeroed(64);
        let bytes: std::vec::Vec<u8> = (0..64).collect();
        r.store_bytes(0, &bytes);
        assert!(r.span(2, 8).is_none(), "misaligned start");
        assert!(r.span(60, 8).is_none(), "past the end");
        assert!(r.span(8, usize::MAX).is_none(), "overflowing length");
        let span = r.span(12, 40).unwrap();
        assert_eq!(span.load_u32(0), u32::from_ne_bytes([12, 13, 14, 15]));
        // 12 + 4 = 16 is 8-aligned in memory, 12 + 0 is not.
        assert_eq!(span.load_u64(4), u64::from_ne_bytes([16, 17, 18, 19, 20, 21, 22, 23]));
        let sub = span.sub(8, 12).unwrap();
        assert!(span.sub(36, 8).is_none() && span.sub(1, 4).is_none());
        // Pairs, a single word and a partial word, all from the sub-span's start.
        let mut out = [0u8; 11];
        sub.load_bytes(0, &mut out);
        assert_eq!(out, [20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]);
        let mut out = [0u8; 12];
        sub.load_bytes(0, &mut out);
        assert_eq!(out[..], bytes[20..32]);
        assert_eq!(r.whole().len(), 64);
    }

    #[test]
    #[should_panic(expected = "outside span")]
    fn span_reads_past_the_end_panic_instead_of_reading() {
        let r = ShmRegion::alloc_zeroed(64);
        let span = r.span(8, 8).unwrap();
        let mut out = [0u8; 12];
        span.load_bytes(0, &mut out);
    }

    #[test]
    #[should_panic(expected = "outside span")]
    fn span_u64_reads_must_be_aligned_in_memory() {
        let r = ShmRegion::alloc_zeroed(64);
        r.span(4, 16).unwrap().load_u64(0);
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn read_only_regions_refuse_stores() {
        let owner = ShmRegion::alloc_zeroed(16);
        // SAFETY: `owner` outlives `view` and is only accessed atomically.
        let view = unsafe { ShmRegion::from_raw_parts_read_only(owner.base, 16) };
        view.store_u32(0, 1, Ordering::Relaxed);
    }
}
