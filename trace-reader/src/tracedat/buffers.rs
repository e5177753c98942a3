//! How a version 6 file tells its buffers apart, as trace-cmd writes and reads them: each named
//! (instance) buffer has a BUFFER option giving the file offset of its own flyrecord section and
//! its name, and its CPUs' statistics follow a CPUSTAT option that is only a heading naming it.

/// The BUFFER option's body: the offset of the buffer's flyrecord section, then its name,
/// NUL-terminated.
pub(super) fn buffer_option(offset: u64, name: &str) -> Vec<u8> {
    let mut body = offset.to_ne_bytes().to_vec();
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body
}

/// The CPUSTAT text that heads the statistics of buffer `name` (the top-level buffer's come first,
/// without one).
pub(super) fn cpustat_heading(name: &str) -> String {
    format!("\nBuffer: {name}\n\n")
}
