//! Model-based test of ring-core: random programs of writes (of every size, with small and huge
//! time steps), nested reservations committed or discarded, partial reads with reader-page swaps,
//! and non-consuming snapshots, run against a real buffer and against the oracle in
//! `hyptrace_tests::oracle`. After every read and snapshot, and at the end, both must agree on
//! every event (timestamp and payload), every lost-event report, and every counter.
#![cfg(not(loom))]

use hyptrace_tests::oracle::{ModelEvent, Oracle, Seen, WriteOutcome, padded};
use hyptrace_tests::payload;
use proptest::prelude::*;
use ring_core::format::TIME_DELTA_MAX;
use ring_core::{
    Clock, Config, CpuBuffer, EventIter, Geometry, ManualClock, Mode, Reservation, SwapStatus, WriteError,
};

#[derive(Debug, Clone)]
enum Op {
    /// `write` of a `len`-byte event after the clock moved by `dt`.
    Write { len: usize, dt: u64 },
    /// `reserve` (nested inside any open reservation) after the clock moved by `dt`.
    Open { len: usize, dt: u64 },
    /// Commit or discard the innermost open reservation.
    Close { commit: bool },
    /// Consume up to `k` events, swapping reader pages as they are used up.
    Read { k: usize },
    /// Take a non-consuming snapshot.
    Snapshot,
}

#[derive(Debug, Clone)]
struct Program {
    subbuf_size: u32,
    nr_subbufs: u32,
    mode: Mode,
    ops: Vec<Op>,
}

/// Clock steps: mostly small, sometimes exactly around the 27-bit header limit, sometimes needing
/// a time extend, and rarely a jump no extend can carry (a new page).
fn dt() -> impl Strategy<Value = u64> {
    prop_oneof![
        20 => 0u64..40,
        2 => (TIME_DELTA_MAX - 1)..(TIME_DELTA_MAX + 3),
        1 => Just(1u64 << 40),
        1 => (1u64 << 59)..((1u64 << 59) + 2),
    ]
}

/// Payload lengths: mostly small, some large (`type_len` 0), a few just past the maximum.
fn len(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![8 => 0..=max.min(23), 3 => 0..=max.min(120), 2 => 0..=max, 1 => max..=max + 8]
}

fn program() -> impl Strategy<Value = Program> {
    (prop::sample::select(vec![64u32, 128, 256]), 3u32..=5, prop::bool::ANY).prop_flat_map(
        |(subbuf_size, nr_subbufs, drop)| {
            let max = Geometry::new(subbuf_size, nr_subbufs).expect("valid").max_payload();
            let op = prop_oneof![
                40 => (len(max), dt()).prop_map(|(len, dt)| Op::Write { len, dt }),
                6 => (len(max), dt()).prop_map(|(len, dt)| Op::Open { len, dt }),
                6 => prop::bool::weighted(0.8).prop_map(|commit| Op::Close { commit }),
                15 => (1usize..12).prop_map(|k| Op::Read { k }),
                3 => Just(Op::Snapshot),
            ];
            let mode = if drop { Mode::Drop } else { Mode::Overwrite };
            prop::collection::vec(op, 1..160).prop_map(move |ops| Program { subbuf_size, nr_subbufs, mode, ops })
        },
    )
}

/// The real consumer, doing what `Oracle::read` models: read up to `k` events; whenever the
/// reader page is used up (trailing padding included), swap and continue on the new page.
fn read(buf: &CpuBuffer<'_, ManualClock>, cursor: &mut (u32, u32), k: usize) -> Vec<Seen> {
    let view = buf.view();
    let mut out = Vec::new();
    let mut remaining = k;
    loop {
        let page = view.page(cursor.0).expect("reader page exists");
        let mut events = EventIter::starting_at(&page, cursor.1 as usize).expect("reader page decodes");
        while remaining > 0 {
            match events.next() {
                Some(e) => {
                    let e = e.expect("reader page decodes");
                    out.push(Seen::Event(ModelEvent { ts: e.timestamp, payload: e.payload.to_vec() }));
                    remaining -= 1;
                }
                None => break,
            }
        }
        // If nothing but padding is left, the page is used up: report all of it as read.
        let mut rest = EventIter::starting_at(&page, events.position()).expect("reader page decodes");
        cursor.1 = if rest.next().is_none() { rest.position() as u32 } else { events.position() as u32 };
        let update = buf.swap_reader_page(cursor.1).expect("swap");
        if update.status == SwapStatus::Swapped {
            if update.lost_events > 0 {
                out.push(Seen::Lost(update.lost_events));
            }
            *cursor = (update.id, update.read);
            if remaining > 0 {
                continue;
            }
        }
        return out;
    }
}

fn snapshot(buf: &CpuBuffer<'_, ManualClock>) -> Vec<ModelEvent> {
    let snap = buf.view().snapshot().expect("our buffers have the extension");
    assert_eq!(snap.discarded, 0, "nothing changes under a single-threaded snapshot");
    snap.events().map(|e| ModelEvent { ts: e.timestamp, payload: e.payload.to_vec() }).collect()
}

fn outcome(real: Result<(), WriteError>) -> WriteOutcome {
    match real {
        Ok(()) => WriteOutcome::Ok,
        Err(WriteError::Dropped) => WriteOutcome::Dropped,
        Err(WriteError::NestedTooLarge { .. }) => WriteOutcome::NestedTooLarge,
        Err(WriteError::TooLarge { .. }) => WriteOutcome::TooLarge,
        Err(e) => panic!("unexpected write error {e}"),
    }
}

fn run(program: &Program) -> Result<(), TestCaseError> {
    let geometry = Geometry::new(program.subbuf_size, program.nr_subbufs).expect("valid");
    let buf = CpuBuffer::with_heap(Config { geometry, mode: program.mode }, ManualClock::new(1000)).expect("heap");
    let clock = buf.clock();
    let mut model = Oracle::new(geometry, program.mode);
    let writer = buf.writer().expect("the model test is the only writer");
    let mut open: Vec<(Reservation<'_, '_, ManualClock>, Vec<u8>)> = Vec::new();
    let mut cursor = (0u32, 0u32);
    let mut next_seq = 0u32;
    for (step, op) in program.ops.iter().enumerate() {
        match *op {
            Op::Write { len, dt } => {
                clock.advance(dt);
                let p = payload::make(next_seq, len);
                let real = outcome(writer.write(&p));
                let want = model.write(clock.now(), &p);
                prop_assert_eq!(real, want, "write at step {}", step);
                next_seq += 1;
            }
            Op::Open { len, dt } => {
                if open.len() >= 6 {
                    continue;
                }
                clock.advance(dt);
                let p = payload::make(next_seq, len);
                let want = model.open(clock.now(), &p);
                match writer.reserve(len) {
                    Ok(mut r) => {
                        prop_assert_eq!(want, WriteOutcome::Ok, "reserve at step {}", step);
                        r.write_at(0, &p).expect("within the reservation");
                        open.push((r, p));
                    }
                    Err(e) => prop_assert_eq!(outcome(Err(e)), want, "reserve at step {}", step),
                }
                next_seq += 1;
            }
            Op::Close { commit } => {
                if let Some((r, p)) = open.pop() {
                    if commit {
                        r.commit()
                    } else {
                        r.discard()
                    }
                    model.close(commit, &p);
                }
            }
            Op::Read { k } => {
                let real = read(&buf, &mut cursor, k);
                let want = model.read(k);
                prop_assert_eq!(real, want, "read at step {}", step);
            }
            Op::Snapshot => prop_assert_eq!(snapshot(&buf), model.snapshot(), "snapshot at step {}", step),
        }
        prop_assert_eq!(open.len(), model.depth());
    }
    while let Some((r, p)) = open.pop() {
        r.commit();
        model.close(true, &p);
    }
    loop {
        let real = read(&buf, &mut cursor, usize::MAX);
        let want = model.read(usize::MAX);
        prop_assert_eq!(&real, &want, "final drain");
        if real.is_empty() {
            break;
        }
    }
    let s = buf.stats();
    let m = model.stats();
    prop_assert_eq!(
        (s.entries, s.overrun, s.dropped, s.read, s.pages_lost),
        (m.entries, m.overrun, m.dropped, m.read, m.pages_lost)
    );
    // Every event is accounted for: committed = read + overwritten + still held.
    prop_assert_eq!(s.entries, s.read + s.overrun + model.in_buffer());
    prop_assert_eq!(s.in_buffer(), model.in_buffer());
    Ok(())
}

proptest! {
    // Case count: PROPTEST_CASES (CI runs thousands).
    #[test]
    fn ring_core_matches_the_model(program in program()) {
        run(&program)?;
    }
}

/// The padding the oracle applies is the decoder's: checked here against the real buffer so the
/// model test cannot pass by both sides being wrong the same way.
#[test]
fn model_payload_padding_matches_the_decoder() {
    let geometry = Geometry::new(64, 3).expect("valid");
    for len in 0..=9 {
        let buf = CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, ManualClock::new(1)).expect("heap");
        let p = payload::make(len as u32, len);
        buf.writer().expect("unclaimed").write(&p).expect("fits");
        let page = buf.view().page(1).expect("page 1");
        let event = EventIter::new(&page).expect("decodes").next().expect("an event").expect("decodes");
        assert_eq!(event.payload.to_vec(), padded(&p), "len {len}");
    }
}
