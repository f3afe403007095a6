//! The seqlock protocol on its own, over the atomics of [`crate::sync`], so that the
//! same code is model-checked by loom (`tests/loom_seqlock.rs`) and runs over mappings.
//!
//! The record's words are written with `Release` stores and read with `Acquire` loads
//! (plain moves on x86-64), which gives the ordering a seqlock needs without fences:
//!
//! * A reader that reads any word of write *k+1* synchronises with that store, so the
//!   writer's earlier "make odd" happens-before the reader's second sequence load: the
//!   reader sees the change and retries.
//! * A reader whose first sequence load sees the even value that ended write *k*
//!   synchronises with that `Release` store, so it sees every word of write *k*.

use crate::sync::{AtomicU64, Ordering};

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

/// Takes the write lock if it is free: `Ok(s)` with the even value it replaced, or
/// `Err(s)` with the odd value a writer holds it at.
#[inline]
pub fn try_lock(seq: &AtomicU64) -> Result<u64, u64> {
    let s = seq.load(Ordering::Relaxed);
    if s & 1 == 1 {
        return Err(s);
    }
    // Acquire: pairs with the previous writer's `unlock` Release, so our words are
    // ordered after theirs.
    seq.compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
        .map_err(|now| now | 1)
}

/// Takes over a lock abandoned at odd value `held` (its writer is dead). Keeps the
/// sequence odd (`held + 2`), so readers keep retrying until our `unlock`. Returns
/// the value to pass to [`unlock`], or `Err` if someone else moved the sequence first.
#[inline]
pub fn steal(seq: &AtomicU64, held: u64) -> Result<u64, u64> {
    debug_assert!(held & 1 == 1);
    // Acquire as in `try_lock`.
    seq.compare_exchange(
        held,
        held.wrapping_add(2),
        Ordering::Acquire,
        Ordering::Relaxed,
    )
    .map(|_| held.wrapping_add(1))
}

/// Releases the lock taken at even value `s`: the sequence becomes `s + 2`.
#[inline]
pub fn unlock(seq: &AtomicU64, s: u64) {
    // Release: pairs with the Acquire first load in `read` (and the CAS in `try_lock`).
    seq.store(s.wrapping_add(2), Ordering::Release);
}
