//! The [`SharedMemory`] trait and the heap-backed [`HeapMemory`] used in tests.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

/// A region of memory that may be shared with other processes.
///
/// This is what every backend hands out: a base address, a length, the backend's name
/// and whether this handle owns (and so removes on drop) the underlying object. How a
/// region is created or opened is each backend's own API.
///
/// # The contract: another process may write this memory at any moment
///
/// Users of a `SharedMemory` must treat every byte as volatile: it can change between two
/// reads, including in the middle of a read. That is why the trait hands out a raw
/// pointer and never a `&[u8]`, `&T` or `&mut T`: such a reference promises the compiler
/// that nobody else writes the memory, a promise no one can keep for shared memory. Access
/// it with atomic or volatile operations (this crate's [`RawSegment::read_at`](crate::format::raw::RawSegment::read_at)
/// and friends do), and only through types valid for every bit pattern.
///
/// # Safety
///
/// An implementation guarantees, for as long as the value lives:
///
/// * [`as_ptr`](Self::as_ptr) is non-null, aligned to at least 64 bytes, and the same
///   value every time it is called, even after the handle is moved;
/// * the `len()` bytes from it, rounded up to a multiple of 8, are mapped readable and
///   writable (shm-core accesses the region only in aligned 8-byte words), and stay so
///   until the handle is dropped. A peer shrinking a file behind the mapping is the one
///   exception; a backend either excludes it (memfd seals) or catches the fault and
///   reports it through [`truncated`](Self::truncated) (posix);
/// * the implementation itself never creates references into the memory.
pub unsafe trait SharedMemory {
    /// The base address of the region.
    fn as_ptr(&self) -> *mut u8;
    /// The length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region is zero bytes long.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The backend's name: `"posix"`, `"anon"`, `"memfd"`, `"heap"`.
    fn backend(&self) -> &'static str;
    /// Whether this handle owns the underlying object (and removes it when dropped).
    fn is_owner(&self) -> bool;
    /// `Some(size the object has now)` once a peer truncated the object under this mapping
    /// and an access faulted on the missing pages: the backend caught the fault and put
    /// zero pages in their place, so the access went on, and every later call through
    /// shm-core reports [`Error::Truncated`](crate::format::error::Error::Truncated). `None` while the
    /// mapping is intact, and always for backends that cannot be truncated.
    ///
    /// Required, with no default: a wrapper that forwards the other methods and forgot
    /// this one would hide truncations from every wait.
    fn truncated(&self) -> Option<u64>;
    /// Whether the region is mapped writable here. A read-only mapping (a lossy broadcast
    /// subscriber's, say) returns `false`, and shm-core never writes through it: every
    /// operation that would write returns [`Error::ReadOnly`](crate::format::error::Error::ReadOnly).
    ///
    /// Required, with no default: a wrapper that forgot it would let safe calls write
    /// through a read-only mapping (a SIGSEGV).
    fn writable(&self) -> bool;
    /// Whether another handle (in this process or any other) holds the underlying object:
    /// `Some(false)` when the backend can tell that none does (a posix segment whose only
    /// `flock` is this handle's own), `Some(true)` when one does, `None` when it cannot
    /// tell. An attach that finds no header at all (zeros where the magic goes, no creator
    /// recorded) and `Some(false)` here refuses at once with
    /// [`Error::BadMagic`](crate::format::error::Error::BadMagic): every creator of ours
    /// holds its handle while it writes the header, so nobody is writing one, and waiting
    /// the ready timeout for it would only delay the answer.
    ///
    /// The default, `None`, is always safe (the attach waits as before); a wrapper
    /// forwards it.
    fn held_elsewhere(&self) -> Option<bool> {
        None
    }
}

// SAFETY: forwarded; a Box does not move its contents and adds no references.
unsafe impl<M: SharedMemory + ?Sized> SharedMemory for Box<M> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn is_owner(&self) -> bool {
        (**self).is_owner()
    }
    fn truncated(&self) -> Option<u64> {
        (**self).truncated()
    }
    fn writable(&self) -> bool {
        (**self).writable()
    }
    fn held_elsewhere(&self) -> Option<bool> {
        (**self).held_elsewhere()
    }
}

struct HeapBlock {
    /// What the allocator returned.
    base: NonNull<u8>,
    /// `base` rounded up to [`HEAP_ALIGN`].
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

/// The alignment [`HeapMemory`] gives, like a page-aligned mapping.
const HEAP_ALIGN: usize = 4096;

// SAFETY: the block is only ever accessed through atomic operations by the users of
// `SharedMemory` (see the trait contract), so sharing the pointer across threads is sound.
unsafe impl Send for HeapBlock {}
// SAFETY: as above.
unsafe impl Sync for HeapBlock {}

impl Drop for HeapBlock {
    fn drop(&mut self) {
        // SAFETY: `base` was returned by `alloc_zeroed` with exactly this layout, and the
        // last `Arc` holding the block is going away, so no handle can still use it.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// Zeroed heap memory that implements [`SharedMemory`], for tests without syscalls.
///
/// [`share`](Self::share) gives a second handle onto the same bytes, the way a second
/// process would map the same segment. The handle made by [`new`](Self::new) is the owner.
pub struct HeapMemory {
    block: Arc<HeapBlock>,
    owner: bool,
}

impl HeapMemory {
    /// Allocates `len` zeroed bytes, aligned to a 4096-byte page.
    ///
    /// # Panics
    /// If `len + 4096` overflows, is larger than `isize::MAX`, or the allocation fails;
    /// [`try_new`](Self::try_new) returns an error instead.
    pub fn new(len: usize) -> Self {
        match Self::try_new(len) {
            Ok(m) => m,
            Err(e) => panic!("heap memory of {len} bytes: {e}"),
        }
    }

    /// [`new`](Self::new), or an `OutOfMemory` error when the size is too large or the
    /// allocation fails. Never panics or aborts.
    pub fn try_new(len: usize) -> std::io::Result<Self> {
        let oom =
            |what: &str| std::io::Error::new(std::io::ErrorKind::OutOfMemory, what.to_owned());
        // Ask for 16-byte alignment and align by hand: glibc serves that from calloc, which
        // maps large blocks lazily (a 4 GiB test segment costs only the pages touched),
        // while a 4096-aligned request goes through memalign + memset and touches it all.
        // The 4096 spare bytes also cover the contract's rounding of `len` up to a whole
        // word: the base is rounded up by at most 4080 bytes (16-aligned allocation).
        let size = len
            .checked_add(HEAP_ALIGN)
            .ok_or_else(|| oom("size overflows"))?;
        let layout =
            Layout::from_size_align(size, 16).map_err(|_| oom("size larger than isize::MAX"))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(raw) else {
            return Err(oom("allocation failed"));
        };
        let skip = raw.align_offset(HEAP_ALIGN);
        // SAFETY: `skip <= HEAP_ALIGN - 16`, so `raw + skip .. raw + skip + len + 8` is
        // inside the `len + HEAP_ALIGN` bytes just allocated.
        let ptr = unsafe { NonNull::new_unchecked(raw.add(skip)) };
        Ok(HeapMemory {
            block: Arc::new(HeapBlock {
                base,
                ptr,
                len,
                layout,
            }),
            owner: true,
        })
    }

    /// Allocates memory holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mem = Self::new(bytes.len());
        // SAFETY: the block is `bytes.len()` bytes long and nothing else refers to it yet.
        unsafe { crate::format::copy::store_bytes(mem.as_ptr(), bytes) };
        mem
    }

    /// A second, non-owning handle onto the same bytes.
    pub fn share(&self) -> Self {
        HeapMemory {
            block: Arc::clone(&self.block),
            owner: false,
        }
    }
}

// SAFETY: the pointer is rounded up to 4096 bytes inside the allocation, the block lives
// as long as any handle (it is reference-counted), and the block is never moved.
unsafe impl SharedMemory for HeapMemory {
    fn as_ptr(&self) -> *mut u8 {
        self.block.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.block.len
    }
    fn backend(&self) -> &'static str {
        "heap"
    }
    fn is_owner(&self) -> bool {
        self.owner
    }
    fn truncated(&self) -> Option<u64> {
        None
    }
    fn writable(&self) -> bool {
        true
    }
}

impl std::fmt::Debug for HeapMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapMemory")
            .field("len", &self.block.len)
            .field("owner", &self.owner)
            .finish()
    }
}

/// How many bytes of `mem` are resident in memory (`mincore` over the whole region): a
/// 4 GiB segment of which two pages were touched reports 8 KiB.
pub fn resident_bytes<M: SharedMemory + ?Sized>(mem: &M) -> std::io::Result<u64> {
    if mem.is_empty() {
        return Ok(0);
    }
    // SAFETY: the SharedMemory contract makes `as_ptr .. + len` live, mapped memory. The
    // contract promises 64-byte alignment, not page alignment: an unaligned base makes
    // mincore fail with EINVAL, which comes back as an error (all our backends, heap
    // included, are page aligned).
    let pages = unsafe { crate::os::mapping::resident_pages_raw(mem.as_ptr(), mem.len()) }?;
    Ok((pages * crate::os::mapping::page_size()) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_memory_is_zeroed_aligned_and_shared() {
        let a = HeapMemory::new(10_000);
        let b = a.share();
        assert_eq!(a.as_ptr() as usize % 4096, 0);
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(a.is_owner() && !b.is_owner());
        let mut buf = vec![0xffu8; 10_000];
        // SAFETY: `b` is 10_000 bytes long and alive.
        unsafe { crate::format::copy::load_bytes(b.as_ptr(), &mut buf) };
        assert!(buf.iter().all(|&x| x == 0));
        // SAFETY: as above.
        unsafe { crate::format::copy::store_bytes(a.as_ptr().add(5), &[1, 2, 3]) };
        // SAFETY: as above.
        unsafe { crate::format::copy::load_bytes(b.as_ptr(), &mut buf[..10]) };
        assert_eq!(&buf[..10], &[0, 0, 0, 0, 0, 1, 2, 3, 0, 0]);
    }

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        for len in [usize::MAX, usize::MAX - 4096, isize::MAX as usize, 1 << 60] {
            assert!(HeapMemory::try_new(len).is_err(), "{len}");
        }
        assert_eq!(HeapMemory::try_new(100).unwrap().len(), 100);
    }

    #[test]
    fn zero_length_heap_memory() {
        let a = HeapMemory::new(0);
        assert!(a.is_empty());
        assert_eq!(a.as_ptr() as usize % 4096, 0);
    }
}
