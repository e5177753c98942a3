//! A directory only this user can reach, opened once: every file operation goes through its
//! descriptor, never through its path again, so a name swapped under the caller cannot redirect
//! a write (to another user's file, or through a symbolic link to a file of root's).
//!
//! The directory must be a directory itself (not a symbolic link to one), owned by the
//! effective uid, with no permission bits for group or others: then nobody else but root can
//! add, remove or rename anything in it. It is created so if it is missing. Its files are opened
//! with `O_NOFOLLOW` and must be regular files of this user's with a single name; a file replaced
//! whole is written under a temporary name created with `O_EXCL` and renamed over the old one.

use crate::error::{Error, Unsafety};
use crate::users::{euid, is_trusted_uid};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Mode of a directory this module creates: this user only.
const DIR_MODE: u32 = 0o700;
/// Mode of the files it creates.
const FILE_MODE: u32 = 0o600;

/// A directory only this user can write or read, open.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl PrivateDir {
    /// Opens the directory `path`, creating it with mode 0700 if it is missing (and its missing
    /// parents with the default mode), and checks that it is private: refused
    /// ([`Error::UnsafeDir`]) if it is a symbolic link or not a directory, belongs to another
    /// user, or is open to group or others.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::path("creating", parent, e))?;
        }
        match rustix::fs::mkdir(path, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::path("creating", path, e.into())),
        }
        let unsafe_dir = |problem| Error::UnsafeDir { path: path.to_path_buf(), problem };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| {
            // ENOTDIR for a symbolic link too (O_DIRECTORY is checked first): tell them apart.
            let link = rustix::fs::lstat(path).is_ok_and(|s| FileType::from_raw_mode(s.st_mode).is_symlink());
            match e {
                Errno::NOTDIR | Errno::LOOP if link => unsafe_dir(Unsafety::SymbolicLink),
                Errno::NOTDIR => unsafe_dir(Unsafety::NotADirectory),
                e => Error::path("opening", path, e.into()),
            }
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::path("examining", path, e.into()))?;
        match dir_problem(&stat, Owners::ThisUser) {
            Some(problem) => Err(unsafe_dir(problem)),
            None => Ok(Self { path: path.to_path_buf(), fd }),
        }
    }

    /// The directory's path (for messages: the descriptor is what is used).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in the directory (for messages).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the file `name` with `flags` (`O_NOFOLLOW` and `O_CLOEXEC` added; a file `O_CREAT`
    /// makes gets mode 0600) and checks that it is a regular file of this user's with a single
    /// name, refusing it otherwise ([`Error::UnsafeFile`]). `Ok(None)` when it exists though
    /// `flags` hold `O_EXCL`, or does not exist (any more).
    pub fn open_file(&self, name: &str, flags: OFlags) -> Result<Option<OwnedFd>, Error> {
        let path = self.path_of(name);
        // O_NONBLOCK so that a FIFO or device of that name cannot block the open; taken off again
        // once the file is known to be a regular file.
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => fd,
            Err(Errno::EXIST | Errno::NOENT) => return Ok(None),
            // A symbolic link (ELOOP), a directory (EISDIR), another user's file (EACCES): say
            // which, if that is why.
            Err(e) => {
                return Err(match self.file_problem_at(name) {
                    Some(problem) => Error::UnsafeFile { path, problem },
                    None => Error::path("opening", &path, e.into()),
                });
            }
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| Error::path("examining", &path, e.into()))?;
        if let Some(problem) = file_problem(&stat) {
            return Err(Error::UnsafeFile { path, problem });
        }
        let status = rustix::fs::fcntl_getfl(&fd).map_err(|e| Error::path("examining", &path, e.into()))?;
        rustix::fs::fcntl_setfl(&fd, status - OFlags::NONBLOCK).map_err(|e| Error::path("opening", &path, e.into()))?;
        Ok(Some(fd))
    }

    /// What is wrong with the entry `name`, if it exists and something is.
    fn file_problem_at(&self, name: &str) -> Option<Unsafety> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok().and_then(|stat| file_problem(&stat))
    }

    /// Replaces the file `name` with one holding `bytes`, atomically (a reader sees the old
    /// content or the new, never a mix): written as `.NAME.new`, a new file (a stale one of that
    /// name, e.g. of a producer killed while writing it, is removed first, never written
    /// through), then renamed over `name`.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        let temporary = format!(".{name}.new");
        let temporary_path = self.path_of(&temporary);
        let create = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let fd = match self.open_file(&temporary, create)? {
            Some(fd) => fd,
            None => {
                self.remove(&temporary)?;
                self.open_file(&temporary, create)?
                    .ok_or_else(|| Error::path("creating", &temporary_path, std::io::ErrorKind::AlreadyExists.into()))?
            }
        };
        std::fs::File::from(fd).write_all(bytes).map_err(|e| Error::path("writing", &temporary_path, e))?;
        rustix::fs::renameat(&self.fd, &temporary, &self.fd, name)
            .map_err(|e| Error::path("renaming into place", &self.path_of(name), e.into()))
    }

    /// Removes the entry `name` (whatever it is but a directory: a symbolic link goes, not what
    /// it points to); false if there was none.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::path("removing", &self.path_of(name), e.into())),
        }
    }

    /// The names of the directory's entries (but `.` and `..`; names that are not UTF-8 are
    /// left out).
    pub fn names(&self) -> Result<Vec<String>, Error> {
        let listing = |e: Errno| Error::path("listing", &self.path, e.into());
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd).map_err(listing)? {
            let entry = entry.map_err(listing)?;
            if let Ok(name) = entry.file_name().to_str()
                && name != "."
                && name != ".."
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
}

/// Who may own a private directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owners {
    /// This process's user only: a producer's buffer directory, whose files it writes.
    ThisUser,
    /// This process's user or root: the control socket's default directory.
    ThisUserOrRoot,
}

/// What makes a directory, as `lstat` or `fstat` describes it, not private to `owners`: not a
/// real directory, another owner, or open to group and others.
pub(crate) fn dir_problem(stat: &Stat, owners: Owners) -> Option<Unsafety> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    let trusted = match owners {
        Owners::ThisUser => stat.st_uid == euid(),
        Owners::ThisUserOrRoot => is_trusted_uid(stat.st_uid),
    };
    if kind.is_symlink() {
        Some(Unsafety::SymbolicLink)
    } else if !kind.is_dir() {
        Some(Unsafety::NotADirectory)
    } else if !trusted {
        Some(Unsafety::OwnedBy { owner: stat.st_uid, euid: euid() })
    } else if stat.st_mode & 0o077 != 0 {
        Some(Unsafety::OpenToOthers { mode: stat.st_mode & 0o7777 })
    } else {
        None
    }
}

/// What makes a file unfit to be written by a producer, if anything.
fn file_problem(stat: &Stat) -> Option<Unsafety> {
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind.is_symlink() {
        Some(Unsafety::SymbolicLink)
    } else if !kind.is_file() {
        Some(Unsafety::NotARegularFile)
    } else if stat.st_uid != euid() {
        Some(Unsafety::OwnedBy { owner: stat.st_uid, euid: euid() })
    } else if stat.st_nlink != 1 {
        // A u64 here, a u32 on some targets (aarch64).
        #[allow(clippy::unnecessary_cast)]
        let links = stat.st_nlink as u64;
        Some(Unsafety::HardLinked { links })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_private_and_an_open_one_refused() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("a/b");
        let dir = PrivateDir::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(dir.path(), path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
        let refused = PrivateDir::open(&path).unwrap_err();
        assert!(
            matches!(&refused, Error::UnsafeDir { problem: Unsafety::OpenToOthers { mode: 0o750 }, .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("mode 0750"), "{refused}");
    }

    #[test]
    fn symbolic_links_and_other_files_are_refused() {
        let parent = tempfile::tempdir().unwrap();
        let real = parent.path().join("real");
        let dir = PrivateDir::open(&real).unwrap();
        let link = parent.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let refused = PrivateDir::open(&link).unwrap_err();
        assert!(matches!(refused, Error::UnsafeDir { problem: Unsafety::SymbolicLink, .. }), "{refused}");
        std::fs::write(parent.path().join("file"), b"x").unwrap();
        let refused = PrivateDir::open(&parent.path().join("file")).unwrap_err();
        assert!(matches!(refused, Error::UnsafeDir { problem: Unsafety::NotADirectory, .. }), "{refused}");

        std::os::unix::fs::symlink("/dev/null", real.join("link")).unwrap();
        let refused = dir.open_file("link", OFlags::RDONLY).unwrap_err();
        assert!(matches!(refused, Error::UnsafeFile { problem: Unsafety::SymbolicLink, .. }), "{refused}");
        std::fs::create_dir(real.join("sub")).unwrap();
        let refused = dir.open_file("sub", OFlags::RDONLY).unwrap_err();
        assert!(matches!(refused, Error::UnsafeFile { problem: Unsafety::NotARegularFile, .. }), "{refused}");
        rustix::fs::mknodat(&dir.fd, "fifo", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let refused = dir.open_file("fifo", OFlags::RDONLY).unwrap_err();
        assert!(matches!(refused, Error::UnsafeFile { problem: Unsafety::NotARegularFile, .. }), "{refused}");
        std::fs::write(real.join("one"), b"x").unwrap();
        std::fs::hard_link(real.join("one"), real.join("two")).unwrap();
        let refused = dir.open_file("one", OFlags::RDWR).unwrap_err();
        assert!(matches!(refused, Error::UnsafeFile { problem: Unsafety::HardLinked { links: 2 }, .. }), "{refused}");
        assert!(dir.open_file("missing", OFlags::RDONLY).unwrap().is_none());
        assert!(dir.open_file("one", OFlags::RDWR | OFlags::CREATE | OFlags::EXCL).unwrap().is_none());
    }

    #[test]
    fn a_file_is_replaced_whole_and_a_stale_temporary_is_not_written_through() {
        let parent = tempfile::tempdir().unwrap();
        let victim = parent.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let dir = PrivateDir::open(&parent.path().join("d")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path_of(".formats.new")).unwrap();
        dir.replace("formats", b"new formats").unwrap();
        assert_eq!(std::fs::read(dir.path_of("formats")).unwrap(), b"new formats");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.path_of(".formats.new").exists());
        let mode = std::fs::metadata(dir.path_of("formats")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(names, ["formats"]);
        assert!(dir.remove("formats").unwrap());
        assert!(!dir.remove("formats").unwrap());
    }
}
