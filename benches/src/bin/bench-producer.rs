//! Processes for the cross-process benchmarks.
//!
//! - `bench-producer serve SOCKET`: one idle per-CPU buffer (holding one event) behind the
//!   control socket.
//! - `bench-producer echo SOCKET SPIN_US`: a bare `SOCK_SEQPACKET` echo server, the baseline of a
//!   round trip between two processes; after each message it polls for the next one for
//!   `SPIN_US` microseconds before sleeping (0: sleep at once), like the control socket does.
//!
//! Each prints `ready` once it serves and exits when its standard input closes.
#![forbid(unsafe_code)]

use anyhow::{Context, Result, bail};
use ring_core::{Config, CounterClock, Geometry, Mode};
use ring_mmap::{Backing, ProducerConfig, RequestBudget, Server, ServerOptions, ShmProducer};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketType};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ready() -> Result<()> {
    println!("ready");
    std::io::stdout().flush()?;
    Ok(())
}

fn serve(socket: &str) -> Result<()> {
    let config = ProducerConfig {
        nr_cpus: 1,
        buffer: Config { geometry: Geometry::new(4096, 16)?, mode: Mode::Overwrite },
        backing: Backing::Memfd,
        formats: Vec::new(),
    };
    let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1))?);
    producer.cpu(0).writer()?.write(b"one event")?;
    // The round trip is measured back to back on a page with nothing new: the default request
    // budget would hold such polling to its refill rate, which is not what is measured here.
    let options = ServerOptions { budget: RequestBudget::UNLIMITED, ..ServerOptions::default() };
    let _server = Server::start_with(socket.as_ref(), producer, options)?;
    ready()?;
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

fn echo(socket: &str, spin: Duration) -> Result<()> {
    let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)?;
    rustix::net::bind(&listener, &SocketAddrUnix::new(socket)?)?;
    rustix::net::listen(&listener, 1)?;
    ready()?;
    let conn = rustix::net::accept(&listener)?;
    let mut buf = [0u8; 64];
    let mut awake_until = Instant::now();
    loop {
        let flags = if Instant::now() < awake_until { RecvFlags::DONTWAIT } else { RecvFlags::empty() };
        match rustix::net::recv(&conn, &mut buf, flags) {
            Ok((0, _)) => return Ok(()),
            Ok((n, _)) => {
                rustix::net::send(&conn, &buf[..n], SendFlags::empty())?;
                awake_until = Instant::now() + spin;
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => std::hint::spin_loop(),
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", socket] => serve(socket),
        ["echo", socket, spin_us] => echo(socket, Duration::from_micros(spin_us.parse().context("SPIN_US")?)),
        _ => bail!("usage: bench-producer serve SOCKET | bench-producer echo SOCKET SPIN_US"),
    }
}
