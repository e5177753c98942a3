//! What a kernel recording's file holds besides events: the kernel's symbols, `printk` formats
//! and task names, read from tracefs.

use crate::source::Target;
use crate::symbols::{Symbols, task_names};
use crate::tracedat::DatInfo;
use std::path::Path;

/// Adds what trace-cmd needs to name a kernel recording's addresses and tasks (the task names
/// are read again at the end, [`kernel_task_names`]).
pub(super) fn kernel_symbols(info: &mut DatInfo, tracing: &Path) {
    info.symbols = Symbols::of_kernel(tracing);
}

/// The kernel's task names (`saved_cmdlines`), read once the recording has stopped, as
/// `trace-cmd record` does: the tasks the recorded events name include those that began while
/// it ran.
pub(super) fn kernel_task_names(target: &Target) -> Option<String> {
    let Target::Kernel { tracing } = target else { return None };
    Some(task_names(tracing))
}
