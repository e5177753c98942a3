//! The control socket refuses every user but the producer's own: a client running under
//! another uid cannot open the socket file (mode 0600 in a 0700 directory by default), and
//! when the file is opened up to everyone, the producer still checks the peer's credentials
//! (`SO_PEERCRED`) and closes the connection without answering. The producer goes on serving
//! its own user. Needs root (to run the client as `nobody`); skips with a reason otherwise.
#![cfg(not(loom))]

use ring_core::{Config, CounterClock, Geometry, Mode};
use ring_mmap::{Backing, Connection, ProducerConfig, Server, ShmProducer};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// uid and gid of `nobody`.
const NOBODY: u32 = 65534;

/// Runs `socket-probe` on `socket` as `uid` and returns its one line.
fn probe(exe: &Path, socket: &Path, uid: u32) -> String {
    let out = Command::new(exe).arg(socket).uid(uid).gid(uid).output().expect("running socket-probe");
    assert!(out.status.success(), "socket-probe failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_string()
}

#[test]
fn the_socket_refuses_other_users() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: the second-uid socket test needs root to run a client as nobody");
        return;
    }
    // Everything the other user needs to reach, in a directory it may enter: a copy of the
    // probe (the build directory may be closed to it) and the socket.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.path().join("socket-probe");
    std::fs::copy(env!("CARGO_BIN_EXE_socket-probe"), &exe).expect("copying socket-probe");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).expect("geometry"), mode: Mode::Drop },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1)).expect("producer"));
    let socket = dir.path().join("sock");
    let _server = Server::start(&socket, producer).expect("serving");

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
