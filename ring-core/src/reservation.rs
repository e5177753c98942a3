//! Reserve → fill → commit.

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::doorbell::{Doorbell, NoDoorbell};
use crate::error::WriteError;
use crate::nest::LaneSpot;
use crate::sync::Ordering;
use crate::writer::RingSpot;
use core::marker::PhantomData;

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The outermost context: the event sits in the ring.
    Ring(RingSpot),
    /// A nested context: the event is staged in a lane.
    Lane(LaneSpot),
}

/// Room for one event, obtained from [`crate::Writer::reserve`]. Fill it with
/// [`Reservation::write_at`], then [`Reservation::commit`]. Dropping it without committing
/// discards the event (nothing is recorded or counted).
///
/// Payload bytes not written are zero in the last word and unspecified before it.
///
/// A reservation borrows its writer and stays on the thread that made it (it is neither `Send` nor
/// `Sync`; the writer may move between threads when no reservation of it is open). An outermost reservation keeps this CPU's writing context open:
/// `mem::forget`ting it instead of committing or dropping it leaves later writes through the same
/// writer nested (staged) until the writer is released, which closes the context, gives the
/// reserved room back, writes what was staged and counts it in [`crate::CpuBuffer::abandoned`].
#[must_use = "a reservation records nothing until it is committed"]
pub struct Reservation<'b, 'a, C: Clock, D: Doorbell = NoDoorbell> {
    buf: &'b CpuBuffer<'a, C, D>,
    target: Target,
    len: usize,
    finished: bool,
    /// Not `Send`, not `Sync`: the reservation belongs to its writer's thread.
    _writer_thread: PhantomData<*const ()>,
}

impl<C: Clock, D: Doorbell> core::fmt::Debug for Reservation<'_, '_, C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reservation").field("len", &self.len).field("target", &self.target).finish()
    }
}

impl<'a, C: Clock, D: Doorbell> CpuBuffer<'a, C, D> {
    /// Reserves room for an event of `len` payload bytes, stamped now: the body of
    /// [`crate::Writer::reserve`], which documents it. The caller is this CPU's writing context.
    pub(crate) fn reserve(&self, len: usize) -> Result<Reservation<'_, 'a, C, D>, WriteError> {
        let layout = self.layout_for(len)?;
        let depth = self.enter()?;
        let target = if depth != 0 {
            Target::Lane(self.nested_reserve(depth, layout, len)?)
        } else {
            let ts = self.clock.now();
            match self.ring_reserve(ts, layout) {
                Ok(spot) => {
                    // Zero the last payload word so padding bytes are deterministic. Ordering:
                    // Relaxed; published by the Release store of `commit` at commit time.
                    let last = spot.payload_at + spot.stored_len as usize - 4;
                    self.data.store_u32(last, 0, Ordering::Relaxed);
                    self.note_open_outer(&spot);
                    Target::Ring(spot)
                }
                Err(e) => {
                    self.end_outer();
                    return Err(e);
                }
            }
        };
        Ok(Reservation { buf: self, target, len, finished: false, _writer_thread: PhantomData })
    }

    /// Records the open outermost reservation `spot`, so that a writer released with it still
    /// open can give its room back ([`CpuBuffer::close_abandoned_context`]).
    fn note_open_outer(&self, spot: &RingSpot) {
        // Ordering: Relaxed; writer-owned state, read only by this CPU's writing contexts.
        self.writer_state.open_undo_off.store(spot.undo_off, Ordering::Relaxed);
        self.writer_state.open_undo_ts.store(spot.undo_ts, Ordering::Relaxed);
        self.writer_state.open_outer.store(true, Ordering::Relaxed);
    }

    /// The open outermost reservation was committed or discarded.
    fn note_outer_closed(&self) {
        // Ordering: Relaxed; see `note_open_outer`.
        self.writer_state.open_outer.store(false, Ordering::Relaxed);
    }

    /// Closes a writing context its writer left open (the depth is not 0 with no write under
    /// way: a reservation was forgotten), so that writing can go on: the open outermost
    /// reservation, if any, gives its room back, reservations nested in it that were never
    /// committed vanish (they were only staged), and what nested writers committed is written
    /// to the ring. Counted in [`crate::CpuBuffer::abandoned`]. Returns whether there was one.
    pub(crate) fn close_abandoned_context(&self) -> bool {
        let state = &self.writer_state;
        // Ordering: Relaxed throughout; writer-owned state, and the caller is the writing context.
        if state.depth.load(Ordering::Relaxed) == 0 {
            return false;
        }
        if state.open_outer.load(Ordering::Relaxed) {
            let undo_off = state.open_undo_off.load(Ordering::Relaxed);
            let undo_ts = state.open_undo_ts.load(Ordering::Relaxed);
            self.ring_discard_to(undo_off, undo_ts);
            self.note_outer_closed();
        }
        state.ended_early.store(0, Ordering::Relaxed);
        state.abandoned.store(state.abandoned.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.end_outer();
        true
    }
}

impl<C: Clock, D: Doorbell> Reservation<'_, '_, C, D> {
    /// Payload bytes reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length reservation.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at `offset` into the payload.
    pub fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), WriteError> {
        let end = offset.checked_add(bytes.len());
        if end.is_none_or(|end| end > self.len) {
            return Err(WriteError::OutOfBounds { offset, len: bytes.len(), size: self.len });
        }
        match self.target {
            Target::Ring(spot) => {
                if offset.is_multiple_of(4) {
                    let whole = bytes.len() & !3;
                    self.buf.data.store_bytes(spot.payload_at + offset, &bytes[..whole]);
                    self.buf.data.store_bytes_unaligned(spot.payload_at + offset + whole, &bytes[whole..]);
                } else {
                    self.buf.data.store_bytes_unaligned(spot.payload_at + offset, bytes);
                }
            }
            Target::Lane(spot) => self.buf.lanes.lane(spot.level).store_payload(spot.pos, offset, bytes),
        }
        Ok(())
    }

    /// Publishes the event.
    pub fn commit(mut self) {
        self.finished = true;
        match self.target {
            Target::Ring(spot) => {
                self.buf.ring_commit(&spot);
                self.buf.note_outer_closed();
                self.buf.end_reservation(0);
            }
            Target::Lane(spot) => {
                self.buf.nested_publish(&spot);
                self.buf.end_reservation(spot.depth);
            }
        }
    }

    /// Gives the room back without recording anything.
    pub fn discard(mut self) {
        self.finish_discard();
    }

    fn finish_discard(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match self.target {
            Target::Ring(spot) => {
                self.buf.ring_discard(&spot);
                self.buf.note_outer_closed();
                self.buf.end_reservation(0);
            }
            Target::Lane(spot) => self.buf.end_reservation(spot.depth),
        }
    }
}

impl<C: Clock, D: Doorbell> Drop for Reservation<'_, '_, C, D> {
    fn drop(&mut self) {
        self.finish_discard();
    }
}
