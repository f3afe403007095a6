//! The seqlock protocol on its own, over the atomics of [`crate::protocol::sync`], so that the
//! same code is model-checked by loom (`tests/loom.rs`) and runs over mappings.
//!
//! Two shared words: `seq` (even: stable; odd: a write is in progress) and `owner` (0: the
//! lock is free; otherwise the pid of the writer that holds it).
//!
//! **The lock is the owner word.** A writer takes it with one compare-and-swap of `owner`
//! from 0 to its pid, so the pid of whoever holds the lock is there from the instant it is
//! held: there is no window in which the lock is held but the word still names a previous
//! writer. Only the owner writes `seq`: it makes it odd, writes the record, makes it even,
//! then clears `owner`. A writer that died holding the lock leaves its pid in `owner`;
//! another writer that finds that pid dead takes the lock over with a compare-and-swap of
//! `owner` from exactly that pid to its own. Of two thieves only one wins, and a live
//! owner can never be robbed, because its pid is not the dead pid the thief swaps from.
//!
//! The record's words are written with `Release` stores and read with `Acquire` loads
//! (plain moves on x86-64), which gives the ordering a seqlock needs without fences:
//!
//! * A reader that reads any word of write *k+1* synchronises with that store, so the
//!   writer's earlier "make odd" (sequenced before it) happens-before the reader's second
//!   sequence load: the reader sees the change and retries.
//! * A reader whose first sequence load sees the even value that ended write *k*
//!   synchronises with that `Release` store, so it sees every word of write *k*.

use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

/// One read attempt: `Ok` with what `copy` returned if no write overlapped it,
/// otherwise `Err` with the sequence value that was seen (odd: a writer is inside).
/// `copy` must read the record with `Acquire` loads.
#[inline]
pub fn read<R>(seq: &AtomicU64, copy: impl FnOnce() -> R) -> Result<R, u64> {
    // Acquire: pairs with the Release in `unlock`, making write k's words visible.
    let s1 = seq.load(Ordering::Acquire);
    if s1 & 1 == 1 {
        return Err(s1);
    }
    let value = copy();
    // Relaxed is enough: the Acquire loads in `copy` keep this load after them.
    let s2 = seq.load(Ordering::Relaxed);
    if s1 == s2 {
        Ok(value)
    } else {
        Err(s2)
    }
}

/// Makes the sequence odd for the write we now own; returns the odd value.
#[inline]
fn begin(seq: &AtomicU64) -> u64 {
    // Relaxed: only the owner writes `seq`, and we own it (our Acquire CAS on `owner`
    // ordered us after the previous owner's stores). Readers are kept out by the Release
    // stores of the record words that follow, which this store is sequenced before.
    let s = seq.load(Ordering::Relaxed);
    // Odd means a writer died inside its write (or a peer scribbled): move it on, still
    // odd, so that a reader that saw the old odd value cannot pair it with ours.
    let odd = if s & 1 == 1 {
        s.wrapping_add(2)
    } else {
        s.wrapping_add(1)
    };
    seq.store(odd, Ordering::Relaxed);
    odd
}

/// Takes the write lock if it is free: `Ok(w)` with the odd sequence value of our write
/// (pass it to [`unlock`]), or `Err(holder)` with the pid that holds it.
#[inline]
pub fn try_lock(seq: &AtomicU64, owner: &AtomicU32, me: u32) -> Result<u64, u32> {
    // Acquire: pairs with the Release store of 0 in the previous owner's `unlock`, so its
    // sequence and record stores are ordered before ours.
    owner.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)?;
    Ok(begin(seq))
}

/// Takes over the lock from `dead`, a holder whose process died (the caller checked).
/// `Ok(w)` as in [`try_lock`], or `Err(holder)` if the owner word no longer names `dead`
/// (someone else took it over, or it was released).
#[inline]
pub fn steal(seq: &AtomicU64, owner: &AtomicU32, dead: u32, me: u32) -> Result<u64, u32> {
    debug_assert!(dead != 0);
    // Acquire as in `try_lock`; the dead writer's stores are ordered before ours by its
    // own earlier Release stores where it made them, and are overwritten by our write.
    owner.compare_exchange(dead, me, Ordering::Acquire, Ordering::Relaxed)?;
    Ok(begin(seq))
}

/// Releases the lock taken at odd value `w`: the sequence becomes `w + 1` (even), then the
/// owner word 0.
#[inline]
pub fn unlock(seq: &AtomicU64, owner: &AtomicU32, w: u64) {
    // Release: pairs with the Acquire first load in `read`.
    seq.store(w.wrapping_add(1), Ordering::Release);
    // Release: pairs with the Acquire CAS of the next owner in `try_lock`.
    owner.store(0, Ordering::Release);
}
