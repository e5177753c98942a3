//! Reading a version 6 trace.dat back (ours, or trace-cmd's uncompressed flyrecord files), every
//! buffer of it. Every size and offset read from the file is checked against the file's length
//! before it is used.

use super::buffers::{heading_of, parse_buffer_option};
use super::{DatError, FLYRECORD, MAGIC, option};
use crate::formats::{EventFormat, Formats};
use crate::symbols::Symbols;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Where one CPU's pages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatCpu {
    /// CPU id.
    pub cpu: u32,
    /// File offset of its first page.
    pub offset: u64,
    /// Bytes of pages.
    pub size: u64,
}

/// One buffer of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatBuffer {
    /// `None` for the top-level buffer.
    pub name: Option<String>,
    /// Every CPU's pages, by CPU id: as many as the file has CPUs, empty for those the buffer
    /// did not record (or does not have).
    pub cpus: Vec<DatCpu>,
    /// Its CPUs' statistics texts.
    pub cpustats: Vec<String>,
}

/// An opened trace.dat.
#[derive(Debug)]
pub struct DatFile {
    file: File,
    /// Bytes per page, of every buffer.
    pub page_size: u32,
    /// Event formats, of every buffer.
    pub formats: Formats,
    /// Kernel symbols, `printk` formats and task names.
    pub symbols: Symbols,
    /// The trace clock, if the file names it.
    pub clock: Option<String>,
    /// The tool that wrote it, if the file says.
    pub writer: Option<String>,
    /// The top-level buffer, then the named ones in the order the file lists them.
    pub buffers: Vec<DatBuffer>,
}

/// Reads fields in the file's (native) byte order, never past its end.
struct Fields<R> {
    r: R,
    left: u64,
}

impl<R: Read> Fields<R> {
    /// Counts `n` bytes of `what` as read, if the file has them.
    fn claim(&mut self, n: u64, what: &str) -> Result<(), DatError> {
        if n > self.left {
            return Err(DatError::Corrupt(format!("{what}: {n} bytes announced, {} left in the file", self.left)));
        }
        self.left -= n;
        Ok(())
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, DatError> {
        self.claim(n, what)?;
        let mut b = vec![0; n as usize];
        self.r.read_exact(&mut b)?;
        Ok(b)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DatError> {
        let b = self.bytes(N as u64, what)?;
        Ok(b.try_into().expect("N bytes"))
    }

    fn u16(&mut self, what: &str) -> Result<u16, DatError> {
        Ok(u16::from_ne_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DatError> {
        Ok(u32::from_ne_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DatError> {
        Ok(u64::from_ne_bytes(self.array(what)?))
    }

    /// A NUL-terminated string of at most 4 KiB.
    fn cstr(&mut self, what: &str) -> Result<String, DatError> {
        let mut s = Vec::new();
        loop {
            let [b] = self.array::<1>(what)?;
            if b == 0 {
                return Ok(String::from_utf8_lossy(&s).into_owned());
            }
            if s.len() == 4096 {
                return Err(DatError::Corrupt(format!("{what}: unterminated string")));
            }
            s.push(b);
        }
    }

    fn text(&mut self, n: u64, what: &str) -> Result<String, DatError> {
        Ok(String::from_utf8_lossy(&self.bytes(n, what)?).into_owned())
    }
}

impl DatFile {
    /// Opens and parses the header of `path`.
    pub fn open(path: &Path) -> Result<Self, DatError> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(DatError::Io(std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory")));
        }
        let len = meta.len();
        let mut f = Fields { r: BufReader::new(&file), left: len };
        match f.bytes(10, "magic") {
            Ok(magic) if magic == MAGIC => {}
            // A file that cannot be read is that, not a file of another kind.
            Err(DatError::Io(e)) => return Err(DatError::Io(e)),
            _ => return Err(DatError::NotTraceDat),
        }
        let version = f.cstr("version")?;
        if version != "6" {
            return Err(DatError::Unsupported(format!(
                "version {version} (this reader reads version 6; `trace-cmd convert --file-version 6` converts)"
            )));
        }
        let [endian, _long_size] = f.array::<2>("endianness")?;
        if endian != u8::from(cfg!(target_endian = "big")) {
            return Err(DatError::Unsupported("the file's byte order is not this machine's".into()));
        }
        let page_size = f.u32("page size")?;
        if !(64..=1 << 24).contains(&page_size) || !page_size.is_multiple_of(8) {
            return Err(DatError::Corrupt(format!("page size {page_size}")));
        }
        for name in ["header_page", "header_event"] {
            if f.cstr(name)? != name {
                return Err(DatError::Corrupt(format!("no {name} section")));
            }
            let n = f.u64(name)?;
            f.bytes(n, name)?;
        }
        let mut formats = Formats::default();
        let mut add = |system: &str, text: String| -> Result<(), DatError> {
            let format = EventFormat::parse(system, &text)
                .map_err(|e| DatError::Corrupt(format!("a format of system {system}: {e}")))?;
            formats.insert(format);
            Ok(())
        };
        for _ in 0..f.u32("ftrace format count")? {
            let n = f.u64("ftrace format")?;
            add("ftrace", f.text(n, "ftrace format")?)?;
        }
        for _ in 0..f.u32("system count")? {
            let system = f.cstr("system name")?;
            for _ in 0..f.u32("event count")? {
                let n = f.u64("event format")?;
                add(&system, f.text(n, "event format")?)?;
            }
        }
        let n = f.u32("kallsyms")?;
        let kallsyms = f.text(u64::from(n), "kallsyms")?;
        let n = f.u32("printk formats")?;
        let printk_formats = f.text(u64::from(n), "printk formats")?;
        let n = f.u64("saved cmdlines")?;
        let cmdlines = f.text(n, "saved cmdlines")?;
        let symbols = Symbols { kallsyms, printk_formats, cmdlines };
        let mut nr_cpus = f.u32("cpu count")?;
        let (mut clock, mut writer, mut named) = (None, None, Vec::new());
        // CPU statistics by buffer: the top-level buffer's, then each heading's.
        let mut cpustats: Vec<(Option<String>, Vec<String>)> = vec![(None, Vec::new())];
        let mut section = f.bytes(10, "section")?;
        if section == b"options  \0" {
            loop {
                let id = f.u16("option id")?;
                if id == option::DONE {
                    break;
                }
                let n = f.u32("option size")?;
                let raw = f.bytes(u64::from(n), "option")?;
                let text = || String::from_utf8_lossy(&raw).trim_end_matches('\0').to_string();
                match id {
                    option::BUFFER => named.push(parse_buffer_option(&raw)?),
                    // As libtracecmd reads it: the count of every buffer's CPU table.
                    option::CPUCOUNT => {
                        let count = raw
                            .first_chunk::<4>()
                            .ok_or_else(|| DatError::Corrupt(format!("a CPUCOUNT option of {} bytes", raw.len())))?;
                        nr_cpus = u32::from_ne_bytes(*count);
                    }
                    option::TRACECLOCK => clock = super::clock_in_use(&text()),
                    option::CPUSTAT => {
                        let body = text();
                        match heading_of(&body) {
                            Some(name) => cpustats.push((Some(name.to_string()), Vec::new())),
                            None => cpustats.last_mut().expect("the top-level buffer's").1.push(body),
                        }
                    }
                    option::VERSION => writer = Some(text()),
                    _ => {}
                }
            }
            section = f.bytes(10, "section")?;
        }
        if section != FLYRECORD {
            return Err(DatError::Unsupported(format!(
                "section {:?} (only flyrecord data is read)",
                String::from_utf8_lossy(&section)
            )));
        }
        let table_size = u64::from(nr_cpus) * 16;
        let top_start = len - f.left - FLYRECORD.len() as u64;
        let starts: Vec<u64> = std::iter::once(top_start).chain(named.iter().map(|(offset, _)| *offset)).collect();
        check_apart(starts, FLYRECORD.len() as u64 + table_size)?;
        let stats_of = |name: &Option<String>| -> Vec<String> {
            cpustats.iter().find(|(of, _)| of == name).map(|(_, stats)| stats.clone()).unwrap_or_default()
        };
        let top = cpu_table(&f.bytes(table_size, "cpu table")?, len, "the top-level buffer")?;
        let mut buffers = vec![DatBuffer { name: None, cpus: top, cpustats: stats_of(&None) }];
        for (offset, name) in named {
            let cpus = buffer_section(&file, offset, table_size, len, &name)?;
            let name = Some(name);
            buffers.push(DatBuffer { cpustats: stats_of(&name), name, cpus });
        }
        Ok(Self { file, page_size, formats, symbols, clock, writer, buffers })
    }

    /// The pages of `cpu`, in order.
    pub fn pages(&self, cpu: &DatCpu) -> Result<DatPages, DatError> {
        Ok(DatPages {
            file: self.file.try_clone()?,
            page_size: self.page_size as usize,
            buf: Vec::new(),
            at: 0,
            pos: cpu.offset,
            end: cpu.offset + cpu.size / u64::from(self.page_size) * u64::from(self.page_size),
        })
    }
}

/// The CPUs of a flyrecord table (`{ offset:u64 size:u64 }` per CPU) of a file of `len` bytes,
/// in the buffer `whose`.
fn cpu_table(table: &[u8], len: u64, whose: &str) -> Result<Vec<DatCpu>, DatError> {
    table
        .chunks_exact(16)
        .enumerate()
        .map(|(cpu, entry)| {
            let (offset, size) = entry.split_at(8);
            let offset = u64::from_ne_bytes(offset.try_into().expect("8 bytes"));
            let size = u64::from_ne_bytes(size.try_into().expect("8 bytes"));
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(DatError::Corrupt(format!("cpu {cpu}'s data of {whose} lies outside the file")));
            }
            Ok(DatCpu { cpu: cpu as u32, offset, size })
        })
        .collect()
}

/// The CPUs of the named buffer `name`, whose flyrecord section is at `offset`, its table
/// `table_size` bytes, in a file of `len` bytes.
fn buffer_section(file: &File, offset: u64, table_size: u64, len: u64, name: &str) -> Result<Vec<DatCpu>, DatError> {
    let whose = format!("buffer {name:?}");
    let section_size = FLYRECORD.len() as u64 + table_size;
    if offset.checked_add(section_size).is_none_or(|end| end > len) {
        return Err(DatError::Corrupt(format!("the section of {whose} lies outside the file")));
    }
    let mut section = vec![0; section_size as usize];
    file.read_exact_at(&mut section, offset)?;
    let (tag, table) = section.split_at(FLYRECORD.len());
    if tag != FLYRECORD {
        return Err(DatError::Unsupported(format!(
            "the section of {whose} starts with {:?} (only flyrecord data is read)",
            String::from_utf8_lossy(tag)
        )));
    }
    cpu_table(table, len, &whose)
}

/// Checks that no two buffers' sections, `size` bytes from each of `starts`, overlap: in a real
/// file they never do, and so the tables to be read are no larger than the file, however many
/// BUFFER options it has.
fn check_apart(mut starts: Vec<u64>, size: u64) -> Result<(), DatError> {
    starts.sort_unstable();
    match starts.windows(2).find(|pair| pair[1] - pair[0] < size) {
        Some(pair) => Err(DatError::Corrupt(format!("buffer sections at {} and {} overlap", pair[0], pair[1]))),
        None => Ok(()),
    }
}

/// Reads one CPU's pages, a chunk at a time, at their own offsets (several CPUs' readers share
/// the file without sharing a position).
#[derive(Debug)]
pub struct DatPages {
    file: File,
    page_size: usize,
    buf: Vec<u8>,
    /// Offset of the next page in `buf`.
    at: usize,
    /// File offset just past what `buf` holds.
    pos: u64,
    end: u64,
}

impl DatPages {
    /// Pages read per chunk.
    const CHUNK_PAGES: u64 = 256;

    /// The next page, or `None` after the last.
    pub fn next_page(&mut self) -> Result<Option<&[u8]>, DatError> {
        if self.at == self.buf.len() {
            let n = (self.end - self.pos).min(Self::CHUNK_PAGES * self.page_size as u64);
            if n == 0 {
                return Ok(None);
            }
            self.buf.resize(n as usize, 0);
            self.file.read_exact_at(&mut self.buf, self.pos)?;
            self.pos += n;
            self.at = 0;
        }
        let page = &self.buf[self.at..self.at + self.page_size];
        self.at += self.page_size;
        Ok(Some(page))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{BufferCpu, BufferSpec, DatInfo, DatWriter, PageBuilder, SpoolIo};
    use super::*;
    use ring_core::EventIter;
    use ring_mmap::Lost;

    const FORMAT: &str = "name: ping\nID: 5\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
        \tfield:unsigned int n;\toffset:8;\tsize:4;\tsigned:0;\n\n\
        print fmt: \"n=%u\", REC->n\n";

    #[test]
    fn a_written_file_reads_back() {
        a_written_file_reads_back_with(SpoolIo::Buffered);
    }

    #[test]
    fn a_file_written_with_direct_io_reads_back() {
        a_written_file_reads_back_with(SpoolIo::Direct);
    }

    fn a_written_file_reads_back_with(io: SpoolIo) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        let mut formats = Formats::default();
        formats.insert(EventFormat::parse("demo", FORMAT).unwrap());
        let info = DatInfo::new(4096, &formats, Some("mono".into()));
        let mut w = match DatWriter::create(&path, info, &[BufferSpec::top(3, &[0, 2])], io) {
            Err(DatError::DirectIo { dir, source }) => {
                test_capabilities::skip(
                    format_args!("{} refuses O_DIRECT ({source})", dir.display()),
                    "reading a direct file",
                );
                return;
            }
            w => w.unwrap(),
        };
        let mut b = PageBuilder::new(4096);
        let mut pages = Vec::new();
        let mut out = |p: &[u8]| -> Result<(), DatError> {
            pages.push(p.to_vec());
            Ok(())
        };
        b.lost(Lost::Count(3), &mut out).unwrap();
        for n in 0..1000u32 {
            let mut payload = [0u8; 12];
            payload[0..2].copy_from_slice(&5u16.to_ne_bytes());
            payload[8..12].copy_from_slice(&n.to_ne_bytes());
            b.push(u64::from(n) * 10, 12, |d| d.copy_from_slice(&payload), &mut out).unwrap().unwrap();
        }
        b.flush(&mut out).unwrap();
        for p in &pages {
            w.write_page(BufferCpu { buffer: 0, cpu: 2 }, p).unwrap();
        }
        assert!(w.write_page(BufferCpu { buffer: 0, cpu: 1 }, &pages[0]).is_err(), "cpu 1 is not recorded");
        w.finish(&[vec!["CPU: 0\n".into(), "CPU: 2\n".into()]], |_, _| {}).unwrap();

        let f = DatFile::open(&path).unwrap();
        let top = &f.buffers[0];
        assert_eq!((f.page_size, f.clock.as_deref(), top.cpus.len()), (4096, Some("mono"), 3));
        assert_eq!(f.formats.get(5).unwrap().name, "ping");
        assert_eq!(top.cpustats.len(), 2);
        assert_eq!(top.cpus[0].size, 0);
        assert_eq!(top.cpus[2].offset % 4096, 0);
        let mut it = f.pages(&top.cpus[2]).unwrap();
        let mut n = 0u64;
        while let Some(page) = it.next_page().unwrap() {
            for e in EventIter::new(page).unwrap() {
                assert_eq!(e.unwrap().timestamp, n * 10);
                n += 1;
            }
        }
        assert_eq!(n, 1000);
    }

    #[test]
    fn damaged_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(DatFile::open(&path), Err(DatError::NotTraceDat)));
        let good = dir.path().join("g.dat");
        let w = DatWriter::create(
            &good,
            DatInfo::new(4096, &Formats::default(), None),
            &[BufferSpec::top(1, &[0])],
            SpoolIo::Buffered,
        )
        .unwrap();
        w.finish(&[], |_, _| {}).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        assert!(DatFile::open(&good).is_ok());
        // Every truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(DatFile::open(&path).is_err(), "truncated at {cut}");
        }
        // A directory is an I/O error, not "not a trace.dat".
        assert!(matches!(DatFile::open(dir.path()), Err(DatError::Io(_))));
    }

    /// Pages of `count` events of id `id`, `n` = 0.., the first at `first_ns`, 10 ns apart.
    fn pages_of(id: u16, first_ns: u64, count: u32) -> Vec<Vec<u8>> {
        let mut b = PageBuilder::new(4096);
        let mut pages = Vec::new();
        let mut out = |p: &[u8]| -> Result<(), DatError> {
            pages.push(p.to_vec());
            Ok(())
        };
        for n in 0..count {
            let mut payload = [0u8; 12];
            payload[0..2].copy_from_slice(&id.to_ne_bytes());
            payload[8..12].copy_from_slice(&n.to_ne_bytes());
            b.push(first_ns + u64::from(n) * 10, 12, |d| d.copy_from_slice(&payload), &mut out).unwrap().unwrap();
        }
        b.flush(&mut out).unwrap();
        pages
    }

    /// The timestamps and `n`s of the events in `cpu`'s pages.
    fn events_of(f: &DatFile, cpu: &DatCpu) -> Vec<(u64, u32)> {
        let mut it = f.pages(cpu).unwrap();
        let mut events = Vec::new();
        while let Some(page) = it.next_page().unwrap() {
            for e in EventIter::new(page).unwrap() {
                let e = e.unwrap();
                events.push((e.timestamp, u32::from_ne_bytes(e.payload[8..12].try_into().unwrap())));
            }
        }
        events
    }

    /// Writes a file of three buffers: the top-level one of 2 CPUs (cpu 1 recorded), `hyp` of 4
    /// (cpus 0 and 3), `guest` of 1 (cpu 0), each recorded CPU with 700 events (two pages).
    fn three_buffers(path: &Path) {
        let info = DatInfo::new(4096, &Formats::default(), None);
        let buffers =
            [BufferSpec::top(2, &[1]), BufferSpec::named("hyp", 4, &[0, 3]), BufferSpec::named("guest", 1, &[0])];
        let mut w = DatWriter::create(path, info, &buffers, SpoolIo::Buffered).unwrap();
        let recorded = [(0, 1), (1, 0), (1, 3), (2, 0)];
        for (lane, (buffer, cpu)) in recorded.into_iter().enumerate() {
            for page in pages_of(5, 1000 * lane as u64, 700) {
                w.write_page(BufferCpu { buffer, cpu }, &page).unwrap();
            }
        }
        let stats = |cpus: &[u32]| cpus.iter().map(|c| format!("CPU: {c}\n")).collect::<Vec<_>>();
        w.finish(&[stats(&[1]), stats(&[0, 3]), stats(&[0])], |_, _| {}).unwrap();
    }

    #[test]
    fn every_buffer_reads_back_with_its_name_cpus_statistics_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.dat");
        three_buffers(&path);
        let f = DatFile::open(&path).unwrap();
        let names: Vec<Option<&str>> = f.buffers.iter().map(|b| b.name.as_deref()).collect();
        assert_eq!(names, [None, Some("hyp"), Some("guest")]);
        for b in &f.buffers {
            assert_eq!(b.cpus.len(), 4, "every buffer's table has the file's CPU count, the largest");
        }
        let recorded: Vec<Vec<u32>> =
            f.buffers.iter().map(|b| b.cpus.iter().filter(|c| c.size > 0).map(|c| c.cpu).collect()).collect();
        assert_eq!(recorded, [vec![1], vec![0, 3], vec![0]]);
        let stats: Vec<&[String]> = f.buffers.iter().map(|b| b.cpustats.as_slice()).collect();
        assert_eq!(stats, [&["CPU: 1\n"][..], &["CPU: 0\n", "CPU: 3\n"], &["CPU: 0\n"]]);
        for (lane, (buffer, cpu)) in [(0, 1), (1, 0), (1, 3), (2, 0)].into_iter().enumerate() {
            let expected: Vec<(u64, u32)> = (0..700).map(|n| (1000 * lane as u64 + u64::from(n) * 10, n)).collect();
            assert_eq!(events_of(&f, &f.buffers[buffer].cpus[cpu]), expected, "buffer {buffer} cpu {cpu}");
        }
    }

    #[test]
    fn damaged_buffer_sections_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("g.dat");
        three_buffers(&good);
        let bytes = std::fs::read(&good).unwrap();
        let path = dir.path().join("b.dat");
        for cut in (0..bytes.len()).step_by(97) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(DatFile::open(&path).is_err(), "truncated at {cut}");
        }
        // Each BUFFER option's offset: 8 bytes after its id and size.
        let offsets: Vec<usize> = bytes
            .windows(6)
            .enumerate()
            .filter(|(_, w)| {
                w[..2] == option::BUFFER.to_ne_bytes()
                    && (w[2..6] == 12u32.to_ne_bytes() || w[2..6] == 14u32.to_ne_bytes())
            })
            .map(|(at, _)| at + 6)
            .collect();
        assert_eq!(offsets.len(), 2, "the BUFFER options of hyp and guest");
        let with_offset = |option: usize, offset: u64| {
            let mut b = bytes.clone();
            b[offsets[option]..offsets[option] + 8].copy_from_slice(&offset.to_ne_bytes());
            std::fs::write(&path, &b).unwrap();
            DatFile::open(&path)
        };
        let hyp_section = u64::from_ne_bytes(bytes[offsets[0]..offsets[0] + 8].try_into().unwrap());
        assert!(matches!(with_offset(1, hyp_section), Err(DatError::Corrupt(m)) if m.contains("overlap")));
        assert!(matches!(with_offset(1, hyp_section + 1), Err(DatError::Corrupt(m)) if m.contains("overlap")));
        assert!(matches!(with_offset(1, bytes.len() as u64 - 20), Err(DatError::Corrupt(m)) if m.contains("outside")));
        assert!(matches!(with_offset(1, u64::MAX - 4), Err(DatError::Corrupt(m)) if m.contains("outside")));
        assert!(matches!(with_offset(1, 8192), Err(DatError::Unsupported(m)) if m.contains("guest")));
        // A CPUCOUNT that the file has no room for.
        let mut b = bytes.clone();
        let at = b.windows(10).position(|w| w == b"options  \0").unwrap() + 10;
        let mut count = option::CPUCOUNT.to_ne_bytes().to_vec();
        count.extend_from_slice(&4u32.to_ne_bytes());
        count.extend_from_slice(&u32::MAX.to_ne_bytes());
        b.splice(at..at, count);
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(DatFile::open(&path), Err(DatError::Corrupt(_))));
    }
}
