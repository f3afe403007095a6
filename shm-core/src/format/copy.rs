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
//! ## The bulk path: `rep movsb` or a vector loop in inline assembly (x86-64)
//!
//! A loop of 8-byte atomics cannot be vectorised, and at large sizes it runs at about 80%
//! of `memcpy`. On x86-64, copies of `BULK` (256) bytes or more are therefore made by one
//! `rep movsb` in inline assembly, which is what glibc's `memcpy` itself uses for large
//! copies on CPUs with ERMS/FSRM, or, where `rep movsb` is slow (source and destination
//! at nearly the same offset in their pages: see [`method`]), by a loop of unaligned
//! vector loads and stores in inline assembly (AVX, or SSE2). Why this is sound (for
//! either block):
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
//!   accesses (which is what `rep movsb` and the vector loop perform), that is the
//!   fence-based pairing a seqlock needs (the reader's fence after its data loads, the
//!   writer's before its data stores); on x86-64 both fences compile to nothing, TSO
//!   already orders them (the vector loop's stores are ordinary, not non-temporal).
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
/// The longest copy of aligned whole words made inline, without the general path's edge
/// handling and bulk dispatch.
const SHORT: usize = 64;

/// `f(0)`, `f(1)`, ... while word `i` lies below byte `len` (a multiple of 8; at most the
/// indices listed: as many as `SHORT` holds words), each behind its own test, nested: a
/// copy of `k` words runs `k + 1` tests and no loop set-up (a loop of unknown length is
/// unrolled by the compiler, with a set-up and a remainder that cost more than a short
/// copy). The tests compare the byte length itself, so no word count is computed.
macro_rules! each_word {
    ($f:ident, $n:ident; $i:expr $(, $rest:expr)*) => {
        if $n > $i * WORD {
            $f($i);
            each_word!($f, $n; $($rest),*);
        }
    };
    ($f:ident, $n:ident;) => {};
}

/// A buffer of `len` zero bytes to copy a message into, from `malloc` and a fill rather
/// than `calloc` (what `vec![0u8; len]` calls): glibc's `calloc` bypasses its per-thread
/// cache, so a stream of small buffers made and dropped per message cost about 130
/// instructions more each this way round (callgrind, a service call's request and
/// response buffers). Past 4 KiB `calloc` is kept: a large block comes from fresh
/// zero pages that a fill would write once more.
#[inline]
#[allow(clippy::slow_vector_initialization)] // on purpose: see above
pub(crate) fn zeroed(len: usize) -> Vec<u8> {
    if len > 4096 {
        return vec![0u8; len];
    }
    let mut v = Vec::with_capacity(len);
    v.resize(len, 0);
    v
}

/// Copies of at least this many bytes take the bulk path (x86-64). Below it the word loop
/// is as fast (and `rep movsb` has a start-up cost).
pub(crate) const BULK: usize = 256;

/// Under [`Method::Auto`], bulk copies shorter than this take the vector loop: `rep movsb`
/// has a start-up cost that a short copy feels (glibc's `memcpy` draws its line at 2 to
/// 4 KiB too). Measured: BENCHMARKS.md section 11.
const MOVSB_FROM: usize = 4096;

/// How bulk copies are made (x86-64), chosen once from `SHM_COPY` and the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// 8-byte atomics for every size (`SHM_COPY=words`; every size off x86-64).
    Words,
    /// `rep movsb` for every bulk copy (`SHM_COPY=movsb`).
    Movsb,
    /// A vector loop for every bulk copy (`SHM_COPY=vector`): AVX where the CPU has it,
    /// else SSE2.
    Vector,
    /// The default: `rep movsb` from [`MOVSB_FROM`] bytes, except where source and
    /// destination sit at nearly the same offset in their pages; the vector loop below
    /// that size and in that case.
    Auto,
}

/// Whether the CPU runs AVX (the 32-byte vector loop); read once with the method.
static AVX: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The method in force, read from the environment once (`METHOD`: 0 until then).
static METHOD: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The method in force: one relaxed load once chosen (every copy asks).
#[inline(always)]
fn chosen() -> Method {
    // Relaxed: a cache of values computed from the environment and the CPU; racing
    // computations store the same values, and `AVX` is stored before `METHOD` by the
    // same thread only to be read after a non-zero `METHOD` by threads that may as well
    // recompute it (a stale `false` only picks the SSE2 loop).
    match METHOD.load(Ordering::Relaxed) {
        1 => Method::Words,
        2 => Method::Movsb,
        3 => Method::Vector,
        4 => Method::Auto,
        _ => choose(),
    }
}

/// Reads `SHM_COPY` and the CPU's features, and records the method.
#[cold]
#[inline(never)]
fn choose() -> Method {
    #[cfg(target_arch = "x86_64")]
    AVX.store(std::is_x86_feature_detected!("avx"), Ordering::Relaxed);
    let m = if !cfg!(target_arch = "x86_64") {
        Method::Words
    } else {
        match std::env::var("SHM_COPY").as_deref() {
            Ok("words") => Method::Words,
            Ok("movsb") => Method::Movsb,
            Ok("vector") => Method::Vector,
            _ => Method::Auto,
        }
    };
    let code = match m {
        Method::Words => 1,
        Method::Movsb => 2,
        Method::Vector => 3,
        Method::Auto => 4,
    };
    // Relaxed: as in `chosen`.
    METHOD.store(code, Ordering::Relaxed);
    m
}

/// The method a copy of `len` bytes takes the bulk path with, or `None` for the word
/// loop (copies under [`BULK`], or the word loop forced for every size). The one look at
/// the method a copy makes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn bulk_method(len: usize) -> Option<Method> {
    // The size first: a short copy (most messages) does not look at the method.
    if len < BULK {
        return None;
    }
    match chosen() {
        Method::Words => None,
        m => Some(m),
    }
}

/// The copy method in force, as the benchmarks report it: `"words"` (8-byte atomics;
/// every size off x86-64, or forced with `SHM_COPY=words`), `"movsb"` (`SHM_COPY=movsb`),
/// `"avx"` / `"sse2"` (`SHM_COPY=vector`), or `"auto"` (the default on x86-64: copies of
/// 256 bytes to 4 KiB take the vector loop, AVX where the CPU has it, else SSE2; longer
/// ones `rep movsb`, except between addresses less than 64 bytes apart modulo 4 KiB,
/// which take the vector loop too). Read once.
///
/// The evidence (`cargo run --release -p shm-benches --bin copy_classes` with each
/// `SHM_COPY`; BENCHMARKS.md section 11; AMD EPYC, two runs): `rep movsb` reading into a
/// buffer 16 bytes past the source's page offset ran at 0.02-0.07x glibc's `memcpy` from
/// 256 bytes to 1 MiB (glibc avoids `rep movsb` at such short distances for the same
/// reason), where the vector loop ran at 0.57-0.66x at 1 KiB and 0.86-1.7x from 4 KiB; at
/// 1 KiB at the other distances the vector loop ran at 0.65-1.05x and `rep movsb` at
/// 0.37-0.51x (its start-up cost). From 4 KiB at the other distances the two were within
/// the noise of each other and of `memcpy`.
pub fn method() -> &'static str {
    match chosen() {
        Method::Words => "words",
        Method::Movsb => "movsb",
        Method::Vector if AVX.load(Ordering::Relaxed) => "avx",
        Method::Vector => "sse2",
        Method::Auto => "auto",
    }
}

/// Whether two addresses sit within 64 bytes of each other modulo 4 KiB, where
/// `rep movsb` is slow on some CPUs (see [`method`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline]
fn near_alias(dst: *const u8, src: *const u8) -> bool {
    let d = (dst as usize).wrapping_sub(src as usize) & 4095;
    !(64..=4096 - 64).contains(&d)
}

/// A bulk copy of `len` (at least [`BULK`]) bytes from `src` to `dst` (which do not
/// overlap), by method `m` (from [`bulk_method`]).
///
/// # Safety
/// As [`movsb`].
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn bulk(m: Method, dst: *mut u8, src: *const u8, len: usize) {
    let vector = match m {
        Method::Vector => true,
        Method::Auto => len < MOVSB_FROM || near_alias(dst, src),
        Method::Movsb | Method::Words => false,
    };
    if !vector {
        // SAFETY: forwarded to the caller.
        unsafe { movsb(dst, src, len) }
    } else if AVX.load(Ordering::Relaxed) {
        // SAFETY: forwarded to the caller; `len >= BULK >= 32`; the CPU runs AVX
        // (detected when the method was chosen).
        unsafe { vector_avx(dst, src, len) }
    } else {
        // SAFETY: forwarded to the caller; `len >= BULK >= 16`; SSE2 is part of x86-64.
        unsafe { vector_sse2(dst, src, len) }
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
unsafe fn movsb(dst: *mut u8, src: *const u8, len: usize) {
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

/// The vector loop, written once for both register widths: `$w`-byte unaligned loads and
/// stores with `$mov` through four registers of `$class`, four to a round, then one at a time, then the last
/// `$w` bytes of the range again (overlapping what was copied: the same source bytes to
/// the same places, so nothing outside the range is touched). `$end` is any instruction
/// to run on the way out.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_loop {
    ($dst:expr, $src:expr, $len:expr, $mov:literal, $w:literal, $class:ident, $end:literal) => {
        core::arch::asm!(
            "test {b}, {b}",
            "jz 3f",
            "2:",
            concat!($mov, " {v0}, [{s}]"),
            concat!($mov, " ", "{v1}", ", [{s} + ", $w, "]"),
            concat!($mov, " ", "{v2}", ", [{s} + 2 * ", $w, "]"),
            concat!($mov, " ", "{v3}", ", [{s} + 3 * ", $w, "]"),
            concat!($mov, " [{d}], ", "{v0}"),
            concat!($mov, " [{d} + ", $w, "], ", "{v1}"),
            concat!($mov, " [{d} + 2 * ", $w, "], ", "{v2}"),
            concat!($mov, " [{d} + 3 * ", $w, "], ", "{v3}"),
            concat!("add {s}, 4 * ", $w),
            concat!("add {d}, 4 * ", $w),
            "dec {b}",
            "jnz 2b",
            "3:",
            "test {r}, {r}",
            "jz 5f",
            "4:",
            concat!($mov, " {v0}, [{s}]"),
            concat!($mov, " [{d}], ", "{v0}"),
            concat!("add {s}, ", $w),
            concat!("add {d}, ", $w),
            "dec {r}",
            "jnz 4b",
            "5:",
            concat!($mov, " ", "{v0}", ", [{se}]"),
            concat!($mov, " [{de}], ", "{v0}"),
            $end,
            b = inout(reg) $len / (4 * $w) => _,
            r = inout(reg) ($len % (4 * $w)) / $w => _,
            s = inout(reg) $src => _,
            d = inout(reg) $dst => _,
            se = in(reg) $src.wrapping_add($len - $w),
            de = in(reg) $dst.wrapping_add($len - $w),
            v0 = out($class) _,
            v1 = out($class) _,
            v2 = out($class) _,
            v3 = out($class) _,
            options(nostack)
        )
    };
}

/// The vector loop with 32-byte AVX registers (see `vector_loop`).
///
/// # Safety
/// As [`movsb`], with `len >= 32`, on a CPU that runs AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn vector_avx(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the ranges are valid and disjoint (caller) and `len >= 32`, so every access
    // the loop makes is inside them: `len / 128` rounds of 128 bytes, `(len % 128) / 32`
    // of 32, then the 32 bytes ending at `len`. The block touches no stack; it clobbers
    // the flags and the four registers it names, and clears the upper halves on the way
    // out (`vzeroupper`). As with `rep movsb`, the compiler cannot see the accesses and
    // treats the block as reading and writing any memory.
    unsafe { vector_loop!(dst, src, len, "vmovdqu", 32, ymm_reg, "vzeroupper") }
}

/// The vector loop with 16-byte SSE2 registers (part of every x86-64 CPU).
///
/// # Safety
/// As [`movsb`], with `len >= 16`.
#[cfg(target_arch = "x86_64")]
unsafe fn vector_sse2(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: as in `vector_avx`, with 64-byte rounds, then 16 bytes at a time, then the
    // 16 bytes ending at `len` (`len >= 16`).
    unsafe { vector_loop!(dst, src, len, "movdqu", 16, xmm_reg, "") }
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
#[inline(always)]
pub(crate) unsafe fn load_bytes_ordered(src: *const u8, dst: &mut [u8], order: Ordering) {
    let len = dst.len();
    if ((src as usize) | len).is_multiple_of(WORD) && len <= SHORT {
        // Aligned whole words, a few of them (most messages, every record of up to
        // `SHORT` bytes at an aligned offset): the word loop below, inline.
        let out = dst.as_mut_ptr();
        // Word `i`, with `i * WORD < len`.
        let word = |i: usize| {
            // SAFETY: `src` is 8-aligned and `i * WORD + WORD <= len`: an aligned word of
            // the readable range (caller).
            let w = unsafe { AtomicU64::from_ptr(src.add(i * WORD).cast::<u64>().cast_mut()) }
                .load(order);
            // SAFETY: inside our own buffer (unaligned: `dst` has no alignment).
            unsafe { out.add(i * WORD).cast::<u64>().write_unaligned(w) };
        };
        each_word!(word, len; 0, 1, 2, 3, 4, 5, 6, 7);
        return;
    }
    // SAFETY: forwarded to the caller.
    unsafe { load_bytes_any(src, dst, order) }
}

/// [`load_bytes_ordered`] for any alignment and length.
///
/// # Safety
/// As [`load_bytes_ordered`].
#[inline(never)]
unsafe fn load_bytes_any(src: *const u8, dst: &mut [u8], order: Ordering) {
    if dst.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(m) = bulk_method(dst.len()) {
        // SAFETY: the source range is readable (caller); `dst` is our own buffer, so the
        // two do not overlap.
        unsafe { bulk(m, dst.as_mut_ptr(), src, dst.len()) };
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
    let whole = (dst.len() - done) / WORD;
    let out = dst[done..].as_mut_ptr();
    for i in 0..whole {
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are in the readable range.
        let word = unsafe { AtomicU64::from_ptr(p.cast::<u64>().cast_mut()) }.load(order);
        // SAFETY: `i * WORD + WORD <= dst.len() - done`: inside our own buffer (an
        // unaligned store: `dst` has no alignment).
        unsafe { out.add(i * WORD).cast::<u64>().write_unaligned(word) };
        // SAFETY: stays within (or one past) the readable range.
        p = unsafe { p.add(WORD) };
    }
    done += whole * WORD;
    if done < dst.len() {
        // SAFETY: `p` is 8-aligned and its word contains in-range bytes (caller).
        let w = unsafe { AtomicU64::from_ptr(p.cast::<u64>().cast_mut()) }.load(order);
        take_bytes(w, 0, &mut dst[done..]);
    }
}

/// Copies `src` into shared memory at `dst`, each access with `order` (`Relaxed` or
/// `Release`).
///
/// # Safety
/// `dst .. dst + src.len()` must lie in a region accessible in whole aligned 8-byte words
/// that is mapped and writable for the duration of the call.
#[inline(always)]
pub(crate) unsafe fn store_bytes_ordered(dst: *mut u8, src: &[u8], order: Ordering) {
    let len = src.len();
    if ((dst as usize) | len).is_multiple_of(WORD) && len <= SHORT {
        // As in `load_bytes_ordered`: aligned whole words, inline.
        let from = src.as_ptr();
        // Word `i`, with `i * WORD < len`.
        let word = |i: usize| {
            // SAFETY: inside the caller's buffer (unaligned: `src` has no alignment).
            let w = unsafe { from.add(i * WORD).cast::<u64>().read_unaligned() };
            // SAFETY: `dst` is 8-aligned and `i * WORD + WORD <= len`: an aligned word
            // of the writable range (caller).
            unsafe { AtomicU64::from_ptr(dst.add(i * WORD).cast::<u64>()) }.store(w, order);
        };
        each_word!(word, len; 0, 1, 2, 3, 4, 5, 6, 7);
        return;
    }
    // SAFETY: forwarded to the caller.
    unsafe { store_bytes_any(dst, src, order) }
}

/// [`store_bytes_ordered`] for any alignment and length.
///
/// # Safety
/// As [`store_bytes_ordered`].
#[inline(never)]
unsafe fn store_bytes_any(dst: *mut u8, src: &[u8], order: Ordering) {
    if src.is_empty() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(m) = bulk_method(src.len()) {
        if order != Ordering::Relaxed {
            // Release before the copy: pairs with the reader's Acquire (module docs).
            core::sync::atomic::fence(Ordering::Release);
        }
        // SAFETY: the destination range is writable (caller); `src` is our own buffer.
        unsafe { bulk(m, dst, src.as_ptr(), src.len()) };
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
    let whole = (src.len() - done) / WORD;
    let from = src[done..].as_ptr();
    for i in 0..whole {
        // SAFETY: `i * WORD + WORD <= src.len() - done`: inside the caller's buffer (an
        // unaligned load: `src` has no alignment).
        let word = unsafe { from.add(i * WORD).cast::<u64>().read_unaligned() };
        // SAFETY: `p` is 8-aligned and the 8 bytes from it are writable (caller).
        unsafe { AtomicU64::from_ptr(p.cast::<u64>()) }.store(word, order);
        // SAFETY: stays within (or one past) the writable range.
        p = unsafe { p.add(WORD) };
    }
    done += whole * WORD;
    if done < src.len() {
        edge(p.cast::<AtomicU64>(), 0, &src[done..]);
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

    /// Each bulk method, called directly (the method in force is chosen once per process),
    /// copies exactly the range at every length around its round sizes and every
    /// alignment, and leaves the bytes on either side alone.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_bulk_method_copies_exactly_the_range() {
        type Copy = unsafe fn(*mut u8, *const u8, usize);
        let mut methods: Vec<(&str, Copy)> = vec![("movsb", movsb), ("sse2", vector_sse2)];
        if std::is_x86_feature_detected!("avx") {
            fn avx(d: *mut u8, s: *const u8, n: usize) {
                // SAFETY: the test passes valid, disjoint ranges of at least 32 bytes,
                // and the CPU runs AVX (checked above).
                unsafe { vector_avx(d, s, n) }
            }
            methods.push(("avx", avx));
        }
        let src: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 5) as u8).collect();
        for (name, f) in methods {
            for off in 0..40 {
                for len in (32..300).chain([511, 512, 513, 1000, 2048, 4000]) {
                    let mut dst = vec![0xEEu8; len + 128];
                    // SAFETY: `src[off..off + len]` and `dst[64..64 + len]` are in bounds
                    // (off + len <= 4040 < 4096) and belong to different vectors.
                    unsafe { f(dst.as_mut_ptr().add(64), src.as_ptr().add(off), len) };
                    assert_eq!(
                        &dst[64..64 + len],
                        &src[off..off + len],
                        "{name} {off} {len}"
                    );
                    assert!(dst[..64].iter().all(|&b| b == 0xEE), "{name} before {len}");
                    assert!(
                        dst[64 + len..].iter().all(|&b| b == 0xEE),
                        "{name} after {len}"
                    );
                }
            }
        }
        assert!(near_alias(4096 as *const u8, 8192 as *const u8));
        assert!(near_alias((4096 + 63) as *const u8, 8192 as *const u8));
        assert!(near_alias((4096 - 8) as *const u8, 8192 as *const u8));
        assert!(!near_alias((4096 + 64) as *const u8, 8192 as *const u8));
        assert!(!near_alias((4096 + 2048) as *const u8, 8192 as *const u8));
    }

    /// Two threads write whole, uniform 4 KiB blocks into the same bytes while a third
    /// copies them out: every byte read is one some writer wrote (never a value nobody
    /// wrote), through both paths. (Consistency across bytes is the seqlock's job.)
    #[test]
    fn concurrent_writers_and_a_reader() {
        // 8 KiB, 64-aligned, written only through raw pointers below (never a reference
        // while the threads run).
        #[repr(C, align(64))]
        struct Block([u8; 8192]);
        let mem = Box::into_raw(Box::new(Block([0; 8192])));
        let base = mem as usize;
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
        // SAFETY: from `Box::into_raw` above; the threads that wrote through it are joined.
        drop(unsafe { Box::from_raw(mem) });
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
