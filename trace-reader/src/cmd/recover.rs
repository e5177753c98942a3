//! `recover`: every event a dead producer left in its buffer directory.

use crate::cli::RecoverArgs;
use crate::live::LiveOptions;
use crate::source::{Session, Target};
use anyhow::Result;
use std::time::Duration;

/// Runs `recover`.
pub fn run(args: &RecoverArgs) -> Result<()> {
    let session = Session::open(&Target::Dir { dir: args.dir.clone() }, &args.cpus.list())?;
    // The producer has gone: the first pass sees the hangup and reads everything it left.
    super::stream::print(
        session,
        args.format.style,
        args.times.ns,
        LiveOptions { duration: None, interval: Duration::ZERO },
    )
}
