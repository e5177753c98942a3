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
//! The buffer directory (`--dir`) is the producer's alone: see the last part.
//!
//! The tests that need a second user need root (to run a process as `nobody`); they skip with a
//! reason otherwise.
#![cfg(not(loom))]

use ring_core::{Config, CounterClock, Geometry, Mode};
use ring_mmap::{Backing, Connection, Consumer, Error, ProducerConfig, Server, ShmProducer, Unsafety};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
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

/// A child process whose standard output is piped, killed when this goes.
struct Killed {
    child: Child,
    /// Its standard output, buffered once for every line read: a reader made per line could
    /// take the next line into its buffer and lose it.
    said: BufReader<ChildStdout>,
}

impl Killed {
    fn new(mut child: Child) -> Self {
        let said = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self { child, said }
    }

    /// The next line of its standard output, trimmed.
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.said.read_line(&mut line).expect("reading");
        line.trim().to_string()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_socket_refuses_other_users() {
    if !test_capabilities::root("the second-uid socket test", "run a client as nobody") {
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
    if !test_capabilities::root("the untrusted-producer test", "run a listener as nobody") {
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
    let mut listener = Killed::new(child);
    assert_eq!(listener.line(), "listening");

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
    let untrusted = |expected: Unsafety| match Connection::connect(&socket) {
        Err(Error::UntrustedDir { path, problem }) => {
            assert_eq!((path, problem), (dir.clone(), expected));
        }
        other => panic!("expected an untrusted directory, got {other:?}"),
    };
    chmod(&dir, 0o777);
    untrusted(Unsafety::ReplaceableByOthers { mode: 0o777 });
    chmod(&dir, 0o770);
    untrusted(Unsafety::ReplaceableByOthers { mode: 0o770 });
    // Sticky, as /tmp is: others may write to it but not replace our socket file.
    chmod(&dir, 0o1777);
    Connection::connect(&socket).expect("our socket file in a sticky directory");
    chmod(&dir, 0o700);
    if test_capabilities::root("the socket directory given to another user", "chown it to nobody") {
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
        untrusted(Unsafety::OwnedBy { owner: NOBODY, euid: 0 });
        std::os::unix::fs::chown(&dir, Some(0), Some(0)).expect("chown");
        chmod(&dir, 0o1777);
        std::os::unix::fs::lchown(&socket, Some(NOBODY), Some(NOBODY)).expect("chown");
        untrusted(Unsafety::ForeignSocket { owner: NOBODY });
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
    let mut producer = Killed::new(child);
    assert_eq!(producer.line(), "ready");
    assert_eq!(producer.line(), "done");
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
        Err(Error::Hangup) => consumer.drain_remaining(|_| {}).map(|left| left.events),
        other => other,
    };
    match &result {
        Err(Error::Truncated(path)) => assert!(path.ends_with("bufs/cpu0"), "{path:?}"),
        other => panic!("expected a truncated buffer, got {other:?}"),
    }
    let message = result.expect_err("truncated").to_string();
    assert!(message.contains("shrank while mapped"), "{message}");
}

// A producer's buffer directory (`--dir`) cannot be turned against it: not by a directory or
// files another user made first (they could read the trace, swap its files, or point them at a
// file of root's to be overwritten), not by symbolic links, and a dead producer's buffers are
// not destroyed by the next run unless it is told to (`--force`). Each attack uses real files;
// the victim's content, size, owner and mode are checked afterwards. Those needing a second uid
// need root (to chown), and skip with a reason otherwise.

/// A file the attacks aim at: root's, say, which a producer running as root could write.
struct Victim {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Victim {
    const CONTENT: &[u8] = b"root-only content that must survive\n";

    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("victim");
        std::fs::write(&path, Self::CONTENT).expect("writing the victim");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Self { _dir: dir, path }
    }

    /// Panics unless the victim is as it was made.
    fn assert_untouched(&self) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(&self.path).expect("the victim still exists");
        assert!(meta.is_file());
        assert_eq!(std::fs::read(&self.path).expect("reading the victim"), Self::CONTENT, "the victim was written");
        assert_eq!(meta.len(), Self::CONTENT.len() as u64);
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
    }
}

/// A producer of `nr_cpus` CPUs with its buffers in `dir`.
fn dir_producer(dir: &Path, nr_cpus: u32, overwrite: bool) -> Result<ShmProducer<CounterClock>, ring_mmap::Error> {
    let config = ProducerConfig {
        nr_cpus,
        buffer: Config { geometry: Geometry::new(4096, 4).expect("geometry"), mode: Mode::Drop },
        backing: Backing::Dir { path: dir.to_path_buf(), overwrite },
        formats: b"the producer's formats".to_vec(),
    };
    ShmProducer::new(config, |_| CounterClock::new(1))
}

/// Makes `path` a directory with `mode` (whatever the umask).
fn make_dir(path: &Path, mode: u32) {
    std::fs::create_dir(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn skip_unless_root(what: &str) -> bool {
    !test_capabilities::root(what, "chown files to nobody")
}

#[test]
fn a_symlinked_cpu_file_is_refused_and_its_target_left_alone() {
    let victim = Victim::new();
    let temporary = tempfile::tempdir().expect("tempdir");
    let dir = temporary.path().join("bufs");
    make_dir(&dir, 0o700);
    std::os::unix::fs::symlink(&victim.path, dir.join("cpu0")).expect("symlink");
    // A link to a file that does not exist yet: following it would create the file.
    let planted = temporary.path().join("planted");
    std::os::unix::fs::symlink(&planted, dir.join("cpu1")).expect("symlink");
    for overwrite in [false, true] {
        let refused = dir_producer(&dir, 2, overwrite).expect_err("a symlinked cpu0 must be refused");
        assert!(
            matches!(&refused, ring_mmap::Error::UnsafeFile { path, problem: Unsafety::SymbolicLink } if *path == dir.join("cpu0")),
            "overwrite {overwrite}: {refused}"
        );
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        victim.assert_untouched();
        assert!(!planted.exists(), "a file was created through the link");
    }
    std::fs::remove_file(dir.join("cpu0")).expect("rm");
    let refused = dir_producer(&dir, 2, true).expect_err("a symlinked cpu1 must be refused");
    assert!(matches!(refused, ring_mmap::Error::UnsafeFile { problem: Unsafety::SymbolicLink, .. }), "{refused}");
    assert!(!planted.exists(), "a file was created through the link");
}

#[test]
fn a_symlinked_temporary_is_replaced_not_written_through() {
    let victim = Victim::new();
    let temporary = tempfile::tempdir().expect("tempdir");
    let dir = temporary.path().join("bufs");
    make_dir(&dir, 0o700);
    std::os::unix::fs::symlink(&victim.path, dir.join(".formats.new")).expect("symlink");
    std::os::unix::fs::symlink(&victim.path, dir.join(".clock.new")).expect("symlink");
    let producer = dir_producer(&dir, 1, false).expect("producer");
    producer.set_clock(ring_core::ClockParams { mult: 3, shift: 1, epoch_raw: 2, epoch_ns: 5 }).expect("clock");
    victim.assert_untouched();
    assert_eq!(std::fs::read(dir.join("formats")).expect("formats"), b"the producer's formats");
    assert_eq!(std::fs::metadata(dir.join("clock")).expect("clock").len(), 24);
    assert_eq!(names_in(&dir), ["clock", "cpu0", "formats"]);
}

#[test]
fn a_directory_open_to_others_is_refused() {
    let temporary = tempfile::tempdir().expect("tempdir");
    for mode in [0o777, 0o1777, 0o755, 0o710] {
        let dir = temporary.path().join(format!("bufs{mode:o}"));
        make_dir(&dir, mode);
        let refused = dir_producer(&dir, 1, true).expect_err("an open directory must be refused");
        assert!(
            matches!(&refused, ring_mmap::Error::UnsafeDir { problem: Unsafety::OpenToOthers { mode: got }, .. } if *got == mode),
            "{refused}"
        );
        let message = refused.to_string();
        assert!(message.contains(&format!("(mode {mode:04o})")) && message.contains("chmod 0700"), "{message}");
        assert!(names_in(&dir).is_empty(), "nothing is created in it");
    }
    // A symbolic link to a private directory is refused too (it could be swapped).
    let private = temporary.path().join("private");
    make_dir(&private, 0o700);
    std::os::unix::fs::symlink(&private, temporary.path().join("link")).expect("symlink");
    let refused = dir_producer(&temporary.path().join("link"), 1, true).expect_err("a symlinked directory");
    assert!(matches!(refused, ring_mmap::Error::UnsafeDir { problem: Unsafety::SymbolicLink, .. }), "{refused}");
    assert!(names_in(&private).is_empty());
}

#[test]
fn another_users_directory_is_refused() {
    if skip_unless_root("another user's directory") {
        return;
    }
    let victim = Victim::new();
    let temporary = tempfile::tempdir().expect("tempdir");
    // What another user prepares under /var/tmp: their directory, links to a file of root's.
    let dir = temporary.path().join("bufs");
    make_dir(&dir, 0o700);
    for name in ["cpu0", ".formats.new", "formats", "clock"] {
        std::os::unix::fs::symlink(&victim.path, dir.join(name)).expect("symlink");
        std::os::unix::fs::lchown(dir.join(name), Some(NOBODY), Some(NOBODY)).expect("lchown");
    }
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    for overwrite in [false, true] {
        let refused = dir_producer(&dir, 1, overwrite).expect_err("another user's directory must be refused");
        let root = 0;
        assert!(
            matches!(&refused, ring_mmap::Error::UnsafeDir { path, problem: Unsafety::OwnedBy { owner: NOBODY, euid } }
                if *path == dir && *euid == root),
            "{refused}"
        );
        assert!(refused.to_string().contains("owned by uid 65534"), "{refused}");
        victim.assert_untouched();
        assert_eq!(names_in(&dir), [".formats.new", "clock", "cpu0", "formats"], "nothing changed in it");
    }
}

#[test]
fn another_users_file_in_the_directory_is_refused() {
    use std::os::unix::fs::MetadataExt;
    if skip_unless_root("another user's buffer file") {
        return;
    }
    let temporary = tempfile::tempdir().expect("tempdir");
    let dir = temporary.path().join("bufs");
    make_dir(&dir, 0o700);
    // A cpu0 made first by someone else, open to all: adopted, it would stay theirs, let them
    // read the trace, and truncating it would kill the producer with SIGBUS.
    let theirs = dir.join("cpu0");
    std::fs::write(&theirs, b"theirs").expect("writing");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("chown");
    for overwrite in [false, true] {
        let refused = dir_producer(&dir, 1, overwrite).expect_err("another user's cpu0 must be refused");
        assert!(
            matches!(&refused, ring_mmap::Error::UnsafeFile { path, problem: Unsafety::OwnedBy { owner: NOBODY, .. } } if *path == theirs),
            "{refused}"
        );
        let meta = std::fs::metadata(&theirs).expect("still there");
        assert_eq!((meta.uid(), meta.mode() & 0o7777, meta.len()), (NOBODY, 0o666, 6), "left as it was");
        assert_eq!(std::fs::read(&theirs).expect("reading"), b"theirs");
        assert_eq!(names_in(&dir), ["cpu0"]);
    }
}

/// Runs `test-producer --dir dir` of `cpus` CPUs writing `events` events each (with `--force`
/// if `force`) until it is done; its stderr if it failed.
fn run_test_producer(temporary: &Path, dir: &Path, cpus: u32, events: u32, force: bool) -> Result<(), String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_test-producer"));
    command.arg("--socket").arg(temporary.join("sock")).arg("--dir").arg(dir);
    command.args(["--cpus", &cpus.to_string(), "--events", &events.to_string()]);
    if force {
        command.arg("--force");
    }
    // A closed stdin: it exits once its writers are done.
    let out = command.stdin(std::process::Stdio::null()).output().expect("running test-producer");
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// The events left in each CPU of the dead producer's directory `dir`.
fn events_left(dir: &Path) -> Vec<u64> {
    let opened = ring_mmap::BufferDir::open(dir).expect("opening the directory post-mortem");
    opened
        .cpus
        .into_iter()
        .map(|cpu| {
            let mut consumer = ring_mmap::Consumer::new(cpu).expect("consumer");
            let mut events = 0;
            consumer.drain_remaining(|r| events += u64::from(matches!(r, ring_mmap::Record::Event(_)))).expect("drain");
            events
        })
        .collect()
}

#[test]
fn a_dead_producers_buffers_are_kept_unless_forced() {
    let temporary = tempfile::tempdir().expect("tempdir");
    let dir = temporary.path().join("bufs");
    run_test_producer(temporary.path(), &dir, 2, 50, false).expect("the first run");
    let before: Vec<Vec<u8>> = ["cpu0", "cpu1"].iter().map(|n| std::fs::read(dir.join(n)).expect("read")).collect();
    assert_eq!(events_left(&dir), [50, 50]);

    let refused = run_test_producer(temporary.path(), &dir, 1, 5, false).expect_err("a second run must be refused");
    assert!(refused.contains("holds the buffers of a producer that has gone"), "{refused}");
    assert!(refused.contains("trace-reader recover") && refused.contains("--force"), "{refused}");
    let after: Vec<Vec<u8>> = ["cpu0", "cpu1"].iter().map(|n| std::fs::read(dir.join(n)).expect("read")).collect();
    assert!(before == after, "the dead producer's buffers were changed");
    assert_eq!(
        dir_producer(&dir, 1, false)
            .map(drop)
            .map_err(|e| matches!(e, ring_mmap::Error::DirHoldsBuffers { path } if path == dir)),
        Err(true)
    );

    run_test_producer(temporary.path(), &dir, 1, 5, true).expect("a run with --force");
    assert_eq!(events_left(&dir), [5], "overwritten: one CPU of five events");
}

#[test]
fn another_users_running_producer_is_named_as_such() {
    if skip_unless_root("another user's producer") {
        return;
    }
    // nobody's producer, in nobody's directory (reachable by nobody: copies of the binary in
    // an open directory, as for the socket test).
    let temporary = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(temporary.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = temporary.path().join("test-producer");
    std::fs::copy(env!("CARGO_BIN_EXE_test-producer"), &exe).expect("copying test-producer");
    let home = temporary.path().join("home");
    make_dir(&home, 0o700);
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).expect("chown");
    let dir = home.join("bufs");
    let mut theirs = Command::new(&exe)
        .arg("--socket")
        .arg(home.join("sock"))
        .arg("--dir")
        .arg(&dir)
        .args(["--cpus", "1", "--events", "10"])
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawning test-producer as nobody");
    // Kept open until it exits: it prints `done` when its writers finish.
    let mut said = std::io::BufReader::new(theirs.stdout.take().expect("piped"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).expect("reading");
    assert_eq!(line.trim(), "ready", "nobody's test-producer said {line:?}");

    // Root's post-mortem reader: the lock is held by another user's process, named.
    let refused = ring_mmap::DirCpu::open(&dir, 0).expect_err("a live producer's file");
    assert!(
        matches!(&refused, ring_mmap::Error::LockedByAnotherUser { pid, uid: NOBODY, .. } if *pid == theirs.id()),
        "{refused}"
    );
    assert!(refused.to_string().contains("which runs as uid 65534"), "{refused}");
    // Root's producer does not take their directory over.
    let refused = dir_producer(&dir, 1, true).expect_err("another user's directory");
    assert!(matches!(refused, ring_mmap::Error::UnsafeDir { problem: Unsafety::OwnedBy { owner: NOBODY, .. }, .. }));
    drop(theirs.stdin.take());
    assert!(theirs.wait().expect("reaped").success());
    drop(said);

    // Dead, their buffers are theirs: another user's reader is told whose they are.
    let probe = temporary.path().join("dir-probe");
    std::fs::copy(env!("CARGO_BIN_EXE_dir-probe"), &probe).expect("copying dir-probe");
    let out = Command::new(&probe).arg(&dir).uid(1).gid(1).output().expect("running dir-probe as uid 1");
    let said = String::from_utf8_lossy(&out.stdout);
    let theirs = format!("cannot open {}: it belongs to uid 65534 (mode 0700)", home.display());
    assert!(said.contains(&theirs), "{said}");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(&probe).arg(&dir).uid(1).gid(1).output().expect("running dir-probe as uid 1");
    let said = String::from_utf8_lossy(&out.stdout);
    let theirs = format!("cannot open {}: it belongs to uid 65534 (mode 0700)", dir.display());
    assert!(said.contains(&theirs), "{said}");
    let out = Command::new(&probe).arg(&dir).uid(NOBODY).gid(NOBODY).output().expect("running dir-probe as nobody");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "opened 1", "their own reader reads them");
}
