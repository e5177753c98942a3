//! Reserve → fill → commit.

use crate::buffer::CpuBuffer;
use crate::clock::Clock;
use crate::doorbell::{Doorbell, NoDoorbell};
use crate::error::WriteError;
use crate::nest::LaneSpot;
use crate::sync::Ordering;
use crate::writer::RingSpot;

#[derive(Debug, Clone, Copy)]
enum Target {
    /// The outermost context: the event sits in the ring.
    Ring(RingSpot),
    /// A nested context: the event is staged in a lane.
    Lane(LaneSpot),
}

/// Room for one event, obtained from [`CpuBuffer::reserve`]. Fill it with
/// [`Reservation::write_at`], then [`Reservation::commit`]. Dropping it without committing
/// discards the event (nothing is recorded or counted).
///
/// Payload bytes not written are zero in the last word and unspecified before it.
///
/// An outermost reservation keeps this CPU's writing context open: `mem::forget`ting it instead
/// of committing or dropping it leaves every later write on the CPU nested (staged, then dropped
/// when the lanes fill) until [`CpuBuffer::reset`].
#[must_use = "a reservation records nothing until it is committed"]
pub struct Reservation<'b, 'a, C: Clock, D: Doorbell = NoDoorbell> {
    buf: &'b CpuBuffer<'a, C, D>,
    target: Target,
    len: usize,
    finished: bool,
}

impl<C: Clock, D: Doorbell> core::fmt::Debug for Reservation<'_, '_, C, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reservation").field("len", &self.len).field("target", &self.target).finish()
    }
}

impl<'a, C: Clock, D: Doorbell> CpuBuffer<'a, C, D> {
    /// Reserves room for an event of `len` payload bytes, stamped now.
    ///
    /// Reservations may nest (a signal handler reserving while the code it interrupted holds one):
    /// see [`crate::nest`]. Commit them innermost first. Ended in another order, nothing is lost
    /// uncounted, but a reservation that ends before one it encloses keeps its nesting level
    /// until that one ends: writes made meanwhile are staged, as nested ones, and a chain of
    /// reservations each ended after the next was made holds one more level per link, so past
    /// [`crate::nest::NEST_LEVELS`] links later ones are dropped (and counted) until the chain
    /// ends.
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_, 'a, C, D>, WriteError> {
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
                    Target::Ring(spot)
                }
                Err(e) => {
                    self.end_outer();
                    return Err(e);
                }
            }
        };
        Ok(Reservation { buf: self, target, len, finished: false })
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
