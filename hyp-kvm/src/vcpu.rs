//! Running one vCPU on the calling thread, exit by exit.

use std::sync::Arc;

use kvm_bindings::{KVM_EXIT_IO, kvm_regs};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::exit::{Direction, Exit, MmioAccess, PortIo, ReadRequest, StopReason};
use crate::guest::{self, GuestFault, abi};
use crate::stop::{StopState, VcpuStop};
use crate::{Error, exit_reason};

/// The value of RFLAGS at start: only the always-one bit 1, so interrupts are off.
const RFLAGS_START: u64 = 0x2;

/// One vCPU of a [`crate::Vm`], run by whichever thread owns it (it is `Send`, not `Sync`).
#[derive(Debug)]
pub struct Vcpu {
    // Declared before `_memory` so the vCPU is closed before its share of the memory goes.
    fd: VcpuFd,
    index: usize,
    finished: bool,
    /// Whether it is stopped, and the thread inside its guest, shared with its [`VcpuStop`]s.
    stop: Arc<StopState>,
    /// Keeps guest memory mapped while KVM can still run this vCPU in it.
    _memory: Arc<GuestMemoryMmap>,
}

impl Vcpu {
    /// Creates vCPU `index` in real mode at the program's start, with `esi` pointing at its
    /// parameter block.
    pub(crate) fn new(vm: &VmFd, index: usize, memory: Arc<GuestMemoryMmap>) -> Result<Vcpu, Error> {
        let kvm = |operation| move |source| Error::Kvm { operation, source };
        let fd = vm.create_vcpu(index as u64).map_err(kvm("KVM_CREATE_VCPU"))?;
        // Real mode with every segment at base 0, so the program's addresses are
        // guest-physical addresses.
        let mut sregs = fd.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
        for segment in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
            segment.base = 0;
            segment.selector = 0;
        }
        fd.set_sregs(&sregs).map_err(kvm("KVM_SET_SREGS"))?;
        let regs = kvm_regs {
            rip: abi::PROGRAM_START,
            rflags: RFLAGS_START,
            rsi: guest::params_address(index),
            ..Default::default()
        };
        fd.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;
        Ok(Vcpu { fd, index, finished: false, stop: Arc::default(), _memory: memory })
    }

    /// This vCPU's index in its VM (its KVM vCPU id).
    pub fn index(&self) -> usize {
        self.index
    }

    /// A handle that stops this vCPU from another thread, even while it runs a guest that never
    /// exits ([`crate::stop`]).
    pub fn stopper(&self) -> VcpuStop {
        VcpuStop::new(self.stop.clone(), self.index)
    }

    /// Runs the guest until its next exit and returns it. A read (`in`, an MMIO load) is
    /// answered with what `answer` returns for it, truncated to the access size, which the guest
    /// sees when the vCPU next runs; `answer` is not called for other exits.
    ///
    /// After [`Exit::Done`], [`Exit::Stopped`] or an error the vCPU has finished: running it
    /// again is [`Error::Finished`]. Once a [`VcpuStop`] stopped a vCPU that had not finished,
    /// every run returns [`Exit::Interrupted`] at once, without entering the guest: a caller
    /// that loops on `Interrupted` looks at its own reason to stop, as hyp-sim's vCPU threads do.
    pub fn run(&mut self, answer: impl FnOnce(ReadRequest) -> u64) -> Result<Exit, Error> {
        if self.finished {
            return Err(Error::Finished { vcpu: self.index });
        }
        let exit = self.enter(answer);
        self.finished = !matches!(exit, Ok(Exit::Io(_) | Exit::Mmio(_) | Exit::Halt | Exit::Interrupted));
        exit
    }

    /// One `KVM_RUN`, its exit turned into an [`Exit`].
    fn enter(&mut self, answer: impl FnOnce(ReadRequest) -> u64) -> Result<Exit, Error> {
        let Some(result) = self.stop.in_guest(|| self.fd.run())? else { return Ok(Exit::Interrupted) };
        let exit = match result {
            Ok(VcpuExit::IoOut(port, data)) => Exit::Io(PortIo {
                port,
                size: access_size(data),
                direction: Direction::Write,
                data: little_endian(data) as u32,
            }),
            Ok(VcpuExit::IoIn(port, data)) => {
                let value = answer(ReadRequest::Io { port, size: access_size(data) });
                fill(data, value);
                let size = access_size(data);
                Exit::Io(PortIo { port, size, direction: Direction::Read, data: little_endian(data) as u32 })
            }
            Ok(VcpuExit::MmioWrite(gpa, data)) => Exit::Mmio(MmioAccess {
                gpa,
                len: access_size(data),
                direction: Direction::Write,
                data: little_endian(data),
            }),
            Ok(VcpuExit::MmioRead(gpa, data)) => {
                let value = answer(ReadRequest::Mmio { gpa, len: access_size(data) });
                fill(data, value);
                Exit::Mmio(MmioAccess {
                    gpa,
                    len: access_size(data),
                    direction: Direction::Read,
                    data: little_endian(data),
                })
            }
            Ok(VcpuExit::Hlt) => Exit::Halt,
            Ok(VcpuExit::Intr) => Exit::Interrupted,
            Ok(VcpuExit::Shutdown) => Exit::Stopped(StopReason::Shutdown),
            Ok(VcpuExit::FailEntry(hardware_reason, _cpu)) => Exit::Stopped(StopReason::FailEntry { hardware_reason }),
            Ok(VcpuExit::InternalError) => Exit::Stopped(StopReason::InternalError),
            Ok(VcpuExit::MemoryFault { gpa, size, .. }) => Exit::Stopped(StopReason::MemoryFault { gpa, size }),
            Ok(other) => Exit::Stopped(StopReason::Unhandled { exit_reason: exit_reason::of(&other) }),
            Err(error) if error.errno() == libc::EINTR => Exit::Interrupted,
            Err(source) => return Err(Error::Kvm { operation: "KVM_RUN", source }),
        };
        match exit {
            Exit::Io(io) => self.port_io(io),
            other => Ok(other),
        }
    }

    /// Checks a port I/O exit moved one element, and turns the guest program's done and fault
    /// reports into [`Exit::Done`] and [`Error::GuestFault`].
    fn port_io(&mut self, access: PortIo) -> Result<Exit, Error> {
        let run = self.fd.get_kvm_run();
        debug_assert_eq!(run.exit_reason, KVM_EXIT_IO);
        // SAFETY: the exit reason is KVM_EXIT_IO (this is only called for IoIn/IoOut exits, which
        // kvm-ioctls reports for exactly that reason), for which the kernel fills the `io` member
        // of the union; it is plain integers, valid for any bit pattern.
        let io = unsafe { run.__bindgen_anon_1.io };
        if io.count != 1 {
            return Ok(Exit::Stopped(StopReason::StringIo { port: access.port, size: io.size, count: io.count }));
        }
        Ok(match (access.port, access.direction) {
            (abi::DONE_PORT, Direction::Write) => Exit::Done { counter: access.data },
            (abi::FAULT_PORT, Direction::Write) => {
                return Err(Error::GuestFault { vcpu: self.index, fault: GuestFault::from_code(access.data) });
            }
            _ => Exit::Io(access),
        })
    }
}

/// The size of an access, saturating: only string port I/O, which stops the vCPU, moves more
/// than 255 bytes in one exit.
fn access_size(bytes: &[u8]) -> u8 {
    u8::try_from(bytes.len()).unwrap_or(u8::MAX)
}

/// The value of `bytes`, little-endian, zero-extended; only the first 8 bytes count.
fn little_endian(bytes: &[u8]) -> u64 {
    let mut value = [0u8; 8];
    let len = bytes.len().min(8);
    value[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(value)
}

/// Fills `bytes` with `value`, little-endian, truncated (or zero-extended past 8 bytes).
fn fill(bytes: &mut [u8], value: u64) {
    let value = value.to_le_bytes();
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = value.get(index).copied().unwrap_or(0);
    }
}
