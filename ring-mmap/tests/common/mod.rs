//! A producer of one CPU in memfds, served on a socket in a temporary directory: the fixture
//! of the tests that talk to a server.

#![allow(dead_code)]

use ring_core::{Config, Geometry, ManualClock, Mode};
use ring_mmap::{Backing, ProducerConfig, Server, ServerOptions, ShmProducer};
use std::sync::Arc;

/// A served producer; dropping it stops the server and removes the directory.
pub struct Served {
    pub producer: Arc<ShmProducer<ManualClock>>,
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl Served {
    /// One CPU of `nr_subbufs` 4 KiB sub-buffers in `mode`, served with `options`.
    pub fn start(nr_subbufs: u32, mode: Mode, options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ProducerConfig {
            nr_cpus: 1,
            buffer: Config { geometry: Geometry::new(4096, nr_subbufs).unwrap(), mode },
            backing: Backing::Memfd,
            formats: Vec::new(),
        };
        let producer = Arc::new(ShmProducer::new(config, |_| ManualClock::new(1)).unwrap());
        let server = Server::start_with(&dir.path().join("sock"), producer.clone(), options).unwrap();
        Self { producer, server, dir }
    }
}
