//! Where the server answers: with `ServerOptions::on_consumed_cpus`, a client's requests are
//! served by a thread on the CPUs the client consumes; a thread whose connection ended serves
//! the next. In a test binary of its own, so that the only serving threads in the process are
//! its tests', which take turns ([`ONE_AT_A_TIME`]): each stops its server, joining its threads,
//! before it returns.

use ring_core::{Config, Geometry, ManualClock, Mode};
use ring_mmap::{Backing, Connection, Consumer, ProducerConfig, Server, ServerOptions, ShmProducer};
use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity};
use std::sync::{Arc, Mutex};

/// Held by each test: the threads counted are then its own.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The threads of this process named `name`.
fn threads_named(name: &str) -> Vec<Pid> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| {
            let t = t.ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let tid = t.file_name().to_str()?.parse().ok()?;
            (comm.trim_end() == name).then(|| Pid::from_raw(tid)).flatten()
        })
        .collect()
}

/// The CPUs `pid` may run on.
fn cpus_of(pid: Pid) -> Vec<usize> {
    let set = sched_getaffinity(Some(pid)).unwrap();
    (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// A 2-CPU producer served with `options`.
fn serve(options: ServerOptions) -> (Arc<ShmProducer<ManualClock>>, Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let prod = Arc::new(ShmProducer::new(config, |_| ManualClock::new(0)).unwrap());
    let server = Server::start_with(&dir.path().join("sock"), prod.clone(), options).unwrap();
    (prod, server, dir)
}

/// The one thread serving connections: where it may run, once it has answered a request of
/// `conn` after everything before.
fn serving_thread_cpus(conn: &Connection) -> Vec<usize> {
    // The thread moves after it answers; answering one more request shows it has.
    conn.stats(0).unwrap();
    let serving = threads_named("hyptrace-client");
    assert_eq!(serving.len(), 1, "one serving thread");
    cpus_of(serving[0])
}

/// Consumes `cpu` through `server` (of `prod`) on a new connection, which is returned.
fn consume(prod: &ShmProducer<ManualClock>, server: &Server, cpu: u32) -> Arc<Connection> {
    let conn = Connection::connect(server.path()).unwrap();
    let mut consumer = Consumer::new(conn.open_cpu(cpu).unwrap()).unwrap();
    prod.cpu(cpu).writer().unwrap().write(b"event").unwrap();
    assert_eq!(consumer.drain(|_| {}).unwrap(), 1);
    conn
}

/// Serves a 2-CPU producer with `options`, consumes `cpu` through it, and says where the thread
/// serving that client may run.
fn served_on(options: ServerOptions, cpu: u32) -> Vec<usize> {
    let (prod, server, _dir) = serve(options);
    let conn = consume(&prod, &server, cpu);
    serving_thread_cpus(&conn)
}

#[test]
fn a_client_is_served_on_the_cpus_it_consumes_when_asked() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mine = cpus_of(rustix::thread::gettid());
    // The producer's CPU 1 if this process may run there, else its CPU 0.
    let cpu = if mine.contains(&1) { 1 } else { 0 };
    assert!(mine.contains(&cpu), "the test runs on CPU 0 or 1");
    let placed = served_on(ServerOptions { on_consumed_cpus: true, ..Default::default() }, cpu as u32);
    assert_eq!(placed, vec![cpu], "served on the consumed CPU");
    let anywhere = served_on(ServerOptions::default(), cpu as u32);
    assert_eq!(anywhere, mine, "left where it was started");
}

#[test]
fn a_thread_whose_connection_ended_serves_the_next_from_where_it_started() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mine = cpus_of(rustix::thread::gettid());
    let cpu = if mine.contains(&1) { 1 } else { 0 };
    let (prod, server, _dir) = serve(ServerOptions { on_consumed_cpus: true, ..Default::default() });
    let first = consume(&prod, &server, cpu as u32);
    assert_eq!(serving_thread_cpus(&first), vec![cpu]);
    drop(first);
    // The thread sees the hangup within microseconds and waits for another connection.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = Connection::connect(server.path()).unwrap();
    assert_eq!(serving_thread_cpus(&second), mine, "the same thread, back where it started");
    // Many connections one after the other, each handed to whichever thread is free (a new one
    // when the last has not yet seen its hangup): every one is answered.
    drop(second);
    for _ in 0..50 {
        let conn = Connection::connect(server.path()).unwrap();
        conn.stats(1).unwrap();
    }
}
