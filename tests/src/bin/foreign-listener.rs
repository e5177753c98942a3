//! Listens on the `SOCK_SEQPACKET` socket it is given as its standard input (bound, not yet
//! listening), as whatever user runs it, and answers nothing: a stand-in for a producer that
//! another user put in a client's way. Prints `listening` once it listens, accepts connections
//! and holds them open until it is killed. The security tests run it as another user.
#![forbid(unsafe_code)]

// Under `--cfg loom` this crate is built only to run the loom models, without ring-mmap.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let socket = stdin.as_fd();
    rustix::net::listen(socket, 8).context("listening on standard input")?;
    println!("listening");
    std::io::stdout().flush()?;
    let mut held = Vec::new();
    loop {
        held.push(rustix::net::accept(socket).context("accepting")?);
    }
}
