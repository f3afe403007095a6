//! Copies between private memory and shared memory that another process may write at
//! any moment.
//!
//! A plain `memcpy` out of memory that someone else writes concurrently is a data race,
//! which is undefined behaviour in Rust's model even when the bytes are then thrown away
//! (rust-lang/rfcs#3301 proposes an atomic memcpy for exactly this). So every byte that
//! crosses the boundary goes through an atomic access, and every access to shared memory
//! made here is an **aligned 8-byte atomic** (`AtomicU64`): racing atomics of different
//! sizes on the same bytes are themselves outside the memory model, so no address is ever
//! accessed here as a byte and elsewhere as a word.
//!
//! * Aligned whole words in the middle are loaded or stored as words.
//! * At an unaligned edge, a load reads the aligned word that contains the edge bytes and
//!   keeps those; a store clears the edge bytes with `fetch_and` and sets them with
//!   `fetch_or`, both on the containing word, so the neighbouring bytes (which may belong
//!   to someone else's concurrent write) are left exactly as they are. Two read-modify-
//!   writes and no loop: a store never waits on a peer.
//!
//! The containing word of an edge can reach up to 7 bytes before the start or after the
//! end of the range; the [`SharedMemory`](crate::format::memory::SharedMemory) contract makes the region
//! accessible in whole 8-byte words (a 64-aligned base, and the length rounded up to 8).
//!
//! On x86-64 and aarch64 a relaxed, acquire or release atomic load or store of a word
//! compiles to an ordinary load or store.
//!
//! ## The bulk path: `rep movsb` in inline assembly (x86-64)
//!
//! A loop of 8-byte atomics cannot be vectorised, and at large sizes it runs at about 80%
//! of `memcpy`. On x86-64, copies of `BULK` (256) bytes or more are therefore made by one
//! `rep movsb` in inline assembly, which is what glibc's `memcpy` itself uses for large
//! copies on CPUs with ERMS/FSRM. Why this is sound:
//!
//! * The compiler cannot see into an `asm!` block. Rust's rules for data races apply to
//!   accesses the language makes; the block's loads and stores are made by the hardware
//!   on the block's behalf, like the stores of another process into the same pages, which
//!   Rust cannot see either and which we already live with. What the block does to memory
//!   is defined by the hardware's memory model (x86-TSO), where racing loads and stores of
//!   any size are well defined: a racing byte reads some value that was written.
//! * The block is declared to read and write memory (no `nomem`/`readonly`), so the
//!   compiler keeps every Rust access before it before, and after it after, and assumes
//!   nothing about the bytes afterwards: no Rust-level value is ever derived from a
//!   "racy" read in a way the optimiser could exploit.
//! * Ordering: an `Acquire` copy is the block followed by `fence(Acquire)`; a `Release`
//!   copy is `fence(Release)` followed by the block. Seen as a sequence of relaxed byte
//!   accesses (which is what `rep movsb` performs), that is the fence-based pairing a
//!   seqlock needs (the reader's fence after its data loads, the writer's before its data
//!   stores); on x86-64 both fences compile to nothing, TSO already orders them.
//! * Rust-level accesses made here are still only aligned 8-byte atomics; the block makes
//!   no Rust-level access at all, so it adds no mixed-size atomics to the program.
//!
//! Everything that synchronises (headers, sequence words, positions, flags) stays an
//! atomic access of its own size outside this module; only payload bytes take the bulk
//! path. Other architectures keep the word loop.
//!
//! These are the only functions in the crate that touch payload bytes; everything else
//! goes through them.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

const WORD: usize = 8;

/// Copies of at least this many bytes take the bulk path (x86-64). Below it the word loop
/// is as fast (and `rep movsb` has a start-up cost).
pub(crate) const BULK: usize = 256;

/// The smallest copy that takes the bulk path: [`BULK`], or `usize::MAX` when the
/// environment variable `SHM_COPY=words` forces the word loop for every size (for
/// benchmarks and bisecting; `SHM_COPY=movsb`, or unset, is the default). Read once.
#[inline]
fn bulk_from() -> usize {
    use std::sync::atomic::AtomicUsize;
    static FROM: AtomicUsize = AtomicUsize::new(0);
    // Relaxed: a cache of a value computed from the environment; racing computations
    // store the same value.
    match FROM.load(Ordering::Relaxed) {
        0 => {
            let v = match std::env::var("SHM_COPY").as_deref() {
                Ok("words") => usize::MAX,
                _ => BULK,
            };
            FROM.store(v, Ordering::Relaxed);
            v
        }
        v => v,
    }
}

/// The copy method in force: `"movsb"` (x86-64, copies of 256 bytes or more) or
/// `"words"` (8-byte atomics; every size elsewhere, or forced with `SHM_COPY=words`).
pub fn method() -> &'static str {
    if cfg!(target_arch = "x86_64") && bulk_from() != usize::MAX {
        "movsb"
    } else {
        "words"
    }
}

/// `rep movsb`: copies `len` bytes from `src` to `dst` (which do not overlap).
///
/// # Safety
/// `src .. src + len` must be mapped readable and `dst .. dst + len` writable for the
/// call, and the two ranges must not overlap. Either may be shared memory that another
/// process writes at the same time (see the module docs).
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn bulk(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the ranges are valid and disjoint (caller). The direction flag is clear, as
    // the ABI guarantees at every asm block; `rep movsb` reads rcx bytes at rsi and writes
    // them at rdi, touching no stack and no flags we rely on. Without `nomem` the compiler
    // treats the block as reading and writing any memory: a barrier for Rust accesses.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// The aligned word containing `p`, and `p`'s byte index in it.
#[inline]
fn containing(p: *const u8) -> (*mut AtomicU64, usize) {
    let skew = (p as usize) % WORD;
    (p.wrapping_sub(skew).cast_mut().cast::<AtomicU64>(), skew)
}

/// The bytes `at .. at + n` of `word` (native byte order), into `dst`.
#[inline]
fn take_bytes(word: u64, at: usize, dst: &mut [u8]) {
    dst.copy_from_slice(&word.to_ne_bytes()[at..at + dst.len()]);
}

/// A mask and value that set bytes `at .. at + src.len()` of a word to `src`.
#[inline]
fn put_bytes(at: usize, src: &[u8]) -> (u64, u64) {
    let mut mask = [0u8; WORD];
    let mut bits = [0u8; WORD];
    mask[at..at + src.len()].fill(0xff);
    bits[at..at + src.len()].copy_from_slice(src);
    (u64::from_ne_bytes(mask), u64::from_ne_bytes(bits))
}

/// The load ordering for an edge's read-modify-write (`fetch_*` take one ordering).
#[inline]
fn rmw_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Release => Ordering::Release,
        _ => Ordering::Relaxed,
    }
}

/// Copies `dst.len()` bytes from shared memory at `src` into `dst`, each access with `order`
/// (`Relaxed` or `Acquire`).
///
/// # Safety
/// `src .. src + dst.len()` must lie in a region accessible in whole aligned 8-byte words
/// (see the module docs) that is mapped and readable for the duration of the call. Other
/// threads or processes may write it concurrently; the copy is then not a consistent
/// snapshot (that is the seqlock's job) but it is not undefined behaviour.
#[inline]
pub(crate) unsafe fn load_bytes_ordered(src: *const u8, dst: &mut [u8], order: Ordering) {
    if dst.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if dst.len() >= bulk_from() {
        // SAFETY: the source range is readable (caller); `dst` is our own buffer, so the
        // two do not overlap.
        unsafe { bulk(dst.as_mut_ptr(), src, dst.len()) };
        if order != Ordering::Relaxed {
            // Acquire after the copy: pairs with the writer's Release (module docs).
            core::sync::atomic::fence(Ordering::Acquire);
        }
        return;
    }
    let (first, skew) = containing(src);
    let mut done = 0;
    if skew != 0 {
        let n = (WORD - skew).min(dst.len());
        // SAFETY: the containing word of an in-range byte is accessible (caller), aligned.
        let w = unsafe { AtomicU64::from_ptr(first.cast()) }.load(order);
        take_bytes(w, skew, &mut dst[..n]);
        done = n;
    }
    // SAFETY: `done` bytes in, `src + done` is 8-aligned (or the copy is complete) and in
    // range or one past it.
    let mut p = unsafe { src.add(done) };
    let mut words = dst[done..].chunks_exact_mut(WORD);
    for chunk in &mut words {
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are in the readable range.
        let word = unsafe { AtomicU64::from_ptr(p.cast::<u64>().cast_mut()) }.load(order);
        chunk.copy_from_slice(&word.to_ne_bytes());
        // SAFETY: stays within (or one past) the readable range.
        p = unsafe { p.add(WORD) };
    }
    let tail = words.into_remainder();
    if !tail.is_empty() {
        // SAFETY: `p` is 8-aligned and its word contains in-range bytes (caller).
        let w = unsafe { AtomicU64::from_ptr(p.cast::<u64>().cast_mut()) }.load(order);
        take_bytes(w, 0, tail);
    }
}

/// Copies `src` into shared memory at `dst`, each access with `order` (`Relaxed` or
/// `Release`).
///
/// # Safety
/// `dst .. dst + src.len()` must lie in a region accessible in whole aligned 8-byte words
/// that is mapped and writable for the duration of the call.
#[inline]
pub(crate) unsafe fn store_bytes_ordered(dst: *mut u8, src: &[u8], order: Ordering) {
    if src.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if src.len() >= bulk_from() {
        if order != Ordering::Relaxed {
            // Release before the copy: pairs with the reader's Acquire (module docs).
            core::sync::atomic::fence(Ordering::Release);
        }
        // SAFETY: the destination range is writable (caller); `src` is our own buffer.
        unsafe { bulk(dst, src.as_ptr(), src.len()) };
        return;
    }
    let (first, skew) = containing(dst);
    let mut done = 0;
    let edge = |word: *mut AtomicU64, at: usize, bytes: &[u8]| {
        let (mask, bits) = put_bytes(at, bytes);
        // SAFETY: the containing word of in-range bytes is accessible and writable
        // (caller) and aligned; the two read-modify-writes leave the other bytes of the
        // word as they are.
        let a = unsafe { AtomicU64::from_ptr(word.cast()) };
        a.fetch_and(!mask, rmw_order(order));
        a.fetch_or(bits, rmw_order(order));
    };
    if skew != 0 {
        let n = (WORD - skew).min(src.len());
        edge(first, skew, &src[..n]);
        done = n;
    }
    // SAFETY: as in `load_bytes_ordered`.
    let mut p = unsafe { dst.add(done) };
    let mut words = src[done..].chunks_exact(WORD);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are writable (caller).
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(word, order);
        // SAFETY: stays within (or one past) the writable range.
        p = unsafe { p.add(WORD) };
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        edge(p.cast::<AtomicU64>(), 0, tail);
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

    #[test]
    fn bulk_sizes_round_trip_at_every_offset() {
        let mut backing = vec![0u64; 1024];
        let base = backing.as_mut_ptr().cast::<u8>();
        for off in 0..16 {
            for len in (BULK - 9..BULK + 9).chain([1000, 4096, 8000 - 16]) {
                let src: Vec<u8> = (0..len).map(|i| (i * 7 + off) as u8).collect();
                let mut out = vec![0u8; len];
                // SAFETY: off + len <= 8000 <= 8192 bytes of `backing`.
                unsafe {
                    store_bytes_ordered(base.add(off), &src, Ordering::Release);
                    load_bytes_ordered(base.add(off), &mut out, Ordering::Acquire);
                }
                assert_eq!(out, src, "offset {off}, length {len}");
            }
        }
    }

    /// Two threads write whole, uniform 4 KiB blocks into the same bytes while a third
    /// copies them out: every byte read is one some writer wrote (never a value nobody
    /// wrote), through both paths. (Consistency across bytes is the seqlock's job.)
    #[test]
    fn concurrent_writers_and_a_reader() {
        let mem = crate::format::memory::HeapMemory::new(8192);
        let base = crate::format::memory::SharedMemory::as_ptr(&mem) as usize;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = [0x1111_1111_1111_1111u64, 0x2222_2222_2222_2222]
            .into_iter()
            .map(|v| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let block = [v; 512];
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: 4096 bytes at 8 inside the 8192-byte block, alive until
                        // the threads are joined below.
                        unsafe { store_bytes((base + 8) as *mut u8, bytemuck::cast_slice(&block)) };
                    }
                })
            })
            .collect();
        let mut out = [0u64; 512];
        for i in 0..2000 {
            let len = if i % 2 == 0 { 4096 } else { 200 };
            let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut out)[..len];
            // SAFETY: as above.
            unsafe { load_bytes((base + 8) as *const u8, bytes) };
            for b in bytemuck::cast_slice::<u64, u8>(&out)[..len].iter() {
                assert!([0, 0x11, 0x22].contains(b), "{b:#x}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        drop(mem);
    }

    #[test]
    fn edge_stores_leave_neighbouring_bytes_alone() {
        let mut backing = vec![0u64; 8];
        let base = backing.as_mut_ptr().cast::<u8>();
        for off in 0..24 {
            for len in 0..=24 {
                let fill = vec![0xa5u8; 64];
                let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut out = vec![0u8; 64];
                // SAFETY: everything stays inside the 64 bytes of `backing`.
                unsafe {
                    store_bytes(base, &fill);
                    store_bytes(base.add(off), &src);
                    load_bytes(base, &mut out);
                }
                let mut want = fill.clone();
                want[off..off + len].copy_from_slice(&src);
                assert_eq!(out, want, "offset {off}, length {len}");
            }
        }
    }
}
