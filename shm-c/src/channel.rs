//! Channels: `shm_channel_*`, `shm_sender_*`, `shm_receiver_*`.

use std::ffi::{c_char, c_void};

use shm_any::AnyShm;
use shm_core::channel::DetachedSlot;
use shm_core::{Channel, ChannelOptions, Error};

use crate::handles::*;
use crate::memory::ShmMemory;
use crate::status::{guard, Failure, ShmStatus};

/// A channel segment (opaque): made by `shm_channel_create`, attached by
/// `shm_channel_open`, freed by `shm_channel_free`.
pub struct ShmChannel {
    chan: Channel<AnyShm>,
}

/// The sending end of one ring (opaque).
pub struct ShmSender {
    tx: shm_core::Sender<AnyShm>,
    slot: Option<DetachedSlot>,
}

/// The receiving end of one ring (opaque).
pub struct ShmReceiver {
    rx: shm_core::Receiver<AnyShm>,
    held: Option<shm_core::channel::HeldMessage>,
}

impl ShmReceiver {
    pub(crate) fn inner(&self) -> &shm_core::Receiver<AnyShm> {
        &self.rx
    }
}

/// Creates the named POSIX segment `name` (`"/name"`, or `"name"`) holding a channel of
/// `rings` rings (1 to 64) of `capacity` data bytes each (a power of two, at least 64;
/// the largest message is `capacity - 16`), and stores its handle in `*out`. The
/// segment's name is removed when this handle and every end made from it are freed.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` (NULL, a bad name, capacity or ring count),
/// `SHM_STATUS_ALREADY_EXISTS`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or points to a
/// `shm_channel *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_create(
    name: *const c_char,
    capacity: u64,
    rings: u32,
    out: *mut *mut ShmChannel,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        named(name, out, |name| {
            let opts = ChannelOptions::new().rings(rings).capacity(capacity);
            let mem = AnyShm::from(
                shm_posix::ShmOptions::new(name)
                    .size(opts.segment_len()?)
                    .create()?,
            );
            let chan = Channel::create(mem, &opts)?;
            Ok(ShmChannel { chan })
        })
    }
}

/// Attaches the channel in the named POSIX segment `name`, waiting up to `timeout_ns`
/// (`SHM_FOREVER`: as long as it takes; 0: not at all) for the segment to appear; the
/// layout is validated. Stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_NOT_FOUND` (no such segment by the deadline),
/// `SHM_STATUS_MISMATCH` (not a channel of this version), `SHM_STATUS_CORRUPT`,
/// `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// As `shm_channel_create`.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_open(
    name: *const c_char,
    timeout_ns: u64,
    out: *mut *mut ShmChannel,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        named(name, out, |name| {
            let mem = AnyShm::from(open_named(name, timeout_arg(timeout_ns))?);
            Ok(ShmChannel {
                chan: Channel::attach(mem)?,
            })
        })
    }
}

/// Stores in `*len` the bytes a channel of `rings` rings of `capacity` bytes needs (for
/// `shm_memory_*_create` before `shm_channel_create_in`).
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `len` is NULL or points to a `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_segment_len(
    capacity: u64,
    rings: u32,
    len: *mut u64,
) -> ShmStatus {
    guard(|| {
        if len.is_null() {
            return Err(Failure::invalid("len is NULL"));
        }
        let n = ChannelOptions::new()
            .rings(rings)
            .capacity(capacity)
            .segment_len()?;
        // SAFETY: non-null (checked); the caller's `uint64_t`.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Lays out a channel (as `shm_channel_create`) in `mem`, which stays the caller's (the
/// channel maps it afresh), and stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT`, `SHM_STATUS_MISMATCH` (the memory is too small:
/// see `shm_channel_segment_len`; or holds a segment already), `SHM_STATUS_SYSTEM`.
///
/// # Safety
/// `mem` is NULL or a live memory handle; `out` is NULL or points to a `shm_channel *`.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_create_in(
    mem: *mut ShmMemory,
    capacity: u64,
    rings: u32,
    out: *mut *mut ShmChannel,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(mem, "memory", out, |m| {
            let opts = ChannelOptions::new().rings(rings).capacity(capacity);
            Ok(ShmChannel {
                chan: Channel::create(m.duplicate()?, &opts)?,
            })
        })
    }
}

/// Attaches the channel laid out in `mem` (the layout validated), which stays the
/// caller's, and stores the handle in `*out`.
///
/// Errors: `SHM_STATUS_MISMATCH`, `SHM_STATUS_CORRUPT`, `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// As `shm_channel_create_in`.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_attach_in(
    mem: *mut ShmMemory,
    out: *mut *mut ShmChannel,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(mem, "memory", out, |m| {
            Ok(ShmChannel {
                chan: Channel::attach(m.duplicate()?)?,
            })
        })
    }
}

/// Frees a channel handle (NULL: nothing). Ends made from it stay usable. A handle
/// freed already is refused with `SHM_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `chan` is NULL or a handle from `shm_channel_create` / `shm_channel_open`.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_free(chan: *mut ShmChannel) -> ShmStatus {
    free(chan, "channel")
}

/// Takes the sending end of ring `ring` (0: creator to attacher by convention) and
/// stores it in `*out`.
///
/// Errors: `SHM_STATUS_ROLE_TAKEN` while a live process (this one included) holds it,
/// `SHM_STATUS_INVALID_ARGUMENT` (no such ring, NULL), `SHM_STATUS_CORRUPT`.
///
/// # Safety
/// `chan` is NULL or a live channel handle; `out` is NULL or points to a
/// `shm_sender *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_sender(
    chan: *mut ShmChannel,
    ring: u32,
    out: *mut *mut ShmSender,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(chan, "channel", out, |c| {
            Ok(ShmSender {
                tx: c.chan.sender(ring)?,
                slot: None,
            })
        })
    }
}

/// Takes the receiving end of ring `ring` and stores it in `*out`.
///
/// Errors: as `shm_channel_sender`.
///
/// # Safety
/// As `shm_channel_sender`, with a `shm_receiver *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_channel_receiver(
    chan: *mut ShmChannel,
    ring: u32,
    out: *mut *mut ShmReceiver,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        end_of(chan, "channel", out, |c| {
            Ok(ShmReceiver {
                rx: c.chan.receiver(ring)?,
                held: None,
            })
        })
    }
}

/// Frees a sending end (NULL: nothing); the receiver then gets `SHM_STATUS_CLOSED` once it
/// has read everything. A reservation outstanding is abandoned.
///
/// # Safety
/// `tx` is NULL or a handle from `shm_channel_sender`.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_free(tx: *mut ShmSender) -> ShmStatus {
    free(tx, "sender")
}

/// Frees a receiving end (NULL: nothing); the sender then gets `SHM_STATUS_CLOSED`.
///
/// # Safety
/// `rx` is NULL or a handle from `shm_channel_receiver`.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_free(rx: *mut ShmReceiver) -> ShmStatus {
    free(rx, "receiver")
}

fn sender<'a>(tx: *mut ShmSender) -> Result<&'a mut ShmSender, Failure> {
    // SAFETY: every caller passes its own caller's `tx`, whose contract is "NULL or a
    // live sender used by one thread at a time".
    let s = unsafe { handle(tx, "sender") }?;
    if s.slot.is_some() {
        return Err(Failure::invalid(
            "a reservation is outstanding: shm_sender_commit or shm_sender_abandon it first",
        ));
    }
    Ok(s)
}

/// Sends a copy of `len` bytes at `data` if there is room now.
///
/// Errors: `SHM_STATUS_FULL`, `SHM_STATUS_CLOSED`, `SHM_STATUS_PEER_DIED`,
/// `SHM_STATUS_MESSAGE_TOO_LARGE`, `SHM_STATUS_INVALID_ARGUMENT` (NULL data with len > 0,
/// a reservation outstanding), `SHM_STATUS_CORRUPT`, `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `tx` is NULL or a live sender, used by one thread at a time; `data` is NULL or points
/// to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_try_send(
    tx: *mut ShmSender,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    guard(|| {
        let s = sender(tx)?;
        // SAFETY: the caller's contract above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        s.tx.try_send(bytes).map_err(|e| Error::from(e).into())
    })
}

/// Sends a copy of `len` bytes at `data`, waiting for room as long as it takes.
///
/// Errors: as `shm_sender_try_send`, without `SHM_STATUS_FULL`.
///
/// # Safety
/// As `shm_sender_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_send(
    tx: *mut ShmSender,
    data: *const c_void,
    len: usize,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract.
    unsafe { shm_sender_send_timeout(tx, data, len, SHM_FOREVER) }
}

/// Sends a copy of `len` bytes at `data`, waiting at most `timeout_ns` for room
/// (`SHM_FOREVER`: as long as it takes).
///
/// Errors: as `shm_sender_send`, and `SHM_STATUS_TIMEOUT`.
///
/// # Safety
/// As `shm_sender_try_send`.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_send_timeout(
    tx: *mut ShmSender,
    data: *const c_void,
    len: usize,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        let s = sender(tx)?;
        // SAFETY: the caller's contract above.
        let bytes = unsafe { bytes_arg(data, len) }?;
        match timeout_arg(timeout_ns) {
            None => s.tx.send(bytes).map_err(|e| Error::from(e).into()),
            Some(t) => {
                s.tx.send_timeout(bytes, t)
                    .map_err(|e| Error::from(e).into())
            }
        }
    })
}

/// Reserves room for a `len`-byte message in the ring itself, waiting at most
/// `timeout_ns`, and stores the address of its `len` bytes in `*slot`: write the message
/// there, then `shm_sender_commit` (or give it up with `shm_sender_abandon`). The address
/// is valid until then; the bytes are shared memory (another process can write them),
/// so write them and do not read them back. One reservation at a time per sender.
///
/// Errors: as `shm_sender_send_timeout`.
///
/// # Safety
/// As `shm_sender_try_send`; `slot` is NULL or points to a `void *` to fill.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_reserve_timeout(
    tx: *mut ShmSender,
    len: usize,
    timeout_ns: u64,
    slot: *mut *mut c_void,
) -> ShmStatus {
    guard(|| {
        if slot.is_null() {
            return Err(Failure::invalid("the slot out-pointer is NULL"));
        }
        let s = sender(tx)?;
        let d = s.tx.reserve_detached(len, timeout_arg(timeout_ns))?;
        let p = s.tx.detached_ptr(&d)?;
        s.slot = Some(d);
        // SAFETY: non-null (checked); the caller's `void *` to fill.
        unsafe { slot.write(p.cast()) };
        Ok(())
    })
}

/// Publishes the message reserved by `shm_sender_reserve_timeout`.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` when no reservation is outstanding,
/// `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `tx` is NULL or a live sender, used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_commit(tx: *mut ShmSender) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let s = unsafe { handle(tx, "sender") }?;
        let d = s
            .slot
            .take()
            .ok_or_else(|| Failure::invalid("no reservation is outstanding"))?;
        Ok(s.tx.commit_detached(d)?)
    })
}

/// Gives up the reservation outstanding, if any: nothing is sent.
///
/// # Safety
/// As `shm_sender_commit`.
#[no_mangle]
pub unsafe extern "C" fn shm_sender_abandon(tx: *mut ShmSender) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let s = unsafe { handle(tx, "sender") }?;
        if let Some(d) = s.slot.take() {
            s.tx.abandon_detached(d);
        }
        Ok(())
    })
}

fn received(info: *mut ShmReceived, r: Result<usize, Error>) -> Result<(), Failure> {
    match r {
        Ok(len) => {
            report(
                info,
                ShmReceived {
                    len,
                    number: 0,
                    missed: 0,
                },
            );
            Ok(())
        }
        Err(Error::MessageTooLarge { len, .. }) => Err(too_large(info, len, 0)),
        Err(e) => Err(e.into()),
    }
}

/// Copies the next message, if there is one now, into the `cap` bytes at `buf`; its
/// length goes to `info->len` (`info` may be NULL).
///
/// Errors: `SHM_STATUS_EMPTY`, `SHM_STATUS_CLOSED` (the sender closed and everything was
/// read), `SHM_STATUS_PEER_DIED`, `SHM_STATUS_MESSAGE_TOO_LARGE` (the message is
/// `info->len` bytes and stays for the next call), `SHM_STATUS_INVALID_ARGUMENT`,
/// `SHM_STATUS_CORRUPT`, `SHM_STATUS_TRUNCATED`.
///
/// # Safety
/// `rx` is NULL or a live receiver, used by one thread at a time; `buf` is NULL or
/// points to `cap` writable bytes; `info` is NULL or points to a `shm_received`.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_try_recv(
    rx: *mut ShmReceiver,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(rx, "receiver", buf, cap, |r, out| {
            received(info, r.rx.try_recv_into_slice(out).map_err(Error::from))
        })
    }
}

/// Copies the next message into the `cap` bytes at `buf`, waiting as long as it takes.
///
/// Errors: as `shm_receiver_try_recv`, without `SHM_STATUS_EMPTY`.
///
/// # Safety
/// As `shm_receiver_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_recv(
    rx: *mut ShmReceiver,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
) -> ShmStatus {
    // SAFETY: forwarded: the same contract.
    unsafe { shm_receiver_recv_timeout(rx, buf, cap, info, SHM_FOREVER) }
}

/// Copies the next message into the `cap` bytes at `buf`, waiting at most `timeout_ns`
/// (`SHM_FOREVER`: as long as it takes).
///
/// Errors: as `shm_receiver_recv`, and `SHM_STATUS_TIMEOUT`.
///
/// # Safety
/// As `shm_receiver_try_recv`.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_recv_timeout(
    rx: *mut ShmReceiver,
    buf: *mut c_void,
    cap: usize,
    info: *mut ShmReceived,
    timeout_ns: u64,
) -> ShmStatus {
    // SAFETY: the caller's contract above.
    unsafe {
        receive_into(rx, "receiver", buf, cap, |r, out| {
            let got = match timeout_arg(timeout_ns) {
                None => r.rx.recv_into_slice(out).map_err(Error::from),
                Some(t) => r.rx.recv_into_slice_timeout(out, t).map_err(Error::from),
            };
            received(info, got)
        })
    }
}

/// Receives the next message without copying it, waiting at most `timeout_ns` (0: only
/// if one is there now; `SHM_FOREVER`: as long as it takes): `*data` points at its
/// `*len` bytes in the ring itself, valid until `shm_receiver_release` (or the
/// receiver's free). The bytes are shared memory another process may write at any
/// moment: copy what you validate. While a message is held the receiver receives
/// nothing else (`SHM_STATUS_INVALID_ARGUMENT`).
///
/// Errors: as `shm_receiver_recv_timeout` (`SHM_STATUS_EMPTY` for timeout 0), and
/// `SHM_STATUS_INVALID_ARGUMENT` while a message is held.
///
/// # Safety
/// `rx` is NULL or a live receiver used by one thread at a time; `data` and `len` are
/// NULL or point to a `const void *` and a `size_t`.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_recv_held_timeout(
    rx: *mut ShmReceiver,
    data: *mut *const c_void,
    len: *mut usize,
    timeout_ns: u64,
) -> ShmStatus {
    guard(|| {
        if data.is_null() || len.is_null() {
            return Err(Failure::invalid("data or len is NULL"));
        }
        // SAFETY: the caller's contract above.
        let r = unsafe { handle(rx, "receiver") }?;
        let m = r.rx.recv_held(timeout_arg(timeout_ns))?;
        let p = r.rx.held_ptr(&m)?;
        let n = m.len();
        r.held = Some(m);
        // SAFETY: both non-null (checked); the caller's `const void *` and `size_t`.
        unsafe {
            data.write(p.cast());
            len.write(n);
        }
        Ok(())
    })
}

/// Releases the message `shm_receiver_recv_held_timeout` holds, freeing its room for
/// the sender; its address is no longer valid.
///
/// Errors: `SHM_STATUS_INVALID_ARGUMENT` when none is held.
///
/// # Safety
/// `rx` is NULL or a live receiver used by one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn shm_receiver_release(rx: *mut ShmReceiver) -> ShmStatus {
    guard(|| {
        // SAFETY: the caller's contract above.
        let r = unsafe { handle(rx, "receiver") }?;
        let m = r
            .held
            .take()
            .ok_or_else(|| Failure::invalid("no message is held"))?;
        Ok(r.rx.release_held(m)?)
    })
}
