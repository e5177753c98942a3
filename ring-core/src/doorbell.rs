//! Waking a consumer that waits for data, without a system call on the writer's fast path.
//!
//! A consumer about to sleep arms the doorbell with a watermark ([`CpuBuffer::arm_doorbell`]): "wake
//! me when at least this many ring pages are full". The writer checks the arming only when it
//! moves onto a new page (its slow path) and, if the ring has filled to the watermark, disarms it
//! and rings the [`Doorbell`] once. So the doorbell rings at most once per page crossing and only
//! when someone waits; writes that stay on a page cost nothing extra.
//!
//! The arming and the writer's page move form a Dekker pair, each side storing then loading with a
//! `SeqCst` fence between, so a consumer that arms just as the writer crosses either sees the new
//! fill itself or is rung:
//!
//! ```text
//!   consumer (arm_doorbell)                 writer (moving onto a page)
//!   armed = watermark + 1                   publish tail slot
//!   fence(SeqCst)                           fence(SeqCst)
//!   fill >= watermark? -> disarm, read now  armed && fill >= watermark? -> disarm, ring
//! ```
//!
//! What ringing means is up to the embedder: ring-mmap writes to an eventfd the consumer polls;
//! a hypervisor could raise an interrupt to its host.
//!
//! [`CpuBuffer::arm_doorbell`]: crate::CpuBuffer::arm_doorbell

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::format::{COMMIT_LEN_MASK, SUBBUF_COMMIT_OFFSET};
use crate::sync::{Ordering, fence};

/// What the writer calls when a waiting consumer's watermark is reached.
pub trait Doorbell {
    /// Wakes the consumer. Called from the writer's slow path, at most once per arming. It must not
    /// write to this CPU's buffer.
    fn ring(&self);
}

/// No doorbell: consumers poll.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDoorbell;

impl Doorbell for NoDoorbell {
    #[inline(always)]
    fn ring(&self) {}
}

impl<D: Doorbell + ?Sized> Doorbell for &D {
    fn ring(&self) {
        (**self).ring()
    }
}

/// What a consumer asking to be woken is told: whether to read now, and how far behind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arming {
    /// The watermark is reached already ([`CpuBuffer::arm_doorbell`] returned true): read now;
    /// the doorbell was left disarmed. False: armed, it rings when the watermark is reached.
    pub ready: bool,
    /// [`CpuBuffer::full_pages`] when armed.
    pub full_pages: u32,
}

impl<C: Clock, D: Doorbell> CpuBuffer<'_, C, D> {
    /// Asks to be woken through the doorbell once at least `pages` pages are finished (see
    /// [`CpuBuffer::full_pages`]; 0 counts as 1: as soon as the writer finishes a page, and more
    /// than the ring can hold, `nr_slots - 1`, counts as that). Returns true, leaving the doorbell
    /// disarmed, if that is already the case: read now instead of waiting.
    pub fn arm_doorbell(&self, pages: u32) -> bool {
        let pages = pages.clamp(1, self.geometry.nr_slots() - 1);
        // Ordering: SeqCst fence after the store pairs with the writer's (see the module docs).
        self.writer_shared.doorbell.store(pages.saturating_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.full_pages() >= pages {
            self.disarm_doorbell();
            return true;
        }
        false
    }

    /// Withdraws an arming (the consumer stopped waiting).
    pub fn disarm_doorbell(&self) {
        // Ordering: Relaxed; the doorbell word carries no data.
        self.writer_shared.doorbell.store(0, Ordering::Relaxed);
    }

    /// Pages the writer has finished that the consumer has not given back: the full ring pages
    /// (head up to, not including, the writer's page) plus the reader page once the writer has
    /// left it and it holds anything. 0 when the consumer has caught up (the writer is then on
    /// the reader page and the ring is empty).
    ///
    /// Computed from the writer's and swapper's own state (nothing is taken from the meta area,
    /// which a host may corrupt) and the reader page's `commit`, which is only compared with 0.
    pub fn full_pages(&self) -> u32 {
        // Ordering: Acquire on `tail`, `reader` and the head slot, pairing with the writer's and
        // the swapper's Release (or AcqRel) updates, so the slot counter read after them is at
        // least as new.
        let tail = self.writer_shared.tail.load(Ordering::Acquire);
        let reader = self.swapper.reader.load(Ordering::Acquire);
        if tail == reader {
            return 0;
        }
        let slots = self.geometry.nr_slots();
        // Ordering: Relaxed; writer-owned slot counter (a statistic here).
        let tail_slot = self.writer_shared.slot.load(Ordering::Relaxed) % slots;
        let head_slot = self.swapper.head_slot.load(Ordering::Acquire) % slots;
        let ring = (tail_slot + slots - head_slot) % slots;
        let reader_commit = self.data.load_u64(self.geometry.subbuf_offset(reader) + SUBBUF_COMMIT_OFFSET);
        ring + u32::from(reader_commit & COMMIT_LEN_MASK != 0)
    }

    /// The writer's side, after it moved onto a page: rings the doorbell if it is armed and the
    /// watermark is reached.
    pub(crate) fn check_doorbell(&self) {
        // Ordering: SeqCst fence after the tail was published pairs with the one in
        // `arm_doorbell`.
        fence(Ordering::SeqCst);
        let armed = self.writer_shared.doorbell.load(Ordering::Relaxed);
        if armed == 0 || self.full_pages() < armed - 1 {
            return;
        }
        // Ordering: Relaxed; whoever swaps the arming out rings (or, in `arm_doorbell`, reads).
        if self.writer_shared.doorbell.swap(0, Ordering::Relaxed) != 0 {
            self.doorbell.ring();
        }
    }
}

#[cfg(all(test, feature = "std", not(loom)))]
mod tests {
    use crate::test_support::seq_payload;
    use crate::{Config, CpuBuffer, Doorbell, Geometry, ManualClock, Mode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts rings.
    #[derive(Clone, Default)]
    struct Rings(Arc<AtomicU32>);

    impl Rings {
        fn count(&self) -> u32 {
            self.0.load(Ordering::Relaxed)
        }
    }

    impl Doorbell for Rings {
        fn ring(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn buffer(rings: &Rings) -> CpuBuffer<'static, ManualClock, Rings> {
        let geometry = Geometry::new(64, 5).unwrap(); // 4 ring pages of two 20-byte events
        CpuBuffer::with_heap(Config { geometry, mode: Mode::Overwrite }, ManualClock::new(1))
            .unwrap()
            .with_doorbell(rings.clone())
    }

    #[test]
    fn rings_once_when_the_watermark_is_reached_and_only_if_armed() {
        let rings = Rings::default();
        let buf = buffer(&rings);
        for seq in 0..5 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // pages 1 and 2 full, writer on page 3
        }
        assert_eq!(buf.full_pages(), 2, "the empty initial reader page does not count");
        assert_eq!(rings.count(), 0, "nobody was waiting");
        assert!(buf.arm_doorbell(2), "already at the watermark: read now, no ring");
        assert!(!buf.arm_doorbell(3));
        buf.write(&seq_payload(5, 12)).unwrap(); // fills page 3 without leaving it: no ring
        assert_eq!(rings.count(), 0);
        buf.write(&seq_payload(6, 12)).unwrap(); // crosses onto page 4: 3 full pages
        assert_eq!(rings.count(), 1);
        for seq in 9..20 {
            buf.write(&seq_payload(seq, 12)).unwrap();
        }
        assert_eq!(rings.count(), 1, "at most once per arming");
    }

    #[test]
    fn watermarks_beyond_the_ring_are_clamped_so_they_can_fire() {
        let rings = Rings::default();
        let buf = buffer(&rings); // 4 ring slots: at most 3 full pages
        assert!(!buf.arm_doorbell(u32::MAX));
        for seq in 0..7 {
            buf.write(&seq_payload(seq, 12)).unwrap(); // pages 1..=3 full, writer on page 4
        }
        assert_eq!(rings.count(), 1);
    }

    #[test]
    fn an_empty_ring_with_the_writer_on_the_reader_page_has_no_full_pages() {
        let rings = Rings::default();
        let buf = buffer(&rings);
        buf.write(&seq_payload(0, 12)).unwrap();
        assert_eq!(buf.swap_reader_page(0).unwrap().id, 1, "the writer's page became the reader page");
        assert_eq!(buf.full_pages(), 0);
        assert!(!buf.arm_doorbell(0));
        buf.write(&seq_payload(1, 12)).unwrap();
        assert_eq!(rings.count(), 0);
        buf.write(&seq_payload(2, 12)).unwrap(); // leaves the reader page: the consumer has a page
        assert_eq!(rings.count(), 1);
        assert_eq!(buf.full_pages(), 1);
    }
}
