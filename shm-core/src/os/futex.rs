//! `futex(2)` on a word in shared memory, without `FUTEX_PRIVATE_FLAG`: the sleepers and
//! the wakers are in different processes.
#![allow(unsafe_code)]

use std::time::Duration;

use crate::protocol::sync::AtomicU32;

/// Sleeps while `word` holds `expected`, at most `timeout` (`None`: no limit; every
/// caller in this crate passes a bound). Any outcome (woken, `EAGAIN`, `ETIMEDOUT`,
/// `EINTR`) is fine: the caller looks at its condition again.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, 4-aligned u32 (in a shared mapping); the timespec (or
    // null) outlives the call. FUTEX_WAIT only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            0usize,
            0u32,
        );
    }
}

/// Wakes every sleeper on `word`.
pub(crate) fn wake(word: &AtomicU32) {
    // SAFETY: as above; FUTEX_WAKE only uses the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            0usize,
            0usize,
            0u32,
        );
    }
}
