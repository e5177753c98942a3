//! Shared pieces of hyptrace's integration tests: a reference model of a CPU buffer
//! ([`oracle`]), self-checking event payloads ([`payload`]) and a writer's committed-event count
//! that survives its death ([`progress`]).

pub mod oracle;
pub mod payload;
#[cfg(not(loom))]
pub mod progress;
