//! The receiving end of a ring: [`Receiver`], its slots, its future and its `Stream`.

use std::time::Duration;

use super::layout::*;
use super::{ring::*, segment::*};
use crate::format::error::{Error, RecvError, RecvTimeoutError, TryRecvError};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::os::park::Park;
use crate::protocol::ring::{self, Consumer, CONSUMER_CLOSED, PRODUCER_CLOSED};
use crate::protocol::sync::Ordering;
use crate::wait::WaitMode;
use crate::wait::{self, Owner, Parked, Sleeper, Step};

impl<M: SharedMemory> Channel<M> {
    /// The receiving end of `ring`.
    ///
    /// # Errors
    /// As [`sender`](Self::sender).
    pub fn receiver(&self, ring: u32) -> Result<Receiver<M>, Error> {
        let ptrs = self.claim(ring, LINE, CONSUMER_CLOSED, "receiving")?;
        let cons = Consumer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        let cons_at = cons.position();
        Ok(Receiver {
            chan: self.clone(),
            ptrs,
            cons,
            wait: WaitMode::default(),
            broken: None,
            parked: Parked::default(),
            owner: Owner::current(),
            stalled_at: None,
            at: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(cons_at)),
            held: None,
            next_held: 0,
        })
    }
}

// The receiver

/// The receiving end of a ring.
///
/// Every way of receiving (`try_recv`, `recv`, `recv_timeout`, `recv_async`, the `Stream`
/// and the `_into` forms over them) runs the same step (`RecvStep`): one code path, the
/// same checks.
pub struct Receiver<M: SharedMemory> {
    pub(super) chan: Channel<M>,
    pub(super) ptrs: RingPtrs,
    pub(super) cons: Consumer,
    pub(super) wait: WaitMode,
    pub(super) broken: Option<Error>,
    pub(super) parked: Parked,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    /// The position at which the last peer check found the ring stalled (see
    /// `Consumer::stalled`), if it did.
    pub(super) stalled_at: Option<u64>,
    /// Its position, for a wait set watching it (see `waitable.rs`): stored when a
    /// message is released and when a look finds the ring empty.
    pub(super) at: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The id of the message held by `recv_held`, if any (see [`HeldMessage`]).
    pub(super) held: Option<u64>,
    pub(super) next_held: u64,
}

/// A message received by [`Receiver::recv_held`] and left in the ring until
/// [`Receiver::release_held`]: for bindings (the C API) that cannot hold a
/// [`RecvSlot`]'s borrow across calls. While one is held the receiver receives nothing
/// else (`InvalidOption`), so no message is delivered twice.
#[derive(Debug)]
pub struct HeldMessage {
    off: u64,
    len: u64,
    id: u64,
}

impl HeldMessage {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub(super) fn held_outstanding() -> Error {
    Error::InvalidOption {
        option: "receive while a held message is outstanding",
        found: 1,
        expected: "release the held message first",
    }
}

/// The receiver's one step: the next message's place.
pub(super) struct RecvStep<'a, M: SharedMemory> {
    pub(super) seg: &'a RawSegment<M>,
    pub(super) ptrs: &'a RingPtrs,
    pub(super) cons: &'a mut Consumer,
    pub(super) broken: &'a mut Option<Error>,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    pub(super) stalled_at: &'a mut Option<u64>,
    pub(super) at: &'a std::sync::atomic::AtomicU64,
    /// A held message is outstanding: every look refuses.
    pub(super) held: bool,
}

impl<M: SharedMemory> Step for RecvStep<'_, M> {
    type Out = (u64, u64);

    #[inline]
    fn look(&mut self) -> Result<Option<(u64, u64)>, Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        if self.held {
            return Err(held_outstanding());
        }
        self.owner.check()?;
        let sh = self.ptrs.shared();
        // Load `closed` before looking for data: a close seen here came after every
        // message committed before it (Release in `Sender::drop`).
        // Acquire: pairs with the Release `fetch_or` in the other end's drop.
        let closed = sh.closed.load(Ordering::Acquire);
        match self.cons.try_peek(sh, self.ptrs, &SysFutex) {
            Ok(Some(m)) => Ok(Some(m)),
            // Acquire: pairs with the Release store of 0 in `Sender::drop`, after its
            // close bit (read before the look, so every message before it was seen).
            Ok(None)
                if closed & PRODUCER_CLOSED != 0
                    && self.ptrs.producer_holder().load(Ordering::Acquire) == 0 =>
            {
                self.seg.intact()?;
                Err(Error::Closed)
            }
            Ok(None) => {
                // Relaxed: a process-local copy for a wait set's look (PADs passed).
                self.at
                    .store(self.cons.position(), std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
            Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
        }
    }
}

impl<M: SharedMemory> Sleeper for RecvStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        if !peer {
            // A close needs no check here: `look` reads the close bit every time.
            return Ok(());
        }
        let sh = self.ptrs.shared();
        // A frame a peer scribbled away (a zeroed header where the sender wrote one)
        // would hold both ends for ever: seen at two peer checks (at least `PEER_CHECK`
        // apart) at the same position, it is reported.
        let at = self.cons.position();
        if self.cons.stalled(sh, self.ptrs) {
            if *self.stalled_at == Some(at) {
                let e = Error::Corrupt {
                    what: "a message header (none where the sender wrote one, or frames read past the sender's position)",
                    found: at,
                };
                return Err(poisoned(self.seg, self.broken, e));
            }
            *self.stalled_at = Some(at);
        } else {
            *self.stalled_at = None;
        }
        match peer_gone(sh.closed, PRODUCER_CLOSED, self.ptrs.producer_holder()) {
            // Messages committed before the close or the crash are still delivered:
            // `look` reports the close once the ring is drained.
            Some(Error::Closed) | None => Ok(()),
            Some(e) => match self.cons.try_peek(sh, self.ptrs, &SysFutex) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(e),
                Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
            },
        }
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let ptrs: &RingPtrs = self.ptrs;
        let sh = ptrs.shared();
        let seq = match self.cons.prepare_sleep(sh, ptrs) {
            Ok(Some(seq)) => seq,
            Ok(None) => return Ok(None),
            Err(c) => return Err(poisoned(self.seg, self.broken, corrupt(c))),
        };
        // Relaxed: only compared for change by a parked future's reactor.
        let holder = ptrs.producer_holder();
        let pid = holder.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(sh.data_seq, seq)
                .watch_u32(holder, pid)
                .watch_u32(sh.closed, sh.closed.load(Ordering::Relaxed))
                .watch_u64(ptrs.header_word(self.cons.position()), 0)
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        self.cons.done_sleeping(self.ptrs.shared());
    }
}

/// A received message, in place. Read it with [`read`](Self::read); dropping it frees its
/// space for the sender.
pub struct RecvSlot<'a, M: SharedMemory> {
    pub(super) receiver: &'a mut Receiver<M>,
    pub(super) off: u64,
    pub(super) len: u64,
}

impl<M: SharedMemory> Receiver<M> {
    /// How this end waits.
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    #[inline]
    pub(super) fn step(&mut self) -> (RecvStep<'_, M>, &mut Parked) {
        (
            RecvStep {
                seg: &self.chan.seg,
                ptrs: &self.ptrs,
                cons: &mut self.cons,
                broken: &mut self.broken,
                owner: self.owner,
                stalled_at: &mut self.stalled_at,
                at: &self.at,
                held: self.held.is_some(),
            },
            &mut self.parked,
        )
    }

    #[inline(always)]
    pub(super) fn slot(&mut self, (off, len): (u64, u64)) -> RecvSlot<'_, M> {
        RecvSlot {
            receiver: self,
            off,
            len,
        }
    }

    /// The next message if there is one now, in place.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when there is none now; [`TryRecvError::Closed`] once the
    /// sender closed and everything was read; [`TryRecvError::PeerDied`]; `Failed` with
    /// [`Error::Corrupt`] or [`Error::Truncated`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<RecvSlot<'_, M>, TryRecvError> {
        if let Some(m) = self.message_here() {
            return Ok(self.slot(m));
        }
        self.try_recv_step()
    }

    #[inline(never)]
    fn try_recv_step(&mut self) -> Result<RecvSlot<'_, M>, TryRecvError> {
        let (mut step, parked) = self.step();
        let m = wait::try_once(&mut step, parked, Error::Empty)?;
        Ok(self.slot(m))
    }

    /// Every receive's common case, inline: the checks of the step's look in their
    /// passing form (the end not broken, not a forked copy) and a message at our
    /// position that passes every check of [`Consumer::peek_message`]. `Some` only where
    /// the step's first look gives the same message (a message found is delivered
    /// whatever the close bit says: the look reads it only when the ring is empty);
    /// `None` sends the call through the step.
    #[inline(always)]
    fn message_here(&mut self) -> Option<(u64, u64)> {
        if self.broken.is_some() || self.held.is_some() || self.owner.forked() {
            return None;
        }
        self.cons.peek_message(&self.ptrs).ok()
    }

    /// The next message, in place, waiting as long as it takes.
    ///
    /// # Errors
    /// [`RecvError::Closed`] once the sender closed and everything was read;
    /// [`RecvError::PeerDied`] once the sender's process died (also one that claimed the
    /// end after the wait began, and one not yet reaped) and everything it committed was
    /// read; `Failed` with [`Error::Truncated`] or [`Error::Corrupt`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Channel, ChannelOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let mem = HeapMemory::new(1 << 16);
    /// let chan = Channel::create(mem.share(), &ChannelOptions::new())?;
    /// let (mut tx, mut rx) = (chan.sender(0)?, chan.receiver(0)?);
    /// tx.send(b"hello")?;
    /// let msg = rx.recv()?; // the message where it lies in the ring
    /// let mut first = [0u8; 2];
    /// msg.read(0, &mut first)?;
    /// assert_eq!(&first, b"he");
    /// drop(msg); // frees its room for the sender
    /// # Ok(()) }
    /// ```
    pub fn recv(&mut self) -> Result<RecvSlot<'_, M>, RecvError> {
        self.recv_impl(None).map_err(Into::into)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`RecvTimeoutError::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<RecvSlot<'_, M>, RecvTimeoutError> {
        self.recv_impl(Some(timeout)).map_err(Into::into)
    }

    /// [`recv_timeout`](Self::recv_timeout) (or [`recv`](Self::recv) with `None`, or
    /// [`try_recv`](Self::try_recv) with a zero timeout) for a caller that cannot hold the
    /// slot's borrow: the message stays in the ring, readable through
    /// [`held_ptr`](Self::held_ptr), until [`release_held`](Self::release_held); the
    /// receiver receives nothing else meanwhile.
    ///
    /// # Errors
    /// As the form it stands for (`Empty` for a zero timeout with nothing there), and
    /// [`Error::InvalidOption`] while another held message is outstanding.
    pub fn recv_held(&mut self, timeout: Option<Duration>) -> Result<HeldMessage, Error> {
        let slot = match timeout {
            Some(t) if t.is_zero() => self.try_recv().map_err(Error::from)?,
            t => self.recv_impl(t)?,
        };
        let (off, len) = (slot.off, slot.len);
        slot.keep();
        let id = self.next_held;
        self.next_held = id.wrapping_add(1);
        self.held = Some(id);
        Ok(HeldMessage { off, len, id })
    }

    /// The address of `m`'s bytes in the ring (`m.len()` of them), for the caller to read
    /// them in place. Reading through it is the caller's `unsafe` business: the bytes are
    /// shared memory a hostile peer may write at any moment (copy what you validate), and
    /// the address must not be used after [`release_held`](Self::release_held) or after
    /// the receiver is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a message this receiver does not hold.
    pub fn held_ptr(&self, m: &HeldMessage) -> Result<*const u8, Error> {
        self.check_held(m)?;
        // The message lies in the data area (validated when it was received).
        Ok(self.ptrs.data().ptr(m.off as usize).cast_const())
    }

    /// Frees the held message's room for the sender (the next receive goes on after it).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a message this receiver does not hold (nothing is
    /// released).
    pub fn release_held(&mut self, m: HeldMessage) -> Result<(), Error> {
        self.check_held(&m)?;
        self.held = None;
        // The slot that `recv_held` kept, dropped now: its drop releases the message.
        drop(self.slot((m.off, m.len)));
        Ok(())
    }

    fn check_held(&self, m: &HeldMessage) -> Result<(), Error> {
        if self.held == Some(m.id) {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "held message",
                found: m.id,
                expected: "the message this receiver holds outstanding",
            })
        }
    }

    #[inline]
    pub(super) fn recv_impl(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<RecvSlot<'_, M>, Error> {
        if let Some(m) = self.message_here() {
            return Ok(self.slot(m));
        }
        self.recv_step(timeout)
    }

    #[inline(never)]
    fn recv_step(&mut self, timeout: Option<Duration>) -> Result<RecvSlot<'_, M>, Error> {
        let pace = self.wait.pace();
        let (mut step, _) = self.step();
        let m = wait::block(&mut step, pace, timeout)?;
        Ok(self.slot(m))
    }

    /// [`try_recv`](Self::try_recv), copying the message into `buf` (replacing its
    /// contents); returns its length.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv).
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        Ok(self.try_recv()?.copy_into(Target::Vec(buf))?)
    }

    /// [`recv`](Self::recv), copying the message into `buf` (replacing its contents);
    /// returns its length.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        Ok(self.recv()?.copy_into(Target::Vec(buf))?)
    }

    /// [`recv_into`](Self::recv_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        Ok(self.recv_timeout(timeout)?.copy_into(Target::Vec(buf))?)
    }

    /// [`recv_into`](Self::recv_into), without blocking the thread.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async).
    pub fn recv_into_async<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> RecvIntoFuture<'a, M> {
        RecvIntoFuture {
            recv: self.recv_async(),
            target: Some(Target::Vec(buf)),
        }
    }

    /// [`try_recv`](Self::try_recv), copying the message into `buf`, which it must fit;
    /// returns its length. A longer message is [`TryRecvError::MessageTooLarge`] and
    /// stays for the next call.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv), and [`TryRecvError::MessageTooLarge`].
    pub fn try_recv_into_slice(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        Ok(self.try_recv()?.copy_into(Target::Slice(buf))?)
    }

    /// [`recv`](Self::recv), copying the message into `buf`, which it must fit; returns
    /// its length. A longer message is [`RecvError::MessageTooLarge`] and stays for the
    /// next call.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`RecvError::MessageTooLarge`].
    pub fn recv_into_slice(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Ok(self.recv()?.copy_into(Target::Slice(buf))?)
    }

    /// [`recv_into_slice`](Self::recv_into_slice), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout), and
    /// [`RecvTimeoutError::MessageTooLarge`].
    pub fn recv_into_slice_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        Ok(self.recv_timeout(timeout)?.copy_into(Target::Slice(buf))?)
    }

    /// [`recv_into_slice`](Self::recv_into_slice), without blocking the thread.
    ///
    /// # Errors
    /// As [`recv_into_slice`](Self::recv_into_slice).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async).
    pub fn recv_into_slice_async<'a>(&'a mut self, buf: &'a mut [u8]) -> RecvIntoFuture<'a, M> {
        RecvIntoFuture {
            recv: self.recv_async(),
            target: Some(Target::Slice(buf)),
        }
    }

    /// The next message, without blocking the thread: a future that completes with the
    /// message in place (as [`recv`](Self::recv)), or the error that ends the wait. It
    /// runs the same step as `recv`: it spins for the end's spin time
    /// (`WaitMode::Block { spin }`, or [`ASYNC_SPIN`](crate::wait::ASYNC_SPIN) in spin mode), then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when the sender publishes, closes,
    /// dies or is replaced, and looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE). When a message is already there it completes on its
    /// first poll without a system call.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// Cancellation safe: nothing is taken from the ring until the future completes, so
    /// dropping it (pending, or woken but not polled again) loses no message; the next
    /// call gets it.
    pub fn recv_async(&mut self) -> RecvFuture<'_, M> {
        RecvFuture { rx: Some(self) }
    }

    pub(super) fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(u64, u64), Error>> {
        let spin = self.wait.async_spin();
        let (mut step, parked) = self.step();
        wait::poll_step(&mut step, parked, spin, cx)
    }

    pub(super) fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step();
        parked.release(&mut step);
    }
}

impl<M: SharedMemory> RecvSlot<'_, M> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes at `offset` of the message into `buf`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the message, [`Error::Truncated`].
    #[inline]
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        in_message(offset, buf.len(), self.len)?;
        // The protocol validated that the message lies inside the data area; the range is
        // inside the message (checked above).
        self.receiver
            .ptrs
            .data()
            .load(self.off as usize + offset, buf);
        self.receiver.chan.seg.intact()
    }

    /// Copies the whole message into `target`; returns its length. A message longer
    /// than a slice target is `MessageTooLarge` and stays in the ring.
    pub(super) fn copy_into(self, target: Target<'_>) -> Result<usize, Error> {
        let len = self.len();
        match target {
            Target::Vec(v) => {
                v.resize(len, 0);
                self.read(0, v)?;
            }
            Target::Slice(s) if s.len() < len => {
                let max = s.len() as u64;
                self.keep();
                return Err(Error::MessageTooLarge {
                    len: len as u64,
                    max,
                });
            }
            Target::Slice(s) => self.read(0, &mut s[..len])?,
        }
        Ok(len)
    }

    /// Leaves the message in the ring, for the next receive.
    fn keep(self) {
        // The ring's head moves only in `Drop` (`release`); the peek that found the
        // message changed nothing another receive would not redo.
        std::mem::forget(self);
    }

    /// A copy of the whole message. (On a segment truncated under us the copy holds what
    /// the zero pages put in place hold; [`read`](Self::read) reports the truncation.)
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = crate::format::copy::zeroed(self.len());
        // The range is the whole message, so only `Truncated` can come back, and the
        // docs above say what the copy then holds.
        let _ = self.read(0, &mut v);
        v
    }
}

impl<M: SharedMemory> Drop for RecvSlot<'_, M> {
    #[inline]
    fn drop(&mut self) {
        let r = &mut *self.receiver;
        let sh = r.ptrs.shared();
        r.cons.release(sh, &SysFutex, self.len);
        // Relaxed: a process-local copy for a wait set's look.
        r.at.store(r.cons.position(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl<M: SharedMemory> Drop for Receiver<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // As in `Sender::drop`.
            return;
        }
        self.unpark();
        let sh = self.ptrs.shared();
        // As in `Sender::drop`: the next receiver resumes exactly where we stopped.
        self.cons.republish(sh);
        // Release: pairs with the sender's Acquire load of `closed`.
        sh.closed.fetch_or(CONSUMER_CLOSED, Ordering::Release);
        sh.space_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.space_seq);
        // Release: as in `Sender::drop`.
        self.ptrs.consumer_holder().store(0, Ordering::Release);
    }
}

/// The future of [`Receiver::recv_async`].
pub struct RecvFuture<'a, M: SharedMemory> {
    pub(super) rx: Option<&'a mut Receiver<M>>,
}

impl<'a, M: SharedMemory> std::future::Future for RecvFuture<'a, M> {
    type Output = Result<RecvSlot<'a, M>, RecvError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            return std::task::Poll::Ready(Err(RecvError::Closed));
        };
        match rx.poll_message(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let receiver = this.rx.take().expect("present above");
                std::task::Poll::Ready(
                    r.map(|(off, len)| RecvSlot { receiver, off, len })
                        .map_err(Into::into),
                )
            }
        }
    }
}

/// Where a copying receive puts the message.
#[derive(Debug)]
pub(super) enum Target<'a> {
    /// A buffer resized to the message.
    Vec(&'a mut Vec<u8>),
    /// A slice the message must fit.
    Slice(&'a mut [u8]),
}

/// The future of [`Receiver::recv_into_async`] and [`Receiver::recv_into_slice_async`]:
/// the message as [`RecvFuture`], copied out in the same poll; completes with its length.
pub struct RecvIntoFuture<'a, M: SharedMemory> {
    recv: RecvFuture<'a, M>,
    target: Option<Target<'a>>,
}

impl<M: SharedMemory> std::future::Future for RecvIntoFuture<'_, M> {
    type Output = Result<usize, RecvError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.recv).poll(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Ready(Ok(slot)) => {
                let Some(target) = this.target.take() else {
                    return std::task::Poll::Ready(Err(RecvError::Closed));
                };
                std::task::Poll::Ready(slot.copy_into(target).map_err(Into::into))
            }
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvIntoFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvIntoFuture").finish_non_exhaustive()
    }
}

impl<M: SharedMemory> Drop for RecvFuture<'_, M> {
    fn drop(&mut self) {
        // Dropped while pending: take the registration and the sleeping flag back.
        if let Some(rx) = self.rx.as_mut() {
            rx.unpark();
        }
    }
}

/// Receivers as a [`Stream`](futures_core::Stream) of owned messages (with the `futures`
/// feature): `Some(Ok(bytes))` per message, `None` once the sender closed and everything
/// was read, `Some(Err(..))` for any other end. Polling it runs the same step as
/// [`Receiver::recv`] and is cancellation safe as [`Receiver::recv_async`].
#[cfg(feature = "futures")]
impl<M: SharedMemory> futures_core::Stream for Receiver<M> {
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.poll_message(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(m)) => {
                let mut v = Vec::new();
                let copied = this.slot(m).copy_into(Target::Vec(&mut v));
                Poll::Ready(Some(copied.map(|_| v).map_err(Into::into)))
            }
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for Receiver<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("consumer", &self.cons)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvSlot<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvSlot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}

/// A record out of a received message, which must be exactly one `T` long: another
/// length is `Corrupt`, and the message is passed over (dropping the slot frees it).
fn record_of<T: Record, M: SharedMemory>(slot: RecvSlot<'_, M>) -> Result<T, Error> {
    if slot.len() != std::mem::size_of::<T>() {
        return Err(Error::Corrupt {
            what: "a record message's length",
            found: slot.len() as u64,
        });
    }
    let mut value = T::zeroed();
    slot.read(0, bytemuck::bytes_of_mut(&mut value))?;
    Ok(value)
}

/// Typed use: a channel made with [`ChannelOptions::record`](crate::ChannelOptions::record)
/// carries one record per message, in the four forms of every receive.
impl<M: SharedMemory> Receiver<M> {
    /// The next record, if one is there now.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv); `Failed` with [`Error::SchemaMismatch`] when the
    /// channel does not carry `T`, or [`Error::Corrupt`] for a message of another length
    /// (which is passed over).
    pub fn try_recv_record<T: Record>(&mut self) -> Result<T, TryRecvError> {
        self.chan.check_schema::<T>()?;
        Ok(record_of(self.try_recv()?)?)
    }

    /// The next record, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and as [`try_recv_record`](Self::try_recv_record).
    pub fn recv_record<T: Record>(&mut self) -> Result<T, RecvError> {
        self.chan.check_schema::<T>()?;
        Ok(record_of(self.recv()?)?)
    }

    /// The next record, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout), and as
    /// [`try_recv_record`](Self::try_recv_record).
    pub fn recv_record_timeout<T: Record>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        self.chan.check_schema::<T>()?;
        Ok(record_of(self.recv_timeout(timeout)?)?)
    }

    /// [`recv_record`](Self::recv_record) without blocking the thread.
    ///
    /// # Errors
    /// As [`recv_record`](Self::recv_record).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async): a message is taken only when it completes.
    pub async fn recv_record_async<T: Record>(&mut self) -> Result<T, RecvError> {
        self.chan.check_schema::<T>()?;
        let slot = self.recv_async().await?;
        Ok(record_of(slot)?)
    }
}
