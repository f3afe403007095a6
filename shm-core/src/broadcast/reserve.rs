//! Zero-copy publishing: [`Publisher::reserve`] and its forms give a [`PublishSlot`], the
//! next message's slot itself, to write in place and [`commit`](PublishSlot::commit).
//!
//! The same step as `publish` finds room (so the four forms wait, evict and end exactly
//! as `publish` does); then the slot is opened for writing (`begin_write`: its stamp goes
//! odd, so a subscriber that reads the message the slot held, or one that looks for the
//! new one early, never takes a copy of a half-written message). The commit is the end
//! of `publish`: the length, the even stamp, the tail, the wake-up.
//!
//! A slot dropped (or forgotten) without a commit publishes nothing: the message number
//! stays the publisher's next, the tail does not move, and a subscriber that looks for
//! that number sees an empty slot. What the open slot did to the message it held is what
//! a publish would have done: in reliable mode every member had read it already (that is
//! what the room was); in lossy mode a subscriber still a whole ring behind gets it as
//! `Lagged`, exactly counted.

use std::time::Duration;

use super::layout::*;
use super::publisher::Publisher;
use crate::format::error::{Error, SendError, SendTimeoutError, TrySendError};
use crate::format::memory::SharedMemory;
use crate::protocol::broadcast as protocol;
use crate::protocol::sync::Ordering;
use crate::wait;

/// The next message's slot, reserved by [`Publisher::reserve`] (or `try_reserve`,
/// `reserve_timeout`, `reserve_async`): write the message in place with
/// [`write`](Self::write), then [`commit`](Self::commit). Dropped without a commit,
/// nothing is published (see the module docs for what the open slot cost).
#[must_use = "a slot dropped without a commit publishes nothing"]
pub struct PublishSlot<'a, M: SharedMemory> {
    publisher: &'a mut Publisher<M>,
    len: u64,
}

impl<M: SharedMemory> Publisher<M> {
    /// The next message's slot, for a `len`-byte message, if there is room now (always,
    /// in lossy mode).
    ///
    /// # Errors
    /// [`TrySendError::Full`] when there is no room now; [`TrySendError::MessageTooLarge`];
    /// `Failed` with [`Error::Truncated`] or [`Error::Forked`].
    #[inline]
    pub fn try_reserve(&mut self, len: usize) -> Result<PublishSlot<'_, M>, TrySendError> {
        self.check(len)?;
        if self.room_known() {
            return Ok(self.open(len));
        }
        self.try_reserve_step(len)
    }

    #[inline(never)]
    fn try_reserve_step(&mut self, len: usize) -> Result<PublishSlot<'_, M>, TrySendError> {
        let (mut step, parked) = self.step();
        wait::try_once(&mut step, parked, Error::Full)?;
        Ok(self.open(len))
    }

    /// The next message's slot, for a `len`-byte message, waiting for room as
    /// [`publish`](Self::publish) does (reliable mode; lossy never waits).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Broadcast, BroadcastOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = BroadcastOptions::new().slots(8).max_message(64);
    /// let b = Broadcast::create(HeapMemory::new(opts.segment_len()? as usize), &opts)?;
    /// let (mut publisher, mut sub) = (b.publisher()?, b.subscriber()?);
    /// let slot = publisher.reserve(5)?; // the slot itself: no copy of ours in between
    /// slot.write(0, b"he")?;
    /// slot.write(2, b"llo")?;
    /// slot.commit();
    /// let mut buf = Vec::new();
    /// sub.recv_into(&mut buf)?;
    /// assert_eq!(buf, b"hello");
    /// # Ok(()) }
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<PublishSlot<'_, M>, SendError> {
        self.reserve_impl(len, None).map_err(Into::into)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve), and [`SendTimeoutError::Timeout`].
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<PublishSlot<'_, M>, SendTimeoutError> {
        self.reserve_impl(len, Some(timeout)).map_err(Into::into)
    }

    fn reserve_impl(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<PublishSlot<'_, M>, Error> {
        self.check(len)?;
        if self.room_known() {
            return Ok(self.open(len));
        }
        self.reserve_step(len, timeout)
    }

    #[inline(never)]
    fn reserve_step(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<PublishSlot<'_, M>, Error> {
        let pace = self.wait.pace_shared();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, timeout)?;
        Ok(self.open(len))
    }

    /// The next message's slot, without blocking the thread: a future that completes
    /// with it (as [`reserve`](Self::reserve)) or with the error that ends the wait. It
    /// runs the same step as `publish_async`.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    ///
    /// # Cancel safety
    /// Cancellation safe: the slot is opened only when the future completes; dropping it
    /// pending opens nothing and publishes nothing.
    pub fn reserve_async(&mut self, len: usize) -> PublishReserveFuture<'_, M> {
        PublishReserveFuture {
            publisher: Some(self),
            len,
        }
    }

    /// Opens the next message's slot for a `len`-byte message (room was found, and
    /// `len <= max_message`: `check`).
    #[inline(always)]
    fn open(&mut self, len: usize) -> PublishSlot<'_, M> {
        let n = self.next;
        protocol::begin_write(self.b.slot(n), n);
        PublishSlot {
            publisher: self,
            len: len as u64,
        }
    }
}

impl<M: SharedMemory> PublishSlot<'_, M> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number the message gets when it is committed.
    pub fn number(&self) -> u64 {
        self.publisher.next
    }

    /// Writes `bytes` at `offset` of the message, in place.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the message, [`Error::Truncated`].
    #[inline]
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        let end = match offset.checked_add(bytes.len()) {
            Some(end) if end as u64 <= self.len => end,
            _ => {
                return Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: bytes.len() as u64,
                    payload_len: self.len,
                })
            }
        };
        debug_assert!(end as u64 <= self.publisher.b.cfg.max_message);
        let b = &self.publisher.b;
        let n = self.publisher.next;
        // The range lies inside the message, whose `len <= max_message` bytes fit in the
        // slot's payload (checked at reserve), and the mapping is writable (the write
        // gate in `publisher`); Release as the protocol requires of payload stores.
        b.slot_entry(n)
            .1
            .store_payload(offset, bytes, Ordering::Release);
        b.seg.intact()
    }

    /// Publishes the message.
    #[inline]
    pub fn commit(self) {
        let p = self.publisher;
        let (n, b) = (p.next, &p.b);
        let next = n.saturating_add(1);
        if protocol::end_write(b.control(), b.slot(n), n, self.len, next) {
            wake_subscribers(b.control());
        }
        p.next = next;
        p.waiting_since = None;
    }
}

impl<M: SharedMemory> std::fmt::Debug for PublishSlot<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishSlot")
            .field("len", &self.len)
            .field("number", &self.publisher.next)
            .finish_non_exhaustive()
    }
}

/// A reservation made by [`Publisher::reserve_detached`] and not yet committed: for
/// bindings (the C API, Python) that cannot hold a [`PublishSlot`]'s borrow across
/// calls. Write the message through [`Publisher::detached_ptr`], publish it with
/// [`Publisher::commit_detached`], or give it up with [`Publisher::abandon_detached`]
/// (as a dropped slot: nothing published). While one is outstanding the publisher
/// publishes nothing else.
#[derive(Debug)]
pub struct DetachedPublish {
    len: u64,
    number: u64,
}

impl DetachedPublish {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number the message gets when it is committed.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl<M: SharedMemory> Publisher<M> {
    /// [`reserve_timeout`](Self::reserve_timeout) (or [`reserve`](Self::reserve) with
    /// `None`, or [`try_reserve`](Self::try_reserve) with a zero timeout) for a caller that
    /// cannot hold the slot's borrow: the slot stays open until
    /// [`commit_detached`](Self::commit_detached) or
    /// [`abandon_detached`](Self::abandon_detached).
    ///
    /// # Errors
    /// As the form it stands for, and [`Error::InvalidOption`] while another detached
    /// reservation is outstanding.
    pub fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<DetachedPublish, Error> {
        let slot = match timeout {
            Some(t) if t.is_zero() => self.try_reserve(len).map_err(Error::from)?,
            t => self.reserve_impl(len, t)?,
        };
        let (len, number) = (slot.len, slot.publisher.next);
        self.detached = Some(number);
        Ok(DetachedPublish { len, number })
    }

    /// The address of the reservation's `d.len()` bytes in its slot, for the caller to
    /// write the message into before committing it. Writing through it is the caller's
    /// `unsafe` business: the bytes are shared memory (a hostile peer may write any
    /// shared byte), and the address must not be used after the commit, the abandon, or
    /// the publisher's drop.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a reservation this publisher does not hold.
    pub fn detached_ptr(&self, d: &DetachedPublish) -> Result<*mut u8, Error> {
        self.check_detached(d)?;
        // The slot's payload holds `max_message >= d.len` bytes from SLOT_HEADER on.
        Ok(self.b.slot_view(d.number).ptr(SLOT_HEADER as usize))
    }

    /// Publishes the detached reservation's message.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a reservation this publisher does not hold (nothing is
    /// published); [`Error::Truncated`].
    pub fn commit_detached(&mut self, d: DetachedPublish) -> Result<(), Error> {
        self.check_detached(&d)?;
        self.detached = None;
        PublishSlot {
            publisher: self,
            len: d.len,
        }
        .commit();
        self.b.seg.intact()
    }

    /// Gives the detached reservation up: nothing is published (as a dropped
    /// [`PublishSlot`]).
    pub fn abandon_detached(&mut self, d: DetachedPublish) {
        if self.check_detached(&d).is_ok() {
            self.detached = None;
        }
    }

    fn check_detached(&self, d: &DetachedPublish) -> Result<(), Error> {
        if self.detached == Some(d.number) && d.number == self.next {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "detached reservation",
                found: d.number,
                expected: "the reservation this publisher holds outstanding",
            })
        }
    }
}

/// The future of [`Publisher::reserve_async`].
pub struct PublishReserveFuture<'a, M: SharedMemory> {
    publisher: Option<&'a mut Publisher<M>>,
    len: usize,
}

impl<'a, M: SharedMemory> std::future::Future for PublishReserveFuture<'a, M> {
    type Output = Result<PublishSlot<'a, M>, SendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        let len = this.len;
        let Some(p) = this.publisher.as_mut() else {
            // Polled after it completed.
            return Poll::Ready(Err(SendError::Closed));
        };
        if let Err(e) = p.check(len) {
            this.publisher = None;
            return Poll::Ready(Err(e.into()));
        }
        let spin = p.wait.async_spin();
        let (mut step, parked) = p.step();
        match wait::poll_step(&mut step, parked, spin, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.publisher = None;
                Poll::Ready(Err(e.into()))
            }
            Poll::Ready(Ok(())) => {
                let p = this.publisher.take().expect("present above");
                Poll::Ready(Ok(p.open(len)))
            }
        }
    }
}

impl<M: SharedMemory> Drop for PublishReserveFuture<'_, M> {
    fn drop(&mut self) {
        if let Some(p) = self.publisher.as_mut() {
            p.unpark();
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for PublishReserveFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishReserveFuture")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
