//! Reading a version 6 trace.dat back (ours, or trace-cmd's uncompressed flyrecord files).
//! Every size read from the file is checked against the file's length before it is used.

use super::{DatError, MAGIC, option};
use crate::formats::{EventFormat, Formats};
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

/// An opened trace.dat.
#[derive(Debug)]
pub struct DatFile {
    file: File,
    /// Bytes per page.
    pub page_size: u32,
    /// Event formats.
    pub formats: Formats,
    /// The trace clock, if the file names it.
    pub clock: Option<String>,
    /// Per-CPU statistics texts.
    pub cpustats: Vec<String>,
    /// The tool that wrote it, if the file says.
    pub writer: Option<String>,
    /// Every CPU's pages.
    pub cpus: Vec<DatCpu>,
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

    /// Moves past `n` bytes without keeping them.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), DatError> {
        self.claim(n, what)?;
        let skipped = std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink())?;
        if skipped != n {
            return Err(DatError::Corrupt(format!("{what}: the file ends inside it")));
        }
        Ok(())
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
        f.skip(u64::from(n), "kallsyms")?;
        let n = f.u32("printk formats")?;
        f.skip(u64::from(n), "printk formats")?;
        let n = f.u64("saved cmdlines")?;
        f.skip(n, "saved cmdlines")?;
        let nr_cpus = f.u32("cpu count")?;
        if u64::from(nr_cpus) * 16 > f.left {
            return Err(DatError::Corrupt(format!("{nr_cpus} CPUs")));
        }
        let (mut clock, mut cpustats, mut writer, mut instances) = (None, Vec::new(), None, Vec::new());
        let mut section = f.bytes(10, "section")?;
        if section == b"options  \0" {
            loop {
                let id = f.u16("option id")?;
                if id == option::DONE {
                    break;
                }
                let n = f.u32("option size")?;
                let raw = f.bytes(u64::from(n), "option")?;
                if id == option::BUFFER {
                    // The offset of the instance's own flyrecord section, then its name.
                    let name = raw.get(8..).unwrap_or_default();
                    instances.push(String::from_utf8_lossy(name).trim_end_matches('\0').to_string());
                    continue;
                }
                let body = String::from_utf8_lossy(&raw).trim_end_matches('\0').to_string();
                match id {
                    option::TRACECLOCK => {
                        clock = super::clock_in_use(&body);
                    }
                    option::CPUSTAT => cpustats.push(body),
                    option::VERSION => writer = Some(body),
                    _ => {}
                }
            }
            section = f.bytes(10, "section")?;
        }
        if !instances.is_empty() {
            return Err(DatError::Unsupported(format!(
                "events of instance buffers ({}): this reader reads files of the top-level buffer only \
                 (trace-cmd report reads these)",
                instances.join(", ")
            )));
        }
        if section != b"flyrecord\0" {
            return Err(DatError::Unsupported(format!(
                "section {:?} (only flyrecord data is read)",
                String::from_utf8_lossy(&section)
            )));
        }
        let mut cpus = Vec::new();
        for cpu in 0..nr_cpus {
            let (offset, size) = (f.u64("cpu offset")?, f.u64("cpu size")?);
            if offset.checked_add(size).is_none_or(|end| end > len) {
                return Err(DatError::Corrupt(format!("cpu {cpu}'s data lies outside the file")));
            }
            cpus.push(DatCpu { cpu, offset, size });
        }
        Ok(Self { file, page_size, formats, clock, cpustats, writer, cpus })
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
                println!("SKIPPED: {} refuses O_DIRECT ({source})", dir.display());
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
        assert_eq!((f.page_size, f.clock.as_deref(), f.cpus.len()), (4096, Some("mono"), 3));
        assert_eq!(f.formats.get(5).unwrap().name, "ping");
        assert_eq!(f.cpustats.len(), 2);
        assert_eq!(f.cpus[0].size, 0);
        assert_eq!(f.cpus[2].offset % 4096, 0);
        let mut it = f.pages(&f.cpus[2]).unwrap();
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

    #[test]
    fn files_with_instance_buffers_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("g.dat");
        let w = DatWriter::create(
            &good,
            DatInfo::new(4096, &Formats::default(), None),
            &[BufferSpec::top(1, &[0])],
            SpoolIo::Buffered,
        )
        .unwrap();
        w.finish(&[], |_, _| {}).unwrap();
        let mut bytes = std::fs::read(&good).unwrap();
        // A BUFFER option, as trace-cmd writes for `-B review`, first among the options.
        let at = bytes.windows(10).position(|w| w == b"options  \0").unwrap() + 10;
        let mut buffer = option::BUFFER.to_ne_bytes().to_vec();
        buffer.extend_from_slice(&15u32.to_ne_bytes());
        buffer.extend_from_slice(&8192u64.to_ne_bytes());
        buffer.extend_from_slice(b"review\0");
        bytes.splice(at..at, buffer);
        let path = dir.path().join("b.dat");
        std::fs::write(&path, &bytes).unwrap();
        let err = DatFile::open(&path).unwrap_err();
        assert!(matches!(&err, DatError::Unsupported(m) if m.contains("(review)")), "{err}");
    }
}
