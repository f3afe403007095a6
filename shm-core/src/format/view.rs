//! [`View`]: the one way endpoint code reaches shared words and bytes.
//!
//! A view is a base address and a length, cut from a validated segment's payload
//! ([`RawSegment::view`](crate::format::raw::RawSegment::view)). Every access checks its
//! offset against the length (and its alignment), so the families' endpoint files reach
//! control words and message bytes without `unsafe`: the pointer arithmetic and the
//! `SAFETY` arguments live here once.
//!
//! Word accesses hand out `&AtomicU64` / `&AtomicU32`: sound for memory another process
//! writes (atomics are interior-mutable and every access is an atomic instruction). Byte
//! accesses copy through [`copy`](crate::format::copy) (volatile or atomic, never a
//! `&[u8]` into the mapping).
//!
//! A view does not keep its mapping alive: the endpoint that holds one holds the segment
//! too (an `Arc<RawSegment>`), for at least as long as the view.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use crate::format::copy;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

/// A checked window onto shared memory (see the module docs).
#[derive(Clone, Copy)]
pub(crate) struct View {
    base: *mut u8,
    len: usize,
}

// SAFETY: a view is an address and a length into a mapping its holder keeps alive; it is
// only used for atomic accesses and bounded copies (the `SharedMemory` contract: another
// process may write the memory at any moment, so another thread may too).
unsafe impl Send for View {}
// SAFETY: as above; sharing a view hands out no plain reference into the memory.
unsafe impl Sync for View {}

/// One 4-byte word of a view, checked once when it was cut ([`View::word32`]): read any
/// number of times after without a check. What an endpoint keeps for a futex word it
/// registers with a wait set. (The words every message touches are reached through a
/// [`Block`].)
#[derive(Clone, Copy)]
pub(crate) struct Word32(NonNull<AtomicU32>);

// SAFETY: as for `View`: an address into a mapping its holder keeps alive, used only for
// atomic accesses.
unsafe impl Send for Word32 {}
// SAFETY: as above.
unsafe impl Sync for Word32 {}

impl Word32 {
    /// The word.
    #[inline(always)]
    pub(crate) fn get(&self) -> &AtomicU32 {
        // SAFETY: checked inside its view and 4-aligned when it was cut (`View::word32`);
        // the view's mapping outlives the handle (the View contract); atomics may alias
        // memory other processes write.
        unsafe { self.0.as_ref() }
    }
}

/// A view whose length is a power of two (at least 8): a ring's data. A position of any
/// size wraps into it by a mask, so its words are reached without a check
/// ([`word_at_position`](Self::word_at_position)).
#[derive(Clone, Copy)]
pub(crate) struct RingView {
    view: View,
    /// `len - 1` with its low three bits clear: a position masked by it is the offset of
    /// the 8-aligned word that holds it, in one `and`.
    mask: usize,
}

impl RingView {
    /// `view` as a ring (`None` unless its length is a power of two of at least 8).
    pub(crate) fn new(view: View) -> Option<RingView> {
        (view.len >= 8 && view.len.is_power_of_two()).then_some(RingView {
            view,
            mask: (view.len - 1) & !7,
        })
    }

    /// The ring's bytes as a plain (checked) view.
    #[inline(always)]
    pub(crate) fn view(&self) -> View {
        self.view
    }

    /// The 8-byte word that holds position `pos` (wrapped into the ring, rounded down to
    /// a multiple of 8).
    #[inline(always)]
    pub(crate) fn word_at_position(&self, pos: u64) -> &AtomicU64 {
        // Truncating `pos` keeps its low bits, which are all the mask keeps.
        let off = (pos as usize) & self.mask;
        // SAFETY: `off <= len - 8` (masked below a power-of-two length of at least 8,
        // rounded down to a multiple of 8) and 8-aligned (the base is); inside the view's
        // mapping, which outlives it.
        unsafe { &*self.view.base.add(off).cast::<AtomicU64>() }
    }
}

/// The first `N` bytes of a view, checked once when it was cut ([`View::block`]): its
/// words at offsets known when the program is compiled are then reached from one base
/// address with no check at all (the offset is checked against `N` at compile time).
/// What an endpoint keeps for a control block whose words every message touches: one
/// load of the base instead of one per word.
#[derive(Clone, Copy)]
pub(crate) struct Block<const N: usize> {
    base: NonNull<u8>,
}

// SAFETY: as for `View`.
unsafe impl<const N: usize> Send for Block<N> {}
// SAFETY: as for `View`.
unsafe impl<const N: usize> Sync for Block<N> {}

impl<const N: usize> Block<N> {
    /// The 8-byte word at `OFF` (a multiple of 8 with `OFF + 8 <= N`, checked at
    /// compile time).
    #[inline(always)]
    pub(crate) fn u64_at<const OFF: usize>(&self) -> &AtomicU64 {
        const { assert!(OFF.is_multiple_of(8) && OFF + 8 <= N) };
        // SAFETY: `OFF + 8 <= N <= ` the view's length (checked when the block was cut)
        // and 8-aligned (the base is, checked then, and `OFF` is a multiple of 8); the
        // view's mapping outlives the block (the View contract); atomics may alias
        // memory other processes write.
        unsafe { &*self.base.as_ptr().add(OFF).cast::<AtomicU64>() }
    }

    /// The 4-byte word at `OFF` (a multiple of 4 with `OFF + 4 <= N`, checked at
    /// compile time).
    #[inline(always)]
    pub(crate) fn u32_at<const OFF: usize>(&self) -> &AtomicU32 {
        const { assert!(OFF.is_multiple_of(4) && OFF + 4 <= N) };
        // SAFETY: as in `u64_at`, with 4 for 8.
        unsafe { &*self.base.as_ptr().add(OFF).cast::<AtomicU32>() }
    }
}

/// `count` equally spaced blocks of `N` bytes of a view, checked once when cut
/// ([`View::blocks`]): a word of block `i` at an offset fixed at compile time then costs
/// one compare of `i` with the count, and no other check.
#[derive(Clone, Copy)]
pub(crate) struct Blocks<const N: usize> {
    first: *mut u8,
    stride: usize,
    count: usize,
}

// SAFETY: as for `View`.
unsafe impl<const N: usize> Send for Blocks<N> {}
// SAFETY: as for `View`.
unsafe impl<const N: usize> Sync for Blocks<N> {}

impl<const N: usize> Blocks<N> {
    /// How many blocks.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// The 8-byte word at `OFF` of block `i` (`OFF` a multiple of 8 with `OFF + 8 <= N`,
    /// checked at compile time; `None` past the last block).
    #[inline(always)]
    pub(crate) fn u64_at<const OFF: usize>(&self, i: usize) -> Option<&AtomicU64> {
        const { assert!(OFF.is_multiple_of(8) && OFF + 8 <= N) };
        // SAFETY: `OFF + 8 <= N` and 8-aligned (checked above): an aligned word of the
        // block (`word_in`).
        self.word_in(i, OFF)
            .map(|p| unsafe { &*p.cast::<AtomicU64>() })
    }

    /// The 4-byte word at `OFF` of block `i` (as [`u64_at`](Self::u64_at), with 4 for 8).
    #[inline(always)]
    pub(crate) fn u32_at<const OFF: usize>(&self, i: usize) -> Option<&AtomicU32> {
        const { assert!(OFF.is_multiple_of(4) && OFF + 4 <= N) };
        // SAFETY: as in `u64_at`, with 4 for 8.
        self.word_in(i, OFF)
            .map(|p| unsafe { &*p.cast::<AtomicU32>() })
    }

    /// The address of byte `off` of block `i` (`None` past the last block). A word of
    /// `w` bytes there with `off + w <= N`, `off` a multiple of `w`, is inside the view's
    /// mapping (which outlives the blocks) and aligned: `i < count`, so `start + i *
    /// stride + N <= len` (checked when cut, for the last block, the farthest), and the
    /// base, `start` and `stride` are multiples of 8.
    #[inline(always)]
    fn word_in(&self, i: usize, off: usize) -> Option<*mut u8> {
        if i >= self.count {
            return None;
        }
        debug_assert!(off < N);
        // SAFETY: `i * stride + off < i * stride + N`: inside the view (see above).
        Some(unsafe { self.first.add(i * self.stride + off) })
    }
}

/// A power of two of equal entries laid end to end in a view (a broadcast's slots),
/// checked once when it was cut: entry `n` (wrapped by a mask) is then reached without a
/// check, and its first two words too ([`head_words`](Self::head_words)).
#[derive(Clone, Copy)]
pub(crate) struct Table {
    first: View,
    stride: usize,
    mask: usize,
    item: usize,
    /// `item - 16`: the bytes of an entry after its two head words (its payload).
    payload: usize,
}

impl Table {
    /// `count` entries of `item` bytes every `stride` bytes from `start` in `view`
    /// (`None` unless `count` is a power of two, `start` and `stride` are multiples of 8,
    /// `16 <= item <= stride`, and they all fit in the view).
    pub(crate) fn new(
        view: &View,
        start: usize,
        stride: usize,
        count: u64,
        item: usize,
    ) -> Option<Table> {
        let n = usize::try_from(count).ok()?;
        let ok = n.is_power_of_two()
            && start.is_multiple_of(8)
            && stride.is_multiple_of(8)
            && (16..=stride).contains(&item);
        let first = view.sub(start, n.checked_mul(stride)?)?;
        ok.then_some(Table {
            first,
            stride,
            mask: n - 1,
            item,
            payload: item - 16,
        })
    }

    /// Entry `n` (wrapped into the table) as a view of its `item` bytes.
    #[inline(always)]
    pub(crate) fn entry(&self, n: u64) -> View {
        let off = (n as usize & self.mask) * self.stride;
        // SAFETY: `off + item <= count * stride <= first.len` (checked in `new`: the
        // masked index is below `count`, `item <= stride`), 8-aligned (base and stride
        // are); inside the mapping.
        let base = unsafe { self.first.base.add(off) };
        View {
            base,
            len: self.item,
        }
    }

    /// The two 8-byte words at the start of entry `n`.
    #[inline(always)]
    pub(crate) fn head_words(&self, n: u64) -> (&AtomicU64, &AtomicU64) {
        self.at(n).head_words()
    }

    /// Entry `n` (wrapped into the table): its head words and its payload, each reached
    /// from the one address computed here.
    #[inline(always)]
    pub(crate) fn at(&self, n: u64) -> Entry<'_> {
        Entry {
            base: self.entry(n).base,
            table: self,
        }
    }
}

/// One entry of a [`Table`] ([`Table::at`]): its two head words, reached without a check,
/// and its payload (the bytes after them), with one compare against the payload's size.
#[derive(Clone, Copy)]
pub(crate) struct Entry<'a> {
    base: *mut u8,
    table: &'a Table,
}

impl<'a> Entry<'a> {
    /// The two 8-byte words at the start of the entry.
    #[inline(always)]
    pub(crate) fn head_words(&self) -> (&'a AtomicU64, &'a AtomicU64) {
        // SAFETY: an entry is at least 16 bytes (checked in `Table::new`) and 8-aligned;
        // inside the mapping, which outlives the table.
        unsafe {
            (
                &*self.base.cast::<AtomicU64>(),
                &*self.base.add(8).cast::<AtomicU64>(),
            )
        }
    }

    /// Copies `buf.len()` bytes at `off` of the payload into `buf`, with `order` (see
    /// [`copy`](crate::format::copy)'s ordered copies).
    ///
    /// # Panics
    /// If the range leaves the payload: lengths a peer wrote are checked against the
    /// layout before any copy, so this is a bug in the caller.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn load_payload(&self, off: usize, buf: &mut [u8], order: Ordering) {
        let payload = self.table.payload;
        if !(off <= payload && buf.len() <= payload - off) {
            out_of_view(off.saturating_add(16), buf.len(), self.table.item);
        }
        // SAFETY: the entry is `item` bytes inside the mapping (`Table::entry`), and the
        // range `[16 + off, 16 + off + buf.len())` lies inside it (checked above).
        unsafe { copy::load_bytes_ordered(self.base.add(16 + off), buf, order) }
    }

    /// Copies `bytes` to `off` of the payload, with `order`; the mapping is writable
    /// (checked by the caller).
    ///
    /// # Panics
    /// As [`load_payload`](Self::load_payload).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn store_payload(&self, off: usize, bytes: &[u8], order: Ordering) {
        let payload = self.table.payload;
        if !(off <= payload && bytes.len() <= payload - off) {
            out_of_view(off.saturating_add(16), bytes.len(), self.table.item);
        }
        // SAFETY: as in `load_payload`; the mapping is writable (the caller's check).
        unsafe { copy::store_bytes_ordered(self.base.add(16 + off), bytes, order) }
    }
}

/// `count` equal entries laid end to end in a view (a broadcast's subscriber lines),
/// checked once when it was cut; entry `i` then costs one compare of `i` with `count`.
#[derive(Clone, Copy)]
pub(crate) struct Lines {
    first: View,
    stride: usize,
    count: usize,
}

impl Lines {
    /// `count` entries of `stride` bytes from `start` in `view` (`None` unless `start`
    /// and `stride` are multiples of 8, `stride >= 16`, and they fit in the view).
    pub(crate) fn new(view: &View, start: usize, stride: usize, count: usize) -> Option<Lines> {
        let ok = start.is_multiple_of(8) && stride.is_multiple_of(8) && stride >= 16;
        let first = view.sub(start, count.checked_mul(stride)?)?;
        ok.then_some(Lines {
            first,
            stride,
            count,
        })
    }

    /// The words at offsets 0 (4 bytes), 4 (4 bytes) and 8 (8 bytes) of entry `i`.
    ///
    /// # Panics
    /// If `i` is not below `count` (an index is the caller's own, never a peer's value).
    #[inline(always)]
    #[track_caller]
    pub(crate) fn head_words(&self, i: usize) -> (&AtomicU32, &AtomicU32, &AtomicU64) {
        assert!(i < self.count, "line {i} of {}", self.count);
        // SAFETY: `i < count` (checked), so the entry's 16 head bytes lie inside `first`
        // (`count * stride` bytes, `stride >= 16`), 8-aligned; inside the mapping.
        unsafe {
            let e = self.first.base.add(i * self.stride);
            (
                &*e.cast::<AtomicU32>(),
                &*e.add(4).cast::<AtomicU32>(),
                &*e.add(8).cast::<AtomicU64>(),
            )
        }
    }
}

impl View {
    /// A view of `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base + len` lies inside one mapping that outlives every use of the view and
    /// of views cut from it; `base` is 8-aligned.
    pub(crate) unsafe fn new(base: *mut u8, len: usize) -> View {
        debug_assert!((base as usize).is_multiple_of(8));
        View { base, len }
    }

    /// The `len` bytes at `off`, as a view of their own (`None` if they do not fit or
    /// `off` is not 8-aligned).
    #[inline]
    pub(crate) fn sub(&self, off: usize, len: usize) -> Option<View> {
        let end = off.checked_add(len)?;
        if end > self.len || !off.is_multiple_of(8) {
            return None;
        }
        // SAFETY: `off + len <= self.len` (checked): inside this view's mapping.
        let base = unsafe { self.base.add(off) };
        Some(View { base, len })
    }

    #[inline]
    #[track_caller]
    fn check(&self, off: usize, len: usize, align: usize) {
        // A failed check is a bug in the caller (offsets are the layout's constants, or
        // masked below a validated capacity), never a value a peer chose: panic.
        if !(off.is_multiple_of(align) && off <= self.len && len <= self.len - off) {
            out_of_view(off, len, self.len);
        }
    }

    /// The `count` blocks of `N` bytes at `start`, `start + stride`, ... (`None` unless
    /// every one lies inside the view, 8-aligned): a table of entries whose heads are
    /// reached often, each head's words with no check.
    pub(crate) fn blocks<const N: usize>(
        &self,
        start: usize,
        stride: usize,
        count: usize,
    ) -> Option<Blocks<N>> {
        if !start.is_multiple_of(8) || !stride.is_multiple_of(8) {
            return None;
        }
        if let Some(last) = count.checked_sub(1) {
            let end = last
                .checked_mul(stride)?
                .checked_add(start)?
                .checked_add(N)?;
            if end > self.len {
                return None;
            }
        }
        Some(Blocks {
            // SAFETY: `start <= len` (checked above when `count > 0`; with no blocks the
            // address is never read); inside the view's mapping or one past it.
            first: unsafe { self.base.add(start.min(self.len)) },
            stride,
            count,
        })
    }

    /// Its first `N` bytes as a [`Block`] (`None` if the view is shorter, or its base is
    /// not 8-aligned).
    pub(crate) fn block<const N: usize>(&self) -> Option<Block<N>> {
        if self.len < N || !(self.base as usize).is_multiple_of(8) {
            return None;
        }
        Some(Block {
            base: NonNull::new(self.base)?,
        })
    }

    /// The 8-byte word at `off` (a multiple of 8, inside the view).
    ///
    /// # Panics
    /// If it is not: offsets come from the layout, not from peers.
    #[inline]
    #[track_caller]
    pub(crate) fn u64_at(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: inside the view (checked) and 8-aligned (the base is, and `off` is a
        // multiple of 8); atomics may alias memory other processes write.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    /// The 4-byte word at `off` (a multiple of 4, inside the view).
    ///
    /// # Panics
    /// As [`u64_at`](Self::u64_at).
    #[inline]
    #[track_caller]
    pub(crate) fn u32_at(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: as in `u64_at`, 4-aligned.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }

    /// The 4-byte word at `off`, checked now, as a handle to keep ([`Word32`]).
    ///
    /// # Panics
    /// As [`u64_at`](Self::u64_at).
    #[track_caller]
    pub(crate) fn word32(&self, off: usize) -> Word32 {
        Word32(NonNull::from(self.u32_at(off)))
    }

    /// Copies `buf.len()` bytes at `off` into `buf`, with `order` (see
    /// [`copy`](crate::format::copy)'s ordered copies).
    ///
    /// # Panics
    /// If the range is not inside the view.
    #[inline]
    #[track_caller]
    pub(crate) fn load_ordered(&self, off: usize, buf: &mut [u8], order: Ordering) {
        self.check(off, buf.len(), 1);
        // SAFETY: the range lies inside the view (checked).
        unsafe { copy::load_bytes_ordered(self.base.add(off), buf, order) }
    }

    /// Copies `buf.len()` bytes at `off` into `buf`.
    ///
    /// # Panics
    /// If the range is not inside the view.
    #[inline]
    #[track_caller]
    pub(crate) fn load(&self, off: usize, buf: &mut [u8]) {
        self.check(off, buf.len(), 1);
        // SAFETY: the range lies inside the view (checked).
        unsafe { copy::load_bytes(self.base.add(off), buf) }
    }

    /// Copies `bytes` to `off`. The caller has checked that the mapping is writable (a
    /// store to a read-only mapping faults).
    ///
    /// # Panics
    /// If the range is not inside the view.
    #[inline]
    #[track_caller]
    pub(crate) fn store(&self, off: usize, bytes: &[u8]) {
        self.check(off, bytes.len(), 1);
        // SAFETY: the range lies inside the view (checked).
        unsafe { copy::store_bytes(self.base.add(off), bytes) }
    }

    /// The address of byte `off` (at most the length), for bindings that write a
    /// reserved slot themselves.
    ///
    /// # Panics
    /// If `off` is past the view's end.
    #[inline]
    #[track_caller]
    pub(crate) fn ptr(&self, off: usize) -> *mut u8 {
        self.check(off, 0, 1);
        // SAFETY: at most one past the view's end (checked).
        unsafe { self.base.add(off) }
    }
}

/// [`View::check`]'s panic, out of line: the check itself stays a few compares.
#[cold]
#[inline(never)]
#[track_caller]
fn out_of_view(off: usize, len: usize, view_len: usize) -> ! {
    panic!("shared-memory access out of its view: {len} bytes at {off} in {view_len}")
}
