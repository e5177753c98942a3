//! What the simulated guests do: a deterministic stream of exits to the hypervisor per vCPU.
//!
//! Exit `n` of vCPU `cpu` under seed `seed` is a pure function of the three ([`exit`]), and every
//! exit carries `n` in its fields, so a consumer can check every event it reads against what the
//! vCPU must have done, and notice any missing one.

use super::GuestExit;

/// SplitMix64: a well-mixed 64-bit hash of its input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Exit `n` of vCPU `cpu`: half hypercalls, a fifth SMCs, a quarter memory aborts, the rest
/// printk.
pub fn exit(seed: u64, cpu: u32, n: u64) -> GuestExit<'static> {
    let r = mix(seed ^ mix(u64::from(cpu) << 40 ^ n));
    match r % 100 {
        0..50 => {
            GuestExit::Hcall { id: 0xc600_0000 | (r >> 8 & 0x3f), args: [r >> 16 & 0xffff, u64::from(cpu), r >> 32, n] }
        }
        50..70 => GuestExit::Smc { func_id: 0x8400_0000_0000_0000 | (n & 0xff_ffff), forwarded: r & 1 == 1 },
        70..95 => GuestExit::MemAbort { esr: 0x9200_0000 | (r >> 20 & 0x3f), addr: n << 12 },
        _ => GuestExit::Printk,
    }
}

/// The message the hypervisor prints for a [`GuestExit::Printk`].
pub fn printk_message(cpu: u32, n: u64, out: &mut [u8; 64]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    let _ = write!(cursor, "vcpu {cpu}: exit {n} handled");
    let len = cursor.position() as usize;
    std::str::from_utf8(&out[..len]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_deterministic_and_carry_their_number() {
        let mut kinds = [0; 4];
        for n in 0..10_000 {
            let e = exit(7, 1, n);
            assert_eq!(e, exit(7, 1, n));
            match e {
                GuestExit::Hcall { args, .. } => {
                    assert_eq!(args[3], n);
                    kinds[0] += 1;
                }
                GuestExit::Smc { func_id, .. } => {
                    assert_eq!(func_id & 0xff_ffff, n & 0xff_ffff);
                    kinds[1] += 1;
                }
                GuestExit::MemAbort { addr, .. } => {
                    assert_eq!(addr >> 12, n);
                    kinds[2] += 1;
                }
                GuestExit::Printk => kinds[3] += 1,
                other => panic!("a simulated guest makes no KVM exit: {other:?}"),
            }
        }
        assert!(kinds.iter().all(|&k| k > 300), "every kind occurs: {kinds:?}");
        assert_ne!(exit(7, 1, 5), exit(7, 2, 5), "vCPUs differ");
        let mut buf = [0u8; 64];
        assert_eq!(printk_message(3, 42, &mut buf), "vcpu 3: exit 42 handled");
    }
}
