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

/// `pidfd_open(pid)`: an fd that becomes readable when the process exits (also while it
/// is an unreaped zombie). `Err` when there is no such process (`ESRCH`) or pidfds are not
/// available.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let raw = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    if raw <= 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: pidfd_open takes a positive pid and flags and returns -1 or a new fd
    // (close-on-exec by definition) that nobody else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
    let fd = libc::c_int::try_from(fd).unwrap_or(-1);
    // SAFETY: as above.
    unsafe { ret_owned_fd(fd) }
}

/// Which of `fds` are readable now (one `poll` call, zero timeout: never blocks).
pub fn readable_now(fds: &[std::os::fd::BorrowedFd<'_>]) -> Vec<bool> {
    readable_within(fds, std::time::Duration::ZERO)
}

/// Which of `fds` are readable, waiting at most `timeout` (cut to `i32::MAX` ms) for one
/// to be (one `poll` call; an interrupted or failed poll says none is).
pub fn readable_within(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: std::time::Duration,
) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `p` holds `len` valid pollfds whose fds are live (borrowed) for the call.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return vec![false; fds.len()];
    }
    p.iter().map(|x| x.revents & libc::POLLIN != 0).collect()
}

/// A non-blocking, close-on-exec `eventfd`: the readable fd a wait set hands to event
/// loops.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns -1 or a new fd nobody else owns.
    unsafe { ret_owned_fd(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }
}

/// Makes an eventfd readable (adds 1 to its counter; a full counter is readable already).
pub fn eventfd_signal(fd: std::os::fd::BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to a live fd; EAGAIN (a full counter) is fine.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Makes an eventfd unreadable (reads its counter; nothing to read is fine).
pub fn eventfd_clear(fd: std::os::fd::BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64 from a live non-blocking fd.
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock every process of the machine shares
/// (what `Instant` reads on Linux), so a deadline written by one process means the same
/// moment to another.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
