//! Setting up the kernel's tracing before `record` or `stream` read it, as `trace-cmd record`
//! does: which events (`-e`, with globs), their filters (`-f`), the buffer size (`-b`) and the
//! trace clock (`-C`), in a tracefs instance of trace-reader's own unless told otherwise, and
//! with trace-reader's own tasks kept out of the trace.
//!
//! ```text
//!   --kernel (default)        instances/trace-reader-<pid>: created, set up, read, removed
//!   --kernel --instance NAME  instances/NAME as it is, with what is asked set up; put back after
//!   --kernel --top            the top-level buffer, likewise
//! ```
//!
//! In a buffer that is not trace-reader's own, every file written is read first and written
//! back when the [`PreparedKernel`] is dropped (after the reading, which holds the buffer's
//! files open), last written first: the buffer is left as it was found.

use anyhow::{Context, Result, bail};
use ring_mmap::TracefsInstance;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One `-e` choice: the events it names and the filter that applies to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventChoice {
    /// `SYSTEM:EVENT`, `SYSTEM`, `EVENT` or `all`, each part a glob.
    pub pattern: String,
    /// The kernel filter expression for these events (`-f` after the `-e`).
    pub filter: Option<String>,
}

/// What to set up, from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelSetup {
    /// The events to enable.
    pub events: Vec<EventChoice>,
    /// Per-CPU buffer size, KiB.
    pub buffer_size_kb: Option<u64>,
    /// The trace clock's name.
    pub clock: Option<String>,
    /// Set up `instances/NAME`, which exists, instead of an instance of trace-reader's own.
    pub instance: Option<String>,
    /// Set up the top-level buffer instead of an instance of trace-reader's own.
    pub top: bool,
    /// Leave trace-reader's own tasks in the trace.
    pub trace_self: bool,
}

/// A kernel buffer set up for reading: where it is, and what to undo when done.
#[derive(Debug)]
pub struct PreparedKernel {
    tracing: PathBuf,
    /// The tracefs root, whose `available_events` lists every buffer's (instances have none).
    tracefs: PathBuf,
    /// Files written in a buffer that is not ours, with what they held, in the order written.
    written: Vec<(PathBuf, String)>,
    /// trace-reader's own instance, removed when dropped (after the files are put back).
    own: Option<TracefsInstance>,
}

impl PreparedKernel {
    /// The buffer's tracefs directory.
    pub fn tracing(&self) -> &Path {
        &self.tracing
    }
}

impl Drop for PreparedKernel {
    fn drop(&mut self) {
        for (path, before) in self.written.iter().rev() {
            if let Err(e) = put_back(path, before) {
                eprintln!(
                    "trace-reader: warning: could not put back {} ({e}); it held: {}",
                    path.display(),
                    before.trim()
                );
            }
        }
        if let Some(own) = self.own.take()
            && let Err(e) = own.remove()
        {
            eprintln!("trace-reader: warning: {e}; remove it with rmdir once nothing reads it");
        }
    }
}

/// The contents a tracefs file held, written back in the form writing takes: the clock in
/// brackets of `trace_clock`'s list, the size `buffer_size_kb` grows to when used (1408 of
/// `7 (expanded: 1408)`), `0`
/// for a filter that showed `none`, a pid list one pid per write (an empty one by truncating),
/// any other file what it showed.
fn put_back(path: &Path, before: &str) -> std::io::Result<()> {
    let before = before.trim();
    let value = match path.file_name().and_then(|n| n.to_str()) {
        Some("trace_clock") => before.split_whitespace().find_map(|c| c.strip_prefix('[')?.strip_suffix(']')),
        Some("buffer_size_kb") => {
            let expanded = before.split_once("(expanded: ").and_then(|(_, size)| size.strip_suffix(')'));
            expanded.or_else(|| before.split_whitespace().next())
        }
        Some("filter") if before == "none" => Some("0"),
        _ => None,
    }
    .unwrap_or(before);
    let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    for line in value.lines() {
        // One write a line: the kernel parses each write on its own (a pid list one pid a write).
        file.write_all(format!("{line}\n").as_bytes())?;
    }
    Ok(())
}

impl KernelSetup {
    /// Whether anything is asked beyond reading the buffer as it is.
    fn asks_anything(&self) -> bool {
        !self.events.is_empty() || self.buffer_size_kb.is_some() || self.clock.is_some()
    }

    /// Sets up the buffer under `tracefs` that these choices name: creates trace-reader's own
    /// instance unless `--instance` or `--top` names another, selects the clock and the buffer
    /// size, enables the events with their filters and keeps trace-reader's own tasks out.
    pub fn prepare(&self, tracefs: &Path) -> Result<PreparedKernel> {
        let own = match (&self.instance, self.top) {
            (Some(_), _) | (None, true) => None,
            (None, false) => {
                if self.events.is_empty() {
                    bail!(
                        "--kernel records into a tracefs instance of its own, in which only the events you \
                         choose are enabled, and none was chosen: add -e SYSTEM[:EVENT] (for example -e sched \
                         -e 'kvm:*'; the list is {}), or read a buffer that is set up already with \
                         --instance NAME or --top",
                        tracefs.join("available_events").display()
                    );
                }
                let name = format!("trace-reader-{}", std::process::id());
                Some(TracefsInstance::create(tracefs, &name).context("creating trace-reader's tracefs instance")?)
            }
        };
        let tracing = match (&own, &self.instance) {
            (Some(instance), _) => instance.path().to_path_buf(),
            (None, Some(name)) => ring_mmap::kernel::instance_dir(tracefs, name),
            (None, None) => tracefs.to_path_buf(),
        };
        if !tracing.join("trace_clock").is_file() {
            bail!("{} is not a tracefs buffer (no trace_clock): check --instance and --tracefs", tracing.display());
        }
        let mut prepared = PreparedKernel { tracing, tracefs: tracefs.to_path_buf(), written: Vec::new(), own };
        // First: the system calls setting up the rest are trace-reader's own.
        if !self.trace_self {
            prepared.leave_out_own_tasks();
        }
        if let Some(clock) = &self.clock {
            prepared.set_clock(clock)?;
        }
        if let Some(kb) = self.buffer_size_kb {
            prepared.set("buffer_size_kb", &kb.to_string()).context("-b: setting the buffer size")?;
        }
        if !self.events.is_empty() {
            let available = prepared.available_events()?;
            for choice in &self.events {
                prepared.enable(choice, &available)?;
            }
        }
        if prepared.own.is_none() && !self.asks_anything() && prepared.nothing_enabled() {
            eprintln!(
                "trace-reader: warning: nothing is enabled in {}: only what is written to its trace_marker \
                 will be read; enable events with -e SYSTEM[:EVENT]",
                prepared.tracing.display()
            );
        }
        Ok(prepared)
    }
}

impl PreparedKernel {
    /// Writes `value` to the buffer's file `name`, remembering what it held unless the buffer is
    /// our own (removed at the end anyway).
    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let path = self.tracing.join(name);
        if self.own.is_none() {
            let before = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            self.written.push((path.clone(), before));
        }
        std::fs::write(&path, value).with_context(|| format!("writing `{}` to {}", value.trim(), path.display()))
    }

    /// Selects the trace clock `clock`, one of those the kernel offers.
    fn set_clock(&mut self, clock: &str) -> Result<()> {
        let path = self.tracing.join("trace_clock");
        let list = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let offered: Vec<&str> = list.split_whitespace().map(|c| c.trim_matches(['[', ']'])).collect();
        if !offered.contains(&clock) {
            bail!("-C {clock}: this kernel's trace clocks are {}", offered.join(", "));
        }
        self.set("trace_clock", clock)
    }

    /// Enables the events `choice` names among the kernel's `available` ones, each with its
    /// filter.
    fn enable(&mut self, choice: &EventChoice, available: &[(String, String)]) -> Result<()> {
        let matched: Vec<&(String, String)> =
            available.iter().filter(|(s, e)| matches(&choice.pattern, s, e)).collect();
        if matched.is_empty() {
            bail!(
                "-e {}: no kernel event matches it; the events are listed in {} (as SYSTEM:EVENT)",
                choice.pattern,
                self.tracefs.join("available_events").display()
            );
        }
        for (system, event) in matched {
            let dir = format!("events/{system}/{event}");
            if let Some(filter) = &choice.filter {
                self.set(&format!("{dir}/filter"), filter).with_context(|| {
                    format!(
                        "-f '{filter}': the kernel refused it for {system}:{event}; the fields it can test are \
                         in {}",
                        self.tracing.join(&dir).join("format").display()
                    )
                })?;
            }
            self.set(&format!("{dir}/enable"), "1")?;
        }
        Ok(())
    }

    /// The kernel's `available_events`, as (system, event) pairs.
    fn available_events(&self) -> Result<Vec<(String, String)>> {
        let path = self.tracefs.join("available_events");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text.lines().filter_map(|l| l.split_once(':')).map(|(s, e)| (s.to_string(), e.to_string())).collect())
    }

    /// Keeps the events of this process and every thread it starts out of the buffer (tracefs
    /// `set_event_notrace_pid`, with `event-fork` so threads inherit it). A context switch away
    /// from one of them is still recorded: it tells when another task began to run. Where the
    /// kernel has no such filter, says so and goes on.
    fn leave_out_own_tasks(&mut self) {
        let result = self
            .set("options/event-fork", "1")
            .and_then(|()| self.set("set_event_notrace_pid", &std::process::id().to_string()));
        if let Err(e) = result {
            eprintln!("trace-reader: warning: its own tasks' events will be recorded too: {e:#}");
        }
    }

    /// Whether no event is enabled and no tracer set.
    fn nothing_enabled(&self) -> bool {
        let read = |name| std::fs::read_to_string(self.tracing.join(name)).unwrap_or_default();
        read("set_event").trim().is_empty() && matches!(read("current_tracer").trim(), "" | "nop")
    }
}

/// Whether `-e pattern` names `system:event`: `SYSTEM:EVENT` each part a glob, `all`, or one
/// glob matching the system or the event name (as `trace-cmd record -e` takes them).
pub fn matches(pattern: &str, system: &str, event: &str) -> bool {
    let glob = |p: &str, name: &str| glob::Pattern::new(p).is_ok_and(|p| p.matches(name));
    match pattern.split_once(':') {
        Some((s, e)) => glob(s, system) && glob(e, event),
        None => pattern == "all" || glob(pattern, system) || glob(pattern, event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_events_as_trace_cmd_takes_them() {
        assert!(matches("sched:sched_switch", "sched", "sched_switch"));
        assert!(!matches("sched:sched_switch", "sched", "sched_wakeup"));
        assert!(matches("sched", "sched", "sched_wakeup"), "a system");
        assert!(matches("sched_wakeup", "sched", "sched_wakeup"), "an event name alone");
        assert!(matches("kvm:*", "kvm", "kvm_exit"));
        assert!(!matches("kvm:*", "kvmmmu", "kvm_mmu_get_page"));
        assert!(matches("sched:sched_wak*", "sched", "sched_waking"));
        assert!(matches("*:*_exit", "kvm", "kvm_exit"));
        assert!(matches("all", "irq", "irq_handler_entry"));
        assert!(!matches("[", "sched", "["), "a malformed glob matches nothing");
    }

    #[test]
    fn a_buffer_not_ours_is_put_back_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
        };
        file("trace_clock", "[local] global mono\n");
        file("buffer_size_kb", "7 (expanded: 1408)\n");
        file("available_events", "sched:sched_switch\nsched:sched_wakeup\nirq:irq_handler_entry\n");
        file("events/sched/sched_switch/enable", "0\n");
        file("events/sched/sched_switch/filter", "none\n");
        file("events/sched/sched_wakeup/enable", "0\n");
        file("events/sched/sched_wakeup/filter", "none\n");
        file("options/event-fork", "0\n");
        file("set_event_notrace_pid", "");
        let setup = KernelSetup {
            events: vec![EventChoice { pattern: "sched".into(), filter: Some("prev_pid != 0".into()) }],
            buffer_size_kb: Some(64),
            clock: Some("mono".into()),
            top: true,
            ..KernelSetup::default()
        };
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        {
            let prepared = setup.prepare(dir.path()).unwrap();
            assert_eq!(prepared.tracing(), dir.path());
            assert_eq!(read("trace_clock"), "mono");
            assert_eq!(read("buffer_size_kb"), "64");
            assert_eq!(read("events/sched/sched_switch/enable"), "1");
            assert_eq!(read("events/sched/sched_wakeup/enable"), "1");
            assert_eq!(read("events/sched/sched_switch/filter"), "prev_pid != 0");
            assert_eq!(read("events/sched/sched_wakeup/filter"), "prev_pid != 0", "-f applies to all its -e names");
            assert_eq!(read("options/event-fork"), "1");
            assert_eq!(read("set_event_notrace_pid"), std::process::id().to_string());
        }
        // A file written back holds what reading it showed, as the kernel takes it.
        assert_eq!(read("trace_clock"), "local\n", "the clock that was selected");
        assert_eq!(read("buffer_size_kb"), "1408\n", "the size it had when used");
        assert_eq!(read("events/sched/sched_switch/enable"), "0\n");
        assert_eq!(read("events/sched/sched_switch/filter"), "0\n", "`none` is cleared with 0");
        assert_eq!(read("options/event-fork"), "0\n");
        assert_eq!(read("set_event_notrace_pid"), "");
    }

    #[test]
    fn choices_that_cannot_work_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trace_clock"), "[local] mono\n").unwrap();
        std::fs::write(dir.path().join("available_events"), "sched:sched_switch\n").unwrap();
        let own = KernelSetup::default().prepare(dir.path()).unwrap_err().to_string();
        assert!(own.contains("add -e SYSTEM[:EVENT]"), "{own}");
        let top = |setup: KernelSetup| KernelSetup { top: true, ..setup }.prepare(dir.path()).unwrap_err();
        let clock = top(KernelSetup { clock: Some("tsc".into()), ..KernelSetup::default() });
        assert!(clock.to_string().contains("trace clocks are local, mono"), "{clock}");
        let none = top(KernelSetup {
            events: vec![EventChoice { pattern: "kvm:*".into(), filter: None }],
            ..KernelSetup::default()
        });
        assert!(none.to_string().contains("no kernel event matches it"), "{none}");
    }
}
