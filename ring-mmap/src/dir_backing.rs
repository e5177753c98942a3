//! A producer's buffer directory ([`Backing::Dir`](crate::Backing::Dir)), open: each CPU's file
//! `cpuN` and what a post-mortem reader needs besides ([`crate::postmortem`]), all in a
//! [`PrivateDir`], so that no other user can make the producer write anywhere but there, or
//! read what it writes.
//!
//! A directory that already holds buffer files is refused unless the producer was told to
//! overwrite them: a live producer's always ([`Error::ProducerAlive`]: it holds their `flock`),
//! a dead one's by default ([`Error::DirHoldsBuffers`]), so that they are read before they are
//! lost.

use crate::backing::{cpu_file_name, lock_cpu_file};
use crate::error::Error;
use crate::postmortem::CLOCK_FILE;
use crate::private_dir::PrivateDir;
use rustix::fs::{FlockOperation, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A producer's buffer directory, open and checked.
#[derive(Debug)]
pub(crate) struct DirBacking {
    dir: PrivateDir,
    /// Whether a dead producer's buffer files may be overwritten.
    overwrite: bool,
}

/// One CPU's buffer file as the producer holds it.
#[derive(Debug)]
pub(crate) struct CpuFile {
    /// Read-write, locked exclusively for the producer's life.
    pub read_write: OwnedFd,
    /// Read-only, for consumers.
    pub read_only: OwnedFd,
}

impl DirBacking {
    /// Opens the directory `path` (creating it if missing) and checks that only this user can
    /// reach it ([`PrivateDir`]); unless `overwrite`, refuses it if it holds any `cpuN` file.
    pub fn open(path: &Path, overwrite: bool) -> Result<Self, Error> {
        let backing = Self { dir: PrivateDir::open(path)?, overwrite };
        if !overwrite {
            backing.refuse_buffer_files()?;
        }
        Ok(backing)
    }

    /// Creates CPU `cpu`'s file, empty, and takes its exclusive `flock`, held as long as the
    /// returned read-write descriptor (the kernel drops it when the process dies, however it
    /// dies): a second producer cannot take over the directory, and a post-mortem reader can
    /// tell a live producer's files from a dead one's. An existing file is refused unless this
    /// directory was opened to overwrite, and then emptied only once the lock is held.
    pub fn create_cpu_file(&self, cpu: u32) -> Result<CpuFile, Error> {
        let name = cpu_file_name(cpu);
        let path = self.dir.path_of(&name);
        let vanished = || Error::path("creating", &path, std::io::ErrorKind::NotFound.into());
        let read_write = if self.overwrite {
            self.dir.open_file(&name, OFlags::RDWR | OFlags::CREATE)?.ok_or_else(vanished)?
        } else {
            match self.dir.open_file(&name, OFlags::RDWR | OFlags::CREATE | OFlags::EXCL)? {
                Some(fd) => fd,
                // Made since the directory was checked: another producer's, alive or not.
                None => {
                    self.refuse_if_alive(&name)?;
                    return Err(Error::DirHoldsBuffers { path: self.dir.path().to_path_buf() });
                }
            }
        };
        lock_cpu_file(read_write.as_fd(), &path, FlockOperation::NonBlockingLockExclusive)?;
        // Only now, with the lock held, is any old content discarded.
        rustix::fs::ftruncate(&read_write, 0).map_err(|e| Error::path("truncating", &path, e.into()))?;
        let read_only = self.dir.open_file(&name, OFlags::RDONLY)?.ok_or_else(vanished)?;
        let same = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|stat| (stat.st_dev, stat.st_ino));
        match (same(&read_write), same(&read_only)) {
            (Ok(written), Ok(read)) if written == read => Ok(CpuFile { read_write, read_only }),
            _ => Err(Error::path("reopening", &path, std::io::Error::other("it was replaced while being opened"))),
        }
    }

    /// Writes `bytes` to the file `name`, atomically ([`PrivateDir::replace`]).
    pub fn publish(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        self.dir.replace(name, bytes)
    }

    /// Removes what an earlier producer left that this one does not overwrite, so that a
    /// post-mortem reader does not take it for this producer's: the files of CPUs `nr_cpus` and
    /// up (a reader takes `cpu0` up to the last consecutive file), and the clock conversion
    /// (published again if this producer has one). A producer creates its own CPUs' files first,
    /// holding their locks, then calls this: no other live producer can hold any file of the
    /// directory then (it would hold `cpu0`), so the stale files are removed without locking them
    /// (a post-mortem reader of the old run may hold one; unlinking leaves its mapping intact).
    pub fn remove_stale_files(&self, nr_cpus: u32) -> Result<(), Error> {
        self.dir.remove(CLOCK_FILE)?;
        for cpu in nr_cpus.. {
            if !self.dir.remove(&cpu_file_name(cpu))? {
                break;
            }
        }
        Ok(())
    }

    /// Refuses the directory if it holds buffer files: [`Error::ProducerAlive`] if a live
    /// producer holds one, [`Error::UnsafeFile`] if one is not this user's regular file,
    /// [`Error::DirHoldsBuffers`] otherwise.
    fn refuse_buffer_files(&self) -> Result<(), Error> {
        let mut cpus: Vec<u32> = self.dir.names()?.iter().filter_map(|name| cpu_of_file_name(name)).collect();
        if cpus.is_empty() {
            return Ok(());
        }
        cpus.sort_unstable();
        for cpu in cpus {
            self.refuse_if_alive(&cpu_file_name(cpu))?;
        }
        Err(Error::DirHoldsBuffers { path: self.dir.path().to_path_buf() })
    }

    /// Refuses the buffer file `name` if a live producer holds it or it is not this user's
    /// regular file.
    fn refuse_if_alive(&self, name: &str) -> Result<(), Error> {
        match self.dir.open_file(name, OFlags::RDONLY)? {
            Some(fd) => lock_cpu_file(fd.as_fd(), &self.dir.path_of(name), FlockOperation::NonBlockingLockShared),
            None => Ok(()),
        }
    }
}

/// The CPU whose buffer file `name` is (`cpu7` for 7), if it is one.
fn cpu_of_file_name(name: &str) -> Option<u32> {
    let cpu = name.strip_prefix("cpu")?.parse().ok()?;
    (cpu_file_name(cpu) == name).then_some(cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_buffer_file_names_name_cpus() {
        assert_eq!(cpu_of_file_name("cpu0"), Some(0));
        assert_eq!(cpu_of_file_name("cpu17"), Some(17));
        for other in ["cpu", "cpu01", "cpu+1", "cpu-1", "cpu1.new", "formats", ".cpu0.new"] {
            assert_eq!(cpu_of_file_name(other), None, "{other}");
        }
    }
}
