//! Writing a trace.dat file: each recorded CPU's pages, of each buffer, are spooled to an
//! anonymous temporary file while recording (CPUs are recorded at once, the file stores them one
//! after the other), then the header is written and each buffer's flyrecord section follows,
//! its CPUs' pages copied after it, each CPU's at a page boundary, into a temporary file beside
//! the output that replaces it only once it is complete.

use super::buffers::{buffer_option, cpustat_heading};
use super::spool::{Spool, SpoolIo};
use super::{DatError, FLYRECORD, HEADER_EVENT, MAGIC, VERSION, header_page, option};
use crate::formats::Formats;
use crate::symbols::Symbols;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a trace.dat describes besides the pages, for all its buffers together.
#[derive(Debug, Clone)]
pub struct DatInfo {
    /// Bytes per page (the buffers' sub-buffer size): one size for every buffer of the file.
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
    /// Kernel symbols, `printk` formats and task names (none for a hyptrace producer).
    pub symbols: Symbols,
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
            symbols: Symbols::default(),
        }
    }
}

/// One buffer of a file: the top-level buffer (no name, the first), or a named buffer, stored as
/// `trace-cmd record -B NAME` stores a tracefs instance's. Each has its own CPUs and pages; the
/// event formats, symbols and task names of [`DatInfo`] are shared, so the events of all
/// buffers must have distinct ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BufferSpec {
    /// `None` for the top-level buffer.
    pub name: Option<String>,
    /// CPUs its source has, ids `0..nr_cpus`. The file stores one count for all buffers, the
    /// largest: a buffer has no pages for the CPUs it lacks.
    pub nr_cpus: u32,
    /// The CPUs recorded, each into a spool of its own.
    pub cpus: Vec<u32>,
}

impl BufferSpec {
    /// The top-level buffer of a source of `nr_cpus` CPUs, recording `cpus`.
    pub fn top(nr_cpus: u32, cpus: &[u32]) -> Self {
        Self { name: None, nr_cpus, cpus: cpus.to_vec() }
    }

    /// The buffer `name` of a source of `nr_cpus` CPUs, recording `cpus`.
    pub fn named(name: &str, nr_cpus: u32, cpus: &[u32]) -> Self {
        Self { name: Some(name.to_string()), nr_cpus, cpus: cpus.to_vec() }
    }
}

/// A recorded CPU of a buffer: which spool is which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufferCpu {
    /// Index of the buffer in the [`BufferSpec`]s the file was created with.
    pub buffer: usize,
    /// CPU id.
    pub cpu: u32,
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
    /// In the order of the [`BufferSpec`]s.
    buffers: Vec<BufferSpools>,
}

/// One buffer's spools.
#[derive(Debug)]
struct BufferSpools {
    name: Option<String>,
    /// By CPU id, `nr_cpus` of them; `None` for CPUs not recorded.
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
    /// Starts a file to become `path` (the file a symbolic link names, if it is one), holding
    /// `buffers`: the top-level buffer first, then any named ones. The file and the spools live
    /// in its directory (so the final copy and rename stay on one file system); the spools store
    /// their pages as `io` says and vanish with the process. An existing file must be writable
    /// and keeps its permissions; an output that is not a regular file is written in place,
    /// its spools in the temporary directory.
    pub fn create(path: &Path, info: DatInfo, buffers: &[BufferSpec], io: SpoolIo) -> Result<Self, DatError> {
        check_buffers(buffers)?;
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
        let page_size = info.page_size as usize;
        let buffers = buffers
            .iter()
            .map(|spec| {
                let mut spools: Vec<Option<Spool>> = (0..spec.nr_cpus).map(|_| None).collect();
                for &cpu in &spec.cpus {
                    spools[cpu as usize] = Some(Spool::create(&spool_dir, page_size, io)?);
                }
                Ok(BufferSpools { name: spec.name.clone(), spools })
            })
            .collect::<Result<_, DatError>>()?;
        Ok(Self { output, info, buffers })
    }

    /// Sets the `saved_cmdlines` text the file will hold (`pid comm` lines), replacing
    /// those of [`DatInfo::symbols`]: task names are known best once the recording has ended.
    pub fn set_cmdlines(&mut self, cmdlines: String) {
        self.info.symbols.cmdlines = cmdlines;
    }

    /// Pages written so far, all buffers' CPUs together.
    pub fn pages(&self) -> u64 {
        self.buffers.iter().flat_map(|b| b.spools.iter().flatten()).map(Spool::pages).sum()
    }

    /// Appends a page of `at` (recording writes into [`DatWriter::spools`] instead).
    #[cfg(test)]
    pub fn write_page(&mut self, at: BufferCpu, page: &[u8]) -> Result<(), DatError> {
        self.buffers
            .get_mut(at.buffer)
            .and_then(|b| b.spools.get_mut(at.cpu as usize))
            .and_then(Option::as_mut)
            .ok_or_else(|| DatError::Buffers(format!("cpu {} of buffer {} is not being recorded", at.cpu, at.buffer)))?
            .write_page(page)
    }

    /// The recorded CPUs' spools, buffer by buffer and by CPU id, to be written at once.
    pub fn spools(&mut self) -> impl Iterator<Item = (BufferCpu, &mut Spool)> {
        self.buffers.iter_mut().enumerate().flat_map(|(buffer, b)| {
            b.spools
                .iter_mut()
                .enumerate()
                .filter_map(move |(cpu, s)| Some((BufferCpu { buffer, cpu: cpu as u32 }, s.as_mut()?)))
        })
    }

    /// Writes the file: header, `cpustats` (for each buffer, in the order of the
    /// [`BufferSpec`]s, one text per CPU, as tracefs `per_cpu/cpuN/stats`; buffers past the end
    /// have none), then every buffer's section and its CPUs' pages, telling `progress` how many
    /// of the pages' bytes are in (of how many) as it goes. Returns the file's size.
    pub fn finish(self, cpustats: &[Vec<String>], progress: impl FnMut(u64, u64)) -> Result<u64, DatError> {
        let Self { mut output, info, buffers } = self;
        if cpustats.len() > buffers.len() {
            return Err(DatError::Buffers(format!(
                "statistics for {} buffers in a file of {}",
                cpustats.len(),
                buffers.len()
            )));
        }
        let file = match &mut output {
            Output::Replace { file, .. } => file.as_file_mut(),
            Output::InPlace(file) => file,
        };
        let size = write_file(file, &info, buffers, cpustats, progress)?;
        if let Output::Replace { path, file } = output {
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|e| DatError::Io(e.error))?;
        }
        Ok(size)
    }
}

/// Refuses buffers a file cannot hold as given: the top-level buffer first and only there,
/// named buffers with distinct names that fit a CPUSTAT heading, recorded CPUs that exist, once.
fn check_buffers(buffers: &[BufferSpec]) -> Result<(), DatError> {
    let bad = |why: String| Err(DatError::Buffers(why));
    let Some((top, named)) = buffers.split_first() else {
        return bad("a file has at least its top-level buffer".into());
    };
    if top.name.is_some() {
        return bad("the first buffer is the top-level buffer, whose name is None".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for spec in named {
        let Some(name) = &spec.name else { return bad("only the first buffer is the top-level buffer".into()) };
        if name.is_empty() || name.contains(['\0', '\n']) {
            return bad(format!("buffer name {name:?}: names are non-empty, without NUL or newline"));
        }
        if !names.insert(name) {
            return bad(format!("two buffers are named {name:?}"));
        }
    }
    for spec in buffers {
        let mut cpus = spec.cpus.clone();
        cpus.sort_unstable();
        if let Some(cpu) = cpus.iter().find(|&&cpu| cpu >= spec.nr_cpus) {
            return bad(format!("cpu {cpu} of a buffer of {} CPUs", spec.nr_cpus));
        }
        if let Some(pair) = cpus.windows(2).find(|pair| pair[0] == pair[1]) {
            return bad(format!("cpu {} listed twice", pair[0]));
        }
    }
    Ok(())
}

/// Where one buffer's flyrecord section and pages go in the file.
#[derive(Debug, PartialEq, Eq)]
struct Section {
    /// File offset of its `flyrecord` tag.
    start: u64,
    /// File offset of its first page: the first page boundary after its CPU table.
    data: u64,
    /// Offset and size of each CPU's pages, for every CPU of the file.
    cpus: Vec<(u64, u64)>,
}

impl Section {
    /// Where the next section starts: right after this one's pages.
    fn end(&self) -> u64 {
        self.data + self.cpus.iter().map(|&(_, size)| size).sum::<u64>()
    }
}

/// The sections of buffers whose CPUs hold `pages` pages each, of `page_size` bytes, in a file
/// of `nr_cpus` CPUs, the first section starting at `start`, each CPU table followed by
/// `trailer` bytes.
fn layout(start: u64, page_size: u32, nr_cpus: u32, trailer: u64, pages: &[Vec<u64>]) -> Vec<Section> {
    let page = u64::from(page_size);
    let mut start = start;
    pages
        .iter()
        .map(|cpu_pages| {
            let data = (start + FLYRECORD.len() as u64 + 16 * u64::from(nr_cpus) + trailer).next_multiple_of(page);
            let mut at = data;
            let cpus = (0..nr_cpus as usize)
                .map(|cpu| {
                    let size = cpu_pages.get(cpu).copied().unwrap_or(0) * page;
                    at += size;
                    (at - size, size)
                })
                .collect();
            let section = Section { start, data, cpus };
            start = section.end();
            section
        })
        .collect()
}

/// [`DatWriter::finish`]'s writing of the whole file into `file`; returns its size.
fn write_file(
    file: &mut File,
    info: &DatInfo,
    buffers: Vec<BufferSpools>,
    cpustats: &[Vec<String>],
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
    text32(&mut out, &info.symbols.kallsyms)?;
    text32(&mut out, &info.symbols.printk_formats)?;
    text64(&mut out, &info.symbols.cmdlines)?;
    // One CPU count for every buffer's table.
    let nr_cpus = buffers.iter().map(|b| b.spools.len() as u32).max().unwrap_or(0);
    out.write_all(&nr_cpus.to_ne_bytes())?;
    out.write_all(b"options  \0")?;
    // The options name where the named buffers' sections are, which start after the options:
    // their size does not depend on the offsets they hold.
    let pages: Vec<Vec<u64>> =
        buffers.iter().map(|b| b.spools.iter().map(|s| s.as_ref().map_or(0, Spool::pages)).collect()).collect();
    let sized = options(info, &buffers, cpustats, &vec![0; buffers.len()])?;
    let clock = clock_after_table(info);
    let sections = layout(out.written + sized.len() as u64, info.page_size, nr_cpus, clock.len() as u64, &pages);
    let starts: Vec<u64> = sections.iter().map(|s| s.start).collect();
    out.write_all(&options(info, &buffers, cpustats, &starts)?)?;
    let total: u64 = pages.iter().flatten().sum::<u64>() * u64::from(info.page_size);
    let mut copied = 0;
    progress(copied, total);
    for (section, buffer) in sections.iter().zip(buffers) {
        out.write_all(FLYRECORD)?;
        for (offset, size) in &section.cpus {
            out.write_all(&offset.to_ne_bytes())?;
            out.write_all(&size.to_ne_bytes())?;
        }
        out.write_all(&clock)?;
        let pos = out.written;
        out.write_all(&vec![0; (section.data - pos) as usize])?;
        for spool in buffer.spools.into_iter().flatten() {
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
    }
    let size = out.written;
    out.inner.into_inner().map_err(|e| e.into_error())?.flush()?;
    Ok(size)
}

/// The clock's text as trace-cmd reads it after each CPU table of a file with a TRACECLOCK
/// option (`size:u64`, then the `trace_clock` file's text, the clock in use in brackets), or
/// nothing if the file names no clock. trace-cmd takes the clock from there, not the option.
fn clock_after_table(info: &DatInfo) -> Vec<u8> {
    let Some(clock) = &info.clock else { return Vec::new() };
    let text = clock_text(clock);
    let mut out = (text.len() as u64).to_ne_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

/// `trace_clock`'s text naming `clock` as the one in use.
fn clock_text(clock: &str) -> String {
    format!("[{clock}]\n")
}

/// The options, up to and with the closing DONE, for `buffers` whose sections start at
/// `starts`: the clock, the writer, the top-level buffer's CPU statistics, then for each named
/// buffer its BUFFER option and its statistics under their heading, as trace-cmd orders them.
fn options(
    info: &DatInfo,
    buffers: &[BufferSpools],
    cpustats: &[Vec<String>],
    starts: &[u64],
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(clock) = &info.clock {
        option_text(&mut out, option::TRACECLOCK, &clock_text(clock))?;
    }
    option_text(&mut out, option::VERSION, concat!("trace-reader ", env!("CARGO_PKG_VERSION")))?;
    for (index, (buffer, start)) in buffers.iter().zip(starts).enumerate() {
        if let Some(name) = &buffer.name {
            option_bytes(&mut out, option::BUFFER, &buffer_option(*start, name))?;
            option_text(&mut out, option::CPUSTAT, &cpustat_heading(name))?;
        }
        for stat in cpustats.get(index).into_iter().flatten() {
            option_text(&mut out, option::CPUSTAT, stat)?;
        }
    }
    out.write_all(&option::DONE.to_ne_bytes())?;
    Ok(out)
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
    option_bytes(out, id, &[text.as_bytes(), &[0]].concat())
}

/// An option carrying `body`.
fn option_bytes(out: &mut impl Write, id: u16, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| std::io::Error::other("an option of 4 GiB or more"))?;
    out.write_all(&id.to_ne_bytes())?;
    out.write_all(&len.to_ne_bytes())?;
    out.write_all(body)
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
        let mut w = DatWriter::create(&path, info(), &[BufferSpec::top(1, &[0])], SpoolIo::Buffered).unwrap();
        w.write_page(BufferCpu { buffer: 0, cpu: 0 }, &[0; 4096]).unwrap();
        drop(w);
        assert_eq!(files(), 0, "an unfinished recording leaves nothing");
        std::fs::write(&path, b"an earlier recording").unwrap();
        drop(DatWriter::create(&path, info(), &[BufferSpec::top(1, &[0])], SpoolIo::Buffered).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"an earlier recording", "nor replaces an earlier one");
        let mut w = DatWriter::create(&path, info(), &[BufferSpec::top(1, &[0])], SpoolIo::Buffered).unwrap();
        for _ in 0..3 {
            w.write_page(BufferCpu { buffer: 0, cpu: 0 }, &[0; 4096]).unwrap();
        }
        let mut reports = Vec::new();
        let size = w.finish(&[], |copied, total| reports.push((copied, total))).unwrap();
        assert_eq!(reports.first(), Some(&(0, 3 * 4096)), "progress starts at 0 of the pages' bytes");
        assert_eq!(reports.last(), Some(&(3 * 4096, 3 * 4096)), "and ends with all of them");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "a finished one replaces it");
        assert_eq!(files(), 1);
        let dir_as_output = DatWriter::create(dir.path(), info(), &[BufferSpec::top(1, &[0])], SpoolIo::Buffered);
        assert!(dir_as_output.is_err(), "a directory is refused at once");
    }

    #[test]
    fn links_are_followed_devices_written_in_place_and_modes_kept() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let info = || DatInfo::new(4096, &Formats::default(), None);
        let finish = |path: &Path| {
            DatWriter::create(path, info(), &[BufferSpec::top(1, &[0])], SpoolIo::Buffered)
                .unwrap()
                .finish(&[], |_, _| {})
        };
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

    #[test]
    fn each_section_follows_the_pages_before_it_and_pages_start_on_page_boundaries() {
        // Two CPUs; the top-level buffer has a page on cpu 0, the next two pages on cpu 1.
        let sections = layout(1000, 4096, 2, 0, &[vec![1, 0], vec![0, 2]]);
        assert_eq!(
            sections,
            [
                Section { start: 1000, data: 4096, cpus: vec![(4096, 4096), (8192, 0)] },
                Section { start: 8192, data: 12288, cpus: vec![(12288, 0), (12288, 8192)] },
            ]
        );
        // A buffer of fewer CPUs than the file has empty entries for the others.
        let sections = layout(0, 4096, 3, 0, &[vec![1]]);
        assert_eq!(sections[0].cpus, [(4096, 4096), (8192, 0), (8192, 0)]);
        // The clock's text after a table that fills its page moves the data to the next one.
        let sections = layout(4096 - 10 - 16, 4096, 1, 16, &[vec![1]]);
        assert_eq!(sections[0].data, 8192);
    }

    #[test]
    fn buffers_a_file_cannot_hold_are_refused_before_anything_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        let info = || DatInfo::new(4096, &Formats::default(), None);
        let top = BufferSpec::top(2, &[0, 1]);
        let refused = [
            vec![],
            vec![BufferSpec::named("hyp", 2, &[0])],
            vec![top.clone(), BufferSpec::top(2, &[0])],
            vec![top.clone(), BufferSpec::named("hyp", 2, &[0]), BufferSpec::named("hyp", 1, &[0])],
            vec![top.clone(), BufferSpec::named("", 2, &[0])],
            vec![top.clone(), BufferSpec::named("a\nb", 2, &[0])],
            vec![BufferSpec::top(2, &[2])],
            vec![BufferSpec::top(2, &[1, 1])],
        ];
        for buffers in refused {
            let result = DatWriter::create(&path, info(), &buffers, SpoolIo::Buffered);
            assert!(matches!(result, Err(DatError::Buffers(_))), "{buffers:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut w =
            DatWriter::create(&path, info(), &[top, BufferSpec::named("hyp", 4, &[3])], SpoolIo::Buffered).unwrap();
        let spools: Vec<BufferCpu> = w.spools().map(|(at, _)| at).collect();
        assert_eq!(
            spools,
            [BufferCpu { buffer: 0, cpu: 0 }, BufferCpu { buffer: 0, cpu: 1 }, BufferCpu { buffer: 1, cpu: 3 }]
        );
        let three_buffers_of_stats = w.finish(&[vec![], vec![], vec![]], |_, _| {});
        assert!(matches!(three_buffers_of_stats, Err(DatError::Buffers(_))));
        assert!(!path.exists());
    }
}
