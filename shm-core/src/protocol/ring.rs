//! The single-producer single-consumer ring protocol, over [`crate::sync`] atomics.
//!
//! Positions (`tail`, written only by the producer; `head`, written only by the consumer)
//! are byte counts that only grow; the index into the ring is `pos & (capacity - 1)`. A
//! message is an 8-byte header (its length) followed by the payload padded to 8 bytes,
//! and never straddles the end of the ring: when it would, the producer writes a PAD
//! header and continues at index 0. Everything read from the other side (its position,
//! a message length) is checked before use; a value no honest peer could write is
//! [`Corrupt`].
//!
//! Orderings:
//! * the producer publishes `tail` with `Release` after writing header and payload; the
//!   consumer loads it with `Acquire` before reading them;
//! * the consumer publishes `head` with `Release` after reading a message; the producer
//!   loads it with `Acquire` before overwriting that space.
//!
//! Sleeping without lost wake-ups: a side about to sleep reads the futex word
//! (`Acquire`), sets its `sleeping` flag, issues `fence(SeqCst)`, and checks the other
//! side's position once more; the other side publishes its position, issues
//! `fence(SeqCst)`, and reads the flag. The two fences order the two store→load pairs, so
//! either the sleeper sees the new position or the publisher sees the flag and bumps the
//! futex word (`Release`) and wakes it; a bump that lands before the sleeper's
//! `futex_wait` makes the wait return at once.

use std::time::Duration;

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// The length a PAD header carries.
pub const PAD: u64 = u32::MAX as u64;
/// Bytes of a message header.
pub const MSG_HEADER: u64 = 8;

/// Bytes a message of `len` takes in the ring.
pub fn footprint(len: u64) -> u64 {
    MSG_HEADER + len.div_ceil(8) * 8
}

/// A futex: sleep while a word holds a value, and wake the sleepers.
pub trait Futex {
    /// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). May
    /// return early for any reason.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes every sleeper on `word`.
    fn wake(&self, word: &AtomicU32);
}

/// The ring's bytes, addressed in 8-byte words at 8-aligned offsets below the capacity.
pub trait Words {
    /// Loads the word at `off`.
    fn load(&self, off: u64) -> u64;
    /// Stores the word at `off`.
    fn store(&self, off: u64, value: u64);
}

/// The shared control words of one ring.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    /// Producer position.
    pub tail: &'a AtomicU64,
    /// Consumer position.
    pub head: &'a AtomicU64,
    /// Bumped by the producer to wake a sleeping consumer.
    pub data_seq: &'a AtomicU32,
    /// Bumped by the consumer to wake a sleeping producer.
    pub space_seq: &'a AtomicU32,
    /// Non-zero while the consumer sleeps or is about to.
    pub consumer_sleeping: &'a AtomicU32,
    /// Non-zero while the producer sleeps or is about to.
    pub producer_sleeping: &'a AtomicU32,
    /// [`PRODUCER_CLOSED`] | [`CONSUMER_CLOSED`].
    pub closed: &'a AtomicU32,
}

/// Set in `closed` when the producer has dropped its end.
pub const PRODUCER_CLOSED: u32 = 1;
/// Set in `closed` when the consumer has dropped its end.
pub const CONSUMER_CLOSED: u32 = 2;

/// A value read from the other side that no honest peer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// The consumer's position is ahead of ours or more than a ring behind.
    Head(u64),
    /// The producer's position is behind ours or more than a ring ahead.
    Tail(u64),
    /// A message length that does not fit where it stands.
    Length(u64),
}

/// The producer's private state.
#[derive(Debug)]
pub struct Producer {
    cap: u64,
    tail: u64,
    cached_head: u64,
}

impl Producer {
    /// Picks up the ring where the shared positions stand. `cap` is a power of two.
    pub fn new(cap: u64, sh: Shared<'_>) -> Result<Self, Corrupt> {
        let tail = sh.tail.load(Ordering::Acquire);
        let mut p = Producer {
            cap,
            tail,
            cached_head: tail,
        };
        p.refresh_head(sh)?;
        Ok(p)
    }

    /// The ring's capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    fn free(&self) -> u64 {
        self.cap - self.tail.wrapping_sub(self.cached_head)
    }

    fn refresh_head(&mut self, sh: Shared<'_>) -> Result<(), Corrupt> {
        // Acquire: pairs with the consumer's Release store in `Consumer::release`, so its
        // reads of the space are done before we overwrite it.
        let head = sh.head.load(Ordering::Acquire);
        if self.tail.wrapping_sub(head) > self.cap {
            return Err(Corrupt::Head(head));
        }
        self.cached_head = head;
        Ok(())
    }

    fn has_room(&mut self, sh: Shared<'_>, bytes: u64) -> Result<bool, Corrupt> {
        if self.free() >= bytes {
            return Ok(true);
        }
        self.refresh_head(sh)?;
        Ok(self.free() >= bytes)
    }

    /// Room for a message of `len` bytes (`footprint(len) <= capacity`, checked by the
    /// caller): `Some(offset of its payload)`, or `None` if the ring is too full now.
    /// May publish a PAD to wrap to the start.
    pub fn try_reserve(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
        len: u64,
    ) -> Result<Option<u64>, Corrupt> {
        let need = footprint(len);
        debug_assert!(need <= self.cap);
        let idx = self.tail & (self.cap - 1);
        let contiguous = self.cap - idx;
        if need > contiguous {
            if !self.has_room(sh, contiguous)? {
                return Ok(None);
            }
            words.store(idx, PAD);
            self.tail = self.tail.wrapping_add(contiguous);
            self.publish(sh, futex);
            return self.try_reserve(sh, words, futex, len);
        }
        if !self.has_room(sh, need)? {
            return Ok(None);
        }
        Ok(Some(idx + MSG_HEADER))
    }

    /// Publishes the message of `len` bytes reserved last, whose payload the caller wrote.
    pub fn commit(&mut self, sh: Shared<'_>, words: &impl Words, futex: &impl Futex, len: u64) {
        words.store(self.tail & (self.cap - 1), len);
        self.tail = self.tail.wrapping_add(footprint(len));
        self.publish(sh, futex);
    }

    fn publish(&mut self, sh: Shared<'_>, futex: &impl Futex) {
        // Release: pairs with the consumer's Acquire load of `tail` (header and payload
        // written above become visible with it).
        sh.tail.store(self.tail, Ordering::Release);
        // SeqCst fence: orders this store before the flag load below, against the
        // consumer's flag store → fence → tail load in `Consumer::prepare_sleep`.
        fence(Ordering::SeqCst);
        if sh.consumer_sleeping.load(Ordering::Relaxed) != 0 {
            // Release: pairs with the Acquire load of `data_seq` in `prepare_sleep`.
            sh.data_seq.fetch_add(1, Ordering::Release);
            futex.wake(sh.data_seq);
        }
    }

    /// Gets ready to sleep until there is room for `bytes`: `Some(word value)` to pass to
    /// `Futex::wait` on `space_seq`, or `None` if room appeared or the consumer closed
    /// (don't sleep; look again).
    pub fn prepare_sleep(&mut self, sh: Shared<'_>, bytes: u64) -> Result<Option<u32>, Corrupt> {
        // Acquire: pairs with the consumer's Release bump in `Consumer::publish`.
        let seq = sh.space_seq.load(Ordering::Acquire);
        sh.producer_sleeping.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the one in `Consumer::publish` (see the module docs).
        fence(Ordering::SeqCst);
        // A close by the consumer bumps `space_seq` after setting its bit, so having read
        // `seq` with Acquire we see a close that the bump we read announced.
        if self.has_room(sh, bytes)? || sh.closed.load(Ordering::Acquire) & CONSUMER_CLOSED != 0 {
            sh.producer_sleeping.store(0, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(seq))
    }

    /// Clears the sleeping flag after a wait.
    pub fn done_sleeping(&self, sh: Shared<'_>) {
        sh.producer_sleeping.store(0, Ordering::Relaxed);
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub struct Consumer {
    cap: u64,
    head: u64,
    cached_tail: u64,
}

impl Consumer {
    /// Picks up the ring where the shared positions stand.
    pub fn new(cap: u64, sh: Shared<'_>) -> Result<Self, Corrupt> {
        let head = sh.head.load(Ordering::Acquire);
        let mut c = Consumer {
            cap,
            head,
            cached_tail: head,
        };
        c.refresh_tail(sh)?;
        Ok(c)
    }

    fn refresh_tail(&mut self, sh: Shared<'_>) -> Result<(), Corrupt> {
        // Acquire: pairs with the producer's Release store in `Producer::publish`.
        let tail = sh.tail.load(Ordering::Acquire);
        if tail.wrapping_sub(self.head) > self.cap {
            return Err(Corrupt::Tail(tail));
        }
        self.cached_tail = tail;
        Ok(())
    }

    fn has_data(&mut self, sh: Shared<'_>) -> Result<bool, Corrupt> {
        if self.cached_tail != self.head {
            return Ok(true);
        }
        self.refresh_tail(sh)?;
        Ok(self.cached_tail != self.head)
    }

    /// The next message: `Some((payload offset, length))`, or `None` if the ring is
    /// empty now. Skips PADs.
    pub fn try_peek(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
    ) -> Result<Option<(u64, u64)>, Corrupt> {
        loop {
            if !self.has_data(sh)? {
                return Ok(None);
            }
            let idx = self.head & (self.cap - 1);
            let len = words.load(idx);
            let available = self.cached_tail.wrapping_sub(self.head);
            if len == PAD {
                let skip = self.cap - idx;
                if skip > available {
                    return Err(Corrupt::Length(len));
                }
                self.head = self.head.wrapping_add(skip);
                self.publish(sh, futex);
                continue;
            }
            let need = MSG_HEADER.saturating_add(len.saturating_add(7) / 8 * 8);
            if len > self.cap || need > self.cap - idx || need > available {
                return Err(Corrupt::Length(len));
            }
            return Ok(Some((idx + MSG_HEADER, len)));
        }
    }

    /// Frees the message of `len` bytes returned by the last `try_peek`.
    pub fn release(&mut self, sh: Shared<'_>, futex: &impl Futex, len: u64) {
        self.head = self.head.wrapping_add(footprint(len));
        self.publish(sh, futex);
    }

    fn publish(&mut self, sh: Shared<'_>, futex: &impl Futex) {
        // Release: pairs with the producer's Acquire load of `head`.
        sh.head.store(self.head, Ordering::Release);
        // SeqCst fence: pairs with the one in `Producer::prepare_sleep`.
        fence(Ordering::SeqCst);
        if sh.producer_sleeping.load(Ordering::Relaxed) != 0 {
            // Release: pairs with the Acquire load of `space_seq` in `prepare_sleep`.
            sh.space_seq.fetch_add(1, Ordering::Release);
            futex.wake(sh.space_seq);
        }
    }

    /// Gets ready to sleep until data arrives: `Some(word value)` to pass to
    /// `Futex::wait` on `data_seq`, or `None` if data appeared or the producer closed.
    pub fn prepare_sleep(&mut self, sh: Shared<'_>) -> Result<Option<u32>, Corrupt> {
        // Acquire: pairs with the producer's Release bump in `Producer::publish`.
        let seq = sh.data_seq.load(Ordering::Acquire);
        sh.consumer_sleeping.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the one in `Producer::publish` (see the module docs).
        fence(Ordering::SeqCst);
        // As in `Producer::prepare_sleep`: a close bumps `data_seq` after setting its bit.
        // (Found by the loom model: without this check a consumer that looked at `closed`
        // before the close and at `data_seq` after it slept with no one left to wake it.)
        if self.has_data(sh)? || sh.closed.load(Ordering::Acquire) & PRODUCER_CLOSED != 0 {
            sh.consumer_sleeping.store(0, Ordering::Relaxed);
            return Ok(None);
        }
        Ok(Some(seq))
    }

    /// Clears the sleeping flag after a wait.
    pub fn done_sleeping(&self, sh: Shared<'_>) {
        sh.consumer_sleeping.store(0, Ordering::Relaxed);
    }
}
