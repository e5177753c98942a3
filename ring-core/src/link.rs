//! Writer-private ring links: which sub-buffer follows which, and where the head is.
//!
//! Each sub-buffer has a [`SubBufLink`] in memory consumers cannot write. Its `next` word holds
//! the id of the following sub-buffer plus two flags, exactly the trick the kernel plays with the
//! low bits of `list_head.next`, and a modification count that makes every compare-and-swap
//! immune to ABA:
//!
//! ```text
//!  63            32 31    30  29                         0
//! +----------------+------+------+-------------------------+
//! |  generation    |UPDATE| HEAD |   id of next sub-buffer |
//! +----------------+------+------+-------------------------+
//! ```
//!
//! `HEAD` on page P's link means "the page after P is the head page". `UPDATE` means "the writer
//! is pushing the head past the page after P" (overwrite mode).

use crate::sync::{AtomicU32, AtomicU64, Ordering};

const ID_MASK: u64 = (1 << 30) - 1;
const HEAD: u64 = 1 << 30;
const UPDATE: u64 = 1 << 31;
const GEN_ONE: u64 = 1 << 32;

/// A decoded `next` link word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkWord(u64);

impl LinkWord {
    /// A plain link to `id` with generation 0.
    pub(crate) const fn to(id: u32) -> Self {
        Self(id as u64 & ID_MASK)
    }
    pub(crate) const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    pub(crate) const fn raw(self) -> u64 {
        self.0
    }
    pub(crate) const fn id(self) -> u32 {
        (self.0 & ID_MASK) as u32
    }
    pub(crate) const fn is_head(self) -> bool {
        self.0 & HEAD != 0
    }
    pub(crate) const fn is_update(self) -> bool {
        self.0 & UPDATE != 0
    }
    /// The same target with only `HEAD` set, next generation.
    pub(crate) const fn as_head(self) -> Self {
        Self(((self.0 & !(HEAD | UPDATE)) | HEAD).wrapping_add(GEN_ONE))
    }
    /// The same target with only `UPDATE` set, next generation.
    pub(crate) const fn as_update(self) -> Self {
        Self(((self.0 & !(HEAD | UPDATE)) | UPDATE).wrapping_add(GEN_ONE))
    }
    /// The same target with no flag, next generation.
    pub(crate) const fn as_plain(self) -> Self {
        Self((self.0 & !(HEAD | UPDATE)).wrapping_add(GEN_ONE))
    }
    /// A link to `id` with the given head flag, one generation past `self`.
    pub(crate) const fn replaced(self, id: u32, head: bool) -> Self {
        let flags = if head { HEAD } else { 0 };
        Self(((self.0 & !(ID_MASK | HEAD | UPDATE)) | flags | (id as u64 & ID_MASK)).wrapping_add(GEN_ONE))
    }
}

/// Writer-private state of one sub-buffer. Lives outside shared memory (in a hypervisor, in its
/// own pages), one per sub-buffer id.
#[derive(Debug)]
pub struct SubBufLink {
    /// The `next` link word (see the module docs).
    pub(crate) next: AtomicU64,
    /// Sequence number (events handed to the writer, dropped ones included) of the page's first
    /// event; written when the writer moves onto the page.
    pub(crate) first_seq: AtomicU64,
    /// Sequence number just past the page's last event; written when the writer leaves it.
    pub(crate) end_seq: AtomicU64,
    /// Events committed on the page; written when the writer leaves it.
    pub(crate) entries: AtomicU32,
}

impl SubBufLink {
    /// A fresh, unlinked entry.
    pub fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            first_seq: AtomicU64::new(0),
            end_seq: AtomicU64::new(0),
            entries: AtomicU32::new(0),
        }
    }

    // Ordering: Acquire pairs with the Release (or AcqRel) of whoever last changed the link, so
    // everything published before a link change (a spliced page's own link, a pushed page's
    // counters) is visible to whoever follows it.
    #[inline]
    pub(crate) fn load_next(&self) -> LinkWord {
        LinkWord(self.next.load(Ordering::Acquire))
    }

    /// Compare-and-swap of the link word. Ordering: AcqRel on success, so the winner both
    /// publishes what it prepared (a spliced page's link, the push accounting) and sees what the
    /// previous owner of the word published; Acquire on failure, so the loser can follow the
    /// link it lost to.
    #[inline]
    pub(crate) fn cas_next(&self, old: LinkWord, new: LinkWord) -> Result<(), LinkWord> {
        self.next.compare_exchange(old.0, new.0, Ordering::AcqRel, Ordering::Acquire).map(|_| ()).map_err(LinkWord)
    }

    /// Plain store, for a link nobody else can be looking at (a page outside the ring, or set-up).
    #[inline]
    pub(crate) fn store_next(&self, word: LinkWord, order: Ordering) {
        self.next.store(word.0, order);
    }
}

impl Default for SubBufLink {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_generations() {
        let w = LinkWord::to(7);
        assert!(!w.is_head() && !w.is_update());
        let h = w.as_head();
        assert_eq!((h.id(), h.is_head(), h.is_update()), (7, true, false));
        let u = h.as_update();
        assert_eq!((u.id(), u.is_head(), u.is_update()), (7, false, true));
        let p = u.as_plain();
        assert_eq!((p.id(), p.is_head(), p.is_update()), (7, false, false));
        assert_ne!(p, w, "generation must differ after three changes");
        let r = p.replaced(9, true);
        assert_eq!((r.id(), r.is_head()), (9, true));
        assert_eq!(r.raw() >> 32, 4);
    }
}
