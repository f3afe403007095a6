//! [`Mapping`]: an owned `mmap` region, the raw layer every backend maps through.
//!
//! ```
//! use shm_core::os::mapping::Mapping;
//! # fn main() -> std::io::Result<()> {
//! let map = Mapping::anonymous_shared(1 << 20)?; // MAP_SHARED | MAP_ANONYMOUS
//! assert_eq!(map.len(), 1 << 20);
//! let alias = map.alias()?; // a second mapping of the same pages
//! assert_ne!(alias.as_ptr(), map.as_ptr());
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use crate::os::sys::cvt;

/// An owned, readable and writable `MAP_SHARED` mapping, unmapped on drop.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    guard: Option<crate::os::sigbus::Registration>,
}

// SAFETY: a Mapping is an address range; it is only accessed through raw pointers by users
// bound by the `SharedMemory` contract (atomic accesses), so it can move between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only gives out the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(
        fd: Option<BorrowedFd<'_>>,
        len: usize,
        extra_flags: libc::c_int,
    ) -> io::Result<Mapping> {
        Self::map_prot(fd, len, extra_flags, libc::PROT_READ | libc::PROT_WRITE)
    }

    fn map_prot(
        fd: Option<BorrowedFd<'_>>,
        len: usize,
        extra_flags: libc::c_int,
        prot: libc::c_int,
    ) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map zero bytes",
            ));
        }
        let (raw_fd, flags) = match fd {
            Some(fd) => (fd.as_raw_fd(), libc::MAP_SHARED | extra_flags),
            None => (-1, libc::MAP_SHARED | libc::MAP_ANONYMOUS | extra_flags),
        };
        // SAFETY: a null hint lets the kernel choose an address that overlaps nothing of
        // ours; `raw_fd` is borrowed for the call (or -1 for an anonymous mapping).
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, raw_fd, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mmap returned null without MAP_FIXED"),
            len,
            guard: None,
        })
    }

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
    ///
    /// Mapping past the end of the file is allowed by the kernel but touching those pages
    /// raises SIGBUS: callers check the file's size first.
    #[doc(alias = "mmap")]
    pub fn shared(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        Self::map(Some(fd.as_fd()), len, 0)
    }

    /// `mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0)`: a read-only view. Writing through
    /// it faults, so only code that knows it is read-only (a `SharedMemory` whose
    /// `writable()` is false) may be handed its pointer.
    pub fn shared_read_only(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        Self::map_prot(Some(fd.as_fd()), len, 0, libc::PROT_READ)
    }

    /// [`shared`](Self::shared) with `MAP_POPULATE`: every page is faulted in up front.
    pub fn shared_populated(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        Self::map(Some(fd.as_fd()), len, libc::MAP_POPULATE)
    }

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)`:
    /// zeroed memory that a child made by `fork` shares with its parent.
    pub fn anonymous_shared(len: usize) -> io::Result<Mapping> {
        Self::map(None, len, libc::MAP_NORESERVE)
    }

    /// A second mapping of the same pages (`mremap(addr, 0, len, MREMAP_MAYMOVE)`), as if
    /// another process had mapped them: writes through either are seen through the other.
    /// Only for shared mappings.
    #[doc(alias = "mremap")]
    pub fn alias(&self) -> io::Result<Mapping> {
        // SAFETY: with old_size 0 and a shared mapping, mremap leaves the old mapping in
        // place and creates a new one of the same pages at an address of the kernel's
        // choosing (MREMAP_MAYMOVE without MREMAP_FIXED), overlapping nothing.
        let ptr =
            unsafe { libc::mremap(self.ptr.as_ptr().cast(), 0, self.len, libc::MREMAP_MAYMOVE) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: NonNull::new(ptr.cast()).expect("mremap returned null"),
            len: self.len,
            guard: None,
        })
    }

    /// Guards the mapping against `SIGBUS` from a file truncated under it (see
    /// [`crate::os::sigbus`]): a fault inside it then puts zero pages in its place and marks
    /// it [`tripped`](Self::tripped) instead of killing the process. Installs the process's
    /// `SIGBUS` handler on first use. Returns whether the mapping is guarded (`false` only
    /// if the table of guarded ranges is full or the handler could not be installed).
    pub fn guard_sigbus(&mut self) -> bool {
        if self.guard.is_none() {
            self.guard = crate::os::sigbus::register(self.ptr.as_ptr(), self.len);
        }
        self.guard.is_some()
    }

    /// Whether a `SIGBUS` inside this guarded mapping was caught: its pages are now
    /// private zero pages, no longer shared with anyone.
    pub fn tripped(&self) -> bool {
        self.guard.as_ref().is_some_and(|g| g.tripped())
    }

    /// The base address (page aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: empty mappings cannot be made.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// How many of the mapping's pages are resident in memory (`mincore`).
    #[doc(alias = "mincore")]
    pub fn resident_pages(&self) -> io::Result<usize> {
        // SAFETY: the range is exactly this live mapping.
        unsafe { resident_pages_raw(self.ptr.as_ptr(), self.len) }
    }
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// # Safety
/// `ptr .. ptr + len` must be mapped (an unaligned `ptr` is an EINVAL error, not UB).
pub(crate) unsafe fn resident_pages_raw(ptr: *mut u8, len: usize) -> io::Result<usize> {
    let mut vec = vec![0u8; len.div_ceil(page_size())];
    // SAFETY: the range is mapped (caller) and `vec` has one byte per page of it.
    cvt(unsafe { libc::mincore(ptr.cast(), len, vec.as_mut_ptr()) })?;
    Ok(vec.iter().filter(|&&b| b & 1 == 1).count())
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unregister before unmapping: the handler must never map over a range that is no
        // longer ours.
        drop(self.guard.take());
        // SAFETY: we own this range and nothing refers to it once we are dropped. munmap
        // can only fail for a bad range, which would be a bug here; there is nothing useful
        // to do about it in a destructor, so the result is ignored (as memmap2 does).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Volatile byte copies: the tests sit below the format layer and its `copy` module.
    unsafe fn store(dst: *mut u8, src: &[u8]) {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: forwarded to the caller: `dst..dst + src.len()` is mapped.
            unsafe { dst.add(i).write_volatile(*b) };
        }
    }
    unsafe fn load(src: *const u8, dst: &mut [u8]) {
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: forwarded to the caller: `src..src + dst.len()` is mapped.
            *b = unsafe { src.add(i).read_volatile() };
        }
    }

    #[test]
    fn alias_sees_writes_and_untouched_pages_cost_nothing() {
        let a = Mapping::anonymous_shared(64 << 20).unwrap();
        assert_eq!(a.resident_pages().unwrap(), 0);
        let b = a.alias().unwrap();
        // SAFETY: both mappings are 64 MiB long.
        unsafe {
            store(a.as_ptr().add(12345), b"hello");
            let mut out = [0u8; 5];
            load(b.as_ptr().add(12345), &mut out);
            assert_eq!(&out, b"hello");
        }
        assert_eq!(a.resident_pages().unwrap(), 1);
        assert!(Mapping::anonymous_shared(0).is_err());
    }

    #[test]
    fn a_guarded_mapping_survives_its_file_being_truncated() {
        let path = format!("/dev/shm/shm-core-sigbus-{}", std::process::id());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(3 * 4096).unwrap();
        let mut map = Mapping::shared(&file, 3 * 4096).unwrap();
        assert!(map.guard_sigbus());
        // SAFETY: in range of the 12 KiB mapping.
        unsafe { store(map.as_ptr().add(8192), b"before") };
        assert!(!map.tripped());
        file.set_len(4096).unwrap();
        let mut out = [0xffu8; 6];
        // SAFETY: in range of the mapping; the page is gone from the file, and the guard
        // turns the fault into zero pages.
        unsafe { load(map.as_ptr().add(8192), &mut out) };
        assert!(map.tripped(), "the fault was not seen");
        assert_eq!(out, [0; 6]);
        // The whole range is private now: writes work and reach nobody.
        // SAFETY: as above.
        unsafe { store(map.as_ptr(), b"after") };
    }
}
