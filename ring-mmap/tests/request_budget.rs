//! Each connection has a request budget: a client that floods the server is served only as its
//! budget refills, while other clients' answers keep coming, and a consumer that reads its pages
//! as they fill is never held back (each swap earns requests back). The budget here refills once
//! an hour, so what each client gets is a count, whatever the timing.

mod common;

use common::Served;
use ring_core::Mode;
use ring_mmap::wire::{Op, Request, ResponseHeader, status};
use ring_mmap::{Connection, Consumer, Record, RequestBudget, ServerOptions};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::time::Duration;
use zerocopy::IntoBytes;

/// Four requests, three more per swap, and no other refill within a test.
const TINY: RequestBudget = RequestBudget { burst: 4, refill_every: Duration::from_secs(3600), per_swap: 3 };

#[test]
fn a_flooding_client_is_served_only_as_its_budget_allows_and_others_still_are() {
    let Served { server, .. } = &Served::start(8, Mode::Drop, ServerOptions { budget: TINY, ..Default::default() });
    let flooder = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&flooder, &SocketAddrUnix::new(server.path()).unwrap()).unwrap();
    let timeout = Some(Duration::from_secs(10));
    rustix::net::sockopt::set_socket_timeout(&flooder, rustix::net::sockopt::Timeout::Recv, timeout).unwrap();
    for _ in 0..30 {
        rustix::net::send(&flooder, Request::new(Op::Stats, 0, 0).as_bytes(), SendFlags::empty()).unwrap();
    }
    // The flooder's budget answers four of them, in order.
    let mut buf = [0u8; 128];
    for _ in 0..TINY.burst {
        let n = rustix::net::recv(&flooder, &mut buf, RecvFlags::empty()).unwrap().0;
        assert_eq!(ResponseHeader::parse(&buf[..n], Op::Stats).unwrap().0.status, status::OK);
    }
    // Another client is answered meanwhile: a handshake and three STATS, its own budget.
    let polite = Connection::connect(server.path()).expect("another client is answered");
    for _ in 0..3 {
        polite.stats(0).expect("its requests are answered");
    }
    // The flooder's other requests wait: nothing more has come, and it is still connected.
    let more = rustix::net::recv(&flooder, &mut buf, RecvFlags::DONTWAIT);
    assert_eq!(more.err(), Some(rustix::io::Errno::AGAIN), "served beyond its budget");
}

#[test]
fn a_consumer_reading_its_pages_is_never_held_back() {
    let Served { server, producer, .. } =
        &Served::start(8, Mode::Drop, ServerOptions { budget: TINY, ..Default::default() });
    let conn = Connection::connect(server.path()).unwrap();
    let mut consumer = Consumer::new(conn.open_cpu(0).unwrap()).unwrap();
    let writer = producer.cpu(0).writer().unwrap();
    let (mut written, mut read) = (0u32, 0u32);
    // Each round fills a few pages (510 events of 8 bytes fill one) and drains them: a swap per
    // page, and the requests that find nothing new at the end of each drain.
    for round in 0..20 {
        for _ in 0..(round % 5 + 1) * 510 {
            writer.write(&written.to_ne_bytes()).unwrap();
            written += 1;
        }
        consumer
            .drain(|record| {
                if let Record::Event(e) = record {
                    let mut b = [0u8; 4];
                    e.payload.copy_to(&mut b);
                    assert_eq!(u32::from_ne_bytes(b), read, "in order, none lost");
                    read += 1;
                }
            })
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(read, written, "round {round}: everything written was read");
    }
}
