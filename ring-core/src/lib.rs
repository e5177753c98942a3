//! # ring-core: a lockless per-CPU page-list trace ring buffer
//!
//! Each CPU owns a [`CpuBuffer`]: `nr_subbufs` sub-buffers ("pages") of `subbuf_size` bytes in
//! memory shared with consumers, plus a meta area describing them. One sub-buffer is the *reader
//! page*, outside the ring and owned by the consumer; the others form the ring the writer fills.
//! Pages and events are byte-compatible with the Linux ring buffer ([`format`]), and the meta area
//! begins with Linux's `struct trace_buffer_meta` ([`meta`]), so kernel-style mmap readers work.
//! The crate is `no_std`; the writer needs no allocator and runs over memory handed to it.
//!
//! ## Pages, ids and slots
//!
//! Memory is shared with other processes, so nothing refers to a page by address. A page is a
//! sub-buffer *id* (its index in the sub-buffer array); the ring order is a list of ids kept in
//! writer-private [`SubBufLink`]s. The ring also has *slots*, its positions in order: slot `s`
//! holds some id, published to consumers in `data_index[s]`. A swap puts the reader page into the
//! slot of the page it takes, so ring order is always slot order.
//!
//! ```text
//!   sub-buffer array (shared):  [ 0 ][ 1 ][ 2 ][ 3 ][ 4 ]          ids
//!   initially:  reader = 0,  ring = 1 -> 2 -> 3 -> 4 -> 1          slots 0..3
//!
//!          reader page                 ring (writer-private links)
//!         +---------+      +-------+   +-------+   +-------+   +-------+
//!         |  id 0   |      | id 1  |-->| id 2  |-->| id 3  |-->| id 4  |--+
//!         +---------+      +-------+   +-------+   +-------+   +-------+  |
//!          consumer          ^ head                   ^ tail (writer)     | HEAD flag on
//!          reads it          | (oldest unread)        | commit = bytes    | the link *into*
//!                            +--------------------------------------------+ the head page
//! ```
//!
//! - **head**: the oldest page not yet handed to the consumer. Marked, as in the kernel, by a
//!   `HEAD` flag on the link of the page *before* it ([`link`]).
//! - **tail**: the page the writer is on (`buffer`'s writer state, read by swappers).
//! - **commit**: the page header's `commit` word, bytes of finished events; stored with release
//!   ordering after the bytes it covers. A reader never reads past it.
//! - **reader**: the reader page id, in the meta area's `reader.id`.
//!
//! Pages from head to tail hold data; pages after the tail up to the head are free.
//!
//! ## Writing
//!
//! `reserve → fill → commit` ([`Writer::reserve`], [`Writer::write`]). The writer stamps
//! the event, and if it does not fit in the tail page it *closes* the page (null padding to the
//! end, `commit` covering it) and *moves* to the next page:
//!
//! ```text
//!   tail.next has no HEAD flag        tail.next has the HEAD flag (ring full)
//!   -> enter next: bump its slot's    -> drop mode: drop the event, count `dropped`
//!      data_index cnt, reset commit,  -> overwrite mode: push the head:
//!      publish tail (release)            1. CAS  tail.next  HEAD -> UPDATE   (claim the page)
//!                                        2. overrun += its events; pages_lost += 1
//!                                        3. CAS  victim.next  -> HEAD        (new head)
//!                                        4. CAS  tail.next  UPDATE -> plain
//!                                        5. enter the victim page
//! ```
//!
//! A swapper that finds `UPDATE` finishes steps 3 and 4 itself (each is a compare-and-swap
//! against the exact word the writer saw, with a generation count against ABA), so a writer
//! preempted mid-push never blocks a consumer.
//!
//! The fast path (event fits) is plain loads and stores of writer state plus one release store of
//! `commit`; no read-modify-write. That is possible because the ring has a single writing context
//! at any time: writes nested inside an open write (signal handlers, interrupts) are staged and
//! published by the outermost commit ([`nest`]).
//!
//! **The writer contract.** Writing goes through a [`Writer`], claimed once per buffer with
//! [`CpuBuffer::writer`] (a compare-and-swap; a second claim while one lives is
//! [`WriterClaimed`]). A `Writer` may move between threads but not be shared by them, so in safe
//! code one context at a time writes a buffer, and nested writes are writes through the same
//! writer while one of its reservations is open. Contexts that ensure exclusivity themselves (a
//! hypervisor with preemption off, a signal handler of the claiming thread) use the `unsafe`
//! [`CpuBuffer::writer_unchecked`], whose contract is the rule above. A context left open (a
//! reservation forgotten with `mem::forget`) is closed, its room given back, when the claimed
//! writer is released, and counted in [`CpuBuffer::abandoned`]; nothing wedges.
//!
//! ## The swap (GET_READER_PAGE)
//!
//! [`CpuBuffer::swap_reader_page`]`(read)`: the consumer says how far it read. That must be a
//! record boundary of the reader page, no less than the last `read` accepted for it (the swapper
//! walks the records from there, [`record_walk`]), or the request is refused: whatever a consumer
//! gives back, the next one starts at an event and reads nothing twice. If it is short of
//! the reader page's `commit`, it keeps the page. If the writer is on the reader page (it was the
//! head when swapped out and the ring holds nothing else), it keeps the page and re-reads `commit`
//! later. Otherwise the consumed reader page R replaces the head page H in the ring:
//!
//! ```text
//!   before:   P --HEAD--> H ----> N          R (reader, consumed)
//!   prepare:  R.next = N | HEAD              (R is private until the CAS)
//!   CAS:      P.next : H|HEAD  ->  R         fails if the writer claimed H meanwhile: retry
//!   after:    P ----> R --HEAD--> N          H is the new reader page, R took H's slot
//! ```
//!
//! The writer's push CASes the same word `P.next`, so a swap and a push of the same head page
//! cannot both succeed. If H is the tail (the writer is still writing it), the writer keeps
//! writing into H, now the reader page; the consumer sees `commit` grow. When the writer leaves H
//! it follows `H.next = N`, the new head, without a flag: correct, since everything in the ring is
//! free at that point.
//!
//! Lost events are exact: every event handed to the writer gets a sequence number (dropped ones
//! too); each page records the sequence range it holds, and a swap reports
//! `first_seq(new reader) - end_seq(old reader)` as `reader.lost_events`.
//!
//! ## Non-consuming reads
//!
//! [`SharedView::copy_slot`] copies a ring page and validates the copy with the slot's
//! `data_index[].cnt`, which the writer uses as a seqlock when it moves onto the page (odd while
//! it resets the page, even once done), and with the `swaps` counter (a page only re-enters the
//! ring through a swap). A torn copy is discarded and reported; see [`snapshot`].
//!
//! ## Who writes what
//!
//! | memory | written by | read by |
//! |---|---|---|
//! | page bytes, `commit`, `timestamp` | writer | consumers (acquire on `commit`) |
//! | meta counters `overrun dropped pages_*`, `tail_slot`; `entries` when leaving a page or released | writer | anyone |
//! | meta `reader.*`, `read`, `swaps`, `swap_consumed_seq` | swapper | consumers (the last post-mortem) |
//! | meta `head_slot` | writer and swapper (atomic RMW) | snapshot readers |
//! | meta `data_index[].cnt` | writer (seqlock) | snapshot readers |
//! | meta `data_index[].id` | swapper | snapshot readers |
//! | links (`next`, sequence ranges) | writer; swapper via CAS | writer, swapper |
//!
//! Atomics come from one facade, `sync` (loom under `--cfg loom`); shared memory is only
//! touched through [`shm::ShmRegion`].

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", loom, test))]
extern crate std;

#[cfg(loom)]
extern crate alloc;

mod buffer;
pub mod clock;
pub mod clock_latch;
pub mod consume;
pub mod decode;
pub mod doorbell;
mod error;
pub mod format;
mod geometry;
pub mod link;
mod lost;
pub mod meta;
pub mod nest;
pub mod reader_page;
mod record_header;
pub mod record_walk;
mod reservation;
pub mod shm;
pub mod snapshot;
mod swap;
pub(crate) mod sync;
#[cfg(all(test, feature = "std", not(loom)))]
mod test_support;
mod view;
mod writer;
mod writer_handle;

pub use buffer::{Config, CpuBuffer, Stats};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub use clock::CycleClock;
#[cfg(feature = "std")]
pub use clock::MonotonicClock;
pub use clock::{Clock, ClockParams, CounterClock, ManualClock, TraceClock};
pub use consume::{ConsumeError, Cursor, DrainBound, Record};
pub use decode::{DecodeError, Event, EventIter, PageRecord, PageSource, ShmBytes, ShmPage};
pub use doorbell::{Arming, Doorbell, NoDoorbell};
pub use error::{GeometryError, SwapError, WriteError, WriterClaimed};
pub use geometry::{Geometry, Mode};
pub use link::SubBufLink;
pub use lost::Lost;
pub use reader_page::{MalformedPage, PageProgress, PageReader};
pub use record_walk::boundary_at_or_after;
pub use reservation::Reservation;
pub use shm::{ShmRegion, ShmSpan};
pub use snapshot::{ReaderCopy, SlotCopy, SlotRead, SnapshotError};
#[cfg(feature = "std")]
pub use snapshot::{Snapshot, SnapshotPage};
pub use swap::{ReaderUpdate, SwapStatus, check_read};
pub use view::{SharedView, ViewError};
pub use writer_handle::Writer;
