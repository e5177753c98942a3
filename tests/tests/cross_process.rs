//! ring-mmap across processes: a child process (`test-producer`) writes sequence-numbered events
//! into per-CPU buffers while this process consumes them through the control socket and the
//! read-only mappings, as a real consumer does.
//!
//! Checked: every event arrives untorn and in order or is reported lost exactly where it was
//! lost; the losses equal the producer's counters; the consumer cannot write to its mappings;
//! a producer killed with SIGKILL is seen as a hangup and everything it committed can still be
//! drained from the mappings.
#![cfg(not(loom))]

use hyptrace_tests::payload;
use ring_core::Stats;
use ring_mmap::wire::Op;
use ring_mmap::{Connection, Consumer, CpuSource, Error, Lost, Record, SocketCpu, Wakeup};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running `test-producer`.
struct Producer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
}

impl Producer {
    /// Starts one with `args` and waits until it serves.
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_test-producer"))
            .arg("--socket")
            .arg(dir.path().join("sock"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning test-producer");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut p = Self { child, stdout, dir };
        p.expect_line("ready");
        p
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("sock")
    }

    fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading the producer's output");
        assert_eq!(line.trim(), want, "test-producer said {line:?}");
    }

    /// Lets it exit (closes its stdin) and checks that it succeeded.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("waiting for test-producer");
        assert!(status.success(), "test-producer failed: {status}");
    }
}

/// What a consumer saw on one CPU, checked as it goes.
#[derive(Debug, Default)]
struct Seen {
    next: u64,
    events: u64,
    lost: u64,
    pending: u64,
    unknown_loss: bool,
    last_ts: u64,
}

impl Seen {
    fn take(&mut self, record: Record<'_>) {
        match record {
            Record::Lost(Lost::Count(n)) => self.pending += n,
            Record::Lost(other) => {
                self.unknown_loss = true;
                panic!("hyptrace reports exact losses, got {other:?}");
            }
            Record::Event(e) => {
                let seq = u64::from(payload::check(&e.payload.to_vec()).unwrap_or_else(|t| panic!("torn: {t:?}")));
                assert!(seq >= self.next, "event {seq} repeated or out of order (expected {})", self.next);
                assert_eq!(seq - self.next, self.pending, "gap before {seq} differs from the loss reported");
                assert!(e.timestamp >= self.last_ts, "time went backwards at {seq}");
                self.lost += self.pending;
                self.pending = 0;
                self.next = seq + 1;
                self.last_ts = e.timestamp;
                self.events += 1;
            }
        }
    }
}

/// Consumes one CPU until `done` is set and nothing more comes; returns what it saw.
fn consume(cpu: SocketCpu, done: &AtomicBool, pause: Duration) -> (Seen, Consumer<SocketCpu>) {
    let mut consumer = Consumer::new(cpu).expect("consumer");
    let mut seen = Seen::default();
    loop {
        let finished = done.load(Ordering::Acquire);
        let got = consumer.drain(|r| seen.take(r)).expect("drain");
        if finished && got == 0 {
            return (seen, consumer);
        }
        if pause.is_zero() {
            let _ = consumer.wait(1, Some(Duration::from_millis(20))).expect("wait");
        } else {
            std::thread::sleep(pause);
        }
    }
}

/// Runs a producer of `events` per CPU and consumes both CPUs until it is done.
fn run(args: &[&str], events: u64, pause: Duration) -> Vec<(Seen, Stats)> {
    let events_arg = events.to_string();
    let mut all = args.to_vec();
    all.extend(["--cpus", "2", "--events", &events_arg]);
    let mut producer = Producer::start(&all);
    let conn = Connection::connect(&producer.socket()).expect("connect");
    let done = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..2)
        .map(|cpu| {
            let cpu = conn.open_cpu(cpu).expect("open_cpu");
            let done = done.clone();
            std::thread::spawn(move || consume(cpu, &done, pause).0)
        })
        .collect();
    producer.expect_line("done");
    done.store(true, Ordering::Release);
    let seen: Vec<Seen> = consumers.into_iter().map(|c| c.join().expect("consumer panicked")).collect();
    let result = seen.into_iter().enumerate().map(|(cpu, s)| (s, conn.stats(cpu as u32).expect("stats"))).collect();
    producer.finish();
    result
}

#[test]
fn drop_mode_every_event_arrives_or_is_counted_dropped() {
    let events = 200_000;
    for (cpu, (seen, stats)) in
        run(&["--mode", "drop", "--nr-subbufs", "16"], events, Duration::ZERO).iter().enumerate()
    {
        // Drops after the last event seen have no later event to be reported before.
        let trailing = events - seen.next;
        assert_eq!(seen.lost + trailing, stats.dropped, "cpu {cpu}: {seen:?} {stats:?}");
        assert_eq!(seen.events + stats.dropped, events, "cpu {cpu}: every event arrived or was dropped");
        assert_eq!((stats.entries, stats.overrun), (seen.events, 0), "cpu {cpu}");
        println!("drop mode cpu {cpu}: {} events read, {} dropped", seen.events, stats.dropped);
    }
}

#[test]
fn overwrite_mode_with_a_slow_consumer_counts_every_loss() {
    let events = 300_000;
    let runs = run(&["--mode", "overwrite", "--nr-subbufs", "4"], events, Duration::from_millis(3));
    for (cpu, (seen, stats)) in runs.iter().enumerate() {
        assert_eq!(seen.next, events, "cpu {cpu}: the newest event survives");
        assert_eq!(seen.events + seen.lost, events, "cpu {cpu}: {seen:?}");
        assert_eq!(seen.lost, stats.overrun, "cpu {cpu}: losses reported = overrun");
        assert!(stats.overrun > 0, "cpu {cpu}: the slow consumer really lost events");
        println!("overwrite mode cpu {cpu}: {} events read, {} overrun", seen.events, stats.overrun);
    }
}

#[test]
fn the_consumer_cannot_write_to_its_mappings() {
    let producer = Producer::start(&["--cpus", "1", "--events", "10"]);
    let conn = Connection::connect(&producer.socket()).expect("connect");
    let answer = conn.call(Op::GetCpu, 0, 0).expect("GET_CPU");
    let file = &answer.fds[0];
    let len = conn.hello().cpu_file_size as usize;
    assert!(memmap2::MmapOptions::new().len(len).map_raw(file).is_err(), "writable shared mapping refused");
    assert!(rustix::io::write(file, b"x").is_err(), "write(2) refused");
    let ro = memmap2::MmapOptions::new().len(len).map_raw_read_only(file).expect("read-only mapping");
    // SAFETY: the pointer and length describe the mapping just made; mprotect only changes (or,
    // here, fails to change) its protection.
    let upgraded = unsafe {
        rustix::mm::mprotect(
            ro.as_ptr().cast_mut().cast(),
            len,
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
        )
    };
    assert!(upgraded.is_err(), "mprotect to writable refused");
    drop(ro);
    producer.finish();
}

/// Kills the producer in the middle of writing, after the consumer left it alone long enough to
/// fill the ring; the consumer sees the hangup and drains what was committed from its mappings.
fn killed_producer_is_drained(mode: &str, extra: &[&str]) {
    let mut args = vec!["--cpus", "1", "--events", "0", "--mode", mode, "--nr-subbufs", "32"];
    args.extend_from_slice(extra);
    let mut producer = Producer::start(&args);
    let conn = Connection::connect(&producer.socket()).expect("connect");
    let mut consumer = Consumer::new(conn.open_cpu(0).expect("open_cpu")).expect("consumer");
    let mut seen = Seen::default();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        consumer.drain(|r| seen.take(r)).expect("drain");
    }
    // The writer goes on alone: the ring fills up (and, in overwrite mode, laps).
    std::thread::sleep(Duration::from_millis(100));
    producer.child.kill().expect("SIGKILL");
    producer.child.wait().expect("reaped");
    // The consumer notices: its requests and waits say the producer is gone.
    loop {
        match consumer.drain(|r| seen.take(r)) {
            Ok(_) => {}
            Err(Error::Hangup) => break,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(consumer.wait(1, Some(Duration::from_secs(5))).expect("wait"), Wakeup::Hangup);
    let before = seen.events;
    consumer.drain_remaining(|r| seen.take(r)).expect("post-mortem drain");
    // Everything the writer had committed when it died was read or reported lost: the last
    // committed event is the last one on the page the writer was on, whose first sequence number
    // the meta area gives. (Events it dropped after that, ring full, have no later event to be
    // reported before; its `dropped` counter has them.)
    let view = consumer.source().view().expect("view");
    let tail = view.meta().tail_id();
    let tail_page = view.page(tail).expect("tail page");
    let on_tail = ring_core::EventIter::new(&tail_page).expect("decodes").count() as u64;
    let last = view.meta().first_seq(tail).expect("first_seq") + on_tail;
    assert_eq!(seen.next, last, "the consumer reached the last committed event: {seen:?}");
    assert_eq!(consumer.next_seq(), Some(last));
    assert!(seen.events > before, "events committed after the consumer stopped reading were drained");
    println!(
        "killed producer: {} events read live, {} drained after the kill, {} lost",
        before,
        seen.events - before,
        seen.lost
    );
}

#[test]
fn a_killed_producer_is_a_hangup_and_its_committed_events_can_be_drained() {
    killed_producer_is_drained("drop", &[]);
}

#[test]
fn a_killed_overwriting_producer_is_drained_with_its_losses_counted() {
    killed_producer_is_drained("overwrite", &[]);
}

#[test]
fn a_killed_file_backed_producer_is_drained_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bufs");
    killed_producer_is_drained("drop", &["--dir", path.to_str().expect("utf-8 path")]);
    assert!(path.join("cpu0").exists(), "the buffer file outlives the producer");
    assert_eq!(std::fs::read(path.join("formats")).expect("formats file"), b"test-producer formats");
}

/// A client that asks for a CPU's descriptors on several connections and never reads the
/// answers cannot lock others out. Descriptors in flight count against the sending producer's
/// limit of open files (lowered to 64 here, with the capabilities that exempt root given up);
/// the producer sends them only to a client that read every earlier answer, so each of these
/// connections holds one answer with descriptors and has every later GET_CPU refused (EBUSY),
/// and another client still gets its CPU.
#[test]
fn clients_that_never_read_cannot_use_up_the_producers_descriptors() {
    const CONNECTIONS: usize = 4;
    const REQUESTS: usize = 50;
    let mut producer = Producer::start(&["--cpus", "1", "--events", "10", "--max-open-files", "64"]);
    producer.expect_line("done");
    let get_cpu = ring_mmap::wire::Request::new(Op::GetCpu, 0, 0);
    let hoarders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let fd = raw_connection(&producer.socket());
            for _ in 0..REQUESTS {
                rustix::net::send(&fd, zerocopy::IntoBytes::as_bytes(&get_cpu), rustix::net::SendFlags::empty())
                    .expect("sending GET_CPU");
            }
            fd
        })
        .collect();
    // Until the producer has taken every request, it may not have answered them all.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !hoarders.iter().all(|fd| unreceived_bytes(fd) == 0) {
        assert!(std::time::Instant::now() < deadline, "the producer does not take the requests");
        std::thread::sleep(Duration::from_millis(1));
    }
    let conn = Connection::connect(&producer.socket()).expect("connect");
    let mut consumer = Consumer::new(conn.open_cpu(0).expect("another client gets its CPU")).expect("consumer");
    let mut seen = Seen::default();
    consumer.drain(|r| seen.take(r)).expect("drain");
    assert_eq!(seen.events, 10, "and reads it");
    for fd in &hoarders {
        let answers: Vec<(i32, usize)> = (0..REQUESTS).map(|_| receive_answer(fd)).collect();
        let with_fds: Vec<_> = answers.iter().filter(|&&(_, fds)| fds > 0).collect();
        assert_eq!(with_fds, [&(0, 2)], "one answer with the descriptors: {answers:?}");
        let refused = answers.iter().filter(|&&a| a == (ring_mmap::wire::status::EBUSY, 0)).count();
        assert_eq!(refused, REQUESTS - 1, "every later GET_CPU refused: {answers:?}");
    }
    producer.finish();
}

/// A connected control socket, without the handshake.
fn raw_connection(path: &std::path::Path) -> std::os::fd::OwnedFd {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    rustix::net::connect(&fd, &SocketAddrUnix::new(path).expect("socket path")).expect("connect");
    let timeout = Some(Duration::from_secs(10));
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, timeout).expect("timeout");
    fd
}

/// Bytes sent on `fd` that its peer has not received yet (`SIOCOUTQ`).
fn unreceived_bytes(fd: &std::os::fd::OwnedFd) -> i32 {
    /// `SIOCOUTQ`, the same number as `TIOCOUTQ` on the architectures hyptrace supports.
    const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: SIOCOUTQ writes one `int` through its argument, which `Getter` provides.
    unsafe { rustix::ioctl::ioctl(fd, rustix::ioctl::Getter::<SIOCOUTQ, i32>::new()) }.expect("SIOCOUTQ")
}

/// Receives one answer on `fd`: its status and how many descriptors came with it (closed here).
fn receive_answer(fd: &std::os::fd::OwnedFd) -> (i32, usize) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut buf = [0u8; 128];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(fd, &mut [std::io::IoSliceMut::new(&mut buf)], &mut control, RecvFlags::empty())
        .expect("receiving an answer");
    let fds: usize = control
        .drain()
        .map(|m| match m {
            RecvAncillaryMessage::ScmRights(received) => received.count(),
            _ => 0,
        })
        .sum();
    let (header, _) =
        ring_mmap::wire::ResponseHeader::parse(&buf[..got.bytes], Op::GetCpu).expect("a well-formed answer");
    assert_eq!(header.nr_fds as usize, fds, "the header counts the descriptors that came");
    (header.status, fds)
}
