//! A malformed or hostile peer never crashes the producer or stops it serving others: every bad
//! request gets an errno, peers that misbehave at the socket level are dropped, and a
//! well-behaved consumer keeps being served throughout.

use ring_core::{Config, Geometry, ManualClock, Mode};
use ring_mmap::wire::{Op, PROTOCOL_VERSION, REQUEST_MAGIC, Request, ResponseHeader, status};
use ring_mmap::{Backing, Connection, Error, ProducerConfig, Server, ShmProducer};
use rustix::net::{AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use zerocopy::IntoBytes;

struct Fixture {
    _dir: tempfile::TempDir,
    producer: Arc<ShmProducer<ManualClock>>,
    server: Server,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Overwrite },
        backing: Backing::Memfd,
        formats: b"formats".to_vec(),
    };
    let producer = Arc::new(ShmProducer::new(config, |_| ManualClock::new(1)).unwrap());
    let server = Server::start(&dir.path().join("sock"), producer.clone()).unwrap();
    Fixture { _dir: dir, producer, server }
}

/// A well-behaved client still gets correct answers.
fn still_serves(f: &Fixture) {
    let conn = Connection::connect(f.server.path()).expect("a new client connects");
    f.producer.cpu(0).writer().unwrap().write(b"ping").unwrap();
    assert!(conn.stats(0).expect("stats").entries >= 1);
}

fn status_of(conn: &Connection, message: &[u8], op: Op) -> i32 {
    conn.call_raw(message, op).expect("an answer").header.status
}

fn raw_socket(path: &Path) -> OwnedFd {
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).unwrap();
    rustix::net::connect(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
    fd
}

#[test]
fn malformed_requests_get_eproto_and_unknown_ones_enotty() {
    let f = fixture();
    let conn = Connection::connect(f.server.path()).unwrap();
    let good = Request::new(Op::Stats, 0, 0);
    assert_eq!(status_of(&conn, &good.as_bytes()[..16], Op::Stats), status::EPROTO, "truncated");
    let mut long = good.as_bytes().to_vec();
    long.resize(100, 0);
    assert_eq!(status_of(&conn, &long, Op::Stats), status::EPROTO, "oversized");
    let mut huge = good.as_bytes().to_vec();
    huge.resize(100_000, 0xff);
    assert_eq!(status_of(&conn, &huge, Op::Stats), status::EPROTO, "much larger than the buffer");
    let mut bad = good;
    bad.magic = 0x1234;
    assert_eq!(status_of(&conn, bad.as_bytes(), Op::Stats), status::EPROTO, "bad magic");
    let mut bad = good;
    bad._reserved0 = 1;
    assert_eq!(status_of(&conn, bad.as_bytes(), Op::Stats), status::EPROTO, "reserved field set");
    let unknown = Request { magic: REQUEST_MAGIC, op: 99, cpu: 0, _reserved0: 0, arg: 0, _reserved1: 0 };
    let answer = conn.call_raw(unknown.as_bytes(), Op::Hello);
    // The answer echoes op 99, which no client op matches: the client reports the mismatch.
    assert!(matches!(answer, Err(Error::Wire(_))), "{answer:?}");
    let conn = Connection::connect(f.server.path()).unwrap();
    let mut bytes = [0u8; 64];
    let fd = raw_socket(f.server.path());
    rustix::net::send(&fd, unknown.as_bytes(), SendFlags::empty()).unwrap();
    let n = rustix::net::recv(&fd, &mut bytes, rustix::net::RecvFlags::empty()).unwrap().0;
    let (header, _) =
        zerocopy::FromBytes::read_from_prefix(&bytes[..n]).map(|(h, r): (ResponseHeader, _)| (h, r)).unwrap();
    assert_eq!((header.op, header.status), (99, status::ENOTTY));
    assert_eq!(conn.stats(1).unwrap().entries, 0, "the same connection keeps working");
    still_serves(&f);
}

#[test]
fn bad_arguments_get_einval() {
    let f = fixture();
    let conn = Connection::connect(f.server.path()).unwrap();
    for (op, cpu, arg) in [
        (Op::Stats, 2, 0),
        (Op::Stats, u32::MAX, 0),
        (Op::GetCpu, 7, 0),
        (Op::GetReaderPage, 2, 0),
        (Op::Wait, 99, 1),
        (Op::GetReaderPage, 0, 5000), // read past the page
        (Op::GetReaderPage, 0, u64::MAX),
        (Op::Formats, 0, 8), // past the end of the formats
    ] {
        let refused = conn.call(op, cpu, arg).expect_err("refused");
        assert_eq!(refused.refused_errno(), Some(22), "{op:?} cpu {cpu} arg {arg}: {refused}");
    }
    assert_eq!(conn.call(Op::Formats, 0, 7).unwrap().body.len(), 0, "an offset at the end is an empty chunk");
    still_serves(&f);
}

#[test]
fn an_old_client_version_is_refused_with_the_producers_version() {
    let f = fixture();
    let fd = raw_socket(f.server.path());
    let hello = Request::new(Op::Hello, 0, u64::from(PROTOCOL_VERSION) + 1);
    rustix::net::send(&fd, hello.as_bytes(), SendFlags::empty()).unwrap();
    let mut bytes = [0u8; 128];
    let n = rustix::net::recv(&fd, &mut bytes, rustix::net::RecvFlags::empty()).unwrap().0;
    let (header, body) = ResponseHeader::parse(&bytes[..n], Op::Hello).unwrap();
    assert_eq!(header.status, status::EPROTO);
    let hello: ring_mmap::wire::HelloBody = ring_mmap::wire::parse_body(body).unwrap();
    assert_eq!(hello.version, PROTOCOL_VERSION);
    still_serves(&f);
}

#[test]
fn peers_that_hang_up_mid_handshake_or_send_descriptors_do_not_disturb_others() {
    let f = fixture();
    let steady = Connection::connect(f.server.path()).unwrap();
    // Connects and leaves at once; sends half a request and leaves; sends an empty message.
    drop(raw_socket(f.server.path()));
    let half = raw_socket(f.server.path());
    rustix::net::send(&half, &Request::new(Op::Hello, 0, 1).as_bytes()[..7], SendFlags::empty()).unwrap();
    drop(half);
    let empty = raw_socket(f.server.path());
    rustix::net::send(&empty, &[], SendFlags::empty()).unwrap();
    // Sends a request with a descriptor attached: it is discarded, the request answered.
    let pushy = raw_socket(f.server.path());
    let stats = Request::new(Op::Stats, 0, 0);
    let extra = rustix::event::eventfd(0, rustix::event::EventfdFlags::empty()).unwrap();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [extra.as_fd()];
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    rustix::net::sendmsg(&pushy, &[IoSlice::new(stats.as_bytes())], &mut control, SendFlags::empty()).unwrap();
    let mut bytes = [0u8; 128];
    let n = rustix::net::recv(&pushy, &mut bytes, rustix::net::RecvFlags::empty()).unwrap().0;
    assert_eq!(ResponseHeader::parse(&bytes[..n], Op::Stats).unwrap().0.status, status::OK);
    assert_eq!(steady.stats(0).unwrap().entries, 0);
    still_serves(&f);
}

#[test]
fn a_peer_that_never_reads_its_answers_is_dropped() {
    let f = fixture();
    let flooder = raw_socket(f.server.path());
    rustix::net::sockopt::set_socket_timeout(
        &flooder,
        rustix::net::sockopt::Timeout::Send,
        Some(std::time::Duration::from_millis(200)),
    )
    .unwrap();
    let stats = Request::new(Op::Stats, 0, 0);
    let mut sent = 0;
    let hung_up = loop {
        match rustix::net::send(&flooder, stats.as_bytes(), SendFlags::NOSIGNAL) {
            Ok(_) => sent += 1,
            Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => break true,
            Err(rustix::io::Errno::AGAIN) => {
                // Our own send buffer is full because the server stopped reading us: check that it
                // let us go rather than block on us.
                still_serves(&f);
                sent += 1;
            }
            Err(e) => panic!("send: {e}"),
        }
        if sent > 1_000_000 {
            break false;
        }
    };
    assert!(hung_up, "the server dropped the peer that never read (after {sent} requests)");
    still_serves(&f);
}

#[test]
fn one_consumer_per_cpu_others_get_ebusy_until_it_leaves() {
    let f = fixture();
    let first = Connection::connect(f.server.path()).unwrap();
    let second = Connection::connect(f.server.path()).unwrap();
    first.call(Op::GetReaderPage, 0, 0).unwrap();
    assert_eq!(second.call(Op::GetReaderPage, 0, 0).unwrap_err().refused_errno(), Some(16));
    assert_eq!(second.call(Op::Wait, 0, 1).unwrap_err().refused_errno(), Some(16));
    second.call(Op::GetReaderPage, 1, 0).expect("another CPU is free");
    second.open_cpu(0).expect("mapping for snapshots is allowed to all");
    drop(first);
    // The server notices the hangup on its next round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while second.call(Op::GetReaderPage, 0, 0).is_err() {
        assert!(std::time::Instant::now() < deadline, "the CPU was not released");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
