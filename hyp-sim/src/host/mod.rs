//! The host: the untrusted domain. It owns the RAM the hypervisor traces into, donates it with
//! the `LOAD` hypercall, keeps the hypervisor's clock calibrated, and exports the buffers to
//! consumers in other processes as a [`ring_mmap::Producer`] (GET_READER_PAGE becomes the
//! `SWAP_READER` hypercall). It reaches the hypervisor only through [`Host::hvc`].

pub mod clock;

use crate::events;
use crate::hyp::desc::{CpuDesc, DescHeader, MAX_DESC_BYTES};
use crate::hyp::stats::HypStats;
use crate::hyp::{HvcRet, Hyp, call};
use crate::platform::{Platform, PlatformBuilder};
use clock::ClockSync;
use parking_lot::Mutex;
use ring_core::{Arming, ClockParams, Config, ReaderUpdate, Stats, SwapError, SwapStatus, TraceClock};
use ring_mmap::backing::{Backing, CpuLayout};
use ring_mmap::producer::Producer;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zerocopy::IntoBytes;

/// How the host sets up tracing.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Physical CPUs (one buffer each).
    pub nr_cpus: u32,
    /// Geometry and mode of each buffer.
    pub buffer: Config,
    /// Where buffer memory lives (memfds, or files in a directory).
    pub backing: Backing,
}

/// Why the host could not do something.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A hypercall failed.
    #[error("hypercall {call} failed: {}", std::io::Error::from_raw_os_error(-*code as i32))]
    Hypercall {
        /// Which.
        call: &'static str,
        /// The negative errno it returned.
        code: i64,
    },
    /// The machine could not be set up.
    #[error("setting up the machine: {0}")]
    Platform(#[from] std::io::Error),
    /// Buffer memory could not be created.
    #[error(transparent)]
    Memory(#[from] ring_mmap::Error),
    /// The configuration asks for more than the hypervisor supports.
    #[error("{what} is {got}, the hypervisor supports at most {max}")]
    Limit {
        /// What is out of range.
        what: &'static str,
        /// The value asked for.
        got: u64,
        /// The largest supported.
        max: u64,
    },
}

/// The host.
#[derive(Debug)]
pub struct Host {
    platform: Arc<Platform>,
    hyp: Arc<Hyp>,
    config: HostConfig,
    /// RAM region of each CPU's buffer file.
    buffers: Vec<usize>,
    /// RAM region the host writes hypercall descriptors in.
    scratch: usize,
    formats: Vec<u8>,
    clock: Mutex<ClockSync>,
    /// Per CPU: whether a consumer has asked for its reader page yet.
    consumed: Vec<AtomicBool>,
}

/// Most sub-buffers per CPU the hypervisor is booted to handle.
pub const HYP_MAX_SUBBUFS: u32 = 4096;

impl Host {
    /// Builds the machine (RAM for each CPU's buffer, scratch memory), boots the hypervisor,
    /// donates the buffers (`LOAD`), calibrates the trace clock (`UPDATE_CLOCK`) and turns tracing
    /// on (`ENABLE`).
    pub fn boot(config: HostConfig) -> Result<Self, HostError> {
        let geometry = config.buffer.geometry;
        for (what, got, max) in [
            ("the number of CPUs", config.nr_cpus, crate::hyp::desc::MAX_CPUS as u32),
            ("the number of sub-buffers per CPU", geometry.nr_subbufs(), HYP_MAX_SUBBUFS),
            ("the sub-buffer size", geometry.subbuf_size(), crate::hyp::desc::MAX_SUBBUF_SIZE),
        ] {
            if got > max {
                return Err(HostError::Limit { what, got: u64::from(got), max: u64::from(max) });
            }
        }
        let layout = CpuLayout { geometry: config.buffer.geometry };
        let config_cpus = config.nr_cpus;
        let mut builder = PlatformBuilder::new(config.nr_cpus);
        let backing = config.backing.open()?;
        let buffers =
            (0..config.nr_cpus).map(|cpu| builder.buffer(&backing, cpu, layout)).collect::<Result<Vec<_>, _>>()?;
        backing.remove_stale_files(config.nr_cpus)?;
        let scratch = builder.anon(MAX_DESC_BYTES)?;
        let platform = Arc::new(builder.build()?);
        let hyp = Arc::new(Hyp::boot(platform.clone(), HYP_MAX_SUBBUFS));
        let host = Self {
            platform,
            hyp,
            config,
            buffers,
            scratch,
            formats: events::formats_blob(),
            clock: Mutex::new(ClockSync::start(Duration::from_millis(20))),
            consumed: (0..config_cpus).map(|_| AtomicBool::new(false)).collect(),
        };
        // What a post-mortem reader of a buffer directory needs besides the buffers (events are
        // stamped in nanoseconds already, so no clock file).
        backing.publish(ring_mmap::postmortem::FORMATS_FILE, &host.formats)?;
        let (addr, len) = host.write_descriptor();
        host.call("LOAD", call::LOAD, [addr, len, 0, 0])?;
        let params = host.clock.lock().params();
        host.call(
            "UPDATE_CLOCK",
            call::UPDATE_CLOCK,
            [params.mult.into(), params.shift.into(), params.epoch_ns, params.epoch_raw],
        )?;
        host.set_tracing(true)?;
        Ok(host)
    }

    /// The hypervisor (the vCPUs run in it; the host itself only uses [`Host::hvc`]).
    pub fn hyp(&self) -> &Arc<Hyp> {
        &self.hyp
    }

    /// The machine.
    pub fn platform(&self) -> &Arc<Platform> {
        &self.platform
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// A hypercall.
    pub fn hvc(&self, call: u64, args: [u64; 4]) -> HvcRet {
        self.hyp.hvc(call, args)
    }

    /// A hypercall that must succeed.
    fn call(&self, name: &'static str, call: u64, args: [u64; 4]) -> Result<HvcRet, HostError> {
        let ret = self.hvc(call, args);
        if ret.status < 0 {
            return Err(HostError::Hypercall { call: name, code: ret.status });
        }
        Ok(ret)
    }

    /// Writes the load descriptor for the host's buffers into scratch RAM; returns its address
    /// and length.
    pub fn write_descriptor(&self) -> (u64, u64) {
        let geometry = self.config.buffer.geometry;
        let mode = self.config.buffer.mode.to_wire();
        let header = DescHeader::new(self.config.nr_cpus, geometry.subbuf_size(), geometry.nr_subbufs(), mode);
        let mut bytes = header.as_bytes().to_vec();
        let meta_len = geometry.meta_size() as u64;
        for (cpu, &region) in self.buffers.iter().enumerate() {
            let base = self.platform.region(region).base();
            let d = CpuDesc {
                cpu: cpu as u32,
                _reserved: 0,
                meta_addr: base,
                meta_len,
                data_addr: base + meta_len,
                data_len: geometry.data_len() as u64,
            };
            bytes.extend_from_slice(d.as_bytes());
        }
        let scratch = self.platform.region(self.scratch);
        scratch.shm().store_bytes(0, &bytes);
        (scratch.base(), bytes.len() as u64)
    }

    /// Turns tracing on or off.
    pub fn set_tracing(&self, on: bool) -> Result<(), HostError> {
        self.call("ENABLE", call::ENABLE, [u64::from(on), 0, 0, 0]).map(|_| ())
    }

    /// Recalibrates the trace clock and hands the new parameters to the hypervisor. Returns the
    /// drift measured before the update, in ns (hypervisor minus host).
    pub fn recalibrate_clock(&self) -> Result<i64, HostError> {
        let (params, drift) = self.clock.lock().recalibrate();
        let args = [params.mult.into(), params.shift.into(), params.epoch_ns, params.epoch_raw];
        self.call("UPDATE_CLOCK", call::UPDATE_CLOCK, args)?;
        Ok(drift)
    }

    /// (largest drift, last drift, recalibrations) of the trace clock, drifts in ns.
    pub fn clock_report(&self) -> (i64, i64, u64) {
        self.clock.lock().report()
    }

    /// CPU `cpu`'s exact counters, and events discarded while its buffer was busy (a `STATS`
    /// hypercall per group).
    pub fn cpu_stats(&self, cpu: u32) -> Result<HypStats, HostError> {
        HypStats::gather(|group| self.call("STATS", call::STATS, [u64::from(cpu), group, 0, 0]).map(|r| r.ret))
    }

    /// True once a consumer has asked for every CPU's reader page (GET_READER_PAGE), that is,
    /// once every CPU's buffer is being consumed.
    pub fn every_cpu_consumed(&self) -> bool {
        // Ordering: Relaxed; a readiness flag, carrying no data.
        self.consumed.iter().all(|c| c.load(Ordering::Relaxed))
    }

    /// True once a consumer has asked for CPU `cpu`'s reader page.
    pub fn was_consumed(&self, cpu: u32) -> bool {
        // Ordering: Relaxed; see `every_cpu_consumed`.
        self.consumed.get(cpu as usize).is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// True while CPU `cpu`'s buffer holds committed events its consumer has not taken: finished
    /// pages not given back, events on the reader page past the `read` last given back, or
    /// events on the page the writer is on when that is not the reader page. Told from the
    /// hypervisor's STATS and the host's own view of the shared meta area and pages.
    pub fn has_unread(&self, cpu: u32) -> bool {
        let Ok(HypStats { stats, .. }) = self.cpu_stats(cpu) else { return false };
        if stats.full_pages > 0 {
            return true;
        }
        let shm = self.platform.region(self.buffers[cpu as usize]).shm();
        let geometry = self.config.buffer.geometry;
        // Ordering: Relaxed loads, and an Acquire on the tail id pairing with the writer's Release
        // store of it when it moved onto its page: a hint for lingering, taken again each poll, so
        // a value a moment old only delays the decision by one poll.
        let commit = |id: u32| {
            if id >= geometry.nr_subbufs() {
                return 0;
            }
            let at = geometry.meta_size() + geometry.subbuf_offset(id) + ring_core::format::SUBBUF_COMMIT_OFFSET;
            (shm.load_u64(at) & ring_core::format::COMMIT_LEN_MASK) as u32
        };
        let reader = shm.load_u32(ring_core::meta::off::READER_ID);
        let read = shm.load_u32(ring_core::meta::off::READER_READ);
        let tail = shm.load_u32_acquire(ring_core::meta::off::EXT_TAIL_ID);
        commit(reader) > read || (tail != reader && commit(tail) > 0)
    }

    /// Why the hypervisor refused `read` on CPU `cpu` as a bad argument, told by the hypervisor's
    /// own check ([`ring_core::check_read`]) run on the host's view of the shared meta area and
    /// reader page (for error reports only: the hypervisor's verdict is what counts).
    fn read_refusal(&self, cpu: u32, read: u32) -> SwapError {
        let shm = self.platform.region(self.buffers[cpu as usize]).shm();
        let geometry = self.config.buffer.geometry;
        // Ordering: Relaxed loads of fields the hypervisor published; an error report reads them
        // after the refusal, with no ordering needed against later swaps.
        let reader = shm.load_u32(ring_core::meta::off::READER_ID);
        let consumed = shm.load_u32(ring_core::meta::off::READER_READ);
        let page_len = geometry.subbuf_size() as usize;
        let page = (reader < geometry.nr_subbufs())
            .then(|| ring_core::ShmPage::new(shm, geometry.meta_size() + geometry.subbuf_offset(reader), page_len))
            .flatten();
        // A meta area naming no page (scribbled on): nothing is committed that the host can see.
        let Some(page) = page else { return SwapError::ReadPastCommit { read, commit: 0 } };
        let commit = (page.commit() & ring_core::format::COMMIT_LEN_MASK) as u32;
        match ring_core::check_read(&page, commit, consumed, read) {
            Err(refusal) => refusal,
            // What the host sees changed since the refusal (a concurrent swap): ask again.
            Ok(()) => SwapError::Busy,
        }
    }
}

impl Producer for Host {
    fn nr_cpus(&self) -> u32 {
        self.config.nr_cpus
    }

    fn config(&self) -> Config {
        self.config.buffer
    }

    fn cpu_fds(&self, cpu: u32) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        let file = self.platform.region(self.buffers[cpu as usize]).read_only_fd().expect("buffer regions are files");
        (file, self.platform.irq(cpu).fd())
    }

    fn swap_reader_page(&self, cpu: u32, read: u32) -> Result<ReaderUpdate, SwapError> {
        // Ordering: Relaxed; see `every_cpu_consumed`. (The server checked `cpu < nr_cpus`.)
        self.consumed[cpu as usize].store(true, Ordering::Relaxed);
        let ret = self.hvc(call::SWAP_READER, [u64::from(cpu), u64::from(read), 0, 0]);
        let status = match u32::try_from(ret.status).ok().and_then(SwapStatus::from_wire) {
            Some(status) => status,
            None if ret.status == crate::hyp::HypError::BadArgument.code() => {
                return Err(self.read_refusal(cpu, read));
            }
            // Busy, or the buffers are being reloaded: the consumer retries.
            None => return Err(SwapError::Busy),
        };
        let [id, read, lost_events] = ret.ret;
        Ok(ReaderUpdate { status, id: id as u32, read: read as u32, lost_events })
    }

    fn stats(&self, cpu: u32) -> Option<Stats> {
        self.cpu_stats(cpu).ok().map(|s| s.stats)
    }

    fn arm_doorbell(&self, cpu: u32, pages: u32) -> Arming {
        let ret = self.hvc(call::ARM_DOORBELL, [u64::from(cpu), u64::from(pages), 0, 0]);
        // Not loaded: say ready, so the consumer asks and learns it directly.
        if ret.status < 0 {
            return Arming { ready: true, full_pages: 0 };
        }
        Arming { ready: ret.ret[0] != 0, full_pages: ret.ret[1] as u32 }
    }

    fn disarm_doorbell(&self, cpu: u32) {
        let _ = self.hvc(call::DISARM_DOORBELL, [u64::from(cpu), 0, 0, 0]);
    }

    fn formats(&self) -> &[u8] {
        &self.formats
    }

    /// The hypervisor stamps events in `CLOCK_MONOTONIC` nanoseconds already (its clock is
    /// calibrated against it, [`clock`]): its own clock and `mono` are the identity, `boot` the
    /// identity moved by the time the host has spent suspended.
    fn clock(&self, target: TraceClock) -> Option<ClockParams> {
        Some(match target {
            TraceClock::Own | TraceClock::Mono => ClockParams::IDENTITY,
            TraceClock::Boot => ClockParams { epoch_ns: clock::boot_offset_ns(), ..ClockParams::IDENTITY },
        })
    }
}
