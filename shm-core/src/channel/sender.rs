//! The sending end of a ring: [`Sender`], its slots and its future.

use std::time::Duration;

use super::{ring::*, segment::*};
use crate::format::error::{Error, SendError, SendTimeoutError, TrySendError};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::os::park::Park;
use crate::protocol::ring::{self, Producer, CONSUMER_CLOSED, PRODUCER_CLOSED};
use crate::protocol::sync::Ordering;
use crate::wait::WaitMode;
use crate::wait::{self, Owner, Parked, Sleeper, Step};

impl<M: SharedMemory> Channel<M> {
    /// The sending end of `ring` (0: creator → attacher by convention).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::NoSuchRing`],
    /// [`Error::RoleTaken`] while a live process (this one included) holds the end,
    /// [`Error::Corrupt`] if the ring's positions are impossible.
    pub fn sender(&self, ring: u32) -> Result<Sender<M>, Error> {
        let ptrs = self.claim(ring, 0, PRODUCER_CLOSED, "sending")?;
        let prod = Producer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Sender {
            chan: self.clone(),
            ptrs,
            prod,
            wait: WaitMode::default(),
            broken: None,
            parked: Parked::default(),
            owner: Owner::current(),
            detached: None,
            next_detached: 0,
        })
    }
}

// The sender

/// The sending end of a ring.
///
/// Every way of sending (`try_reserve`, `reserve`, `reserve_timeout`, `reserve_async` and
/// the `send` forms over them) runs the same step (`SendStep`): one code path, the same
/// checks.
pub struct Sender<M: SharedMemory> {
    pub(super) chan: Channel<M>,
    pub(super) ptrs: RingPtrs,
    pub(super) prod: Producer,
    pub(super) wait: WaitMode,
    pub(super) broken: Option<Error>,
    pub(super) parked: Parked,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    /// The id of the detached slot outstanding, if any (see `reserve_detached`).
    pub(super) detached: Option<u64>,
    pub(super) next_detached: u64,
}

/// A slot reserved by [`Sender::reserve_detached`] and not yet committed: for bindings
/// (the Python package) that cannot hold a [`SendSlot`]'s borrow across calls. Write it
/// through [`Sender::detached_ptr`], publish it with [`Sender::commit_detached`], or give
/// it up with [`Sender::abandon_detached`]. While one is outstanding the sender reserves
/// nothing else.
#[derive(Debug)]
pub struct DetachedSlot {
    pub(super) off: u64,
    pub(super) len: u64,
    pub(super) id: u64,
}

impl DetachedSlot {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(super) fn detached_outstanding() -> Error {
    Error::InvalidOption {
        option: "reserve while a detached slot is outstanding",
        found: 1,
        expected: "commit or abandon the detached slot first",
    }
}

/// The sender's one step: room for a `len`-byte message.
pub(super) struct SendStep<'a, M: SharedMemory> {
    pub(super) seg: &'a RawSegment<M>,
    pub(super) ptrs: &'a RingPtrs,
    pub(super) prod: &'a mut Producer,
    pub(super) broken: &'a mut Option<Error>,
    pub(super) len: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
}

impl<M: SharedMemory> Step for SendStep<'_, M> {
    type Out = u64;

    #[inline]
    fn look(&mut self) -> Result<Option<u64>, Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        self.owner.check()?;
        // The receiver's close is looked at when the operation starts (`Sender::start`)
        // and by every wait round's `check`, not on every spin: its line is written by
        // sleeping ends, and a reserve that finds room finds it whatever the receiver did.
        let sh = self.ptrs.shared();
        match self.prod.try_reserve(sh, self.ptrs, &SysFutex, self.len) {
            Ok(r) => Ok(r),
            Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
        }
    }
}

impl<M: SharedMemory> Sleeper for SendStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        let sh = self.ptrs.shared();
        if closed_by(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
            return Err(Error::Closed);
        }
        if peer {
            if let Some(e) = peer_gone(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let ptrs: &RingPtrs = self.ptrs;
        let sh = ptrs.shared();
        let seq = match self.prod.prepare_sleep(sh, self.len) {
            Ok(Some(seq)) => seq,
            Ok(None) => return Ok(None),
            Err(c) => return Err(poisoned(self.seg, self.broken, corrupt(c))),
        };
        // Relaxed: only compared for change by a parked future's reactor.
        let holder = ptrs.consumer_holder();
        let pid = holder.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(sh.space_seq, seq)
                .watch_u32(holder, pid)
                .watch_u32(sh.closed, sh.closed.load(Ordering::Relaxed))
                .watch_u64(sh.head, sh.head.load(Ordering::Relaxed))
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        self.prod.done_sleeping(self.ptrs.shared());
    }
}

/// Space reserved in the ring for one message; write it, then [`commit`](Self::commit).
/// Dropped without a commit, nothing is sent.
pub struct SendSlot<'a, M: SharedMemory> {
    pub(super) sender: &'a mut Sender<M>,
    pub(super) off: u64,
    pub(super) len: u64,
}

impl<M: SharedMemory> Sender<M> {
    /// How this end waits.
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The largest message this ring carries.
    pub fn max_message(&self) -> u64 {
        self.prod.max_message()
    }

    /// The step for a `len`-byte message, and the parked state beside it.
    #[inline]
    pub(super) fn step(&mut self, len: u64) -> (SendStep<'_, M>, &mut Parked) {
        (
            SendStep {
                seg: &self.chan.seg,
                ptrs: &self.ptrs,
                prod: &mut self.prod,
                broken: &mut self.broken,
                len,
                owner: self.owner,
            },
            &mut self.parked,
        )
    }

    /// The step for a new operation on a `len`-byte message, after the checks made once
    /// per call: no detached slot outstanding, a message the ring can carry, the
    /// receiver not closed.
    #[inline]
    pub(super) fn start(&mut self, len: usize) -> Result<(SendStep<'_, M>, &mut Parked), Error> {
        if self.detached.is_some() {
            return Err(detached_outstanding());
        }
        let len = len as u64;
        if len > self.prod.max_message() {
            return Err(Error::MessageTooLarge {
                len,
                max: self.prod.max_message(),
            });
        }
        if closed_by(
            self.ptrs.shared().closed,
            CONSUMER_CLOSED,
            self.ptrs.consumer_holder(),
        ) {
            return Err(Error::Closed);
        }
        Ok(self.step(len))
    }

    #[inline(always)]
    pub(super) fn slot(&mut self, off: u64, len: usize) -> SendSlot<'_, M> {
        SendSlot {
            sender: self,
            off,
            len: len as u64,
        }
    }

    /// Reserves room for a `len`-byte message if there is room now.
    ///
    /// A message that does not fit before the end of the ring is placed at its start,
    /// after a PAD; the PAD holds its space until the receiver passes it, so a large
    /// message can see `Full` in a ring the receiver has not looked at since.
    ///
    /// # Errors
    /// [`TrySendError::Full`] when there is no room now;
    /// [`TrySendError::MessageTooLarge`], [`TrySendError::Closed`] (the receiver closed),
    /// [`TrySendError::PeerDied`]; `Failed` with [`Error::Corrupt`] or
    /// [`Error::Truncated`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, TrySendError> {
        if let Some(off) = self.reserve_known(len) {
            return Ok(self.slot(off, len));
        }
        self.try_reserve_step(len)
    }

    #[inline(never)]
    fn try_reserve_step(&mut self, len: usize) -> Result<SendSlot<'_, M>, TrySendError> {
        let (mut step, parked) = self.start(len)?;
        let off = wait::try_once(&mut step, parked, Error::Full)?;
        Ok(self.slot(off, len))
    }

    /// Every reserve's common case, inline: the checks of [`start`](Self::start) and of
    /// the step's look, each in its passing form (no detached slot, a message the ring
    /// carries, the receiver not closed, the end not broken, not a forked copy), and room
    /// already known free ([`Producer::reserve_known`]). `Some(offset)` only where the
    /// step would give the same offset at its first look; `None` sends the call through
    /// the step, which makes every check again and says which failed.
    #[inline(always)]
    fn reserve_known(&mut self, len: usize) -> Option<u64> {
        let len = len as u64;
        if self.detached.is_some()
            || self.broken.is_some()
            || self.owner.forked()
            || len > self.prod.max_message()
            || closed_by(
                self.ptrs.shared().closed,
                CONSUMER_CLOSED,
                self.ptrs.consumer_holder(),
            )
        {
            return None;
        }
        self.prod.reserve_known(len)
    }

    /// Reserves room for a `len`-byte message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the receiver closes, [`SendError::PeerDied`] when its
    /// process dies (also one that claimed the end after the wait began, and an unreaped
    /// one), [`SendError::MessageTooLarge`]; `Failed` with [`Error::Truncated`] or
    /// [`Error::Corrupt`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Channel, ChannelOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let mem = HeapMemory::new(1 << 16);
    /// let chan = Channel::create(mem.share(), &ChannelOptions::new())?;
    /// let (mut tx, mut rx) = (chan.sender(0)?, chan.receiver(0)?);
    /// let slot = tx.reserve(5)?; // room for 5 bytes, in the ring itself
    /// slot.write(0, b"hello")?;
    /// slot.commit();
    /// assert_eq!(rx.recv()?.to_vec(), b"hello");
    /// # Ok(()) }
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, SendError> {
        self.reserve_impl(len, None).map_err(Into::into)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve), and [`SendTimeoutError::Timeout`].
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendSlot<'_, M>, SendTimeoutError> {
        self.reserve_impl(len, Some(timeout)).map_err(Into::into)
    }

    #[inline]
    pub(super) fn reserve_impl(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<SendSlot<'_, M>, Error> {
        if let Some(off) = self.reserve_known(len) {
            return Ok(self.slot(off, len));
        }
        self.reserve_step(len, timeout)
    }

    #[inline(never)]
    fn reserve_step(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<SendSlot<'_, M>, Error> {
        let pace = self.wait.pace();
        let (mut step, _) = self.start(len)?;
        let off = wait::block(&mut step, pace, timeout)?;
        Ok(self.slot(off, len))
    }

    /// [`reserve_timeout`](Self::reserve_timeout) (or [`reserve`](Self::reserve) with
    /// `None`) for a caller that cannot hold the slot's borrow: the slot stays reserved
    /// until [`commit_detached`](Self::commit_detached) or
    /// [`abandon_detached`](Self::abandon_detached), and the sender reserves nothing else
    /// meanwhile.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout), and [`Error::InvalidOption`] while
    /// another detached slot is outstanding.
    pub fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<DetachedSlot, Error> {
        let slot = self.reserve_impl(len, timeout)?;
        let (off, len) = (slot.off, slot.len);
        let id = self.next_detached;
        self.next_detached = id.wrapping_add(1);
        self.detached = Some(id);
        Ok(DetachedSlot { off, len, id })
    }

    /// The address of `slot`'s bytes in the ring (`slot.len()` of them), for the caller
    /// to write the message into before committing it. Writing through it is the
    /// caller's `unsafe` business: the range is this sender's alone until the commit (a
    /// hostile peer may still write it, as it may write any shared byte), and it must not
    /// be used after the commit or after the sender is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a slot this sender does not hold outstanding.
    pub fn detached_ptr(&self, slot: &DetachedSlot) -> Result<*mut u8, Error> {
        self.check_detached(slot)?;
        // The slot lies in the data area (off + len <= capacity, from the protocol).
        Ok(self.ptrs.data().ptr(slot.off as usize))
    }

    pub(super) fn check_detached(&self, slot: &DetachedSlot) -> Result<(), Error> {
        if self.detached == Some(slot.id) {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "detached slot",
                found: slot.id,
                expected: "the slot this sender reserved and has outstanding",
            })
        }
    }

    /// Publishes the detached slot's message.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a slot this sender does not hold outstanding (nothing
    /// is published).
    pub fn commit_detached(&mut self, slot: DetachedSlot) -> Result<(), Error> {
        self.check_detached(&slot)?;
        self.detached = None;
        let sh = self.ptrs.shared();
        self.prod.commit(sh, &self.ptrs, &SysFutex, slot.len);
        self.chan.seg.intact()
    }

    /// Gives the detached slot up: nothing is sent.
    pub fn abandon_detached(&mut self, slot: DetachedSlot) {
        if self.detached == Some(slot.id) {
            self.detached = None;
        }
    }

    /// Sends a copy of `bytes`, waiting for room.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let slot = self.reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes` if there is room now.
    ///
    /// # Errors
    /// As [`try_reserve`](Self::try_reserve).
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), TrySendError> {
        let slot = self.try_reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout).
    pub fn send_timeout(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        let slot = self.reserve_timeout(bytes.len(), timeout)?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Room for a `len`-byte message, without blocking the thread: a future that
    /// completes with the reserved slot (as [`reserve`](Self::reserve)) or the error that
    /// ends the wait. It runs the same step as `reserve`: it spins for the end's spin time
    /// (`WaitMode::Block { spin }`, or [`ASYNC_SPIN`](crate::wait::ASYNC_SPIN) in spin mode), then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when the receiver frees room, closes,
    /// dies or is replaced, and looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE).
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    ///
    /// # Cancel safety
    /// Cancellation safe: room is taken only when the future completes; dropping it
    /// pending reserves nothing (a PAD it may have published to wrap the ring is part of
    /// the ring's normal traffic, read past by the receiver), so no space leaks.
    pub fn reserve_async(&mut self, len: usize) -> ReserveFuture<'_, M> {
        ReserveFuture {
            tx: Some(self),
            len,
        }
    }

    /// Sends a copy of `bytes`, without blocking the thread.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    ///
    /// # Cancel safety
    /// Cancellation safe up to the moment room is found (then the copy and the commit
    /// complete in the same poll).
    pub fn send_async<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a, M> {
        SendFuture {
            reserve: self.reserve_async(bytes.len()),
            bytes,
        }
    }

    /// The async core: out of line (inlined into a caller's `async` producer loop it made a
    /// 64-byte async stream run at 0.45x the blocking one; BENCHMARKS.md section 8).
    #[inline(never)]
    pub(super) fn poll_room(
        &mut self,
        len: usize,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<u64, Error>> {
        let spin = self.wait.async_spin();
        match self.start(len) {
            Err(e) => {
                // A close found at the start of a poll: take back a park of the last one.
                self.unpark();
                std::task::Poll::Ready(Err(e))
            }
            Ok((mut step, parked)) => wait::poll_step(&mut step, parked, spin, cx),
        }
    }

    pub(super) fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step(0);
        parked.release(&mut step);
    }
}

impl<M: SharedMemory> SendSlot<'_, M> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at `offset` of the message, in place.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the message, [`Error::Truncated`].
    #[inline]
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        in_message(offset, bytes.len(), self.len)?;
        // The slot lies in the data area (off + len <= capacity, from the protocol), the
        // range is inside the slot (checked above), and the mapping is writable (the end
        // was claimed through the write gate).
        self.sender
            .ptrs
            .data()
            .store(self.off as usize + offset, bytes);
        self.sender.chan.seg.intact()
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        let s = self.sender;
        let sh = s.ptrs.shared();
        s.prod.commit(sh, &s.ptrs, &SysFutex, self.len);
    }
}

impl<M: SharedMemory> Drop for Sender<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // A forked child's copy: the end is the parent's; closing it here would close
            // the parent's stream.
            return;
        }
        self.unpark();
        let sh = self.ptrs.shared();
        // Our own position, whatever a peer wrote over the shared word: the next sender
        // resumes exactly after our last message.
        self.prod.republish(sh);
        // Release: pairs with the receiver's Acquire load of `closed`; messages committed
        // before are visible before the close is.
        sh.closed.fetch_or(PRODUCER_CLOSED, Ordering::Release);
        sh.data_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.data_seq);
        // Release: pairs with the Acquire loads of the holder word in `claim` (the next
        // holder starts after our last use of the ring) and in `peer_gone` (a cleared word
        // comes with the close bit set above).
        self.ptrs.producer_holder().store(0, Ordering::Release);
    }
}

/// The future of [`Sender::reserve_async`].
pub struct ReserveFuture<'a, M: SharedMemory> {
    pub(super) tx: Option<&'a mut Sender<M>>,
    pub(super) len: usize,
}

impl<'a, M: SharedMemory> std::future::Future for ReserveFuture<'a, M> {
    type Output = Result<SendSlot<'a, M>, SendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let len = this.len;
        let Some(tx) = this.tx.as_mut() else {
            return std::task::Poll::Ready(Err(SendError::Closed));
        };
        match tx.poll_room(len, cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let sender = this.tx.take().expect("present above");
                std::task::Poll::Ready(
                    r.map(|off| SendSlot {
                        sender,
                        off,
                        len: len as u64,
                    })
                    .map_err(Into::into),
                )
            }
        }
    }
}

/// The future of [`Sender::send_async`]: room as [`ReserveFuture`], then the copy and
/// the commit in the same poll.
pub struct SendFuture<'a, M: SharedMemory> {
    reserve: ReserveFuture<'a, M>,
    bytes: &'a [u8],
}

impl<M: SharedMemory> std::future::Future for SendFuture<'_, M> {
    type Output = Result<(), SendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.reserve).poll(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Ready(Ok(slot)) => std::task::Poll::Ready(
                slot.write(0, this.bytes)
                    .map_err(Into::into)
                    .map(|()| slot.commit()),
            ),
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for SendFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> Drop for ReserveFuture<'_, M> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.unpark();
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("producer", &self.prod)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for SendSlot<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSlot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for ReserveFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReserveFuture")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Typed use: a channel made with [`ChannelOptions::record`](crate::ChannelOptions::record)
/// carries one record per message, in the four forms of every send.
impl<M: SharedMemory> Sender<M> {
    /// Sends `value` if there is room now.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send); `Failed` with [`Error::SchemaMismatch`] when the
    /// channel does not carry `T`.
    pub fn try_send_record<T: Record>(&mut self, value: &T) -> Result<(), TrySendError> {
        self.chan.check_schema::<T>()?;
        self.try_send(bytemuck::bytes_of(value))
    }

    /// Sends `value`, waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`send`](Self::send), and as [`try_send_record`](Self::try_send_record).
    pub fn send_record<T: Record>(&mut self, value: &T) -> Result<(), SendError> {
        self.chan.check_schema::<T>()?;
        self.send(bytemuck::bytes_of(value))
    }

    /// Sends `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`send_timeout`](Self::send_timeout), and as
    /// [`try_send_record`](Self::try_send_record).
    pub fn send_record_timeout<T: Record>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.chan.check_schema::<T>()?;
        self.send_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// [`send_record`](Self::send_record) without blocking the thread.
    ///
    /// # Errors
    /// As [`send_record`](Self::send_record).
    ///
    /// # Cancel safety
    /// As [`send_async`](Self::send_async): nothing is sent unless it completes.
    pub async fn send_record_async<T: Record>(&mut self, value: &T) -> Result<(), SendError> {
        self.chan.check_schema::<T>()?;
        self.send_async(bytemuck::bytes_of(value)).await
    }
}
