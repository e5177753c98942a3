//! One CPU's pages while a trace.dat is being recorded: an anonymous temporary file the CPU's
//! reader appends whole pages to, copied into the trace.dat when recording ends.
//!
//! A spool writes through the page cache ([`SpoolIo::Buffered`]) or around it
//! ([`SpoolIo::Direct`], `O_DIRECT`): pages are gathered in page-aligned chunks, which a thread
//! of the spool writes a mebibyte at a time straight to the file system's device. Storing into the page cache means
//! allocating a new page of memory for every 4 KiB recorded, which costs more CPU than anything
//! else the recorder does on machines where fresh memory is expensive (a virtual machine whose
//! host takes freed memory back); a direct write hands the device the same buffer over and over.
//! On a file system without a device (tmpfs) `O_DIRECT` is accepted and saves nothing.

use super::DatError;
use memmap2::MmapMut;
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// How a spool stores its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpoolIo {
    /// Through the page cache, gathering small pages into writes of 64 KiB.
    #[default]
    Buffered,
    /// Around the page cache (`O_DIRECT`), in aligned writes of [`DIRECT_CHUNK`] bytes.
    Direct,
}

/// Bytes gathered before a direct write (or one page, if pages are larger).
pub const DIRECT_CHUNK: usize = 1 << 20;

/// Chunks of a direct spool: one being filled while the others wait for or are in the device.
const DIRECT_CHUNKS: usize = 4;

/// What `O_DIRECT` transfers must be aligned to, in memory, file offset and length: the largest
/// logical block size in common use. Pages are powers of two of at least this size.
const DIRECT_ALIGN: usize = 4096;

/// One CPU's spooled pages. [`super::DatWriter::spools`] hands them out, so that each CPU can be
/// recorded on a thread of its own.
#[derive(Debug)]
pub struct Spool {
    sink: Sink,
    page_size: usize,
    pages: u64,
}

#[derive(Debug)]
enum Sink {
    Buffered(BufWriter<File>),
    Direct(DirectSink),
}

/// Pages gathered in aligned chunks, each written with `O_DIRECT` by a thread of the spool's own
/// once it is full, so that the reader goes on reading while the device takes its time: a direct
/// write returns only once the device has the data, which now and then takes milliseconds, as
/// long as a CPU's buffer lasts at the rates a recorder keeps up with. Chunks come back to be
/// filled again once written; with all of them waiting for the device, the reader waits too.
#[derive(Debug)]
struct DirectSink {
    /// The chunk being filled: page-aligned (a private anonymous mapping), a whole number of
    /// pages long.
    chunk: MmapMut,
    filled: usize,
    /// Full chunks, with how much of each to write, to the writing thread.
    to_write: Option<SyncSender<(MmapMut, usize)>>,
    /// Written chunks, back from it.
    written: Receiver<MmapMut>,
    /// The writing thread, which returns the file (or what failed) when `to_write` closes.
    writer: Option<JoinHandle<std::io::Result<File>>>,
}

impl DirectSink {
    fn new(file: File, chunk_len: usize) -> Result<Self, DatError> {
        let (to_write, full) = sync_channel::<(MmapMut, usize)>(DIRECT_CHUNKS);
        let (give_back, written) = sync_channel::<MmapMut>(DIRECT_CHUNKS);
        for _ in 1..DIRECT_CHUNKS {
            give_back.send(MmapMut::map_anon(chunk_len)?).expect("the receiver is here");
        }
        let writer = std::thread::Builder::new().name("hyptrace-spool".into()).spawn(move || {
            let mut file = file;
            for (chunk, len) in full {
                file.write_all(&chunk[..len])?;
                // The reader has stopped (and will not want it) if this fails.
                let _ = give_back.send(chunk);
            }
            Ok(file)
        })?;
        Ok(Self {
            chunk: MmapMut::map_anon(chunk_len)?,
            filled: 0,
            to_write: Some(to_write),
            written,
            writer: Some(writer),
        })
    }

    fn write_page(&mut self, page: &[u8]) -> Result<(), DatError> {
        self.chunk[self.filled..self.filled + page.len()].copy_from_slice(page);
        self.filled += page.len();
        if self.filled == self.chunk.len() {
            let Ok(next) = self.written.recv() else { return Err(self.writer_failure()) };
            let full = std::mem::replace(&mut self.chunk, next);
            if !self.send(full, self.filled) {
                return Err(self.writer_failure());
            }
            self.filled = 0;
        }
        Ok(())
    }

    /// Hands the writing thread `len` bytes of `chunk`; false if it has stopped.
    fn send(&self, chunk: MmapMut, len: usize) -> bool {
        self.to_write.as_ref().is_some_and(|w| w.send((chunk, len)).is_ok())
    }

    /// Writes what is left (whole pages, so a multiple of [`DIRECT_ALIGN`] at an offset that is
    /// one too) and hands back the file once the writing thread has written everything.
    fn finish(mut self) -> Result<File, DatError> {
        let partial = std::mem::replace(&mut self.chunk, MmapMut::map_anon(1)?);
        if self.filled > 0 && !self.send(partial, self.filled) {
            return Err(self.writer_failure());
        }
        self.to_write = None;
        self.join()
    }

    /// What stopped the writing thread (which ends only on an error while chunks are coming).
    fn writer_failure(&mut self) -> DatError {
        self.to_write = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => DatError::Io(std::io::Error::other("the spool's writing thread stopped")),
        }
    }

    fn join(&mut self) -> Result<File, DatError> {
        let writer = self.writer.take().ok_or_else(|| std::io::Error::other("the spool was already finished"))?;
        match writer.join() {
            Ok(result) => Ok(result?),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Spool {
    /// An empty spool of `page_size`-byte pages in a temporary file in `dir`, which vanishes
    /// with the process.
    pub fn create(dir: &Path, page_size: usize, io: SpoolIo) -> Result<Self, DatError> {
        let file = tempfile::tempfile_in(dir)?;
        let sink = match io {
            SpoolIo::Buffered => Sink::Buffered(BufWriter::with_capacity(buffered_capacity(page_size), file)),
            SpoolIo::Direct => {
                if !page_size.is_multiple_of(DIRECT_ALIGN) {
                    return Err(DatError::Unsupported(format!(
                        "direct writes need pages of a multiple of {DIRECT_ALIGN} bytes, not {page_size}"
                    )));
                }
                set_direct(&file, true).map_err(|source| DatError::DirectIo { dir: dir.to_path_buf(), source })?;
                Sink::Direct(DirectSink::new(file, DIRECT_CHUNK.max(page_size))?)
            }
        };
        Ok(Self { sink, page_size, pages: 0 })
    }

    /// Appends a page.
    pub fn write_page(&mut self, page: &[u8]) -> Result<(), DatError> {
        if page.len() != self.page_size {
            return Err(DatError::Corrupt(format!(
                "a {}-byte page in a file of {}-byte pages",
                page.len(),
                self.page_size
            )));
        }
        match &mut self.sink {
            Sink::Buffered(file) => file.write_all(page)?,
            Sink::Direct(direct) => direct.write_page(page)?,
        }
        self.pages += 1;
        Ok(())
    }

    /// Pages written so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Everything written stored, the file positioned at its start for reading it back (through
    /// the page cache again, as any reader would).
    pub fn into_file(self) -> Result<File, DatError> {
        let mut file = match self.sink {
            Sink::Buffered(file) => file.into_inner().map_err(|e| e.into_error())?,
            Sink::Direct(direct) => {
                let file = direct.finish()?;
                set_direct(&file, false)?;
                file
            }
        };
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// Turns `O_DIRECT` on or off for `file`.
fn set_direct(file: &File, on: bool) -> std::io::Result<()> {
    let flags = fcntl_getfl(file)?;
    let flags = if on { flags | OFlags::DIRECT } else { flags - OFlags::DIRECT };
    Ok(fcntl_setfl(file, flags)?)
}

/// The buffer of a buffered spool of `page_size`-byte pages: small pages are gathered into
/// writes of 64 KiB, while a page as large goes to the file straight from the caller's buffer (a
/// buffered writer passes on a write as large as its buffer), saving a copy of every large page.
fn buffered_capacity(page_size: usize) -> usize {
    page_size.max(64 << 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pages(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| (0..size).map(|b| (i * 31 + b / 8) as u8).collect()).collect()
    }

    /// Both kinds of spool give back exactly the pages written, across several direct chunks
    /// and a partial last one.
    #[test]
    fn spools_give_back_their_pages() {
        let dir = tempfile::tempdir().unwrap();
        for io in [SpoolIo::Buffered, SpoolIo::Direct] {
            for size in [4096, 65536] {
                let written = pages(DIRECT_CHUNK / size * 2 + 3, size);
                let mut spool = match Spool::create(dir.path(), size, io) {
                    Ok(spool) => spool,
                    Err(DatError::DirectIo { dir, source }) => {
                        let missing = format_args!("{} refuses O_DIRECT: {source}", dir.display());
                        test_capabilities::skip(missing, "direct spools");
                        continue;
                    }
                    Err(e) => panic!("{io:?}: {e}"),
                };
                for page in &written {
                    spool.write_page(page).unwrap();
                }
                assert_eq!(spool.pages(), written.len() as u64);
                let mut back = Vec::new();
                spool.into_file().unwrap().read_to_end(&mut back).unwrap();
                assert_eq!(back, written.concat(), "{io:?}, {size}-byte pages");
            }
        }
    }

    #[test]
    fn pages_of_the_wrong_size_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(dir.path(), 4096, SpoolIo::Buffered).unwrap();
        assert!(matches!(spool.write_page(&[0; 100]), Err(DatError::Corrupt(_))));
        assert!(matches!(Spool::create(dir.path(), 6000, SpoolIo::Direct), Err(DatError::Unsupported(_))));
    }
}
