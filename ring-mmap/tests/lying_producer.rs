//! A producer that lies to its consumers (in its answers, in its meta area, in its buffer files)
//! gets an error or a sensible result back, never a panic: read positions past the committed
//! data, reader pages that do not exist, sequence numbers and lost counts that would overflow, a
//! geometry changed after the handshake, a format description too large to fetch.

use ring_core::meta::off;
use ring_core::{
    Arming, ClockParams, Config, CpuBuffer, Geometry, ManualClock, Mode, ReaderUpdate, SharedView, Stats, SwapError,
    SwapStatus, TraceClock,
};
use ring_mmap::client::MAX_FORMATS_LEN;
use ring_mmap::wire::Op;
use ring_mmap::{
    AnswerProblem, Backing, BufferProblem, Connection, Consumer, CpuSource, DirCpu, DrainScope, Error,
    HandshakeProblem, Lost, PageRole, Producer, ProducerConfig, ReaderPage, Record, Server, ShmProducer, Wakeup,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const GEOMETRY: (u32, u32) = (4096, 4);

fn producer(backing: Backing, formats: Vec<u8>) -> Arc<ShmProducer<ManualClock>> {
    let geometry = Geometry::new(GEOMETRY.0, GEOMETRY.1).unwrap();
    let config = ProducerConfig { nr_cpus: 1, buffer: Config { geometry, mode: Mode::Overwrite }, backing, formats };
    Arc::new(ShmProducer::new(config, |_| ManualClock::new(1)).unwrap())
}

/// Offset of `first_seq[id]` in a CPU file of [`GEOMETRY`] (version 2's layout).
fn first_seq_at(id: u32) -> u64 {
    (ring_core::meta::seq_offset(GEOMETRY.1 - 1) + 8 * id as usize) as u64
}

/// Writes `value` at `at` in CPU 0's file of the buffer directory `dir`, as a lying producer would.
fn scribble(dir: &Path, at: u64, value: &[u8]) {
    let file = std::fs::OpenOptions::new().write(true).open(dir.join("cpu0")).unwrap();
    file.write_all_at(value, at).unwrap();
}

/// What a [`Lying`] producer lies about.
enum Lie {
    /// Every GET_READER_PAGE answer names page 1 with this much read (as if the page had that
    /// much more than it does).
    Read(u32),
    /// Every GET_READER_PAGE answer names this page, unread.
    Page(u32),
    /// The formats are these when HELLO asks their length (the first time they are asked for),
    /// and the honest ones afterwards, when FORMATS fetches them.
    Formats(Vec<u8>),
}

/// An honest producer but for one lie.
struct Lying {
    inner: Arc<ShmProducer<ManualClock>>,
    lie: Lie,
    /// The formats were asked for already.
    formats_asked: AtomicBool,
}

impl Lying {
    fn new(inner: Arc<ShmProducer<ManualClock>>, lie: Lie) -> Arc<Self> {
        Arc::new(Self { inner, lie, formats_asked: AtomicBool::new(false) })
    }
}

impl Producer for Lying {
    fn nr_cpus(&self) -> u32 {
        self.inner.nr_cpus()
    }
    fn config(&self) -> Config {
        self.inner.config()
    }
    fn cpu_fds(&self, cpu: u32) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        self.inner.cpu_fds(cpu)
    }
    fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError> {
        match self.lie {
            Lie::Read(read) => Ok(ReaderUpdate { status: SwapStatus::Unread, id: 1, read, lost_events: 0 }),
            Lie::Page(id) => Ok(ReaderUpdate { status: SwapStatus::Unread, id, read: 0, lost_events: 0 }),
            Lie::Formats(_) => self.inner.swap_reader_page(cpu, read),
        }
    }
    fn stats(&self, cpu: u32) -> Option<Stats> {
        self.inner.stats(cpu)
    }
    fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming {
        self.inner.arm_doorbell(cpu, pages)
    }
    fn disarm_doorbell(&self, cpu: u32) {
        self.inner.disarm_doorbell(cpu)
    }
    fn formats(&self) -> &[u8] {
        match &self.lie {
            Lie::Formats(announced) if !self.formats_asked.swap(true, Ordering::Relaxed) => announced,
            _ => self.inner.formats(),
        }
    }
    fn clock(&self, target: TraceClock) -> Option<ClockParams> {
        self.inner.clock(target)
    }
}

#[test]
fn a_read_position_past_the_commit_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let inner = producer(Backing::Memfd, Vec::new());
    inner.cpu(0).writer().unwrap().write(b"hello").unwrap();
    for (read, what) in [(u32::MAX, "far past the page"), (4000, "past the commit"), (2, "misaligned")] {
        let lying = Lying::new(inner.clone(), Lie::Read(read));
        let server = Server::start(&dir.path().join(format!("sock{read}")), lying).unwrap();
        let cpu = Connection::connect(server.path()).unwrap().open_cpu(0).unwrap();
        let mut consumer = Consumer::new(cpu).unwrap();
        let mut events = 0;
        let got = consumer.read_page(|_| events += 1);
        assert!(
            matches!(got, Err(Error::BadReadPosition { cpu: 0, id: 1, read: r, commit: 12 }) if r == read),
            "{what}: {got:?}"
        );
        let mut out = vec![0u8; GEOMETRY.0 as usize];
        let got = consumer.copy_page(&mut out);
        assert!(
            matches!(got, Err(Error::BadReadPosition { cpu: 0, id: 1, read: r, commit: 12 }) if r == read),
            "{what}: {got:?}"
        );
        assert_eq!(events, 0, "{what}: nothing decoded from a page the producer lied about");
    }
}

#[test]
fn a_reader_page_that_does_not_exist_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let inner = producer(Backing::Memfd, Vec::new());
    let server = Server::start(&dir.path().join("sock"), Lying::new(inner, Lie::Page(GEOMETRY.1))).unwrap();
    let mut consumer = Consumer::new(Connection::connect(server.path()).unwrap().open_cpu(0).unwrap()).unwrap();
    let got = consumer.read_page(|_| {});
    // GEOMETRY has four sub-buffers, 0 to 3.
    assert!(matches!(got, Err(Error::NoSuchPage { cpu: 0, id: 4, nr_subbufs: 4, role: PageRole::Reader })), "{got:?}");
    // A source that checks nothing: the consumer refuses the page itself.
    let geometry = Geometry::new(GEOMETRY.0, GEOMETRY.1).unwrap();
    let buf = CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, ManualClock::new(1)).unwrap();
    let missing = ReaderPage { id: GEOMETRY.1, start: 0, swapped: true, lost: Lost::None };
    let doorbell = std::fs::File::open("/dev/null").unwrap().into();
    let mut consumer = Consumer::new(ScriptedCpu { buf, answers: vec![missing], last: 0, doorbell }).unwrap();
    let got = consumer.read_page(|_| {});
    assert!(matches!(got, Err(Error::NoSuchPage { cpu: 0, id: 4, nr_subbufs: 4, role: PageRole::Reader })), "{got:?}");
}

/// A buffer directory holding ten events on page 1, whose first_seq claims they end past
/// u64::MAX.
fn overflowing_first_seq(dir: &Path) -> Arc<ShmProducer<ManualClock>> {
    let inner = producer(Backing::Dir { path: dir.to_path_buf(), overwrite: false }, Vec::new());
    for _ in 0..10 {
        inner.cpu(0).writer().unwrap().write(b"evt!").unwrap();
    }
    scribble(dir, first_seq_at(1), &(u64::MAX - 2).to_ne_bytes());
    inner
}

fn events_in(record: Record<'_>) -> u32 {
    u32::from(matches!(record, Record::Event(_)))
}

#[test]
fn sequence_numbers_that_would_overflow_become_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let inner = overflowing_first_seq(&dir.path().join("bufs"));
    let server = Server::start(&dir.path().join("sock"), inner.clone()).unwrap();
    let mut consumer = Consumer::new(Connection::connect(server.path()).unwrap().open_cpu(0).unwrap()).unwrap();
    let mut events = 0;
    consumer.drain(|r| events += events_in(r)).unwrap();
    assert_eq!(events, 10);
    assert_eq!(consumer.next_seq(), None);
}

#[test]
fn sequence_numbers_that_would_overflow_post_mortem_still_give_every_event() {
    // Read after the producer has gone, where losses between pages come from sequence numbers.
    let dir = tempfile::tempdir().unwrap();
    let bufs = dir.path().join("bufs");
    drop(overflowing_first_seq(&bufs));
    let mut consumer = Consumer::new(DirCpu::open(&bufs, 0).unwrap()).unwrap();
    let mut events = 0;
    consumer.drain_remaining(|r| events += events_in(r)).unwrap();
    assert_eq!(events, 10);
}

/// A CPU whose GET_READER_PAGE answers are given in advance (the last one first); once they
/// run out it answers that nothing changed.
struct ScriptedCpu {
    buf: CpuBuffer<'static, ManualClock>,
    answers: Vec<ReaderPage>,
    last: u32,
    doorbell: OwnedFd,
}

impl CpuSource for ScriptedCpu {
    fn cpu(&self) -> u32 {
        0
    }
    fn view(&self) -> Result<SharedView<'_>, Error> {
        Ok(self.buf.view())
    }
    fn get_reader_page(&mut self, read: u32) -> Result<ReaderPage, Error> {
        let answer =
            self.answers.pop().unwrap_or(ReaderPage { id: self.last, start: read, swapped: false, lost: Lost::None });
        self.last = answer.id;
        Ok(answer)
    }
    fn wait(&mut self, _pages: u32, _timeout: Option<Duration>) -> Result<Wakeup, Error> {
        Ok(Wakeup::Hangup)
    }
    fn arm(&mut self, _pages: u32) -> Result<bool, Error> {
        Ok(true)
    }
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.doorbell.as_fd()
    }
}

#[test]
fn lost_counts_that_would_overflow_saturate() {
    let geometry = Geometry::new(GEOMETRY.0, GEOMETRY.1).unwrap();
    let buf = CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, ManualClock::new(1)).unwrap();
    buf.writer().unwrap().write(b"x").unwrap();
    // Two swaps of the page the writer is on, each claiming u64::MAX events lost before it: a
    // recorder of finished pages defers both and reports their sum.
    let writer_page = buf.view().meta().tail_id();
    let swap = ReaderPage { id: writer_page, start: 0, swapped: true, lost: Lost::Count(u64::MAX) };
    let doorbell = std::fs::File::open("/dev/null").unwrap().into();
    let mut consumer = Consumer::new(ScriptedCpu { buf, answers: vec![swap, swap, swap], last: 0, doorbell }).unwrap();
    let mut out = vec![0u8; GEOMETRY.0 as usize];
    let mut lost = Vec::new();
    for _ in 0..2 {
        consumer.drain_copies(DrainScope::FinishedPages, &mut out, |copy, _| lost.push(copy.page.lost)).unwrap();
    }
    assert!(lost.is_empty(), "the writer's page stays deferred");
    consumer.drain_copies(DrainScope::Everything, &mut out, |copy, _| lost.push(copy.page.lost)).unwrap();
    assert_eq!(lost[0], Lost::Count(u64::MAX));
    assert!(lost[1..].iter().all(|l| *l == Lost::None), "{lost:?}");
}

#[test]
fn a_geometry_changed_after_the_handshake_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let bufs = dir.path().join("bufs");
    let inner = producer(Backing::Dir { path: bufs.clone(), overwrite: false }, Vec::new());
    for _ in 0..10 {
        inner.cpu(0).writer().unwrap().write(b"evt!").unwrap();
    }
    let server = Server::start(&dir.path().join("sock"), inner.clone()).unwrap();
    let mut consumer = Consumer::new(Connection::connect(server.path()).unwrap().open_cpu(0).unwrap()).unwrap();
    // Eight 2 KiB sub-buffers in the same bytes, self-consistent: a valid meta area of another
    // buffer than the one the consumer sized its copies for.
    let nr_slots = 7u32;
    scribble(&bufs, off::SUBBUF_SIZE as u64, &2048u32.to_ne_bytes());
    scribble(&bufs, off::NR_SUBBUFS as u64, &8u32.to_ne_bytes());
    scribble(&bufs, off::EXT_NR_SLOTS as u64, &nr_slots.to_ne_bytes());
    scribble(&bufs, off::EXT_SEQ_OFFSET as u64, &(ring_core::meta::seq_offset(nr_slots) as u32).to_ne_bytes());
    let struct_len = ring_core::meta::meta_struct_len(nr_slots) as u32;
    scribble(&bufs, off::META_STRUCT_LEN as u64, &struct_len.to_ne_bytes());
    let mut out = vec![0u8; GEOMETRY.0 as usize];
    let changed = BufferProblem::GeometryChanged {
        cpu: 0,
        from: Geometry::new(GEOMETRY.0, GEOMETRY.1).unwrap(),
        to: Geometry::new(2048, 8).unwrap(),
    };
    let got = consumer.copy_page(&mut out);
    assert!(matches!(got, Err(Error::BadBuffer(problem)) if problem == changed), "{got:?}");
    let got = consumer.read_page(|_| {});
    assert!(matches!(got, Err(Error::BadBuffer(problem)) if problem == changed), "{got:?}");
}

#[test]
fn a_format_description_too_large_to_fetch_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let inner = producer(Backing::Memfd, vec![0; 64]);
    // Zeroed memory, mapped but never touched: the server only takes its length.
    let too_large = vec![0; usize::try_from(MAX_FORMATS_LEN).unwrap() + 1];
    let huge = Lying::new(inner.clone(), Lie::Formats(too_large));
    let server = Server::start(&dir.path().join("huge"), huge).unwrap();
    let got = Connection::connect(server.path());
    let announced = HandshakeProblem::FormatsTooLarge { len: MAX_FORMATS_LEN + 1 };
    assert!(matches!(got, Err(Error::BadHandshake(problem)) if problem == announced), "{got:?}");
    // Within the limit, a description the producer then fails to deliver is an error too.
    let short = Lying::new(inner, Lie::Formats(vec![0; 1 << 20]));
    let server = Server::start(&dir.path().join("short"), short).unwrap();
    let got = Connection::connect(server.path()).unwrap().formats();
    // The honest producer has 64 bytes of formats to give.
    let problem = AnswerProblem::FormatsEnd { end: 64, len: 1 << 20 };
    assert!(matches!(got, Err(Error::BadAnswer { op: Op::Formats, problem: p }) if p == problem), "{got:?}");
}
