//! What names a recording's addresses and tasks: the kernel's symbols, its `printk` formats (of
//! `bprint` events) and its task names. A trace.dat file holds them; a live kernel source reads
//! them from `/proc/kallsyms` and tracefs. A hyptrace producer exports none, but while it runs
//! the host threads its events name are its own, named in `/proc` ([`producer_thread_name`]).

use std::path::Path;

/// Kernel symbols, `printk` formats and task names, as the kernel lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symbols {
    /// `/proc/kallsyms`: what instruction pointers (`%pS`, function events) are named with.
    pub kallsyms: String,
    /// tracefs `printk_formats`: the formats `bprint` events refer to by address.
    pub printk_formats: String,
    /// tracefs `saved_cmdlines` (`pid comm` lines): task names.
    pub cmdlines: String,
}

impl Symbols {
    /// The kernel's, read now, for its buffer at the tracefs directory `tracing`: whatever
    /// cannot be read is left empty, with a warning (what it would name is left unnamed).
    pub fn of_kernel(tracing: &Path) -> Self {
        Self {
            kallsyms: read_or_warn(Path::new("/proc/kallsyms")),
            printk_formats: read_or_warn(&tracefs_root(tracing).join("printk_formats")),
            cmdlines: task_names(tracing),
        }
    }
}

/// The kernel's task names now (`saved_cmdlines`), for its buffer at `tracing`.
pub fn task_names(tracing: &Path) -> String {
    read_or_warn(&tracefs_root(tracing).join("saved_cmdlines"))
}

/// The name of thread `tid` of the running producer process `producer` (a pid in this process's
/// pid namespace), from `/proc/PRODUCER/task/TID/comm` (a newline in it made `?`); `None` if
/// `tid` is not one of its threads as this namespace sees them (it ended, or the producer numbers
/// its threads in another pid namespace), so a number that means another task here is never
/// given its name.
pub fn producer_thread_name(producer: u32, tid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{producer}/task/{tid}/comm")).ok()?;
    // Task names are listed as `tid name` lines: a newline inside a name would end its line.
    Some(comm.trim_end_matches('\n').replace('\n', "?"))
}

/// The threads of the running producer process `producer` (a pid in this process's pid
/// namespace) and their names, as `saved_cmdlines` lists tasks (`tid name` lines), from
/// `/proc/PRODUCER/task/`; the threads it has now (none if it has ended).
pub fn producer_thread_names(producer: u32) -> Vec<(i32, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{producer}/task")) else { return Vec::new() };
    tasks
        .filter_map(|task| task.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|tid| Some((tid, producer_thread_name(producer, tid)?)))
        .collect()
}

/// The tracefs root above `tracing`: where the files every instance shares live (an instance
/// has no `saved_cmdlines` or `printk_formats` of its own).
fn tracefs_root(tracing: &Path) -> &Path {
    match tracing.parent() {
        Some(parent) if parent.file_name().is_some_and(|n| n == "instances") => parent.parent().unwrap_or(tracing),
        _ => tracing,
    }
}

/// The text of `path`, or nothing, with a warning, if it cannot be read.
fn read_or_warn(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("trace-reader: warning: without {}: {e}", path.display());
        String::new()
    })
}
