//! The guest program, written as assembler calls: `build.rs` assembles it with iced-x86 into the
//! bytes the VM loads at `PROGRAM_START`.
//!
//! It runs in real mode (16-bit code, 32-bit registers through operand-size prefixes, all
//! segment bases 0, interrupts off, no stack). The host starts each vCPU with `esi` = the
//! address of that vCPU's parameter block and every other general register 0.
//!
//! Registers in the step loop:
//!
//! | register | holds |
//! | --- | --- |
//! | `ebx` | the counter: `seed + steps run so far` |
//! | `ecx` | steps still to run |
//! | `dx`  | [`HYPERCALL_PORT`]; `ECHO_PORT` is `HYPERCALL_PORT + 1` |
//! | `esi` | the parameter block's address |
//! | `edi` | the index of the current entry in the pattern |
//! | `ebp` | this vCPU's MMIO register address |
//!
//! Each step costs about ten instructions besides its exit: a load of the step code, an indirect
//! jump through a table, the step itself, and the counter and pattern bookkeeping. That matters
//! where KVM emulates every guest instruction.

use std::error::Error;

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};

use crate::abi::*;

/// Which of the step handlers each step code jumps to, in step-code order.
const STEP_HANDLERS: usize = STEP_COUNT as usize;

/// Where the jump table and the step handlers it points at lie in guest memory. The code cannot
/// name them before it is assembled, so a first pass assembles it with a guess and reports
/// where they landed, and a second pass uses that; `build.rs` checks that the second pass
/// reports the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The jump table's address.
    pub jump_table: u16,
    /// The address of each step handler, in step-code order: the jump table's contents.
    pub handlers: [u16; STEP_HANDLERS],
}

impl Layout {
    /// A first guess: any addresses do, as long as the code's size does not depend on them,
    /// which holds because the table is always addressed with a 32-bit displacement.
    pub const GUESS: Layout = Layout { jump_table: PROGRAM_START as u16, handlers: [0; STEP_HANDLERS] };
}

/// What a pass of the assembler produces: the code and where things landed in it.
pub struct Assembled {
    /// The program's bytes, to be loaded at `PROGRAM_START`.
    pub bytes: Vec<u8>,
    /// Where the jump table and the step handlers landed.
    pub layout: Layout,
}

/// Assembles the program, addressing its jump table and filling it in as `layout` says.
pub fn assemble(layout: &Layout) -> Result<Assembled, Box<dyn Error>> {
    let mut asm = CodeAssembler::new(16)?;
    let mut fault = asm.create_label();
    let mut done = asm.create_label();
    let mut check_step = asm.create_label();
    let mut next_step = asm.create_label();
    let mut jump_table = asm.create_label();
    let mut handlers: Vec<CodeLabel> = (0..STEP_HANDLERS).map(|_| asm.create_label()).collect();

    // Check the parameter block once, before trusting it; eax holds the fault code to report
    // when a check fails.
    asm.mov(eax, FAULT_BAD_MAGIC)?;
    asm.cmp(dword_ptr(esi + PARAMS_MAGIC_OFFSET as i32), PARAMS_MAGIC)?;
    asm.jne(fault)?;
    asm.mov(eax, FAULT_BAD_PATTERN_LEN)?;
    asm.mov(ecx, dword_ptr(esi + PARAMS_PATTERN_LEN_OFFSET as i32))?;
    asm.test(ecx, ecx)?;
    asm.jz(fault)?;
    asm.cmp(ecx, PATTERN_MAX_LEN as u32)?;
    asm.ja(fault)?;
    asm.mov(eax, FAULT_BAD_STEP)?;
    asm.set_label(&mut check_step)?;
    asm.cmp(byte_ptr(esi + edi + PARAMS_PATTERN_OFFSET as i32), STEP_COUNT as u32)?;
    asm.jae(fault)?;
    asm.inc(edi)?;
    asm.cmp(edi, ecx)?;
    asm.jb(check_step)?;
    asm.mov(eax, FAULT_BAD_MMIO_ADDRESS)?;
    asm.mov(ebp, dword_ptr(esi + PARAMS_MMIO_OFFSET as i32))?;
    asm.cmp(ebp, MMIO_WINDOW_START as u32)?;
    asm.jb(fault)?;
    asm.cmp(ebp, (MMIO_WINDOW_END - 4) as u32)?;
    asm.ja(fault)?;

    asm.mov(ebx, dword_ptr(esi + PARAMS_SEED_OFFSET as i32))?;
    asm.mov(ecx, dword_ptr(esi + PARAMS_STEPS_OFFSET as i32))?;
    asm.xor(edi, edi)?;
    asm.mov(dx, HYPERCALL_PORT as u32)?;
    asm.test(ecx, ecx)?;
    asm.jz(done)?;

    asm.set_label(&mut next_step)?;
    asm.movzx(eax, byte_ptr(esi + edi + PARAMS_PATTERN_OFFSET as i32))?;
    asm.jmp(word_ptr(eax * 2 + i32::from(layout.jump_table)))?;

    // One handler per step code; each ends with the bookkeeping and the jump back.
    for (code, handler) in handlers.iter_mut().enumerate() {
        asm.set_label(handler)?;
        match code as u8 {
            STEP_OUT => {
                asm.mov(eax, ebx)?;
                asm.out(dx, eax)?;
            }
            STEP_IN => {
                asm.in_(eax, dx)?;
                echo(&mut asm)?;
            }
            STEP_MMIO_WRITE => asm.mov(dword_ptr(ebp), ebx)?,
            STEP_MMIO_READ => {
                asm.mov(eax, dword_ptr(ebp))?;
                echo(&mut asm)?;
            }
            STEP_HALT => asm.hlt()?,
            STEP_TRIPLE_FAULT => {
                asm.lidt(ptr(NULL_IDT_ADDRESS))?;
                asm.ud2()?;
            }
            STEP_SPIN => asm.jmp(*handler)?,
            other => unreachable!("step code {other} has no handler"),
        }
        advance(&mut asm, next_step, done)?;
    }

    // Every step has run: report the final counter.
    asm.set_label(&mut done)?;
    asm.mov(eax, ebx)?;
    asm.mov(dx, DONE_PORT as u32)?;
    asm.out(dx, eax)?;
    asm.hlt()?;
    asm.jmp(done)?;

    // The parameter block is unusable: report the fault code in eax, again if resumed.
    asm.set_label(&mut fault)?;
    asm.mov(dx, FAULT_PORT as u32)?;
    asm.out(dx, eax)?;
    asm.hlt()?;
    asm.jmp(fault)?;

    asm.set_label(&mut jump_table)?;
    asm.dw(&layout.handlers)?;

    let result = asm.assemble_options(PROGRAM_START, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let real_mode_address = |label: &CodeLabel| -> Result<u16, Box<dyn Error>> {
        let address = result.label_ip(label)?;
        u16::try_from(address)
            .map_err(|_| format!("the program reaches {address:#x}, above 64 KiB, out of real-mode reach").into())
    };
    let mut landed = Layout { jump_table: real_mode_address(&jump_table)?, handlers: [0; STEP_HANDLERS] };
    for (address, handler) in landed.handlers.iter_mut().zip(&handlers) {
        *address = real_mode_address(handler)?;
    }
    Ok(Assembled { bytes: result.inner.code_buffer, layout: landed })
}

/// Writes eax, the value just read, to the echo port, and points dx back at the hypercall port.
fn echo(asm: &mut CodeAssembler) -> Result<(), IcedError> {
    asm.inc(dx)?;
    asm.out(dx, eax)?;
    asm.dec(dx)
}

/// Counts the step, moves to the next pattern entry (wrapping), and loops while steps remain,
/// going to `done` after the last one.
fn advance(asm: &mut CodeAssembler, next_step: CodeLabel, done: CodeLabel) -> Result<(), IcedError> {
    let mut same_round = asm.create_label();
    asm.inc(ebx)?;
    asm.inc(edi)?;
    asm.cmp(edi, dword_ptr(esi + PARAMS_PATTERN_LEN_OFFSET as i32))?;
    asm.jb(same_round)?;
    asm.xor(edi, edi)?;
    asm.set_label(&mut same_round)?;
    asm.dec(ecx)?;
    asm.jnz(next_step)?;
    asm.jmp(done)
}
