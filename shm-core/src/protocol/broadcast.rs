//! The broadcast protocol on its own, over [`crate::protocol::sync`] atomics, so that loom can
//! model-check the code that runs over mappings (`tests/loom.rs`).
//!
//! **Slots.** Message `n` lives in slot `n % S`. Each slot has a `stamp`: `2n + 1` while
//! message `n` is being written, `2n + 2` once it is complete. The publisher makes the
//! stamp odd, writes the length and the payload (`Release`), makes the stamp even
//! (`Release`), then publishes `tail = n + 1` (`Release`). A reader of message `p` loads
//! the stamp (`Acquire`), the length and the payload (`Acquire`), and the stamp again: it
//! keeps the copy only if both loads saw `2p + 2`. So a reader never delivers a message
//! that was overwritten while it copied it out (the seqlock argument of
//! [`crate::protocol::seqlock`], per slot).
//!
//! **Lossy.** The publisher never waits. While it writes message `t` (`tail == t`) it
//! destroys message `t - S`, so the messages a reader can still get are `t - S + 1 .. t`.
//! A reader behind that is told how many it missed and resumes at `t - S + 1`.
//!
//! **Reliable.** Each subscriber publishes `position` (the next message it will read,
//! `Release` after each read). Before writing message `n` the publisher waits until every
//! active subscriber's position is at least `n + 1 - S` (the message the slot holds was
//! read by all). Joining is a store-buffering handshake: the subscriber stores its
//! position, increments `members`, issues `fence(SeqCst)`, then loads `tail`; the
//! publisher stores `tail`, issues `fence(SeqCst)`, and loads `members` before the next
//! message, rescanning the subscribers when it changed. Either the publisher sees the join before it could
//! overwrite the joiner's first message, or the joiner sees the newer tail and starts
//! there.
//!
//! **Sleeping.** A subscriber about to sleep increments `sleepers`, issues
//! `fence(SeqCst)` and looks at `tail` again; the publisher, after storing `tail`, issues `fence(SeqCst)` and wakes
//! (`data_seq` bump + futex wake) only if `sleepers` is non-zero: one wake per publish at
//! most, none when nobody sleeps. The reliable publisher sleeps the same way on
//! `space_seq` with its `publisher_sleeping` flag, against each subscriber's position
//! store + `fence(SeqCst)` + flag load.

use crate::protocol::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// The publisher's shared words.
#[derive(Clone, Copy)]
pub struct Control<'a> {
    /// Messages published so far.
    pub tail: &'a AtomicU64,
    /// Bumped to wake sleeping subscribers.
    pub data_seq: &'a AtomicU32,
    /// Subscribers sleeping or about to.
    pub sleepers: &'a AtomicU32,
    /// Bumped to wake a sleeping publisher (reliable).
    pub space_seq: &'a AtomicU32,
    /// Non-zero while the publisher sleeps or is about to.
    pub publisher_sleeping: &'a AtomicU32,
    /// Bumped by every subscriber that joins (reliable).
    pub members: &'a AtomicU32,
}

impl std::fmt::Debug for Control<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are another process's to write: a debug print does not read them.
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

/// One slot's guard words.
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    /// `2n + 1` while message `n` is written, `2n + 2` once it is complete.
    pub stamp: &'a AtomicU64,
    /// The message's length.
    pub len: &'a AtomicU64,
}

impl std::fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are another process's to write: a debug print does not read them.
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

/// The stamp of message `n` once complete.
#[inline(always)]
pub fn done_stamp(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_add(2)
}

/// The first message still readable when `tail` messages are published into `slots`
/// slots (the publisher may be overwriting the one before it).
pub fn oldest_readable(tail: u64, slots: u64) -> u64 {
    tail.saturating_add(1).saturating_sub(slots)
}

/// The largest message count an honest publisher reaches (2^62: centuries at any rate);
/// a `tail` beyond it was written by a hostile peer.
pub const MAX_TAIL: u64 = 1 << 62;

/// A slot length with this bit set is a **notice**, not a message: the publisher tells
/// every subscriber something about the stream at that message number, with no payload.
/// Honest messages never have it (`max_message` is far below 2^63).
pub const NOTICE: u64 = 1 << 63;
/// Notice kind bits (62..56) of a notice length.
const NOTICE_KIND_SHIFT: u32 = 56;
/// Notice: `k` numbers (the low 56 bits, at least 1, this one included) were lost
/// upstream; the next message is number `n + k`.
const NOTICE_GAP: u64 = 1;

/// The largest gap one notice reports (larger gaps take several notices).
pub const MAX_GAP: u64 = (1 << NOTICE_KIND_SHIFT) - 1;

/// What a notice at message number `n` says. Either way the next message is `n + k`:
/// a notice moves the numbering on, so a relay keeps its source's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Numbers `n .. n + k` (`k` from 1 to [`MAX_GAP`]) were lost upstream: read as
    /// `Lagged { missed: k }`.
    Gap(u64),
}

impl Notice {
    /// How many numbers it covers (its own included).
    pub fn numbers(self) -> u64 {
        match self {
            Notice::Gap(k) => k,
        }
    }

    /// The slot length that carries this notice.
    pub fn encode(self) -> u64 {
        match self {
            Notice::Gap(k) => NOTICE | (NOTICE_GAP << NOTICE_KIND_SHIFT) | k.clamp(1, MAX_GAP),
        }
    }

    /// The notice a slot length carries, if it is a well-formed one.
    pub fn decode(len: u64) -> Option<Notice> {
        if len & NOTICE == 0 {
            return None;
        }
        let kind = (len & !NOTICE) >> NOTICE_KIND_SHIFT;
        let low = len & MAX_GAP;
        match (kind, low) {
            (NOTICE_GAP, 1..) => Some(Notice::Gap(low)),
            _ => None,
        }
    }
}

/// Starts writing message `n` into its slot: the stamp goes odd, so readers of the
/// message that was there stop trusting their copies.
#[inline(always)]
pub fn begin_write(slot: Slot<'_>, n: u64) {
    // Relaxed store, then Release stores of the length and payload: a reader that sees
    // any of those synchronises with it, so it sees this odd stamp (or later) on its
    // second stamp load.
    slot.stamp
        .store(n.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
}

/// Finishes message `n` (its payload was written with `Release` stores) and publishes it:
/// `tail` becomes `next` (`n + 1`, or further for a notice that moves the numbering on).
/// Returns whether any subscriber sleeps (then the caller wakes them).
#[inline(always)]
pub fn end_write(c: Control<'_>, slot: Slot<'_>, n: u64, len: u64, next: u64) -> bool {
    // Release: pairs with the reader's Acquire load of the length.
    slot.len.store(len, Ordering::Release);
    // Release: pairs with the reader's Acquire first stamp load.
    slot.stamp.store(done_stamp(n), Ordering::Release);
    // Release: pairs with the subscriber's Acquire load of `tail`.
    c.tail.store(next, Ordering::Release);
    // SeqCst fence: orders the tail store before the sleepers load (and before the
    // `members` load of the next message), against the subscriber's increment, fence and
    // tail load in `prepare_sleep` and `join`.
    fence(Ordering::SeqCst);
    c.sleepers.load(Ordering::Relaxed) != 0
}

/// Wakes the subscribers: bump `data_seq` (the caller then makes the futex call).
pub fn bump_data(c: Control<'_>) {
    // Release: pairs with the Acquire load of `data_seq` before a subscriber sleeps.
    c.data_seq.fetch_add(1, Ordering::Release);
}

/// What one read attempt of message `p` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<R> {
    /// The message, copied out intact.
    Got(R),
    /// Not published yet.
    Empty,
    /// Overwritten before or while it was copied: resume at `resume`.
    Lagged {
        /// The first message still readable.
        resume: u64,
    },
    /// A length no honest publisher writes (its raw value): message `p` is unreadable.
    Corrupt(u64),
    /// Message `p` is gone, and the tail that says where to resume is one no honest
    /// publisher writes (its raw value): nothing moved; look again later.
    BadTail(u64),
}

/// One attempt at reading message `p` from `slot`: `copy(len)` copies the payload out with
/// `Acquire` loads (and must not trust `len` beyond `max_len`, which is checked first).
///
/// The reader polls the slot's stamp, not `tail`: while messages flow, and while it waits
/// for the next one, it touches only the slot's lines. `tail` is read only when a later
/// message's stamp says `p` was overwritten, to find where to resume.
pub fn try_read<R>(
    c: Control<'_>,
    slot: Slot<'_>,
    p: u64,
    slots: u64,
    max_len: u64,
    copy: impl FnOnce(u64) -> R,
) -> Attempt<R> {
    // Acquire: pairs with the Release stamp store in `end_write`.
    let s1 = slot.stamp.load(Ordering::Acquire);
    let want = done_stamp(p);
    if s1 < want {
        // Stamps only grow per slot: an older one (or `2p + 1`, being written) means
        // message `p` is not published yet, as far as we can see.
        return Attempt::Empty;
    }
    if s1 > want {
        // A later message took the slot: `p` is gone. `tail` says where to resume.
        // Acquire: pairs with the Release store of `tail` in `end_write`.
        let tail = c.tail.load(Ordering::Acquire);
        if tail > MAX_TAIL {
            return Attempt::BadTail(tail);
        }
        let resume = if tail.saturating_sub(p) > slots {
            oldest_readable(tail, slots)
        } else {
            oldest_readable(tail, slots).max(p.saturating_add(1))
        };
        return Attempt::Lagged { resume };
    }
    // Acquire: pairs with the Release length store in `end_write`.
    let len = slot.len.load(Ordering::Acquire);
    let value = (len <= max_len).then(|| copy(len));
    // Relaxed: the Acquire loads in `copy` (and of `len`) keep this load after them.
    let s2 = slot.stamp.load(Ordering::Relaxed);
    if s2 != s1 {
        // Acquire as above.
        let tail = c.tail.load(Ordering::Acquire);
        if tail > MAX_TAIL {
            return Attempt::BadTail(tail);
        }
        return Attempt::Lagged {
            resume: oldest_readable(tail, slots).max(p.saturating_add(1)),
        };
    }
    match value {
        Some(v) => Attempt::Got(v),
        None => Attempt::Corrupt(len),
    }
}

/// A reliable subscriber's release of message `p`: publish `position = p + 1`. Returns
/// whether the publisher sleeps (then the caller bumps `space_seq` and wakes it).
pub fn release(c: Control<'_>, position: &AtomicU64, p: u64) -> bool {
    // Release: pairs with the publisher's Acquire load of the position before it
    // overwrites the slot.
    position.store(p.wrapping_add(1), Ordering::Release);
    // SeqCst fence: pairs with the one in `publisher_prepare_sleep`.
    fence(Ordering::SeqCst);
    c.publisher_sleeping.load(Ordering::Relaxed) != 0
}

/// Wakes the publisher: bump `space_seq` (the caller then makes the futex call).
pub fn bump_space(c: Control<'_>) {
    // Release: pairs with the Acquire load of `space_seq` in `publisher_prepare_sleep`.
    c.space_seq.fetch_add(1, Ordering::Release);
}

/// A reliable subscriber joins: stores `guess` (a tail it read, never above the real
/// one) as its position, announces itself, and returns the position it starts at.
pub fn join(c: Control<'_>, position: &AtomicU64, guess: u64) -> u64 {
    position.store(guess, Ordering::Release);
    c.members.fetch_add(1, Ordering::Relaxed);
    // SeqCst fence: the store-buffering handshake (module docs); pairs with the fence in
    // `end_write`, which stands between the publisher's tail store and its next load of
    // `members`.
    fence(Ordering::SeqCst);
    // Acquire: pairs with the Release store of `tail` in `end_write`.
    let start = c.tail.load(Ordering::Acquire);
    position.store(start, Ordering::Release);
    start
}

/// The publisher's look at `members` before each message: `true` if someone joined since
/// `seen` (then it rescans the subscribers); updates `seen`.
///
/// Called before writing each message, so after the previous message's `end_write`, whose
/// `fence(SeqCst)` orders our tail store before this load (the handshake with `join`).
#[inline(always)]
pub fn members_changed(c: Control<'_>, seen: &mut u32) -> bool {
    // Acquire: pairs with the joiner's Release store of its position before its increment
    // (release sequence through the RMW).
    let now = c.members.load(Ordering::Acquire);
    let changed = now != *seen;
    *seen = now;
    changed
}

/// A subscriber gets ready to sleep until message `p` is published: `Some(word)` to pass
/// to the futex wait on `data_seq`, or `None` if it is there now. On `Some`, the caller
/// must call [`done_sleeping`] after the wait.
pub fn prepare_sleep(c: Control<'_>, p: u64) -> Option<u32> {
    // Acquire: pairs with the Release bump in `bump_data`.
    let seq = c.data_seq.load(Ordering::Acquire);
    c.sleepers.fetch_add(1, Ordering::Relaxed);
    // SeqCst fence: pairs with the one in `end_write` (between the publisher's tail
    // store and its sleepers load): either it sees our increment, or we see its tail.
    fence(Ordering::SeqCst);
    // Acquire: pairs with the Release store of `tail` in `end_write`.
    if c.tail.load(Ordering::Acquire) > p {
        c.sleepers.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(seq)
}

/// Undoes [`prepare_sleep`]'s announcement after a wait.
pub fn done_sleeping(c: Control<'_>) {
    c.sleepers.fetch_sub(1, Ordering::Relaxed);
}

/// The reliable publisher gets ready to sleep until `room()` holds: `Some(word)` for the
/// futex wait on `space_seq`, or `None` if it holds now. On `Some`, the caller must call
/// [`publisher_done_sleeping`] after the wait.
pub fn publisher_prepare_sleep(c: Control<'_>, room: impl FnOnce() -> bool) -> Option<u32> {
    // Acquire: pairs with the Release bump in `bump_space`.
    let seq = c.space_seq.load(Ordering::Acquire);
    c.publisher_sleeping.store(1, Ordering::Relaxed);
    // SeqCst fence: pairs with the one in `release`.
    fence(Ordering::SeqCst);
    if room() {
        c.publisher_sleeping.store(0, Ordering::Relaxed);
        return None;
    }
    Some(seq)
}

/// Clears the publisher's sleeping flag after a wait.
pub fn publisher_done_sleeping(c: Control<'_>) {
    c.publisher_sleeping.store(0, Ordering::Relaxed);
}
