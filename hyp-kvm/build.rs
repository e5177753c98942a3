//! Assembles the guest program (`guest/program.rs`, assembler calls written in Rust) into
//! `$OUT_DIR/guest.bin`, which the library embeds. The program is source in this repository;
//! the bytes are only ever built from it.

use std::path::PathBuf;

// The host/guest contract, shared with the library; the build uses only part of it.
#[allow(dead_code)]
#[path = "src/guest/abi.rs"]
mod abi;
#[path = "guest/program.rs"]
mod program;

fn main() {
    println!("cargo::rerun-if-changed=guest/program.rs");
    println!("cargo::rerun-if-changed=src/guest/abi.rs");

    let first = program::assemble(&program::Layout::GUESS).expect("assembling the guest program");
    let program = program::assemble(&first.layout).expect("assembling the guest program");
    assert_eq!(
        program.layout, first.layout,
        "the guest program's layout moved between passes: its size must not depend on the jump table"
    );
    assert!(
        program.bytes.len() <= abi::PROGRAM_MAX_SIZE,
        "the guest program is {} bytes, more than the {} its place in guest memory holds",
        program.bytes.len(),
        abi::PROGRAM_MAX_SIZE
    );

    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out_dir.join("guest.bin"), &program.bytes).expect("writing guest.bin to OUT_DIR");
}
