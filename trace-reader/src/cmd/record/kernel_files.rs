//! What a kernel recording's file holds besides events: the trace clock's name, the kernel's
//! symbols and `printk` formats, and its task names, read from tracefs.

use crate::source::Target;
use crate::tracedat::DatInfo;
use std::path::Path;

/// The trace clock's name: the kernel's from `trace_clock`; a producer's timestamps are
/// converted to nanoseconds, and trace-cmd shows nanoseconds when no clock is named.
pub(super) fn clock_name(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    let text = std::fs::read_to_string(tracing.join("trace_clock")).ok()?;
    crate::tracedat::clock_in_use(&text)
}

/// The tracefs root above `tracing`: where the files every instance shares live (an instance
/// has no `saved_cmdlines` or `printk_formats` of its own).
fn tracefs_root(tracing: &Path) -> &Path {
    match tracing.parent() {
        Some(parent) if parent.file_name().is_some_and(|n| n == "instances") => parent.parent().unwrap_or(tracing),
        _ => tracing,
    }
}

/// The text of `path`, or nothing, with a warning, if it cannot be read: what the recording
/// would name with it (addresses, processes) is left unnamed, its events are complete.
fn read_or_warn(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("trace-reader: recording without {}: {e}", path.display());
        String::new()
    })
}

/// Adds what trace-cmd needs to name a kernel recording's addresses: kernel symbols and the
/// `printk` formats (of `bprint` events).
pub(super) fn kernel_symbols(info: &mut DatInfo, tracing: &Path) {
    info.kallsyms = read_or_warn(Path::new("/proc/kallsyms"));
    info.printk_formats = read_or_warn(&tracefs_root(tracing).join("printk_formats"));
}

/// The kernel's task names (`saved_cmdlines`), read once the recording has stopped, as
/// `trace-cmd record` does: the tasks the recorded events name include those that began while
/// it ran.
pub(super) fn kernel_task_names(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    Some(read_or_warn(&tracefs_root(tracing).join("saved_cmdlines")))
}
