//! `stats`: each CPU's counters.

use crate::cli::StatsArgs;
use crate::output::Style;
use crate::source::Session;
use crate::table::{self, Row};
use anyhow::Result;

/// Runs `stats`.
pub fn run(args: &StatsArgs) -> Result<()> {
    let session = Session::open(&args.source.target()?, &args.source.cpus.list())?;
    let rows = session
        .cpus
        .iter()
        .map(|c| Ok(Row { cpu: c.cpu(), counters: c.counters(session.tracing())?, tally: None, secs: 0.0 }))
        .collect::<Result<Vec<_>>>()?;
    match args.format.style {
        Style::Text => print!("{}", table::stats_text(&rows)),
        Style::Json => println!("{}", table::stats_json(&rows)),
    }
    Ok(())
}
