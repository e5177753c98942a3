//! `trace-reader`: see `trace-reader --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use trace_reader::cli::{Cli, Command};
use trace_reader::cmd;

fn main() -> ExitCode {
    let cli = Cli::from_command_line();
    let result = match &cli.command {
        Command::Stream(a) => cmd::stream::run(a),
        Command::Show(a) => cmd::show::run(a),
        Command::Stats(a) => cmd::stats::run(a),
        Command::Record(a) => cmd::record::run(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Recover(a) => cmd::recover::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A backtrace (`RUST_BACKTRACE`) is for trace-reader's own defects, which panic.
        Err(e) => {
            eprintln!("trace-reader: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `error` in one line, each cause after what it explains, and each said once: an error whose
/// message already quotes its cause (as many library errors do) is not followed by it again.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain().map(ToString::to_string) {
        if !line.contains(&cause) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&cause);
        }
    }
    line
}
