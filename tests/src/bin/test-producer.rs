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
    use ring_core::{Config, CounterClock, Geometry, Mode, WriteError};
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
    }

    pub(crate) fn main() -> Result<()> {
        let args = Args::parse();
        let config = ProducerConfig {
            nr_cpus: args.cpus,
            buffer: Config {
                geometry: Geometry::new(args.subbuf_size, args.nr_subbufs)?,
                mode: match args.mode {
                    ModeArg::Overwrite => Mode::Overwrite,
                    ModeArg::Drop => Mode::Drop,
                },
            },
            backing: args.dir.clone().map_or(Backing::Memfd, Backing::Dir),
            formats: b"test-producer formats".to_vec(),
        };
        let producer = Arc::new(ShmProducer::new(config, |_| CounterClock::new(1))?);
        let server = Server::start(&args.socket, producer.clone()).context("starting the server")?;
        println!("ready");
        std::io::stdout().flush()?;
        let writers: Vec<_> = (0..args.cpus)
            .map(|cpu| {
                let producer = producer.clone();
                let (events, len, pause) = (args.events, args.payload, args.pause_us);
                std::thread::spawn(move || {
                    let buf = producer.cpu(cpu);
                    let mut seq = 0u64;
                    while events == 0 || seq < events {
                        match buf.write(&payload::make(seq as u32, len)) {
                            Ok(()) | Err(WriteError::Dropped) => {}
                            Err(e) => panic!("cpu {cpu} write {seq}: {e}"),
                        }
                        seq += 1;
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
