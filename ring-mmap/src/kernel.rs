//! The Linux kernel's memory-mapped trace buffers (Linux 6.10+): tracefs
//! `per_cpu/cpuN/trace_pipe_raw`, mapped read-only, consumed with `TRACE_MMAP_IOCTL_GET_READER`.
//!
//! The kernel lays the mapping out as hyptrace does (its `trace_buffer_meta`, then the
//! sub-buffers in id order; the meta page is `subbuf_size` bytes when sub-buffers are larger than
//! a page) and uses the same page format, so [`KernelCpu`] is a [`CpuSource`] like
//! [`crate::SocketCpu`] and the same [`crate::Consumer`] reads it. The differences:
//!
//! - **The ioctl carries no read amount.** It marks the *whole* current reader page consumed up to
//!   its `commit` at the time of the call, and swaps in a new page only if nothing was added since
//!   the previous call. So [`KernelCpu`] keeps its own position: while the reader page stays the
//!   same, reading resumes where this consumer stopped (events the writer added just before the
//!   ioctl are still there to read, even though the kernel counts them read); on a new page, from
//!   its start. The meta area's `reader.read` is the kernel's mark, not ours.
//! - **Losses** are reported through the new reader page's `commit` flags (`RB_MISSED_EVENTS`,
//!   with the count stored after the data when it fits), not through `reader.lost_events`.
//! - **No non-consuming snapshots**: the kernel publishes no `data_index[]`.
//! - **Waiting** is `poll()` on the file, governed by the instance's `buffer_percent`, not by a
//!   per-request watermark; the kernel never goes away, so there is no hangup.

use crate::backing::ReadOnlyMapping;
use crate::consumer::{CpuSource, Lost, ReaderPage, Wakeup, existing_page};
use crate::error::{BufferProblem, Error, PageRole};
use memmap2::MmapOptions;
use ring_core::meta::off;
use ring_core::{EventIter, Geometry, PageSource, SharedView, ShmRegion, Stats};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{NoArg, Opcode, opcode};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::Duration;

/// `TRACE_MMAP_IOCTL_GET_READER` = `_IO('R', 0x20)` (0x5220).
pub const TRACE_MMAP_IOCTL_GET_READER: Opcode = opcode::none(b'R', 0x20);

/// Where tracefs is normally mounted.
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// One CPU of a kernel trace buffer, mapped read-only.
#[derive(Debug)]
pub struct KernelCpu {
    cpu: u32,
    mapping: ReadOnlyMapping,
    // Declared after the mapping: the kernel keeps the buffer mapped while the file is open.
    file: OwnedFd,
    /// The reader page as of the last ioctl.
    reader: u32,
}

impl KernelCpu {
    /// Opens and maps CPU `cpu` of the trace buffer in `tracing` (tracefs, or one of its
    /// `instances/NAME` directories).
    pub fn open(tracing: &Path, cpu: u32) -> Result<Self, Error> {
        let path = tracing.join(format!("per_cpu/cpu{cpu}/trace_pipe_raw"));
        let file = rustix::fs::open(&path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::path("opening", &path, e.into()))?;
        let (meta_size, len) = kernel_layout(&file).map_err(|e| match e {
            Error::Io { what, source } => Error::Path { what, path: path.clone(), source },
            other => other,
        })?;
        let mapping = ReadOnlyMapping::map_device(file.as_fd(), len, meta_size)?;
        let reader = SharedView::new(mapping.meta(), mapping.data())?.meta().reader().id;
        Ok(Self { cpu, mapping, file, reader })
    }

    /// The counters of `per_cpu/cpuN/stats` next to this CPU's file.
    pub fn stats_file(tracing: &Path, cpu: u32) -> Result<KernelStats, Error> {
        let path = tracing.join(format!("per_cpu/cpu{cpu}/stats"));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::path("reading", &path, e))?;
        Ok(KernelStats::parse(&text))
    }
}

/// Reads the sizes from the meta page: (meta page size, length of the whole mapping).
fn kernel_layout(file: &OwnedFd) -> Result<(usize, usize), Error> {
    let first = MmapOptions::new()
        .len(4096)
        .map_raw_read_only(file)
        .map_err(|e| Error::Io { what: "mapping the meta page of", source: e })?;
    let base = NonNull::new(first.as_ptr().cast_mut()).expect("mmap never returns null");
    // SAFETY: `first` is a 4096-byte, page-aligned, readable mapping that outlives `meta` (dropped
    // at the end of this function, before `first`); this process only reads it, through `meta`.
    let meta = unsafe { ShmRegion::from_raw_parts_read_only(base, 4096) };
    let meta_size = meta.load_u32(off::META_PAGE_SIZE) as usize;
    let geometry = Geometry::new(meta.load_u32(off::SUBBUF_SIZE), meta.load_u32(off::NR_SUBBUFS))?;
    if meta_size < 4096 || !meta_size.is_multiple_of(4096) {
        return Err(Error::BadBuffer(BufferProblem::KernelMetaPage { meta_size }));
    }
    let len = meta_size
        .checked_add(geometry.data_len())
        .ok_or(Error::BadBuffer(BufferProblem::KernelTooLarge { meta_size, geometry }))?;
    drop(meta);
    Ok((meta_size, len))
}

impl CpuSource for KernelCpu {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn view(&self) -> Result<SharedView<'_>, Error> {
        Ok(SharedView::new(self.mapping.meta(), self.mapping.data())?)
    }

    fn get_reader_page(&mut self, read: u32) -> Result<ReaderPage, Error> {
        loop {
            // SAFETY: TRACE_MMAP_IOCTL_GET_READER takes no argument and writes no user memory.
            match unsafe { rustix::ioctl::ioctl(&self.file, NoArg::<TRACE_MMAP_IOCTL_GET_READER>::new()) } {
                Ok(()) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::io("TRACE_MMAP_IOCTL_GET_READER", e)),
            }
        }
        let cpu = self.cpu;
        // Borrows only the mapping, so `self.reader` can be updated below.
        let view = SharedView::new(self.mapping.meta(), self.mapping.data())?;
        let id = view.meta().reader().id;
        let page = existing_page(&view, cpu, id, PageRole::Reader)?;
        let swapped = id != self.reader;
        self.reader = id;
        if !swapped {
            // Ordering: `commit` is read with acquire semantics, pairing with the kernel's commit.
            if read > page.committed_len() {
                // Read further than the page now holds: the buffer was reset under us (`echo >
                // trace`, a tracer or clock change), which empties the reader page in place.
                // Start it over; whatever the reset discarded unread is lost, uncounted.
                return Ok(ReaderPage { id, start: 0, swapped: true, lost: Lost::Unknown });
            }
            return Ok(ReaderPage { id, start: read, swapped, lost: Lost::None });
        }
        let lost = EventIter::new(&page).map_err(|error| Error::Malformed { cpu, id, error })?.missed_events();
        Ok(ReaderPage { id, start: 0, swapped, lost })
    }

    fn arm(&mut self, _pages: u32) -> Result<bool, Error> {
        // The kernel's poll() is armed by the instance's buffer_percent; nothing to request.
        Ok(false)
    }

    fn wait_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn wait(&mut self, _pages: u32, timeout: Option<Duration>) -> Result<Wakeup, Error> {
        let ts = timeout.map(|d| Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) });
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => Ok(Wakeup::TimedOut),
            Ok(_) | Err(Errno::INTR) => Ok(Wakeup::Ready),
            Err(e) => Err(Error::io("poll on trace_pipe_raw", e)),
        }
    }
}

/// The counters of tracefs `per_cpu/cpuN/stats`: those that mean what hyptrace's do, as
/// ring-core's [`Stats`], and the kernel's own beside them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// The event counts: `overrun` (`overrun:`), `dropped` (`dropped events:`, producer/consumer
    /// mode), `read` (`read events:`), and `entries`, events committed, which the kernel counts
    /// but the file shows less the read and overwritten ones (as [`KernelStats::unread`]): here
    /// `unread + read + overrun`, the kernel's own count again. The file has no page counts,
    /// swaps nor full pages: 0.
    pub stats: Stats,
    /// Events in the buffer not yet read (`entries:`): [`Stats::in_buffer`], not
    /// [`Stats::entries`].
    pub unread: u64,
    /// The kernel's alone: events lost because a writer was interrupted and the buffer filled
    /// (`commit overrun:`).
    pub commit_overrun: u64,
    /// The kernel's alone: bytes of unread events (`bytes:`).
    pub bytes: u64,
}

impl KernelStats {
    /// Parses the text of a `stats` file; missing or malformed lines leave their field at 0.
    pub fn parse(text: &str) -> Self {
        let mut k = Self::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim().parse().unwrap_or(0);
            match key.trim() {
                "entries" => k.unread = value,
                "overrun" => k.stats.overrun = value,
                "commit overrun" => k.commit_overrun = value,
                "bytes" => k.bytes = value,
                "dropped events" => k.stats.dropped = value,
                "read events" => k.stats.read = value,
                _ => {}
            }
        }
        k.stats.entries = k.unread.saturating_add(k.stats.read).saturating_add(k.stats.overrun);
        k
    }
}

/// Mounts tracefs at [`TRACEFS`] if it is not mounted yet (needs root). Returns the directory.
///
/// Something else (systemd, another test) may mount it between the check and the mount, which
/// then fails with `EBUSY`: that is success, once the mount it lost to is there.
pub fn mount_tracefs() -> Result<PathBuf, Error> {
    let dir = PathBuf::from(TRACEFS);
    let mounted = || dir.join("trace_marker").exists();
    if mounted() {
        return Ok(dir);
    }
    let attempt = rustix::mount::mount("nodev", &dir, "tracefs", rustix::mount::MountFlags::empty(), None);
    mount_outcome(attempt, mounted).map_err(|e| Error::path("mounting tracefs on", &dir, e.into()))?;
    Ok(dir)
}

/// Whether a mount `attempt` leaves tracefs mounted: it did, or it lost a race to another mount
/// of it (`EBUSY`) and `mounted` now says so.
fn mount_outcome(attempt: rustix::io::Result<()>, mounted: impl Fn() -> bool) -> rustix::io::Result<()> {
    match attempt {
        Err(rustix::io::Errno::BUSY) if mounted() => Ok(()),
        other => other,
    }
}

/// A tracefs instance (its own trace buffer), removed when dropped.
#[derive(Debug)]
pub struct TracefsInstance {
    path: PathBuf,
}

/// The directory of the tracefs instance `name` under `tracefs`.
pub fn instance_dir(tracefs: &Path, name: &str) -> PathBuf {
    tracefs.join("instances").join(name)
}

impl TracefsInstance {
    /// Creates `instances/NAME` under `tracefs`.
    pub fn create(tracefs: &Path, name: &str) -> Result<Self, Error> {
        let path = instance_dir(tracefs, name);
        std::fs::create_dir(&path).map_err(|e| Error::path("creating tracefs instance", &path, e))?;
        Ok(Self { path })
    }

    /// The instance's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `value` to the instance's file `name` (e.g. `buffer_size_kb`).
    pub fn set(&self, name: &str, value: &str) -> Result<(), Error> {
        let path = self.path.join(name);
        std::fs::write(&path, value).map_err(|e| Error::path("writing", &path, e))
    }
}

impl TracefsInstance {
    /// Stops tracing in the instance and removes it; fails (`EBUSY`) while any of its files is
    /// open, a mapping of its buffers included.
    pub fn remove(self) -> Result<(), Error> {
        let path = self.path.clone();
        let removed = self.stop_and_remove();
        std::mem::forget(self);
        removed.map_err(|e| Error::path("removing tracefs instance", &path, e))
    }

    fn stop_and_remove(&self) -> std::io::Result<()> {
        // Best effort: an instance that is removed stops tracing anyway.
        let _ = std::fs::write(self.path.join("tracing_on"), "0");
        std::fs::remove_dir(&self.path)
    }
}

impl Drop for TracefsInstance {
    /// Removes the instance if it can ([`TracefsInstance::remove`] says why it could not).
    fn drop(&mut self) {
        let _ = self.stop_and_remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_that_lost_the_race_to_another_counts_as_mounted() {
        use rustix::io::Errno;
        assert_eq!(mount_outcome(Ok(()), || false), Ok(()));
        assert_eq!(mount_outcome(Err(Errno::BUSY), || true), Ok(()), "mounted meanwhile by someone else");
        assert_eq!(mount_outcome(Err(Errno::BUSY), || false), Err(Errno::BUSY), "busy, and still not mounted");
        assert_eq!(mount_outcome(Err(Errno::PERM), || true), Err(Errno::PERM));
    }

    #[test]
    fn the_ioctl_number_is_the_kernels() {
        assert_eq!(TRACE_MMAP_IOCTL_GET_READER, 0x5220);
    }

    #[test]
    fn stats_files_parse() {
        let text = "entries: 12\noverrun: 3\ncommit overrun: 0\nbytes: 480\noldest event ts:  5.123456\n\
                    now ts:  9.000001\ndropped events: 7\nread events: 40\n";
        let k = KernelStats::parse(text);
        assert_eq!((k.unread, k.bytes, k.commit_overrun), (12, 480, 0));
        let (s, entries) = (k.stats, 12 + 40 + 3);
        assert_eq!((s.entries, s.overrun, s.dropped, s.read), (entries, 3, 7, 40));
        assert_eq!(s.in_buffer(), k.unread);
        assert_eq!(KernelStats::parse("garbage\nentries: x\n"), KernelStats::default());
    }
}
