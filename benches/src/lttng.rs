//! An LTTng-UST tracing session for a benchmark, or the reason there is none: the session records
//! `hyptrace_bench:payload_16B` (`lttng_probe`) in snapshot mode (overwrite, no reader:
//! a flight recorder, as hyptrace's writer benchmarks run) into per-UID buffers laid out as
//! hyptrace's are, 256 × 4 KiB sub-buffers per CPU. It is created through the `lttng` command
//! and destroyed when dropped, also when the benchmark panics.
//!
//! Nothing here calls the probe itself: only the benchmarks that record through it link it, and
//! with it lttng-ust (`build.rs`).

use std::process::Command;
use std::time::{Duration, Instant};

/// Sub-buffer size and count per CPU: 1 MiB, as hyptrace's writer benchmarks use.
const SUBBUF_SIZE: &str = "4096";
const NUM_SUBBUF: &str = "256";
/// The session's only channel.
const CHANNEL: &str = "hyptrace-bench";
/// The event the probe records.
const EVENT: &str = "hyptrace_bench:payload_16B";
/// How long lttng-ust may take to register this process with the session daemon and arm the
/// probe once the session starts.
const ARMING: Duration = Duration::from_secs(10);

/// Why the LTTng benchmarks cannot run in a build made without lttng-ust.
pub const NOT_BUILT: &str = "lttng-ust was not found when the benchmarks were built: install liblttng-ust-dev (tests/setup.sh does) and rebuild";

/// A started LTTng session recording `hyptrace_bench:payload_16B` in this process; destroyed when
/// dropped.
pub struct Session {
    name: String,
}

impl Session {
    /// Creates and starts a session named after `bench` and this process, starting the session
    /// daemon first if none runs and this process may (root), and waits until `armed` (the
    /// probe's `lttng_probe::enabled`) says lttng-ust has armed the probe in this
    /// process. `Err` says why LTTng cannot run here, for the benchmark to print as the reason it
    /// is skipped.
    pub fn start(bench: &str, armed: fn() -> bool) -> Result<Self, String> {
        ensure_session_daemon()?;
        let session = Self { name: format!("hyptrace-bench-{bench}-{}", std::process::id()) };
        lttng(&["create", &session.name, "--snapshot"])?;
        let name = session.name.as_str();
        lttng(&[
            "enable-channel",
            "--userspace",
            "--session",
            name,
            "--buffers-uid",
            "--overwrite",
            "--subbuf-size",
            SUBBUF_SIZE,
            "--num-subbuf",
            NUM_SUBBUF,
            CHANNEL,
        ])?;
        lttng(&["enable-event", "--userspace", "--session", name, "--channel", CHANNEL, EVENT])?;
        lttng(&["start", name])?;
        session.wait_until_armed(armed)?;
        Ok(session)
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

/// Makes sure `lttng` can reach a session daemon, starting one if none runs and this process is
/// root.
fn ensure_session_daemon() -> Result<(), String> {
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
