//! What hyptrace's tests need of the machine, and the one rule for a capability it lacks.
//!
//! A test that needs KVM, tracefs, root (to act as a second user) or a program such as
//! `trace-cmd` asks here first. Where the capability is there, it runs. Where it is truly
//! absent, the test is skipped with one line on stdout, `SKIPPED: <what is missing>; <test> did
//! not run`, and returns without checking anything. On the CI machines (`CI` set), which have
//! every capability these tests use (`.ci/run` installs what they need), a missing one fails the
//! test instead: a test skipped there would be a test that cannot fail.
#![forbid(unsafe_code)]

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says that `test` did not run for want of `missing`, or, in CI, fails it.
pub fn skip(missing: impl Display, test: &str) {
    assert!(std::env::var_os("CI").is_none(), "{missing}; CI machines have it, so {test} must run there");
    println!("SKIPPED: {missing}; {test} did not run");
}

/// Whether this machine has `/dev/kvm` (skipping `test` if not).
pub fn kvm(test: &str) -> bool {
    let present = Path::new("/dev/kvm").exists();
    if !present {
        skip("/dev/kvm does not exist on this machine", test);
    }
    present
}

/// Tracefs, mounted first if it is not yet (skipping `test` where it cannot be had).
pub fn tracefs(test: &str) -> Option<PathBuf> {
    ring_mmap::kernel::mount_tracefs().map_err(|e| skip(format_args!("tracefs is not available here ({e})"), test)).ok()
}

/// Whether this process runs as root (skipping `test`, which needs it to `why`, if not).
pub fn root(test: &str, why: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        skip(format_args!("not running as root, which is needed to {why}"), test);
    }
    root
}

/// Whether `program` runs here (`program --version`), skipping `test` if it does not.
pub fn program(program: &str, test: &str) -> bool {
    let runs = Command::new(program).arg("--version").output().is_ok();
    if !runs {
        skip(format_args!("{program} is not installed (tests/setup.sh installs it)"), test);
    }
    runs
}
