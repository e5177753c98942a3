//! Who holds a `flock` on a file, as `/proc/locks` tells: a lock conflict on a buffer file means
//! a running producer of this user's only when the holder runs as this user.

use rustix::fs::{major, minor};
use std::os::fd::BorrowedFd;

/// A process holding a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockHolder {
    /// Its process id (in this process's pid namespace).
    pub pid: u32,
    /// The uid it runs as (the owner of `/proc/PID`).
    pub uid: u32,
}

/// A process of another user than this process's effective one holding a `flock` on the file
/// open as `fd`, if `/proc/locks` names one (it cannot be told where `/proc` is missing or the
/// holder is in another pid namespace).
pub(crate) fn another_users_holder(fd: BorrowedFd<'_>) -> Option<LockHolder> {
    let stat = rustix::fs::fstat(fd).ok()?;
    let file = (major(stat.st_dev), minor(stat.st_dev), stat.st_ino as u64);
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let me = rustix::process::geteuid().as_raw();
    locks
        .lines()
        .filter_map(|line| flock_holder_pid(line, file))
        .filter_map(|pid| {
            let owner = rustix::fs::stat(format!("/proc/{pid}")).ok()?.st_uid;
            Some(LockHolder { pid, uid: owner })
        })
        .find(|holder| holder.uid != me)
}

/// The pid of a `/proc/locks` line if it is a granted `flock` on `file` (major and minor device
/// number, inode). A line reads `1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308666 0 EOF`; a waiter's
/// has `->` after the number.
fn flock_holder_pid(line: &str, file: (u32, u32, u64)) -> Option<u32> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    let pid = fields.get(4)?.parse().ok()?;
    let mut id = fields.get(5)?.split(':');
    let major = u32::from_str_radix(id.next()?, 16).ok()?;
    let minor = u32::from_str_radix(id.next()?, 16).ok()?;
    let inode: u64 = id.next()?.parse().ok()?;
    ((major, minor, inode) == file).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_read() {
        let file = (0xfe, 0, 5308666);
        assert_eq!(flock_holder_pid("1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308666 0 EOF", file), Some(2665));
        assert_eq!(flock_holder_pid("2: FLOCK  ADVISORY  READ 17 fe:00:5308666 0 EOF", file), Some(17));
        assert_eq!(flock_holder_pid("1: -> FLOCK  ADVISORY  WRITE 3 fe:00:5308666 0 EOF", file), None);
        assert_eq!(flock_holder_pid("3: POSIX  ADVISORY  WRITE 4 fe:00:5308666 0 EOF", file), None);
        assert_eq!(flock_holder_pid("1: FLOCK  ADVISORY  WRITE 2665 fe:00:5308667 0 EOF", file), None);
        assert_eq!(flock_holder_pid("garbage", file), None);
    }

    #[test]
    fn this_users_own_lock_is_not_another_users() {
        let file = tempfile::tempfile().unwrap();
        let fd = std::os::fd::AsFd::as_fd(&file);
        rustix::fs::flock(fd, rustix::fs::FlockOperation::LockExclusive).unwrap();
        assert_eq!(another_users_holder(fd), None);
    }
}
