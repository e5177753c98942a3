//! The command line `cargo bench` hands a benchmark that runs without criterion's harness (the
//! end-to-end and flood benchmarks run processes, not closures): criterion's name filters,
//! `--list` and `--quick`, honoured the way criterion honours them.

/// How a harness-less benchmark group should run, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Full length.
    Full,
    /// `--quick`: a smoke run.
    Quick,
}

/// Whether the group `group`, whose benchmarks are `names` (without the group prefix), runs: `None`
/// if a name filter leaves it out, or if `--list` was asked for (then its benchmarks are listed
/// as criterion lists its own).
pub fn run_of(group: &str, names: &[&str]) -> Option<Run> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err()).collect();
    if !filters.is_empty() && !filters.iter().any(|f| group.contains(f.as_str()) || f.contains(group)) {
        return None;
    }
    if args.iter().any(|a| a == "--list") {
        for name in names {
            println!("{group}/{name}: benchmark");
        }
        return None;
    }
    Some(if args.iter().any(|a| a == "--quick") { Run::Quick } else { Run::Full })
}
