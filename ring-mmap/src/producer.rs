//! The producer side: what the control socket serves ([`Producer`]), and [`ShmProducer`], per-CPU
//! ring-core buffers living in shared files, written by threads of this process.
//!
//! A hypervisor backend implements [`Producer`] itself: there the buffers live in memory the
//! host donated, and swaps go through hypercalls (hyp-sim's host is one). A producer answers in
//! ring-core's types; the server ([`crate::server`]) makes the messages ([`crate::wire`]).

use crate::backing::{Backing, CpuBacking, CpuLayout, OpenBacking};
use crate::doorbell::EventFdDoorbell;
use crate::error::Error;
use crate::postmortem::{CLOCK_FILE, FORMATS_FILE};
use parking_lot::Mutex;
use ring_core::{Arming, Clock, ClockParams, Config, CpuBuffer, ReaderUpdate, Stats, SwapError, TraceClock};
use std::os::fd::BorrowedFd;
use zerocopy::IntoBytes;

/// What the control socket serves, in ring-core's terms: the server ([`crate::Server`]) checks
/// each request, asks the producer, and makes the answer ([`crate::wire`]), so a producer knows
/// nothing of the wire format. The server checks `cpu < nr_cpus()` before calling any per-CPU
/// method, and calls from the threads serving its connections, so concurrently.
///
/// [`ShmProducer`] implements it for buffers written in this process; a hypervisor backend
/// forwards each call to the hypervisor. One might look like this, `Hypervisor` standing for
/// its calls:
///
/// ```
/// use ring_core::{Arming, ClockParams, Config, ReaderUpdate, Stats, SwapError, TraceClock};
/// use ring_mmap::Producer;
/// use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
///
/// /// The hypervisor's tracing calls, their results decoded into ring-core's types.
/// trait Hypervisor: Send + Sync {
///     fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError>;
///     fn stats(&self, cpu: u32) -> Option<Stats>;
///     fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming;
///     fn disarm_doorbell(&self, cpu: u32);
///     fn clock(&self, target: TraceClock) -> Option<ClockParams>;
/// }
///
/// /// One CPU's buffer as the host shares it: its file (docs/abi.md §1), opened read-only for
/// /// consumers, and the eventfd its doorbell interrupt signals.
/// struct SharedCpu {
///     file: OwnedFd,
///     doorbell: OwnedFd,
/// }
///
/// struct Backend<H> {
///     hypervisor: H,
///     config: Config,
///     cpus: Vec<SharedCpu>,
///     formats: Vec<u8>,
/// }
///
/// impl<H: Hypervisor> Producer for Backend<H> {
///     fn nr_cpus(&self) -> u32 {
///         self.cpus.len() as u32
///     }
///     fn config(&self) -> Config {
///         self.config
///     }
///     fn cpu_fds(&self, cpu: u32) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
///         let c = &self.cpus[cpu as usize];
///         (c.file.as_fd(), c.doorbell.as_fd())
///     }
///     fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError> {
///         self.hypervisor.swap_reader_page(cpu, read)
///     }
///     fn stats(&self, cpu: u32) -> Option<Stats> {
///         self.hypervisor.stats(cpu)
///     }
///     fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming {
///         self.hypervisor.arm_doorbell(cpu, pages)
///     }
///     fn disarm_doorbell(&self, cpu: u32) {
///         self.hypervisor.disarm_doorbell(cpu)
///     }
///     fn formats(&self) -> &[u8] {
///         &self.formats
///     }
///     fn clock(&self, target: TraceClock) -> Option<ClockParams> {
///         self.hypervisor.clock(target)
///     }
/// }
/// ```
pub trait Producer: Send + Sync {
    /// Number of CPUs.
    fn nr_cpus(&self) -> u32;
    /// Geometry and mode of every CPU's buffer; with [`Producer::nr_cpus`] and the length of
    /// [`Producer::formats`], what `HELLO` tells. Each CPU's file is laid out as [`CpuLayout`]
    /// says for this geometry.
    fn config(&self) -> Config;
    /// CPU `cpu`'s buffer file (read-only descriptor) and doorbell eventfd.
    fn cpu_fds(&self, cpu: u32) -> (BorrowedFd<'_>, BorrowedFd<'_>);
    /// GET_READER_PAGE: [`CpuBuffer::swap_reader_page`] on CPU `cpu`. A [`SwapError`] for which
    /// [`SwapError::is_bad_read`] holds is answered `EINVAL`, any other `EBUSY` (retry).
    fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError>;
    /// CPU `cpu`'s counters, exact ([`CpuBuffer::stats`]), or `None`
    /// while it has none to give (a hypervisor whose buffer is being reloaded): the server
    /// answers EBUSY then, never made-up zeros.
    fn stats(&self, cpu: u32) -> Option<Stats>;
    /// WAIT: arms CPU `cpu`'s doorbell ([`CpuBuffer::arm_doorbell`]) and says whether it was
    /// armed and how many pages are finished ([`CpuBuffer::full_pages`]).
    fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming;
    /// Withdraws an arming (its consumer left).
    fn disarm_doorbell(&self, cpu: u32);
    /// The event-format descriptions consumers decode events with.
    fn formats(&self) -> &[u8];
    /// The conversion of raw timestamps to nanoseconds of `target` ([`ClockParams::IDENTITY`]
    /// if they are such nanoseconds already), or `None` if this producer cannot relate its clock
    /// to `target` exactly (answered `EOPNOTSUPP`: a consumer must not merge its events with a
    /// trace on that clock). Every producer answers [`TraceClock::Own`].
    fn clock(&self, target: TraceClock) -> Option<ClockParams>;
}

/// How to build a [`ShmProducer`].
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Number of per-CPU buffers.
    pub nr_cpus: u32,
    /// Geometry and mode of each.
    pub buffer: Config,
    /// Where their memory lives.
    pub backing: Backing,
    /// Event-format descriptions to publish (opaque to ring-mmap).
    pub formats: Vec<u8>,
}

struct ProducerCpu<C: Clock> {
    buffer: CpuBuffer<'static, C, EventFdDoorbell>,
    // Declared after `buffer`, which points into it, so that it is dropped after it.
    backing: CpuBacking,
}

/// Per-CPU buffers in shared files, for writers in this process.
pub struct ShmProducer<C: Clock> {
    cpus: Vec<ProducerCpu<C>>,
    config: ProducerConfig,
    /// `config.backing`, open: where the clock conversion is published.
    backing: OpenBacking,
    clock: Mutex<ClockParams>,
}

impl<C: Clock> core::fmt::Debug for ShmProducer<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShmProducer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl<C: Clock> ShmProducer<C> {
    /// Creates the buffers; `clock(cpu)` gives each CPU's clock.
    pub fn new(config: ProducerConfig, mut clock: impl FnMut(u32) -> C) -> Result<Self, Error> {
        if config.nr_cpus == 0 {
            return Err(Error::NoCpus);
        }
        let layout = CpuLayout { geometry: config.buffer.geometry };
        let open_backing = config.backing.open()?;
        let mut cpus = Vec::with_capacity(config.nr_cpus as usize);
        for cpu in 0..config.nr_cpus {
            let backing = CpuBacking::create(&open_backing, cpu, layout)?;
            // SAFETY: the regions go into `buffer`, stored next to `backing` in a `ProducerCpu`
            // whose field order drops `buffer` first; ring-core accesses them only atomically.
            let (meta, data) = unsafe { backing.regions() };
            let buffer = CpuBuffer::with_own_links(config.buffer, meta, data, clock(cpu))?
                .with_doorbell(EventFdDoorbell::new()?);
            cpus.push(ProducerCpu { buffer, backing });
        }
        open_backing.remove_stale_files(config.nr_cpus)?;
        open_backing.publish(FORMATS_FILE, &config.formats)?;
        Ok(Self { cpus, config, backing: open_backing, clock: Mutex::new(ClockParams::IDENTITY) })
    }

    /// CPU `cpu`'s buffer; write events through its one writer ([`CpuBuffer::writer`], claimed
    /// by the thread that writes this CPU's events). Panics if there is no such CPU.
    pub fn cpu(&self, cpu: u32) -> &CpuBuffer<'static, C, EventFdDoorbell> {
        &self.cpus[cpu as usize].buffer
    }

    /// All CPUs' buffers, in CPU order.
    pub fn cpus(&self) -> impl ExactSizeIterator<Item = &CpuBuffer<'static, C, EventFdDoorbell>> {
        self.cpus.iter().map(|c| &c.buffer)
    }

    /// Publishes a new raw-clock conversion (the identity until then).
    pub fn set_clock(&self, clock: ClockParams) -> Result<(), Error> {
        let mut current = self.clock.lock();
        self.backing.publish(CLOCK_FILE, clock.as_bytes())?;
        *current = clock;
        Ok(())
    }

    fn buffer(&self, cpu: u32) -> &CpuBuffer<'static, C, EventFdDoorbell> {
        &self.cpus[cpu as usize].buffer
    }
}

impl<C: Clock + Send + Sync> Producer for ShmProducer<C> {
    fn nr_cpus(&self) -> u32 {
        self.config.nr_cpus
    }

    fn config(&self) -> Config {
        self.config.buffer
    }

    fn cpu_fds(&self, cpu: u32) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        let c = &self.cpus[cpu as usize];
        (c.backing.read_only_fd(), c.buffer.doorbell().fd())
    }

    fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError> {
        self.buffer(cpu).swap_reader_page(read)
    }

    fn stats(&self, cpu: u32) -> Option<Stats> {
        Some(self.buffer(cpu).stats())
    }

    fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming {
        let b = self.buffer(cpu);
        let ready = b.arm_doorbell(pages);
        Arming { ready, full_pages: b.full_pages() }
    }

    fn disarm_doorbell(&self, cpu: u32) {
        self.buffer(cpu).disarm_doorbell();
    }

    fn formats(&self) -> &[u8] {
        &self.config.formats
    }

    /// Only [`TraceClock::Own`]: what its clock counts is up to the code that made it.
    fn clock(&self, target: TraceClock) -> Option<ClockParams> {
        (target == TraceClock::Own).then(|| *self.clock.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring_core::{CounterClock, Geometry, Mode};

    #[test]
    fn a_producer_of_no_cpus_is_refused() {
        let buffer = Config { geometry: Geometry::new(4096, 4).unwrap(), mode: Mode::Drop };
        let config = ProducerConfig { nr_cpus: 0, buffer, backing: Backing::Memfd, formats: Vec::new() };
        assert!(matches!(ShmProducer::new(config, |_| CounterClock::new(1)), Err(Error::NoCpus)));
    }
}
