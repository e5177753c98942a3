//! Who trusts whom over the control socket.
//!
//! The producer refuses every user but its own: a client running under another uid cannot open
//! the socket file (mode 0600 in a 0700 directory by default), and when the file is opened up to
//! everyone, the producer still checks the peer's credentials (`SO_PEERCRED`) and closes the
//! connection without answering. The producer goes on serving its own user.
//!
//! A client trusts only a producer of its own user or root: it refuses a socket directory that
//! others could write to, and a listener running as another user, before reading anything; a
//! full listen backlog is a clear error within its deadline, not a hang; and a buffer file that
//! someone truncates under its mapping is an error, not a SIGBUS.
//!
//! The tests that need a second user need root (to run a process as `nobody`); they skip with a
//! reason otherwise.
#![cfg(not(loom))]

use ring_core::{Config, CounterClock, Geometry, Mode};
use ring_mmap::{Backing, Connection, Consumer, Error, ProducerConfig, Server, ShmProducer};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Runs `socket-probe` on `socket` as `uid` and returns its one line.
fn probe(exe: &Path, socket: &Path, uid: u32) -> String {
    let out = Command::new(exe).arg(socket).uid(uid).gid(uid).output().expect("running socket-probe");
    assert!(out.status.success(), "socket-probe failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

/// A copy of the test binary `built` in `dir`, which another user may run (the build directory
/// may be closed to it).
fn runnable_by_others(built: &str, dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.join(Path::new(built).file_name().expect("a file name"));
    std::fs::copy(built, &exe).expect("copying a test binary");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    exe
}

/// A producer of two memfd-backed CPUs serving `socket`.
fn serve(socket: &Path) -> Server {
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).expect("geometry"), mode: Mode::Drop },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1)).expect("producer"));
    Server::start(socket, producer).expect("serving")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A child process, killed when this goes.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one line of `child`'s standard output.
fn line_of(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout")).read_line(&mut line).expect("reading");
    line.trim().to_string()
}

#[test]
fn the_socket_refuses_other_users() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: the second-uid socket test needs root to run a client as nobody");
        return;
    }
    // Everything the other user needs to reach, in a directory it may enter: a copy of the
    // probe and the socket.
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = runnable_by_others(env!("CARGO_BIN_EXE_socket-probe"), dir.path());
    let socket = dir.path().join("sock");
    let _server = serve(&socket);

    assert_eq!(probe(&exe, &socket, 0), "connected 2", "the producer's own user is served");
    let denied = probe(&exe, &socket, NOBODY);
    assert!(denied.starts_with("denied") && denied.contains("ermission denied"), "{denied}");

    // Open the file to everyone: the credential check alone must refuse.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = probe(&exe, &socket, NOBODY);
    assert!(refused.starts_with("refused"), "{refused}");
    assert!(Connection::connect(&socket).is_ok(), "the producer still serves its own user");
    println!("second uid: socket file denied it ({denied}); opened up, the producer refused it ({refused})");
}

#[test]
fn a_producer_running_as_another_user_is_not_trusted() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: the untrusted-producer test needs root to run a listener as nobody");
        return;
    }
    // The socket file is root's, in root's private directory: only the listener is another
    // user's. SO_PEERCRED names whoever called listen(), so the socket is bound here and handed
    // to `foreign-listener`, which listens on it as nobody and never answers.
    let run = tempfile::tempdir().expect("tempdir");
    let exe = runnable_by_others(env!("CARGO_BIN_EXE_foreign-listener"), run.path());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sock");
    let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    rustix::net::bind(&socket, &SocketAddrUnix::new(&path).expect("address")).expect("bind");
    let child = Command::new(&exe)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::from(socket))
        .stdout(Stdio::piped())
        .spawn()
        .expect("running foreign-listener");
    let mut listener = Killed(child);
    assert_eq!(line_of(&mut listener.0), "listening");

    let started = Instant::now();
    let refused = Connection::connect(&path);
    let took = started.elapsed();
    match &refused {
        Err(Error::UntrustedPeer { path: at, uid }) => assert_eq!((at, *uid), (&path, NOBODY)),
        other => panic!("expected an untrusted producer, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "refused before asking it anything ({took:?})");
    let message = refused.expect_err("refused").to_string();
    assert!(message.contains("runs as uid 65534, neither this user nor root"), "{message}");
    println!("second uid: a listener run by nobody was refused: {message}");
}

#[test]
fn socket_directories_others_could_write_to_are_refused() {
    let top = tempfile::tempdir().expect("tempdir");
    let dir = top.path().join("run");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o700);
    let socket = dir.join("sock");
    let _server = serve(&socket);
    Connection::connect(&socket).expect("a directory of our own, closed to others");
    let untrusted = |expected: &str| match Connection::connect(&socket) {
        Err(Error::UntrustedDir { path, reason }) => {
            assert_eq!(path, dir);
            assert!(reason.contains(expected), "{reason}");
        }
        other => panic!("expected an untrusted directory, got {other:?}"),
    };
    chmod(&dir, 0o777);
    untrusted("mode 0777");
    chmod(&dir, 0o770);
    untrusted("mode 0770");
    // Sticky, as /tmp is: others may write to it but not replace our socket file.
    chmod(&dir, 0o1777);
    Connection::connect(&socket).expect("our socket file in a sticky directory");
    chmod(&dir, 0o700);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
        untrusted("uid 65534");
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).expect("chown");
        chmod(&dir, 0o1777);
        std::os::unix::fs::lchown(&socket, Some(NOBODY), Some(NOBODY)).expect("chown");
        untrusted("its socket sock belongs to uid 65534");
    } else {
        println!("SKIPPED: giving the socket directory to another user needs root");
    }
}

#[test]
fn a_full_backlog_is_a_clear_error_within_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sock");
    let addr = SocketAddrUnix::new(&path).expect("address");
    // A listener that accepts nothing, its backlog filled.
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    rustix::net::bind(&listener, &addr).expect("bind");
    rustix::net::listen(&listener, 0).expect("listen");
    let mut queued = Vec::new();
    loop {
        let flags = rustix::net::SocketFlags::NONBLOCK;
        let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None).expect("socket");
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => queued.push(fd),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("connecting: {e}"),
        }
        assert!(queued.len() < 100, "the backlog never filled");
    }
    let started = Instant::now();
    let refused = Connection::connect_within(&path, Duration::from_millis(300));
    let took = started.elapsed();
    assert!(matches!(&refused, Err(Error::Backlog(at)) if *at == path), "{refused:?}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "waited {took:?}");
    let message = refused.expect_err("refused").to_string();
    let expected =
        format!("the producer at {} is not accepting connections (its backlog is full); try again", path.display());
    assert_eq!(message, expected);
    drop((listener, queued));
}

#[test]
fn a_buffer_file_truncated_under_a_live_consumer_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sock");
    let bufs = dir.path().join("bufs");
    let child = Command::new(env!("CARGO_BIN_EXE_test-producer"))
        .args(["--cpus", "1", "--events", "3000", "--mode", "overwrite", "--socket"])
        .arg(&socket)
        .arg("--dir")
        .arg(&bufs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning test-producer");
    let mut producer = Killed(child);
    assert_eq!(line_of(&mut producer.0), "ready");
    assert_eq!(line_of(&mut producer.0), "done");
    let connection = Connection::connect(&socket).expect("connect");
    let mut consumer = Consumer::new(connection.open_cpu(0).expect("open_cpu")).expect("consumer");
    let mut events = 0;
    consumer.read_page(|_| events += 1).expect("a first page, intact");
    assert!(events > 0);

    // Someone who may write to the directory truncates the file under both mappings (the
    // producer's own may kill it: then the consumer sees a hangup and reads what is left).
    let file = bufs.join("cpu0");
    std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(0).expect("truncate");
    let result = match consumer.drain(|_| {}) {
        Err(Error::Hangup) => consumer.drain_remaining(|_| {}),
        other => other,
    };
    match &result {
        Err(Error::Truncated(path)) => assert!(path.ends_with("bufs/cpu0"), "{path:?}"),
        other => panic!("expected a truncated buffer, got {other:?}"),
    }
    let message = result.expect_err("truncated").to_string();
    assert!(message.contains("shrank while mapped"), "{message}");
}
