//! The names of a recorded producer's threads. A hyptrace producer's events name host threads
//! of its own (hyp-sim's `vcpuN`) but it exports no task names, so `record` looks at its threads
//! in `/proc` while the recording runs, every time it shows progress, and the file lists them
//! as task names beside the kernel's (a thread that begins and ends between two looks goes
//! unnamed; the kernel's name wins for a task both name).

use super::sources::{self, Source};
use crate::symbols::producer_thread_names;
use std::collections::BTreeMap;

/// The threads of the recorded producer seen so far, by thread id.
#[derive(Debug, Default)]
pub(super) struct ProducerThreads {
    /// The producer's process id in this pid namespace, if a producer is recorded.
    producer: Option<u32>,
    names: BTreeMap<i32, String>,
}

impl ProducerThreads {
    /// For the producer among `sources`, if one is recorded live.
    pub(super) fn of(sources: &[Source]) -> Self {
        Self { producer: sources::producer_pid(sources), names: BTreeMap::new() }
    }

    /// Adds the threads the producer has now.
    pub(super) fn look(&mut self) {
        if let Some(producer) = self.producer {
            self.names.extend(producer_thread_names(producer));
        }
    }

    /// The file's task names: `kernel`'s (`saved_cmdlines` text), then the producer's threads
    /// it does not name; `None` if there are none.
    pub(super) fn with_kernel_names(&self, kernel: Option<String>) -> Option<String> {
        let mut text = kernel.unwrap_or_default();
        let named: std::collections::HashSet<i32> =
            text.lines().filter_map(|line| line.trim_start().split_once(' ')?.0.parse().ok()).collect();
        for (tid, name) in self.names.iter().filter(|(tid, _)| !named.contains(tid)) {
            text.push_str(&format!("{tid} {name}\n"));
        }
        (!text.is_empty()).then_some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_first_and_the_producer_the_rest() {
        let mut threads = ProducerThreads::default();
        threads.names.extend([(7, "vcpu0".to_string()), (9, "vcpu1".to_string())]);
        let both = threads.with_kernel_names(Some("   7 qemu\n1 init\n".to_string())).unwrap();
        assert_eq!(both, "   7 qemu\n1 init\n9 vcpu1\n");
        assert_eq!(threads.with_kernel_names(None).unwrap(), "7 vcpu0\n9 vcpu1\n");
        assert_eq!(ProducerThreads::default().with_kernel_names(None), None);
    }

    #[test]
    fn this_process_threads_are_found_by_name() {
        let pid = std::process::id();
        let mut threads = ProducerThreads { producer: Some(pid), names: BTreeMap::new() };
        let (started, stop) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("named-thread".into())
                .spawn_scoped(s, || {
                    started.wait();
                    stop.wait();
                })
                .unwrap();
            started.wait();
            // A listing of /proc/PID/task made while other threads of the process come and go
            // (other tests' threads do) may miss one: record looks again at every progress tick,
            // and so does this.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !threads.names.values().any(|name| name == "named-thread") && std::time::Instant::now() < deadline {
                threads.look();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            stop.wait();
        });
        assert!(threads.names.values().any(|name| name == "named-thread"), "{:?}", threads.names);
    }
}
