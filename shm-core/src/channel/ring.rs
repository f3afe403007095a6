//! One ring's words and the checks both ends run on them.

use std::time::Duration;

use super::layout::*;
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::view::{Block, RingView, View, Word32};
use crate::os::proc::{self, Liveness};
use crate::protocol::ring::{self, Corrupt, Shared};
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

pub(super) fn corrupt(c: Corrupt) -> Error {
    match c {
        Corrupt::Head(v) => Error::Corrupt {
            what: "the receiver's position",
            found: v,
        },
        Corrupt::Tail(v) => Error::Corrupt {
            what: "the sender's position",
            found: v,
        },
        Corrupt::Length(v) => Error::Corrupt {
            what: "a message header",
            found: v,
        },
    }
}

/// One ring: its three 128-byte control lines and its data, as checked views, and the
/// control words every message touches, checked once when the ring was cut.
#[derive(Clone, Copy)]
pub(super) struct RingPtrs {
    ctl: View,
    /// `ctl` again, for the words every message touches: each reached from one base
    /// address at an offset fixed at compile time, with no check.
    block: Block<{ RING_CONTROL as usize }>,
    data: RingView,
    /// The receiver's futex word, as a handle for wait registrations.
    data_seq: Word32,
}

impl RingPtrs {
    /// Ring `ring` of a channel whose rings hold `cap` data bytes each, in `payload`
    /// (`None` if it does not fit, or `cap` is not a power of two: `attach` and `create`
    /// proved both).
    pub(super) fn of(payload: View, ring: u32, cap: u64) -> Option<RingPtrs> {
        let off = CHANNEL_HEADER
            .checked_add(u64::from(ring).checked_mul(RING_CONTROL.checked_add(cap)?)?)?;
        let off = usize::try_from(off).ok()?;
        let ctl = payload.sub(off, RING_CONTROL as usize)?;
        let data = RingView::new(payload.sub(
            off.checked_add(RING_CONTROL as usize)?,
            usize::try_from(cap).ok()?,
        )?)?;
        let data_seq = ctl.word32(2 * LINE as usize);
        let block = ctl.block()?;
        Some(RingPtrs {
            ctl,
            block,
            data,
            data_seq,
        })
    }
    #[inline]
    pub(super) fn u32_at(&self, off: u64) -> &AtomicU32 {
        self.ctl.u32_at(off as usize)
    }
    #[inline(always)]
    pub(super) fn shared(&self) -> Shared<'_> {
        const L: usize = LINE as usize;
        let b = &self.block;
        Shared {
            tail: b.u64_at::<0>(),
            head: b.u64_at::<L>(),
            data_seq: b.u32_at::<{ 2 * L }>(),
            space_seq: b.u32_at::<{ 2 * L + 4 }>(),
            consumer_sleeping: b.u32_at::<{ 2 * L + 8 }>(),
            producer_sleeping: b.u32_at::<{ 2 * L + 12 }>(),
            closed: b.u32_at::<{ 2 * L + 16 }>(),
        }
    }
    /// The futex word the receiver sleeps on, as a checked handle.
    pub(super) fn data_seq_word(&self) -> Word32 {
        self.data_seq
    }
    #[inline(always)]
    pub(super) fn producer_holder(&self) -> &AtomicU32 {
        self.block.u32_at::<8>()
    }
    #[inline(always)]
    pub(super) fn consumer_holder(&self) -> &AtomicU32 {
        self.block.u32_at::<{ LINE as usize + 8 }>()
    }
    /// The data word that holds the header of the message at position `pos`.
    #[inline(always)]
    pub(super) fn header_word(&self, pos: u64) -> &AtomicU64 {
        self.data.word_at_position(pos)
    }
    /// The ring's data bytes.
    #[inline]
    pub(super) fn data(&self) -> View {
        self.data.view()
    }
}

impl ring::Words for RingPtrs {
    #[inline(always)]
    fn load(&self, pos: u64, order: Ordering) -> u64 {
        self.header_word(pos).load(order)
    }
    #[inline(always)]
    fn store(&self, pos: u64, value: u64, order: Ordering) {
        self.header_word(pos).store(value, order)
    }
}

/// [`crate::os::futex`] as the ring protocol's [`ring::Futex`].
pub(super) struct SysFutex;

impl ring::Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::os::futex::wait(word, expected, timeout);
    }
    fn wake(&self, word: &AtomicU32) {
        crate::os::futex::wake(word);
    }
}

/// The end of a wait because the other end is gone: `Closed` if it closed, `PeerDied` if
/// the holder of its end is a dead process. Read in this order: the holder word is
/// cleared only after the close bit is set, so a cleared word comes with a visible close.
/// The holder is read afresh every time: a peer that claimed the end after the wait
/// began, and died, is seen.
pub(super) fn peer_gone(closed: &AtomicU32, closed_bit: u32, holder: &AtomicU32) -> Option<Error> {
    if closed_by(closed, closed_bit, holder) {
        return Some(Error::Closed);
    }
    // Acquire: pairs with the Release store of 0 in the other end's drop.
    let pid = holder.load(Ordering::Acquire);
    if proc::liveness(pid) == Liveness::Dead {
        // An end that closed and then exited sets its close bit (and clears its holder
        // word) before its process ends: it may have done both, and died, between the
        // look above and the liveness check. A dead process's stores are all visible
        // now, so a look again tells a clean close from a crash.
        if closed_by(closed, closed_bit, holder) {
            return Some(Error::Closed);
        }
        return Some(Error::PeerDied { pid });
    }
    None
}

/// Whether the other end closed: its close bit is set (Acquire: pairs with the Release
/// `fetch_or` in its drop) and, loaded only then, its holder word is cleared (Acquire:
/// pairs with the Release store of 0 that follows the bit). A bit alone, with a live
/// holder, is a scribble or a new end taking over: not a close.
#[inline]
pub(super) fn closed_by(closed: &AtomicU32, closed_bit: u32, holder: &AtomicU32) -> bool {
    closed.load(Ordering::Acquire) & closed_bit != 0 && holder.load(Ordering::Acquire) == 0
}

/// A corrupt ring breaks this end for good; other errors pass through. On a segment
/// truncated under us the zero pages read as nonsense: that is `Truncated`, not
/// `Corrupt`.
pub(super) fn poisoned<M: SharedMemory>(
    seg: &RawSegment<M>,
    broken: &mut Option<Error>,
    e: Error,
) -> Error {
    if let Err(t) = seg.intact() {
        return t;
    }
    if matches!(e, Error::Corrupt { .. }) {
        *broken = Some(e);
    }
    e
}

/// `OutOfBounds` unless `len` bytes at `offset` lie inside a message of `msg_len` bytes.
pub(super) fn in_message(offset: usize, len: usize, msg_len: u64) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end as u64 <= msg_len => Ok(()),
        _ => Err(Error::OutOfBounds {
            offset: offset as u64,
            len: len as u64,
            payload_len: msg_len,
        }),
    }
}
