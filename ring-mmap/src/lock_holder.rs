//! Who holds a `flock` on a file, as `/proc/locks` tells: a lock conflict on a buffer file means
//! a running producer of this user's only when the holder runs as this user and holds it
//! exclusively (post-mortem readers hold shared locks).

use rustix::fs::{major, minor};
use std::os::fd::BorrowedFd;

/// A process holding a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockHolder {
    /// Its process id (in this process's pid namespace).
    pub pid: u32,
    /// The uid it runs as (the owner of `/proc/PID`).
    pub uid: u32,
    /// It holds a shared lock (`READ` in `/proc/locks`), as post-mortem readers do.
    pub shared: bool,
}

/// The processes holding a `flock` on the file open as `fd`, as far as `/proc/locks` names them
/// (none where `/proc` is missing; holders in another pid namespace are not named).
pub(crate) fn lock_holders(fd: BorrowedFd<'_>) -> Vec<LockHolder> {
    let Ok(stat) = rustix::fs::fstat(fd) else { return Vec::new() };
    let file = (major(stat.st_dev), minor(stat.st_dev), stat.st_ino);
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else { return Vec::new() };
    locks
        .lines()
        .filter_map(|line| flock_holder(line, file))
        .filter_map(|(pid, shared)| {
            let uid = rustix::fs::stat(format!("/proc/{pid}")).ok()?.st_uid;
            Some(LockHolder { pid, uid, shared })
        })
        .collect()
}

/// The pid of a `/proc/locks` line, and whether its lock is shared, if it is a granted `flock`
/// on `file` (major and minor device number, inode). A line reads
/// `1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308666 0 EOF`; a waiter's has `->` after the number.
fn flock_holder(line: &str, file: (u32, u32, u64)) -> Option<(u32, bool)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    let shared = match *fields.get(3)? {
        "READ" => true,
        "WRITE" => false,
        _ => return None,
    };
    let pid = fields.get(4)?.parse().ok()?;
    let mut id = fields.get(5)?.split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let inode: u64 = id.next()?.parse().ok()?;
    ((major, minor, inode) == file).then_some((pid, shared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_read() {
        let file = (0xfe, 0, 5308666);
        assert_eq!(flock_holder("1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308666 0 EOF", file), Some((2665, false)));
        assert_eq!(flock_holder("2: FLOCK  ADVISORY  READ 17 fe:00:5308666 0 EOF", file), Some((17, true)));
        assert_eq!(flock_holder("1: -> FLOCK  ADVISORY  WRITE 3 fe:00:5308666 0 EOF", file), None);
        assert_eq!(flock_holder("3: POSIX  ADVISORY  WRITE 4 fe:00:5308666 0 EOF", file), None);
        assert_eq!(flock_holder("1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308667 0 EOF", file), None);
        assert_eq!(flock_holder("garbage", file), None);
    }

    #[test]
    fn this_processs_own_locks_are_named_with_their_kind() {
        let me = crate::users::euid();
        let pid = std::process::id();
        let file = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        rustix::fs::flock(fd, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert_eq!(lock_holders(fd), [LockHolder { pid, uid: me, shared: false }]);
        rustix::fs::flock(fd, rustix::fs::FlockOperation::LockShared).unwrap();
        assert_eq!(lock_holders(fd), [LockHolder { pid, uid: me, shared: true }]);
    }
}
