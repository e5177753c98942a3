//! What a consumer gives back as read of its reader page (GET_READER_PAGE's `arg`) decides where
//! the next consumer of the CPU starts. The producer refuses a `read` inside an event or behind
//! the last one with EINVAL, so no client can leave the CPU unreadable for the next; and a new
//! consumer starts at an event boundary even if the meta area says otherwise (an older producer,
//! or memory written over).

mod common;

use common::Served;
use ring_core::Mode;
use ring_core::meta::off;
use ring_mmap::wire::{Op, ReaderBody, parse_body};
use ring_mmap::{Connection, Consumer, Record, ServerOptions};
use std::sync::atomic::Ordering;

/// A producer with `events` 4-byte events (8 bytes each in the page) on CPU 0, served.
fn fixture(events: u32) -> Served {
    let served = Served::start(4, Mode::Overwrite, ServerOptions::default());
    let writer = served.producer.cpu(0).writer().unwrap();
    for seq in 0..events {
        writer.write(&seq.to_ne_bytes()).unwrap();
    }
    drop(writer);
    served
}

/// GET_READER_PAGE with `read`: the answer's (status, read), or the errno refusing it.
fn get_reader_page(conn: &Connection, read: u64) -> Result<(u32, u32), i32> {
    match conn.call(Op::GetReaderPage, 0, read) {
        Ok(answer) => {
            let body: ReaderBody = parse_body(&answer.body).unwrap();
            Ok((body.swap_status, body.read))
        }
        Err(e) => Err(e.refused_errno().expect("a refusal")),
    }
}

/// The sequence numbers a new consumer of CPU 0 reads. The server notices an earlier client's
/// hangup on its next round; until then the CPU is that client's (EBUSY), so the new consumer
/// retries a while.
fn read_by_a_new_consumer(f: &Served) -> Vec<u32> {
    let conn = Connection::connect(f.server.path()).unwrap();
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    let mut seqs = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let drained = consumer.drain(|record| {
            if let Record::Event(e) = record {
                let mut b = [0u8; 4];
                e.payload.copy_to(&mut b);
                seqs.push(u32::from_ne_bytes(b));
            }
        });
        match drained {
            Ok(_) => return seqs,
            Err(e) if e.refused_errno() == Some(16) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("the next consumer cannot read on: {e}"),
        }
    }
}

#[test]
fn reads_inside_an_event_or_behind_the_last_are_refused_and_leave_the_cpu_readable() {
    let f = fixture(4);
    {
        let conn = Connection::connect(f.server.path()).unwrap();
        assert_eq!(get_reader_page(&conn, 0), Ok((0, 0)), "swapped in the page with the events");
        assert_eq!(get_reader_page(&conn, 2), Err(22), "inside the first event");
        assert_eq!(get_reader_page(&conn, 20), Err(22), "inside the third event");
        assert_eq!(get_reader_page(&conn, 16), Ok((1, 16)), "two events read");
        assert_eq!(get_reader_page(&conn, 8), Err(22), "behind what was read");
        assert_eq!(get_reader_page(&conn, 16), Ok((1, 16)), "the same again is fine");
    }
    assert_eq!(f.producer.cpu(0).view().meta().reader().read, 16, "only accepted reads are published");
    assert_eq!(read_by_a_new_consumer(&f), [2, 3], "the next consumer reads from where the first stopped");
}

#[test]
fn a_new_consumer_starts_at_an_event_whatever_the_meta_area_says() {
    let f = fixture(4);
    {
        let conn = Connection::connect(f.server.path()).unwrap();
        assert_eq!(get_reader_page(&conn, 0), Ok((0, 0)));
    }
    // As a producer that accepts any read would leave it: inside the second event.
    let (meta, _) = f.producer.cpu(0).regions();
    meta.store_u32(off::READER_READ, 10, Ordering::Relaxed);
    assert_eq!(read_by_a_new_consumer(&f), [2, 3], "from the first event boundary at or after 10");
}
