//! # trace-reader: reading trace buffers through their memory mappings
//!
//! The library behind the `trace-reader` tool: event formats and decoding ([`formats`]), the
//! buffers to read, hyptrace producers or the Linux kernel ([`source`]), the consuming read loop
//! ([`live`]), ordering events of several CPUs by time ([`merge`]), printing them as trace-cmd
//! does ([`output`], [`event_text`], with the names of [`symbols`]) and their counters
//! ([`table`]), trace-cmd's trace.dat file ([`tracedat`]), and the command line ([`cli`],
//! [`cmd`]).
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod event_ids;
pub mod event_text;
pub mod formats;
pub mod kernel_setup;
pub mod live;
pub mod merge;
pub mod output;
pub mod source;
pub mod symbols;
pub mod table;
pub mod tracedat;
