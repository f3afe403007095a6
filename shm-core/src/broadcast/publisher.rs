//! The publishing end: [`Publisher`], its step, its future.

use std::time::{Duration, Instant};

use super::layout::*;
use super::{options::*, segment::*};
use crate::format::error::{Error, SendError, SendTimeoutError, TrySendError};
use crate::format::memory::SharedMemory;
use crate::format::record::Record;
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::broadcast::{self as protocol};
use crate::protocol::sync::Ordering;
use crate::wait::{self, Owner, Parked, Sleeper, Step, WaitMode};

impl<M: SharedMemory> Broadcast<M> {
    /// The publishing end. One per broadcast at a time, across processes and within one
    /// (like a channel's ends: [`Error::RoleTaken`] while a live process holds it).
    ///
    /// A new publisher may take over from one that closed or died: it goes on from the
    /// message count the last one reached, and subscribers that did not stop at
    /// [`Error::Closed`] receive its messages (see [`Subscriber::recv_into`](crate::broadcast::Subscriber::recv_into)).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::RoleTaken`],
    /// [`Error::Corrupt`] for an impossible message count.
    pub fn publisher(&self) -> Result<Publisher<M>, Error> {
        self.seg.check_writable("publishing")?;
        let me = proc::current_pid();
        let holder = self.holder();
        if let Err(pid) = proc::claim_role(holder, me, 64) {
            return Err(Error::RoleTaken {
                role: "publishing",
                ring: 0,
                pid,
            });
        }
        // Acquire: pairs with the previous publisher's Release stores of `tail`.
        let next = self.control().tail.load(Ordering::Acquire);
        if next > protocol::MAX_TAIL {
            // Let the role go again: we never published.
            holder.store(0, Ordering::Release);
            return Err(Error::Corrupt {
                what: "the broadcast's message count (tail)",
                found: next,
            });
        }
        // Release: pairs with the subscribers' Acquire loads of `closed`.
        self.closed().store(0, Ordering::Release);
        // Subscribers parked before we existed watch the holder word; wake them at once.
        wake_subscribers(self.control());
        let n = self.cfg.max_subscribers as usize;
        Ok(Publisher {
            b: self.clone(),
            next,
            // An honest base is never above the tail (`start_at` stores it first).
            base: self.base().min(next),
            owner: Owner::current(),
            wait: WaitMode::default(),
            parked: Parked::default(),
            waiting_since: None,
            detached: None,
            scan: Scan {
                members_seen: self.control().members.load(Ordering::SeqCst),
                min_position: 0,
                evicted: vec![0; n],
                evicted_members: vec![0; n],
                verified: vec![0; n],
            },
        })
    }
}

/// The publisher's private view of the subscribers (reliable mode).
/// A publish refused because a detached reservation (`reserve_detached`) is outstanding.
pub(super) fn detached_outstanding() -> Error {
    Error::InvalidOption {
        option: "publish while a detached reservation is outstanding",
        found: 1,
        expected: "commit or abandon the detached reservation first",
    }
}

pub(super) struct Scan {
    pub(super) members_seen: u32,
    /// The lowest position among active subscribers at the last scan (u64::MAX: none).
    /// Positions only grow and leaving only raises it, so it stays a safe bound until
    /// someone joins (`members` changes).
    pub(super) min_position: u64,
    /// Per line, the pid we evicted there (0: none). The line is ignored until a live
    /// process takes it: a pid word that a hostile peer keeps rewriting (`pid = k++`) does
    /// not make the line count again.
    pub(super) evicted: Vec<u32>,
    /// Per line, the `members` count when we evicted there: a join since (the same
    /// process joining again takes the same pid) makes the line count again.
    pub(super) evicted_members: Vec<u32>,
    /// Per line, a pid seen alive after an eviction there (so it is checked only once).
    pub(super) verified: Vec<u32>,
}

impl Scan {
    /// Whether line `i`, now held by `pid`, counts: not evicted, or taken since by a
    /// process that is really alive.
    pub(super) fn counts(&mut self, i: usize, pid: u32) -> bool {
        let evicted = self.evicted[i];
        if evicted == 0 {
            return true;
        }
        if evicted == pid {
            if self.members_seen == self.evicted_members[i] {
                return false;
            }
            // Someone joined since: the same process (same pid) may have taken the line
            // again. It counts; if it is the evicted one rewriting its state, it is
            // evicted again, each time after a join at most.
            self.evicted[i] = 0;
            return true;
        }
        if self.verified[i] == pid {
            return true;
        }
        if proc::liveness(pid) == Liveness::Alive {
            self.verified[i] = pid;
            self.evicted[i] = 0;
            return true;
        }
        false
    }
}

/// The publishing end of a broadcast.
///
/// Every way of publishing (`try_publish`, `publish`, `publish_timeout`, `publish_async`
/// and the `_pod` forms over them) runs the same step (`PublishStep`).
pub struct Publisher<M: SharedMemory> {
    pub(super) b: Broadcast<M>,
    pub(super) next: u64,
    /// The first message number (the base word as this publisher found or set it): a
    /// later change of the shared word is a peer's scribble, not ours to trust.
    pub(super) base: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    pub(super) wait: WaitMode,
    pub(super) scan: Scan,
    pub(super) parked: Parked,
    /// Since when the publisher has been waiting for room for message `next` (reliable):
    /// the eviction clock. Cleared once the message is written.
    pub(super) waiting_since: Option<Instant>,
    /// The number of the message a detached reservation holds open, if any (see
    /// `reserve_detached`): nothing else is published meanwhile.
    pub(super) detached: Option<u64>,
}

/// The publisher's one step: room for message `next` (reliable), or nothing to wait for
/// (lossy).
pub(super) struct PublishStep<'a, M: SharedMemory> {
    pub(super) b: &'a Broadcast<M>,
    pub(super) next: u64,
    pub(super) base: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    pub(super) scan: &'a mut Scan,
    pub(super) since: &'a mut Option<Instant>,
}

impl<M: SharedMemory> PublishStep<'_, M> {
    /// Whether message `next` may be written: its slot's previous message was read by
    /// every active subscriber. Rescans the subscriber lines when someone joined or when
    /// the cached minimum is not enough.
    #[inline(always)]
    pub(super) fn room(&mut self) -> bool {
        let n = self.next;
        let slots = self.b.cfg.slots;
        let changed = protocol::members_changed(self.b.control(), &mut self.scan.members_seen);
        if n < slots {
            // The slot was never used: nothing to destroy. (A joiner's first message
            // is at least the tail it saw, so it never needs an earlier one.)
            return true;
        }
        let need = n + 1 - slots;
        if !changed && self.scan.min_position >= need {
            return true;
        }
        self.rescan();
        self.scan.min_position >= need
    }

    /// Reads every subscriber line; evicts those whose position is impossible.
    ///
    /// Its cost is one look at each of `max_subscribers` lines. A co-subscriber that keeps
    /// bumping `members` makes it run before every message: that slows the publisher (a
    /// scan per message) but cannot stop it.
    #[inline(never)]
    pub(super) fn rescan(&mut self) {
        let n = self.next;
        let base = self.base;
        let mut min = u64::MAX;
        for i in 0..self.b.cfg.max_subscribers {
            let m = self.b.member(i);
            // Acquire: pairs with the subscriber's Release stores (claim, state).
            let pid = m.pid.load(Ordering::Acquire);
            if pid == 0 {
                // A free line: whoever takes it next is a new subscriber.
                self.scan.evicted[i as usize] = 0;
                continue;
            }
            // Acquire: pairs with the subscriber's Release store of its state.
            if m.state.load(Ordering::Acquire) != ACTIVE || !self.scan.counts(i as usize, pid) {
                continue;
            }
            // Acquire: pairs with the subscriber's Release store of its position.
            let pos = m.position.load(Ordering::Acquire);
            if pos > n {
                // Ahead of what was published: no honest subscriber writes that.
                self.evict(i, pid, EVICTED_CORRUPT);
                continue;
            }
            // One that joined before a relay's `start_at` needs nothing below the base
            // (it moves there at its next look).
            min = min.min(pos.max(base));
        }
        self.scan.min_position = min;
    }

    /// Evicts the subscriber on line `i` (held by `pid`) and wakes it to tell it so.
    pub(super) fn evict(&mut self, i: u32, pid: u32, why: u32) {
        // Release: pairs with the subscriber's Acquire load of its state.
        self.b.member(i).state.store(why, Ordering::Release);
        self.scan.evicted[i as usize] = pid;
        self.scan.evicted_members[i as usize] = self.scan.members_seen;
        self.scan.verified[i as usize] = 0;
        wake_subscribers(self.b.control());
    }

    /// Whether the wait for message `next` has lasted the eviction timeout.
    pub(super) fn overdue(&mut self) -> bool {
        self.since.get_or_insert_with(Instant::now).elapsed() >= self.b.cfg.evict_timeout
    }

    /// Evicts the subscribers that hold the slot back and are dead (`peer`), or all of
    /// them once the wait is overdue.
    pub(super) fn evict_blockers(&mut self, peer: bool) {
        let Some(need) = (self.next + 1).checked_sub(self.b.cfg.slots) else {
            return;
        };
        let overdue = self.overdue();
        if !peer && !overdue {
            return;
        }
        for i in 0..self.b.cfg.max_subscribers {
            let m = self.b.member(i);
            // Acquire as in `rescan`.
            let pid = m.pid.load(Ordering::Acquire);
            if pid == 0 || self.scan.evicted[i as usize] == pid {
                continue;
            }
            if m.state.load(Ordering::Acquire) != ACTIVE
                || m.position.load(Ordering::Acquire) >= need
            {
                continue;
            }
            if overdue {
                let why = if proc::liveness(pid) == Liveness::Dead {
                    EVICTED_DEAD
                } else {
                    EVICTED_BEHIND
                };
                self.evict(i, pid, why);
            } else if proc::liveness(pid) == Liveness::Dead {
                self.evict(i, pid, EVICTED_DEAD);
            }
        }
    }
}

impl<M: SharedMemory> Step for PublishStep<'_, M> {
    type Out = ();

    #[inline(always)]
    fn look(&mut self) -> Result<Option<()>, Error> {
        self.owner.check()?;
        if self.b.cfg.mode == BroadcastMode::Lossy || self.room() {
            return Ok(Some(()));
        }
        if self.since.is_some() && self.overdue() {
            // The eviction timeout has passed since this message began to wait: every
            // subscriber still holding it back is evicted, and the message goes out
            // whatever the lines say now. However they churn, a publish waits at most
            // about the eviction timeout.
            self.evict_blockers(false);
            return Ok(Some(()));
        }
        Ok(None)
    }
}

impl<M: SharedMemory> Sleeper for PublishStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.b.seg.intact()?;
        self.evict_blockers(peer);
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let b: &Broadcast<M> = self.b;
        let ctl = b.control();
        // `room` reads the positions after the flag store and the fence (in the protocol
        // function), against each subscriber's position store, fence, flag load.
        let Some(seq) = protocol::publisher_prepare_sleep(ctl, || self.room()) else {
            return Ok(None);
        };
        // Never longer than what is left of the eviction timeout: the check must run.
        let since = self.since.get_or_insert_with(Instant::now);
        let left = b
            .cfg
            .evict_timeout
            .saturating_sub(since.elapsed())
            .max(Duration::from_micros(100));
        Ok(Some(
            Park::futex(ctl.space_seq, seq)
                .watch_u32(ctl.members, ctl.members.load(Ordering::Relaxed))
                .limit(left)
                // The condition is spread over every line, and the eviction clock runs.
                .periodic(),
        ))
    }

    fn done(&mut self) {
        protocol::publisher_done_sleeping(self.b.control());
    }
}

impl<M: SharedMemory> Publisher<M> {
    /// How this end waits (reliable mode).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The number the next message will get.
    pub fn next_message(&self) -> u64 {
        self.next
    }

    #[inline]
    pub(super) fn step(&mut self) -> (PublishStep<'_, M>, &mut Parked) {
        (
            PublishStep {
                b: &self.b,
                next: self.next,
                base: self.base,
                owner: self.owner,
                scan: &mut self.scan,
                since: &mut self.waiting_since,
            },
            &mut self.parked,
        )
    }

    /// Publishes a copy of `bytes`. Reliable: waits for room, evicting subscribers that
    /// are dead, corrupt, or stuck past the eviction timeout, so it returns within about
    /// that timeout however the subscriber lines churn. Lossy: never waits.
    ///
    /// # Errors
    /// [`SendError::MessageTooLarge`]; `Failed` with [`Error::Truncated`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Broadcast, BroadcastOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = BroadcastOptions::new().slots(8).max_message(64);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let b = Broadcast::create(mem, &opts)?;
    /// let (mut publisher, mut sub) = (b.publisher()?, b.subscriber()?);
    /// publisher.publish(b"tick")?;
    /// let mut buf = Vec::new();
    /// assert_eq!(sub.recv_into(&mut buf)?, 4);
    /// assert_eq!((buf.as_slice(), sub.last_number()), (&b"tick"[..], Some(0)));
    /// # Ok(()) }
    /// ```
    pub fn publish(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.publish_impl(bytes, None).map_err(Into::into)
    }

    /// [`publish`](Self::publish), waiting at most `timeout` for room (reliable mode).
    ///
    /// # Errors
    /// As [`publish`](Self::publish), and [`SendTimeoutError::Timeout`].
    pub fn publish_timeout(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.publish_impl(bytes, Some(timeout)).map_err(Into::into)
    }

    /// Publishes if there is room now (always, in lossy mode).
    ///
    /// # Errors
    /// [`TrySendError::Full`] when there is no room now, and as
    /// [`publish`](Self::publish).
    #[inline]
    pub fn try_publish(&mut self, bytes: &[u8]) -> Result<(), TrySendError> {
        self.try_publish_impl(bytes).map_err(Into::into)
    }

    #[inline(always)]
    fn try_publish_impl(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.check(bytes.len())?;
        if self.room_known() {
            return self.write(bytes);
        }
        self.try_publish_step(bytes)
    }

    #[inline(never)]
    fn try_publish_step(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let (mut step, parked) = self.step();
        wait::try_once(&mut step, parked, Error::Full)?;
        self.write(bytes)
    }

    /// Publishes a record of the broadcast's type ([`publish`](Self::publish) of its
    /// bytes).
    ///
    /// # Errors
    /// `Failed` with [`Error::SchemaMismatch`] for another type, and as
    /// [`publish`](Self::publish).
    pub fn publish_record<T: Record>(&mut self, value: &T) -> Result<(), SendError> {
        self.b.check_schema::<T>()?;
        self.publish(bytemuck::bytes_of(value))
    }

    /// [`publish_record`](Self::publish_record) if there is room now.
    ///
    /// # Errors
    /// As [`try_publish`](Self::try_publish), and `Failed` with
    /// [`Error::SchemaMismatch`].
    pub fn try_publish_record<T: Record>(&mut self, value: &T) -> Result<(), TrySendError> {
        self.b.check_schema::<T>()?;
        self.try_publish(bytemuck::bytes_of(value))
    }

    /// [`publish_record`](Self::publish_record), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`publish_timeout`](Self::publish_timeout), and `Failed` with
    /// [`Error::SchemaMismatch`].
    pub fn publish_record_timeout<T: Record>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.b.check_schema::<T>()?;
        self.publish_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// Waits until at least `n` subscribers hold a line (read-only subscribers hold none
    /// and are not counted), at most `timeout`; returns the count seen.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Truncated`].
    pub fn wait_for_subscribers(&self, n: u32, timeout: Duration) -> Result<u32, Error> {
        wait::poll_until(timeout, || {
            if let Err(e) = self.b.seg.intact() {
                return Some(Err(e));
            }
            let c = self.b.subscriber_count();
            (c >= n).then_some(Ok(c))
        })?
    }

    /// Every publish's common case, inline, with no side effect: the step's look would
    /// say "room" at once (not a forked copy; lossy, or reliable with no join since the
    /// last scan and the slot's last message read by every member as far as that scan
    /// saw). `false` sends the publish through the step, which looks again in full.
    #[inline(always)]
    pub(super) fn room_known(&self) -> bool {
        if self.owner.forked() {
            return false;
        }
        if self.b.cfg.mode == BroadcastMode::Lossy {
            return true;
        }
        let n = self.next;
        // Acquire: as in `protocol::members_changed`, which the step's look runs (and
        // which alone moves `members_seen` on, so a join seen here is rescanned there).
        self.b.control().members.load(Ordering::Acquire) == self.scan.members_seen
            && (n < self.b.cfg.slots || self.scan.min_position > n - self.b.cfg.slots)
    }

    #[inline(always)]
    pub(super) fn check(&self, len: usize) -> Result<(), Error> {
        self.numbers_left(1)?;
        let len = len as u64;
        if len > self.b.cfg.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.b.cfg.max_message,
            });
        }
        Ok(())
    }

    /// Refuses to number past [`protocol::MAX_TAIL`]: `numbers` more must still fit.
    #[inline(always)]
    pub(super) fn numbers_left(&self, numbers: u64) -> Result<(), Error> {
        if self.detached.is_some() {
            return Err(detached_outstanding());
        }
        match self.next.checked_add(numbers) {
            Some(end) if end <= protocol::MAX_TAIL => Ok(()),
            _ => Err(Error::InvalidOption {
                option: "broadcast message number",
                found: self.next.saturating_add(numbers),
                expected: "at most 2^62 message numbers in a broadcast's life",
            }),
        }
    }

    pub(super) fn publish_impl(
        &mut self,
        bytes: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        self.check(bytes.len())?;
        if self.room_known() {
            return self.write(bytes);
        }
        self.publish_step(bytes, timeout)
    }

    #[inline(never)]
    fn publish_step(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), Error> {
        let pace = self.wait.pace_shared();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, timeout)?;
        self.write(bytes)
    }

    /// Writes message `next` and publishes it (room was found).
    #[inline(always)]
    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.write_len(bytes, bytes.len() as u64, 1)
    }

    /// Writes `bytes` as message `next` with slot length `len` (the byte count, or a
    /// notice with no bytes) and publishes it; the next message is `numbers` on.
    #[inline(always)]
    pub(super) fn write_len(&mut self, bytes: &[u8], len: u64, numbers: u64) -> Result<(), Error> {
        let n = self.next;
        let b = &self.b;
        let (slot, entry) = b.slot_entry(n);
        protocol::begin_write(slot, n);
        // The slot's payload holds max_message >= bytes.len() bytes (checked), and the
        // mapping is writable (the write gate in `publisher`); Release as the protocol
        // requires.
        entry.store_payload(0, bytes, Ordering::Release);
        let next = n.saturating_add(numbers.max(1));
        if protocol::end_write(b.control(), slot, n, len, next) {
            wake_subscribers(b.control());
        }
        self.next = next;
        self.waiting_since = None;
        b.seg.intact()
    }

    /// Publishes a copy of `bytes` without blocking the thread. It runs the same step as
    /// [`publish`](Self::publish): reliable mode waits for room (evicting the dead, the
    /// corrupt and the overdue), spinning, then parking with the
    /// [`reactor`](crate::os::reactor), which looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE); lossy mode completes at once.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    ///
    /// # Cancel safety
    /// Cancellation safe: nothing is written until room is found, and then the write
    /// completes in the same poll; dropping the future while it waits publishes nothing.
    pub fn publish_async<'a>(&'a mut self, bytes: &'a [u8]) -> PublishFuture<'a, M> {
        PublishFuture {
            publisher: self,
            bytes,
            done: false,
            refused: None,
        }
    }

    /// [`publish_record`](Self::publish_record) without blocking the thread.
    ///
    /// # Errors
    /// As [`publish_record`](Self::publish_record).
    ///
    /// # Cancel safety
    /// As [`publish_async`](Self::publish_async).
    pub fn publish_record_async<'a, T: Record>(&'a mut self, value: &'a T) -> PublishFuture<'a, M> {
        let refused = self.b.check_schema::<T>().err();
        PublishFuture {
            publisher: self,
            bytes: bytemuck::bytes_of(value),
            done: false,
            refused,
        }
    }

    pub(super) fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step();
        parked.release(&mut step);
    }
}

impl<M: SharedMemory> Drop for Publisher<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // A forked child's copy: the role, the close word and the reactor are the
            // parent's; dropping the copy changes nothing shared.
            return;
        }
        self.unpark();
        let ctl = self.b.control();
        // Release: pairs with the subscribers' Acquire loads of `closed`; every message
        // published before is visible before the close is.
        self.b.closed().store(1, Ordering::Release);
        wake_subscribers(ctl);
        // Release: pairs with the Acquire holder loads of the next publisher and of
        // subscribers telling a close from a death.
        self.b.holder().store(0, Ordering::Release);
    }
}

/// The future of [`Publisher::publish_async`].
pub struct PublishFuture<'a, M: SharedMemory> {
    pub(super) publisher: &'a mut Publisher<M>,
    pub(super) bytes: &'a [u8],
    pub(super) done: bool,
    /// An error found before the first poll (a record of another type).
    pub(super) refused: Option<Error>,
}

impl<M: SharedMemory> std::future::Future for PublishFuture<'_, M> {
    type Output = Result<(), SendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(SendError::Closed));
        }
        if let Some(e) = this.refused.take() {
            this.done = true;
            return Poll::Ready(Err(e.into()));
        }
        if let Err(e) = this.publisher.check(this.bytes.len()) {
            this.done = true;
            return Poll::Ready(Err(e.into()));
        }
        let spin = this.publisher.wait.async_spin();
        let (mut step, parked) = this.publisher.step();
        match wait::poll_step(&mut step, parked, spin, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.done = true;
                let r = r.and_then(|()| this.publisher.write(this.bytes));
                Poll::Ready(r.map_err(Into::into))
            }
        }
    }
}

impl<M: SharedMemory> Drop for PublishFuture<'_, M> {
    fn drop(&mut self) {
        self.publisher.unpark();
    }
}

impl<M: SharedMemory> std::fmt::Debug for Publisher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("next", &self.next)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for PublishFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishFuture")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}
