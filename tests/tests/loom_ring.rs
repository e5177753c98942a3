//! Loom models of ring-core's lockless protocol: every interleaving (up to
//! `LOOM_MAX_PREEMPTIONS`) of one writer step against one consumer step.
//!
//! Run with `LOOM_MAX_PREEMPTIONS=2 RUSTFLAGS="--cfg loom" cargo test --release -p hyptrace-tests
//! --test loom_ring`. Sizes are tiny: three sub-buffers (the reader page and two ring pages) of 32
//! bytes (16 data bytes) or 64, and 8-byte payloads (12-byte events), so with 32-byte pages every
//! event moves the writer to the next page and the third event wraps the ring.
//!
//! Each model sets the scene single-threaded (no interleavings to explore there), races exactly
//! the two steps it is about, each on a thread of its own, then drains and checks every guarantee
//! single-threaded: no event torn, none seen twice or out of order, every gap reported as lost
//! right before the event that follows it, and `entries = read + overrun + held`. (Both racing
//! steps get their own thread because loom does not preempt the main thread before its first
//! step after a spawn: a step run on the main thread would always start before the other.)
#![cfg(loom)]

use hyptrace_tests::payload;
use loom::sync::Arc;
use loom::thread;
use ring_core::{
    Config, CounterClock, CpuBuffer, Cursor, EventIter, Geometry, Lost, Mode, Record, SwapError, SwapStatus,
    WriteError, Writer,
};

type Buf = CpuBuffer<'static, CounterClock>;

/// Three sub-buffers (the reader page and two ring pages) of `subbuf_size` bytes.
fn tiny(mode: Mode, subbuf_size: u32) -> Arc<Buf> {
    let geometry = Geometry::new(subbuf_size, 3).expect("valid geometry");
    Arc::new(CpuBuffer::with_heap(Config { geometry, mode }, CounterClock::new(1)).expect("heap buffer"))
}

fn write(writer: &Writer<'_, 'static, CounterClock>, seq: u32) -> Result<(), WriteError> {
    writer.write(&payload::make(seq, 8))
}

/// The buffer's writer; each model has one writing thread at a time.
fn claim(buf: &Buf) -> Writer<'_, 'static, CounterClock> {
    buf.writer().expect("one writing thread at a time")
}

/// What a consumer saw: checked sequence numbers, and lost reports with the index they precede.
#[derive(Default, Debug)]
struct Seen {
    seqs: Vec<u32>,
    lost: Vec<(usize, u64)>,
}

impl Seen {
    fn record(&mut self, item: Record<'_>) {
        match item {
            Record::Lost(Lost::Count(n)) => self.lost.push((self.seqs.len(), n)),
            Record::Lost(other) => panic!("an in-process swap reports exact losses, not {other:?}"),
            Record::Event(e) => {
                let seq = payload::check(&e.payload.to_vec()).expect("an event was torn");
                self.seqs.push(seq);
            }
        }
    }

    fn total_lost(&self) -> u64 {
        self.lost.iter().map(|(_, n)| n).sum()
    }
}

/// One consumer step, the one that races the writer: a single swap request, then the events of
/// the reader page it answers with, read up to the `commit` seen.
fn consume_step(buf: &Buf, cursor: &mut Cursor, seen: &mut Seen) {
    let update = match buf.swap_reader_page(cursor.read) {
        Ok(update) => update,
        // The writer kept the head moving: a consumer retries later.
        Err(SwapError::Busy) => return,
        Err(e) => panic!("swap failed: {e}"),
    };
    let lost = update.lost();
    if lost != Lost::None {
        seen.record(Record::Lost(lost));
    }
    let view = buf.view();
    let page = view.page(update.id).expect("reader page exists");
    let mut events = EventIter::starting_at(&page, update.read as usize).expect("reader page decodes");
    for event in &mut events {
        seen.record(Record::Event(event.expect("reader page decodes")));
    }
    *cursor = Cursor { page: update.id, read: events.position() as u32 };
}

/// Reads everything left, single-threaded.
fn drain(buf: &Buf, cursor: &mut Cursor, seen: &mut Seen) {
    let view = buf.view();
    cursor.drain(&view, |read| buf.swap_reader_page(read), |item| seen.record(item)).expect("drain");
}

/// The guarantees every model checks once the race is over and everything is drained.
fn check(buf: &Buf, cursor: &Cursor, seen: &Seen, results: &[Result<(), WriteError>]) {
    // In order, never repeated, every gap reported as lost right before the event after it.
    let mut next = 0u32;
    let mut lost = seen.lost.iter().peekable();
    for (i, &seq) in seen.seqs.iter().enumerate() {
        assert!(seq >= next, "event {seq} seen twice or out of order: {seen:?}");
        let reported = lost.next_if(|(at, _)| *at == i).map_or(0, |(_, n)| *n);
        assert_eq!(u64::from(seq - next), reported, "gap before {seq} misreported: {seen:?}");
        next = seq + 1;
    }
    let stats = buf.stats();
    let written = results.iter().filter(|r| r.is_ok()).count() as u64;
    let dropped = results.iter().filter(|r| **r == Err(WriteError::Dropped)).count() as u64;
    assert_eq!(written + dropped, results.len() as u64, "no other write error");
    assert_eq!((stats.entries, stats.dropped), (written, dropped));
    // Drops after the last event seen have no later event to be reported before.
    let trailing = results[next as usize..].iter().filter(|r| **r == Err(WriteError::Dropped)).count() as u64;
    assert_eq!(seen.total_lost(), stats.overrun + stats.dropped - trailing, "{seen:?} {stats:?}");
    // Everything committed was read, overwritten, or is on the page the consumer holds.
    let view = buf.view();
    let held = EventIter::new(&view.page(cursor.page).expect("reader page")).expect("decodes").count() as u64;
    assert_eq!(stats.entries, stats.read + stats.overrun + held, "{stats:?}");
    let kept: Vec<u32> = (0..results.len() as u32).filter(|&s| results[s as usize].is_ok()).collect();
    match buf.mode() {
        Mode::Drop => {
            assert_eq!(stats.overrun, 0);
            assert_eq!(seen.seqs, kept, "drop mode loses only refused events");
        }
        Mode::Overwrite => {
            assert_eq!(seen.seqs.last(), kept.last(), "the newest event survives");
        }
    }
}

/// A race of one writer step against one consumer step.
#[derive(Clone, Copy)]
struct Race {
    mode: Mode,
    /// Sub-buffer size: 32 (one event per page) or 64 (four).
    subbuf_size: u32,
    /// Events written before the race.
    prefill: u32,
    /// Whether the consumer takes a reader page (and reads it) before the race.
    consumer_first: bool,
    /// Events the writer writes during the race.
    writes: u32,
}

impl Race {
    fn run(self) {
        loom::model(move || {
            let buf = tiny(self.mode, self.subbuf_size);
            let mut results: Vec<_> = (0..self.prefill).map(|seq| write(&claim(&buf), seq)).collect();
            let mut cursor = Cursor::default();
            let mut seen = Seen::default();
            if self.consumer_first {
                consume_step(&buf, &mut cursor, &mut seen);
            }
            let seqs = self.prefill..self.prefill + self.writes;
            let (written, (mut cursor, mut seen)) = race(
                &buf,
                move |buf| {
                    let writer = claim(buf);
                    seqs.map(|seq| write(&writer, seq)).collect::<Vec<_>>()
                },
                move |buf| {
                    consume_step(buf, &mut cursor, &mut seen);
                    (cursor, seen)
                },
            );
            results.extend(written);
            drain(&buf, &mut cursor, &mut seen);
            check(&buf, &cursor, &seen, &results);
        });
    }
}

/// Runs `writer` and `reader` on two threads of their own and returns what each returned.
fn race<W, R>(
    buf: &Arc<Buf>,
    writer: impl FnOnce(&Buf) -> W + 'static,
    reader: impl FnOnce(&Buf) -> R + 'static,
) -> (W, R)
where
    W: 'static,
    R: 'static,
{
    let w = {
        let buf = buf.clone();
        thread::spawn(move || writer(&buf))
    };
    let r = {
        let buf = buf.clone();
        thread::spawn(move || reader(&buf))
    };
    (w.join().expect("writer panicked"), r.join().expect("reader panicked"))
}

const ONE_PER_PAGE: u32 = 32;
const FOUR_PER_PAGE: u32 = 64;

/// Ring full: the writer must push the head page out while the swap tries to take it. Exactly one
/// of them gets it.
#[test]
fn swap_races_a_writer_pushing_the_head() {
    Race { mode: Mode::Overwrite, subbuf_size: ONE_PER_PAGE, prefill: 2, consumer_first: false, writes: 1 }.run();
}

/// The writer leaves the head page for the next one while the swap takes the head page (possibly
/// while the writer is still on it, which makes it the reader page the writer writes into).
#[test]
fn swap_races_a_writer_leaving_the_head_page() {
    Race { mode: Mode::Overwrite, subbuf_size: ONE_PER_PAGE, prefill: 1, consumer_first: false, writes: 1 }.run();
}

/// The writer is on the reader page the consumer has read up to `commit`; it commits one more
/// event there and leaves the page while the consumer asks for the next one. The swap must not
/// hand that page back with the last event unread.
#[test]
fn swap_races_a_writer_finishing_the_reader_page() {
    Race { mode: Mode::Overwrite, subbuf_size: FOUR_PER_PAGE, prefill: 3, consumer_first: true, writes: 2 }.run();
}

/// Drop mode, ring full: the write is refused unless the swap frees a page first.
#[test]
fn swap_races_a_writer_in_drop_mode() {
    Race { mode: Mode::Drop, subbuf_size: ONE_PER_PAGE, prefill: 2, consumer_first: false, writes: 1 }.run();
}

/// Drop mode, ring full, the writer waiting right before the head: the swap splices the old
/// reader page in there, and the writer may enter, fill and leave that page at once. The swap's
/// accounting of the page it gave back (events read, where its sequence range ended) must be the
/// page's old content, not the writer's new lap.
#[test]
fn swap_races_a_writer_refilling_the_page_it_gave_back() {
    Race { mode: Mode::Drop, subbuf_size: ONE_PER_PAGE, prefill: 2, consumer_first: false, writes: 2 }.run();
}

/// A nested write (an interrupt inside an open reservation) is flushed by the outer commit while a
/// consumer swaps: the nested event lands after the outer one and both are seen once, in order.
#[test]
fn swap_races_an_outer_commit_flushing_a_nested_write() {
    loom::model(|| {
        let buf = tiny(Mode::Overwrite, ONE_PER_PAGE);
        let (results, (mut cursor, mut seen)) = race(
            &buf,
            |buf| {
                let writer = claim(buf);
                let mut outer = writer.reserve(8).expect("reserve");
                outer.write_at(0, &payload::make(0, 8)).expect("in bounds");
                let nested = write(&writer, 1);
                outer.commit();
                vec![Ok(()), nested]
            },
            |buf| {
                let (mut cursor, mut seen) = (Cursor::default(), Seen::default());
                consume_step(buf, &mut cursor, &mut seen);
                (cursor, seen)
            },
        );
        drain(&buf, &mut cursor, &mut seen);
        check(&buf, &cursor, &seen, &results);
        assert_eq!(seen.seqs, [0, 1]);
    });
}

/// A non-consuming reader validates its copy of ring slot 0 with `data_index[0].cnt` while the
/// writer overwrites that slot: a copy that passes is never torn and holds what was committed.
#[test]
fn validated_slot_reads_never_return_torn_pages() {
    loom::model(|| {
        let buf = tiny(Mode::Overwrite, ONE_PER_PAGE);
        write(&claim(&buf), 0).expect("first write");
        write(&claim(&buf), 1).expect("second write");
        let ((), seqs) = race(
            &buf,
            |buf| write(&claim(buf), 2).expect("overwrite never refuses"),
            |buf| {
                let mut copy = vec![0u8; 32];
                buf.view().copy_slot(0, &mut copy).ok().map(|_| {
                    EventIter::new(copy.as_slice())
                        .expect("a validated copy decodes")
                        .map(|e| payload::check(e.expect("a validated copy decodes").payload).expect("never torn"))
                        .collect::<Vec<u32>>()
                })
            },
        );
        // Slot 0 holds event 0 until the writer comes back round with event 2. A copy of the page
        // mid-reset is rejected by the seqlock; a copy after the reset may be empty or hold event 2.
        if let Some(seqs) = seqs {
            assert!(seqs == [0] || seqs == [2] || seqs.is_empty(), "slot 0 copy holds {seqs:?}");
        }
    });
}

/// Counts doorbell rings.
#[derive(Clone, Default)]
struct Rings(Arc<loom::sync::atomic::AtomicU32>);

impl ring_core::Doorbell for Rings {
    fn ring(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A consumer arms the doorbell (watermark one page) just as the writer finishes the reader page
/// it had caught up on: it must either see the finished page itself or be rung, never neither
/// (a lost wakeup), and it is rung at most once.
#[test]
fn arming_the_doorbell_races_the_writer_finishing_a_page() {
    loom::model(|| {
        let rings = Rings::default();
        let geometry = Geometry::new(ONE_PER_PAGE, 3).expect("valid geometry");
        let buf = Arc::new(
            CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, CounterClock::new(1))
                .expect("heap buffer")
                .with_doorbell(rings.clone()),
        );
        buf.writer().expect("unclaimed").write(&payload::make(0, 8)).expect("write");
        // The consumer takes the writer's page: caught up, nothing finished.
        assert_eq!(buf.swap_reader_page(0).expect("swap").status, SwapStatus::Swapped);
        assert_eq!(buf.full_pages(), 0);
        let writer = {
            let buf = buf.clone();
            thread::spawn(move || buf.writer().expect("unclaimed").write(&payload::make(1, 8)).expect("write"))
        };
        let consumer = {
            let buf = buf.clone();
            thread::spawn(move || buf.arm_doorbell(1))
        };
        writer.join().expect("writer panicked");
        let ready = consumer.join().expect("consumer panicked");
        let rung = rings.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(buf.full_pages(), 1, "the writer left the reader page");
        assert!(ready || rung == 1, "lost wakeup: not ready and not rung");
        assert!(rung <= 1, "rung {rung} times for one arming");
    });
}

/// A non-consuming reader copies the reader page while the consumer gives it back and the writer
/// refills it: a copy that passes the `reader_seq` check holds the page's old content, untorn.
/// (The swap and the writes run on one thread: their own race is what the models above cover;
/// here what matters is the copy racing both.)
#[test]
fn validated_reader_page_copies_never_return_a_page_handed_back() {
    loom::model(|| {
        let buf = tiny(Mode::Overwrite, ONE_PER_PAGE);
        write(&claim(&buf), 0).expect("write");
        write(&claim(&buf), 1).expect("write");
        // The consumer takes page 1 (event 0); the writer is on page 2 (event 1).
        assert_eq!(buf.swap_reader_page(0).expect("swap").id, 1);
        let ((), copied) = race(
            &buf,
            |buf| {
                // Gives page 1 back (the new reader page is page 2), then the writer fills page
                // 0 and moves on to page 1, overwriting event 0.
                assert_eq!(buf.swap_reader_page(12).expect("swap").id, 2);
                let writer = claim(buf);
                write(&writer, 2).expect("write");
                write(&writer, 3).expect("write");
            },
            |buf| {
                let mut copy = vec![0u8; 32];
                buf.view().copy_reader_page(&mut copy).ok().map(|c| {
                    let seqs = EventIter::new(copy.as_slice())
                        .expect("a validated copy decodes")
                        .map(|e| payload::check(e.expect("a validated copy decodes").payload).expect("never torn"))
                        .collect::<Vec<u32>>();
                    (c.id, seqs)
                })
            },
        );
        match copied {
            None => {}
            Some((1, seqs)) => assert_eq!(seqs, [0], "reader page 1 copied with the wrong content"),
            Some((2, seqs)) => assert_eq!(seqs, [1], "reader page 2 copied with the wrong content"),
            Some((id, seqs)) => panic!("page {id} ({seqs:?}) was never the reader page"),
        }
    });
}

/// Two threads race to claim the buffer's writer, each writing one event with it: at most one
/// holds it at a time (the other is refused, never let in beside it), every event written through
/// a claim is committed and published, and a later claimant writes on after them. (The writer's
/// private bookkeeping is not a tracked atomic, so loom checks the claim's exclusion and the
/// pages, not that bookkeeping's handover.)
#[test]
fn claims_of_the_writer_exclude_each_other_and_hand_its_state_over() {
    loom::model(|| {
        let buf = tiny(Mode::Drop, FOUR_PER_PAGE);
        let holders = Arc::new(loom::sync::atomic::AtomicU32::new(0));
        let claimant = |seq: u32| {
            let (buf, holders) = (buf.clone(), holders.clone());
            thread::spawn(move || {
                let Ok(writer) = buf.writer() else { return false };
                let inside = holders.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert_eq!(inside, 0, "two claimed writers at once");
                write(&writer, seq).expect("the ring has room");
                holders.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                true
            })
        };
        let (a, b) = (claimant(0), claimant(1));
        let claims = [a.join().expect("claimant panicked"), b.join().expect("claimant panicked")];
        let wins = claims.iter().filter(|&&won| won).count() as u64;
        assert!(wins >= 1, "an uncontended claim cannot fail");
        let stats = buf.stats();
        assert_eq!((stats.entries, stats.dropped, buf.abandoned()), (wins, 0, 0));
        assert_eq!(buf.view().meta().counters().entries, wins, "each release published its count");
        // The buffer is free again and in a state the next writer continues from.
        write(&claim(&buf), 2).expect("the ring has room");
        let (mut cursor, mut seen) = (Cursor::default(), Seen::default());
        drain(&buf, &mut cursor, &mut seen);
        assert_eq!(seen.seqs.len() as u64, wins + 1);
        assert_eq!(seen.seqs.last(), Some(&2));
    });
}
