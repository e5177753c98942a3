//! An LTTng-UST tracing session for a benchmark, or the reason there is none: the session records
//! `hyptrace_bench:payload_16B` (`lttng_probe`) into per-UID buffers, either in snapshot mode
//! (overwrite, no reader: a flight recorder, as hyptrace's writer benchmarks run) with 256 × 4 KiB
//! sub-buffers per CPU as hyptrace's writer buffers have ([`Session::start`]), or in discard mode
//! with the consumer daemon writing the trace into a directory, in the sub-buffers an end-to-end
//! trial asks for ([`Session::record_into`]). It is created through the `lttng` command and
//! destroyed when dropped, also when the benchmark panics.
//!
//! Nothing here calls the probe itself: only the benchmarks that record through it link it, and
//! with it lttng-ust (`build.rs`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Sub-buffers per CPU of the snapshot session: 1 MiB, as hyptrace's writer benchmarks use.
const SNAPSHOT_SUBBUFS: Subbufs = Subbufs { size: 4096, count: 256 };
/// The session's only channel.
const CHANNEL: &str = "hyptrace-bench";
/// The event the probe records.
const EVENT: &str = "hyptrace_bench:payload_16B";
/// How long lttng-ust may take to register this process with the session daemon and arm the
/// probe once the session starts.
const ARMING: Duration = Duration::from_secs(10);

/// Why the LTTng benchmarks cannot run in a build made without lttng-ust.
pub const NOT_BUILT: &str = "lttng-ust was not found when the benchmarks were built: install liblttng-ust-dev (tests/setup.sh does) and rebuild";

/// The sub-buffers of the session's channel, per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subbufs {
    /// Bytes per sub-buffer.
    pub size: u32,
    /// Sub-buffers per CPU.
    pub count: u32,
}

/// A started LTTng session recording `hyptrace_bench:payload_16B` in this process; destroyed when
/// dropped.
pub struct Session {
    name: String,
}

impl Session {
    /// Creates and starts a snapshot session (overwrite mode, no reader) named after `bench` and
    /// this process, and waits until `armed` (the probe's `lttng_probe::enabled`) says lttng-ust
    /// has armed the probe in this process. `Err` says why LTTng cannot run here, for the
    /// benchmark to print as the reason it is skipped ([`available`]).
    pub fn start(bench: &str, armed: fn() -> bool) -> Result<Self, String> {
        Self::create(bench, &["--snapshot"], &["--overwrite"], SNAPSHOT_SUBBUFS, armed)
    }

    /// Creates and starts a session named after `bench` and this process whose consumer daemon
    /// writes the trace into directory `output` as it records, in discard mode (an event that
    /// finds its sub-buffers full is discarded and counted), `subbufs` per CPU; and waits until
    /// `armed` says the probe is armed in this process, as [`Session::start`] does.
    pub fn record_into(bench: &str, output: &Path, subbufs: Subbufs, armed: fn() -> bool) -> Result<Self, String> {
        let output = output.to_str().ok_or_else(|| format!("{} is not UTF-8", output.display()))?;
        Self::create(bench, &["--output", output], &["--discard"], subbufs, armed)
    }

    /// Creates session `hyptrace-bench-BENCH-PID` with `create_args`, its channel with
    /// `mode_args` and `subbufs`, enables the event and starts it.
    fn create(
        bench: &str,
        create_args: &[&str],
        mode_args: &[&str],
        subbufs: Subbufs,
        armed: fn() -> bool,
    ) -> Result<Self, String> {
        available()?;
        let session = Self { name: format!("hyptrace-bench-{bench}-{}", std::process::id()) };
        let name = session.name.as_str();
        lttng(&[&["create", name], create_args].concat())?;
        let (size, count) = (subbufs.size.to_string(), subbufs.count.to_string());
        let channel = ["--buffers-uid", "--subbuf-size", &size, "--num-subbuf", &count, CHANNEL];
        lttng(&[&["enable-channel", "--userspace", "--session", name], mode_args, &channel].concat())?;
        lttng(&["enable-event", "--userspace", "--session", name, "--channel", CHANNEL, EVENT])?;
        lttng(&["start", name])?;
        session.wait_until_armed(armed)?;
        Ok(session)
    }

    /// Stops recording, once the consumer daemon has written out every sub-buffer (`lttng stop`
    /// waits for it), and returns the events the channel discarded (its `Discarded events`
    /// statistic, which `lttng list` shows until the session is destroyed).
    pub fn stop(&self) -> Result<u64, String> {
        lttng(&["stop", &self.name])?;
        let listing = lttng(&["list", &self.name])?;
        discarded_events(&listing)
            .ok_or_else(|| format!("no `Discarded events:` statistic in `lttng list {}`:\n{listing}", self.name))
    }

    /// Waits for lttng-ust to register this process with the session daemon and arm the probe:
    /// until then a tracepoint costs a load and a branch, which is not what is measured.
    fn wait_until_armed(&self, armed: fn() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + ARMING;
        while !armed() {
            if Instant::now() > deadline {
                return Err(format!(
                    "session {} started but {EVENT} was not enabled in this process within {ARMING:?}: \
                     check `lttng list -u` lists this process's events",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(e) = lttng(&["destroy", &self.name]) {
            eprintln!("warning: {e}; destroy it with `lttng destroy {}`", self.name);
        }
    }
}

/// The `Discarded events: N` statistic of the one channel in `lttng list SESSION`'s output.
fn discarded_events(listing: &str) -> Option<u64> {
    listing.lines().find_map(|l| l.trim().strip_prefix("Discarded events:")?.trim().parse().ok())
}

/// Makes sure `lttng` can reach a session daemon, starting one if none runs and this process is
/// root; `Err` says why LTTng cannot run here.
pub fn available() -> Result<(), String> {
    if lttng(&["list"]).is_ok() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        return Err("no LTTng session daemon answers `lttng list`: start `lttng-sessiond --daemonize` \
                    (or run the benchmark as root, which starts it)"
            .into());
    }
    eprintln!("lttng: starting the session daemon (lttng-sessiond --daemonize), left running");
    run(Command::new("lttng-sessiond").arg("--daemonize"))?;
    lttng(&["list"]).map(drop)
}

/// Runs `lttng ARGS`, its output kept unless it fails.
fn lttng(args: &[&str]) -> Result<String, String> {
    run(Command::new("lttng").args(args))
}

/// Runs `command`; its standard output, or why it failed.
fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}").replace('"', "");
    let output = command
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e} (install lttng-tools, which tests/setup.sh does)"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("`{shown}` failed ({}): {}", output.status, stderr.trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discarded_events_statistic_is_read_from_the_listing() {
        let listing = "- hyptrace-bench: [enabled]\n\n    Statistics:\n      Discarded events: 1234\n\n";
        assert_eq!(discarded_events(listing), Some(1234));
        assert_eq!(discarded_events("Channels:\n"), None);
    }
}
