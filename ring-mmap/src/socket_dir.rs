//! Which control-socket directories this process trusts: as a producer about to create its
//! socket there, and as a client about to connect to one.
//!
//! Whoever may write to the socket's directory can put a socket of their own in its place, and a
//! client would then read whatever buffers that impostor hands it. So:
//!
//! - **The default directory** (that of [`default_socket_path`]: `$XDG_RUNTIME_DIR`, or
//!   `/tmp/hyptrace-<euid>`) must be private: a real directory, not a symlink (looked at with
//!   `lstat`), owned by this user or root, and closed to group and others (mode `0700` or
//!   stricter). The producer creates it so; the producer and its clients refuse anything else.
//! - **A directory named explicitly** (the parent of a client's `--socket PATH`) is looked at as
//!   the path resolves (symlinks written in the path are the caller's choice) and must be owned by
//!   this user or root. If group or others may write to it, it must be sticky, as `/tmp` is: only
//!   a file's owner may then remove or rename it, so the socket file itself must be a socket (not
//!   a symlink) owned by this user or root. Only that last directory is checked, not its
//!   ancestors.
//!
//! These checks say who could have put the socket there; who listens on it is checked on the
//! connection itself (`SO_PEERCRED`, in [`crate::client`]), which is what finally decides: a
//! client talks only to a producer running as its own user or root.

use crate::error::{Error, Unsafety};
use crate::private_dir::{Owners, dir_problem};
use crate::server::default_socket_path;
use crate::users::{euid, is_trusted_uid};
use std::path::Path;

/// Permission bits that let group or others write to a directory.
const WRITABLE_BY_OTHERS: u32 = 0o022;
/// The sticky bit: in such a directory only a file's owner (or the directory's) may remove or
/// rename the file.
const STICKY: u32 = 0o1000;

/// Checks that `dir`, which exists, is private to this user (or root): a real directory (not a
/// symlink), owned by this user or root, closed to group and others. The rule for the default
/// socket directory, on both ends of the socket.
pub fn check_private_dir(dir: &Path) -> Result<(), Error> {
    let stat = rustix::fs::lstat(dir).map_err(|e| Error::path("looking at the socket directory", dir, e.into()))?;
    match dir_problem(&stat, Owners::ThisUserOrRoot) {
        Some(problem) => Err(Error::UntrustedDir { path: dir.to_path_buf(), problem }),
        None => Ok(()),
    }
}

/// Checks the directory of `socket` before a client connects to it: the default socket's by
/// [`check_private_dir`], any other as the module says. A directory or socket that does not exist
/// is an [`Error::Path`] of kind `NotFound` (the producer may not have started yet).
pub fn check_for_client(socket: &Path) -> Result<(), Error> {
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if socket == default_socket_path() {
        return check_private_dir(dir);
    }
    let stat = rustix::fs::stat(dir).map_err(|e| Error::path("looking at the socket directory", dir, e.into()))?;
    let refuse = |problem| Err(Error::UntrustedDir { path: dir.to_path_buf(), problem });
    if !rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir() {
        return refuse(Unsafety::NotADirectory);
    }
    if !is_trusted_uid(stat.st_uid) {
        return refuse(Unsafety::OwnedBy { owner: stat.st_uid, euid: euid() });
    }
    let mode = stat.st_mode & 0o7777;
    if mode & WRITABLE_BY_OTHERS == 0 {
        return Ok(());
    }
    if mode & STICKY == 0 {
        return refuse(Unsafety::ReplaceableByOthers { mode });
    }
    // A shared sticky directory: the socket file is safe from others only if it is not theirs.
    let file = rustix::fs::lstat(socket).map_err(|e| Error::path("looking at the socket", socket, e.into()))?;
    if !rustix::fs::FileType::from_raw_mode(file.st_mode).is_socket() {
        return refuse(Unsafety::NotASocket);
    }
    if !is_trusted_uid(file.st_uid) {
        return refuse(Unsafety::ForeignSocket { owner: file.st_uid });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// uid and gid of `nobody`.
    const NOBODY: u32 = 65534;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn untrusted(result: Result<(), Error>) -> Unsafety {
        match result {
            Err(Error::UntrustedDir { problem, .. }) => problem,
            other => panic!("expected an untrusted directory, got {other:?}"),
        }
    }

    /// What refusing `uid` as an owner looks like.
    fn owned_by(owner: u32) -> Unsafety {
        Unsafety::OwnedBy { owner, euid: euid() }
    }

    #[test]
    fn a_private_directory_is_a_real_closed_directory_of_ours() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("private");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        check_private_dir(&dir).expect("ours, 0700");
        chmod(&dir, 0o777);
        assert_eq!(untrusted(check_private_dir(&dir)), Unsafety::OpenToOthers { mode: 0o777 });
        chmod(&dir, 0o750);
        assert_eq!(
            untrusted(check_private_dir(&dir)),
            Unsafety::OpenToOthers { mode: 0o750 },
            "readable by the group is open too"
        );
        chmod(&dir, 0o700);
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(untrusted(check_private_dir(&link)), Unsafety::SymbolicLink, "even to a good directory");
        let file = top.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(untrusted(check_private_dir(&file)), Unsafety::NotADirectory);
        let missing = check_private_dir(&top.path().join("missing"));
        assert!(matches!(missing, Err(Error::Path { source, .. }) if source.kind() == std::io::ErrorKind::NotFound));
    }

    #[test]
    fn directories_of_other_users_are_refused() {
        if !rustix::process::geteuid().is_root() {
            println!("SKIPPED: giving a directory to another user needs root");
            return;
        }
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("theirs");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o700);
        std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
        assert_eq!(untrusted(check_private_dir(&dir)), owned_by(NOBODY));
        assert_eq!(untrusted(check_for_client(&dir.join("sock"))), owned_by(NOBODY));
    }

    #[test]
    fn a_named_directory_may_be_open_to_reading_but_not_to_writing() {
        let top = tempfile::tempdir().unwrap();
        let socket = top.path().join("sock");
        chmod(top.path(), 0o755);
        check_for_client(&socket).expect("ours, 0755: others can read but not replace the socket");
        chmod(top.path(), 0o777);
        assert_eq!(untrusted(check_for_client(&socket)), Unsafety::ReplaceableByOthers { mode: 0o777 });
        chmod(top.path(), 0o775);
        assert_eq!(
            untrusted(check_for_client(&socket)),
            Unsafety::ReplaceableByOthers { mode: 0o775 },
            "group-writable"
        );
    }

    #[test]
    fn in_a_sticky_shared_directory_the_socket_file_must_be_ours() {
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o1777);
        let socket = top.path().join("sock");
        let missing = check_for_client(&socket);
        assert!(matches!(missing, Err(Error::Path { source, .. }) if source.kind() == std::io::ErrorKind::NotFound));
        std::fs::write(&socket, b"").unwrap();
        assert_eq!(untrusted(check_for_client(&socket)), Unsafety::NotASocket);
        std::fs::remove_file(&socket).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        check_for_client(&socket).expect("our own socket in a sticky directory");
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::lchown(&socket, Some(NOBODY), Some(NOBODY)).unwrap();
            assert_eq!(untrusted(check_for_client(&socket)), Unsafety::ForeignSocket { owner: NOBODY });
        } else {
            println!("SKIPPED: giving a socket file to another user needs root");
        }
        drop(listener);
    }
}
