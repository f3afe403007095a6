//! `futex(2)` on a word in shared memory, without `FUTEX_PRIVATE_FLAG`: the sleepers and
//! the wakers are in different processes; and `futex_waitv(2)` over many words, for the
//! reactor. Every futex call of the crate is here.
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

const SYS_FUTEX_WAITV: libc::c_long = 449;
const FUTEX2_SIZE_U32: u32 = 0x02;
const FUTEX2_PRIVATE: u32 = 128;

/// One word of a [`wait_any`]: `struct futex_waitv` (include/uapi/linux/futex.h).
#[repr(C)]
pub(crate) struct FutexWaitv {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

impl FutexWaitv {
    /// A word of this process only (the reactor's control word).
    pub(crate) fn private(word: &AtomicU32, expected: u32) -> Self {
        FutexWaitv {
            val: u64::from(expected),
            uaddr: word.as_ptr() as u64,
            flags: FUTEX2_SIZE_U32 | FUTEX2_PRIVATE,
            reserved: 0,
        }
    }

    /// A word in shared memory at `addr` (4-aligned), woken from other processes.
    pub(crate) fn shared(addr: usize, expected: u32) -> Self {
        FutexWaitv {
            val: u64::from(expected),
            uaddr: addr as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }
}

/// Sleeps until one of `words` no longer holds its value or is woken (no timeout: the
/// caller's words include one it can always bump). Any outcome is fine: the caller looks
/// at its words again.
///
/// # Safety
/// Every address in `words` must be a live, 4-aligned `u32` for the call (a word on a
/// truncated page makes the call fail with `EFAULT`, which is harmless here).
pub(crate) unsafe fn wait_any(words: &[FutexWaitv]) {
    let ts_ptr: *const libc::timespec = std::ptr::null();
    // SAFETY: `words` holds `len` valid entries for the call (the caller's contract for
    // the addresses); the kernel only reads the words; no timeout.
    unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0u32,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        );
    }
}

/// [`wait_any`] for at most `timeout` (cut to a day: the caller loops). Returns whether
/// the wait ran to its timeout (no word moved, nobody woke it).
///
/// # Safety
/// As [`wait_any`].
pub(crate) unsafe fn wait_any_for(words: &[FutexWaitv], timeout: Duration) -> bool {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let t = timeout.min(Duration::from_secs(86_400));
    let mut sec = now.tv_sec + t.as_secs() as libc::time_t;
    let mut nsec = now.tv_nsec + t.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    let at = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    // SAFETY: `words` holds `len` valid entries for the call (the caller's contract);
    // the kernel only reads them and the absolute timeout, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            SYS_FUTEX_WAITV,
            words.as_ptr(),
            words.len() as libc::c_uint,
            0u32,
            &at as *const libc::timespec,
            libc::CLOCK_MONOTONIC,
        )
    };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
}

/// Sleeps while a word of this process holds `expected`, at most `timeout`.
pub(crate) fn wait_private(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a live, 4-aligned word of ours; the timespec outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every sleeper on a word of this process only.
pub(crate) fn wake_private(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, 4-aligned word of ours; only the address is used.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}
