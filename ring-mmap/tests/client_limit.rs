//! A producer serves at most `MAX_CLIENTS` connections at once. One beyond them is told so
//! (its first request answered EUSERS, then closed): the client reports that the producer serves
//! its maximum of clients, not that it went away; and once a client leaves, a new one gets in.

mod common;

use common::Served;
use ring_core::Mode;
use ring_mmap::server::MAX_CLIENTS;
use ring_mmap::wire::{Op, Request, ResponseHeader, status};
use ring_mmap::{Connection, Error, ServerOptions};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::time::{Duration, Instant};
use zerocopy::IntoBytes;

#[test]
fn a_client_beyond_the_limit_is_told_the_producer_serves_its_maximum() {
    let Served { server, .. } = &Served::start(4, Mode::Overwrite, ServerOptions::default());
    let mut clients: Vec<_> = (0..MAX_CLIENTS).map(|_| Connection::connect(server.path()).unwrap()).collect();
    let refused = Connection::connect(server.path()).expect_err("one client too many");
    assert!(matches!(refused, Error::TooManyClients), "{refused:?}");
    assert!(refused.to_string().contains("maximum of clients"), "{refused}");

    // A raw client sees the answer: its request's op echoed, EUSERS, then end of file.
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&fd, &SocketAddrUnix::new(server.path()).unwrap()).unwrap();
    rustix::net::send(&fd, Request::new(Op::Stats, 0, 0).as_bytes(), SendFlags::empty()).unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::net::recv(&fd, &mut buf, RecvFlags::empty()).unwrap().0;
    let (header, body) = ResponseHeader::parse(&buf[..n], Op::Stats).unwrap();
    assert_eq!((header.status, body.len()), (status::EUSERS, 0));
    assert_eq!(rustix::net::recv(&fd, &mut buf, RecvFlags::empty()).unwrap().0, 0, "then closed");

    // The clients served are not disturbed; once one leaves, a new client gets in.
    assert_eq!(clients[0].stats(0).unwrap().entries, 0);
    clients.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    let newcomer = loop {
        match Connection::connect(server.path()) {
            Ok(conn) => break conn,
            Err(Error::TooManyClients) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("the freed place is not given: {e}"),
        }
    };
    assert_eq!(newcomer.stats(0).unwrap().entries, 0);
}
