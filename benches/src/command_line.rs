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
    let args = Args::get();
    if !args.filters.is_empty() && !args.filters.iter().any(|f| group.contains(f.as_str()) || f.contains(group)) {
        return None;
    }
    args.run(group, names)
}

/// The benchmarks of group `group` (among `names`) that run, each alone: those whose
/// `group/name` contains a name filter, all of them without one. `None` if none runs or
/// `--list` was asked for (as in [`run_of`]).
pub fn selection<'a>(group: &str, names: &[&'a str]) -> Option<(Run, Vec<&'a str>)> {
    let args = Args::get();
    let selected: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            args.filters.is_empty() || args.filters.iter().any(|f| format!("{group}/{name}").contains(f.as_str()))
        })
        .collect();
    if selected.is_empty() {
        return None;
    }
    Some((args.run(group, &selected)?, selected))
}

/// The arguments `cargo bench` passed: name filters and flags.
struct Args {
    filters: Vec<String>,
    flags: Vec<String>,
}

impl Args {
    fn get() -> Self {
        let (flags, filters) = std::env::args().skip(1).partition(|a| a.starts_with('-') || a.parse::<f64>().is_ok());
        Self { filters, flags }
    }

    /// How `names` of `group` run: not at all for `--list` (they are listed instead).
    fn run(&self, group: &str, names: &[&str]) -> Option<Run> {
        if self.flags.iter().any(|a| a == "--list") {
            for name in names {
                println!("{group}/{name}: benchmark");
            }
            return None;
        }
        Some(if self.flags.iter().any(|a| a == "--quick") { Run::Quick } else { Run::Full })
    }
}
