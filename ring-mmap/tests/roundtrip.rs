//! The control socket and the read-only mapping, in one process: a producer with its server
//! thread, and a consumer connecting to it.

use ring_core::{ClockParams, Config, Geometry, ManualClock, Mode, TraceClock};
use ring_mmap::wire::{self, Op};
use ring_mmap::{
    Backing, Connection, Consumer, CpuSource, DrainScope, Error, Lost, ProducerConfig, Record, Server, ShmProducer,
    Wakeup,
};
use std::sync::Arc;
use std::time::Duration;

fn producer(mode: Mode, formats: &[u8]) -> Arc<ShmProducer<ManualClock>> {
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode },
        backing: Backing::Memfd,
        formats: formats.to_vec(),
    };
    Arc::new(ShmProducer::new(config, |cpu| ManualClock::new(u64::from(cpu) * 1000)).unwrap())
}

/// A producer serving its control socket in a temporary directory, and a connection to it.
struct Served {
    prod: Arc<ShmProducer<ManualClock>>,
    server: Server,
    conn: Arc<Connection>,
    /// Holds the socket's directory (bind it first, so that it is dropped last).
    _dir: tempfile::TempDir,
}

/// [`producer`] with `mode` and `formats`, served and connected to.
fn serve(mode: Mode, formats: &[u8]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let prod = producer(mode, formats);
    let server = Server::start(&dir.path().join("sock"), prod.clone()).unwrap();
    let conn = Connection::connect(server.path()).unwrap();
    Served { prod, server, conn, _dir: dir }
}

fn seq(record: &Record<'_>) -> Option<u32> {
    match record {
        Record::Event(e) => {
            let mut b = [0u8; 4];
            e.payload.copy_to(&mut b);
            Some(u32::from_ne_bytes(b))
        }
        Record::Lost(_) => None,
    }
}

#[test]
fn a_consumer_reads_what_the_producer_writes() {
    let formats: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Drop, &formats);
    assert_eq!(conn.hello().nr_cpus, 2);
    assert_eq!(conn.formats().unwrap(), formats, "formats arrive whole, in chunks");
    assert_eq!(conn.clock(TraceClock::Own).unwrap(), ClockParams::IDENTITY);
    // A producer that cannot relate its clock to the host's says so, rather than guessing.
    for target in [TraceClock::Mono, TraceClock::Boot] {
        let refused = conn.clock(target).unwrap_err();
        assert!(
            matches!(refused, Error::Refused { op: Op::Clock, status: wire::status::EOPNOTSUPP, .. }),
            "{target:?}: {refused}"
        );
    }
    assert_eq!(conn.clock(TraceClock::Own).unwrap(), ClockParams::IDENTITY, "the connection goes on");

    for i in 0..500u32 {
        prod.cpu(1).writer().unwrap().write(&i.to_ne_bytes()).unwrap();
    }
    let mut consumer = Consumer::new(conn.open_cpu(1).unwrap()).unwrap();
    let mut seqs = Vec::new();
    let n = consumer.drain(|r| seqs.extend(seq(&r))).unwrap();
    assert_eq!(n, 500);
    assert_eq!(seqs, (0..500).collect::<Vec<_>>());
    let stats = conn.stats(1).unwrap();
    assert_eq!((stats.entries, stats.dropped, stats.overrun), (500, 0, 0));
    assert_eq!(conn.stats(0).unwrap().entries, 0);
}

#[test]
fn losses_are_reported_where_they_happened() {
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Overwrite, b"");
    for i in 0..5000u32 {
        prod.cpu(0).writer().unwrap().write(&i.to_ne_bytes()).unwrap();
    }
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    let mut lost = 0;
    let mut seqs = Vec::new();
    consumer
        .drain(|r| match r {
            Record::Lost(Lost::Count(n)) => lost += n,
            other => seqs.extend(seq(&other)),
        })
        .unwrap();
    assert_eq!(u64::from(seqs[0]), lost, "everything before the first survivor was reported lost");
    assert_eq!(*seqs.last().unwrap(), 4999);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(conn.stats(0).unwrap().overrun, lost);
}

#[test]
fn waiting_consumers_are_woken_by_the_doorbell() {
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Overwrite, b"");
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    prod.cpu(0).writer().unwrap().write(b"x").unwrap();
    consumer.drain(|_| {}).unwrap();
    assert_eq!(consumer.wait(1, Some(Duration::from_millis(50))).unwrap(), Wakeup::TimedOut);
    let writer = {
        let prod = prod.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for _ in 0..1000 {
                prod.cpu(0).writer().unwrap().write(&[0; 16]).unwrap(); // several pages
            }
        })
    };
    assert_eq!(consumer.wait(1, Some(Duration::from_secs(10))).unwrap(), Wakeup::Ready);
    writer.join().unwrap();
    assert!(consumer.drain(|_| {}).unwrap() > 0);
}

#[test]
fn stopping_the_server_is_a_hangup() {
    let Served { _dir, server, conn, .. } = serve(Mode::Overwrite, b"");
    let mut cpu = conn.open_cpu(0).unwrap();
    drop(server);
    assert_eq!(cpu.wait(1, Some(Duration::from_secs(10))).unwrap(), Wakeup::Hangup);
    assert!(matches!(cpu.get_reader_page(0), Err(ring_mmap::Error::Hangup)));
    assert!(matches!(conn.call(Op::Stats, 0, 0), Err(ring_mmap::Error::Hangup)));
}

/// A CPU whose producer commits one more event before answering each GET_READER_PAGE: a writer
/// that never lets the reader page settle.
struct Racing {
    cpu: ring_mmap::SocketCpu,
    producer: Arc<ShmProducer<ManualClock>>,
    written: u64,
}

impl CpuSource for Racing {
    fn cpu(&self) -> u32 {
        self.cpu.cpu()
    }
    fn view(&self) -> Result<ring_core::SharedView<'_>, ring_mmap::Error> {
        self.cpu.view()
    }
    fn get_reader_page(&mut self, read: u32) -> Result<ring_mmap::ReaderPage, ring_mmap::Error> {
        self.producer.cpu(self.cpu.cpu()).writer().unwrap().write(&(self.written as u32).to_ne_bytes()).unwrap();
        self.written += 1;
        self.cpu.get_reader_page(read)
    }
    fn wait(&mut self, pages: u32, timeout: Option<Duration>) -> Result<Wakeup, ring_mmap::Error> {
        self.cpu.wait(pages, timeout)
    }
    fn arm(&mut self, pages: u32) -> Result<bool, ring_mmap::Error> {
        self.cpu.arm(pages)
    }
    fn wait_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.cpu.wait_fd()
    }
}

#[test]
fn drain_returns_while_the_producer_keeps_writing() {
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Overwrite, b"");
    let source = Racing { cpu: conn.open_cpu(0).unwrap(), producer: prod.clone(), written: 0 };
    let mut consumer = Consumer::new(source).unwrap();
    // A single-threaded reader of several CPUs relies on each drain returning while its CPU
    // is busy, not re-reading the live reader page for as long as the writer writes.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let events = consumer.drain(|_| {}).unwrap();
        done.send((events, consumer.source().written)).unwrap();
    });
    let (events, written) = finished.recv_timeout(Duration::from_secs(20)).expect("the drain returned");
    assert_eq!((events, written), (3, 3), "a swap onto the live page, then two reads of it");
}

#[test]
fn page_copies_hold_exactly_the_new_events() {
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Drop, b"");
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    let decode = |page: &[u8]| -> Vec<u32> {
        ring_core::EventIter::new(page)
            .unwrap()
            .map(|e| u32::from_ne_bytes(e.unwrap().payload[..4].try_into().unwrap()))
            .collect()
    };
    let mut out = vec![0xffu8; 4096];
    for i in 0..10u32 {
        prod.cpu(0).writer().unwrap().write(&i.to_ne_bytes()).unwrap();
    }
    // The writer is still on this page: the copy holds the ten events and nothing after them.
    let first = consumer.copy_page(&mut out).unwrap();
    assert_eq!((first.page.start, first.events, first.payload_bytes, first.end), (0, 10, 40, 80));
    assert_eq!(decode(&out), (0..10).collect::<Vec<_>>());
    assert_eq!(u64::from_ne_bytes(out[8..16].try_into().unwrap()), 80, "commit is the end, without flags");
    assert!(out[16 + 80..].iter().all(|&b| b == 0));
    // More events on the same page: the next copy starts where the first one ended.
    for i in 10..15u32 {
        prod.cpu(0).writer().unwrap().write(&i.to_ne_bytes()).unwrap();
    }
    let mut copies = Vec::new();
    consumer.drain_copies(DrainScope::Everything, &mut out, |copy, page| copies.push((*copy, page.to_vec()))).unwrap();
    let (second, page) = &copies[0];
    assert_eq!((second.page.start, second.events, second.end), (80, 5, 120));
    assert_eq!(decode(page), (0..15).collect::<Vec<_>>(), "the whole page decodes; the new events are 10..15");
    assert_eq!(copies.iter().map(|(c, _)| c.events).sum::<u64>(), 5, "nothing is copied twice");
}

#[test]
fn finished_page_drains_read_every_page_whole_and_account_for_every_event() {
    let Served { _dir, prod, server: _server, conn } = serve(Mode::Drop, b"");
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    let mut out = vec![0u8; 4096];
    // Events read (by sequence number) and losses reported, in order.
    let mut seen: Vec<Option<u32>> = Vec::new();
    let mut lost = 0u64;
    let take = |copy: &ring_mmap::PageCopy, page: &mut [u8], seen: &mut Vec<Option<u32>>, lost: &mut u64| {
        if let Lost::Count(n) = copy.page.lost {
            *lost += n;
            seen.push(None);
        }
        for e in ring_core::EventIter::starting_at(&*page, copy.page.start as usize).unwrap() {
            seen.push(Some(u32::from_ne_bytes(e.unwrap().payload[..4].try_into().unwrap())));
        }
    };
    let mut written = 0u32;
    // Bursts of every size, some filling the ring (4 pages of about 500 events) so that events
    // are dropped, each followed by a drain of finished pages only.
    for burst in [700u32, 100, 1600, 3000, 5, 900, 2500, 40] {
        for _ in 0..burst {
            let _ = prod.cpu(0).writer().unwrap().write(&written.to_ne_bytes());
            written += 1;
        }
        consumer
            .drain_copies(DrainScope::FinishedPages, &mut out, |copy, page| {
                assert_eq!(copy.page.start, 0, "a finished page is read whole, never in pieces");
                take(copy, page, &mut seen, &mut lost);
            })
            .unwrap();
    }
    // The rest, the page the writer is on included.
    let finished = seen.len();
    loop {
        let before = seen.len();
        consumer
            .drain_copies(DrainScope::Everything, &mut out, |copy, page| take(copy, page, &mut seen, &mut lost))
            .unwrap();
        if seen.len() == before {
            break;
        }
    }
    assert!(seen.len() > finished, "finished-page drains left the page the writer is on");
    // Every event was read once, in order, or counted lost exactly where it went missing.
    let mut expected = 0u32;
    let mut pending_loss = false;
    let mut lost_seen = 0u64;
    for s in &seen {
        match s {
            None => pending_loss = true,
            Some(n) => {
                assert!(*n >= expected, "event {n} read twice or out of order");
                assert_eq!(*n > expected, pending_loss, "a gap before {n} is reported as a loss, and only a gap");
                lost_seen += u64::from(n - expected);
                (expected, pending_loss) = (n + 1, false);
            }
        }
    }
    assert_eq!(expected, written, "the last event written was read");
    assert_eq!(lost_seen, lost, "the losses reported are the gaps");
    assert!(lost > 0, "the bursts filled the ring");
    let dropped = prod.cpu(0).stats().dropped;
    assert_eq!(lost, dropped, "every drop was reported");
}
