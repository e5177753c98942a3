//! Where the server answers: with `ServerOptions::on_consumed_cpus`, a client's requests are
//! served by a thread on the CPUs the client consumes. In a test binary of its own, so that the
//! only serving threads in the process are this test's.

use ring_core::{Config, Geometry, ManualClock, Mode};
use ring_mmap::{Backing, Connection, Consumer, ProducerConfig, Server, ServerOptions, ShmProducer};
use rustix::process::Pid;
use rustix::thread::{CpuSet, sched_getaffinity};
use std::sync::Arc;

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

/// Serves a 2-CPU producer with `options`, consumes `cpu` through it, and says where the thread
/// serving that client may run.
fn served_on(options: ServerOptions, cpu: u32) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let config = ProducerConfig {
        nr_cpus: 2,
        buffer: Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let prod = Arc::new(ShmProducer::new(config, |_| ManualClock::new(0)).unwrap());
    let server = Server::start_with(&dir.path().join("sock"), prod.clone(), options).unwrap();
    let conn = Connection::connect(server.path()).unwrap();
    let mut consumer = Consumer::new(conn.open_cpu(cpu).unwrap()).unwrap();
    prod.cpu(cpu).write(b"event").unwrap();
    assert_eq!(consumer.drain(|_| {}).unwrap(), 1);
    // The thread moves after it answers; answering one more request shows it has.
    conn.stats(cpu).unwrap();
    let serving = threads_named("hyptrace-client");
    assert_eq!(serving.len(), 1, "one thread per connection");
    cpus_of(serving[0])
}

#[test]
fn a_client_is_served_on_the_cpus_it_consumes_when_asked() {
    let mine = cpus_of(rustix::thread::gettid());
    // The producer's CPU 1 if this process may run there, else its CPU 0.
    let cpu = if mine.contains(&1) { 1 } else { 0 };
    assert!(mine.contains(&cpu), "the test runs on CPU 0 or 1");
    let placed = served_on(ServerOptions { on_consumed_cpus: true, ..Default::default() }, cpu as u32);
    assert_eq!(placed, vec![cpu], "served on the consumed CPU");
    let anywhere = served_on(ServerOptions::default(), cpu as u32);
    assert_eq!(anywhere, mine, "left where it was started");
}
