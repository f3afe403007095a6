//! A zero-copy message channel between two processes, over any [`SharedMemory`].
//!
//! A channel segment (kind [`Kind::Channel`]) holds one or two single-producer
//! single-consumer rings. By convention ring 0 carries messages from the creator to the
//! process that attaches, and ring 1 (when there are two) the other way. Messages are
//! variable-size byte strings, written in place ([`Sender::reserve`] → [`SendSlot::write`]
//! → [`SendSlot::commit`]) and read in place ([`Receiver::recv`] → [`RecvSlot::read`],
//! released when the slot is dropped).
//!
//! Waiting: a side that must wait spins for a while ([`WaitMode::Block`], 50 µs by
//! default), then sleeps on a futex word in the segment; the other side makes the wake-up
//! system call only when a sleeper has said it sleeps, so the uncontended path makes no
//! system call. [`WaitMode::Spin`] never sleeps. Every wait is cut into slices of at most
//! 20 ms, between which the waiter checks whether the other end closed ([`Error::Closed`])
//! or its process died ([`Error::PeerDied`]).
//!
//! ## Layout (payload of a kind-3 segment, offsets from `payload_offset`)
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `rings`: 1 or 2 |
//! | 8 | 8 | `capacity`: bytes of data per ring, a power of two ≥ 64 |
//! | 128 + r·(384 + capacity) | 384 + capacity | ring `r` |
//!
//! Each ring: three 128-byte lines, then the data.
//!
//! | offset in ring | size | field |
//! |---:|---:|---|
//! | 0 | 8 | `tail`: bytes the sender has published (its resume point) |
//! | 8 | 4 | sender pid (0: none yet) |
//! | 128 | 8 | `head`: bytes the receiver has consumed |
//! | 136 | 4 | receiver pid |
//! | 256 | 4 | `data_seq`: futex word the receiver sleeps on |
//! | 260 | 4 | `space_seq`: futex word the sender sleeps on |
//! | 264 | 4 | receiver sleeping flag |
//! | 268 | 4 | sender sleeping flag |
//! | 272 | 4 | closed bits: 1 sender closed, 2 receiver closed |
//! | 384 | capacity | messages: an 8-byte header (`1 << 63 | len`, or `1 << 63 | 0xFFFF_FFFF` for a PAD to the end of the ring), the payload, padding to 8 bytes; the word after the last message is 0 |
//!
//! A hostile peer can write anything into the shared positions and lengths: each is
//! checked before use, and a bad one is [`Error::Corrupt`], after which the endpoint stays
//! broken. No read or write ever leaves the ring.
//!
//! ```
//! use shm_core::{Channel, ChannelOptions, HeapMemory};
//! # fn main() -> Result<(), shm_core::Error> {
//! let mem = HeapMemory::new(1 << 16);
//! let view = mem.share();                   // another process would map the segment
//! let ours = Channel::create(mem, &ChannelOptions::new())?;
//! let theirs = Channel::attach(view)?;
//! let mut tx = ours.sender(0)?;
//! let mut rx = theirs.receiver(0)?;
//!
//! let mut slot = tx.reserve(5)?;            // zero-copy: write in place
//! slot.write(0, b"hello")?;
//! slot.commit();
//! tx.send(b"world")?;                       // or copy in
//!
//! let msg = rx.recv()?;
//! let mut buf = [0u8; 5];
//! msg.read(0, &mut buf)?;                   // checked copy out of the slot
//! assert_eq!(&buf, b"hello");
//! drop(msg);                                // releases the space
//! let mut v = Vec::new();
//! rx.recv_into(&mut v)?;
//! assert_eq!(v, b"world");
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layout::{AttachOptions, Expect, Kind, Schema};
use crate::proc::{self, Liveness};
use crate::protocol::ring::{
    self, Consumer, Corrupt, Producer, Shared, CONSUMER_CLOSED, PRODUCER_CLOSED,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{copy, Error, RawSegment, SharedMemory};

const CHANNEL_HEADER: u64 = 128;
const LINE: u64 = 128;
const RING_CONTROL: u64 = 3 * LINE;
const MIN_CAPACITY: u64 = 64;
const SLICE: Duration = Duration::from_millis(20);

fn channel_schema() -> Schema {
    Schema::new("channel", 1, 0, 8).expect("short name")
}

/// How a side waits for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    /// Busy-poll; never sleeps. Lowest latency, one core per waiting side.
    Spin,
    /// Spin for `spin`, then sleep on a futex until woken.
    Block {
        /// How long to spin before sleeping.
        spin: Duration,
    },
}

impl Default for WaitMode {
    fn default() -> Self {
        WaitMode::Block {
            spin: Duration::from_micros(50),
        }
    }
}

/// How a channel segment is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelOptions {
    rings: u32,
    capacity: Option<u64>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            rings: 1,
            capacity: None,
        }
    }
}

impl ChannelOptions {
    /// One ring, as large as the segment allows.
    pub fn new() -> Self {
        Self::default()
    }
    /// One ring, or two (one per direction).
    pub fn rings(mut self, rings: u32) -> Self {
        self.rings = rings;
        self
    }
    /// Bytes per ring: a power of two, at least 64. Default: the largest that fits.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// The segment size (header included) that holds these rings at `capacity` bytes
    /// each: what to ask a backend for.
    pub fn segment_len_for(&self, capacity: u64) -> u64 {
        crate::layout::PAYLOAD_OFFSET as u64 + payload_len(self.rings, capacity)
    }
}

/// Payload bytes a channel of `rings` rings of `cap` bytes needs.
fn payload_len(rings: u32, cap: u64) -> u64 {
    CHANNEL_HEADER + u64::from(rings) * (RING_CONTROL + cap)
}

/// A channel segment: hands out the ends of its rings.
pub struct Channel<M: SharedMemory> {
    seg: Arc<RawSegment<M>>,
    rings: u32,
    cap: u64,
}

impl<M: SharedMemory> Clone for Channel<M> {
    fn clone(&self) -> Self {
        Channel {
            seg: Arc::clone(&self.seg),
            rings: self.rings,
            cap: self.cap,
        }
    }
}

fn expect(min_payload: u64) -> Expect {
    Expect {
        kind: Kind::Channel,
        schema: channel_schema(),
        min_payload,
    }
}

fn corrupt_header(field: &'static str, found: u64, expected: &'static str) -> Error {
    Error::CorruptHeader {
        field,
        found,
        expected,
    }
}

impl<M: SharedMemory> Channel<M> {
    /// Lays a channel into fresh, zeroed memory.
    pub fn create(mem: M, opts: &ChannelOptions) -> Result<Self, Error> {
        let rings = opts.rings;
        if !(1..=2).contains(&rings) {
            return Err(corrupt_header("channel rings", rings.into(), "1 or 2"));
        }
        let payload = (mem.len() as u64).saturating_sub(crate::layout::PAYLOAD_OFFSET as u64);
        let cap = match opts.capacity {
            Some(c) if c.is_power_of_two() && c >= MIN_CAPACITY => c,
            Some(c) => {
                return Err(corrupt_header(
                    "channel capacity",
                    c,
                    "a power of two, at least 64",
                ))
            }
            None => {
                let per_ring = payload.saturating_sub(CHANNEL_HEADER) / u64::from(rings);
                let room = per_ring.saturating_sub(RING_CONTROL);
                if room < MIN_CAPACITY {
                    MIN_CAPACITY // too small: `create` below reports TooSmall
                } else {
                    1 << (63 - room.leading_zeros())
                }
            }
        };
        let need = payload_len(rings, cap);
        let seg = RawSegment::create(mem, expect(need), |raw| {
            // SAFETY: the payload holds `need` bytes (checked by create), the channel header
            // at its start included; the segment is not published yet.
            unsafe {
                copy::store_bytes(raw.payload_ptr(), &rings.to_ne_bytes());
                copy::store_bytes(raw.payload_ptr().add(8), &cap.to_ne_bytes());
            }
        })?;
        Ok(Channel {
            seg: Arc::new(seg),
            rings,
            cap,
        })
    }

    /// Attaches to a channel segment, validating the header and the channel's layout.
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        let seg = RawSegment::attach(mem, expect(CHANNEL_HEADER), opts)?;
        let mut head = [0u8; 16];
        seg.read_at(0, &mut head)?;
        let rings = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes"));
        let cap = u64::from_ne_bytes(head[8..].try_into().expect("8 bytes"));
        if !(1..=2).contains(&rings) {
            return Err(corrupt_header("channel rings", rings.into(), "1 or 2"));
        }
        if !cap.is_power_of_two() || cap < MIN_CAPACITY {
            return Err(corrupt_header(
                "channel capacity",
                cap,
                "a power of two, at least 64",
            ));
        }
        let need = (RING_CONTROL.checked_add(cap))
            .and_then(|r| r.checked_mul(u64::from(rings)))
            .and_then(|r| r.checked_add(CHANNEL_HEADER));
        match need {
            Some(n) if n <= seg.payload_len() as u64 => {}
            _ => {
                return Err(Error::PayloadTooSmall {
                    kind: Kind::Channel,
                    needed: need.unwrap_or(u64::MAX),
                    found: seg.payload_len() as u64,
                })
            }
        }
        Ok(Channel {
            seg: Arc::new(seg),
            rings,
            cap,
        })
    }

    /// Bytes per ring.
    pub fn capacity(&self) -> u64 {
        self.cap
    }

    /// The largest message a ring carries.
    pub fn max_message(&self) -> u64 {
        self.cap - ring::MSG_HEADER - ring::TERMINATOR
    }

    /// The number of rings.
    pub fn rings(&self) -> u32 {
        self.rings
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.seg
    }

    fn ring(&self, ring: u32) -> Result<RingPtrs, Error> {
        if ring >= self.rings {
            return Err(Error::NoSuchRing {
                ring,
                rings: self.rings,
            });
        }
        let off = CHANNEL_HEADER + u64::from(ring) * (RING_CONTROL + self.cap);
        // SAFETY: `attach`/`create` proved the payload holds every ring's control lines and
        // data; `off` is a multiple of 64 (128 + k·(384 + a power of two ≥ 64)).
        let base = unsafe { self.seg.payload_ptr().add(off as usize) };
        Ok(RingPtrs {
            base,
            cap: self.cap,
        })
    }

    fn claim(
        &self,
        ring: u32,
        pid_line: u64,
        closed_bit: u32,
        role: &'static str,
    ) -> Result<RingPtrs, Error> {
        let ptrs = self.ring(ring)?;
        let me = proc::current_pid();
        let pid_word = ptrs.u32_at(pid_line + 8);
        let closed = ptrs.shared().closed;
        // Acquire (here and on the CAS failure path): pairs with the AcqRel CAS by which a
        // previous holder claimed the end, so its pid and close bit are seen together.
        let mut current = pid_word.load(Ordering::Acquire);
        loop {
            let free = current == 0
                || current == me
                || closed.load(Ordering::Acquire) & closed_bit != 0
                || proc::liveness(current) == Liveness::Dead;
            if !free {
                return Err(Error::RoleTaken {
                    role,
                    ring,
                    pid: current,
                });
            }
            // AcqRel: pairs with a previous holder's store of the pid / close bit.
            match pid_word.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // AcqRel: pairs with the Release `fetch_or` of a previous holder's drop (Acquire
        // half) and with the other end's Acquire loads of `closed` (Release half).
        closed.fetch_and(!closed_bit, Ordering::AcqRel);
        Ok(ptrs)
    }

    /// The sending end of `ring` (0: creator → attacher by convention).
    pub fn sender(&self, ring: u32) -> Result<Sender<M>, Error> {
        let ptrs = self.claim(ring, 0, PRODUCER_CLOSED, "sending")?;
        let prod = Producer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Sender {
            _chan: self.clone(),
            ptrs,
            prod,
            wait: WaitMode::default(),
            broken: None,
        })
    }

    /// The receiving end of `ring`.
    pub fn receiver(&self, ring: u32) -> Result<Receiver<M>, Error> {
        let ptrs = self.claim(ring, LINE, CONSUMER_CLOSED, "receiving")?;
        let cons = Consumer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Receiver {
            _chan: self.clone(),
            ptrs,
            cons,
            wait: WaitMode::default(),
            broken: None,
        })
    }
}

fn corrupt(c: Corrupt) -> Error {
    match c {
        Corrupt::Head(v) => Error::Corrupt {
            what: "the receiver's position",
            found: v,
        },
        Corrupt::Tail(v) => Error::Corrupt {
            what: "the sender's position",
            found: v,
        },
        Corrupt::Length(v) => Error::Corrupt {
            what: "a message header",
            found: v,
        },
    }
}

/// Raw pointers to one ring: three 128-byte control lines, then the data.
#[derive(Clone, Copy)]
struct RingPtrs {
    base: *mut u8,
    cap: u64,
}

// SAFETY: the pointers are into a mapping kept alive by the endpoint's `Channel`, and are
// only used for atomic accesses.
unsafe impl Send for RingPtrs {}

impl RingPtrs {
    fn u64_at(&self, off: u64) -> &AtomicU64 {
        // SAFETY: `off` is one of the fixed, 8-aligned control word offsets below
        // RING_CONTROL, inside the validated ring; atomics may alias shared memory.
        unsafe { &*self.base.add(off as usize).cast::<AtomicU64>() }
    }
    fn u32_at(&self, off: u64) -> &AtomicU32 {
        // SAFETY: as in `u64_at`, 4-aligned.
        unsafe { &*self.base.add(off as usize).cast::<AtomicU32>() }
    }
    fn shared(&self) -> Shared<'_> {
        Shared {
            tail: self.u64_at(0),
            head: self.u64_at(LINE),
            data_seq: self.u32_at(2 * LINE),
            space_seq: self.u32_at(2 * LINE + 4),
            consumer_sleeping: self.u32_at(2 * LINE + 8),
            producer_sleeping: self.u32_at(2 * LINE + 12),
            closed: self.u32_at(2 * LINE + 16),
        }
    }
    fn producer_pid(&self) -> u32 {
        self.u32_at(8).load(Ordering::Relaxed)
    }
    fn consumer_pid(&self) -> u32 {
        self.u32_at(LINE + 8).load(Ordering::Relaxed)
    }
    fn data(&self) -> *mut u8 {
        // SAFETY: the data area follows the control lines inside the validated ring.
        unsafe { self.base.add(RING_CONTROL as usize) }
    }
}

impl ring::Words for RingPtrs {
    fn load(&self, off: u64, order: Ordering) -> u64 {
        let off = off & (self.cap - 1) & !7;
        // SAFETY: masked to an 8-aligned offset below the capacity: inside the data area.
        unsafe { &*self.data().add(off as usize).cast::<AtomicU64>() }.load(order)
    }
    fn store(&self, off: u64, value: u64, order: Ordering) {
        let off = off & (self.cap - 1) & !7;
        // SAFETY: as in `load`.
        unsafe { &*self.data().add(off as usize).cast::<AtomicU64>() }.store(value, order)
    }
}

/// `futex(2)` on a word in shared memory (no `FUTEX_PRIVATE_FLAG`: the sleepers and the
/// wakers are in different processes).
struct SysFutex;

impl ring::Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, 4-aligned u32 in a shared mapping; the timespec (or
        // null) outlives the call. Any result (woken, EAGAIN, ETIMEDOUT, EINTR) is fine: the
        // caller re-checks its condition.
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
    fn wake(&self, word: &AtomicU32) {
        // SAFETY: as above; FUTEX_WAKE only reads the address.
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
}

/// The bounded wait both ends share: spin, then sleep in slices, checking the peer.
/// Without a timeout the clock is first read after 64 spins (block mode) or at the first
/// peer check (spin mode), so a short wait costs no `Instant::now`.
struct Waiter {
    mode: WaitMode,
    start: Option<Instant>,
    deadline: Option<Duration>,
    spins: u32,
}

impl Waiter {
    fn new(mode: WaitMode, timeout: Option<Duration>) -> Self {
        Waiter {
            mode,
            // A timeout counts from the call; otherwise the clock is read only when a
            // spin phase ends (block mode) or a peer check is due.
            start: timeout.map(|_| Instant::now()),
            deadline: timeout,
            spins: 0,
        }
    }

    fn elapsed(&mut self) -> Duration {
        self.start.get_or_insert_with(Instant::now).elapsed()
    }

    fn expired(&mut self) -> Option<Error> {
        let d = self.deadline?;
        let waited = self.elapsed();
        (waited >= d).then_some(Error::Timeout { waited })
    }

    /// Whether to sleep now (else spin once more).
    fn should_sleep(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        match self.mode {
            WaitMode::Spin => false,
            WaitMode::Block { spin } => self.spins.is_multiple_of(64) && self.elapsed() >= spin,
        }
    }

    /// Whether it is time for a peer check while spinning (about every 65k spins).
    fn check_due(&self) -> bool {
        self.spins.is_multiple_of(65_536)
    }

    fn slice(&mut self) -> Duration {
        match self.deadline {
            Some(d) => d.saturating_sub(self.elapsed()).min(SLICE),
            None => SLICE,
        }
    }
}

fn peer_gone(closed: u32, closed_bit: u32, pid: u32) -> Option<Error> {
    if closed & closed_bit != 0 {
        return Some(Error::Closed);
    }
    if proc::liveness(pid) == Liveness::Dead {
        return Some(Error::PeerDied { pid });
    }
    None
}

/// The sending end of a ring.
pub struct Sender<M: SharedMemory> {
    _chan: Channel<M>,
    ptrs: RingPtrs,
    prod: Producer,
    wait: WaitMode,
    broken: Option<Error>,
}

/// Space reserved in the ring for one message; write it, then [`commit`](Self::commit).
/// Dropped without a commit, nothing is sent.
pub struct SendSlot<'a, M: SharedMemory> {
    sender: &'a mut Sender<M>,
    off: u64,
    len: u64,
}

impl<M: SharedMemory> Sender<M> {
    /// How this end waits.
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The largest message this ring carries.
    pub fn max_message(&self) -> u64 {
        self.prod.max_message()
    }

    fn check(&self, len: usize) -> Result<u64, Error> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let len = len as u64;
        if len > self.max_message() {
            return Err(Error::MessageTooLarge {
                len,
                max: self.max_message(),
            });
        }
        // Acquire: pairs with the Release `fetch_or` in `Receiver::drop`.
        if self.ptrs.shared().closed.load(Ordering::Acquire) & CONSUMER_CLOSED != 0 {
            return Err(Error::Closed);
        }
        Ok(len)
    }

    fn poison(&mut self, c: Corrupt) -> Error {
        let e = corrupt(c);
        self.broken = Some(e);
        e
    }

    /// Reserves room for a `len`-byte message if there is room now, else [`Error::Full`].
    ///
    /// A message that does not fit before the end of the ring is placed at its start,
    /// after a PAD; the PAD holds its space until the receiver passes it, so a large
    /// message can see `Full` in a ring the receiver has not looked at since.
    pub fn try_reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, Error> {
        let len = self.check(len)?;
        let sh = self.ptrs.shared();
        match self.prod.try_reserve(sh, &self.ptrs, &SysFutex, len) {
            Ok(Some(off)) => Ok(SendSlot {
                sender: self,
                off,
                len,
            }),
            Ok(None) => Err(Error::Full),
            Err(c) => Err(self.poison(c)),
        }
    }

    /// Reserves room for a `len`-byte message, waiting as long as it takes (or until the
    /// receiver closes or dies).
    pub fn reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, Error> {
        self.reserve_timeout_impl(len, None)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendSlot<'_, M>, Error> {
        self.reserve_timeout_impl(len, Some(timeout))
    }

    fn reserve_timeout_impl(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<SendSlot<'_, M>, Error> {
        let len = self.check(len)?;
        let mut w = Waiter::new(self.wait, timeout);
        loop {
            let sh = self.ptrs.shared();
            match self.prod.try_reserve(sh, &self.ptrs, &SysFutex, len) {
                Ok(Some(off)) => {
                    return Ok(SendSlot {
                        sender: self,
                        off,
                        len,
                    })
                }
                Ok(None) => {}
                Err(c) => return Err(self.poison(c)),
            }
            if w.should_sleep() {
                match self.prod.prepare_sleep(sh, ring::footprint(len)) {
                    Ok(Some(seq)) => {
                        ring::Futex::wait(&SysFutex, sh.space_seq, seq, Some(w.slice()));
                        self.prod.done_sleeping(sh);
                    }
                    Ok(None) => continue,
                    Err(c) => return Err(self.poison(c)),
                }
            } else if !w.check_due() {
                crate::sync::spin_hint();
                continue;
            }
            // Acquire: pairs with the Release `fetch_or` in the other end's drop.
            let closed = sh.closed.load(Ordering::Acquire);
            if let Some(e) =
                peer_gone(closed, CONSUMER_CLOSED, self.ptrs.consumer_pid()).or_else(|| w.expired())
            {
                return Err(e);
            }
        }
    }

    /// Sends a copy of `bytes`, waiting for room.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes` if there is room now.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.try_reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes`, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Error> {
        let slot = self.reserve_timeout(bytes.len(), timeout)?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }
}

impl<M: SharedMemory> SendSlot<'_, M> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `bytes` at `offset` of the message, in place.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        match offset.checked_add(bytes.len()) {
            Some(end) if end as u64 <= self.len => {}
            _ => {
                return Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: bytes.len() as u64,
                    payload_len: self.len,
                })
            }
        }
        // SAFETY: the slot lies in the data area (off + len <= capacity, from the protocol),
        // and the range is inside the slot (checked above).
        unsafe {
            copy::store_bytes(
                self.sender.ptrs.data().add((self.off as usize) + offset),
                bytes,
            )
        };
        Ok(())
    }

    /// Publishes the message.
    pub fn commit(self) {
        let s = self.sender;
        let sh = s.ptrs.shared();
        s.prod.commit(sh, &s.ptrs, &SysFutex, self.len);
    }
}

impl<M: SharedMemory> Drop for Sender<M> {
    fn drop(&mut self) {
        let sh = self.ptrs.shared();
        // Release: pairs with the receiver's Acquire load of `closed`; messages committed
        // before are visible before the close is.
        sh.closed.fetch_or(PRODUCER_CLOSED, Ordering::Release);
        sh.data_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.data_seq);
    }
}

/// The receiving end of a ring.
pub struct Receiver<M: SharedMemory> {
    _chan: Channel<M>,
    ptrs: RingPtrs,
    cons: Consumer,
    wait: WaitMode,
    broken: Option<Error>,
}

/// A received message, in place. Read it with [`read`](Self::read); dropping it frees its
/// space for the sender.
pub struct RecvSlot<'a, M: SharedMemory> {
    receiver: &'a mut Receiver<M>,
    off: u64,
    len: u64,
}

impl<M: SharedMemory> Receiver<M> {
    /// How this end waits.
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    fn poison(&mut self, c: Corrupt) -> Error {
        let e = corrupt(c);
        self.broken = Some(e);
        e
    }

    /// The next message if there is one now, else [`Error::Empty`] (or [`Error::Closed`]
    /// once the sender closed and everything was read).
    pub fn try_recv(&mut self) -> Result<RecvSlot<'_, M>, Error> {
        if let Some(e) = self.broken {
            return Err(e);
        }
        let sh = self.ptrs.shared();
        // Load `closed` before looking for data: a close seen here came after every
        // message committed before it (Release in `Sender::drop`).
        // Acquire: pairs with the Release `fetch_or` in the other end's drop.
        let closed = sh.closed.load(Ordering::Acquire);
        match self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
            Ok(Some((off, len))) => Ok(RecvSlot {
                receiver: self,
                off,
                len,
            }),
            Ok(None) if closed & PRODUCER_CLOSED != 0 => Err(Error::Closed),
            Ok(None) => Err(Error::Empty),
            Err(c) => Err(self.poison(c)),
        }
    }

    /// The next message, waiting as long as it takes (or until the sender closes or dies).
    pub fn recv(&mut self) -> Result<RecvSlot<'_, M>, Error> {
        self.recv_impl(None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<RecvSlot<'_, M>, Error> {
        self.recv_impl(Some(timeout))
    }

    fn recv_impl(&mut self, timeout: Option<Duration>) -> Result<RecvSlot<'_, M>, Error> {
        let mut w = Waiter::new(self.wait, timeout);
        loop {
            if let Some(e) = self.broken {
                return Err(e);
            }
            let sh = self.ptrs.shared();
            // Acquire: pairs with the Release `fetch_or` in the other end's drop.
            let closed = sh.closed.load(Ordering::Acquire);
            match self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
                Ok(Some((off, len))) => {
                    return Ok(RecvSlot {
                        receiver: self,
                        off,
                        len,
                    })
                }
                Ok(None) => {}
                Err(c) => return Err(self.poison(c)),
            }
            if closed & PRODUCER_CLOSED != 0 {
                return Err(Error::Closed);
            }
            if w.should_sleep() {
                match self.cons.prepare_sleep(sh, &self.ptrs) {
                    Ok(Some(seq)) => {
                        ring::Futex::wait(&SysFutex, sh.data_seq, seq, Some(w.slice()));
                        self.cons.done_sleeping(sh);
                    }
                    Ok(None) => continue,
                    Err(c) => return Err(self.poison(c)),
                }
            } else if !w.check_due() {
                crate::sync::spin_hint();
                continue;
            }
            // A sender that closed cleanly and then exited is `Closed`, not a crash: look
            // at the close bit again (the top of the loop reports it once the ring is
            // drained) before looking at the pid.
            let pid = self.ptrs.producer_pid();
            // Acquire: pairs with the Release `fetch_or` in the other end's drop.
            let closed = sh.closed.load(Ordering::Acquire);
            if let Some(e) = peer_gone(closed, PRODUCER_CLOSED, pid).or_else(|| w.expired()) {
                if e == Error::Closed {
                    continue;
                }
                if !matches!(e, Error::PeerDied { .. }) {
                    return Err(e);
                }
                // Messages committed just before the crash are still delivered.
                if let Ok(Some(_)) = self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
                    continue;
                }
                return Err(e);
            }
        }
    }

    /// Receives the next message into `buf` (replacing its contents); returns its length.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let slot = self.recv()?;
        buf.resize(slot.len(), 0);
        slot.read(0, buf)?;
        Ok(slot.len())
    }
}

impl<M: SharedMemory> RecvSlot<'_, M> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `buf.len()` bytes at `offset` of the message into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        match offset.checked_add(buf.len()) {
            Some(end) if end as u64 <= self.len => {}
            _ => {
                return Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: buf.len() as u64,
                    payload_len: self.len,
                })
            }
        }
        // SAFETY: the protocol validated that the message lies inside the data area; the
        // range is inside the message (checked above).
        unsafe {
            copy::load_bytes(
                self.receiver.ptrs.data().add(self.off as usize + offset),
                buf,
            )
        };
        Ok(())
    }

    /// A copy of the whole message.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        self.read(0, &mut v).expect("whole message is in bounds");
        v
    }
}

impl<M: SharedMemory> Drop for RecvSlot<'_, M> {
    fn drop(&mut self) {
        let r = &mut *self.receiver;
        let sh = r.ptrs.shared();
        r.cons.release(sh, &SysFutex, self.len);
    }
}

impl<M: SharedMemory> Drop for Receiver<M> {
    fn drop(&mut self) {
        let sh = self.ptrs.shared();
        // Release: pairs with the sender's Acquire load of `closed`.
        sh.closed.fetch_or(CONSUMER_CLOSED, Ordering::Release);
        sh.space_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.space_seq);
    }
}
