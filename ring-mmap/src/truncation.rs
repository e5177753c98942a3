//! Regular files that a consumer maps and another process may truncate: reading them never kills
//! this process with `SIGBUS`.
//!
//! A sealed memfd cannot shrink, and the kernel's trace buffers are never truncated, but a buffer
//! in a regular file (a producer's `--dir`, read live through its socket or post-mortem) can be
//! shrunk by anyone allowed to write to it. Reading a mapped page that then lies past the file's
//! end raises `SIGBUS`, whose default action kills the process; the page holding the new end reads
//! as zeros past it, with no signal at all. So each such mapping is guarded:
//!
//! - [`TruncationGuard::new`] registers the mapping's address range in a fixed table and, the
//!   first time, installs a process-wide `SIGBUS` handler. For a fault inside a registered range,
//!   the handler marks the range truncated and maps a private zero page over the faulting page
//!   (`mmap(MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, PROT_READ)`), then returns: the access is
//!   retried and reads zeros. Every other `SIGBUS` goes to the action installed before this one
//!   (Rust's own stack-overflow handler, or the default action: the process dies as it would have).
//! - [`TruncationGuard::check`] reports [`Error::Truncated`] once the handler fired in the range,
//!   or once the file is shorter than the mapping (which also catches the zeros past the new end
//!   that raise nothing). Consumers check after reading a page and before trusting what they
//!   read ([`crate::CpuSource::check_mapping`]).
//!
//! Copying the file instead of mapping it would do for a dead producer's files but not for a live
//! one's, and checking the size before each read leaves a window between the check and the read;
//! the handler closes it. The table and the handler take no lock and allocate nothing: each slot
//! is a few atomics, which the handler reads as a sequence lock. The handler is installed with
//! `libc` directly, because it must hand the signals it does not own to exactly the action that
//! was there before it, the default action included.

use crate::error::Error;
use rustix::mm::{MapFlags, ProtFlags};
use std::ffi::{c_int, c_void};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

/// Most guarded mappings at once: a consumer maps one file per CPU.
pub const MAX_GUARDED: usize = crate::client::MAX_CPUS as usize;

/// The low bits of [`Slot::state`]: what the slot holds.
const TAG: usize = 0b11;
/// The slot holds nothing.
const FREE: usize = 0;
/// The slot's range is being written.
const FILLING: usize = 1;
/// The slot holds a guarded range.
const LIVE: usize = 2;
/// One generation in [`Slot::state`]'s upper bits, counted up each time the slot is taken, so a
/// handler reading a range can tell that the slot changed under it.
const GENERATION: usize = 0b100;

/// One guarded range.
struct Slot {
    /// A tag ([`FREE`], [`FILLING`], [`LIVE`]) and a generation.
    state: AtomicUsize,
    /// The range's first address.
    start: AtomicUsize,
    /// The range's length in bytes.
    len: AtomicUsize,
    /// The handler covered a page of the range with zeros.
    truncated: AtomicBool,
}

impl Slot {
    /// A free slot.
    const fn free() -> Self {
        Slot {
            state: AtomicUsize::new(FREE),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
        }
    }
}

/// The guarded ranges.
static SLOTS: [Slot; MAX_GUARDED] = [const { Slot::free() }; MAX_GUARDED];

/// The page size, stored before the handler is installed (finding it may read files, which a
/// signal handler must not).
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The `SIGBUS` action this module's handler replaced, stored just after it was installed.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// Whether the handler is installed, or the errno that refused it.
static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

/// A read-only mapping of a regular file, registered with the `SIGBUS` handler, and the file,
/// to check its size. Drop it before unmapping.
#[derive(Debug)]
pub struct TruncationGuard {
    slot: usize,
    len: usize,
    file: OwnedFd,
    /// The file's name, for errors.
    path: PathBuf,
}

impl TruncationGuard {
    /// Guards the `len` bytes mapped at `start` from `fd`, a regular file.
    ///
    /// # Safety
    /// `start..start + len` must be a read-only mapping of `fd` that this process reads only
    /// through [`ring_core::ShmRegion`]s (the handler may replace its pages with zeros), and it
    /// must stay mapped until the guard is dropped.
    pub unsafe fn new(fd: BorrowedFd<'_>, start: *const u8, len: usize) -> Result<Self, Error> {
        install()?;
        let file = fd.try_clone_to_owned().map_err(|e| Error::Io { what: "dup of a buffer file", source: e })?;
        let slot = claim(start as usize, len).ok_or_else(|| Error::Io {
            what: "guarding a buffer file's mapping: too many are mapped at once",
            source: std::io::Error::from(std::io::ErrorKind::OutOfMemory),
        })?;
        Ok(Self { slot, len, file, path: file_name(fd) })
    }

    /// [`Error::Truncated`] if the file shrank while mapped: the handler covered a page of the
    /// mapping with zeros, or the file is now shorter than the mapping.
    pub fn check(&self) -> Result<(), Error> {
        // Ordering: Acquire pairs with the handler's Release store of the flag, which comes
        // before the zero page is mapped: a read that saw the zeros is followed by this load.
        let faulted = SLOTS[self.slot].truncated.load(Ordering::Acquire);
        let stat = rustix::fs::fstat(&self.file).map_err(|e| Error::io("fstat of a buffer file", e))?;
        if faulted || (stat.st_size as u64) < self.len as u64 {
            return Err(Error::Truncated(self.path.clone()));
        }
        Ok(())
    }
}

impl Drop for TruncationGuard {
    fn drop(&mut self) {
        release(self.slot);
    }
}

/// The name of `fd`'s file (its `/proc/self/fd` link), or a description if it cannot be read.
fn file_name(fd: BorrowedFd<'_>) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::from(format!("(descriptor {})", fd.as_raw_fd())))
}

/// Registers `len` bytes at `start` in a free slot; `None` if there is none.
fn claim(start: usize, len: usize) -> Option<usize> {
    for (index, slot) in SLOTS.iter().enumerate() {
        let state = slot.state.load(Ordering::Relaxed);
        if state & TAG != FREE {
            continue;
        }
        let filling = ((state & !TAG).wrapping_add(GENERATION)) | FILLING;
        // Ordering: Acquire pairs with the Release store in `release`: the slot's previous
        // holder is done with it.
        if slot.state.compare_exchange(state, filling, Ordering::Acquire, Ordering::Relaxed).is_err() {
            continue;
        }
        // Ordering: a sequence lock's writer. This fence orders the new state before the range's
        // stores, pairing with the Acquire fence in `slot_holding`: a handler that read any of
        // the new range sees the state changed when it looks again, and ignores what it read.
        fence(Ordering::Release);
        slot.start.store(start, Ordering::Relaxed);
        slot.len.store(len, Ordering::Relaxed);
        slot.truncated.store(false, Ordering::Relaxed);
        // Ordering: Release pairs with the Acquire load of the state in `slot_holding`: a handler
        // that sees the slot live sees its range.
        slot.state.store((filling & !TAG) | LIVE, Ordering::Release);
        return Some(index);
    }
    None
}

/// Frees slot `index`, before its range is unmapped.
fn release(index: usize) {
    let slot = &SLOTS[index];
    let state = slot.state.load(Ordering::Relaxed);
    // Ordering: Release pairs with the Acquire exchange in `claim`, the next holder's; the
    // handler reads the state with Acquire (in `slot_holding`) and so no longer takes the range.
    slot.state.store(state & !TAG, Ordering::Release);
}

/// The live slot whose range holds `address`, if any. Async-signal-safe.
fn slot_holding(address: usize) -> Option<&'static Slot> {
    SLOTS.iter().find(|slot| {
        // Ordering: Acquire pairs with the Release store that made the slot live in `claim`.
        let before = slot.state.load(Ordering::Acquire);
        if before & TAG != LIVE {
            return false;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // Ordering: a sequence lock's reader: this fence pairs with the Release fence in `claim`,
        // so the state loaded next is at least as new as the range just read.
        fence(Ordering::Acquire);
        let after = slot.state.load(Ordering::Relaxed);
        before == after && address.wrapping_sub(start) < len
    })
}

/// Installs the handler, once per process.
fn install() -> Result<(), Error> {
    let installed = INSTALLED.get_or_init(|| {
        // Ordering: Relaxed; the handler that reads it is installed after this store by the same
        // thread (`sigaction` is a system call, after which the kernel runs the handler), and it
        // never changes afterwards.
        PAGE_SIZE.store(rustix::param::page_size(), Ordering::Relaxed);
        // SAFETY: an all-zero `sigaction` is a valid value (no flags, empty mask, SIG_DFL).
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: as above.
        let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid `sigaction`s for the call; the handler is
        // async-signal-safe (it uses only atomics, `mmap`, `sigaction` and `raise`).
        if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut previous) } != 0 {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL));
        }
        // A fault before this store finds no previous action and takes the default one.
        let _ = PREVIOUS.set(previous);
        Ok(())
    });
    installed.map_err(|errno| Error::Io {
        what: "installing the SIGBUS handler for buffer files",
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// The `SIGBUS` handler.
extern "C" fn on_sigbus(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel hands an `SA_SIGINFO` handler a valid `siginfo_t`.
    let (code, address) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // A positive code: the kernel raised it for an access of this thread (not another process's
    // kill), and the access is retried when the handler returns.
    let fault = code > 0;
    if fault && cover_with_zeros(address) {
        return;
    }
    pass_on(signal, info, context, fault);
}

/// Maps a zero page over the page holding `address` if that lies in a guarded range, and marks
/// the range truncated; false if it does not, or the page could not be mapped.
fn cover_with_zeros(address: usize) -> bool {
    let Some(slot) = slot_holding(address) else { return false };
    // Ordering: Release pairs with the Acquire load in `TruncationGuard::check`; stored before
    // the zero page is mapped, so any thread that reads zeros from it finds the flag set after.
    slot.truncated.store(true, Ordering::Release);
    // Ordering: Relaxed; stored once before the handler was installed (see `install`).
    let page_size = PAGE_SIZE.load(Ordering::Relaxed);
    let page = address & !(page_size - 1);
    // SAFETY: the page lies in a live guarded mapping (its guard is dropped before it is
    // unmapped, and whoever faulted in it still holds it), which this process only reads, through
    // `ShmRegion`s. Replacing its page with a read-only page of zeros changes what they read,
    // not whether they may read it; `mmap` is a system call, safe in a signal handler.
    let mapped = unsafe {
        rustix::mm::mmap_anonymous(page as *mut c_void, page_size, ProtFlags::READ, MapFlags::PRIVATE | MapFlags::FIXED)
    };
    mapped.is_ok()
}

/// Hands a `SIGBUS` this module does not own to the action installed before its handler. A
/// default or ignoring action is put back and the signal happens again: a fault recurs when
/// its access is retried; a sent signal is raised again, to be taken when this handler returns
/// (a sent one that was ignored is ignored, and the handler stays).
fn pass_on(signal: c_int, info: *mut libc::siginfo_t, context: *mut c_void, fault: bool) {
    // SAFETY: an all-zero `sigaction` is a valid value: the default action.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    let previous = PREVIOUS.get().unwrap_or(&default);
    match previous.sa_sigaction {
        libc::SIG_IGN if !fault => {}
        libc::SIG_DFL | libc::SIG_IGN => {
            // SAFETY: `previous` is a valid `sigaction`; `sigaction` and `raise` are
            // async-signal-safe. The signal is blocked while this handler runs, so the raised
            // one waits for its return, and then meets the action put back.
            unsafe {
                libc::sigaction(signal, previous, std::ptr::null_mut());
                if !fault {
                    libc::raise(signal);
                }
            }
        }
        handler if previous.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: with `SA_SIGINFO`, `sa_sigaction` is a three-argument handler; it gets the
            // arguments this one got, as if the kernel had called it.
            let handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                unsafe { std::mem::transmute(handler) };
            handler(signal, info, context);
        }
        handler => {
            // SAFETY: without `SA_SIGINFO`, `sa_sigaction` is a one-argument handler.
            let handler: extern "C" fn(c_int) = unsafe { std::mem::transmute(handler) };
            handler(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A file of `pages` pages of 0xab, mapped read-only and guarded.
    struct Mapped {
        file: tempfile::NamedTempFile,
        map: memmap2::MmapRaw,
        guard: Option<TruncationGuard>,
    }

    fn mapped(pages: usize) -> Mapped {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), vec![0xab; pages * 4096]).unwrap();
        let map = memmap2::MmapOptions::new().len(pages * 4096).map_raw_read_only(file.as_file()).unwrap();
        // SAFETY: `map` is a read-only mapping of the file, read only through `ShmRegion`s
        // (`Mapped::byte`), and `Mapped` drops the guard before the mapping.
        let guard = unsafe { TruncationGuard::new(file.as_file().as_fd(), map.as_ptr(), pages * 4096) }.unwrap();
        Mapped { file, map, guard: Some(guard) }
    }

    impl Mapped {
        /// The byte at `offset`, read as a consumer reads shared memory.
        fn byte(&self, offset: usize) -> u8 {
            let base = std::ptr::NonNull::new(self.map.as_mut_ptr()).unwrap();
            // SAFETY: the mapping is readable, `self.map.len()` bytes, and outlives the region;
            // this process reads it only through the region.
            let region = unsafe { ring_core::ShmRegion::from_raw_parts_read_only(base, self.map.len()) };
            region.load_u32(offset & !3).to_ne_bytes()[offset & 3]
        }
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // The guard goes before the mapping, as `ReadOnlyMapping` drops them.
            drop(self.guard.take());
        }
    }

    #[test]
    fn reading_past_a_truncated_end_reads_zeros_and_is_reported() {
        let m = mapped(4);
        let guard = m.guard.as_ref().unwrap();
        guard.check().expect("intact");
        assert_eq!(m.byte(3 * 4096 + 5), 0xab);
        m.file.as_file().set_len(4096 + 100).unwrap();
        // The page holding the new end: zeros past it, no signal; the size tells.
        assert_eq!(m.byte(4096 + 200), 0);
        assert!(matches!(guard.check(), Err(Error::Truncated(path)) if path == m.file.path()));
        // Wholly past the end: a SIGBUS, covered with zeros, and the range marked.
        assert_eq!(m.byte(3 * 4096 + 5), 0, "the fault was covered with a zero page");
        assert!(SLOTS[guard.slot].truncated.load(Ordering::Acquire), "the handler marked the range");
        // Growing the file back does not make the mapping trustworthy again.
        m.file.as_file().set_len(4 * 4096).unwrap();
        assert!(matches!(guard.check(), Err(Error::Truncated(_))));
        assert_eq!(m.byte(0), 0xab, "pages still inside the file read as before");
    }

    #[test]
    fn slots_are_reused_and_a_freed_range_is_no_longer_covered() {
        let first = mapped(1);
        let slot = first.guard.as_ref().unwrap().slot;
        let start = first.map.as_ptr() as usize;
        assert!(slot_holding(start).is_some());
        drop(first);
        assert!(slot_holding(start).is_none_or(|s| !std::ptr::eq(s, &SLOTS[slot])), "released");
        let again = mapped(1);
        again.guard.as_ref().unwrap().check().expect("a fresh slot starts intact");
    }

    #[test]
    fn faults_outside_guarded_ranges_keep_their_default_action() {
        // A child process maps a file without a guard, truncates it and reads: it must die of
        // SIGBUS as any process would, though the handler is installed.
        if std::env::var_os("HYPTRACE_SIGBUS_CHILD").is_some() {
            let keep = mapped(1);
            let file = tempfile::tempfile().unwrap();
            file.set_len(8192).unwrap();
            let map = memmap2::MmapOptions::new().len(8192).map_raw_read_only(&file).unwrap();
            file.set_len(0).unwrap();
            let base = std::ptr::NonNull::new(map.as_mut_ptr()).unwrap();
            // SAFETY: the mapping is readable as far as the kernel's page tables go; reading
            // past the file's end faults, which is what this child exists to do.
            let region = unsafe { ring_core::ShmRegion::from_raw_parts_read_only(base, 8192) };
            let _ = std::hint::black_box(region.load_u32(4096));
            drop(keep);
            println!("survived");
            std::process::exit(0);
        }
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "truncation::tests::faults_outside_guarded_ranges_keep_their_default_action"])
            .args(["--nocapture", "--test-threads=1"])
            .env("HYPTRACE_SIGBUS_CHILD", "1")
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));
    }
}
