//! # shm-any
//!
//! Memory of any of the three backends behind one type, [`AnyShm`], for a program that
//! picks its backend at run time (the demo's `--backend`, the benchmarks' sweep over
//! backends, a binding): it forwards [`SharedMemory`] to the backend it holds and hands
//! out what only one backend has (a posix name, a memfd's fd, an anon alias).
//!
//! ```
//! use shm_any::AnyShm;
//! use shm_core::{Segment, SharedMemory};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mem = AnyShm::from(shm_anon::AnonShm::create(4096)?);
//! assert_eq!(mem.backend(), "anon");
//! let seg = Segment::create(mem, &[100u64, 876, 8021])?;
//! assert_eq!(seg.read()?, [100, 876, 8021]);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]

use std::os::fd::{AsFd, BorrowedFd};

use shm_anon::AnonShm;
use shm_core::SharedMemory;
use shm_memfd::MemfdShm;
use shm_posix::PosixShm;

/// One of the three backends, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Named POSIX shared memory (`shm-posix`).
    Posix,
    /// Anonymous shared memory for forked children (`shm-anon`).
    Anon,
    /// A sealed memfd passed over a Unix socket (`shm-memfd`).
    Memfd,
}

impl Backend {
    /// All three, in this order.
    pub const ALL: [Backend; 3] = [Backend::Posix, Backend::Anon, Backend::Memfd];

    /// `posix`, `anon` or `memfd` (what [`SharedMemory::backend`] says of its memory).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Posix => "posix",
            Backend::Anon => "anon",
            Backend::Memfd => "memfd",
        }
    }
}

/// Memory of one of the three backends.
#[derive(Debug)]
pub enum AnyShm {
    /// A named POSIX segment.
    Posix(PosixShm),
    /// Anonymous shared memory, shared with forked children.
    Anon(AnonShm),
    /// A sealed memfd.
    Memfd(MemfdShm),
}

impl AnyShm {
    #[inline]
    fn inner(&self) -> &dyn SharedMemory {
        match self {
            AnyShm::Posix(m) => m,
            AnyShm::Anon(m) => m,
            AnyShm::Memfd(m) => m,
        }
    }

    /// Which backend it is.
    pub fn kind(&self) -> Backend {
        match self {
            AnyShm::Posix(_) => Backend::Posix,
            AnyShm::Anon(_) => Backend::Anon,
            AnyShm::Memfd(_) => Backend::Memfd,
        }
    }

    /// The segment's name, for posix memory.
    pub fn posix_name(&self) -> Option<&str> {
        match self {
            AnyShm::Posix(m) => Some(m.name()),
            _ => None,
        }
    }

    /// The memfd (to pass to another process), for memfd memory.
    pub fn memfd_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            AnyShm::Memfd(m) => Some(m.as_fd()),
            _ => None,
        }
    }

    /// The anonymous region, for anon memory (to alias it before a fork).
    pub fn as_anon(&self) -> Option<&AnonShm> {
        match self {
            AnyShm::Anon(m) => Some(m),
            _ => None,
        }
    }
}

impl From<PosixShm> for AnyShm {
    fn from(m: PosixShm) -> Self {
        AnyShm::Posix(m)
    }
}

impl From<AnonShm> for AnyShm {
    fn from(m: AnonShm) -> Self {
        AnyShm::Anon(m)
    }
}

impl From<MemfdShm> for AnyShm {
    fn from(m: MemfdShm) -> Self {
        AnyShm::Memfd(m)
    }
}

// SAFETY: every method forwards to the backend held, each of which upholds the trait's
// contract (a stable, page-aligned mapping of `len` bytes that lives as long as it does).
#[allow(unsafe_code)]
unsafe impl SharedMemory for AnyShm {
    #[inline]
    fn as_ptr(&self) -> *mut u8 {
        self.inner().as_ptr()
    }
    #[inline]
    fn len(&self) -> usize {
        self.inner().len()
    }
    #[inline]
    fn backend(&self) -> &'static str {
        self.inner().backend()
    }
    #[inline]
    fn is_owner(&self) -> bool {
        self.inner().is_owner()
    }
    #[inline]
    fn truncated(&self) -> Option<u64> {
        self.inner().truncated()
    }
    #[inline]
    fn writable(&self) -> bool {
        self.inner().writable()
    }
    #[inline]
    fn held_elsewhere(&self) -> Option<bool> {
        self.inner().held_elsewhere()
    }
}
