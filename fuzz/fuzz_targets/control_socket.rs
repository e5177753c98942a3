//! The control socket against a hostile client: arbitrary messages, raw or shaped like requests
//! with arbitrary operations and arguments, sent to a real server over a real socket. Every
//! message must be answered (malformed ones with an error status), the producer's buffers must
//! stay consistent, and the server must go on serving the next client.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ring_core::{Config, CounterClock, Geometry, Mode};
use ring_mmap::wire::{Op, Request};
use ring_mmap::{Backing, Connection, ProducerConfig, Server, ShmProducer};
use rustix::net::{AddressFamily, RecvAncillaryBuffer, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::io::IoSliceMut;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use zerocopy::IntoBytes;

#[derive(Arbitrary, Debug)]
enum Message {
    /// Any bytes.
    Raw(Vec<u8>),
    /// A well-formed request with any operation, CPU and argument.
    Request { op: u32, cpu: u32, arg: u64 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Events to write to each CPU first.
    writes: [u8; 2],
    messages: Vec<Message>,
}

struct Served {
    producer: Arc<ShmProducer<CounterClock>>,
    path: PathBuf,
    _server: Server,
    _dir: PathBuf,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hyptrace-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz directory");
        // Closed to others, as clients require of a socket's directory whatever the umask.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let config = ProducerConfig {
            nr_cpus: 2,
            buffer: Config { geometry: Geometry::new(4096, 4).expect("geometry"), mode: Mode::Overwrite },
            backing: Backing::Memfd,
            formats: b"fuzz".to_vec(),
        };
        let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1)).expect("producer"));
        let path = dir.join("sock");
        let server = Server::start(&path, producer.clone()).expect("server");
        Served { producer, path, _server: server, _dir: dir }
    })
}

fuzz_target!(|input: Input| {
    let s = served();
    for (cpu, &n) in input.writes.iter().enumerate() {
        for i in 0..u32::from(n) {
            s.producer.cpu(cpu as u32).writer().expect("the fuzzer is the only writer").write(&i.to_ne_bytes()).expect("overwrite mode accepts");
        }
    }
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
        .expect("socket");
    rustix::net::connect(&fd, &SocketAddrUnix::new(&s.path).expect("path")).expect("connect");
    let timeout = Some(std::time::Duration::from_secs(5));
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, timeout).expect("timeout");
    for message in input.messages.iter().take(32) {
        let bytes = match message {
            Message::Raw(bytes) => bytes.clone(),
            Message::Request { op, cpu, arg } => {
                let mut req = Request::new(Op::Hello, *cpu, *arg);
                req.op = *op;
                req.as_bytes().to_vec()
            }
        };
        if rustix::net::send(&fd, &bytes, SendFlags::NOSIGNAL).is_err() {
            break; // the server dropped this client (allowed: e.g. too large a message)
        }
        let mut answer = [0u8; 4096];
        let mut fds = RecvAncillaryBuffer::default();
        match rustix::net::recvmsg(&fd, &mut [IoSliceMut::new(&mut answer)], &mut fds, RecvFlags::CMSG_CLOEXEC) {
            Ok(got) if got.bytes > 0 => {}
            Ok(_) => break, // closed on us
            Err(e) => panic!("no answer to {message:?}: {e}"),
        }
    }
    drop(fd);
    // The server still serves, and the buffers are still consistent.
    let conn = Connection::connect(&s.path).expect("the server goes on serving");
    for cpu in 0..2 {
        let stats = conn.stats(cpu).expect("stats");
        assert!(stats.read + stats.overrun <= stats.entries, "cpu {cpu}: {stats:?}");
    }
});
