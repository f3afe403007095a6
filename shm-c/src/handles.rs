//! What every entry point does with its arguments: checked pointers, names, byte ranges,
//! timeouts, and the registry of live handles that refuses a second `_free`.

use std::collections::HashSet;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::status::{guard, Failure, ShmStatus};

/// The timeout that means "as long as it takes" (`UINT64_MAX` nanoseconds).
pub const SHM_FOREVER: u64 = u64::MAX;

/// What a receive delivered.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShmReceived {
    /// The message's length: the bytes written to the buffer, or, with
    /// `SHM_STATUS_MESSAGE_TOO_LARGE`, the size a buffer needs (the message stays).
    pub len: usize,
    /// The message's number (broadcast; 0 for a channel).
    pub number: u64,
    /// With `SHM_STATUS_LAGGED`: how many messages were lost to this subscriber.
    pub missed: u64,
}

/// Addresses of the handles alive now: a `_free` of anything else is refused (a second
/// free of the same handle, a pointer that never was one). Looked at on create and free
/// only, never per message.
static LIVE: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashSet<usize>>> {
    // A panic while holding the lock cannot leave the set half-changed (one insert or
    // remove): a poisoned lock is still a good set.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Boxes `value`, records it as live, and stores it in `*out`.
pub(crate) fn hand_out<T>(out: *mut *mut T, value: T) -> Result<(), Failure> {
    let p = Box::into_raw(Box::new(value));
    live().get_or_insert_with(HashSet::new).insert(p as usize);
    // SAFETY: `out` was checked non-null by `out_arg` before the value was made; it is
    // the caller's pointer to a `T *` to fill.
    unsafe { out.write(p) };
    Ok(())
}

/// Takes back a handle for its `_free`: `Ok(None)` for NULL (freeing NULL does nothing),
/// `Err` for a pointer that is not a live handle.
pub(crate) fn take_back<T>(p: *mut T, what: &str) -> Result<Option<Box<T>>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    let was_live = live().as_mut().is_some_and(|set| set.remove(&(p as usize)));
    if !was_live {
        return Err(Failure::invalid(format!(
            "{what} {p:p} is not a live handle (freed already, or never made by shm)"
        )));
    }
    // SAFETY: `p` came from `Box::into_raw` in `hand_out` (it was in the live set, which
    // only `hand_out` fills) and is removed from the set now, so it is taken back once.
    Ok(Some(unsafe { Box::from_raw(p) }))
}

/// The handle behind `p`, for an operation.
///
/// # Safety
/// `p` is NULL (refused) or a live handle of this type, used by one thread at a time.
pub(crate) unsafe fn handle<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-null (checked); live and not shared across threads (the caller's
    // contract, documented on every function).
    Ok(unsafe { &mut *p })
}

/// Refuses a NULL out-pointer before anything is made.
pub(crate) fn out_arg<T>(out: *mut *mut T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid("the out-pointer is NULL"));
    }
    Ok(())
}

/// A NUL-terminated UTF-8 name.
///
/// # Safety
/// `p` is NULL (refused) or points to a NUL-terminated string.
pub(crate) unsafe fn name_arg<'a>(p: *const c_char) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid("the name is NULL"));
    }
    // SAFETY: non-null and NUL-terminated (the caller's contract).
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|_| Failure::invalid("the name is not UTF-8"))
}

/// `len` bytes at `data` (NULL only with `len` 0).
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes that stay put for the call.
pub(crate) unsafe fn bytes_arg<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::invalid(format!("data is NULL with len {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "len {len} is larger than any buffer"
        )));
    }
    // SAFETY: non-null, `len` readable bytes (the caller's contract), at most isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// A buffer of `cap` writable bytes at `buf` (NULL only with `cap` 0).
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes no one else uses during the call.
pub(crate) unsafe fn buffer_arg<'a>(buf: *mut c_void, cap: usize) -> Result<&'a mut [u8], Failure> {
    if cap == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(Failure::invalid(format!("buf is NULL with cap {cap}")));
    }
    if cap > isize::MAX as usize {
        return Err(Failure::invalid(format!(
            "cap {cap} is larger than any buffer"
        )));
    }
    // SAFETY: non-null, `cap` writable bytes of the caller's, not aliased during the
    // call (the caller's contract), at most isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) })
}

/// `timeout_ns` as a wait bound: `None` for [`SHM_FOREVER`].
pub(crate) fn timeout_arg(timeout_ns: u64) -> Option<Duration> {
    (timeout_ns != SHM_FOREVER).then(|| Duration::from_nanos(timeout_ns))
}

/// Fills `*info` if the caller gave one.
pub(crate) fn report(info: *mut ShmReceived, value: ShmReceived) {
    if !info.is_null() {
        // SAFETY: non-null; the caller's `shm_received` to fill (documented).
        unsafe { info.write(value) };
    }
}

/// Opens the named POSIX segment, waiting up to `timeout` for it to appear.
pub(crate) fn open_named(
    name: &str,
    timeout: Option<Duration>,
) -> Result<shm_posix::PosixShm, Failure> {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        match shm_posix::ShmOptions::new(name).open() {
            Ok(m) => return Ok(m),
            Err(shm_posix::Error::NotFound { .. })
                if deadline.is_none_or(|d| Instant::now() < d)
                    && timeout != Some(Duration::ZERO) =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The status of a receive whose message did not fit the caller's buffer, with the size
/// it needs in `*info`.
pub(crate) fn too_large(info: *mut ShmReceived, len: u64, number: u64) -> Failure {
    report(
        info,
        ShmReceived {
            len: len as usize,
            number,
            missed: 0,
        },
    );
    Failure::new(
        ShmStatus::MessageTooLarge,
        format!("the message is {len} bytes: larger than the buffer (it stays for the next call)"),
    )
}

/// The body of every `_create` and `_open`: `out` and `name` checked, the handle made
/// by `make` from the name, then handed out.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or points to an `H *` to
/// fill.
pub(crate) unsafe fn named<H>(
    name: *const c_char,
    out: *mut *mut H,
    make: impl FnOnce(&str) -> Result<H, Failure>,
) -> ShmStatus {
    guard(|| {
        out_arg(out)?;
        // SAFETY: the caller's contract above.
        let name = unsafe { name_arg(name) }?;
        hand_out(out, make(name)?)
    })
}

/// The body of every function that takes an end of a segment: `out` and the segment's
/// handle checked, the end made by `make`, then handed out.
///
/// # Safety
/// `parent` is NULL or a live handle of its type used by one thread at a time; `out` is
/// NULL or points to an `H *` to fill.
pub(crate) unsafe fn end_of<P, H>(
    parent: *mut P,
    what: &str,
    out: *mut *mut H,
    make: impl FnOnce(&mut P) -> Result<H, Failure>,
) -> ShmStatus {
    guard(|| {
        out_arg(out)?;
        // SAFETY: the caller's contract above.
        let p = unsafe { handle(parent, what) }?;
        hand_out(out, make(p)?)
    })
}

/// The body of every `_free`.
pub(crate) fn free<T>(p: *mut T, what: &str) -> ShmStatus {
    guard(|| take_back(p, what).map(drop))
}

/// The body of every receive: the handle and the buffer checked, then `recv` into it.
///
/// # Safety
/// `h` is NULL or a live handle used by one thread at a time; `buf` is NULL or points to
/// `cap` writable bytes.
pub(crate) unsafe fn receive_into<H>(
    h: *mut H,
    what: &str,
    buf: *mut c_void,
    cap: usize,
    recv: impl FnOnce(&mut H, &mut [u8]) -> Result<(), Failure>,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(h, what) }?;
        // SAFETY: as above.
        let out = unsafe { buffer_arg(buf, cap) }?;
        recv(h, out)
    })
}
