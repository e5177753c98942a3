//! A producer process for hyptrace's cross-process tests: per-CPU buffers behind the control
//! socket, with a writer thread per CPU writing sequence-numbered, self-checking events
//! (`hyptrace_tests::payload`).
//!
//! It prints `ready` once the socket serves, `done` when every writer has finished, and exits
//! when its standard input closes (the test is done with it), or when it is killed.
#![forbid(unsafe_code)]

// Under `--cfg loom` this crate is built only to run the loom models, without ring-mmap.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> anyhow::Result<()> {
    producer::main()
}

#[cfg(not(loom))]
mod producer {

    use anyhow::{Context, Result};
    use clap::{Parser, ValueEnum};
    use hyptrace_tests::payload;
    use hyptrace_tests::progress::Progress;
    use ring_core::{Config, CounterClock, Geometry, Mode, WriteError, Writer};
    use ring_mmap::{Backing, ProducerConfig, Server, ShmProducer};
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::sync::Arc;

    #[derive(Clone, Copy, ValueEnum)]
    enum ModeArg {
        Overwrite,
        Drop,
    }

    /// Serves per-CPU buffers and fills them with test events.
    #[derive(Parser)]
    struct Args {
        /// Control socket path.
        #[arg(long)]
        socket: PathBuf,
        /// Put the buffers in files in this directory instead of memfds.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// With --dir: overwrite the buffers a producer that has gone left there.
        #[arg(long, requires = "dir")]
        force: bool,
        #[arg(long, value_enum, default_value = "drop")]
        mode: ModeArg,
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        #[arg(long, default_value_t = 4096)]
        subbuf_size: u32,
        #[arg(long, default_value_t = 8)]
        nr_subbufs: u32,
        /// Events per CPU; 0 writes until killed.
        #[arg(long, default_value_t = 10_000)]
        events: u64,
        /// Payload bytes per event (at least 8).
        #[arg(long, default_value_t = 24)]
        payload: usize,
        /// Pause between events, in microseconds (0: as fast as possible).
        #[arg(long, default_value_t = 0)]
        pause_us: u64,
        /// Make every fourth event a nested write: reserve event n, write half of it, write
        /// event n + 1 in full (as an interrupt handler would), finish and commit event n.
        #[arg(long)]
        nested: bool,
        /// Record how far each CPU's writer got (events committed, and events begun) in this
        /// file (hyptrace_tests::progress), for tests that kill this process.
        #[arg(long)]
        progress: Option<PathBuf>,
        /// Lower this process's limit of open files (RLIMIT_NOFILE) to this many, and give up
        /// the capabilities that exempt it from that limit for descriptors in flight on Unix
        /// sockets (CAP_SYS_ADMIN, CAP_SYS_RESOURCE), so that a test run as root meets the limit
        /// as other users do.
        #[arg(long)]
        max_open_files: Option<u64>,
    }

    /// See `Args::max_open_files`. Called before any thread starts: threads inherit the
    /// capabilities of the thread that starts them.
    fn limit_open_files(max: u64) -> Result<()> {
        use rustix::process::{Resource, Rlimit, setrlimit};
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) })
            .context("lowering RLIMIT_NOFILE")?;
        let mut caps = capabilities(None).context("reading this thread's capabilities")?;
        let exempt = CapabilitySet::SYS_ADMIN | CapabilitySet::SYS_RESOURCE;
        caps.effective.remove(exempt);
        caps.permitted.remove(exempt);
        caps.inheritable.remove(exempt);
        set_capabilities(None, caps).context("dropping CAP_SYS_ADMIN and CAP_SYS_RESOURCE")?;
        Ok(())
    }

    /// Writes event `seq`; false if it was dropped (ring full).
    fn write_one<C: ring_core::Clock, D: ring_core::Doorbell>(
        writer: &Writer<'_, '_, C, D>,
        seq: u64,
        len: usize,
    ) -> bool {
        match writer.write(&payload::make(seq as u32, len)) {
            Ok(()) => true,
            Err(WriteError::Dropped) => false,
            Err(e) => panic!("write {seq}: {e}"),
        }
    }

    /// Writes event `seq` with event `seq + 1` nested inside its reservation; returns `seq` if
    /// it was committed. (The nested event is only staged: it reaches the ring when `seq`
    /// commits, or is dropped and counted then if the ring is full in drop mode; its write
    /// returning cannot say which.)
    fn write_nested<C: ring_core::Clock, D: ring_core::Doorbell>(
        writer: &Writer<'_, '_, C, D>,
        seq: u64,
        len: usize,
    ) -> Option<u64> {
        let outer = payload::make(seq as u32, len);
        let mut reservation = match writer.reserve(len) {
            Ok(r) => r,
            Err(WriteError::Dropped) => return None,
            Err(e) => panic!("reserve {seq}: {e}"),
        };
        let half = len / 2;
        reservation.write_at(0, &outer[..half]).expect("in bounds");
        write_one(writer, seq + 1, len);
        reservation.write_at(half, &outer[half..]).expect("in bounds");
        reservation.commit();
        Some(seq)
    }

    pub(crate) fn main() -> Result<()> {
        let args = Args::parse();
        if let Some(max) = args.max_open_files {
            limit_open_files(max)?;
        }
        let config = ProducerConfig {
            nr_cpus: args.cpus,
            buffer: Config {
                geometry: Geometry::new(args.subbuf_size, args.nr_subbufs)?,
                mode: match args.mode {
                    ModeArg::Overwrite => Mode::Overwrite,
                    ModeArg::Drop => Mode::Drop,
                },
            },
            backing: args.dir.clone().map_or(Backing::Memfd, |path| Backing::Dir { path, overwrite: args.force }),
            formats: b"test-producer formats".to_vec(),
        };
        let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1))?);
        let progress = match &args.progress {
            Some(path) => Some(Arc::new(Progress::create(path, args.cpus).context("creating the progress file")?)),
            None => None,
        };
        let server = Server::start(&args.socket, producer.clone()).context("starting the server")?;
        println!("ready");
        std::io::stdout().flush()?;
        let writers: Vec<_> = (0..args.cpus)
            .map(|cpu| {
                let (producer, progress) = (producer.clone(), progress.clone());
                let (events, len, pause, nested) = (args.events, args.payload, args.pause_us, args.nested);
                std::thread::spawn(move || {
                    let buf = producer.cpu(cpu).writer().expect("one writer thread per CPU");
                    let mut seq = 0u64;
                    while events == 0 || seq < events {
                        let nest = nested && seq % 4 == 3 && (events == 0 || seq + 1 < events);
                        if let Some(progress) = &progress {
                            progress.starting(cpu, seq + if nest { 2 } else { 1 });
                        }
                        let (written, last) = if nest {
                            (2, write_nested(&buf, seq, len))
                        } else {
                            (1, write_one(&buf, seq, len).then_some(seq))
                        };
                        if let (Some(progress), Some(last)) = (&progress, last) {
                            progress.committed(cpu, last + 1);
                        }
                        seq += written;
                        if pause > 0 {
                            std::thread::sleep(std::time::Duration::from_micros(pause));
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?;
        }
        println!("done");
        std::io::stdout().flush()?;
        // Serve until the test closes our stdin.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        drop(server);
        Ok(())
    }
}
