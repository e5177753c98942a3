//! Tries to read a hyptrace buffer directory post-mortem (`BufferDir::open`) and prints what
//! happened, one line: `opened <nr_cpus>` or `refused <error>`. The security tests run it as
//! another user.
#![forbid(unsafe_code)]

// Under `--cfg loom` this crate is built only to run the loom models, without ring-mmap.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    let path = std::env::args_os().nth(1).context("usage: dir-probe DIR")?;
    match ring_mmap::BufferDir::open(std::path::Path::new(&path)) {
        Ok(opened) => println!("opened {}", opened.cpus.len()),
        Err(e) => println!("refused {e}"),
    }
    Ok(())
}
