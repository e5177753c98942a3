//! Tries to use a hyptrace producer's control socket and prints what happened, one line:
//! `connected <nr_cpus>`, `denied <error>` (the socket file could not be opened) or
//! `refused <error>` (the producer would not talk). The security tests run it as another user.
#![forbid(unsafe_code)]

// Under `--cfg loom` this crate is built only to run the loom models, without ring-mmap.
#[cfg(loom)]
fn main() {}

#[cfg(not(loom))]
fn main() -> anyhow::Result<()> {
    use anyhow::Context;
    use ring_mmap::{Connection, Error};
    let path = std::env::args_os().nth(1).context("usage: socket-probe SOCKET")?;
    match Connection::connect(std::path::Path::new(&path)) {
        Ok(conn) => println!("connected {}", conn.hello().nr_cpus),
        Err(e @ Error::Path { .. }) => println!("denied {e}"),
        Err(e) => println!("refused {e}"),
    }
    Ok(())
}
