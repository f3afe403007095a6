//! The subscribing end: [`Subscriber`], its step, its future.

use std::time::Duration;

use super::layout::*;
use super::{options::*, receive::*, segment::*};
use crate::format::error::Error;
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
            next,
            delivered: next,
            published: next,
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
            track: Track {
                resynced: false,
                read_any: false,
                // Acquire: pairs with the publisher's Release updates; an outage under
                // way when we join is reported once (the word's even value before it).
                upstream_seen: self.upstream().load(Ordering::Acquire) & !1,
                base: 0,
            },
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
    pub fn subscribe(&self) -> Result<Subscriber<M>, Error> {
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

    /// The same as [`subscribe`](Self::subscribe), named like [`publisher`](Self::publisher)
    /// (and like a channel's [`sender`](crate::Channel::sender) /
    /// [`receiver`](crate::Channel::receiver)).
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub fn subscriber(&self) -> Result<Subscriber<M>, Error> {
        self.subscribe()
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
                owner: self.owner,
                batch: self.batch,
                next: &mut self.next,
                delivered: &mut self.delivered,
                published: &mut self.published,
                broken: &mut self.broken,
                track: &mut self.track,
                sink,
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

    /// The next message, copied into `buf` (resized to fit); returns its number.
    /// Waits as long as it takes.
    ///
    /// [`Error::Lagged`] says how many messages were missed; the next call goes on from
    /// the oldest message still there. [`Error::Closed`] means the publisher closed and
    /// everything it published was read; the subscriber stays joined, and if a new
    /// publisher takes over, the next call receives its messages (so a subscriber that
    /// should follow publishers across restarts calls `recv` again after `Closed`).
    ///
    /// # Errors
    /// [`Error::Lagged`], [`Error::Closed`], [`Error::PeerDied`] (the publisher's process
    /// died, also an unreaped one or one that appeared after the wait began, and
    /// everything it published was read), [`Error::Evicted`], [`Error::Truncated`],
    /// [`Error::Corrupt`].
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_impl(buf, None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u64, Error> {
        self.recv_impl(buf, Some(timeout))
    }

    /// The next message if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`] when there is none now, and as [`recv`](Self::recv).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        let (mut step, _) = self.step(buf);
        wait::try_once(&mut step, Error::Empty)
    }

    /// The next message, copied once into `buf` (which it must fit), waiting at most
    /// `timeout` (`None`: as long as it takes); returns its number and length. A message
    /// longer than `buf` is [`Error::MessageTooLarge`] and stays for the next call.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_slice(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(u64, usize), Error> {
        let pace = self.pace();
        let (mut step, _) = self.step_into(Sink::Slice { buf, len: 0 });
        let n = wait::block(&mut step, pace, timeout)?;
        let len = match step.sink {
            Sink::Slice { len, .. } => len,
            Sink::Vec(v) => v.len(),
        };
        Ok((n, len))
    }

    /// The next record, of the broadcast's type.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] for another type, and as [`recv`](Self::recv).
    pub fn recv_pod<T: Record>(&mut self) -> Result<T, Error> {
        self.recv_pod_numbered().map(|(_, v)| v)
    }

    /// [`recv_pod`](Self::recv_pod), with the message's number.
    ///
    /// # Errors
    /// As [`recv_pod`](Self::recv_pod).
    pub fn recv_pod_numbered<T: Record>(&mut self) -> Result<(u64, T), Error> {
        self.b.check_schema::<T>()?;
        let mut buf = Vec::with_capacity(std::mem::size_of::<T>());
        let n = self.recv(&mut buf)?;
        pod_of(&buf).map(|v| (n, v))
    }

    pub(super) fn recv_impl(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<u64, Error> {
        let pace = self.pace();
        let (mut step, _) = self.step(buf);
        wait::block(&mut step, pace, timeout)
    }

    /// The next message, copied into `buf`, without blocking the thread; completes with
    /// its number (as [`recv`](Self::recv)) or the error that ends the wait. It runs the
    /// same step as `recv`: it spins for the subscriber's spin time, then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when a message is published, the
    /// publisher closes, dies or is replaced, or it is evicted, and looks at it at least
    /// every [`SLICE`](crate::os::park::SLICE) (a read-only subscriber, which nobody wakes,
    /// is found by that look).
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// Cancellation safe: a message is taken only when the future completes; dropping it
    /// pending, or woken but not polled again, loses nothing.
    pub fn recv_async<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> SubscriberRecv<'a, M> {
        SubscriberRecv { sub: self, buf }
    }

    /// The next record, without blocking the thread ([`recv_pod`](Self::recv_pod)).
    ///
    /// # Errors
    /// As [`recv_pod`](Self::recv_pod).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async).
    pub async fn recv_pod_async<T: Record>(&mut self) -> Result<T, Error> {
        self.b.check_schema::<T>()?;
        let mut buf = Vec::with_capacity(std::mem::size_of::<T>());
        self.recv_async(&mut buf).await?;
        pod_of(&buf)
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

/// The future of [`Subscriber::recv_async`].
pub struct SubscriberRecv<'a, M: SharedMemory> {
    pub(super) sub: &'a mut Subscriber<M>,
    pub(super) buf: &'a mut Vec<u8>,
}

impl<M: SharedMemory> std::future::Future for SubscriberRecv<'_, M> {
    type Output = Result<u64, Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let spin = this.sub.wait.async_spin();
        let (mut step, parked) = this.sub.step(this.buf);
        wait::poll_step(&mut step, parked, spin, cx)
    }
}

impl<M: SharedMemory> Drop for SubscriberRecv<'_, M> {
    fn drop(&mut self) {
        self.sub.unpark();
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

impl<M: SharedMemory> std::fmt::Debug for SubscriberRecv<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberRecv").finish_non_exhaustive()
    }
}
