//! The single-producer single-consumer ring protocol, over [`crate::protocol::sync`] atomics.
//!
//! Positions (`tail`, written only by the producer; `head`, written only by the consumer)
//! are byte counts that only grow; the index into the ring is `pos & (capacity - 1)`. A
//! message is an 8-byte header followed by the payload padded to 8 bytes, and never
//! straddles the end of the ring: when it would, the producer writes a PAD header and
//! continues at index 0.
//!
//! The header is the publication: `VALID | len` (or `VALID | PAD`), stored with `Release`
//! after the payload; the consumer polls the header word at its own position with
//! `Acquire` and never reads `tail`, so a message costs the consumer one shared cache
//! line. The word at the producer's position is always 0: before publishing a message the
//! producer zeroes the word just past it (which is why a message needs 8 free bytes more
//! than its footprint), so stale payload bytes from an earlier lap can never pass for a
//! header. The consumer publishes `head` with `Release` after reading a message; the
//! producer loads it with `Acquire` before overwriting that space, and caches it.
//!
//! Everything read from the other side (its position, a header) is checked before use; a
//! value no honest peer could write is [`Corrupt`].
//!
//! Sleeping without lost wake-ups: a side about to sleep reads the futex word
//! (`Acquire`), sets its `sleeping` flag, issues `fence(SeqCst)`, and checks once more;
//! the other side publishes (a header, or `head`), issues `fence(SeqCst)`, and reads the
//! flag. The two fences order the two store→load pairs, so either the sleeper sees the
//! publication or the publisher sees the flag and bumps the futex word (`Release`) and
//! wakes it; a bump that lands before the sleeper's `futex_wait` makes the wait return.

use std::time::Duration;

use crate::protocol::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Set in every published header.
pub const VALID: u64 = 1 << 63;
/// The length a PAD header carries.
pub const PAD: u64 = u32::MAX as u64;
/// Bytes of a message header.
pub const MSG_HEADER: u64 = 8;
/// Bytes a message needs beyond its footprint: the zeroed word after it.
pub const TERMINATOR: u64 = 8;

/// Bytes a message of `len` takes in the ring. Every caller has bounded `len` (below
/// [`PAD`], or at most a ring's largest message), so the sum cannot overflow.
#[inline(always)]
pub fn footprint(len: u64) -> u64 {
    debug_assert!(len <= u64::MAX - MSG_HEADER - 7);
    // Rounded up to a multiple of 8 by a mask (two instructions where `div_ceil` takes
    // five): this runs twice on every message.
    MSG_HEADER + ((len + 7) & !7)
}

/// Whether a consumer position `head` and a producer position `tail` can both be true:
/// multiples of 8, `head <= tail <= head + cap`.
fn position_pair_ok(head: u64, tail: u64, cap: u64) -> bool {
    head.is_multiple_of(8) && tail.is_multiple_of(8) && head <= tail && tail - head <= cap
}

/// A futex: sleep while a word holds a value, and wake the sleepers.
pub trait Futex {
    /// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit). May
    /// return early for any reason.
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>);
    /// Wakes every sleeper on `word`.
    fn wake(&self, word: &AtomicU32);
}

/// The ring's bytes, addressed in 8-byte words by ring position (a multiple of 8; the
/// implementation wraps it into the ring, so the protocol never masks a position itself).
pub trait Words {
    /// Loads, with `order` (`Relaxed` or `Acquire`), the word that holds ring position
    /// `pos` (the implementation wraps it into the ring: `pos mod cap`).
    fn load(&self, pos: u64, order: Ordering) -> u64;
    /// Stores, with `order` (`Relaxed` or `Release`), the word that holds ring position
    /// `pos` (wrapped into the ring as by `load`).
    fn store(&self, pos: u64, value: u64, order: Ordering);
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

impl std::fmt::Debug for Shared<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are another process's to write: a debug print does not read them.
        f.debug_struct("Shared").finish_non_exhaustive()
    }
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
    /// The producer's recorded position is more than a ring away from the consumer's.
    Tail(u64),
    /// A header that no honest producer writes there (its raw value).
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
        // Acquire: pairs with a previous producer's stores of its resume point (this end
        // may be taken over from one that closed or died).
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

    /// Stores our own position again (a peer may have scribbled the shared word): the
    /// next producer resumes exactly where we stopped.
    pub fn republish(&self, sh: Shared<'_>) {
        // Release: pairs with the Acquire load of `tail` by the next producer, which
        // resumes after every byte we wrote.
        sh.tail.store(self.tail, Ordering::Release);
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.cap - self.tail.wrapping_sub(self.cached_head)
    }

    /// The largest message that fits.
    #[inline(always)]
    pub fn max_message(&self) -> u64 {
        self.cap - MSG_HEADER - TERMINATOR
    }

    fn refresh_head(&mut self, sh: Shared<'_>) -> Result<(), Corrupt> {
        // Acquire: pairs with the consumer's Release store in `Consumer::release`, so its
        // reads of the space are done before we overwrite it.
        let head = sh.head.load(Ordering::Acquire);
        // Positions are byte counts that never wrap (2^64 bytes), are multiples of 8, and
        // the consumer is never ahead of us nor more than a ring behind.
        if !position_pair_ok(head, self.tail, self.cap) {
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

    /// The free bytes the next step towards sending a `len`-byte message needs: the
    /// message and its terminator, or, when the message does not fit before the end of
    /// the ring, the PAD to the end and its terminator. [`try_reserve`](Self::try_reserve)
    /// and [`prepare_sleep`](Self::prepare_sleep) both ask exactly this, so "there is
    /// room" means the same thing to both: when `prepare_sleep` declines to sleep because
    /// of room, the next `try_reserve` makes progress.
    pub fn room_needed(&self, len: u64) -> u64 {
        let need = footprint(len);
        let contiguous = self.cap - (self.tail & (self.cap - 1));
        if need > contiguous {
            contiguous + TERMINATOR
        } else {
            need + TERMINATOR
        }
    }

    /// Room for a message of `len` bytes (`len <= max_message()`, checked by the
    /// caller): `Some(offset of its payload)`, or `None` if the ring is too full now.
    /// May publish a PAD to wrap to the start.
    ///
    /// The common case (the message fits before the end of the ring in the space already
    /// known free) is inline and reads no shared word; the rest (a fresh look at the
    /// consumer's position, a PAD) is out of line. Both give exactly what the loop below
    /// gives.
    #[inline(always)]
    pub fn try_reserve(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
        len: u64,
    ) -> Result<Option<u64>, Corrupt> {
        if let Some(off) = self.reserve_known(len) {
            return Ok(Some(off));
        }
        self.try_reserve_slow(sh, words, futex, len)
    }

    /// [`try_reserve`](Self::try_reserve)'s common case alone: `Some(offset)` when the
    /// message fits before the end of the ring in the space already known free (no
    /// shared word read, nothing published); `None` when `try_reserve` must look further.
    #[inline(always)]
    pub fn reserve_known(&self, len: u64) -> Option<u64> {
        let need = footprint(len);
        let idx = self.tail & (self.cap - 1);
        // `room_needed(len)` when the message fits before the end, and `has_room`'s first
        // test: the loop's first round, done.
        (need <= self.cap - idx && self.free() >= need + TERMINATOR).then_some(idx + MSG_HEADER)
    }

    #[inline(never)]
    fn try_reserve_slow(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
        len: u64,
    ) -> Result<Option<u64>, Corrupt> {
        let need = footprint(len);
        debug_assert!(need + TERMINATOR <= self.cap);
        // At most two steps: a PAD to the end of the ring, then the message at index 0
        // (where the whole ring is contiguous, so it cannot need a second PAD).
        for _ in 0..2 {
            if !self.has_room(sh, self.room_needed(len))? {
                return Ok(None);
            }
            let idx = self.tail & (self.cap - 1);
            let contiguous = self.cap - idx;
            if need > contiguous {
                self.publish_header(sh, words, futex, contiguous, VALID | PAD);
                continue;
            }
            return Ok(Some(idx + MSG_HEADER));
        }
        Ok(None)
    }

    /// Publishes the message of `len` bytes reserved last, whose payload the caller wrote.
    #[inline(always)]
    pub fn commit(&mut self, sh: Shared<'_>, words: &impl Words, futex: &impl Futex, len: u64) {
        self.publish_header(sh, words, futex, footprint(len), VALID | len);
    }

    /// Zeroes the word after the `span` bytes at the tail, then stores `header` at the
    /// tail, publishing both.
    #[inline(always)]
    fn publish_header(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
        span: u64,
        header: u64,
    ) {
        let next = self.tail.wrapping_add(span);
        // The terminator lies in free space (`has_room` reserved it): the consumer is not
        // reading there.
        words.store(next, 0, Ordering::Relaxed);
        // Release: pairs with the consumer's Acquire load of this header in `try_peek`;
        // the payload and the terminator written before become visible with it.
        words.store(self.tail, header, Ordering::Release);
        self.tail = next;
        // Our own resume point; the consumer never reads it to find messages.
        sh.tail.store(self.tail, Ordering::Relaxed);
        // SeqCst fence: orders the header store before the flag load below, against the
        // consumer's flag store → fence → header load in `Consumer::prepare_sleep`.
        fence(Ordering::SeqCst);
        if sh.consumer_sleeping.load(Ordering::Relaxed) != 0 {
            // Release: pairs with the Acquire load of `data_seq` in `prepare_sleep`.
            sh.data_seq.fetch_add(1, Ordering::Release);
            futex.wake(sh.data_seq);
        }
    }

    /// Gets ready to sleep until there is room for the next step of sending a `len`-byte
    /// message ([`room_needed`](Self::room_needed)): `Some(word value)` to pass to
    /// `Futex::wait` on `space_seq`, or `None` if room appeared or the consumer closed
    /// (don't sleep; look again).
    pub fn prepare_sleep(&mut self, sh: Shared<'_>, len: u64) -> Result<Option<u32>, Corrupt> {
        let bytes = self.room_needed(len);
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
    /// The span of the last frame (message or PAD) we moved past: how far an honest
    /// producer's stored position may trail ours (it stores its position just after the
    /// frame's header, and may be descheduled in between for as long as the scheduler
    /// likes).
    last_span: u64,
    /// The longest message a frame can carry: below [`PAD`], and with its footprint and
    /// terminator inside the ring (`footprint(len) + TERMINATOR <= cap` holds exactly
    /// when `len <= cap - MSG_HEADER - TERMINATOR`, as `cap` is a multiple of 8).
    max_len: u64,
}

impl Consumer {
    /// The position of the next message (its header word is at `position & (cap - 1)`).
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Stores our own position again (a peer may have scribbled the shared word): the
    /// next consumer resumes exactly where we stopped.
    pub fn republish(&self, sh: Shared<'_>) {
        // Release: pairs with the Acquire load of `head` by the producer and the next
        // consumer: our reads of the space are done.
        sh.head.store(self.head, Ordering::Release);
    }

    /// Picks up the ring where the shared positions stand.
    pub fn new(cap: u64, sh: Shared<'_>) -> Result<Self, Corrupt> {
        // Acquire: pairs with the Release store of `head` by a previous consumer.
        let head = sh.head.load(Ordering::Acquire);
        let tail = sh.tail.load(Ordering::Relaxed);
        if !position_pair_ok(head, tail, cap) {
            return Err(Corrupt::Tail(tail));
        }
        Ok(Consumer {
            cap,
            head,
            last_span: 0,
            max_len: cap.saturating_sub(MSG_HEADER + TERMINATOR).min(PAD - 1),
        })
    }

    /// Whether a published header (message or PAD) waits at our position.
    /// Whether the ring looks stalled by a scribbled frame: no message header at our
    /// position although the producer's position is past it (an honest producer stores
    /// the header before its position). Asked by a waiting consumer now and then; two
    /// answers of `true` at the same position, apart in time, are not honest: the frame
    /// or the producer's position was scribbled, and the ring cannot go on.
    ///
    /// Also `true` when our position is past the producer's by more than the last frame
    /// we read: a forged frame made us read beyond what was written (into frames of an
    /// earlier lap). Past it by at most that frame is honest: the producer stores its
    /// position after the frame's header, and a producer descheduled between the two
    /// stores (for any time at all) leaves its position one frame behind ours.
    pub fn stalled(&self, sh: Shared<'_>, words: &impl Words) -> bool {
        // Acquire: keeps the header load below after this one (on a weakly ordered CPU a
        // header read older than the position would look like a scribbled frame); the
        // producer's position store it reads is Relaxed, so it pairs with nothing.
        let tail = sh.tail.load(Ordering::Acquire);
        (tail > self.head && !self.has_data(words))
            || (self.head > tail && self.head - tail > self.last_span)
    }

    fn has_data(&self, words: &impl Words) -> bool {
        // Acquire: pairs with the Release header store in `Producer::publish_header`.
        words.load(self.head, Ordering::Acquire) != 0
    }

    /// The next message: `Some((payload offset, length))`, or `None` if the ring is
    /// empty now. Skips PADs.
    ///
    /// The common cases (nothing there; a message that fits) are inline; a PAD or a
    /// header to refuse goes out of line, to the loop that gives the same answers for
    /// these two.
    #[inline(always)]
    pub fn try_peek(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
    ) -> Result<Option<(u64, u64)>, Corrupt> {
        match self.peek_message(words) {
            Ok(m) => Ok(Some(m)),
            Err(0) => Ok(None),
            Err(_) => self.try_peek_slow(sh, words, futex),
        }
    }

    /// [`try_peek`](Self::try_peek)'s common case alone: `Ok((payload offset, length))`
    /// for a message at our position that passes every check `try_peek` makes, else
    /// `Err(header)` (0: nothing there; anything else, a PAD or a header to refuse, is
    /// for `try_peek`).
    #[inline(always)]
    pub fn peek_message(&self, words: &impl Words) -> Result<(u64, u64), u64> {
        let idx = self.head & (self.cap - 1);
        // Acquire: pairs with the Release header store in `Producer::publish_header`, so
        // the payload written before it is visible.
        let header = words.load(self.head, Ordering::Acquire);
        let len = header ^ VALID;
        // VALID set, a length below PAD (so `footprint` cannot overflow), and the message
        // and its terminator inside the ring before its end (`max_len`): the loop's
        // checks, passed.
        if len <= self.max_len && footprint(len) <= self.cap - idx {
            return Ok((idx + MSG_HEADER, len));
        }
        Err(header)
    }

    #[inline(never)]
    fn try_peek_slow(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
        futex: &impl Futex,
    ) -> Result<Option<(u64, u64)>, Corrupt> {
        loop {
            let idx = self.head & (self.cap - 1);
            // Acquire: pairs with the Release header store in `Producer::publish_header`,
            // so the payload written before it is visible.
            let header = words.load(self.head, Ordering::Acquire);
            if header == 0 {
                return Ok(None);
            }
            if header & VALID == 0 || (header & !VALID) > PAD {
                return Err(Corrupt::Length(header));
            }
            let len = header & !VALID;
            if len == PAD {
                // A PAD fills the ring to its end. At index 0 it would span a whole lap
                // and land on itself: no honest producer writes one there.
                if idx == 0 {
                    return Err(Corrupt::Length(header));
                }
                self.head = self.head.wrapping_add(self.cap - idx);
                self.last_span = self.cap - idx;
                self.publish(sh, futex);
                continue;
            }
            // A message and the terminator after it must fit before the end of the ring.
            if footprint(len) > self.cap - idx || footprint(len) + TERMINATOR > self.cap {
                return Err(Corrupt::Length(header));
            }
            return Ok(Some((idx + MSG_HEADER, len)));
        }
    }

    /// Frees the message of `len` bytes returned by the last `try_peek`.
    #[inline(always)]
    pub fn release(&mut self, sh: Shared<'_>, futex: &impl Futex, len: u64) {
        self.head = self.head.wrapping_add(footprint(len));
        self.last_span = footprint(len);
        self.publish(sh, futex);
    }

    #[inline(always)]
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
    pub fn prepare_sleep(
        &mut self,
        sh: Shared<'_>,
        words: &impl Words,
    ) -> Result<Option<u32>, Corrupt> {
        // A scribbled shared position is put right before we wait (only we write it).
        // Relaxed: our own word; the Release store in `republish` publishes it.
        if sh.head.load(Ordering::Relaxed) != self.head {
            self.republish(sh);
        }
        // Acquire: pairs with the producer's Release bump in `Producer::publish_header`.
        let seq = sh.data_seq.load(Ordering::Acquire);
        sh.consumer_sleeping.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the one in `Producer::publish_header` (module docs).
        fence(Ordering::SeqCst);
        // As in `Producer::prepare_sleep`: a close bumps `data_seq` after setting its bit.
        // (Found by the loom model: without this check a consumer that looked at `closed`
        // before the close and at `data_seq` after it slept with no one left to wake it.)
        if self.has_data(words) || sh.closed.load(Ordering::Acquire) & PRODUCER_CLOSED != 0 {
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
