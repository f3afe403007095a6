//! [`PosixShm`]: a mapped named segment, and [`unlink`].

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use shm_core::os::mapping::Mapping;
use shm_core::SharedMemory;

use crate::{normalize_name, sys, validate_name, Error};

/// A mapped POSIX shared memory segment.
#[derive(Debug)]
pub struct PosixShm {
    pub(crate) map: Mapping,
    pub(crate) fd: OwnedFd,
    pub(crate) name: String,
    pub(crate) owner: bool,
    pub(crate) writable: bool,
}

impl PosixShm {
    /// The segment's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Gives up ownership: the name is no longer unlinked when this handle is dropped.
    /// Returns the name, for whoever takes the duty over (see [`unlink`]).
    pub fn persist(&mut self) -> &str {
        self.owner = false;
        &self.name
    }

    /// Takes ownership: the name is unlinked when this handle is dropped.
    pub fn take_ownership(&mut self) {
        self.owner = true;
    }

    /// How many of the segment's pages are resident in this process's mapping.
    pub fn resident_pages(&self) -> io::Result<usize> {
        self.map.resident_pages()
    }

    /// The current size of the object behind the name (`fstat`), which a peer may have
    /// changed since it was mapped.
    pub fn current_size(&self) -> io::Result<u64> {
        sys::fstat(self.fd.as_fd()).map(|st| u64::try_from(st.st_size).unwrap_or(0))
    }
}

impl AsFd for PosixShm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// SAFETY: the mapping is page aligned, `len` bytes long, readable and writable, lives as
// long as `self` and does not move with it; we never make references into it.
#[allow(unsafe_code)]
unsafe impl SharedMemory for PosixShm {
    fn as_ptr(&self) -> *mut u8 {
        self.map.as_ptr()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
    fn backend(&self) -> &'static str {
        "posix"
    }
    fn is_owner(&self) -> bool {
        self.owner
    }
    fn writable(&self) -> bool {
        self.writable
    }
    /// From `/proc/locks`: every handle holds a shared `flock` on its segment for as long
    /// as it lives (and a creator takes it before the file has a size), so a segment whose
    /// only lock is this handle's own is one no other handle of ours holds.
    fn held_elsewhere(&self) -> Option<bool> {
        let st = sys::fstat(self.fd.as_fd()).ok()?;
        match sys::flock_count(&st)? {
            // Not even ours: not a state we can read anything from.
            0 => None,
            1 => Some(false),
            _ => Some(true),
        }
    }
    fn truncated(&self) -> Option<u64> {
        if !self.map.tripped() {
            return None;
        }
        Some(self.current_size().unwrap_or(0))
    }
}

impl Drop for PosixShm {
    fn drop(&mut self) {
        if self.owner {
            if let Ok(cname) = CString::new(self.name.as_str()) {
                // Never panic in drop; a name someone else already unlinked is fine.
                let _ = sys::shm_unlink(&cname);
            }
        }
        // The mapping and the fd (and with it our flock) go away with the fields.
    }
}

/// Unlinks the segment `name` (`shm_unlink`). Processes that have it mapped keep it.
#[doc(alias = "shm_unlink")]
pub fn unlink(name: &str) -> Result<(), Error> {
    let cname = validate_name(name)?;
    sys::shm_unlink(&cname).map_err(|e| Error::io("shm_unlink", &normalize_name(name), e))
}
