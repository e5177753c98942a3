//! Writing a trace.dat file: each CPU's pages are spooled to an anonymous temporary file while
//! recording (CPUs are recorded at once, the file stores them one after the other), then the
//! header is written and the CPUs' pages are copied after it, each CPU's at a page boundary,
//! into a temporary file beside the output that replaces it only once it is complete.

use super::spool::{Spool, SpoolIo};
use super::{DatError, HEADER_EVENT, MAGIC, VERSION, header_page, option};
use crate::formats::Formats;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
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
    output: Output,
    info: DatInfo,
    /// By CPU id; `None` for CPUs not recorded.
    spools: Vec<Option<Spool>>,
}

/// Where the file goes.
#[derive(Debug)]
enum Output {
    /// A regular file, or none yet: written under a temporary name in its directory, then
    /// renamed over `path`.
    Replace { path: PathBuf, file: tempfile::NamedTempFile },
    /// Anything else (a device such as `/dev/null`, a pipe): written in place.
    InPlace(File),
}

/// The file `path` names, following a symbolic link (a dangling one too).
fn follow_link(path: &Path) -> std::io::Result<PathBuf> {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(path.to_path_buf());
    }
    match std::fs::canonicalize(path) {
        Ok(target) => Ok(target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let link = std::fs::read_link(path)?;
            Ok(path.parent().map_or(link.clone(), |dir| dir.join(&link)))
        }
        Err(e) => Err(e),
    }
}

impl DatWriter {
    /// Starts a file to become `path` (the file a symbolic link names, if it is one), for a
    /// source of `nr_cpus` CPUs of which `cpus` are recorded. The file and the spools live in
    /// its directory (so the final copy and rename stay on one file system); the spools store
    /// their pages as `io` says and vanish with the process. An existing file must be writable
    /// and keeps its permissions; an output that is not a regular file is written in place,
    /// its spools in the temporary directory.
    pub fn create(path: &Path, info: DatInfo, nr_cpus: u32, cpus: &[u32], io: SpoolIo) -> Result<Self, DatError> {
        let path = follow_link(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // A regular file, new or not, is written beside itself and renamed over it at the end.
        let replace = |path: PathBuf, mode| -> Result<(Output, PathBuf), DatError> {
            let file = tempfile::Builder::new()
                .prefix(".trace-reader-")
                .suffix(".dat.tmp")
                .permissions(mode)
                .tempfile_in(&dir)?;
            Ok((Output::Replace { path, file }, dir.clone()))
        };
        // Fail now, not at the end, if the file cannot be put there.
        let (output, spool_dir) = match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(DatError::Io(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                )));
            }
            Ok(m) if !m.is_file() => {
                (Output::InPlace(std::fs::OpenOptions::new().write(true).open(&path)?), std::env::temp_dir())
            }
            Ok(m) => {
                rustix::fs::access(&path, rustix::fs::Access::WRITE_OK)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{} is not writable", path.display())))?;
                replace(path, m.permissions())?
            }
            // Created as `File::create` would (0666 less the umask), not 0600.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                replace(path, std::fs::Permissions::from_mode(0o666))?
            }
            Err(e) => return Err(e.into()),
        };
        let spools = (0..nr_cpus).map(|_| None).collect();
        let mut writer = Self { output, info, spools };
        for &cpu in cpus {
            writer.spools[cpu as usize] = Some(Spool::create(&spool_dir, writer.info.page_size as usize, io)?);
        }
        Ok(writer)
    }

    /// Sets the `saved_cmdlines` text the file will hold (`pid comm` lines), replacing
    /// [`DatInfo::cmdlines`]: task names are known best once the recording has ended.
    pub fn set_cmdlines(&mut self, cmdlines: String) {
        self.info.cmdlines = cmdlines;
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
    pub fn finish(self, cpustats: &[String], progress: impl FnMut(u64, u64)) -> Result<u64, DatError> {
        let Self { mut output, info, spools } = self;
        let file = match &mut output {
            Output::Replace { file, .. } => file.as_file_mut(),
            Output::InPlace(file) => file,
        };
        let size = write_file(file, &info, spools, cpustats, progress)?;
        if let Output::Replace { path, file } = output {
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|e| DatError::Io(e.error))?;
        }
        Ok(size)
    }
}

/// [`DatWriter::finish`]'s writing of the whole file into `file`; returns its size.
fn write_file(
    file: &mut File,
    info: &DatInfo,
    spools: Vec<Option<Spool>>,
    cpustats: &[String],
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, DatError> {
    // Positions are counted, not asked for: a pipe cannot tell its own.
    let mut out = Counted { inner: BufWriter::with_capacity(1 << 20, file), written: 0 };
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
    out.write_all(&(spools.len() as u32).to_ne_bytes())?;
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
    let table_end = out.written + 16 * spools.len() as u64;
    let page = u64::from(info.page_size);
    let mut at = table_end.next_multiple_of(page);
    for spool in &spools {
        let size = spool.as_ref().map_or(0, |s| s.pages() * page);
        out.write_all(&at.to_ne_bytes())?;
        out.write_all(&size.to_ne_bytes())?;
        at += size;
    }
    let pos = out.written;
    out.write_all(&vec![0; (table_end.next_multiple_of(page) - pos) as usize])?;
    let total = at - table_end.next_multiple_of(page);
    let mut copied = 0;
    progress(copied, total);
    for spool in spools.into_iter().flatten() {
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
    let size = out.written;
    out.inner.into_inner().map_err(|e| e.into_error())?.flush()?;
    Ok(size)
}

/// A writer that counts the bytes written through it.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
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

    #[test]
    fn links_are_followed_devices_written_in_place_and_modes_kept() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let info = || DatInfo::new(4096, &Formats::default(), None);
        let finish =
            |path: &Path| DatWriter::create(path, info(), 1, &[0], SpoolIo::Buffered).unwrap().finish(&[], |_, _| {});
        // A link: the file it names becomes the recording, the link stays a link.
        let target = dir.path().join("target.dat");
        let link = dir.path().join("link.dat");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let size = finish(&link).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&target).unwrap().len(), size);
        // An existing file keeps its mode.
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        finish(&target).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o640);
        // A device is written, not replaced.
        assert!(finish(Path::new("/dev/null")).unwrap() > 0);
        assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }
}
