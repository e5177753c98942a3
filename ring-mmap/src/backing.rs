//! The memory behind one CPU's buffer: a sealed memfd (default) or a file in a directory.
//!
//! A CPU's file holds its meta area followed by its sub-buffers ([`CpuLayout`]). The producer
//! maps it read-write once; consumers get a file descriptor opened read-only, so they can only map
//! it read-only. A memfd is moreover sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE |
//! F_SEAL_SEAL`) right after the producer mapped it: its size can never change (a consumer's
//! mapping can never hit `SIGBUS`) and no new writable mapping or `write()` is possible, even
//! through a read-write descriptor. Files in a directory cannot be sealed; they exist so that
//! other tools and a post-mortem reader can open them by name. The directory must be the
//! producer's user's alone; it is opened and checked once ([`Backing::open`]), and every file in
//! it is opened through that descriptor, never following a symbolic link.

use crate::dir_backing::{CpuFile, DirBacking};
use crate::error::{BufferProblem, Error, Unsafety};
use crate::lock_holder::lock_holders;
use crate::truncation::TruncationGuard;
use crate::users::euid;
use memmap2::{MmapOptions, MmapRaw};
use ring_core::{Geometry, SharedView, ShmRegion};
use rustix::fs::{FlockOperation, Mode, OFlags, SealFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

/// Where the producer puts its buffers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Backing {
    /// Anonymous sealed memfds, reachable only through the control socket.
    #[default]
    Memfd,
    /// Files `cpu0`, `cpu1`, ... in a directory, which outlive the producer. The directory must be
    /// this user's and closed to everyone else (mode 0700; it is created so if missing), and
    /// every file the producer opens in it must be its user's regular file: anything else is
    /// refused ([`Error::UnsafeDir`], [`Error::UnsafeFile`]).
    Dir {
        /// The directory.
        path: PathBuf,
        /// Overwrite the buffer files a producer that has gone left in the directory. Without
        /// this, a directory holding any `cpuN` file is refused ([`Error::DirHoldsBuffers`]), so
        /// that they can be read first. A live producer's directory is refused either way
        /// ([`Error::ProducerAlive`]).
        overwrite: bool,
    },
}

impl Backing {
    /// Gets ready to create a producer's buffers here: for a directory, opens it (creating it if
    /// missing) and checks it (see [`Backing::Dir`]).
    pub fn open(&self) -> Result<OpenBacking, Error> {
        let dir = match self {
            Backing::Memfd => None,
            Backing::Dir { path, overwrite } => Some(DirBacking::open(path, *overwrite)?),
        };
        Ok(OpenBacking { dir })
    }
}

/// A [`Backing`] opened by a producer, to create its CPUs' buffers in ([`CpuBacking::create`]).
/// A directory is used through the descriptor opened and checked then, never through its path
/// again.
#[derive(Debug)]
pub struct OpenBacking {
    /// The directory, or `None` for memfds.
    dir: Option<DirBacking>,
}

impl OpenBacking {
    /// Writes `bytes` to the file `name` of a [`Backing::Dir`] directory, atomically (a reader sees
    /// the old content or the new, never a mix); memfd buffers have no directory, so nothing is
    /// written. The producer publishes what a post-mortem reader needs besides the buffers
    /// ([`crate::postmortem`]): the event formats, the clock conversion.
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.dir.as_ref().map_or(Ok(()), |dir| dir.publish(name, bytes))
    }

    /// Removes what an earlier producer left in a [`Backing::Dir`] directory that this one does
    /// not overwrite (its CPU files beyond `nr_cpus`, its clock conversion), so that a post-mortem
    /// reader does not take it for this producer's. Call it once this producer's own CPU files
    /// are created (and locked).
    pub fn remove_stale_files(&self, nr_cpus: u32) -> Result<(), Error> {
        self.dir.as_ref().map_or(Ok(()), |dir| dir.remove_stale_files(nr_cpus))
    }
}

/// Where things are in one CPU's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLayout {
    /// Sub-buffer size and count.
    pub geometry: Geometry,
}

impl CpuLayout {
    /// Bytes of the meta area at the start of the file (a multiple of 4096).
    pub fn meta_size(&self) -> usize {
        self.geometry.meta_size()
    }

    /// Bytes of the whole file.
    pub fn file_size(&self) -> usize {
        self.meta_size() + self.geometry.data_len()
    }
}

/// Name of CPU `cpu`'s file in a [`Backing::Dir`] directory.
pub fn cpu_file_name(cpu: u32) -> String {
    format!("cpu{cpu}")
}

/// One CPU's file, mapped read-write by the producer.
#[derive(Debug)]
pub struct CpuBacking {
    map: MmapRaw,
    file: File,
    read_only: OwnedFd,
    layout: CpuLayout,
}

impl CpuBacking {
    /// Creates CPU `cpu`'s file (zero-filled) in `backing` and maps it.
    pub fn create(backing: &OpenBacking, cpu: u32, layout: CpuLayout) -> Result<Self, Error> {
        let size = layout.file_size();
        let (file, read_only, sealed) = match &backing.dir {
            None => {
                let fd = rustix::fs::memfd_create(
                    format!("hyptrace-cpu{cpu}"),
                    rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
                )
                .map_err(|e| Error::io("memfd_create", e))?;
                (File::from(fd), None, true)
            }
            Some(dir) => {
                let CpuFile { read_write, read_only } = dir.create_cpu_file(cpu)?;
                (File::from(read_write), Some(read_only), false)
            }
        };
        file.set_len(size as u64).map_err(|e| Error::Io { what: "sizing a buffer file", source: e })?;
        let map = MmapOptions::new()
            .len(size)
            .map_raw(&file)
            .map_err(|e| Error::Io { what: "mapping a buffer", source: e })?;
        if sealed {
            // After this nobody can resize the memfd or map it writable again; our mapping stays.
            rustix::fs::fcntl_add_seals(
                &file,
                SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
            )
            .map_err(|e| Error::io("sealing a memfd", e))?;
        }
        let read_only = match read_only {
            Some(fd) => fd,
            // A second, read-only open file description of the memfd, for consumers.
            None => rustix::fs::open(
                format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)),
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io("reopening a memfd read-only", e))?,
        };
        Ok(Self { map, file, read_only, layout })
    }

    /// The address of the producer's read-write mapping (meta area first). Access it only
    /// through [`ShmRegion`]s (see [`CpuBacking::regions`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The file's layout.
    pub fn layout(&self) -> CpuLayout {
        self.layout
    }

    /// A read-only descriptor of the file, to hand to consumers.
    pub fn read_only_fd(&self) -> BorrowedFd<'_> {
        self.read_only.as_fd()
    }

    /// The read-write descriptor (never handed out).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The meta area and the sub-buffer array as shared regions.
    ///
    /// # Safety
    /// The regions point into this mapping: they (and anything built on them) must be dropped
    /// before `self`, and this process must access those bytes only through such regions.
    pub unsafe fn regions(&self) -> (ShmRegion, ShmRegion) {
        let base = NonNull::new(self.map.as_mut_ptr()).expect("mmap never returns null");
        let meta_size = self.layout.meta_size();
        // SAFETY: the mapping is page-aligned, read-write, `file_size` bytes long and lives as long
        // as `self`, which the caller keeps alive beyond the regions; the caller promises to
        // access it only through regions. The data region starts `meta_size` bytes in (a multiple
        // of 4096, so 8-aligned) and ends at the end of the mapping.
        unsafe {
            let data = base.add(meta_size);
            (
                ShmRegion::from_raw_parts(base, meta_size),
                ShmRegion::from_raw_parts(data, self.layout.geometry.data_len()),
            )
        }
    }
}

/// A CPU's file mapped read-only by a consumer.
#[derive(Debug)]
pub struct ReadOnlyMapping {
    meta: ShmRegion,
    data: ShmRegion,
    /// For a regular file, which may shrink under the mapping: what keeps that from killing
    /// this process, and reports it.
    truncation: Option<TruncationGuard>,
    // Declared last: dropped after the regions and the guard that point into it.
    map: MmapRaw,
}

impl ReadOnlyMapping {
    /// Maps `len` bytes of `fd` read-only and splits them at `meta_size` into the meta area and
    /// the sub-buffer array. Refuses files shorter than `len` (a mapping past the end of a file
    /// faults on access) and memfds that a producer could still shrink; guards a regular file,
    /// which anyone who may write to it can shrink, with a [`TruncationGuard`]
    /// ([`ReadOnlyMapping::check_intact`]).
    pub fn new(fd: BorrowedFd<'_>, len: usize, meta_size: usize) -> Result<Self, Error> {
        check_meta_size(meta_size, len)?;
        let stat = rustix::fs::fstat(fd).map_err(|e| Error::io("fstat of a buffer", e))?;
        if (stat.st_size as u64) < len as u64 {
            return Err(Error::BadBuffer(BufferProblem::FileTooShort { size: stat.st_size as u64, expected: len }));
        }
        // A memfd must be sealed against shrinking. A regular file (a `--dir` buffer) cannot be
        // sealed, on tmpfs it even reports F_SEAL_SEAL alone: it is guarded instead, as anyone
        // who may write to it could truncate it (docs/abi.md §1). Only the name tells the two
        // apart; a descriptor whose name cannot be read must show the seal.
        let memfd = may_be_memfd(fd);
        if memfd {
            let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| Error::io("F_GET_SEALS", e))?;
            if !seals.contains(SealFlags::SHRINK) {
                return Err(Error::BadBuffer(BufferProblem::Unsealed));
            }
        }
        let mut mapping = Self::map_device(fd, len, meta_size)?;
        if !memfd {
            // SAFETY: `map` is a read-only mapping of `fd`, `len` bytes, read only through the
            // regions; the guard is a field declared before `map`, so it is dropped first.
            mapping.truncation = Some(unsafe { TruncationGuard::new(fd, mapping.map.as_ptr(), len) }?);
        }
        Ok(mapping)
    }

    /// Maps `len` bytes of `fd` read-only without looking at the file's size or seals: for a
    /// device file whose mapping the kernel itself sizes and never shrinks (tracefs
    /// `trace_pipe_raw`, whose size reads as 0).
    pub fn map_device(fd: BorrowedFd<'_>, len: usize, meta_size: usize) -> Result<Self, Error> {
        check_meta_size(meta_size, len)?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw_read_only(&fd)
            .map_err(|e| Error::Io { what: "mapping a buffer read-only", source: e })?;
        let base = NonNull::new(map.as_ptr().cast_mut()).expect("mmap never returns null");
        // SAFETY: the mapping is page-aligned, `len` bytes, readable, and owned by the returned
        // value, which drops the regions before it; `meta_size <= len` was checked and is a
        // multiple of 4096. This process only reads these bytes, through the regions.
        let (meta, data) = unsafe {
            (
                ShmRegion::from_raw_parts_read_only(base, meta_size),
                ShmRegion::from_raw_parts_read_only(base.add(meta_size), len - meta_size),
            )
        };
        Ok(Self { meta, data, truncation: None, map })
    }

    /// [`Error::Truncated`] if the mapped file shrank since it was mapped (a regular file only:
    /// memfds are sealed, devices sized by the kernel). Check it after reading, before trusting
    /// what was read: a page lost to truncation reads as zeros.
    pub fn check_intact(&self) -> Result<(), Error> {
        self.truncation.as_ref().map_or(Ok(()), TruncationGuard::check)
    }

    /// The mapped buffer, validated ([`SharedView::new`]); a file truncated under the mapping is
    /// [`Error::Truncated`] (its zeros would fail validation: say why instead).
    pub fn view(&self) -> Result<SharedView<'_>, Error> {
        let view = SharedView::new(&self.meta, &self.data);
        self.check_intact()?;
        Ok(view?)
    }

    /// The meta area.
    pub fn meta(&self) -> &ShmRegion {
        &self.meta
    }

    /// The sub-buffer array.
    pub fn data(&self) -> &ShmRegion {
        &self.data
    }
}

/// Refuses a meta area of `meta_size` bytes that cannot start a `len`-byte mapping: one not a
/// whole number of pages (the sub-buffers after it must be page-aligned), or longer than it.
fn check_meta_size(meta_size: usize, len: usize) -> Result<(), Error> {
    if !meta_size.is_multiple_of(4096) || meta_size > len {
        return Err(Error::BadBuffer(BufferProblem::MetaLayout { meta_size, len }));
    }
    Ok(())
}

/// True if `fd` is a memfd (its `/proc/self/fd` link reads `/memfd:NAME (deleted)`).
fn may_be_memfd(fd: BorrowedFd<'_>) -> bool {
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    std::fs::read_link(link).map_or(true, |target| target.as_os_str().as_encoded_bytes().starts_with(b"/memfd:"))
}

/// Takes the non-blocking `flock` `how` on the buffer file `path`, open as `fd`: a live producer
/// holds its files exclusively, post-mortem readers shared, so a conflict means a producer is
/// alive ([`Error::ProducerAlive`]), unless `/proc/locks` says otherwise: a process of another
/// user's is no producer of this user's ([`Error::LockedByAnotherUser`]), and a producer that
/// finds only shared locks has met post-mortem readers ([`Error::BeingRecovered`]).
pub(crate) fn lock_cpu_file(fd: BorrowedFd<'_>, path: &Path, how: FlockOperation) -> Result<(), Error> {
    rustix::fs::flock(fd, how).map_err(|e| match e {
        Errno::WOULDBLOCK => {
            let holders = lock_holders(fd);
            let path = path.to_path_buf();
            let wants_exclusive = how == FlockOperation::NonBlockingLockExclusive;
            if let Some(other) = holders.iter().find(|h| h.uid != euid()) {
                Error::LockedByAnotherUser { path, pid: other.pid, uid: other.uid }
            } else if let Some(reader) = holders.first().filter(|_| wants_exclusive && holders.iter().all(|h| h.shared))
            {
                Error::BeingRecovered { path, pid: reader.pid }
            } else {
                Error::ProducerAlive(path)
            }
        }
        e => Error::path("locking", path, e.into()),
    })
}

/// Opens CPU `cpu`'s file in a [`Backing::Dir`] directory read-only (post-mortem reading).
/// Where permission is denied because the file, or a directory on the way to it, is another
/// user's, says so ([`Error::AnotherUsersFile`]).
pub fn open_cpu_file(dir: &Path, cpu: u32) -> Result<OwnedFd, Error> {
    open_regular_file(&dir.join(cpu_file_name(cpu)))
}

/// Opens `path`, a regular file, read-only for a post-mortem reader: a symbolic link (which could
/// point at any file) or anything but a regular file (a FIFO would block the open, a device
/// could be endless) is refused ([`Error::UnsafeFile`]). Where permission is denied because the
/// file, or a directory on the way to it, is another user's, says so ([`Error::AnotherUsersFile`]).
pub fn open_regular_file(path: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let file = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
        // What denies it: the file if it can be looked up, else the nearest directory that can
        // (the one that cannot be searched).
        let denier = path.ancestors().find_map(|at| owner_and_mode(at).map(|(owner, mode)| (at, owner, mode)));
        match (e, denier) {
            (Errno::ACCESS, Some((at, owner, mode))) if owner != euid() => {
                Error::AnotherUsersFile { path: at.to_path_buf(), owner, mode }
            }
            (Errno::LOOP, _) => Error::UnsafeFile { path: path.to_path_buf(), problem: Unsafety::SymbolicLink },
            (e, _) => Error::path("opening", path, e.into()),
        }
    })?;
    let stat = rustix::fs::fstat(&file).map_err(|e| Error::path("looking at", path, e.into()))?;
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_file() {
        return Err(Error::UnsafeFile { path: path.to_path_buf(), problem: Unsafety::NotARegularFile });
    }
    Ok(file)
}

/// The owner and permission bits of `path`, if it can be looked up.
fn owner_and_mode(path: &Path) -> Option<(u32, u32)> {
    rustix::fs::lstat(path).ok().map(|stat| (stat.st_uid, stat.st_mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> CpuLayout {
        CpuLayout { geometry: Geometry::new(4096, 4).unwrap() }
    }

    /// A backing directory `path`, opened.
    fn open_dir(path: &Path, overwrite: bool) -> Result<OpenBacking, Error> {
        Backing::Dir { path: path.to_path_buf(), overwrite }.open()
    }

    #[test]
    fn stale_files_of_an_earlier_run_are_removed() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let backing = open_dir(&dir, false).unwrap();
        let three: Vec<_> = (0..3).map(|cpu| CpuBacking::create(&backing, cpu, layout()).unwrap()).collect();
        // A second producer of the directory is refused at cpu0, before it removes anything.
        assert!(matches!(open_dir(&dir, false), Err(Error::ProducerAlive(_))));
        let overwriting = open_dir(&dir, true).unwrap();
        assert!(matches!(CpuBacking::create(&overwriting, 0, layout()), Err(Error::ProducerAlive(_))));
        drop(three);
        // Dead, the old run's files are refused unless overwriting them was asked for.
        let refused = open_dir(&dir, false).unwrap_err();
        assert!(matches!(&refused, Error::DirHoldsBuffers { path } if *path == dir), "{refused}");
        assert_eq!(std::fs::metadata(dir.join("cpu2")).unwrap().len() as usize, layout().file_size());
        // A post-mortem reader of the old run holds cpu2: it is removed all the same.
        let reader = open_cpu_file(&dir, 2).unwrap();
        lock_cpu_file(reader.as_fd(), &dir.join("cpu2"), FlockOperation::NonBlockingLockShared).unwrap();
        // A later run of one CPU: cpu1 and cpu2 go, cpu0 is its own.
        std::fs::write(dir.join(crate::postmortem::CLOCK_FILE), [0; 24]).unwrap();
        let one = CpuBacking::create(&overwriting, 0, layout()).unwrap();
        overwriting.remove_stale_files(1).unwrap();
        let left: Vec<_> = (0..3).filter(|cpu| dir.join(cpu_file_name(*cpu)).exists()).collect();
        assert_eq!(left, [0]);
        assert!(!dir.join(crate::postmortem::CLOCK_FILE).exists(), "an old clock conversion goes too");
        drop((one, reader));
        Backing::Memfd.open().unwrap().remove_stale_files(0).unwrap();
    }

    #[test]
    fn memfds_are_sealed_and_handed_out_read_only() {
        let b = CpuBacking::create(&Backing::Memfd.open().unwrap(), 0, layout()).unwrap();
        assert_eq!(b.file().metadata().unwrap().len(), 4096 + 4 * 4096);
        let seals = rustix::fs::fcntl_get_seals(b.file()).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL));
        // Even the read-write descriptor can no longer be mapped writable.
        assert!(MmapOptions::new().len(4096).map_raw(b.file()).is_err());
        // The consumer's descriptor maps read-only only.
        assert!(MmapOptions::new().len(4096).map_raw(&b.read_only_fd()).is_err());
        let ro = ReadOnlyMapping::new(b.read_only_fd(), layout().file_size(), 4096).unwrap();
        // SAFETY: `b` outlives the regions, which are the only accessors in this process.
        let (meta, _data) = unsafe { b.regions() };
        meta.store_u32(0, 0xfeed, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(ro.meta().load_u32(0), 0xfeed, "the consumer sees the producer's writes");
    }

    #[test]
    fn files_in_a_directory_are_read_only_for_consumers() {
        let dir = tempfile::tempdir().unwrap();
        let backing = open_dir(&dir.path().join("bufs"), false).unwrap();
        let b = CpuBacking::create(&backing, 3, layout()).unwrap();
        let path = dir.path().join("bufs").join("cpu3");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, layout().file_size());
        let fd = open_cpu_file(&dir.path().join("bufs"), 3).unwrap();
        assert!(MmapOptions::new().len(4096).map_raw(&fd).is_err());
        assert!(ReadOnlyMapping::new(fd.as_fd(), layout().file_size(), 4096).is_ok());
        drop(b);
    }

    #[test]
    fn files_on_tmpfs_are_accepted_though_they_report_a_seal() {
        // /dev/shm is tmpfs: its regular files report F_SEAL_SEAL and can never be sealed.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("SKIPPED: no /dev/shm here");
            return;
        };
        let b = CpuBacking::create(&open_dir(&dir.path().join("bufs"), false).unwrap(), 0, layout()).unwrap();
        let seals = rustix::fs::fcntl_get_seals(b.read_only_fd());
        assert!(seals.is_ok_and(|s| !s.contains(SealFlags::SHRINK)), "tmpfs files report seals without SHRINK");
        assert!(!may_be_memfd(b.read_only_fd()));
        assert!(ReadOnlyMapping::new(b.read_only_fd(), layout().file_size(), 4096).is_ok());
    }

    #[test]
    fn short_files_and_bad_layouts_are_refused() {
        let b = CpuBacking::create(&Backing::Memfd.open().unwrap(), 0, layout()).unwrap();
        let size = layout().file_size();
        let short = BufferProblem::FileTooShort { size: size as u64, expected: size + 4096 };
        let got = ReadOnlyMapping::new(b.read_only_fd(), size + 4096, 4096);
        assert!(matches!(got, Err(Error::BadBuffer(problem)) if problem == short), "{got:?}");
        let got = ReadOnlyMapping::new(b.read_only_fd(), size, 100);
        let layout = BufferProblem::MetaLayout { meta_size: 100, len: size };
        assert!(matches!(got, Err(Error::BadBuffer(problem)) if problem == layout), "{got:?}");
        let got = ReadOnlyMapping::map_device(b.read_only_fd(), 4096, 8192);
        let layout = BufferProblem::MetaLayout { meta_size: 8192, len: 4096 };
        assert!(matches!(got, Err(Error::BadBuffer(problem)) if problem == layout), "{got:?}");
        let unsealed = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&unsealed, size as u64).unwrap();
        let got = ReadOnlyMapping::new(unsealed.as_fd(), size, 4096);
        assert!(matches!(got, Err(Error::BadBuffer(BufferProblem::Unsealed))), "{got:?}");
    }
}
