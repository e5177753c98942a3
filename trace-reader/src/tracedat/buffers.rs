//! How a version 6 file tells its buffers apart, as trace-cmd writes and reads them: each named
//! (instance) buffer has a BUFFER option giving the file offset of its own flyrecord section and
//! its name, and its CPUs' statistics follow a CPUSTAT option that is only a heading naming it.

use super::DatError;

/// The BUFFER option's body: the offset of the buffer's flyrecord section, then its name,
/// NUL-terminated.
pub(super) fn buffer_option(offset: u64, name: &str) -> Vec<u8> {
    let mut body = offset.to_ne_bytes().to_vec();
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body
}

/// The offset and name a BUFFER option's body gives.
pub(super) fn parse_buffer_option(body: &[u8]) -> Result<(u64, String), DatError> {
    let Some((offset, name)) = body.split_first_chunk::<8>() else {
        return Err(DatError::Corrupt(format!("a BUFFER option of {} bytes", body.len())));
    };
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    Ok((u64::from_ne_bytes(*offset), String::from_utf8_lossy(name).into_owned()))
}

/// The CPUSTAT text that heads the statistics of buffer `name` (the top-level buffer's come first,
/// without one).
pub(super) fn cpustat_heading(name: &str) -> String {
    format!("\nBuffer: {name}\n\n")
}

/// The buffer a CPUSTAT text is the heading of, if it is one.
pub(super) fn heading_of(cpustat: &str) -> Option<&str> {
    let name = cpustat.trim().strip_prefix("Buffer: ")?;
    (!name.contains('\n')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_headings_read_back() {
        assert_eq!(parse_buffer_option(&buffer_option(8192, "hyp")).unwrap(), (8192, "hyp".to_string()));
        assert!(matches!(parse_buffer_option(&[1, 2, 3]), Err(DatError::Corrupt(_))));
        assert_eq!(heading_of(&cpustat_heading("hyp")), Some("hyp"));
        assert_eq!(heading_of("CPU: 0\nentries: 0\n"), None);
    }
}
