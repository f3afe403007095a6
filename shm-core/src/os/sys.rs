//! Plumbing for raw system calls: `-1` returns into `io::Result`, fresh fds into
//! `OwnedFd`, `fstat`. The backends and the other OS modules use these.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// Turns a `-1`-on-error return value into an `io::Result`.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns the return value of a call that returns a new fd into an `OwnedFd`.
///
/// # Safety
/// `ret` must be either `-1` or a freshly opened fd that nothing else owns.
pub unsafe fn ret_owned_fd(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: the caller guarantees `fd` is fresh and unowned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat(fd)`.
pub fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is live for the call and `st` is a writable stat buffer.
    cvt(unsafe { libc::fstat(fd.as_fd().as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the buffer.
    Ok(unsafe { st.assume_init() })
}
