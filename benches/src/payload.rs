//! The record every writer in the benchmarks stores: a timestamp from the same clock and an
//! `N`-byte payload whose content changes with each event.

/// What a peer queue stores per event: the timestamp and the payload hyptrace records.
pub type Record<const N: usize> = (u64, [u8; N]);

/// An `N`-byte payload (`N` ≥ 16) carrying `i` in its first 8 bytes and `!i` in its last 8, so
/// the work of building and storing it cannot be hoisted out of a benchmark loop.
#[inline]
pub fn payload<const N: usize>(i: u64) -> [u8; N] {
    const { assert!(N >= 16, "payloads carry two 8-byte words") };
    let mut p = [0u8; N];
    p[..8].copy_from_slice(&i.to_ne_bytes());
    p[N - 8..].copy_from_slice(&(!i).to_ne_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_change_with_the_event() {
        let a: [u8; 16] = payload(1);
        assert_ne!(a, payload::<16>(2));
        let b: [u8; 64] = payload(1);
        assert_eq!(b[..8], 1u64.to_ne_bytes());
        assert_eq!(b[56..], (!1u64).to_ne_bytes());
    }
}
