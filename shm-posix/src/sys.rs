//! The raw calls shm-posix makes, each turned into an `io::Result` in one place.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

pub use shm_core::mapping::fstat;
use shm_core::mapping::{cvt, ret_owned_fd};
pub use shm_core::proc::effective_uid as geteuid;

/// `shm_open(name, flags | O_CLOEXEC | O_NOFOLLOW, mode)`.
pub fn shm_open(name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid C string for the call; shm_open returns -1 or a new fd
    // that nothing else owns.
    unsafe {
        ret_owned_fd(libc::shm_open(
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::mode_t,
        ))
    }
}

/// `shm_unlink(name)`.
pub fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid C string for the call.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) }).map(drop)
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `fd` is a live borrowed fd.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }).map(drop)
}

/// `posix_fallocate(fd, 0, len)` (which returns its error instead of setting errno).
pub fn fallocate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `fd` is a live borrowed fd.
    match unsafe { libc::posix_fallocate(fd.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// `pread(fd, buf, offset)`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `buf` is writable for its length; `fd` is live.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `flock(fd, LOCK_SH)`: held for as long as the fd is open.
pub fn flock_shared(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is live.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_SH) }).map(drop)
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(true)` if we got it (nobody else holds a lock).
pub fn try_flock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: `fd` is live.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}
