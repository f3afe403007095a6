//! Events (`shm_event_*`, `shm_notifier_*`, `shm_listener_*`) and the wait set
//! (`shm_waitset_*`): waiting on many ends at once, in a thread or from an event loop
//! (`shm_waitset_fd`).

use std::ffi::c_char;
use std::os::fd::AsRawFd;
use std::time::Duration;

use shm_any::AnyShm;
use shm_core::event::EventIds;
use shm_core::waitset::Key;
use shm_core::{Error, Event, EventOptions, WaitSet};

use crate::broadcast::ShmSubscriber;
use crate::channel::ShmReceiver;
use crate::handles::*;
use crate::service::ShmServer;
use crate::status::{guard, Failure, ShmStatus};

/// An event segment (opaque): payload-free notifications by id.
pub struct ShmEvent {
    ev: Event<AnyShm>,
}

/// The notifying end of an event segment (opaque).
pub struct ShmNotifier {
    n: shm_core::Notifier<AnyShm>,
}

/// The listening end of an event segment (opaque).
pub struct ShmListener {
    l: shm_core::Listener<AnyShm>,
    /// Ids taken from the segment that did not fit the caller's last buffer: handed out
    /// first by the next call (a notification is never lost to a small buffer).
    pending: std::collections::VecDeque<u64>,
}

/// A wait set (opaque): the ends attached to it, waited on at once.
pub struct ShmWaitSet {
    ws: WaitSet,
}

/// One ready attachment of a wait set.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ShmReady {
    /// The key `shm_waitset_attach_*` gave.
    pub key: u64,
    /// `SHM_STATUS_OK`: the end has something to take (its try call gets it), or the
    /// interval is due. Anything else: the end's wait would end with this status (its
    /// peer closed or died, ...); its own try call reports it too.
    pub status: ShmStatus,
}

/// Creates the named POSIX segment `name` holding an event of `max_ids` ids (1 to
/// 4096) for up to `max_notifiers` notifier processes, and stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `out` is NULL or points to a `shm_event *`.
#[no_mangle]
pub unsafe extern "C" fn shm_event_create(
    name: *const c_char,
    max_ids: u32,
    max_notifiers: u32,
    out: *mut *mut ShmEvent,
) -> ShmStatus {
    let make = |name: &str| {
        let opts = EventOptions::new()
            .max_ids(max_ids)
            .max_notifiers(max_notifiers);
        let mem = AnyShm::from(
            shm_posix::ShmOptions::new(name)
                .size(opts.segment_len()?)
                .create()?,
        );
        Ok(ShmEvent {
            ev: Event::create(mem, &opts)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Attaches the event in the named POSIX segment `name`, waiting up to `timeout_ns` for
/// the segment to appear.
///
/// Errors: `SHM_STATUS_NOT_FOUND`, `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_event_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_event_open(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmEvent,
) -> ShmStatus {
    let make = |name: &str| {
        let mem = AnyShm::from(open_named(name, timeout_arg(timeout_ns))?);
        Ok(ShmEvent {
            ev: Event::attach(mem)?,
        })
    };
    // SAFETY: the caller's contract above.
    unsafe { named(name, out, make) }
}

/// Frees an event handle (NULL: nothing); ends made from it stay usable.
///
/// # Safety
/// `ev` is NULL or a handle from `shm_event_create` / `shm_event_open`.
#[no_mangle]
pub unsafe extern "C" fn shm_event_free(ev: *mut ShmEvent) -> ShmStatus {
    free(ev, "event")
}

/// Joins as a notifier and stores the end in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN` (every notifier line taken), `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `ev` is NULL or a live event handle; `out` is NULL or points to a `shm_notifier *`.
#[no_mangle]
pub unsafe extern "C" fn shm_event_notifier(
    ev: *mut ShmEvent,
    out: *mut *mut ShmNotifier,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(ev, "event", out, |h| {
            Ok(ShmNotifier {
                n: h.ev.notifier()?,
            })
        })
    }
}

/// Takes the listening end (one live listener at a time) and stores it in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN`, `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `ev` is NULL or a live event handle; `out` is NULL or points to a `shm_listener *`.
#[no_mangle]
pub unsafe extern "C" fn shm_event_listener(
    ev: *mut ShmEvent,
    out: *mut *mut ShmListener,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(ev, "event", out, |h| {
            Ok(ShmListener {
                l: h.ev.listener()?,
                pending: std::collections::VecDeque::new(),
            })
        })
    }
}

/// Frees a notifier (NULL: nothing).
///
/// # Safety
/// `n` is NULL or a handle from `shm_event_notifier`.
#[no_mangle]
pub unsafe extern "C" fn shm_notifier_free(n: *mut ShmNotifier) -> ShmStatus {
    free(n, "notifier")
}

/// Frees a listener (NULL: nothing).
///
/// # Safety
/// `l` is NULL or a handle from `shm_event_listener`.
#[no_mangle]
pub unsafe extern "C" fn shm_listener_free(l: *mut ShmListener) -> ShmStatus {
    free(l, "listener")
}

/// Notifies event `id` (below the event's `max_ids`); never waits. Notifications of one
/// id before the listener looks count once.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (an id out of range, NULL), `SHM_STATUS_CLOSED`
/// (no listener), `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `n` is NULL or a live notifier used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn shm_notifier_notify(n: *mut ShmNotifier, id: u64) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(n, "notifier") }?;
        h.n.notify(id).map_err(|e| Error::from(e).into())
    })
}

/// Hands out up to `out.len()` of the pending ids, first taken first; their number goes
/// to `*count`.
fn deliver(pending: &mut std::collections::VecDeque<u64>, out: &mut [u64], count: *mut usize) {
    let n = pending.len().min(out.len());
    for (slot, id) in out.iter_mut().zip(pending.drain(..n)) {
        *slot = id;
    }
    if !count.is_null() {
        // SAFETY: non-null; the caller's `size_t`.
        unsafe { count.write(n) };
    }
}

/// Takes ids notified since they were last taken, if any, into the `cap` ids at `ids`
/// (`cap` at least 1); their number goes to `*count`. More ids than `cap` stay for the
/// next call, which hands them out at once: call until `SHM_STATUS_EMPTY` (a wait set
/// reports the listener ready only for ids still in the segment).
///
/// Errors: `SHM_STATUS_EMPTY`; `SHM_STATUS_PEER_DIED` (a notifier died; reported once);
/// `SHM_STATUS_INVALID_ARGUMENT` (`cap` 0, NULL); `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `l` is NULL or a live listener used by one thread at a time; `ids` is NULL or `cap`
/// writable `uint64_t`; `count` is NULL or a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_listener_try_wait(
    l: *mut ShmListener,
    ids: *mut u64,
    cap: usize,
    count: *mut usize,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract (a zero timeout is the try).
    unsafe { shm_listener_wait_timeout(l, ids, cap, count, 0) }
}

/// As `shm_listener_try_wait`, waiting at most `timeout_ns` for a notification
/// (`SHM_FOREVER`: as long as it takes).
///
/// Errors: as `shm_listener_try_wait`, `SHM_STATUS_TIMEOUT` instead of `SHM_STATUS_EMPTY`
/// for a timeout above 0.
///
/// # Safety
/// As `shm_listener_try_wait`.
#[no_mangle]
pub unsafe extern "C" fn shm_listener_wait_timeout(
    l: *mut ShmListener,
    ids: *mut u64,
    cap: usize,
    count: *mut usize,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let h = unsafe { handle(l, "listener") }?;
        if ids.is_null() || cap == 0 {
            return Err(Failure::invalid("ids is NULL or cap is 0"));
        }
        if cap > isize::MAX as usize / 8 {
            return Err(Failure::invalid(format!(
                "cap {cap} is larger than any buffer"
            )));
        }
        // SAFETY: non-null, `cap` writable u64s of the caller's (its contract), not
        // aliased during the call.
        let out = unsafe { std::slice::from_raw_parts_mut(ids, cap) };
        if h.pending.is_empty() {
            let got: EventIds = match timeout_arg(timeout_ns) {
                Some(t) if t.is_zero() => h.l.try_wait().map_err(Error::from)?,
                None => h.l.wait().map_err(Error::from)?,
                Some(t) => h.l.wait_timeout(t).map_err(Error::from)?,
            };
            h.pending.extend(got.iter());
        }
        deliver(&mut h.pending, out, count);
        Ok(())
    })
}

/// Makes an empty wait set and stores it in `*out`.
///
/// # Safety
/// `out` is NULL or points to a `shm_waitset *`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_create(out: *mut *mut ShmWaitSet) -> ShmStatus {
    guard(|| {
        out_arg(out)?;
        hand_out(out, ShmWaitSet { ws: WaitSet::new() })
    })
}

/// Frees a wait set (NULL: nothing); the ends attached to it stay the caller's.
///
/// # Safety
/// `ws` is NULL or a handle from `shm_waitset_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_free(ws: *mut ShmWaitSet) -> ShmStatus {
    free(ws, "wait set")
}

/// Attaches `attach` of the end behind `end` to the set, storing its key in `*key`.
///
/// # Safety
/// `ws` and `end` are NULL or live handles of their types; `key` NULL or a `uint64_t`.
unsafe fn attach_end<E>(
    ws: *mut ShmWaitSet,
    end: *mut E,
    what: &str,
    key: *mut u64,
    attach: impl FnOnce(&mut WaitSet, &E) -> Result<Key, Error>,
) -> ShmStatus {
    guard(|| {
        if key.is_null() {
            return Err(Failure::invalid("key is NULL"));
        }
        // SAFETY: the caller's contract above.
        let set = unsafe { handle(ws, "wait set") }?;
        // SAFETY: as above.
        let e = unsafe { handle(end, what) }?;
        let k = attach(&mut set.ws, e)?;
        // SAFETY: non-null (checked); the caller's `uint64_t`.
        unsafe { key.write(k.0 as u64) };
        Ok(())
    })
}

/// Attaches a channel receiver: ready when a message (or the end of the stream) is
/// there. The receiver stays the caller's: its try call takes what the set says.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULLs, more than 127 ends).
///
/// # Safety
/// `ws` and `rx` are NULL or live handles; `key` is NULL or a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_attach_receiver(
    ws: *mut ShmWaitSet,
    rx: *mut ShmReceiver,
    key: *mut u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe { attach_end(ws, rx, "receiver", key, |set, r| set.attach(r.inner())) }
}

/// Attaches a broadcast subscriber (as `shm_waitset_attach_receiver`).
///
/// # Safety
/// As `shm_waitset_attach_receiver`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_attach_subscriber(
    ws: *mut ShmWaitSet,
    s: *mut ShmSubscriber,
    key: *mut u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe { attach_end(ws, s, "subscriber", key, |set, h| set.attach(h.inner())) }
}

/// Attaches an event listener: ready when an id was notified.
///
/// # Safety
/// As `shm_waitset_attach_receiver`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_attach_listener(
    ws: *mut ShmWaitSet,
    l: *mut ShmListener,
    key: *mut u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe { attach_end(ws, l, "listener", key, |set, h| set.attach(&h.l)) }
}

/// Attaches a service server: ready when a request is queued for it.
///
/// # Safety
/// As `shm_waitset_attach_receiver`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_attach_server(
    ws: *mut ShmWaitSet,
    s: *mut ShmServer,
    key: *mut u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe { attach_end(ws, s, "server", key, |set, h| set.attach(h.inner())) }
}

/// Attaches an interval: ready every `every_ns` nanoseconds from now.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (0, NULLs).
///
/// # Safety
/// `ws` is NULL or a live wait set; `key` is NULL or a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_attach_interval(
    ws: *mut ShmWaitSet,
    every_ns: u64,
    key: *mut u64,
) -> ShmStatus {
    guard(|| {
        if key.is_null() {
            return Err(Failure::invalid("key is NULL"));
        }
        // SAFETY: the caller's contract above.
        let set = unsafe { handle(ws, "wait set") }?;
        let k = set.ws.attach_interval(Duration::from_nanos(every_ns))?;
        // SAFETY: non-null (checked); the caller's `uint64_t`.
        unsafe { key.write(k.0 as u64) };
        Ok(())
    })
}

/// Detaches `key` (a key not attached is ignored).
///
/// # Safety
/// `ws` is NULL or a live wait set.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_detach(ws: *mut ShmWaitSet, key: u64) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let set = unsafe { handle(ws, "wait set") }?;
        if let Ok(k) = usize::try_from(key) {
            set.ws.detach(Key(k));
        }
        Ok(())
    })
}

/// Waits at most `timeout_ns` (0: just looks; `SHM_FOREVER`: as long as it takes) until
/// an attachment is ready, and stores up to `cap` of the ready ones at `ready`, their
/// number in `*count`.
///
/// Errors: `SHM_STATUS_EMPTY` (timeout 0, nothing ready), `SHM_STATUS_TIMEOUT`,
/// `SHM_STATUS_MESSAGE_TOO_LARGE` (more ready than `cap`: the first `cap` are stored,
/// `*count` says how many there were; the others are still ready at the next call),
/// `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `ws` is NULL or a live wait set used by one thread at a time; `ready` is NULL or
/// `cap` writable `shm_ready`; `count` is NULL or a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_wait_timeout(
    ws: *mut ShmWaitSet,
    ready: *mut ShmReady,
    cap: usize,
    count: *mut usize,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let set = unsafe { handle(ws, "wait set") }?;
        if ready.is_null() && cap > 0 {
            return Err(Failure::invalid(format!("ready is NULL with cap {cap}")));
        }
        let got = match timeout_arg(timeout_ns) {
            Some(t) if t.is_zero() => set.ws.try_wait().map_err(Error::from)?,
            None => set.ws.wait().map_err(Error::from)?,
            Some(t) => set.ws.wait_timeout(t).map_err(Error::from)?,
        };
        for (i, r) in got.iter().take(cap).enumerate() {
            let status = r.error.map_or(ShmStatus::Ok, |e| Failure::from(e).status);
            // SAFETY: `i < cap`: inside the caller's `cap` writable `shm_ready`.
            unsafe {
                ready.add(i).write(ShmReady {
                    key: r.key.0 as u64,
                    status,
                })
            };
        }
        if !count.is_null() {
            // SAFETY: non-null; the caller's `size_t`.
            unsafe { count.write(got.len()) };
        }
        if got.len() > cap {
            return Err(Failure::new(
                ShmStatus::MessageTooLarge,
                format!(
                    "{} attachments are ready and the buffer holds {cap}",
                    got.len()
                ),
            ));
        }
        Ok(())
    })
}

/// Stores in `*fd` a file descriptor that is readable while anything in the set is
/// ready, for an event loop (poll, epoll, libuv, ...): when it is readable, call
/// `shm_waitset_wait_timeout` with timeout 0. The descriptor belongs to the set (do not
/// close it); the first call starts the set's watcher thread.
///
/// Errors: `SHM_STATUS_SYSTEM`, `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `ws` is NULL or a live wait set; `fd` is NULL or an `int`.
#[no_mangle]
pub unsafe extern "C" fn shm_waitset_fd(ws: *mut ShmWaitSet, fd: *mut i32) -> ShmStatus {
    guard(|| {
        if fd.is_null() {
            return Err(Failure::invalid("fd is NULL"));
        }
        // SAFETY: the caller's contract above.
        let set = unsafe { handle(ws, "wait set") }?;
        let raw = set.ws.as_fd()?.as_raw_fd();
        // SAFETY: non-null (checked); the caller's `int`.
        unsafe { fd.write(raw) };
        Ok(())
    })
}
