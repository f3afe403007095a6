//! The subscribing end: [`Subscriber`], its step, its future.

use std::time::Duration;

use super::layout::*;
use super::{options::*, receive::*, segment::*};
use crate::format::error::{Error, RecvError, RecvTimeoutError, TryRecvError};
use crate::format::memory::SharedMemory;
use crate::format::record::Record;
use crate::os::proc::{self};
use crate::protocol::broadcast::{self as protocol};
use crate::protocol::sync::Ordering;
use crate::wait::{self, Owner, Pace, Parked, WaitMode};

impl<M: SharedMemory> Broadcast<M> {
    pub(super) fn new_subscriber(&self, line: Option<u32>, next: u64, batch: u64) -> Subscriber<M> {
        Subscriber {
            b: self.clone(),
            line,
            member: line.filter(|_| self.cfg.mode == BroadcastMode::Reliable),
            next,
            delivered: next,
            published: next,
            at: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(next)),
            batch,
            owner: Owner::current(),
            wait: if self.cfg.relayed {
                // A relayed stream arrives at the network's pace: spinning for it burns
                // a core the relay itself needs.
                WaitMode::Block { spin: RELAYED_SPIN }
            } else {
                WaitMode::default()
            },
            broken: None,
            parked: Parked::default(),
            last: None,
            // Acquire: pairs with the publisher's Release updates; an outage under way
            // when we join is reported once (the word's even value before it).
            track: Track::new(self.upstream().load(Ordering::Acquire) & !1),
        }
    }

    /// Joins as a subscriber: the first message it receives is the next one published.
    ///
    /// On a writable mapping it takes a subscriber line ([`Error::SubscribersFull`] when
    /// all are taken); on a read-only one (lossy mode only, else [`Error::ReadOnly`]) it
    /// writes nothing and polls. A read-only subscriber holds no line, so the publisher
    /// cannot count it ([`subscriber_count`](Self::subscriber_count)).
    ///
    /// # Errors
    /// As above, and [`Error::Corrupt`] for an impossible message count.
    pub fn subscriber(&self) -> Result<Subscriber<M>, Error> {
        let ctl = self.control();
        let me = proc::current_pid();
        if !self.seg.is_writable() {
            if self.cfg.mode == BroadcastMode::Reliable {
                return Err(Error::ReadOnly {
                    what: "a reliable subscriber (it publishes its position)",
                });
            }
            // Acquire: pairs with the publisher's Release store of `tail`.
            let next = ctl.tail.load(Ordering::Acquire);
            if next > protocol::MAX_TAIL {
                return Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: next,
                });
            }
            return Ok(self.new_subscriber(None, next, 1));
        }
        for i in 0..self.cfg.max_subscribers {
            let m = self.member(i);
            // The one claim every role makes: free (0) or held by a dead process, one
            // winner per line (its orderings pair with a previous subscriber's release of
            // the line and with the publisher's loads of the line set below).
            if proc::claim_role(m.pid, me, 1).is_err() {
                continue;
            }
            // Acquire: pairs with the publisher's Release store of `tail`.
            let guess = ctl.tail.load(Ordering::Acquire);
            m.position.store(guess, Ordering::Relaxed);
            // Release: the publisher reads the state with Acquire, then the position.
            m.state.store(ACTIVE, Ordering::Release);
            let next = protocol::join(ctl, m.position, guess);
            if next > protocol::MAX_TAIL {
                // Give the line back: we never joined.
                m.state.store(LEFT, Ordering::Release);
                m.pid.store(0, Ordering::Release);
                return Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: next,
                });
            }
            return Ok(self.new_subscriber(Some(i), next, (self.cfg.slots / 16).max(1)));
        }
        Err(Error::SubscribersFull {
            max: self.cfg.max_subscribers,
        })
    }
}

/// A subscriber of a broadcast.
///
/// Every way of receiving (`try_recv`, `recv`, `recv_timeout`, `recv_async` and the
/// `_pod` forms over them) runs the same step (`SubscribeStep`).
pub struct Subscriber<M: SharedMemory> {
    pub(super) b: Broadcast<M>,
    /// Its line, or `None` for a read-only (lossy) subscriber, which writes nothing.
    pub(super) line: Option<u32>,
    /// `line` in reliable mode (where the line's state and position are the member's
    /// word), `None` otherwise: one test on every receive instead of two.
    pub(super) member: Option<u32>,
    pub(super) next: u64,
    /// One past the last message delivered: `next` never goes below it (a resync after
    /// a forged tail never delivers a message twice or out of order).
    pub(super) delivered: u64,
    /// The position last published in the line (reliable): positions go out every
    /// `batch` messages and whenever the subscriber finds nothing to read, so a waiting
    /// publisher always hears of progress before the subscriber waits.
    pub(super) published: u64,
    pub(super) batch: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    pub(super) owner: Owner,
    pub(super) wait: WaitMode,
    pub(super) broken: Option<Error>,
    pub(super) parked: Parked,
    pub(super) track: Track,
    /// The number of the last message received.
    pub(super) last: Option<u64>,
    /// `next`, for a wait set watching it (see `waitable.rs`): stored when each
    /// operation's step ends.
    pub(super) at: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<M: SharedMemory> Subscriber<M> {
    /// How this subscriber waits (a read-only subscriber polls whatever the mode).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The number of the next message it will receive.
    pub fn next_message(&self) -> u64 {
        self.next
    }

    #[inline]
    pub(super) fn step<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> (SubscribeStep<'a, M>, &'a mut Parked) {
        self.step_into(Sink::Vec(buf))
    }

    #[inline]
    pub(super) fn step_into<'a>(
        &'a mut self,
        sink: Sink<'a>,
    ) -> (SubscribeStep<'a, M>, &'a mut Parked) {
        (
            SubscribeStep {
                b: &self.b,
                line: self.line,
                member: self.member,
                owner: self.owner,
                batch: self.batch,
                next: &mut self.next,
                delivered: &mut self.delivered,
                published: &mut self.published,
                broken: &mut self.broken,
                track: &mut self.track,
                sink,
                at: &self.at,
            },
            &mut self.parked,
        )
    }

    pub(super) fn pace(&self) -> Pace {
        if self.line.is_some() {
            self.wait.pace_shared()
        } else {
            Pace::Poll
        }
    }

    /// The number of the last message received (`None` before the first): with
    /// [`next_message`](Self::next_message), what a caller needs to see gaps.
    pub fn last_number(&self) -> Option<u64> {
        self.last
    }

    /// The one way every copying receive runs: one step into `sink`, tried once
    /// (`wait == None`) or waited for (`Some(timeout)`); returns the message's length.
    ///
    /// The step's common case ([`SubscribeStep::look_here`]) first, inline, on a step
    /// that does not leave this function; the whole step, out of line, for the rest.
    /// Always inline: left to itself the compiler made every receive a call (its frame
    /// and spills were a fifth of a small message's instructions).
    #[inline(always)]
    fn receive(
        &mut self,
        mut sink: Sink<'_>,
        wait: Option<Option<Duration>>,
    ) -> Result<usize, Error> {
        let (mut step, _) = self.step_into(sink.reborrow());
        if let Some(n) = step.look_here() {
            let len = step.sink.len();
            drop(step);
            self.last = Some(n);
            return Ok(len);
        }
        drop(step);
        self.receive_step(sink, wait)
    }

    #[inline(never)]
    fn receive_step(
        &mut self,
        sink: Sink<'_>,
        wait: Option<Option<Duration>>,
    ) -> Result<usize, Error> {
        let pace = match wait {
            None => Pace::Poll, // unused: a try never waits
            Some(_) => self.pace(),
        };
        let (mut step, parked) = self.step_into(sink);
        let n = match wait {
            None => wait::try_once(&mut step, parked, Error::Empty)?,
            Some(timeout) => wait::block(&mut step, pace, timeout)?,
        };
        let len = step.sink.len();
        drop(step);
        self.last = Some(n);
        Ok(len)
    }

    /// The next message if there is one now, copied into `buf` (resized to fit);
    /// returns its length.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] when there is none now, and as
    /// [`recv_into`](Self::recv_into).
    #[inline(always)]
    pub fn try_recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        Ok(self.receive(Sink::Vec(buf), None)?)
    }

    /// The next message, copied into `buf` (resized to fit); returns its length (its
    /// number is [`last_number`](Self::last_number)). Waits as long as it takes.
    ///
    /// [`RecvError::Lagged`] says how many messages were missed; the next call goes on
    /// from the oldest message still there. [`RecvError::Closed`] means the publisher
    /// closed and everything it published was read; the subscriber stays joined, and if
    /// a new publisher takes over, the next call receives its messages (so a subscriber
    /// that should follow publishers across restarts calls again after `Closed`).
    ///
    /// # Errors
    /// [`RecvError::Lagged`], [`RecvError::Closed`], [`RecvError::PeerDied`] (the
    /// publisher's process died, also an unreaped one or one that appeared after the wait
    /// began, and everything it published was read), [`RecvError::Evicted`],
    /// [`RecvError::UpstreamLost`]; `Failed` with [`Error::Truncated`] or
    /// [`Error::Corrupt`].
    ///
    /// # Examples
    /// A lossy subscriber that fell behind is told how many it missed, then goes on:
    /// ```
    /// # use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, HeapMemory, RecvError};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = BroadcastOptions::new().mode(BroadcastMode::Lossy).slots(4).max_message(8);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share();
    /// let mut publisher = Broadcast::create(mem, &opts)?.publisher()?;
    /// let mut sub = Broadcast::attach(view)?.subscriber()?;
    /// for i in 0u64..10 {
    ///     publisher.publish(&i.to_le_bytes())?; // lossy: never waits
    /// }
    /// let mut buf = Vec::new();
    /// assert_eq!(sub.recv_into(&mut buf), Err(RecvError::Lagged { missed: 7 }));
    /// assert_eq!(sub.recv_into(&mut buf), Ok(8));
    /// assert_eq!((sub.last_number(), buf.as_slice()), (Some(7), &7u64.to_le_bytes()[..]));
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
        Ok(self.receive(Sink::Vec(buf), Some(None))?)
    }

    /// [`recv_into`](Self::recv_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_into`](Self::recv_into), and [`RecvTimeoutError::Timeout`].
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        Ok(self.receive(Sink::Vec(buf), Some(Some(timeout)))?)
    }

    /// The next message, copied into `buf`, without blocking the thread; completes with
    /// its length (as [`recv_into`](Self::recv_into)) or the error that ends the wait. It
    /// runs the same step as `recv_into`: it spins for the subscriber's spin time, then
    /// parks with the [`reactor`](crate::os::reactor), which wakes it when a message is
    /// published, the publisher closes, dies or is replaced, or it is evicted, and looks
    /// at it at least every [`SLICE`](crate::os::park::SLICE) (a read-only subscriber,
    /// which nobody wakes, is found by that look).
    ///
    /// # Errors
    /// As [`recv_into`](Self::recv_into).
    ///
    /// # Cancel safety
    /// Cancellation safe: a message is taken only when the future completes; dropping it
    /// pending, or woken but not polled again, loses nothing.
    pub fn recv_into_async<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> RecvFuture<'a, M> {
        RecvFuture {
            sub: self,
            sink: Sink::Vec(buf),
        }
    }

    /// The next message if there is one now, copied once into `buf` (which it must fit);
    /// returns its length. A longer message is [`TryRecvError::MessageTooLarge`] and
    /// stays for the next call.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::MessageTooLarge`], and as
    /// [`recv_into`](Self::recv_into).
    #[inline]
    pub fn try_recv_into_slice(&mut self, buf: &mut [u8]) -> Result<usize, TryRecvError> {
        Ok(self.receive(Sink::Slice { buf, len: 0 }, None)?)
    }

    /// The next message, copied once into `buf` (which it must fit); returns its length.
    /// A longer message is [`RecvError::MessageTooLarge`] and stays for the next call.
    ///
    /// # Errors
    /// [`RecvError::MessageTooLarge`], and as [`recv_into`](Self::recv_into).
    #[inline]
    pub fn recv_into_slice(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        Ok(self.receive(Sink::Slice { buf, len: 0 }, Some(None))?)
    }

    /// [`recv_into_slice`](Self::recv_into_slice), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_into_slice`](Self::recv_into_slice), and [`RecvTimeoutError::Timeout`].
    pub fn recv_into_slice_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        Ok(self.receive(Sink::Slice { buf, len: 0 }, Some(Some(timeout)))?)
    }

    /// [`recv_into_slice`](Self::recv_into_slice) without blocking the thread.
    ///
    /// # Errors
    /// As [`recv_into_slice`](Self::recv_into_slice).
    ///
    /// # Cancel safety
    /// As [`recv_into_async`](Self::recv_into_async).
    pub fn recv_into_slice_async<'a>(&'a mut self, buf: &'a mut [u8]) -> RecvFuture<'a, M> {
        RecvFuture {
            sub: self,
            sink: Sink::Slice { buf, len: 0 },
        }
    }

    /// A record of the broadcast's type, if one is there now.
    ///
    /// # Errors
    /// As [`try_recv_into`](Self::try_recv_into), and `Failed` with
    /// [`Error::SchemaMismatch`] for another type.
    pub fn try_recv_record<T: Record>(&mut self) -> Result<T, TryRecvError> {
        self.record_with(None).map_err(Into::into)
    }

    /// The next record, of the broadcast's type.
    ///
    /// # Errors
    /// As [`recv_into`](Self::recv_into), and `Failed` with [`Error::SchemaMismatch`]
    /// for another type or [`Error::Corrupt`] for a message of another length (which is
    /// passed over).
    pub fn recv_record<T: Record>(&mut self) -> Result<T, RecvError> {
        self.record_with(Some(None)).map_err(Into::into)
    }

    /// [`recv_record`](Self::recv_record), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_record`](Self::recv_record), and [`RecvTimeoutError::Timeout`].
    pub fn recv_record_timeout<T: Record>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        self.record_with(Some(Some(timeout))).map_err(Into::into)
    }

    fn record_with<T: Record>(&mut self, wait: Option<Option<Duration>>) -> Result<T, Error> {
        self.b.check_schema::<T>()?;
        let mut buf = Vec::with_capacity(std::mem::size_of::<T>());
        self.receive(Sink::Vec(&mut buf), wait)?;
        pod_of(&buf)
    }

    /// [`recv_record`](Self::recv_record) without blocking the thread.
    ///
    /// # Errors
    /// As [`recv_record`](Self::recv_record).
    ///
    /// # Cancel safety
    /// As [`recv_into_async`](Self::recv_into_async).
    pub fn recv_record_async<T: Record>(&mut self) -> RecvRecordFuture<'_, M, T> {
        let refused = self.b.check_schema::<T>().err();
        RecvRecordFuture {
            sub: self,
            buf: Vec::with_capacity(std::mem::size_of::<T>()),
            refused,
            record: std::marker::PhantomData,
        }
    }

    /// One poll of the step into `sink`: the async forms' core.
    fn poll_into(
        &mut self,
        sink: Sink<'_>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<usize, Error>> {
        let spin = self.wait.async_spin();
        let (mut step, parked) = self.step_into(sink);
        match wait::poll_step(&mut step, parked, spin, cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Ready(Ok(n)) => {
                let len = step.sink.len();
                drop(step);
                self.last = Some(n);
                std::task::Poll::Ready(Ok(len))
            }
        }
    }

    pub(super) fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let mut none = Vec::new();
        let (mut step, parked) = self.step(&mut none);
        parked.release(&mut step);
    }
}

/// A record out of a message of the record's size.
pub(super) fn pod_of<T: Record>(buf: &[u8]) -> Result<T, Error> {
    if buf.len() != std::mem::size_of::<T>() {
        return Err(Error::Corrupt {
            what: "a record message's length",
            found: buf.len() as u64,
        });
    }
    Ok(bytemuck::pod_read_unaligned(buf))
}

impl<M: SharedMemory> Drop for Subscriber<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // A forked child's copy: the line is the parent's.
            return;
        }
        self.unpark();
        let Some(i) = self.line else { return };
        let m = self.b.member(i);
        // Leave only a line that is still ours (an evicted line we keep until now).
        if m.pid.load(Ordering::Relaxed) != self.owner.pid() {
            return;
        }
        // Release: pairs with the publisher's Acquire state load in `rescan`.
        m.state.store(LEFT, Ordering::Release);
        // Release: pairs with the Acquire pid loads of the next claimer and the publisher.
        m.pid.store(0, Ordering::Release);
        // The publisher may be waiting on us: let it look again.
        let ctl = self.b.control();
        if ctl.publisher_sleeping.load(Ordering::Relaxed) != 0 {
            wake_publisher(ctl);
        }
    }
}

/// The future of [`Subscriber::recv_into_async`] and
/// [`Subscriber::recv_into_slice_async`]: completes with the message's length.
pub struct RecvFuture<'a, M: SharedMemory> {
    sub: &'a mut Subscriber<M>,
    sink: Sink<'a>,
}

impl<M: SharedMemory> std::future::Future for RecvFuture<'_, M> {
    type Output = Result<usize, RecvError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        this.sub
            .poll_into(this.sink.reborrow(), cx)
            .map_err(Into::into)
    }
}

impl<M: SharedMemory> Drop for RecvFuture<'_, M> {
    fn drop(&mut self) {
        self.sub.unpark();
    }
}

/// The future of [`Subscriber::recv_record_async`].
pub struct RecvRecordFuture<'a, M: SharedMemory, T: Record> {
    sub: &'a mut Subscriber<M>,
    buf: Vec<u8>,
    /// An error found before the first poll (a record of another type).
    refused: Option<Error>,
    record: std::marker::PhantomData<fn() -> T>,
}

impl<M: SharedMemory, T: Record> std::future::Future for RecvRecordFuture<'_, M, T> {
    type Output = Result<T, RecvError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(e) = this.refused {
            return std::task::Poll::Ready(Err(e.into()));
        }
        this.sub
            .poll_into(Sink::Vec(&mut this.buf), cx)
            .map(|r| r.and_then(|_| pod_of(&this.buf)).map_err(Into::into))
    }
}

impl<M: SharedMemory, T: Record> Drop for RecvRecordFuture<'_, M, T> {
    fn drop(&mut self) {
        self.sub.unpark();
    }
}

/// Subscribers as a [`Stream`](futures_core::Stream) of owned messages (with the
/// `futures` feature), as a channel's [`Receiver`](crate::channel::Receiver):
/// `Some(Ok(bytes))` per message, `None` once the publisher closed and everything was
/// read, `Some(Err(..))` for a lag, an eviction and any other end. Polling it runs the
/// same step as [`Subscriber::recv_into`] and is cancellation safe as
/// [`Subscriber::recv_into_async`]. (A broadcast's `Closed` is not final: a new publisher
/// may take over; polling the stream again after `None` receives its messages.)
#[cfg(feature = "futures")]
impl<M: SharedMemory> futures_core::Stream for Subscriber<M> {
    type Item = Result<Vec<u8>, RecvError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        let mut v = Vec::new();
        match this.poll_into(Sink::Vec(&mut v), cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(v))),
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for Subscriber<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("line", &self.line)
            .field("next", &self.next)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}

impl<M: SharedMemory, T: Record> std::fmt::Debug for RecvRecordFuture<'_, M, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvRecordFuture").finish_non_exhaustive()
    }
}
