//! The subscriber's one step (`SubscribeStep`): what it remembers between receives, where a
//! message goes, and the checks it runs while it waits.

use std::time::Duration;

use super::layout::*;
use super::{options::*, segment::*};
use crate::format::error::Error;
use crate::format::memory::SharedMemory;
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::broadcast::{self as protocol, Attempt};
use crate::protocol::sync::Ordering;
use crate::wait::{Owner, Sleeper, Step};

/// What a subscriber remembers between receives besides its position.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Track {
    /// [`READ_ANY`] | [`RESYNCED`], in one byte so that the common case (read before, no
    /// resync since) is one compare on every receive.
    flags: u8,
    /// The upstream word last seen (reported once per change to odd).
    pub(super) upstream_seen: u32,
    /// The first message number as read before the first message (clamped to the tail
    /// then); fixed once anything was read, whatever the shared word says later.
    pub(super) base: u64,
}

/// A message or notice was read: the base can no longer move (a relay's `start_at`
/// comes before anything is published), so `look` stops loading it.
const READ_ANY: u8 = 1;
/// `next` was set by a resync (lossy lag): it may name a number a relay skipped, so an
/// empty slot there is checked against `tail`.
const RESYNCED: u8 = 2;

impl Track {
    /// A fresh subscriber's: nothing read, no resync, `upstream_seen` as given.
    pub(super) fn new(upstream_seen: u32) -> Track {
        Track {
            flags: 0,
            upstream_seen,
            base: 0,
        }
    }
    /// Whether a message or notice was read ([`READ_ANY`]).
    fn read_any(&self) -> bool {
        self.flags & READ_ANY != 0
    }
    /// Whether `next` was set by a resync since the last read ([`RESYNCED`]).
    fn resynced(&self) -> bool {
        self.flags & RESYNCED != 0
    }
    /// Read before, and no resync since: the base is fixed and `next` names a number
    /// that was published.
    #[inline(always)]
    fn steady(&self) -> bool {
        self.flags == READ_ANY
    }
    /// A message or notice was read.
    fn read(&mut self) {
        self.flags = READ_ANY;
    }
    /// `next` was set by a resync.
    fn resync(&mut self) {
        self.flags |= RESYNCED;
    }
}

/// Where a received message goes: a buffer that grows to fit, or a caller's slice that
/// the message must fit (else it is left where it is).
pub(super) enum Sink<'a> {
    Vec(&'a mut Vec<u8>),
    Slice { buf: &'a mut [u8], len: usize },
}

impl Sink<'_> {
    /// The same place, borrowed again (a future hands it to one step per poll).
    pub(super) fn reborrow(&mut self) -> Sink<'_> {
        match self {
            Sink::Vec(v) => Sink::Vec(v),
            Sink::Slice { buf, .. } => Sink::Slice { buf, len: 0 },
        }
    }

    /// The length of the message copied in.
    pub(super) fn len(&self) -> usize {
        match self {
            Sink::Vec(v) => v.len(),
            Sink::Slice { len, .. } => *len,
        }
    }
}

/// The subscriber's one step: the next message, copied into its sink.
pub(super) struct SubscribeStep<'a, M: SharedMemory> {
    pub(super) b: &'a Broadcast<M>,
    pub(super) line: Option<u32>,
    /// `line` in reliable mode, else `None` ([`Subscriber::member`]).
    pub(super) member: Option<u32>,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    pub(super) batch: u64,
    pub(super) next: &'a mut u64,
    pub(super) delivered: &'a mut u64,
    pub(super) published: &'a mut u64,
    pub(super) broken: &'a mut Option<Error>,
    pub(super) track: &'a mut Track,
    pub(super) sink: Sink<'a>,
    pub(super) at: &'a std::sync::atomic::AtomicU64,
}

impl<M: SharedMemory> Drop for SubscribeStep<'_, M> {
    fn drop(&mut self) {
        // Relaxed: a process-local copy for a wait set's look.
        self.at
            .store(*self.next, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<M: SharedMemory> SubscribeStep<'_, M> {
    /// Whether the publisher closed: the close word is set and the holder word is
    /// cleared (`Publisher::drop` sets the one, then clears the other). A close word
    /// alone, with a holder, is a scribble or a new publisher taking over: not a close.
    pub(super) fn closed(&self) -> bool {
        // Acquire: pairs with the Release store of 0 in `Publisher::drop`, which follows
        // its close store, so a cleared holder comes with a visible close and with every
        // message published before it.
        self.b.holder().load(Ordering::Acquire) == 0
            // Acquire: pairs with the Release store in `Publisher::drop`.
            && self.b.closed().load(Ordering::Acquire) != 0
    }

    /// Our line's state: `Err(Evicted)` once the publisher evicted us (or `Truncated`
    /// when the line reads as nonsense because the segment was truncated under us).
    pub(super) fn still_member(&mut self) -> Result<(), Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        let Some(i) = self.line else { return Ok(()) };
        if self.b.cfg.mode == BroadcastMode::Lossy {
            // Only a reliable publisher evicts; a lossy line is bookkeeping (counts and
            // sleepers), so a scribbled one changes nothing about receiving.
            return Ok(());
        }
        let m = self.b.member(i);
        // Acquire: pairs with the publisher's Release store in `evict`.
        let state = m.state.load(Ordering::Acquire);
        let pid = m.pid.load(Ordering::Relaxed);
        if state != ACTIVE || pid != self.owner.pid() {
            self.b.seg.intact()?;
            let e = Error::Evicted {
                reason: eviction_reason(state),
            };
            *self.broken = Some(e);
            return Err(e);
        }
        Ok(())
    }

    /// After a resync: whether message `p` was never written because a relay's notice
    /// moved the numbering past it (the publisher is beyond `p`, yet its slot holds an
    /// older message). Returns where to resume: the first later number whose slot holds
    /// it or a newer message, at most a ring on, else the tail.
    pub(super) fn skipped(&self, p: u64) -> Option<u64> {
        let b = self.b;
        // Acquire: pairs with the publisher's Release store of `tail`.
        let tail = b.control().tail.load(Ordering::Acquire);
        if tail <= p || tail > protocol::MAX_TAIL {
            return None;
        }
        // Acquire: had message `p` been written, its stamp store came before the tail
        // store just seen, so this load would see it.
        if b.slot(p).stamp.load(Ordering::Acquire) >= protocol::done_stamp(p) {
            return None;
        }
        let end = tail.min(p.saturating_add(b.cfg.slots));
        let mut q = p.saturating_add(1);
        // Acquire as above, per slot.
        while q < end && b.slot(q).stamp.load(Ordering::Acquire) < protocol::done_stamp(q) {
            q += 1;
        }
        Some(q)
    }

    /// The tail, if the slots agree with it: message `tail - 1` (or a later one) is
    /// complete in its slot and message `tail` is not. A tail word a peer scribbled (too
    /// high or too low) fails one of the two, so a reader never moves its own position
    /// on that word alone. `None` also while the publisher is mid-message; the caller
    /// asks again on a later round.
    pub(super) fn verified_tail(&self) -> Option<u64> {
        let b = self.b;
        // Acquire: pairs with the publisher's Release store of `tail`; the stamp stores
        // of every message below it came before.
        let tail = b.control().tail.load(Ordering::Acquire);
        if tail > protocol::MAX_TAIL {
            return None;
        }
        let before_done = tail == 0
            // Acquire: pairs with the Release stamp store in `end_write`.
            || b.slot(tail - 1).stamp.load(Ordering::Acquire) >= protocol::done_stamp(tail - 1);
        // Acquire as above.
        let at_not_done = b.slot(tail).stamp.load(Ordering::Acquire) < protocol::done_stamp(tail);
        (before_done && at_not_done).then_some(tail)
    }

    /// Lossy: a position ahead of the stream (moved there by a forged tail, stamp, gap
    /// notice or join) resyncs to the oldest message held below the verified tail, never
    /// below what was delivered (clamped to that tail: an honest subscriber never
    /// delivered past it), reported once as `Lagged`; then it receives again.
    pub(super) fn resync_if_ahead(&mut self) -> Result<(), Error> {
        if self.b.cfg.mode != BroadcastMode::Lossy {
            return Ok(());
        }
        // The common case costs one load: not ahead of the tail word as it reads. Only a
        // position past it is checked against the slots.
        // Acquire: pairs with the publisher's Release store of `tail`.
        if *self.next <= self.b.control().tail.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(tail) = self.verified_tail() else {
            return Ok(());
        };
        if *self.next <= tail {
            return Ok(());
        }
        // The floor is what was really delivered (one that delivered nothing yet, say a
        // subscriber that joined at a forged tail, has none).
        let floor = if self.track.read_any() {
            (*self.delivered).min(tail)
        } else {
            0
        };
        *self.next = protocol::oldest_readable(tail, self.b.cfg.slots).max(floor);
        *self.delivered = floor;
        self.track.resync();
        Err(Error::Lagged { missed: 0 })
    }

    /// Publishes our position (`next`) in our line, and wakes the publisher if it waits
    /// (reliable only: in lossy mode nobody reads positions).
    #[inline(always)]
    pub(super) fn publish_position(&mut self) {
        let Some(i) = self.line else { return };
        if self.b.cfg.mode == BroadcastMode::Lossy {
            return;
        }
        let ctl = self.b.control();
        if protocol::release(ctl, self.b.member(i).position, self.next.saturating_sub(1)) {
            wake_publisher(ctl);
        }
        *self.published = *self.next;
    }
}

impl<M: SharedMemory> Step for SubscribeStep<'_, M> {
    type Out = u64;

    /// [`look_here`](SubscribeStep::look_here) (inline), and the whole look (out of line)
    /// when that finds anything but a message read whole.
    #[inline(always)]
    fn look(&mut self) -> Result<Option<u64>, Error> {
        if let Some(p) = self.look_here() {
            return Ok(Some(p));
        }
        self.look_all()
    }
}

impl<M: SharedMemory> SubscribeStep<'_, M> {
    /// The common case of [`look_all`](Self::look_all), inline: no check fails (the end
    /// not broken, not a forked copy, still a member), no base or resync to apply (a
    /// message was read since the last resync), and message `next` is in its slot whole
    /// (both stamp loads saw it, a length within `max_message`, a sink it fits, the
    /// segment intact): it is copied and delivered, with the same bookkeeping as
    /// `look_all`'s. `None` for anything else, and `look_all` then runs every check
    /// (a copy made here into the sink is overwritten or, for an error, not reported).
    #[inline(always)]
    pub(super) fn look_here(&mut self) -> Option<u64> {
        if self.broken.is_some() || self.owner.forked() || !self.track.steady() {
            return None;
        }
        let b = self.b;
        if let Some(i) = self.member {
            let m = b.member(i);
            // Acquire: as in `still_member`.
            if m.state.load(Ordering::Acquire) != ACTIVE
                || m.pid.load(Ordering::Relaxed) != self.owner.pid()
            {
                return None;
            }
        }
        let p = *self.next;
        let (slot, entry) = b.slot_entry(p);
        // Acquire: pairs with the Release stamp store in `end_write` (as in `try_read`).
        let s1 = slot.stamp.load(Ordering::Acquire);
        if s1 != protocol::done_stamp(p) {
            return None;
        }
        // Acquire: pairs with the Release length store in `end_write`.
        let len = slot.len.load(Ordering::Acquire);
        if len > b.cfg.max_message {
            return None;
        }
        let out: &mut [u8] = match &mut self.sink {
            Sink::Vec(v) => {
                // A stream of equal lengths resizes nothing.
                if v.len() != len as usize {
                    v.resize(len as usize, 0);
                }
                v
            }
            Sink::Slice { buf, .. } if len > buf.len() as u64 => return None,
            Sink::Slice { buf, len: got } => {
                *got = len as usize;
                &mut buf[..len as usize]
            }
        };
        // `len <= max_message`, so the copy stays inside the slot's payload; Acquire as
        // the protocol requires.
        entry.load_payload(0, out, Ordering::Acquire);
        // Relaxed: the Acquire loads of the copy keep this load after them.
        if slot.stamp.load(Ordering::Relaxed) != s1 || b.seg.intact().is_err() {
            return None;
        }
        *self.next = p.saturating_add(1);
        *self.delivered = *self.next;
        // `publish_position` does nothing for a lossy or read-only end: not called.
        if self.member.is_some() && self.next.saturating_sub(*self.published) >= self.batch {
            self.publish_position();
        }
        Some(p)
    }

    /// The whole look: every check, and every outcome (a message, a notice, a lag, the
    /// end, corruption).
    #[inline(never)]
    fn look_all(&mut self) -> Result<Option<u64>, Error> {
        self.owner.check()?;
        // Read `closed` before looking: a close seen here came after every message
        // published before it.
        let closed = self.closed();
        self.still_member()?;
        let b = self.b;
        // A relay that started at its source's numbering: nothing below it exists. Only
        // before the first read (the base may still move) and after a resync (which may
        // land below it); not on every message.
        if !self.track.read_any() {
            // Acquire: pairs with the Release store of `tail` in `start_at`, which
            // follows its base store, so the base below is at least as new. An honest
            // base is never above the tail: a larger word is not taken.
            let tail = b.control().tail.load(Ordering::Acquire);
            let base = b.base();
            if base <= tail {
                self.track.base = base;
            }
        }
        if !self.track.steady() && *self.next < self.track.base {
            *self.next = self.track.base;
        }
        let p = *self.next;
        let slot_view = b.slot_view(p);
        let sink = &mut self.sink;
        let attempt = protocol::try_read(
            b.control(),
            b.slot(p),
            p,
            b.cfg.slots,
            b.cfg.max_message,
            |len| {
                let out: &mut [u8] = match sink {
                    Sink::Vec(v) => {
                        v.resize(len as usize, 0);
                        v
                    }
                    Sink::Slice { buf, .. } if len > buf.len() as u64 => return Err(len),
                    Sink::Slice { buf, len: got } => {
                        *got = len as usize;
                        &mut buf[..len as usize]
                    }
                };
                // `len <= max_message` (checked by `try_read`), so the copy stays inside the
                // slot's payload; Acquire as the protocol requires.
                slot_view.load_ordered(SLOT_HEADER as usize, out, Ordering::Acquire);
                Ok(())
            },
        );
        b.seg.intact()?;
        match attempt {
            Attempt::Got(Err(len)) => {
                // The caller's slice is too small: the message stays for the next call.
                let max = match &self.sink {
                    Sink::Slice { buf, .. } => buf.len() as u64,
                    Sink::Vec(_) => 0,
                };
                Err(Error::MessageTooLarge { len, max })
            }
            Attempt::Got(Ok(())) => {
                *self.next = p.saturating_add(1);
                *self.delivered = *self.next;
                self.track.read();
                if self.next.saturating_sub(*self.published) >= self.batch {
                    self.publish_position();
                }
                Ok(Some(p))
            }
            Attempt::Empty => self.empty(p, closed),
            Attempt::Lagged { resume } => {
                // Reliable: a member is never overwritten unless it was evicted.
                self.still_member()?;
                let missed = resume.saturating_sub(p);
                *self.next = resume.max(*self.delivered);
                self.track.resync();
                Err(Error::Lagged { missed })
            }
            Attempt::BadTail(tail) => {
                // Not sticky: the position did not move, and the publisher's next message
                // rewrites the word. A resync needs a tail the slots agree with.
                b.seg.intact()?;
                Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: tail,
                })
            }
            Attempt::Corrupt(len) => match protocol::Notice::decode(len) {
                Some(notice) => self.notice(p, notice, closed),
                None => {
                    // A length no honest publisher writes: this message is unreadable. It
                    // is reported and passed over, not sticky: a scribbled slot must not
                    // silence the subscriber for good.
                    *self.next = p.saturating_add(1);
                    *self.delivered = *self.next;
                    self.track.read();
                    Err(Error::Corrupt {
                        what: "a broadcast message length",
                        found: len,
                    })
                }
            },
        }
    }
}

impl<M: SharedMemory> SubscribeStep<'_, M> {
    /// Message `p` is not there yet: first the exact gap after a resync onto numbers a
    /// relay skipped, then (before waiting) the position, the close and the upstream word.
    pub(super) fn empty(&mut self, p: u64, closed: bool) -> Result<Option<u64>, Error> {
        if self.track.resynced() {
            if let Some(resume) = self.skipped(p) {
                // A resync landed on numbers a relay's gap notice covers (lost
                // upstream): they count as missed, exactly.
                *self.next = resume.max(*self.delivered);
                return Err(Error::Lagged {
                    missed: resume.saturating_sub(p),
                });
            }
        }
        // Before waiting: a publisher waiting for us must hear where we are.
        if *self.published != *self.next {
            self.publish_position();
        }
        if closed {
            return Err(Error::Closed);
        }
        // Acquire: pairs with the publisher's Release store in `set_upstream`.
        let up = self.b.upstream().load(Ordering::Acquire);
        if up != self.track.upstream_seen {
            self.track.upstream_seen = up;
            if up & 1 == 1 {
                return Err(Error::UpstreamLost);
            }
        }
        Ok(None)
    }

    /// A gap notice at `p`, read whole (both stamp loads agreed): numbers `p .. p + k`
    /// were lost upstream and the next message is `p + k`. The publisher stores the tail
    /// `p + k` after the notice, so a notice the tail does not cover yet is not taken
    /// (a forged one never is): the subscriber waits as for an empty slot, and an honest
    /// one is taken on a later look.
    pub(super) fn notice(
        &mut self,
        p: u64,
        notice: protocol::Notice,
        closed: bool,
    ) -> Result<Option<u64>, Error> {
        let k = notice.numbers();
        // Acquire: pairs with the publisher's Release store of `tail` after the notice.
        let tail = self.b.control().tail.load(Ordering::Acquire);
        match p.checked_add(k) {
            Some(end) if end <= tail && tail <= protocol::MAX_TAIL => {
                *self.next = end;
                *self.delivered = end;
                self.track.read();
                if self.next.saturating_sub(*self.published) >= self.batch {
                    self.publish_position();
                }
                Err(Error::Lagged { missed: k })
            }
            _ => self.empty(p, closed),
        }
    }
}

impl<M: SharedMemory> Sleeper for SubscribeStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.b.seg.intact()?;
        self.still_member()?;
        self.resync_if_ahead()?;
        if !peer {
            return Ok(());
        }
        // Acquire: pairs with the Release store of 0 in `Publisher::drop`, which follows
        // the close: a cleared holder comes with a visible close. Read afresh every
        // time: a publisher that appeared after the wait began, and died, is seen.
        let pid = self.b.holder().load(Ordering::Acquire);
        if self.closed() {
            return Ok(()); // `look` reports it once everything was read
        }
        if proc::liveness(pid) == Liveness::Dead {
            // A publisher that closed and then exited set its close before its process
            // ended, possibly after the look above: look again (a dead process's stores
            // are all visible now), so a clean close is never reported as a crash.
            if self.closed() {
                return Ok(()); // `look` reports it once everything was read
            }
            // Messages published before the crash are still delivered.
            // Acquire: pairs with the publisher's Release store of `tail`.
            if self.b.control().tail.load(Ordering::Acquire) > *self.next {
                return Ok(());
            }
            return Err(Error::PeerDied { pid });
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let b: &Broadcast<M> = self.b;
        let ctl = b.control();
        let p = *self.next;
        let holder = b.holder();
        // Relaxed: the watched words are only compared for change by the reactor.
        let pid = holder.load(Ordering::Relaxed);
        let stamp = b.slot(p).stamp;
        let park = match self.line {
            // Read-only: nothing to announce; a short poll sleep.
            // Acquire: pairs with the Release bump in `bump_data`.
            None => Park::futex(ctl.data_seq, ctl.data_seq.load(Ordering::Acquire))
                .limit(Duration::from_millis(1)),
            Some(i) => match protocol::prepare_sleep(ctl, p) {
                None => return Ok(None),
                Some(seq) => {
                    let state = b.member(i).state;
                    Park::futex(ctl.data_seq, seq).watch_u32(state, state.load(Ordering::Relaxed))
                }
            },
        };
        Ok(Some(
            park.watch_u64(stamp, stamp.load(Ordering::Relaxed))
                .watch_u32(holder, pid)
                .watch_u32(b.closed(), b.closed().load(Ordering::Relaxed))
                .watch_u32(b.upstream(), b.upstream().load(Ordering::Relaxed))
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        if self.line.is_some() {
            protocol::done_sleeping(self.b.control());
        }
    }
}
