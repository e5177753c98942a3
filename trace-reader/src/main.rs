//! `trace-reader`: see `trace-reader --help`.
#![forbid(unsafe_code)]

use trace_reader::cli::{Cli, Command};
use trace_reader::cmd;

fn main() -> anyhow::Result<()> {
    let cli = Cli::from_command_line();
    match &cli.command {
        Command::Stream(a) => cmd::stream::run(a),
        Command::Show(a) => cmd::show::run(a),
        Command::Stats(a) => cmd::stats::run(a),
        Command::Record(a) => cmd::record::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Recover(a) => cmd::recover::run(a),
    }
}
