//! Writing a trace.dat file: each CPU's pages are spooled to an anonymous temporary file while
//! recording (CPUs are recorded at once, the file stores them one after the other), then the
//! header is written and the CPUs' pages are copied after it, each CPU's at a page boundary,
//! into a temporary file beside the output that replaces it only once it is complete.

use super::spool::{Spool, SpoolIo};
use super::{DatError, HEADER_EVENT, MAGIC, VERSION, header_page, option};
use crate::formats::Formats;
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a trace.dat describes besides the pages.
#[derive(Debug, Clone)]
pub struct DatInfo {
    /// Bytes per page (the buffers' sub-buffer size).
    pub page_size: u32,
    /// `header_page` text.
    pub header_page: String,
    /// `header_event` text.
    pub header_event: String,
    /// Formats of ftrace's own events.
    pub ftrace: Vec<String>,
    /// Other formats, by system.
    pub systems: BTreeMap<String, Vec<String>>,
    /// The trace clock's name.
    pub clock: Option<String>,
    /// Kernel symbols, as `/proc/kallsyms` lists them (empty for a hyptrace producer): what
    /// trace-cmd names instruction pointers with.
    pub kallsyms: String,
    /// tracefs `printk_formats` (empty for a hyptrace producer): the formats `bprint` events
    /// refer to by address.
    pub printk_formats: String,
    /// `saved_cmdlines` text (`pid comm` lines).
    pub cmdlines: String,
}

impl DatInfo {
    /// The description of pages of `page_size` bytes holding events of `formats`, with the
    /// standard header texts.
    pub fn new(page_size: u32, formats: &Formats, clock: Option<String>) -> Self {
        let mut ftrace = Vec::new();
        let mut systems: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut all: Vec<_> = formats.iter().collect();
        all.sort_by_key(|f| f.id);
        for f in all {
            if f.system == "ftrace" {
                ftrace.push(f.text.clone());
            } else {
                systems.entry(f.system.clone()).or_default().push(f.text.clone());
            }
        }
        Self {
            page_size,
            header_page: header_page(page_size),
            header_event: HEADER_EVENT.to_string(),
            ftrace,
            systems,
            clock,
            kallsyms: String::new(),
            printk_formats: String::new(),
            cmdlines: String::new(),
        }
    }
}

/// A trace.dat being recorded.
///
/// A recording that fails (or a file whose writing fails) leaves the output as it was, an
/// earlier recording of the same name included: the file is written under a temporary name
/// beside it, which [`DatWriter::finish`] renames over it once it is complete, and which
/// vanishes with the writer otherwise. An empty or partial trace.dat would only be mistaken
/// for a recording.
#[derive(Debug)]
pub struct DatWriter {
    path: PathBuf,
    /// The file being written, under a temporary name in `path`'s directory.
    file: tempfile::NamedTempFile,
    info: DatInfo,
    /// By CPU id; `None` for CPUs not recorded.
    spools: Vec<Option<Spool>>,
}

impl DatWriter {
    /// Starts a file to become `path`, for a source of `nr_cpus` CPUs of which `cpus` are
    /// recorded. The file and the spools live next to `path` (so the final copy and rename
    /// stay on one file system); the spools store their pages as `io` says and vanish with the
    /// process.
    pub fn create(path: &Path, info: DatInfo, nr_cpus: u32, cpus: &[u32], io: SpoolIo) -> Result<Self, DatError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Fail now, not at the end, if the file cannot be put there.
        if path.is_dir() {
            return Err(DatError::Io(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )));
        }
        // Created as `File::create` would (0666 less the umask), not 0600.
        let file = tempfile::Builder::new()
            .prefix(".trace-reader-")
            .suffix(".dat.tmp")
            .permissions(std::fs::Permissions::from_mode(0o666))
            .tempfile_in(&dir)?;
        let spools = (0..nr_cpus).map(|_| None).collect();
        let mut writer = Self { path: path.to_path_buf(), file, info, spools };
        for &cpu in cpus {
            writer.spools[cpu as usize] = Some(Spool::create(&dir, writer.info.page_size as usize, io)?);
        }
        Ok(writer)
    }

    /// Pages written so far, all CPUs together.
    pub fn pages(&self) -> u64 {
        self.spools.iter().flatten().map(Spool::pages).sum()
    }

    /// Appends a page of `cpu` (recording writes into [`DatWriter::spools`] instead).
    #[cfg(test)]
    pub fn write_page(&mut self, cpu: u32, page: &[u8]) -> Result<(), DatError> {
        self.spools
            .get_mut(cpu as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| DatError::Corrupt(format!("cpu {cpu} is not being recorded")))?
            .write_page(page)
    }

    /// The recorded CPUs' spools, by CPU id, to be written at once.
    pub fn spools(&mut self) -> impl Iterator<Item = (u32, &mut Spool)> {
        self.spools.iter_mut().enumerate().filter_map(|(cpu, s)| Some((cpu as u32, s.as_mut()?)))
    }

    /// Writes the file: header, `cpustats` (one text per CPU, as tracefs `per_cpu/cpuN/stats`),
    /// then every CPU's pages, telling `progress` how many of the pages' bytes are in (of how
    /// many) as it goes. Returns the file's size.
    pub fn finish(mut self, cpustats: &[String], mut progress: impl FnMut(u64, u64)) -> Result<u64, DatError> {
        let mut out = BufWriter::with_capacity(1 << 20, self.file.as_file_mut());
        let info = &self.info;
        out.write_all(MAGIC)?;
        out.write_all(VERSION)?;
        out.write_all(&[u8::from(cfg!(target_endian = "big")), size_of::<usize>() as u8])?;
        out.write_all(&info.page_size.to_ne_bytes())?;
        out.write_all(b"header_page\0")?;
        text64(&mut out, &info.header_page)?;
        out.write_all(b"header_event\0")?;
        text64(&mut out, &info.header_event)?;
        out.write_all(&(info.ftrace.len() as u32).to_ne_bytes())?;
        for f in &info.ftrace {
            text64(&mut out, f)?;
        }
        out.write_all(&(info.systems.len() as u32).to_ne_bytes())?;
        for (system, formats) in &info.systems {
            out.write_all(system.as_bytes())?;
            out.write_all(&[0])?;
            out.write_all(&(formats.len() as u32).to_ne_bytes())?;
            for f in formats {
                text64(&mut out, f)?;
            }
        }
        text32(&mut out, &info.kallsyms)?;
        text32(&mut out, &info.printk_formats)?;
        text64(&mut out, &info.cmdlines)?;
        out.write_all(&(self.spools.len() as u32).to_ne_bytes())?;
        out.write_all(b"options  \0")?;
        if let Some(clock) = &info.clock {
            option_text(&mut out, option::TRACECLOCK, &format!("[{clock}]\n"))?;
        }
        option_text(&mut out, option::VERSION, concat!("trace-reader ", env!("CARGO_PKG_VERSION")))?;
        for stat in cpustats {
            option_text(&mut out, option::CPUSTAT, stat)?;
        }
        out.write_all(&option::DONE.to_ne_bytes())?;
        out.write_all(b"flyrecord\0")?;
        // Offsets: after the table, aligned up to a page, CPUs one after the other.
        let table_end = out.stream_position()? + 16 * self.spools.len() as u64;
        let page = u64::from(info.page_size);
        let mut at = table_end.next_multiple_of(page);
        for spool in &self.spools {
            let size = spool.as_ref().map_or(0, |s| s.pages() * page);
            out.write_all(&at.to_ne_bytes())?;
            out.write_all(&size.to_ne_bytes())?;
            at += size;
        }
        let pos = out.stream_position()?;
        out.write_all(&vec![0; (table_end.next_multiple_of(page) - pos) as usize])?;
        let total = at - table_end.next_multiple_of(page);
        let mut copied = 0;
        progress(copied, total);
        for spool in std::mem::take(&mut self.spools).into_iter().flatten() {
            let mut pages = spool.into_file()?;
            // In chunks, so that a long copy shows how far it is.
            loop {
                let n = std::io::copy(&mut (&mut pages).take(COPY_CHUNK), &mut out)?;
                if n == 0 {
                    break;
                }
                copied += n;
                progress(copied, total);
            }
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.flush()?;
        file.sync_all()?;
        let size = file.stream_position()?;
        self.file.persist(&self.path).map_err(|e| DatError::Io(e.error))?;
        Ok(size)
    }
}

/// Bytes of spooled pages copied into the file between two progress reports.
const COPY_CHUNK: u64 = 16 << 20;

/// A text preceded by its 32-bit size.
fn text32(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    let len = u32::try_from(text.len()).map_err(|_| std::io::Error::other("a text of 4 GiB or more"))?;
    out.write_all(&len.to_ne_bytes())?;
    out.write_all(text.as_bytes())
}

/// A text preceded by its 64-bit size.
fn text64(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(&(text.len() as u64).to_ne_bytes())?;
    out.write_all(text.as_bytes())
}

/// An option carrying a NUL-terminated text.
fn option_text(out: &mut impl Write, id: u16, text: &str) -> std::io::Result<()> {
    out.write_all(&id.to_ne_bytes())?;
    out.write_all(&(text.len() as u32 + 1).to_ne_bytes())?;
    out.write_all(text.as_bytes())?;
    out.write_all(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_dropped_unfinished_leaves_the_output_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        let info = || DatInfo::new(4096, &Formats::default(), None);
        let mut w = DatWriter::create(&path, info(), 1, &[0], SpoolIo::Buffered).unwrap();
        w.write_page(0, &[0; 4096]).unwrap();
        drop(w);
        assert_eq!(files(), 0, "an unfinished recording leaves nothing");
        std::fs::write(&path, b"an earlier recording").unwrap();
        drop(DatWriter::create(&path, info(), 1, &[0], SpoolIo::Buffered).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"an earlier recording", "nor replaces an earlier one");
        let mut w = DatWriter::create(&path, info(), 1, &[0], SpoolIo::Buffered).unwrap();
        for _ in 0..3 {
            w.write_page(0, &[0; 4096]).unwrap();
        }
        let mut reports = Vec::new();
        let size = w.finish(&[], |copied, total| reports.push((copied, total))).unwrap();
        assert_eq!(reports.first(), Some(&(0, 3 * 4096)), "progress starts at 0 of the pages' bytes");
        assert_eq!(reports.last(), Some(&(3 * 4096, 3 * 4096)), "and ends with all of them");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "a finished one replaces it");
        assert_eq!(files(), 1);
        let dir_as_output = DatWriter::create(dir.path(), info(), 1, &[0], SpoolIo::Buffered);
        assert!(dir_as_output.is_err(), "a directory is refused at once");
    }
}
