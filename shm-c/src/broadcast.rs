//! Broadcasts: `shm_broadcast_*`, `shm_publisher_*`, `shm_subscriber_*`.

use std::ffi::{c_char, c_void};

use shm_any::AnyShm;
use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, Error};

use crate::handles::*;
use crate::memory::ShmMemory;
use crate::status::{guard, Failure, ShmStatus};

/// A broadcast segment (opaque).
pub struct ShmBroadcast {
    b: Broadcast<AnyShm>,
}

/// The publishing end of a broadcast (opaque).
pub struct ShmPublisher {
    p: shm_core::Publisher<AnyShm>,
    slot: Option<shm_core::broadcast::DetachedPublish>,
}

/// One subscriber of a broadcast (opaque).
pub struct ShmSubscriber {
    s: shm_core::Subscriber<AnyShm>,
}

impl ShmSubscriber {
    pub(crate) fn inner(&self) -> &shm_core::Subscriber<AnyShm> {
        &self.s
    }
}

/// Creates the named POSIX segment `name` holding a broadcast of `slots` slots (2 to
/// 2^24) of messages up to `max_message` bytes, for up to `max_subscribers` subscribers
/// (1 to 1024); `lossy` non-zero: the publisher never waits and slow subscribers are told
/// what they missed (`SHM_STATUS_LAGGED`); zero: reliable (the publisher waits for the
/// slowest live subscriber, evicting one stuck for more than a second). Stores the handle
/// in `*out`; the name is removed when this handle and every end made from it are freed.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or points to a
/// `shm_broadcast *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_create(
    name: *const c_char,
    max_message: u64,
    slots: u64,
    max_subscribers: u32,
    lossy: i32,
    out: *mut *mut ShmBroadcast,
) -> ShmStatus {
    let opts = options(max_message, slots, max_subscribers, lossy);
    // SAFETY: the caller's contract above.
    unsafe {
        named(name, out, |name| {
            let mem = AnyShm::from(
                shm_posix::ShmOptions::new(name)
                    .size(opts.segment_len()?)
                    .create()?,
            );
            Ok(ShmBroadcast {
                b: Broadcast::create(mem, &opts)?,
            })
        })
    }
}

/// Attaches the broadcast in the named POSIX segment `name`, waiting up to `timeout_ns`
/// for the segment to appear (`SHM_FOREVER`: as long as it takes; 0: not at all).
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_broadcast_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_open(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmBroadcast,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        named(name, out, |name| {
            let mem = AnyShm::from(open_named(name, timeout_arg(timeout_ns))?);
            Ok(ShmBroadcast {
                b: Broadcast::attach(mem)?,
            })
        })
    }
}

fn options(max_message: u64, slots: u64, max_subscribers: u32, lossy: i32) -> BroadcastOptions {
    let mode = if lossy != 0 {
        BroadcastMode::Lossy
    } else {
        BroadcastMode::Reliable
    };
    BroadcastOptions::new()
        .mode(mode)
        .slots(slots)
        .max_message(max_message)
        .max_subscribers(max_subscribers)
}

/// Stores in `*len` the bytes a broadcast of these options needs (see
/// `shm_broadcast_create`).
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `len` is NULL or points to a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_segment_len(
    max_message: u64,
    slots: u64,
    max_subscribers: u32,
    len: *mut u64,
) -> ShmStatus {
    guard(|| {
        if len.is_null() {
            return Err(Failure::invalid("len is NULL"));
        }
        let n = options(max_message, slots, max_subscribers, 0).segment_len()?;
        // SAFETY: non-null (checked); the caller's `uint64_t`.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Lays out a broadcast (as `shm_broadcast_create`) in `mem`, which stays the caller's,
/// and stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_MISMATCH` (too small: see
/// `shm_broadcast_segment_len`), `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `mem` is NULL or a live memory handle; `out` is NULL or points to a `shm_broadcast *`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_create_in(
    mem: *mut ShmMemory,
    max_message: u64,
    slots: u64,
    max_subscribers: u32,
    lossy: i32,
    out: *mut *mut ShmBroadcast,
) -> ShmStatus {
    let opts = options(max_message, slots, max_subscribers, lossy);
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(mem, "memory", out, |m| {
            Ok(ShmBroadcast {
                b: Broadcast::create(m.duplicate()?, &opts)?,
            })
        })
    }
}

/// Attaches the broadcast laid out in `mem`, which stays the caller's.
///
/// Errors: `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`, `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// As `shm_broadcast_create_in`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_attach_in(
    mem: *mut ShmMemory,
    out: *mut *mut ShmBroadcast,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(mem, "memory", out, |m| {
            Ok(ShmBroadcast {
                b: Broadcast::attach(m.duplicate()?)?,
            })
        })
    }
}

/// Frees a broadcast handle (NULL: nothing); ends made from it stay usable. A handle
/// freed already is refused with `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `b` is NULL or a handle from `shm_broadcast_create` / `shm_broadcast_open`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_free(b: *mut ShmBroadcast) -> ShmStatus {
    free(b, "broadcast")
}

/// Takes the publishing end (one live publisher at a time) and stores it in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN`, `SHM_STATUS_CORRUPT`, `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `b` is NULL or a live broadcast handle; `out` is NULL or points to a
/// `shm_publisher *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_publisher(
    b: *mut ShmBroadcast,
    out: *mut *mut ShmPublisher,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(b, "broadcast", out, |h| {
            Ok(ShmPublisher {
                p: h.b.publisher()?,
                slot: None,
            })
        })
    }
}

/// Joins as a subscriber (it receives what is published from now on) and stores the end
/// in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN` (every subscriber line taken), `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `b` is NULL or a live broadcast handle; `out` is NULL or points to a
/// `shm_subscriber *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_subscriber(
    b: *mut ShmBroadcast,
    out: *mut *mut ShmSubscriber,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(b, "broadcast", out, |h| {
            Ok(ShmSubscriber {
                s: h.b.subscriber()?,
            })
        })
    }
}

/// Stores in `*count` how many subscribers are joined now (a publisher that must not
/// start before its subscribers polls this).
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULL).
///
/// # Safety
/// `b` is NULL or a live broadcast handle; `count` is NULL or points to a `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_broadcast_subscriber_count(
    b: *mut ShmBroadcast,
    count: *mut u32,
) -> ShmStatus {
    guard(|| {
        if count.is_null() {
            return Err(Failure::invalid("count is NULL"));
        }
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(b, "broadcast") }?;
        let n = h.b.subscriber_count();
        // SAFETY: non-null (checked); the caller's `uint32_t`.
        unsafe { count.write(n) };
        Ok(())
    })
}

/// Frees the publishing end (NULL: nothing); subscribers get `SHM_STATUS_CLOSED` once
/// they have read everything.
///
/// # Safety
/// `p` is NULL or a handle from `shm_broadcast_publisher`.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_free(p: *mut ShmPublisher) -> ShmStatus {
    free(p, "publisher")
}

/// Frees a subscriber (NULL: nothing); it leaves the broadcast.
///
/// # Safety
/// `s` is NULL or a handle from `shm_broadcast_subscriber`.
#[no_mangle]
pub unsafe extern "C" fn shm_subscriber_free(s: *mut ShmSubscriber) -> ShmStatus {
    free(s, "subscriber")
}

/// Publishes a copy of `len` bytes at `data` if there is room now (always, lossy).
///
/// Errors: `SHM_STATUS_FULL` (reliable), `SHM_STATUS_MESSAGE_TOO_LARGE`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `p` is NULL or a live publisher, used by one thread at a time; `data` is NULL or
/// points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_try_publish(
    p: *mut ShmPublisher,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(p, "publisher") }?;
        // SAFETY: as above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        h.p.try_publish(bytes).map_err(|e| Error::from(e).into())
    })
}

/// Publishes a copy of `len` bytes at `data`, waiting for room as long as it takes
/// (reliable; lossy never waits).
///
/// Errors: as `shm_publisher_try_publish`, without `SHM_STATUS_FULL`.
///
/// # Safety
/// As `shm_publisher_try_publish`.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_publish(
    p: *mut ShmPublisher,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract.
    unsafe { shm_publisher_publish_timeout(p, data, len, SHM_FOREVER) }
}

/// Publishes a copy of `len` bytes at `data`, waiting at most `timeout_ns` for room.
///
/// Errors: as `shm_publisher_publish`, and `SHM_STATUS_TIMEOUT`.
///
/// # Safety
/// As `shm_publisher_try_publish`.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_publish_timeout(
    p: *mut ShmPublisher,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(p, "publisher") }?;
        // SAFETY: as above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        match timeout_arg(timeout_ns) {
            None => h.p.publish(bytes).map_err(|e| Error::from(e).into()),
            Some(t) => {
                h.p.publish_timeout(bytes, t)
                    .map_err(|e| Error::from(e).into())
            }
        }
    })
}

fn delivered(
    s: &shm_core::Subscriber<AnyShm>,
    info: *mut ShmReceived,
    r: Result<usize, Error>,
) -> Result<(), Failure> {
    match r {
        Ok(len) => {
            let number = s.last_number().unwrap_or(0);
            report(
                info,
                ShmReceived {
                    len,
                    number,
                    missed: 0,
                },
            );
            Ok(())
        }
        Err(Error::Lagged { missed }) => {
            report(
                info,
                ShmReceived {
                    len: 0,
                    number: 0,
                    missed,
                },
            );
            Err(Error::Lagged { missed }.into())
        }
        Err(Error::MessageTooLarge { len, .. }) => Err(too_large(info, len, 0)),
        Err(e) => Err(e.into()),
    }
}

/// Copies the next message, if there is one now, into the `cap` bytes at `buf`; its
/// length and number go to `*info` (`info` may be NULL).
///
/// Errors: `SHM_STATUS_EMPTY`; `SHM_STATUS_LAGGED` (lossy: `info->missed` messages were
/// lost; the next call goes on from the oldest one still there); `SHM_STATUS_CLOSED`
/// (the publisher closed and everything was read); `SHM_STATUS_PEER_DIED`;
/// `SHM_STATUS_EVICTED`; `SHM_STATUS_MESSAGE_TOO_LARGE` (`info->len` says the size; the
/// message stays); `SHM_STATUS_INVALID_ARGUMENT`; `SHM_STATUS_CORRUPT`;
/// `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `s` is NULL or a live subscriber, used by one thread at a time; `buf` is NULL or
/// points to `cap` writable bytes; `info` is NULL or points to a `shm_received`.
#[no_mangle]
pub unsafe extern "C" fn shm_subscriber_try_recv(
    s: *mut ShmSubscriber,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(s, "subscriber", buf, cap, |h, out| {
            let r = h.s.try_recv_into_slice(out).map_err(Error::from);
            delivered(&h.s, info, r)
        })
    }
}

/// Copies the next message into the `cap` bytes at `buf`, waiting as long as it takes.
///
/// Errors: as `shm_subscriber_try_recv`, without `SHM_STATUS_EMPTY`.
///
/// # Safety
/// As `shm_subscriber_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shm_subscriber_recv(
    s: *mut ShmSubscriber,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract.
    unsafe { shm_subscriber_recv_timeout(s, buf, cap, info, SHM_FOREVER) }
}

/// Copies the next message into the `cap` bytes at `buf`, waiting at most `timeout_ns`.
///
/// Errors: as `shm_subscriber_recv`, and `SHM_STATUS_TIMEOUT`.
///
/// # Safety
/// As `shm_subscriber_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shm_subscriber_recv_timeout(
    s: *mut ShmSubscriber,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
    timeout_ns: u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(s, "subscriber", buf, cap, |h, out| {
            let r = match timeout_arg(timeout_ns) {
                None => h.s.recv_into_slice(out).map_err(Error::from),
                Some(t) => h.s.recv_into_slice_timeout(out, t).map_err(Error::from),
            };
            delivered(&h.s, info, r)
        })
    }
}

/// Reserves the next message's slot for a `len`-byte message, waiting at most
/// `timeout_ns` for room (reliable; 0: only if there is room now), and stores the
/// address of its `len` bytes in `*slot`: write the message there, then
/// `shm_publisher_commit` (or `shm_publisher_abandon`: nothing is published). The
/// address is valid until then; the bytes are shared memory, so write them and do not
/// read them back. Nothing else is published while a reservation is outstanding.
///
/// Errors: as `shm_publisher_publish_timeout` (`SHM_STATUS_FULL` for timeout 0), and
/// `SHM_STATUS_INVALID_ARGUMENT` while a reservation is outstanding.
///
/// # Safety
/// `p` is NULL or a live publisher used by one thread at a time; `slot` is NULL or
/// points to a `void *`.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_reserve_timeout(
    p: *mut ShmPublisher,
    len: usize,
    timeout_ns: u64,
    slot: *mut *mut c_void,
) -> ShmStatus {
    guard(|| {
        if slot.is_null() {
            return Err(Failure::invalid("the slot out-pointer is NULL"));
        }
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(p, "publisher") }?;
        let d = h.p.reserve_detached(len, timeout_arg(timeout_ns))?;
        let ptr = h.p.detached_ptr(&d)?;
        h.slot = Some(d);
        // SAFETY: non-null (checked); the caller's `void *`.
        unsafe { slot.write(ptr.cast()) };
        Ok(())
    })
}

/// Publishes the message reserved by `shm_publisher_reserve_timeout`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` when no reservation is outstanding,
/// `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `p` is NULL or a live publisher used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_commit(p: *mut ShmPublisher) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(p, "publisher") }?;
        let d = h
            .slot
            .take()
            .ok_or_else(|| Failure::invalid("no reservation is outstanding"))?;
        Ok(h.p.commit_detached(d)?)
    })
}

/// Gives up the reservation outstanding, if any: nothing is published.
///
/// # Safety
/// As `shm_publisher_commit`.
#[no_mangle]
pub unsafe extern "C" fn shm_publisher_abandon(p: *mut ShmPublisher) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(p, "publisher") }?;
        if let Some(d) = h.slot.take() {
            h.p.abandon_detached(d);
        }
        Ok(())
    })
}
