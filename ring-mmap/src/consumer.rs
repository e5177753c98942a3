//! Consuming one CPU's buffer, the same way whether it is hyptrace's ([`crate::SocketCpu`]) or the
//! Linux kernel's ([`crate::KernelCpu`]).
//!
//! A [`CpuSource`] is a mapped buffer plus its GET_READER_PAGE: hand it how far the current reader
//! page was read, get back the reader page to read next. [`Consumer`] keeps that position and
//! decodes each reader page from it up to the page's `commit`, zero-copy from the read-only
//! mapping: events come out as [`ShmBytes`](ring_core::ShmBytes) views that copy their bytes out
//! on request, never as `&[u8]` into memory the writer may still be writing.

use crate::error::{BufferProblem, Error, PageRole};
use ring_core::format::{SUBBUF_COMMIT_OFFSET, SUBBUF_HEADER_SIZE};
use ring_core::{DrainBound, Event, EventIter, Geometry, MalformedPage, PageReader, PageSource, SharedView};
pub use ring_core::{Lost, Record};
use std::time::Duration;

/// How much of a buffer a drain reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainScope {
    /// Everything committed, the page the writer is on included (up to its `commit`).
    Everything,
    /// Finished pages: the page the writer is still on is left unread (kept, with the losses
    /// before it, when a swap just handed it over), to be read in one piece once the writer has
    /// moved on (the doorbell rings then), or by a later drain of everything. Fewer round trips per page, and no page read in two pieces,
    /// for a recorder that need not see events the moment they are committed. Only hyptrace
    /// buffers tell which page the writer is on; a kernel buffer is drained whole.
    FinishedPages,
}

/// The reader page to read next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderPage {
    /// Its sub-buffer id.
    pub id: u32,
    /// Data offset to decode from.
    pub start: u32,
    /// True if this is a new reader page (the previous one went back to the producer).
    pub swapped: bool,
    /// Events lost between the previous reader page and this one.
    pub lost: Lost,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// Data to read (or a doorbell to check).
    Ready,
    /// The timeout passed.
    TimedOut,
    /// The producer has gone; what it committed can still be read from the mapping.
    Hangup,
}

/// One CPU's buffer, mapped, with its GET_READER_PAGE.
pub trait CpuSource {
    /// The CPU.
    fn cpu(&self) -> u32;
    /// The mapped buffer (validated again on every call: the producer may be hostile).
    fn view(&self) -> Result<SharedView<'_>, Error>;
    /// Gives back `read` bytes of the current reader page as consumed; answers the page to read.
    fn get_reader_page(&mut self, read: u32) -> Result<ReaderPage, Error>;
    /// Waits until at least `pages` finished pages are ready (0 counts as 1), the timeout passes,
    /// or the producer goes away.
    fn wait(&mut self, pages: u32, timeout: Option<Duration>) -> Result<Wakeup, Error>;
    /// Prepares a wait on several CPUs at once: arms the wakeup for `pages` finished pages and
    /// returns true if they are ready already (then do not wait). Otherwise poll
    /// [`CpuSource::wait_fd`] for readability.
    fn arm(&mut self, pages: u32) -> Result<bool, Error>;
    /// The descriptor that becomes readable when an armed wakeup fires.
    fn wait_fd(&self) -> std::os::fd::BorrowedFd<'_>;
    /// Whether what was read from the mapping since it was mapped can be trusted:
    /// [`Error::Truncated`] once its file shrank ([`crate::truncation`]), after which the lost
    /// pages read as zeros. [`Consumer`] checks after each page it reads (a page copy before it
    /// is decoded) and then returns the error instead of the page's result; events of that page
    /// already handed to a sink may hold those zeros. Sources whose memory cannot shrink keep the
    /// default, which always passes.
    fn check_mapping(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// What one [`Consumer::read_page`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRead {
    /// The reader page.
    pub page: ReaderPage,
    /// Events handed over.
    pub events: u64,
    /// Bytes of the page's data read so far.
    pub read: u32,
}

/// What one [`Consumer::copy_page`] did: the caller's buffer holds the reader page as a
/// self-contained sub-buffer whose new events lie at data offsets `page.start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCopy {
    /// The reader page (its `start` is where the new events begin, its `lost` what was lost
    /// before them).
    pub page: ReaderPage,
    /// New events in the copy.
    pub events: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Data offset just past them: the copy's `commit`.
    pub end: u32,
}

/// Where a consumer stands on its CPU.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Bytes of the current reader page consumed (what the next GET_READER_PAGE gives back).
    read: u32,
    /// The current reader page, once there is one.
    page: Option<u32>,
    /// Sequence number of the next event (hyptrace buffers publish each page's first one).
    next_seq: Option<u64>,
    /// The answer of a swap whose new reader page was left unread ([`DrainScope::FinishedPages`]).
    deferred: Option<ReaderPage>,
}

impl Position {
    /// Takes the answer to a GET_READER_PAGE; true if it is a reader page not read before. An
    /// answer that keeps a page deferred unread becomes that swap's (new page, losses before it).
    fn moved_to(&mut self, page: &mut ReaderPage) -> bool {
        if let Some(deferred) = self.deferred.take() {
            page.lost = deferred.lost.then(page.lost);
            page.swapped |= page.id == deferred.id;
        }
        let new_page = page.swapped || self.page != Some(page.id);
        self.page = Some(page.id);
        self.read = page.start;
        new_page
    }

    /// Decodes `bytes`, the reader page `page` (`first_seq` its published first sequence
    /// number), from where reading stands to its `commit`, handing each event to `each`, and
    /// moves past them. A malformed page is skipped to its end, so the consumer can go on.
    fn decode<'p, P: PageSource + ?Sized>(
        &mut self,
        cpu: u32,
        page: &ReaderPage,
        new_page: bool,
        bytes: &'p P,
        first_seq: Option<u64>,
        each: impl FnMut(Event<P::Payload<'p>>),
    ) -> Result<u64, Error> {
        let events = match PageReader::start(bytes, page.start) {
            Ok(events) => events,
            Err(malformed) => return Err(self.skip(cpu, page.id, malformed)),
        };
        // An honest producer never says more was read than it committed (commit only grows).
        if page.start as usize > events.data_end() || !page.start.is_multiple_of(4) {
            return Err(Error::BadReadPosition {
                cpu,
                id: page.id,
                read: page.start,
                commit: events.data_end() as u32,
            });
        }
        if new_page {
            // The page's first_seq is stable while it is the reader page.
            let before = EventIter::count_before(bytes, page.start);
            // A first_seq so large that the count overflows is a lie: the sequence is unknown.
            self.next_seq = first_seq.and_then(|f| f.checked_add(before));
        }
        let progress = match events.hand_over(each) {
            Ok(progress) => progress,
            Err(malformed) => return Err(self.skip(cpu, page.id, malformed)),
        };
        // The committed length, so no less than `page.start` (checked above).
        self.read = progress.read;
        self.next_seq = self.next_seq.and_then(|s| s.checked_add(progress.events));
        Ok(progress.events)
    }

    /// Gives reader page `id` of `cpu`, which stopped decoding, back as read as far as `malformed`
    /// says. How many events the skipped part held is unknown, and with it the sequence number of
    /// the next one (the next page publishes its own).
    fn skip(&mut self, cpu: u32, id: u32, malformed: MalformedPage) -> Error {
        self.read = malformed.skip_to;
        self.next_seq = None;
        Error::Malformed { cpu, id, error: malformed.error }
    }
}

/// What [`Consumer::drain_remaining`] read of a producer that has gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Events handed to the sink.
    pub events: u64,
    /// What was wrong with the buffer, in the order it was found; empty for an intact one.
    pub damage: Vec<Damage>,
}

/// Something wrong with a buffer read after its producer had gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    /// A page stopped decoding part-way.
    #[error(
        "page {id} is malformed ({error}): its events up to that point were read, the rest of it is \
         counted in the loss reported after it"
    )]
    MalformedPage {
        /// The page's sub-buffer id.
        id: u32,
        /// What was wrong.
        error: ring_core::DecodeError,
    },
    /// The pages' sequence numbers claim more events lost than the writer counted as
    /// overwritten or dropped: the sequence numbers in the meta area are corrupted.
    #[error(
        "the pages' sequence numbers claim {reported} events lost, but the writer counted only {counted} \
         overwritten or dropped: the meta area looks corrupted, so the loss counts shown are not reliable"
    )]
    ImplausibleLoss {
        /// Events reported lost between pages.
        reported: u64,
        /// Events the writer's counters say were overwritten or dropped.
        counted: u64,
    },
}

/// The accounting of a read of a snapshot's pages in order ([`Consumer::drain_remaining`], or a
/// non-consuming reader of a [`ring_core::Snapshot`]): the events lost before each page, from
/// the gaps in their sequence numbers, and what is wrong with the pages.
#[derive(Debug, Clone, Default)]
pub struct PageLosses {
    next_seq: Option<u64>,
    lost: u64,
    damage: Vec<Damage>,
}

impl PageLosses {
    /// Accounting that expects the sequence number `next_seq` next (`None`: not known, so no
    /// loss is counted before the first page).
    pub fn new(next_seq: Option<u64>) -> Self {
        Self { next_seq, ..Self::default() }
    }

    /// Accounts `page`, read next: the events lost right before it, if any. The events that do
    /// not decode are left out of the page's end, so the next page's gap counts them.
    pub fn before(&mut self, page: &ring_core::SnapshotPage) -> Option<u64> {
        let lost = match (self.next_seq, page.start_seq()) {
            (Some(expected), Some(first)) if first > expected => Some(first - expected),
            _ => None,
        };
        self.lost = self.lost.saturating_add(lost.unwrap_or(0));
        self.next_seq = page.end_seq();
        lost
    }

    /// Records that page `id` stopped decoding with `error`.
    pub fn malformed(&mut self, id: u32, error: ring_core::DecodeError) {
        self.damage.push(Damage::MalformedPage { id, error });
    }

    /// The sequence number expected after the pages accounted so far.
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// The damage found: the malformed pages, or, if there were none, losses larger than the
    /// writer's `counters` allow.
    pub fn finish(mut self, counters: &ring_core::Stats) -> Vec<Damage> {
        let counted = counters.overrun.saturating_add(counters.dropped);
        if self.damage.is_empty() && self.lost > counted {
            self.damage.push(Damage::ImplausibleLoss { reported: self.lost, counted });
        }
        self.damage
    }
}

/// A consuming reader of one CPU.
///
/// # Examples
///
/// A producer serving its buffers on a control socket, and a consumer reading what it wrote (in
/// one process here; they are usually two):
///
/// ```
/// use ring_core::{Config, Geometry, ManualClock, Mode};
/// use ring_mmap::{Backing, Connection, Consumer, ProducerConfig, Record, Server, ShmProducer};
/// use std::os::unix::fs::PermissionsExt;
/// use std::sync::Arc;
///
/// let config = ProducerConfig {
///     nr_cpus: 1,
///     buffer: Config { geometry: Geometry::new(4096, 4)?, mode: Mode::Overwrite },
///     backing: Backing::Memfd,
///     formats: Vec::new(),
/// };
/// let producer = Arc::new(ShmProducer::new(config, |_cpu| ManualClock::new(0))?);
/// // Clients connect only to a socket whose directory others cannot write to.
/// let dir = tempfile::tempdir()?;
/// std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
/// let server = Server::start(&dir.path().join("hyptrace.sock"), producer.clone())?;
///
/// producer.cpu(0).writer()?.write(b"hello")?;
///
/// let connection = Connection::connect(server.path())?;
/// let mut consumer = Consumer::new(connection.open_cpu(0)?)?;
/// let mut payloads = Vec::new();
/// let events = consumer.drain(|record| {
///     if let Record::Event(event) = record {
///         payloads.push(event.payload.to_vec());
///     }
/// })?;
/// assert_eq!(events, 1);
/// // Payloads come back padded with zeros to a multiple of 4 bytes.
/// assert_eq!(payloads, [b"hello\0\0\0"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Consumer<S: CpuSource> {
    source: S,
    pos: Position,
    /// The buffer's geometry when consuming began, which its meta area must keep.
    geometry: Geometry,
}

impl<S: CpuSource> Consumer<S> {
    /// Starts consuming `source`, resuming where a previous consumer left its reader page (the
    /// meta area's `reader.id` and `reader.read`, at the first event boundary from there:
    /// [`resume_point`]).
    pub fn new(source: S) -> Result<Self, Error> {
        let view = source.view()?;
        let (reader, geometry) = (view.meta().reader(), view.geometry());
        let read = resume_point(&view, reader.id, reader.read);
        Ok(Self { source, pos: Position { read, page: None, next_seq: None, deferred: None }, geometry })
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The source, mutably.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The current reader page and how much of it was read.
    pub fn position(&self) -> (Option<u32>, u32) {
        (self.pos.page, self.pos.read)
    }

    /// Sequence number (events handed to the writer before it, dropped ones included) of the
    /// next event this consumer will see, when the buffer publishes sequence numbers (hyptrace's
    /// do, the kernel's do not).
    pub fn next_seq(&self) -> Option<u64> {
        self.pos.next_seq
    }

    /// One GET_READER_PAGE, then every event of the reader page from where reading stands to
    /// its `commit`, handed to `sink` (a [`Record::Lost`] first if events were lost before it).
    pub fn read_page(&mut self, sink: impl FnMut(Record<'_>)) -> Result<PageRead, Error> {
        let page = self.request()?;
        self.read_answered(page, sink)
    }

    /// The GET_READER_PAGE that the reads of a page begin with.
    fn request(&mut self) -> Result<ReaderPage, Error> {
        self.source.get_reader_page(self.pos.read)
    }

    /// [`Consumer::read_page`] after its request.
    fn read_answered(&mut self, mut page: ReaderPage, mut sink: impl FnMut(Record<'_>)) -> Result<PageRead, Error> {
        let new_page = self.pos.moved_to(&mut page);
        if page.lost != Lost::None {
            sink(Record::Lost(page.lost));
        }
        let cpu = self.source.cpu();
        let view = checked_view(&self.source, self.geometry)?;
        let shm = existing_page(&view, cpu, page.id, PageRole::Reader)?;
        let first_seq = published_first_seq(&view, page.id);
        let decoded = self.pos.decode(cpu, &page, new_page, &shm, first_seq, |e| sink(Record::Event(e)));
        // A page lost to truncation decodes as zeros (or not at all): say why.
        self.source.check_mapping()?;
        let events = decoded?;
        Ok(PageRead { page, events, read: self.pos.read })
    }

    /// One GET_READER_PAGE, then the reader page copied into `out` (exactly one sub-buffer
    /// long) and its new events (from where reading stands to its `commit`) decoded from the
    /// copy and consumed. The copy is left a self-contained sub-buffer: its `commit` is the end
    /// of those events (no flags), the bytes after them are zero. For recorders that store whole
    /// pages: no event is handed out one by one, and what was decoded is exactly what was copied.
    ///
    /// # Panics
    /// If `out` is not one sub-buffer long.
    pub fn copy_page(&mut self, out: &mut [u8]) -> Result<PageCopy, Error> {
        let page = self.request()?;
        self.copy_answered(page, out)
    }

    /// [`Consumer::copy_page`] after its request.
    fn copy_answered(&mut self, mut page: ReaderPage, out: &mut [u8]) -> Result<PageCopy, Error> {
        let new_page = self.pos.moved_to(&mut page);
        let cpu = self.source.cpu();
        let view = checked_view(&self.source, self.geometry)?;
        let shm = existing_page(&view, cpu, page.id, PageRole::Reader)?;
        shm.copy_to(out);
        self.source.check_mapping()?;
        let first_seq = published_first_seq(&view, page.id);
        let mut payload_bytes = 0;
        let events =
            self.pos.decode(cpu, &page, new_page, &*out, first_seq, |e| payload_bytes += e.payload.len() as u64)?;
        let end = self.pos.read;
        out[SUBBUF_COMMIT_OFFSET..SUBBUF_HEADER_SIZE].copy_from_slice(&u64::from(end).to_ne_bytes());
        out[SUBBUF_HEADER_SIZE + end as usize..].fill(0);
        Ok(PageCopy { page, events, payload_bytes, end })
    }

    /// Reads what is available now: the rest of the reader page, then each finished page of the
    /// ring (at most a ring's worth), then the page the writer is on, up to its `commit`.
    /// Returns the number of events handed to `sink`.
    ///
    /// Bounded, as [`ring_core::Cursor::drain`] is ([`DrainBound`]): call it again to go on; with
    /// the writer stopped, one call reads everything.
    pub fn drain(&mut self, mut sink: impl FnMut(Record<'_>)) -> Result<u64, Error> {
        self.drain_with(DrainScope::Everything, |c, page| c.read_answered(page, &mut sink).map(|r| (r.page, r.events)))
    }

    /// [`Consumer::drain`] by page copies, of the pages `scope` says: each reader page read goes
    /// through [`Consumer::copy_page`] into `out` and is then handed to `sink` with what was
    /// copied (which it may change: the next copy overwrites it).
    pub fn drain_copies(
        &mut self,
        scope: DrainScope,
        out: &mut [u8],
        mut sink: impl FnMut(&PageCopy, &mut [u8]),
    ) -> Result<u64, Error> {
        self.drain_with(scope, |c, page| {
            let copy = c.copy_answered(page, out)?;
            sink(&copy, out);
            Ok((copy.page, copy.events))
        })
    }

    /// The loop of [`Consumer::drain`]: `read_one` reads one reader page, given the answer to
    /// its request, and says which page and how many events.
    fn drain_with(
        &mut self,
        scope: DrainScope,
        mut read_one: impl FnMut(&mut Self, ReaderPage) -> Result<(ReaderPage, u64), Error>,
    ) -> Result<u64, Error> {
        let mut bound = DrainBound::new(self.geometry);
        let mut total = 0;
        loop {
            let before = self.position();
            let mut page = self.request()?;
            if scope == DrainScope::FinishedPages && self.writer_page()? == Some(page.id) {
                // The writer is on this page: leave it for when it is finished. A swap that
                // handed it over is kept for then (a new page, the losses before it).
                if page.swapped {
                    if let Some(earlier) = self.pos.deferred.take() {
                        page.lost = earlier.lost.then(page.lost);
                    }
                    (self.pos.page, self.pos.read) = (Some(page.id), page.start);
                    self.pos.deferred = Some(page);
                }
                return Ok(total);
            }
            let (page, events) = read_one(self, page)?;
            total += events;
            if bound.stop_after(page.swapped, self.position() != before) {
                return Ok(total);
            }
        }
    }

    /// The page the writer is on, where the buffer says (hyptrace's meta extension does).
    fn writer_page(&self) -> Result<Option<u32>, Error> {
        let view = checked_view(&self.source, self.geometry)?;
        Ok(view.has_extension().then(|| view.meta().tail_id()))
    }

    /// After the producer has gone ([`Wakeup::Hangup`], [`Error::Hangup`]): reads everything it
    /// committed that this consumer has not read, straight from the mapping (which no longer
    /// changes): every page's events from where this consumer stood on, in order, with the events
    /// lost between pages reported from the pages' sequence numbers (docs/abi.md §6.2).
    /// Needs hyptrace's meta extension (not available on kernel buffers, which do not crash).
    ///
    /// What it left may be damaged (a disk file, a producer that died scribbling): a page that
    /// stops decoding part-way gives the events before the fault, the rest of it counts in the
    /// loss reported before the next page, and reading goes on; such pages, and losses larger
    /// than the writer's own counters allow, are listed in [`Remaining::damage`].
    pub fn drain_remaining(&mut self, mut sink: impl FnMut(Record<'_>)) -> Result<Remaining, Error> {
        let view = checked_view(&self.source, self.geometry)?;
        let reader = view.meta().reader();
        // If the producer swapped for us but died before answering, its reader page is newer than
        // ours and was not read at all; ours had been read to its end (or it would not swap).
        let start = match self.pos.page {
            Some(page) if page == reader.id => self.pos.read,
            Some(_) => 0,
            None => reader.read,
        };
        let snap = view.snapshot_quiescent(start);
        self.source.check_mapping()?;
        let snap = snap?;
        let counters = view.meta().counters();
        // A consumer that has seen no event yet starts where consumption stood: what lies between
        // there and the first page left was lost.
        let mut losses = PageLosses::new(self.pos.next_seq.or(snap.from_seq));
        let mut remaining = Remaining::default();
        for copy in &snap.pages {
            if let Some(lost) = losses.before(copy) {
                sink(Record::Lost(Lost::Count(lost)));
            }
            // Decoded from the mapping itself, so events come out as the live path gives them.
            let page = existing_page(&view, self.source.cpu(), copy.id, PageRole::Listed)?;
            let decoded = EventIter::starting_at(&page, copy.start as usize).and_then(|mut events| {
                let mut count = 0;
                let result = events.drain_events(|event| {
                    count += 1;
                    sink(Record::Event(event));
                });
                remaining.events += count;
                result
            });
            self.source.check_mapping()?;
            if let Err(error) = decoded {
                losses.malformed(copy.id, error);
            }
        }
        self.pos.next_seq = losses.next_seq();
        remaining.damage = losses.finish(&counters);
        Ok(remaining)
    }

    /// Waits for data (see [`CpuSource::wait`]).
    pub fn wait(&mut self, pages: u32, timeout: Option<Duration>) -> Result<Wakeup, Error> {
        self.source.wait(pages, timeout)
    }
}

/// The view of `source`, or [`BufferProblem::GeometryChanged`] if its meta area no longer
/// describes `geometry`, the buffer consuming began with (a producer may rewrite its meta area at
/// any time; page copies are sized by the geometry it had).
fn checked_view<S: CpuSource>(source: &S, geometry: Geometry) -> Result<SharedView<'_>, Error> {
    let view = source.view()?;
    if view.geometry() != geometry {
        let changed = BufferProblem::GeometryChanged { cpu: source.cpu(), from: geometry, to: view.geometry() };
        return Err(Error::BadBuffer(changed));
    }
    Ok(view)
}

/// Where a new consumer starts on reader page `id`, which the meta area says was read to `read`:
/// the first event boundary at or after `read`. A ring-core producer accepts no other `read`, but
/// the meta area is the producer side's to write, checked or not: a consumer that started inside
/// an event would decode garbage, or have every request refused. If the page does not
/// decode up to `read`, its whole committed length (as a consumer gives back a page it cannot
/// decode); a page that does not exist is left to the first request to report.
fn resume_point(view: &SharedView<'_>, id: u32, read: u32) -> u32 {
    let Some(page) = view.page(id).filter(|_| read > 0) else { return read };
    let commit = page.committed_len();
    ring_core::boundary_at_or_after(&page, commit as usize, 0, read as usize).map_or(commit, |at| at as u32)
}

/// Page `id` of `view` (CPU `cpu`'s), or [`Error::NoSuchPage`] if the buffer's writer named, as
/// `role`, a page that does not exist.
pub(crate) fn existing_page<'v>(
    view: &SharedView<'v>,
    cpu: u32,
    id: u32,
    role: PageRole,
) -> Result<ring_core::ShmPage<'v>, Error> {
    let nr_subbufs = view.geometry().nr_subbufs();
    view.page(id).ok_or(Error::NoSuchPage { cpu, id, nr_subbufs, role })
}

/// The first sequence number hyptrace's meta extension publishes for page `id` (none on kernel
/// buffers).
fn published_first_seq(view: &SharedView<'_>, id: u32) -> Option<u64> {
    view.has_extension().then(|| view.meta().first_seq(id)).flatten()
}
