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
        assert!(
            off.is_multiple_of(align) && off <= self.len && len <= self.len - off,
            "shared-memory access out of its view: {len} bytes at {off} in {}",
            self.len
        );
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

    /// Copies `bytes` to `off` with `order`; the mapping is writable (checked by the
    /// caller).
    ///
    /// # Panics
    /// If the range is not inside the view.
    #[inline]
    #[track_caller]
    pub(crate) fn store_ordered(&self, off: usize, bytes: &[u8], order: Ordering) {
        self.check(off, bytes.len(), 1);
        // SAFETY: the range lies inside the view (checked).
        unsafe { copy::store_bytes_ordered(self.base.add(off), bytes, order) }
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
