//! Reader-page swap cost, in one run: the exchange itself in-process (`CpuBuffer::
//! swap_reader_page` taking a full page), a GET_READER_PAGE round trip to a producer in another
//! process over the control socket, and the kernel's `TRACE_MMAP_IOCTL_GET_READER` on a tracefs
//! instance (skipped, with the reason printed, where tracefs is unavailable).

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use hyptrace_benches::{settings, skipped, tracefs};
use ring_core::{Config, CounterClock, CpuBuffer, Geometry, Mode, SwapStatus};
use ring_mmap::wire::Op;
use ring_mmap::{Connection, CpuSource, KernelCpu};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::cell::Cell;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn in_process(c: &mut BenchmarkGroup<'_, WallTime>) {
    let geometry = Geometry::new(4096, 64).expect("geometry");
    let buf = CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, CounterClock::new(1)).expect("heap");
    let page_event = vec![7u8; geometry.max_payload()];
    let read = Cell::new(0u32);
    let writer = buf.writer().expect("the benchmark is the buffer's only writer");
    c.bench_function("in_process_exchange", |b| {
        b.iter_batched(
            // Untimed: the writer fills one page (one event per page) and moves on, so the
            // swap below exchanges the reader page for it.
            || writer.write(&page_event).expect("overwrite never refuses"),
            |()| {
                let up = buf.swap_reader_page(read.get()).expect("swap");
                debug_assert_eq!(up.status, SwapStatus::Swapped);
                let commit = buf.view().page(up.id).expect("page").commit() & 0x3fff_ffff;
                read.set(commit as u32);
            },
            BatchSize::SmallInput,
        )
    });
}

/// Starts `bench-producer` with `args` (after which it serves `socket`) and waits until it is ready.
fn start(args: &[&str], socket: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench-producer"))
        .arg(args[0])
        .arg(socket)
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning bench-producer");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready");
    child
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// The floor: a 32-byte message to another process and back over a bare SEQPACKET socket, the
/// echo server sleeping between messages (`spin_us` 0) or polling as the control socket does.
fn socket_baseline(c: &mut BenchmarkGroup<'_, WallTime>, name: &str, spin_us: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("echo");
    let child = start(&["echo", spin_us], &socket);
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    rustix::net::connect(&fd, &SocketAddrUnix::new(&socket).expect("address")).expect("connect");
    let spin = Duration::from_micros(spin_us.parse().expect("spin"));
    let mut buf = [0u8; 64];
    c.bench_function(name, |b| {
        b.iter(|| {
            rustix::net::send(&fd, &[7u8; 32], SendFlags::empty()).expect("send");
            let until = Instant::now() + spin;
            loop {
                let flags = if Instant::now() < until { RecvFlags::DONTWAIT } else { RecvFlags::empty() };
                match rustix::net::recv(&fd, &mut buf, flags) {
                    Ok(_) => break,
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => std::hint::spin_loop(),
                    Err(e) => panic!("recv: {e}"),
                }
            }
        })
    });
    drop(fd);
    stop(child);
}

fn cross_process(c: &mut BenchmarkGroup<'_, WallTime>) {
    socket_baseline(c, "baseline_socket_echo_sleeping", "0");
    // Polling as long as both ends of the control socket do (`ring_mmap::server::DEFAULT_SPIN`).
    let spin_us = ring_mmap::server::DEFAULT_SPIN.as_micros().to_string();
    socket_baseline(c, "baseline_socket_echo_spinning", &spin_us);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("sock");
    let child = start(&["serve"], &socket);
    let conn = Connection::connect(&socket).expect("connect");
    let mut cpu = conn.open_cpu(0).expect("open_cpu");
    let mut read = 0;
    // The one event's page becomes the reader page; afterwards every request answers "writer on
    // page": a full round trip through the producer's swap logic.
    let first = cpu.get_reader_page(0).expect("first swap");
    read = read.max(first.start);
    c.bench_function("cross_process_round_trip", |b| {
        b.iter(|| {
            let page = cpu.get_reader_page(read).expect("GET_READER_PAGE");
            read = page.start;
        })
    });
    c.bench_function("cross_process_stats_round_trip", |b| b.iter(|| conn.call(Op::Stats, 0, 0).expect("STATS")));
    drop(cpu);
    drop(conn);
    stop(child);
}

fn kernel_ioctl(c: &mut BenchmarkGroup<'_, WallTime>) {
    const ID: &str = "swap/kernel_ioctl";
    let inst = match tracefs::instance("swap") {
        Ok(inst) => inst,
        Err(why) => return skipped::skip(ID, &why),
    };
    if let Err(e) = inst.set("buffer_size_kb", "64") {
        return skipped::skip(ID, &e.to_string());
    }
    {
        let mut cpu = KernelCpu::open(inst.path(), 0).expect("mapping trace_pipe_raw");
        c.bench_function("kernel_ioctl", |b| b.iter(|| cpu.get_reader_page(0).expect("ioctl")));
    }
    drop(inst);
}

fn swap(c: &mut Criterion) {
    let mut group = c.benchmark_group("swap");
    in_process(&mut group);
    cross_process(&mut group);
    kernel_ioctl(&mut group);
    group.finish();
}

criterion_group! {
    name = benches;
    config = settings::criterion();
    targets = swap
}
criterion_main!(benches);
