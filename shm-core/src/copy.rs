//! Copies between private memory and shared memory that another process may write at
//! any moment.
//!
//! A plain `memcpy` out of memory that someone else writes concurrently is a data race,
//! which is undefined behaviour in Rust's model even when the bytes are then thrown away
//! (rust-lang/rfcs#3301 proposes an atomic memcpy for exactly this). So every byte that
//! crosses the boundary goes through an atomic access: aligned 8-byte words in the middle,
//! single bytes at unaligned edges. On x86-64 and aarch64 a relaxed, acquire or release
//! atomic load or store of a word compiles to an ordinary load or store.
//!
//! These are the only functions in the crate that touch payload bytes; everything else
//! goes through them.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const WORD: usize = 8;

/// Copies `dst.len()` bytes from shared memory at `src` into `dst`, each access with `order`
/// (`Relaxed` or `Acquire`).
///
/// # Safety
/// `src .. src + dst.len()` must be mapped and readable for the duration of the call. Other
/// threads or processes may write it concurrently; the copy is then not a consistent
/// snapshot (that is the seqlock's job) but it is not undefined behaviour.
#[inline]
pub(crate) unsafe fn load_bytes_ordered(src: *const u8, dst: &mut [u8], order: Ordering) {
    let head = ((src as usize).wrapping_neg() % WORD).min(dst.len());
    let (edge, rest) = dst.split_at_mut(head);
    for (k, b) in edge.iter_mut().enumerate() {
        // SAFETY: `src + k` is in the readable range (caller); a byte is always aligned.
        *b = unsafe { AtomicU8::from_ptr(src.add(k).cast_mut()) }.load(order);
    }
    // SAFETY: `head` bytes in, `src + head` is 8-aligned and still in range (or one past
    // the end when `rest` is empty, and then it is not read).
    let mut p = unsafe { src.add(head) };
    let mut words = rest.chunks_exact_mut(WORD);
    for chunk in &mut words {
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are in the readable range.
        let word = unsafe { AtomicU64::from_ptr(p.cast::<u64>().cast_mut()) }.load(order);
        chunk.copy_from_slice(&word.to_ne_bytes());
        // SAFETY: stays within (or one past) the readable range.
        p = unsafe { p.add(WORD) };
    }
    for (k, b) in words.into_remainder().iter_mut().enumerate() {
        // SAFETY: as for the head.
        *b = unsafe { AtomicU8::from_ptr(p.add(k).cast_mut()) }.load(order);
    }
}

/// Copies `src` into shared memory at `dst`, each access with `order` (`Relaxed` or
/// `Release`).
///
/// # Safety
/// `dst .. dst + src.len()` must be mapped and writable for the duration of the call.
#[inline]
pub(crate) unsafe fn store_bytes_ordered(dst: *mut u8, src: &[u8], order: Ordering) {
    let head = ((dst as usize).wrapping_neg() % WORD).min(src.len());
    let (edge, rest) = src.split_at(head);
    for (k, &b) in edge.iter().enumerate() {
        // SAFETY: `dst + k` is in the writable range (caller); a byte is always aligned.
        unsafe { AtomicU8::from_ptr(dst.add(k)) }.store(b, order);
    }
    // SAFETY: as in `load_bytes_ordered`.
    let mut p = unsafe { dst.add(head) };
    let mut words = rest.chunks_exact(WORD);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are writable (caller).
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(word, order);
        // SAFETY: stays within (or one past) the writable range.
        p = unsafe { p.add(WORD) };
    }
    for (k, &b) in words.remainder().iter().enumerate() {
        // SAFETY: as for the head.
        unsafe { AtomicU8::from_ptr(p.add(k)) }.store(b, order);
    }
}

/// [`load_bytes_ordered`] with `Relaxed` accesses.
///
/// # Safety
/// Forwarded to the caller: see [`load_bytes_ordered`].
#[inline]
pub(crate) unsafe fn load_bytes(src: *const u8, dst: &mut [u8]) {
    // SAFETY: forwarded to the caller.
    unsafe { load_bytes_ordered(src, dst, Ordering::Relaxed) }
}

/// [`store_bytes_ordered`] with `Relaxed` accesses.
///
/// # Safety
/// Forwarded to the caller: see [`store_bytes_ordered`].
#[inline]
pub(crate) unsafe fn store_bytes(dst: *mut u8, src: &[u8]) {
    // SAFETY: forwarded to the caller.
    unsafe { store_bytes_ordered(dst, src, Ordering::Relaxed) }
}

/// Reads a `T` out of shared memory by copy.
///
/// # Safety
/// `src .. src + size_of::<T>()` must be mapped and readable (alignment is not required).
#[inline]
pub(crate) unsafe fn load_pod<T: bytemuck::Pod>(src: *const u8, order: Ordering) -> T {
    let mut value = T::zeroed();
    // SAFETY: forwarded to the caller; `value` is a private `T`, valid for any bytes (Pod).
    unsafe { load_bytes_ordered(src, bytemuck::bytes_of_mut(&mut value), order) };
    value
}

/// Writes a `T` into shared memory by copy.
///
/// # Safety
/// `dst .. dst + size_of::<T>()` must be mapped and writable.
#[inline]
pub(crate) unsafe fn store_pod<T: bytemuck::Pod>(dst: *mut u8, value: &T, order: Ordering) {
    // SAFETY: forwarded to the caller.
    unsafe { store_bytes_ordered(dst, bytemuck::bytes_of(value), order) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offset_and_length_round_trips() {
        let mut backing = vec![0u64; 16];
        let base = backing.as_mut_ptr().cast::<u8>();
        for off in 0..16 {
            for len in 0..=64 {
                let src: Vec<u8> = (0..len).map(|i| (i as u8) ^ (off as u8) ^ 0x5a).collect();
                let mut out = vec![0u8; len];
                // SAFETY: off + len <= 80 <= 128 bytes of `backing`.
                unsafe {
                    store_bytes(base.add(off), &src);
                    load_bytes(base.add(off), &mut out);
                }
                assert_eq!(out, src, "offset {off}, length {len}");
            }
        }
    }
}
