//! Shared pieces of hyptrace's integration tests: a reference model of a CPU buffer
//! ([`oracle`]) and self-checking event payloads ([`payload`]).

pub mod oracle;
pub mod payload;
