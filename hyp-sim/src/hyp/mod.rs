//! The hypervisor: the trusted domain. It records its own events into per-CPU ring buffers in
//! pages the host donates, and takes orders from the host only through [`Hyp::hvc`], a hypercall:
//! a call number and four register-sized arguments in, a status and three results out.
//!
//! Rules it keeps, as a real hypervisor must towards an untrusted host:
//! - **No allocation after boot.** Everything it needs (per-CPU state, the writer-private ring
//!   links for the largest buffers it accepts) is allocated in [`Hyp::boot`]; loading moves the
//!   preallocated links into the buffers and unloading moves them back.
//! - **No lock shared with the host.** Per-CPU state is a small state machine of atomics: the
//!   hypervisor's writer and the host's calls on a CPU count themselves in `users`; loading,
//!   unloading and resetting a CPU switch its state to `BUSY` and wait only for the users already
//!   inside to leave.
//! - **Every host input validated, no panic on any.** The load descriptor is copied out of host
//!   memory before it is checked ([`desc`]); every argument is range-checked; a failure is a
//!   negative errno ([`HypError`]).
//! - **Only donated memory is touched**, through regions built from validated ranges.

pub mod clock;
mod cpu;
pub mod desc;
pub mod error;
pub mod stats;

use crate::events::{self, EVENTS, HypEvent, MAX_PAYLOAD};
use crate::guest::{self, GuestExit};
use crate::platform::Platform;
use clock::{ClockParams, HypClock};
use cpu::{HypCpu, state};
use desc::{Load, MAX_DESC_BYTES};
pub use error::HypError;
use ring_core::{Clock, Config, CpuBuffer, Doorbell, ShmRegion, SubBufLink};
use stats::HypStats;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Hypercall numbers.
pub mod call {
    /// `LOAD(desc_addr, desc_len)`: take the donated pages the descriptor names and set up a buffer
    /// per CPU in them.
    pub const LOAD: u64 = 1;
    /// `UNLOAD()`: tear the buffers down and give the pages back.
    pub const UNLOAD: u64 = 2;
    /// `ENABLE(on)`: start (1) or stop (0) tracing.
    pub const ENABLE: u64 = 3;
    /// `ENABLE_EVENT(id, on)`: record (1) or ignore (0) event `id`.
    pub const ENABLE_EVENT: u64 = 4;
    /// `SWAP_READER(cpu, read)`: GET_READER_PAGE on `cpu`; status the swap's
    /// [`ring_core::SwapStatus::to_wire`] (0 swapped, 1 kept with unread data, 2 kept, writer on
    /// it), results `[id, read, lost_events]`. A `read` that is not an event boundary of the
    /// reader page within its commit, or is below the last one accepted for it, is `BadArgument`
    /// ([`ring_core::CpuBuffer::swap_reader_page`]).
    pub const SWAP_READER: u64 = 5;
    /// `RESET(cpu)`: empty `cpu`'s buffer.
    pub const RESET: u64 = 6;
    /// `UPDATE_CLOCK(mult, shift, epoch_ns, epoch_raw)`.
    pub const UPDATE_CLOCK: u64 = 7;
    /// `STATS(cpu, group)`: the three counters [`super::stats::GROUPS`] lists for `group`.
    pub const STATS: u64 = 8;
    /// `ARM_DOORBELL(cpu, pages)`: results `[ready, full_pages, 0]`.
    pub const ARM_DOORBELL: u64 = 9;
    /// `DISARM_DOORBELL(cpu)`.
    pub const DISARM_DOORBELL: u64 = 10;
}

/// What a hypercall returns: a status (0 or more: success; negative: an errno) and three result
/// registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvcRet {
    /// Status.
    pub status: i64,
    /// Results.
    pub ret: [u64; 3],
}

impl HvcRet {
    /// Success, with no results.
    const DONE: Self = Self { status: 0, ret: [0; 3] };

    fn ok(status: i64, ret: [u64; 3]) -> Self {
        Self { status, ret }
    }
}

/// The clock the hypervisor's buffers stamp events with.
#[derive(Debug, Clone)]
pub struct TraceClock(Arc<HypClock>);

impl Clock for TraceClock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.now()
    }
}

/// A CPU's doorbell: its interrupt line to the host.
#[derive(Debug, Clone)]
pub struct IrqDoorbell {
    platform: Arc<Platform>,
    cpu: u32,
}

impl Doorbell for IrqDoorbell {
    fn ring(&self) {
        ring_core::Doorbell::ring(self.platform.irq(self.cpu));
    }
}

/// A hypervisor trace buffer.
pub type HypBuffer = CpuBuffer<'static, TraceClock, IrqDoorbell>;

/// Global load states.
mod load_state {
    pub const UNLOADED: u32 = 0;
    pub const LOADING: u32 = 1;
    pub const LOADED: u32 = 2;
    pub const UNLOADING: u32 = 3;
}

/// The hypervisor.
pub struct Hyp {
    platform: Arc<Platform>,
    clock: Arc<HypClock>,
    cpus: Box<[HypCpu]>,
    links_per_cpu: u32,
    load: AtomicU32,
    enabled: AtomicBool,
    /// Bit `id` set: event `id` is recorded.
    events: AtomicU64,
}

// Every event of the table has its bit in `Hyp::events`.
const _: () = assert!((events::MAX_ID as u32) < u64::BITS, "an event id has no bit in the enable mask: widen it");

impl core::fmt::Debug for Hyp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hyp").field("cpus", &self.cpus.len()).field("links_per_cpu", &self.links_per_cpu).finish()
    }
}

impl Hyp {
    /// Boots on `platform`, able to take buffers of up to `links_per_cpu` sub-buffers per CPU.
    /// All the memory the hypervisor will ever need is allocated here.
    pub fn boot(platform: Arc<Platform>, links_per_cpu: u32) -> Self {
        let cpus = (0..platform.nr_cpus())
            .map(|_| HypCpu::new((0..links_per_cpu).map(|_| SubBufLink::new()).collect()))
            .collect();
        let all_events = EVENTS.iter().fold(0u64, |m, e| m | 1 << e.id);
        Self {
            platform,
            clock: Arc::new(HypClock::default()),
            cpus,
            links_per_cpu,
            load: AtomicU32::new(load_state::UNLOADED),
            enabled: AtomicBool::new(false),
            events: AtomicU64::new(all_events),
        }
    }

    /// The hypervisor's trace clock (the writer side reads it; the host only through hypercalls).
    pub fn clock(&self) -> &HypClock {
        &self.clock
    }

    /// Records `event` on `cpu`, for the host task `pid`: the hypervisor's own tracing, called from
    /// its exit handlers. Never fails: an event it cannot record is counted (dropped by the ring
    /// buffer, or discarded while the CPU's buffer is reset or torn down).
    pub fn trace(&self, cpu: u32, pid: i32, event: &HypEvent<'_>) {
        self.trace_all(cpu, pid, &[*event]);
    }

    /// Records `events` on `cpu` one after the other, as [`Hyp::trace`] does each, entering the
    /// CPU's buffer once for all of them: entering and leaving are an atomic read-modify-write
    /// each, the most expensive steps of a small event.
    fn trace_all(&self, cpu: u32, pid: i32, events: &[HypEvent<'_>]) {
        // Ordering: Relaxed; tracing switches are advisory, an event racing a switch may or may
        // not be recorded.
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let Some(c) = self.cpus.get(cpu as usize) else { return };
        // Ordering: Relaxed, as `enabled`.
        let mask = self.events.load(Ordering::Relaxed);
        let wanted = |e: &HypEvent<'_>| mask & (1 << e.id()) != 0;
        let discard = || {
            let skipped = events.iter().filter(|e| wanted(e)).count() as u64;
            // Ordering: Relaxed; a statistic.
            c.discarded.fetch_add(skipped, Ordering::Relaxed);
        };
        match c.enter() {
            Some(using) => {
                // One writer per CPU: a second thread tracing on this CPU at the same moment
                // (a caller breaking the one-vCPU-thread-per-CPU rule) has its events discarded.
                let Ok(writer) = using.buffer().writer() else { return discard() };
                for event in events.iter().filter(|e| wanted(e)) {
                    let mut payload = [0u8; MAX_PAYLOAD];
                    let len = event.encode(pid, &mut payload);
                    // A full ring in drop mode is counted by the buffer itself.
                    let _ = writer.write(&payload[..len]);
                }
            }
            None if c.is_busy() => discard(),
            None => {}
        }
    }

    /// The exit handler: exit `n` of the vCPU running on physical CPU `cpu` for the host task
    /// (thread id) `task` enters the hypervisor, which records `hyp_enter`, what the exit was,
    /// and `hyp_exit`, each attributed to `task` (`common_pid`): the host thread whose run the
    /// exit interrupted, so a host trace beside this one shows the exits inside that thread's
    /// time on the CPU.
    pub fn handle_exit(&self, cpu: u32, task: i32, n: u64, exit: &GuestExit<'_>) {
        let mut text = [0u8; 64];
        let what = match *exit {
            GuestExit::Hcall { id, args } => HypEvent::HostHcall { id, args },
            GuestExit::Smc { func_id, forwarded } => HypEvent::HostSmc { func_id, forwarded },
            GuestExit::MemAbort { esr, addr } => HypEvent::HostMemAbort { esr, addr },
            GuestExit::Printk => HypEvent::Printk(guest::printk_message(cpu, n, &mut text)),
            GuestExit::Pio(access) => HypEvent::GuestPio(access),
            GuestExit::Mmio(access) => HypEvent::GuestMmio(access),
            GuestExit::Halt => HypEvent::GuestHlt,
            GuestExit::Stop { exit_reason, reason } => HypEvent::GuestStop { exit_reason, reason },
        };
        self.trace_all(cpu, task, &[HypEvent::Enter, what, HypEvent::Exit]);
    }

    /// A hypercall from the host. Any call number and arguments are accepted: unknown calls and
    /// bad arguments get a negative errno, never a panic.
    pub fn hvc(&self, call: u64, args: [u64; 4]) -> HvcRet {
        match self.dispatch(call, args) {
            Ok(ret) => ret,
            Err(e) => HvcRet { status: e.code(), ret: [0; 3] },
        }
    }

    fn dispatch(&self, call: u64, [a0, a1, a2, a3]: [u64; 4]) -> Result<HvcRet, HypError> {
        match call {
            call::LOAD => self.load(a0, a1).map(|()| HvcRet::DONE),
            call::UNLOAD => self.unload().map(|()| HvcRet::DONE),
            call::ENABLE => self.enable(a0).map(|()| HvcRet::DONE),
            call::ENABLE_EVENT => self.enable_event(a0, a1).map(|()| HvcRet::DONE),
            call::SWAP_READER => self.swap_reader(a0, a1),
            call::RESET => self.reset(a0).map(|()| HvcRet::DONE),
            call::UPDATE_CLOCK => self.update_clock(a0, a1, a2, a3).map(|()| HvcRet::DONE),
            call::STATS => self.stats(a0, a1),
            call::ARM_DOORBELL => self.arm_doorbell(a0, a1),
            call::DISARM_DOORBELL => self.disarm_doorbell(a0).map(|()| HvcRet::DONE),
            _ => Err(HypError::UnknownCall),
        }
    }

    /// [`call::ENABLE`].
    fn enable(&self, on: u64) -> Result<(), HypError> {
        let on = flag(on)?;
        // Ordering: Relaxed, see `trace`. The meta pages' entry counts are final whenever no exit
        // is being traced: each exit's writer publishes its count when released.
        self.enabled.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// [`call::ENABLE_EVENT`].
    fn enable_event(&self, id: u64, on: u64) -> Result<(), HypError> {
        let id = u16::try_from(id).ok().filter(|id| events::by_id(*id).is_some());
        let bit = 1u64 << id.ok_or(HypError::BadArgument)?;
        // Ordering: Relaxed, see `trace`.
        if flag(on)? {
            self.events.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.events.fetch_and(!bit, Ordering::Relaxed);
        }
        Ok(())
    }

    /// [`call::SWAP_READER`].
    fn swap_reader(&self, cpu: u64, read: u64) -> Result<HvcRet, HypError> {
        let read = u32::try_from(read).map_err(|_| HypError::BadArgument)?;
        let using = self.cpu(cpu)?.enter().ok_or(HypError::NotLoaded)?;
        match using.buffer().swap_reader_page(read) {
            Ok(up) => {
                let status = i64::from(up.status.to_wire());
                Ok(HvcRet::ok(status, [u64::from(up.id), u64::from(up.read), up.lost_events]))
            }
            // A read past the commit, behind the last one, or not at an event boundary.
            Err(e) if e.is_bad_read() => Err(HypError::BadArgument),
            Err(_) => Err(HypError::Busy),
        }
    }

    /// [`call::RESET`].
    fn reset(&self, cpu: u64) -> Result<(), HypError> {
        let mut held = self.cpu(cpu)?.claim(state::LOADED).map_err(|found| match found {
            state::EMPTY => HypError::NotLoaded,
            _ => HypError::Busy,
        })?;
        if let Some(buffer) = held.cells().buffer.as_mut() {
            buffer.reset();
        }
        held.release(state::LOADED);
        Ok(())
    }

    /// [`call::UPDATE_CLOCK`].
    fn update_clock(&self, mult: u64, shift: u64, epoch_ns: u64, epoch_raw: u64) -> Result<(), HypError> {
        let (Ok(mult), Ok(shift)) = (u32::try_from(mult), u32::try_from(shift)) else {
            return Err(HypError::BadArgument);
        };
        if mult == 0 || shift > 63 {
            return Err(HypError::BadArgument);
        }
        if !self.clock.update(ClockParams { mult, shift, epoch_ns, epoch_raw }) {
            return Err(HypError::Busy);
        }
        Ok(())
    }

    /// [`call::STATS`] of CPU `a0`, group `a1`.
    fn stats(&self, a0: u64, a1: u64) -> Result<HvcRet, HypError> {
        let c = self.cpu(a0)?;
        let using = c.enter().ok_or(HypError::NotLoaded)?;
        // Ordering: Relaxed; a statistic.
        let all = HypStats { stats: using.buffer().stats(), discarded: c.discarded.load(Ordering::Relaxed) };
        Ok(HvcRet::ok(0, all.group(a1).ok_or(HypError::BadArgument)?))
    }

    /// [`call::ARM_DOORBELL`].
    fn arm_doorbell(&self, cpu: u64, pages: u64) -> Result<HvcRet, HypError> {
        let pages = u32::try_from(pages).unwrap_or(u32::MAX);
        let using = self.cpu(cpu)?.enter().ok_or(HypError::NotLoaded)?;
        let ready = using.buffer().arm_doorbell(pages);
        Ok(HvcRet::ok(0, [u64::from(ready), u64::from(using.buffer().full_pages()), 0]))
    }

    /// [`call::DISARM_DOORBELL`].
    fn disarm_doorbell(&self, cpu: u64) -> Result<(), HypError> {
        let using = self.cpu(cpu)?.enter().ok_or(HypError::NotLoaded)?;
        using.buffer().disarm_doorbell();
        Ok(())
    }

    fn cpu(&self, cpu: u64) -> Result<&HypCpu, HypError> {
        usize::try_from(cpu).ok().and_then(|c| self.cpus.get(c)).ok_or(HypError::BadArgument)
    }

    fn load(&self, desc_addr: u64, desc_len: u64) -> Result<(), HypError> {
        // Ordering: Acquire pairs with the Release that ended the previous load or unload.
        match self.load.compare_exchange(
            load_state::UNLOADED,
            load_state::LOADING,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {}
            Err(load_state::LOADED) => return Err(HypError::AlreadyLoaded),
            Err(_) => return Err(HypError::Busy),
        }
        let result = self.load_from(desc_addr, desc_len);
        let end = if result.is_ok() { load_state::LOADED } else { load_state::UNLOADED };
        // Ordering: Release, see above.
        self.load.store(end, Ordering::Release);
        result
    }

    fn load_from(&self, desc_addr: u64, desc_len: u64) -> Result<(), HypError> {
        let len = usize::try_from(desc_len).ok().filter(|&l| l <= MAX_DESC_BYTES).ok_or(HypError::DescSize)?;
        let region = self.platform.find(desc_addr, desc_len).ok_or(HypError::DescOutsideRam)?;
        if !desc_addr.is_multiple_of(8) {
            return Err(HypError::Misaligned);
        }
        // Copy first: the host could change its memory while we check it.
        let mut copy = [0u8; MAX_DESC_BYTES];
        region.shm().load_bytes((desc_addr - region.base()) as usize, &mut copy[..len]);
        let load = desc::validate(&copy[..len], &self.platform, self.links_per_cpu)?;
        for i in 0..load.nr_cpus {
            if let Err(e) = self.load_cpu(&load, i) {
                for done in &load.cpus[..i] {
                    self.unload_cpu(&self.cpus[done.cpu as usize]);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Sets up the buffer of the `i`th CPU of a validated descriptor.
    fn load_cpu(&self, load: &Load, i: usize) -> Result<(), HypError> {
        let d = &load.cpus[i];
        let c = &self.cpus[d.cpu as usize];
        // A CPU is EMPTY here (the last unload emptied all); holding it keeps users out while we
        // write its cells, and dropping the hold on a failure leaves it EMPTY.
        let mut held = c.claim(state::EMPTY).map_err(|_| HypError::Busy)?;
        let region = |addr: u64, len: u64| {
            let ptr = NonNull::new(addr as *mut u8).expect("validated addresses lie in RAM, never at 0");
            // SAFETY: `validate` put `addr..addr + len` inside one platform RAM region (page
            // aligned, so 8-aligned), and the platform, which keeps that memory mapped, lives as
            // long as `self.platform`, longer than the buffer. Within this process that memory is
            // only accessed atomically: by the host through its own ShmRegions, by us through
            // these.
            unsafe { ShmRegion::from_raw_parts(ptr, len as usize) }
        };
        let links = held.cells().links.take().expect("an EMPTY CPU holds its links");
        let config = Config { geometry: load.geometry, mode: load.mode };
        let built = CpuBuffer::with_links(
            config,
            region(d.meta_addr, d.meta_len),
            region(d.data_addr, d.data_len),
            links,
            TraceClock(self.clock.clone()),
        );
        let buffer = match built {
            Ok(b) => b.with_doorbell(IrqDoorbell { platform: self.platform.clone(), cpu: d.cpu }),
            Err((error, links)) => {
                // `validate` checked everything the buffer needs, so this does not happen; if it
                // did, the CPU gets its links back and stays empty.
                *held.cells().links = Some(links);
                return Err(match error {
                    ring_core::GeometryError::MetaTooSmall { .. } => HypError::MetaSize,
                    ring_core::GeometryError::DataTooSmall { .. } => HypError::DataSize,
                    _ => HypError::SubBufCount,
                });
            }
        };
        *held.cells().buffer = Some(buffer);
        // Ordering: Relaxed; a fresh buffer starts a fresh count.
        c.discarded.store(0, Ordering::Relaxed);
        held.release(state::LOADED);
        Ok(())
    }

    fn unload(&self) -> Result<(), HypError> {
        // Ordering: Acquire/Release as in `load`.
        match self.load.compare_exchange(
            load_state::LOADED,
            load_state::UNLOADING,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => {}
            Err(load_state::UNLOADED) => return Err(HypError::NotLoaded),
            Err(_) => return Err(HypError::Busy),
        }
        for c in self.cpus.iter() {
            self.unload_cpu(c);
        }
        self.load.store(load_state::UNLOADED, Ordering::Release);
        Ok(())
    }

    /// Tears a CPU's buffer down (if it has one) and takes its links back.
    fn unload_cpu(&self, c: &HypCpu) {
        // Only load and unload touch EMPTY CPUs, and they are serialised by the global load
        // state; a concurrent RESET holds the CPU briefly.
        let mut held = loop {
            match c.claim(state::LOADED) {
                Ok(held) => break held,
                Err(state::EMPTY) => return,
                Err(_) => std::hint::spin_loop(),
            }
        };
        let cells = held.cells();
        *cells.links = cells.buffer.take().and_then(HypBuffer::into_links);
        held.release(state::EMPTY);
    }
}

/// A 0/1 flag argument.
fn flag(v: u64) -> Result<bool, HypError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(HypError::BadArgument),
    }
}
