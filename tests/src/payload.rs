//! Event payloads that carry a sequence number and let a reader detect tearing.
//!
//! Layout: `seq: u32`, `!seq: u32`, then filler byte `i` = `seq as u8 ^ i as u8`. Payloads shorter
//! than 8 bytes carry a prefix of that.

/// Builds the payload of event `seq` with `len` bytes.
pub fn make(seq: u32, len: usize) -> Vec<u8> {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&seq.to_ne_bytes());
    head[4..].copy_from_slice(&(!seq).to_ne_bytes());
    (0..len).map(|i| if i < 8 { head[i] } else { seq as u8 ^ i as u8 }).collect()
}

/// Why a payload is not one `make` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// Shorter than the 8-byte header.
    Short,
    /// `!seq` does not match `seq`.
    Header,
    /// A filler byte is wrong.
    Filler(usize),
}

/// Reads back the sequence number of a payload as decoded (zero-padded to 4 bytes), checking
/// every byte `make` would have written.
pub fn check(bytes: &[u8]) -> Result<u32, Torn> {
    if bytes.len() < 8 {
        return Err(Torn::Short);
    }
    let seq = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
    if u32::from_ne_bytes(bytes[4..8].try_into().expect("4 bytes")) != !seq {
        return Err(Torn::Header);
    }
    // The last word may end in zero padding: its bytes are either filler or zero.
    let padded_from = bytes.len().saturating_sub(3).max(8);
    for (i, &b) in bytes.iter().enumerate().skip(8) {
        let want = seq as u8 ^ i as u8;
        if b != want && !(i >= padded_from && b == 0) {
            return Err(Torn::Filler(i));
        }
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_tearing_is_caught() {
        for len in [8, 9, 12, 13, 100] {
            let mut p = make(77, len);
            p.resize(len.next_multiple_of(4), 0);
            assert_eq!(check(&p), Ok(77), "len {len}");
        }
        let mut p = make(5, 16);
        p[10] ^= 0xff;
        assert_eq!(check(&p), Err(Torn::Filler(10)));
        let mut p = make(5, 16);
        p[4] = 0;
        assert_eq!(check(&p), Err(Torn::Header));
        assert_eq!(check(&make(5, 4)), Err(Torn::Short));
    }
}
