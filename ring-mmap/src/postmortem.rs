//! Reading a producer's buffer directory ([`Backing::Dir`](crate::Backing::Dir)) after the
//! producer has gone, however it went: exited, crashed, or killed with SIGKILL halfway through an
//! event or a page move. Like the kernel's persistent ring buffer after a reboot, the files still
//! hold everything the writer committed; [`DirCpu`] maps one read-only and serves it as a
//! [`CpuSource`] whose producer has hung up, so that [`Consumer::drain_remaining`] reads it
//! exactly as it reads a live producer's buffer after a hangup:
//!
//! ```text
//!   DIR/cpu0, cpu1, ...   meta area + sub-buffers, as the writer left them
//!   DIR/formats           the producer's event formats (Producer::formats)
//!   DIR/clock             the raw-clock conversion (ClockBody), if the producer published one
//! ```
//!
//! Only committed data is read: each page up to its `commit`, which the writer advances only
//! after an event's bytes are written (and, with nested writers, only when the outermost one
//! commits), so an event the writer was in the middle of is never returned, torn or otherwise.
//! Pages are found by their sequence numbers, not their slots, so a producer killed in the middle
//! of a swap loses nothing either ([`ring_core::SharedView::snapshot_quiescent`]). A file whose
//! meta area is blank, left by a producer that died while creating it, held nothing ever
//! recorded ([`Error::NotInitialised`]).
//!
//! A live producer holds an exclusive `flock` on each of its files; [`DirCpu::open`] takes a
//! shared one, so it refuses a live producer's files ([`Error::ProducerAlive`]) and no new
//! producer can reuse the directory while it is being read. The kernel drops a dead process's
//! locks, SIGKILL included.
//!
//! [`Consumer::drain_remaining`]: crate::Consumer::drain_remaining

use crate::backing::{CpuLayout, ReadOnlyMapping, cpu_file_name, lock_cpu_file, open_cpu_file, open_regular_file};
use crate::client::MAX_FORMATS_LEN;
use crate::consumer::{CpuSource, ReaderPage, Wakeup};
use crate::error::{DirFileProblem, Error};
use crate::wire::{ClockBody, parse_body};
use ring_core::meta::off;
use ring_core::{ClockParams, Geometry, SharedView};
use rustix::fs::FlockOperation;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file of a buffer directory holding the producer's event formats.
pub const FORMATS_FILE: &str = "formats";
/// The file of a buffer directory holding the producer's raw-clock conversion ([`ClockBody`]).
pub const CLOCK_FILE: &str = "clock";

/// The content of the small file `path` of a buffer directory (formats, clock), `None` if there is
/// none: a regular file (not a link, FIFO or device) of at most [`MAX_FORMATS_LEN`] bytes.
fn read_optional_file(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let file = match open_regular_file(path) {
        Ok(file) => file,
        Err(Error::Path { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    std::io::Read::take(std::fs::File::from(file), MAX_FORMATS_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::path("reading", path, e))?;
    if bytes.len() as u64 > MAX_FORMATS_LEN {
        return Err(Error::BadDirFile { path: path.to_path_buf(), problem: DirFileProblem::TooLarge });
    }
    Ok(Some(bytes))
}

/// One CPU's file in the directory of a producer that has gone, mapped read-only.
#[derive(Debug)]
pub struct DirCpu {
    cpu: u32,
    mapping: ReadOnlyMapping,
    // Holds the shared lock while the mapping is read.
    file: OwnedFd,
}

impl DirCpu {
    /// Maps CPU `cpu`'s file in `dir`, sized by the geometry its meta area announces (checked
    /// against the file's size and validated as a hyptrace meta area).
    pub fn open(dir: &Path, cpu: u32) -> Result<Self, Error> {
        let path = dir.join(cpu_file_name(cpu));
        let file = open_cpu_file(dir, cpu)?;
        lock_cpu_file(file.as_fd(), &path, FlockOperation::NonBlockingLockShared)?;
        let geometry = read_geometry(&file, &path)?;
        let layout = CpuLayout { geometry };
        let mapping = ReadOnlyMapping::new(file.as_fd(), layout.file_size(), layout.meta_size())?;
        let cpu = Self { cpu, mapping, file };
        if !cpu.view()?.has_extension() {
            return Err(Error::BadDirFile { path, problem: DirFileProblem::NoExtension });
        }
        Ok(cpu)
    }
}

/// The geometry a CPU file's meta area announces (read with `pread`, before mapping it).
fn read_geometry(file: &OwnedFd, path: &Path) -> Result<Geometry, Error> {
    let mut header = [0u8; off::NR_SUBBUFS + 4];
    let got = rustix::io::pread(file, &mut header, 0).map_err(|e| Error::path("reading", path, e.into()))?;
    // A producer killed while creating the file leaves it empty or zero-filled.
    if header[..got].iter().all(|&byte| byte == 0) {
        return Err(Error::NotInitialised { path: path.to_path_buf() });
    }
    if got < header.len() {
        return Err(Error::BadDirFile { path: path.to_path_buf(), problem: DirFileProblem::TooShort { len: got } });
    }
    let field = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    Ok(Geometry::new(field(off::SUBBUF_SIZE), field(off::NR_SUBBUFS))?)
}

impl CpuSource for DirCpu {
    fn cpu(&self) -> u32 {
        self.cpu
    }

    fn view(&self) -> Result<SharedView<'_>, Error> {
        self.mapping.view()
    }

    fn get_reader_page(&mut self, _read: u32) -> Result<ReaderPage, Error> {
        Err(Error::Hangup)
    }

    fn wait(&mut self, _pages: u32, _timeout: Option<Duration>) -> Result<Wakeup, Error> {
        Ok(Wakeup::Hangup)
    }

    fn arm(&mut self, _pages: u32) -> Result<bool, Error> {
        Err(Error::Hangup)
    }

    fn check_mapping(&self) -> Result<(), Error> {
        self.mapping.check_intact()
    }

    /// The file itself: always readable, though nothing will ever arrive.
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A dead producer's buffer directory, opened.
#[derive(Debug)]
pub struct BufferDir {
    /// The directory.
    pub path: PathBuf,
    /// Its CPUs, `cpu0` up to the last consecutive `cpuN` file.
    pub cpus: Vec<DirCpu>,
    /// The event formats, if the producer published them.
    pub formats: Option<Vec<u8>>,
    /// The raw-clock conversion, if the producer published one (otherwise timestamps are raw).
    pub clock: Option<ClockParams>,
}

impl BufferDir {
    /// Opens every CPU file of `dir` and reads its formats and clock files.
    ///
    /// # Examples
    ///
    /// What a producer that kept its buffers in a directory left there once it has gone
    /// (exited here; crashed or killed it leaves the same):
    ///
    /// ```
    /// use ring_core::{Config, CounterClock, Geometry, Mode};
    /// use ring_mmap::{Backing, BufferDir, Consumer, ProducerConfig, Record, ShmProducer};
    ///
    /// let parent = tempfile::tempdir()?;
    /// let dir = parent.path().join("buffers");
    /// let config = ProducerConfig {
    ///     nr_cpus: 2,
    ///     buffer: Config { geometry: Geometry::new(4096, 4)?, mode: Mode::Overwrite },
    ///     backing: Backing::Dir { path: dir.clone(), overwrite: false },
    ///     formats: b"event formats".to_vec(),
    /// };
    /// let producer = ShmProducer::new(config, |_cpu| CounterClock::new(1))?;
    /// producer.cpu(1).writer()?.write(b"last words")?;
    /// drop(producer);
    ///
    /// let opened = BufferDir::open(&dir)?;
    /// assert_eq!(opened.formats.as_deref(), Some(&b"event formats"[..]));
    /// let mut payloads = Vec::new();
    /// for cpu in opened.cpus {
    ///     let remaining = Consumer::new(cpu)?.drain_remaining(|record| {
    ///         if let Record::Event(event) = record {
    ///             payloads.push(event.payload.to_vec());
    ///         }
    ///     })?;
    ///     assert!(remaining.damage.is_empty());
    /// }
    /// assert_eq!(payloads, [b"last words\0\0"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let mut cpus = Vec::new();
        // A file that cannot be looked up (another user's directory) is opened all the same, to
        // be refused with the reason.
        while dir.join(cpu_file_name(cpus.len() as u32)).try_exists().unwrap_or(true) {
            cpus.push(DirCpu::open(dir, cpus.len() as u32)?);
        }
        if cpus.is_empty() {
            // The directory itself, if it is what is missing; else that it holds no buffers.
            return Err(match std::fs::metadata(dir) {
                Err(e) => Error::path("opening the buffer directory", dir, e),
                Ok(_) => Error::path(
                    "no buffer files (cpu0, cpu1, ...) in",
                    dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not a producer's buffer directory"),
                ),
            });
        }
        let optional = |name: &str| read_optional_file(&dir.join(name));
        let formats = optional(FORMATS_FILE)?;
        let clock = optional(CLOCK_FILE)?
            .map(|bytes| {
                parse_body::<ClockBody>(&bytes).map_err(|_| Error::BadDirFile {
                    path: dir.join(CLOCK_FILE),
                    problem: DirFileProblem::ClockSize { len: bytes.len() },
                })
            })
            .transpose()?;
        Ok(Self { path: dir.to_path_buf(), cpus, formats, clock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::{Consumer, Damage, Lost, Record, Remaining};
    use crate::error::{BufferProblem, Unsafety};
    use crate::{Backing, ProducerConfig, ShmProducer};
    use ring_core::{Config, CounterClock, Mode};

    /// A producer of two CPUs in `dir`, overwriting what is there if `overwrite`.
    fn producer(dir: &Path, mode: Mode, overwrite: bool) -> ShmProducer<CounterClock> {
        let config = ProducerConfig {
            nr_cpus: 2,
            buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode },
            backing: Backing::Dir { path: dir.to_path_buf(), overwrite },
            formats: b"some formats".to_vec(),
        };
        ShmProducer::new(config, |_| CounterClock::new(1)).unwrap()
    }

    /// Everything left in `cpu`: (lost counts, payloads).
    fn recover(cpu: DirCpu) -> (Vec<u64>, Vec<Vec<u8>>) {
        let mut consumer = Consumer::new(cpu).unwrap();
        let (mut lost, mut events) = (Vec::new(), Vec::new());
        consumer
            .drain_remaining(|r| match r {
                Record::Lost(Lost::Count(n)) => lost.push(n),
                Record::Lost(other) => panic!("unexpected {other:?}"),
                Record::Event(e) => events.push(e.payload.to_vec()),
            })
            .unwrap();
        (lost, events)
    }

    #[test]
    fn a_live_producers_files_are_refused_and_its_directory_cannot_be_taken_over() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let p = producer(&dir, Mode::Drop, false);
        assert!(matches!(DirCpu::open(&dir, 0), Err(Error::ProducerAlive(_))));
        assert!(matches!(BufferDir::open(&dir), Err(Error::ProducerAlive(_))));
        let second = ShmProducer::new(
            ProducerConfig {
                nr_cpus: 1,
                buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop },
                backing: Backing::Dir { path: dir.clone(), overwrite: false },
                formats: Vec::new(),
            },
            |_| CounterClock::new(1),
        );
        assert!(matches!(second, Err(Error::ProducerAlive(_))), "a second producer must not truncate live files");
        p.cpu(0).writer().unwrap().write(b"still here").unwrap();
        drop(p);
        let opened = BufferDir::open(&dir).unwrap();
        assert_eq!(opened.cpus.len(), 2);
        assert_eq!(opened.formats.as_deref(), Some(&b"some formats"[..]));
        assert_eq!(opened.clock, None);
    }

    #[test]
    fn everything_committed_is_recovered_with_overwritten_events_counted() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let p = producer(&dir, Mode::Overwrite, false);
        p.set_clock(ClockParams { mult: 3, shift: 1, epoch_raw: 10, epoch_ns: 20 }).unwrap();
        // Three ring pages of ~500 events each: 5000 events lap the ring.
        for i in 0u32..5000 {
            p.cpu(1).writer().unwrap().write(&i.to_le_bytes()).unwrap();
        }
        drop(p);
        let opened = BufferDir::open(&dir).unwrap();
        assert_eq!(opened.clock, Some(ClockParams { mult: 3, shift: 1, epoch_raw: 10, epoch_ns: 20 }));
        let mut cpus = opened.cpus.into_iter();
        assert_eq!(recover(cpus.next().unwrap()), (vec![], vec![]), "cpu 0 wrote nothing");
        let (lost, events) = recover(cpus.next().unwrap());
        let seqs: Vec<u32> = events.iter().map(|p| u32::from_le_bytes(p[..4].try_into().unwrap())).collect();
        assert_eq!(*seqs.last().unwrap(), 4999, "the last event committed is recovered");
        let first = seqs[0];
        assert_eq!(lost, vec![u64::from(first)], "the overwritten ones are reported lost, exactly");
        assert!(seqs.iter().zip(first..).all(|(&s, want)| s == want), "in order, without a gap");
    }

    /// A dead producer's cpu 0 holding events 0..1500 of 4 bytes in drop mode (pages 1, 2 and 3
    /// of 4 KiB, 510 events each, the last one 480), damaged by `damage(file bytes, offset of
    /// sub-buffer 2)`, then read post-mortem: (events recovered, losses reported, damage found).
    fn recover_damaged(damage: impl FnOnce(&mut [u8], usize)) -> (Vec<u32>, Vec<u64>, Vec<Damage>) {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let p = producer(&dir, Mode::Drop, false);
        let writer = p.cpu(0).writer().unwrap();
        for i in 0u32..1500 {
            writer.write(&i.to_le_bytes()).unwrap();
        }
        drop(writer);
        drop(p);
        let path = dir.join("cpu0");
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes, 4096 + 2 * 4096);
        std::fs::write(&path, &bytes).unwrap();
        let mut consumer = Consumer::new(DirCpu::open(&dir, 0).unwrap()).unwrap();
        let (mut seqs, mut lost) = (Vec::new(), Vec::new());
        let remaining = consumer
            .drain_remaining(|r| match r {
                Record::Lost(Lost::Count(n)) => lost.push(n),
                Record::Lost(other) => panic!("unexpected {other:?}"),
                Record::Event(e) => seqs.push(u32::from_le_bytes(e.payload.to_vec()[..4].try_into().unwrap())),
            })
            .unwrap();
        assert_eq!(remaining.events, seqs.len() as u64);
        (seqs, lost, remaining.damage)
    }

    #[test]
    fn a_malformed_page_is_salvaged_and_reported_and_reading_goes_on() {
        // Event 10 of page 2 (data offset 80) claims a length that runs past the page.
        let (seqs, lost, damage) = recover_damaged(|bytes, page| {
            let at = page + 16 + 80;
            bytes[at..at + 8].copy_from_slice(&[0, 0, 0, 0, 0xf0, 0xff, 0xff, 0x7f]);
        });
        let expected: Vec<u32> = (0..520).chain(1020..1500).collect();
        assert_eq!(seqs, expected, "the events before the fault and every later page");
        assert_eq!(lost, [500], "the rest of the page is counted lost where it was");
        assert!(matches!(damage[..], [Damage::MalformedPage { id: 2, .. }]), "{damage:?}");
    }

    #[test]
    fn a_commit_past_the_data_area_is_reported_not_silently_lost() {
        let (seqs, lost, damage) = recover_damaged(|bytes, page| {
            bytes[page + 8..page + 16].copy_from_slice(&0xffffu64.to_ne_bytes());
        });
        assert_eq!(seqs, (0..510).chain(1020..1500).collect::<Vec<u32>>());
        assert_eq!(lost, [510]);
        assert!(
            matches!(
                damage[..],
                [Damage::MalformedPage { id: 2, error: ring_core::DecodeError::CommitTooLarge { .. } }]
            ),
            "{damage:?}"
        );
    }

    #[test]
    fn sequence_numbers_that_claim_more_losses_than_the_writer_counted_are_flagged() {
        // first_seq[3] (page 3, events 1020..1500) corrupted to a huge number.
        let (seqs, lost, damage) = recover_damaged(|bytes, _| {
            let at = off::EXT_SEQ_OFFSET;
            let seq_offset = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            bytes[seq_offset + 3 * 8..seq_offset + 4 * 8].copy_from_slice(&(u64::MAX / 2).to_ne_bytes());
        });
        assert_eq!(seqs.len(), 1500, "every event is still read");
        assert_eq!(lost, [u64::MAX / 2 - 1020]);
        assert_eq!(damage, [Damage::ImplausibleLoss { reported: u64::MAX / 2 - 1020, counted: 0 }]);
    }

    #[test]
    fn a_file_truncated_while_mapped_is_an_error_not_a_crash() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        let p = producer(&dir, Mode::Overwrite, false);
        for i in 0u32..2000 {
            p.cpu(0).writer().unwrap().write(&i.to_le_bytes()).unwrap();
        }
        drop(p);
        let dir = dir.as_path();
        let path = dir.join(cpu_file_name(0));
        let truncate = |len: u64| std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len).unwrap();
        let truncated = |result: Result<Remaining, Error>| matches!(result, Err(Error::Truncated(p)) if p == path);
        let original = std::fs::read(&path).unwrap();
        let restore = || std::fs::write(&path, &original).unwrap();

        // The sub-buffers go while a consumer reads: the meta area is still there, the pages
        // fault (and read as zeros).
        let mut consumer = Consumer::new(DirCpu::open(dir, 0).unwrap()).unwrap();
        truncate(4096);
        assert!(truncated(consumer.drain_remaining(|_| {})), "the consumer reports the truncation");
        assert!(matches!(consumer.source().view(), Err(Error::Truncated(_))), "and keeps reporting it");

        // Everything goes, even the meta area; once read, the mapping stays marked when the file
        // grows back as long as before.
        restore();
        let cpu = DirCpu::open(dir, 0).unwrap();
        truncate(0);
        assert!(matches!(cpu.view(), Err(Error::Truncated(_))), "the meta area faulted");
        truncate(4096 * 5);
        assert!(matches!(cpu.view(), Err(Error::Truncated(_))), "the zeros it read are not trusted");
        assert!(matches!(Consumer::new(cpu), Err(Error::Truncated(_))));

        // Cut inside a page: no fault, only the size tells.
        restore();
        let cpu = DirCpu::open(dir, 0).unwrap();
        let mut consumer = Consumer::new(cpu).unwrap();
        truncate(4096 * 4 + 100);
        assert!(truncated(consumer.drain_remaining(|_| {})));
    }

    /// A producer forced over a directory that a post-mortem reader has open is told so, not that
    /// a producer is running there.
    #[test]
    fn a_producer_forced_over_a_directory_being_read_says_so() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        drop(producer(&dir, Mode::Drop, false));
        let reader = DirCpu::open(&dir, 0).unwrap();
        let config = ProducerConfig {
            nr_cpus: 1,
            buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop },
            backing: Backing::Dir { path: dir.clone(), overwrite: true },
            formats: Vec::new(),
        };
        match ShmProducer::new(config, |_| CounterClock::new(1)) {
            Err(Error::BeingRecovered { path, pid }) => {
                assert_eq!((path, pid), (dir.join("cpu0"), std::process::id()));
            }
            other => panic!("expected BeingRecovered, got {other:?}"),
        }
        drop(reader);
    }

    /// A post-mortem reader opens nothing through a symbolic link, nor anything but a regular
    /// file: a directory whose `cpu0` or `formats` points at another file, or whose `formats` is
    /// a FIFO (which would block the open), is an error, not a read of that file or a hang.
    #[test]
    fn a_reader_follows_no_links_and_opens_only_regular_files() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        drop(producer(&dir, Mode::Drop, false));
        let secret = temporary.path().join("secret");
        std::fs::write(&secret, b"not for the reader").unwrap();
        let unsafe_file = |result: Result<BufferDir, Error>| match result {
            Err(Error::UnsafeFile { problem, .. }) => problem,
            other => panic!("expected an unsafe file, got {other:?}"),
        };
        std::fs::remove_file(dir.join(FORMATS_FILE)).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(FORMATS_FILE)).unwrap();
        assert_eq!(unsafe_file(BufferDir::open(&dir)), Unsafety::SymbolicLink);
        std::fs::remove_file(dir.join(FORMATS_FILE)).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join(FORMATS_FILE),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(unsafe_file(BufferDir::open(&dir)), Unsafety::NotARegularFile);
        std::fs::remove_file(dir.join(FORMATS_FILE)).unwrap();
        let cpu0 = dir.join(cpu_file_name(0));
        std::fs::rename(&cpu0, temporary.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(temporary.path().join("moved"), &cpu0).unwrap();
        assert_eq!(unsafe_file(BufferDir::open(&dir)), Unsafety::SymbolicLink);
    }

    #[test]
    fn bad_files_are_errors() {
        let temporary = tempfile::tempdir().unwrap();
        let dir = temporary.path().join("bufs");
        assert!(matches!(BufferDir::open(&dir), Err(Error::Path { .. })));
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir).unwrap();
        // What a producer killed while creating its file leaves: empty, or zero-filled.
        for blank in [&[][..], &[0u8; 8], &[0u8; 4096 * 5]] {
            std::fs::write(dir.join("cpu0"), blank).unwrap();
            let error = BufferDir::open(&dir).unwrap_err();
            assert!(matches!(error, Error::NotInitialised { .. }), "{error}");
            assert!(error.to_string().contains("not an initialised hyptrace buffer"), "{error}");
        }
        std::fs::write(dir.join("cpu0"), [1u8; 8]).unwrap();
        let (got, cpu0, short) = (BufferDir::open(&dir), dir.join("cpu0"), DirFileProblem::TooShort { len: 8 });
        assert!(
            matches!(got, Err(Error::BadDirFile { ref path, problem }) if *path == cpu0 && problem == short),
            "shorter than a meta header: {got:?}"
        );
        std::fs::write(dir.join("cpu0"), [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0]).unwrap();
        assert!(matches!(BufferDir::open(&dir), Err(Error::Geometry(_))), "a zero sub-buffer size");
        // A meta area announcing more sub-buffers than the file holds.
        let mut meta = vec![0u8; 4096];
        meta[off::SUBBUF_SIZE..off::SUBBUF_SIZE + 4].copy_from_slice(&4096u32.to_ne_bytes());
        meta[off::NR_SUBBUFS..off::NR_SUBBUFS + 4].copy_from_slice(&1000u32.to_ne_bytes());
        std::fs::write(dir.join("cpu0"), &meta).unwrap();
        let short = BufferProblem::FileTooShort {
            size: 4096,
            expected: CpuLayout { geometry: Geometry::new(4096, 1000).unwrap() }.file_size(),
        };
        assert!(matches!(BufferDir::open(&dir), Err(Error::BadBuffer(problem)) if problem == short));
        // The right size but no meta area at all (all zeros).
        meta[off::NR_SUBBUFS..off::NR_SUBBUFS + 4].copy_from_slice(&4u32.to_ne_bytes());
        meta.resize(4096 * 5, 0);
        std::fs::write(dir.join("cpu0"), &meta).unwrap();
        assert!(BufferDir::open(&dir).is_err());
        std::fs::write(dir.join(CLOCK_FILE), [1u8; 5]).unwrap();
        // A producer told to overwrite them replaces the bad files.
        let p = producer(&dir, Mode::Drop, true);
        drop(p);
        std::fs::write(dir.join(CLOCK_FILE), [1u8; 5]).unwrap();
        let (got, clock, wrong_size) =
            (BufferDir::open(&dir), dir.join(CLOCK_FILE), DirFileProblem::ClockSize { len: 5 });
        assert!(
            matches!(got, Err(Error::BadDirFile { ref path, problem }) if *path == clock && problem == wrong_size),
            "a clock file of the wrong size: {got:?}"
        );
    }
}
