//! How busy the machine was while a benchmark ran: the share of CPU time the hypervisor stole
//! (`/proc/stat`) and the load average (`/proc/loadavg`), and whether that makes its figures
//! unfit to judge a target by.
//!
//! A ratio of two measurements is only as good as the machine was quiet: on these 2-vCPU VMs a
//! second busy vCPU alone doubles the writer's time per event, and the host takes the CPUs away
//! now and then. A run is *busy* when more than [`STEAL_BUSY_PERCENT`] of the CPU time was
//! stolen, or when the load average exceeded the CPU count (more runnable threads than CPUs, so
//! something besides the benchmark competed for them).

use serde::{Deserialize, Serialize};

/// Steal above this share of all CPU time makes a run busy.
pub const STEAL_BUSY_PERCENT: f64 = 2.0;

/// The all-CPU time counters of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuTimes {
    /// Time the hypervisor ran something else while a vCPU wanted to run.
    steal: u64,
    /// All time accounted, steal included.
    total: u64,
}

impl CpuTimes {
    /// The counters now (zeros where `/proc/stat` cannot be read: no steal is then reported).
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Self::parse(&stat)
    }

    /// The `cpu` line of `/proc/stat`'s text: user nice system idle iowait irq softirq steal
    /// (guest time is counted in user already).
    fn parse(stat: &str) -> Self {
        let fields: Vec<u64> = stat
            .lines()
            .find_map(|line| line.strip_prefix("cpu "))
            .map(|rest| rest.split_whitespace().take(8).filter_map(|f| f.parse().ok()).collect())
            .unwrap_or_default();
        Self { steal: fields.get(7).copied().unwrap_or(0), total: fields.iter().sum() }
    }
}

/// The machine's load over an interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineLoad {
    /// Share of all CPU time stolen by the hypervisor, in percent.
    pub steal_percent: f64,
    /// The higher 1-minute load average of the interval's start and end.
    pub load_average: f64,
    /// CPUs this process could run on.
    pub cpus: usize,
}

impl MachineLoad {
    /// Whether the machine was too busy for the interval's figures to judge a target.
    pub fn busy(&self) -> bool {
        self.steal_percent > STEAL_BUSY_PERCENT || self.load_average > self.cpus as f64
    }
}

impl std::fmt::Display for MachineLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "steal {:.1}%, load {:.2} on {} CPUs", self.steal_percent, self.load_average, self.cpus)
    }
}

/// Measures the machine's load from its start to [`LoadMeter::finish`].
pub struct LoadMeter {
    start: CpuTimes,
    load_average: f64,
}

impl LoadMeter {
    /// Starts measuring.
    pub fn start() -> Self {
        Self { start: CpuTimes::now(), load_average: load_average() }
    }

    /// The load since [`LoadMeter::start`].
    pub fn finish(self) -> MachineLoad {
        let end = CpuTimes::now();
        let total = end.total.saturating_sub(self.start.total);
        let steal = end.steal.saturating_sub(self.start.steal);
        let steal_percent = if total == 0 { 0.0 } else { 100.0 * steal as f64 / total as f64 };
        MachineLoad {
            steal_percent,
            load_average: self.load_average.max(load_average()),
            cpus: crate::cpus::available(),
        }
    }
}

/// The 1-minute load average (0 where `/proc/loadavg` cannot be read).
fn load_average() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().and_then(|f| f.parse().ok()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_eighth_counter_of_the_cpu_line() {
        let stat = "cpu  10 1 5 80 2 0 1 3 4 0\ncpu0 5 0 2 40 1 0 0 2 2 0\n";
        let times = CpuTimes::parse(stat);
        assert_eq!((times.steal, times.total), (3, 102));
    }

    #[test]
    fn busy_means_steal_or_more_runnable_threads_than_cpus() {
        let quiet = MachineLoad { steal_percent: 1.0, load_average: 1.5, cpus: 2 };
        assert!(!quiet.busy());
        assert!(MachineLoad { steal_percent: 2.5, ..quiet }.busy());
        assert!(MachineLoad { load_average: 2.5, ..quiet }.busy());
    }
}
