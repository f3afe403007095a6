//! The public half of the channel: segments and their ends, over any [`SharedMemory`].
//! The layout and the waiting rules are in the parent module's docs.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use super::ring::{self, Consumer, Corrupt, Producer, Shared, CONSUMER_CLOSED, PRODUCER_CLOSED};
use crate::layout::{AttachOptions, Expect, Kind, Schema};
use crate::proc::{self, Liveness};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Pace, Sleeper, Waiter};
use crate::{copy, Error, RawSegment, SharedMemory};

const CHANNEL_HEADER: u64 = 128;
const LINE: u64 = 128;
const RING_CONTROL: u64 = 3 * LINE;
const MIN_CAPACITY: u64 = 64;
/// How many times `claim` retries a compare-and-swap that lost to a concurrent change
/// before it gives up with `RoleTaken`.
const CLAIM_TRIES: u32 = 64;

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

impl WaitMode {
    /// How long an awaiting call spins before it parks (a future must not spin without
    /// end: it holds an executor thread).
    pub(crate) fn async_spin(self) -> Duration {
        match self {
            WaitMode::Block { spin } => spin,
            WaitMode::Spin => ASYNC_SPIN,
        }
    }

    pub(crate) fn pace(self) -> Pace {
        match self {
            WaitMode::Spin => Pace::Spin,
            WaitMode::Block { spin } => Pace::Block { spin },
        }
    }
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
    /// each: what to ask a backend for. [`Error::InvalidOption`] if it does not fit in
    /// 64 bits.
    pub fn segment_len_for(&self, capacity: u64) -> Result<u64, Error> {
        payload_len(self.rings, capacity)
            .and_then(|p| p.checked_add(crate::layout::PAYLOAD_OFFSET as u64))
            .ok_or(too_large(capacity))
    }
}

fn too_large(capacity: u64) -> Error {
    Error::InvalidOption {
        option: "channel capacity",
        found: capacity,
        expected: "a size whose rings fit in a segment of at most 2^64 bytes",
    }
}

/// Payload bytes a channel of `rings` rings of `cap` bytes needs, if that fits in a u64.
fn payload_len(rings: u32, cap: u64) -> Option<u64> {
    RING_CONTROL
        .checked_add(cap)?
        .checked_mul(u64::from(rings))?
        .checked_add(CHANNEL_HEADER)
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
        any_schema: false,
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
        let need = payload_len(rings, cap).ok_or(too_large(cap))?;
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
        let need = payload_len(rings, cap);
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

    /// Takes the end of `ring` whose holder word sits at `holder_line + 8`: a
    /// compare-and-swap from 0 (nobody holds it) or from the pid of a dead process, to
    /// ours. Our own pid there means another endpoint of this process holds it: taken.
    fn claim(
        &self,
        ring: u32,
        holder_line: u64,
        closed_bit: u32,
        role: &'static str,
    ) -> Result<RingPtrs, Error> {
        let ptrs = self.ring(ring)?;
        let me = proc::current_pid();
        let holder = ptrs.u32_at(holder_line + 8);
        let closed = ptrs.shared().closed;
        // Acquire (here and on the CAS failure path): pairs with the Release store of 0 by
        // which a previous holder let the end go, after its last use of the ring.
        let mut current = holder.load(Ordering::Acquire);
        for _ in 0..CLAIM_TRIES {
            let free = current == 0 || (current != me && proc::liveness(current) == Liveness::Dead);
            if !free {
                break;
            }
            // AcqRel: Acquire as above; Release so that the other end, loading our pid
            // with Acquire, sees the ring as we found it.
            match holder.compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // AcqRel: pairs with the Release `fetch_or` of a previous holder's drop
                    // (Acquire half) and with the other end's Acquire loads of `closed`
                    // (Release half).
                    closed.fetch_and(!closed_bit, Ordering::AcqRel);
                    return Ok(ptrs);
                }
                Err(now) => current = now,
            }
        }
        Err(Error::RoleTaken {
            role,
            ring,
            pid: current,
        })
    }

    /// The sending end of `ring` (0: creator → attacher by convention).
    pub fn sender(&self, ring: u32) -> Result<Sender<M>, Error> {
        let ptrs = self.claim(ring, 0, PRODUCER_CLOSED, "sending")?;
        let prod = Producer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Sender {
            chan: self.clone(),
            ptrs,
            prod,
            wait: WaitMode::default(),
            broken: None,
            park: Park::default(),
        })
    }

    /// The receiving end of `ring`.
    pub fn receiver(&self, ring: u32) -> Result<Receiver<M>, Error> {
        let ptrs = self.claim(ring, LINE, CONSUMER_CLOSED, "receiving")?;
        let cons = Consumer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Receiver {
            chan: self.clone(),
            ptrs,
            cons,
            wait: WaitMode::default(),
            broken: None,
            park: Park::default(),
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
    #[inline]
    fn u64_at(&self, off: u64) -> &AtomicU64 {
        // SAFETY: `off` is one of the fixed, 8-aligned control word offsets below
        // RING_CONTROL, inside the validated ring; atomics may alias shared memory.
        unsafe { &*self.base.add(off as usize).cast::<AtomicU64>() }
    }
    #[inline]
    fn u32_at(&self, off: u64) -> &AtomicU32 {
        // SAFETY: as in `u64_at`, 4-aligned.
        unsafe { &*self.base.add(off as usize).cast::<AtomicU32>() }
    }
    #[inline]
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
    #[inline]
    fn producer_holder(&self) -> &AtomicU32 {
        self.u32_at(8)
    }
    #[inline]
    fn consumer_holder(&self) -> &AtomicU32 {
        self.u32_at(LINE + 8)
    }
    #[inline]
    fn data(&self) -> *mut u8 {
        // SAFETY: the data area follows the control lines inside the validated ring.
        unsafe { self.base.add(RING_CONTROL as usize) }
    }
}

impl ring::Words for RingPtrs {
    #[inline]
    fn load(&self, off: u64, order: Ordering) -> u64 {
        let off = off & (self.cap - 1) & !7;
        // SAFETY: masked to an 8-aligned offset below the capacity: inside the data area.
        unsafe { &*self.data().add(off as usize).cast::<AtomicU64>() }.load(order)
    }
    #[inline]
    fn store(&self, off: u64, value: u64, order: Ordering) {
        let off = off & (self.cap - 1) & !7;
        // SAFETY: as in `load`.
        unsafe { &*self.data().add(off as usize).cast::<AtomicU64>() }.store(value, order)
    }
}

/// [`crate::futex`] as the ring protocol's [`ring::Futex`].
struct SysFutex;

impl ring::Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::futex::wait(word, expected, timeout);
    }
    fn wake(&self, word: &AtomicU32) {
        crate::futex::wake(word);
    }
}

/// The end of a wait because the other end is gone: `Closed` if it closed, `PeerDied` if
/// the holder of its end is a dead process. Read in this order: the holder word is
/// cleared only after the close bit is set, so a cleared word comes with a visible close.
fn peer_gone(closed: &AtomicU32, closed_bit: u32, holder: &AtomicU32) -> Option<Error> {
    // Acquire: pairs with the Release store of 0 in the other end's drop, which follows
    // its close bit.
    let pid = holder.load(Ordering::Acquire);
    // Acquire: pairs with the Release `fetch_or` in the other end's drop.
    if closed.load(Ordering::Acquire) & closed_bit != 0 {
        return Some(Error::Closed);
    }
    if proc::liveness(pid) == Liveness::Dead {
        return Some(Error::PeerDied { pid });
    }
    None
}

/// How a sender waits for room: the checks every round passes, and the futex sleep.
struct SendWait<'a, M: SharedMemory> {
    seg: &'a RawSegment<M>,
    ptrs: RingPtrs,
    prod: &'a mut Producer,
    len: u64,
}

impl<M: SharedMemory> Sleeper for SendWait<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        let sh = self.ptrs.shared();
        // Acquire: pairs with the Release `fetch_or` in `Receiver::drop`.
        if sh.closed.load(Ordering::Acquire) & CONSUMER_CLOSED != 0 {
            return Err(Error::Closed);
        }
        if peer {
            if let Some(e) = peer_gone(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
                return Err(e);
            }
        }
        Ok(())
    }
    fn prepare(&mut self) -> Result<Option<u32>, Error> {
        self.prod
            .prepare_sleep(self.ptrs.shared(), self.len)
            .map_err(corrupt)
    }
    fn sleep(&mut self, token: u32, limit: Duration) {
        ring::Futex::wait(&SysFutex, self.ptrs.shared().space_seq, token, Some(limit));
    }
    fn done(&mut self) {
        self.prod.done_sleeping(self.ptrs.shared());
    }
}

/// How a receiver waits for a message.
struct RecvWait<'a, M: SharedMemory> {
    seg: &'a RawSegment<M>,
    ptrs: RingPtrs,
    cons: &'a mut Consumer,
}

impl<M: SharedMemory> Sleeper for RecvWait<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        if !peer {
            // A close needs no check here: the loop looks at the close bit every round.
            return Ok(());
        }
        let sh = self.ptrs.shared();
        match peer_gone(sh.closed, PRODUCER_CLOSED, self.ptrs.producer_holder()) {
            // Messages committed before the close or the crash are still delivered: the
            // loop looks again, and reports the end once the ring is drained.
            Some(Error::Closed) => Ok(()),
            Some(e) => match self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(e),
                Err(c) => Err(corrupt(c)),
            },
            None => Ok(()),
        }
    }
    fn prepare(&mut self) -> Result<Option<u32>, Error> {
        self.cons
            .prepare_sleep(self.ptrs.shared(), &self.ptrs)
            .map_err(corrupt)
    }
    fn sleep(&mut self, token: u32, limit: Duration) {
        ring::Futex::wait(&SysFutex, self.ptrs.shared().data_seq, token, Some(limit));
    }
    fn done(&mut self) {
        self.cons.done_sleeping(self.ptrs.shared());
    }
}

/// `OutOfBounds` unless `len` bytes at `offset` lie inside a message of `msg_len` bytes.
fn in_message(offset: usize, len: usize, msg_len: u64) -> Result<(), Error> {
    match offset.checked_add(len) {
        Some(end) if end as u64 <= msg_len => Ok(()),
        _ => Err(Error::OutOfBounds {
            offset: offset as u64,
            len: len as u64,
            payload_len: msg_len,
        }),
    }
}

/// The sending end of a ring.
pub struct Sender<M: SharedMemory> {
    chan: Channel<M>,
    ptrs: RingPtrs,
    prod: Producer,
    wait: WaitMode,
    broken: Option<Error>,
    park: Park,
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
        self.poisoned(corrupt(c))
    }

    /// A corrupt ring breaks this end for good; other errors pass through. On a segment
    /// truncated under us the zero pages read as nonsense: that is `Truncated`, not
    /// `Corrupt`.
    fn poisoned(&mut self, e: Error) -> Error {
        if let Err(t) = self.chan.seg.intact() {
            return t;
        }
        if matches!(e, Error::Corrupt { .. }) {
            self.broken = Some(e);
        }
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
            Ok(None) => {
                self.chan.seg.intact()?;
                Err(Error::Full)
            }
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
        let mut w = Waiter::new(self.wait.pace(), timeout);
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
            let mut sleeper = SendWait {
                seg: &self.chan.seg,
                ptrs: self.ptrs,
                prod: &mut self.prod,
                len,
            };
            if let Err(e) = w.pause(&mut sleeper) {
                return Err(self.poisoned(e));
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
        in_message(offset, bytes.len(), self.len)?;
        // SAFETY: the slot lies in the data area (off + len <= capacity, from the protocol),
        // and the range is inside the slot (checked above).
        unsafe {
            copy::store_bytes(
                self.sender.ptrs.data().add((self.off as usize) + offset),
                bytes,
            )
        };
        self.sender.chan.seg.intact()
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
        self.unpark();
        let sh = self.ptrs.shared();
        // Release: pairs with the receiver's Acquire load of `closed`; messages committed
        // before are visible before the close is.
        sh.closed.fetch_or(PRODUCER_CLOSED, Ordering::Release);
        sh.data_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.data_seq);
        // Release: pairs with the Acquire loads of the holder word in `claim` (the next
        // holder starts after our last use of the ring) and in `peer_gone` (a cleared word
        // comes with the close bit set above).
        self.ptrs.producer_holder().store(0, Ordering::Release);
    }
}

/// The receiving end of a ring.
pub struct Receiver<M: SharedMemory> {
    chan: Channel<M>,
    ptrs: RingPtrs,
    cons: Consumer,
    wait: WaitMode,
    broken: Option<Error>,
    park: Park,
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
        self.poisoned(corrupt(c))
    }

    /// A corrupt ring breaks this end for good; other errors pass through. On a segment
    /// truncated under us the zero pages read as nonsense: that is `Truncated`, not
    /// `Corrupt`.
    fn poisoned(&mut self, e: Error) -> Error {
        if let Err(t) = self.chan.seg.intact() {
            return t;
        }
        if matches!(e, Error::Corrupt { .. }) {
            self.broken = Some(e);
        }
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
        self.chan.seg.intact()?;
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
        let mut w = Waiter::new(self.wait.pace(), timeout);
        loop {
            if let Some(e) = self.broken {
                return Err(e);
            }
            let sh = self.ptrs.shared();
            // Load `closed` before looking for data: a close seen here came after every
            // message committed before it (Release in `Sender::drop`).
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
            let mut sleeper = RecvWait {
                seg: &self.chan.seg,
                ptrs: self.ptrs,
                cons: &mut self.cons,
            };
            if let Err(e) = w.pause(&mut sleeper) {
                return Err(self.poisoned(e));
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
        in_message(offset, buf.len(), self.len)?;
        // SAFETY: the protocol validated that the message lies inside the data area; the
        // range is inside the message (checked above).
        unsafe {
            copy::load_bytes(
                self.receiver.ptrs.data().add(self.off as usize + offset),
                buf,
            )
        };
        self.receiver.chan.seg.intact()
    }

    /// A copy of the whole message. (On a segment truncated under us the copy holds what
    /// the zero pages put in place hold; [`read`](Self::read) reports the truncation.)
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len()];
        // The range is the whole message, so only `Truncated` can come back, and the
        // docs above say what the copy then holds.
        let _ = self.read(0, &mut v);
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
        self.unpark();
        let sh = self.ptrs.shared();
        // Release: pairs with the sender's Acquire load of `closed`.
        sh.closed.fetch_or(CONSUMER_CLOSED, Ordering::Release);
        sh.space_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.space_seq);
        // Release: as in `Sender::drop`.
        self.ptrs.consumer_holder().store(0, Ordering::Release);
    }
}

/// How long an awaiting call spins before it parks when its end is in
/// [`WaitMode::Spin`] (a future must not spin without end: it holds an executor thread).
pub const ASYNC_SPIN: Duration = Duration::from_micros(50);

/// An end's parked state while a future waits: its reactor registration, and whether
/// it set its sleeping flag.
#[derive(Default)]
struct Park {
    registration: Option<crate::reactor::Registration>,
    sleeping: bool,
}

impl<M: SharedMemory> Receiver<M> {
    fn unpark(&mut self) {
        self.park.registration = None;
        if std::mem::take(&mut self.park.sleeping) {
            self.cons.done_sleeping(self.ptrs.shared());
        }
    }

    /// The async core: `Ready` with the next message's place or the error that ends the
    /// wait; `Pending` after parking (sleeping flag set, then registered with the
    /// reactor, which wakes us when the sender publishes, closes or dies).
    fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(u64, u64), Error>> {
        use std::task::Poll;
        self.unpark();
        let mut spinner = crate::wait::Spinner::new(self.wait.async_spin());
        loop {
            if let Some(e) = self.broken {
                return Poll::Ready(Err(e));
            }
            let sh = self.ptrs.shared();
            // Acquire: pairs with the Release `fetch_or` in `Sender::drop`.
            let closed = sh.closed.load(Ordering::Acquire);
            match self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
                Ok(Some(m)) => return Poll::Ready(Ok(m)),
                Ok(None) => {}
                Err(c) => return Poll::Ready(Err(self.poison(c))),
            }
            if closed & PRODUCER_CLOSED != 0 {
                return Poll::Ready(Err(Error::Closed));
            }
            if let Err(e) = self.chan.seg.intact() {
                return Poll::Ready(Err(e));
            }
            if !spinner.again() {
                break;
            }
        }
        let sh = self.ptrs.shared();
        if let Some(Error::PeerDied { pid }) =
            peer_gone(sh.closed, PRODUCER_CLOSED, self.ptrs.producer_holder())
        {
            // Messages committed before the crash are still delivered.
            return match self.cons.try_peek(sh, &self.ptrs, &SysFutex) {
                Ok(Some(m)) => Poll::Ready(Ok(m)),
                Ok(None) => Poll::Ready(Err(Error::PeerDied { pid })),
                Err(c) => Poll::Ready(Err(self.poison(c))),
            };
        }
        match self.cons.prepare_sleep(sh, &self.ptrs) {
            Err(c) => Poll::Ready(Err(self.poison(c))),
            Ok(None) => {
                // A message or a close arrived meanwhile: look again at the next poll.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(Some(seq)) => {
                self.park.sleeping = true;
                let peer = self.ptrs.producer_holder().load(Ordering::Relaxed);
                self.park.registration = Some(crate::reactor::register(
                    sh.data_seq,
                    seq,
                    cx.waker(),
                    peer,
                    false,
                ));
                Poll::Pending
            }
        }
    }

    /// The next message, without blocking the thread: a future that completes with the
    /// message in place (as [`recv`](Self::recv)), or the error that ends the wait
    /// (`Closed`, `PeerDied`, `Corrupt`, `Truncated`).
    ///
    /// It spins for the end's spin time (`WaitMode::Block { spin }`, or [`ASYNC_SPIN`] in
    /// spin mode), then parks: it sets the receiver's sleeping flag and registers with
    /// the [`reactor`](crate::reactor), so a pending future costs no CPU and the sender
    /// makes a wake-up call only when it is parked. When a message is already there it
    /// completes on its first poll without a system call.
    ///
    /// **Cancellation safe**: nothing is taken from the ring until the future completes,
    /// so dropping it (pending, or woken but not polled again) loses no message; the next
    /// call gets it.
    pub fn recv_async(&mut self) -> RecvFuture<'_, M> {
        RecvFuture { rx: Some(self) }
    }

    /// [`recv_async`](Self::recv_async), copying the message into `buf` (replacing its
    /// contents); returns its length. Cancellation safe as `recv_async`.
    pub async fn recv_async_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let slot = self.recv_async().await?;
        buf.resize(slot.len(), 0);
        slot.read(0, buf)?;
        Ok(slot.len())
    }
}

/// The future of [`Receiver::recv_async`].
pub struct RecvFuture<'a, M: SharedMemory> {
    rx: Option<&'a mut Receiver<M>>,
}

impl<'a, M: SharedMemory> std::future::Future for RecvFuture<'a, M> {
    type Output = Result<RecvSlot<'a, M>, Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            return std::task::Poll::Ready(Err(Error::Closed));
        };
        match rx.poll_message(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let receiver = this.rx.take().expect("present above");
                std::task::Poll::Ready(r.map(|(off, len)| RecvSlot { receiver, off, len }))
            }
        }
    }
}

impl<M: SharedMemory> Drop for RecvFuture<'_, M> {
    fn drop(&mut self) {
        // Dropped while pending: take the registration and the sleeping flag back.
        if let Some(rx) = self.rx.as_mut() {
            rx.unpark();
        }
    }
}

impl<M: SharedMemory> Sender<M> {
    fn unpark(&mut self) {
        self.park.registration = None;
        if std::mem::take(&mut self.park.sleeping) {
            self.prod.done_sleeping(self.ptrs.shared());
        }
    }

    /// The async core of `reserve_async`: `Ready` with the payload offset of a reserved
    /// slot, or an error; `Pending` after parking on `space_seq`. Out of line: inlined
    /// into a caller's `async` producer loop it made a 64-byte async stream run at 0.45x
    /// the blocking one; out of line, at 1.0-1.3x (BENCHMARKS.md section 8).
    #[inline(never)]
    fn poll_room(
        &mut self,
        len: u64,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<u64, Error>> {
        use std::task::Poll;
        self.unpark();
        let mut spinner = crate::wait::Spinner::new(self.wait.async_spin());
        loop {
            if let Err(e) = self.check(len as usize) {
                return Poll::Ready(Err(e));
            }
            let sh = self.ptrs.shared();
            match self.prod.try_reserve(sh, &self.ptrs, &SysFutex, len) {
                Ok(Some(off)) => return Poll::Ready(Ok(off)),
                Ok(None) => {}
                Err(c) => return Poll::Ready(Err(self.poison(c))),
            }
            if let Err(e) = self.chan.seg.intact() {
                return Poll::Ready(Err(e));
            }
            if !spinner.again() {
                break;
            }
        }
        let sh = self.ptrs.shared();
        if let Some(e) = peer_gone(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
            return Poll::Ready(Err(e));
        }
        match self.prod.prepare_sleep(sh, len) {
            Err(c) => Poll::Ready(Err(self.poison(c))),
            Ok(None) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(Some(seq)) => {
                self.park.sleeping = true;
                let peer = self.ptrs.consumer_holder().load(Ordering::Relaxed);
                self.park.registration = Some(crate::reactor::register(
                    sh.space_seq,
                    seq,
                    cx.waker(),
                    peer,
                    false,
                ));
                Poll::Pending
            }
        }
    }

    /// Room for a `len`-byte message, without blocking the thread: a future that
    /// completes with the reserved slot (as [`reserve`](Self::reserve)) or the error that
    /// ends the wait. Spins, then parks, as [`Receiver::recv_async`] does.
    ///
    /// **Cancellation safe**: room is taken only when the future completes; dropping it
    /// pending reserves nothing (a PAD it may have published to wrap the ring is part of
    /// the ring's normal traffic, read past by the receiver), so no space leaks.
    pub fn reserve_async(&mut self, len: usize) -> ReserveFuture<'_, M> {
        ReserveFuture {
            tx: Some(self),
            len: len as u64,
        }
    }

    /// Sends a copy of `bytes`, without blocking the thread. Cancellation safe up to the
    /// moment room is found (then the copy and the commit complete in the same poll).
    pub async fn send_async(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.reserve_async(bytes.len()).await?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }
}

/// The future of [`Sender::reserve_async`].
pub struct ReserveFuture<'a, M: SharedMemory> {
    tx: Option<&'a mut Sender<M>>,
    len: u64,
}

impl<'a, M: SharedMemory> std::future::Future for ReserveFuture<'a, M> {
    type Output = Result<SendSlot<'a, M>, Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let len = this.len;
        let Some(tx) = this.tx.as_mut() else {
            return std::task::Poll::Ready(Err(Error::Closed));
        };
        match tx.poll_room(len, cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(r) => {
                let sender = this.tx.take().expect("present above");
                std::task::Poll::Ready(r.map(|off| SendSlot { sender, off, len }))
            }
        }
    }
}

impl<M: SharedMemory> Drop for ReserveFuture<'_, M> {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.unpark();
        }
    }
}

/// Receivers as a [`Stream`](futures_core::Stream) of owned messages (with the `futures`
/// feature): `Some(Ok(bytes))` per message, `None` once the sender closed and everything
/// was read, `Some(Err(..))` for any other end. Polling it is cancellation safe as
/// [`Receiver::recv_async`].
#[cfg(feature = "futures")]
impl<M: SharedMemory> futures_core::Stream for Receiver<M> {
    type Item = Result<Vec<u8>, Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        match this.poll_message(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Closed)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok((off, len))) => {
                let slot = RecvSlot {
                    receiver: this,
                    off,
                    len,
                };
                let mut v = vec![0u8; slot.len()];
                let r = slot.read(0, &mut v).map(|()| v);
                Poll::Ready(Some(r))
            }
        }
    }
}
