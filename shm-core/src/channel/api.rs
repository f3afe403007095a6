//! The public half of the channel: segments and their ends, over any [`SharedMemory`].
//! The layout and the waiting rules are in the parent module's docs.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::ring::{
    self, Consumer, Corrupt, Producer, Shared, CONSUMER_CLOSED, PRODUCER_CLOSED,
};
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, Owner, Parked, Sleeper, Step};
pub use crate::wait::{WaitMode, ASYNC_SPIN};

const CHANNEL_HEADER: u64 = 128;
const LINE: u64 = 128;
const RING_CONTROL: u64 = 3 * LINE;
const MIN_CAPACITY: u64 = 64;

use crate::format::words::{Region, Word};

const CHANNEL_CONFIG: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

/// Every word of a channel's payload that another process can write: who writes it, the
/// honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "rings", region: Region::Payload, offset: 0, width: 4, writer: "the creator, once, before `ready`", honest: "1 or 2", otherwise: CHANNEL_CONFIG },
    Word { name: "capacity", region: Region::Payload, offset: 8, width: 8, writer: "the creator, once, before `ready`", honest: "a power of two, at least 64, that fits the segment", otherwise: CHANNEL_CONFIG },
    Word { name: "config seal", region: Region::Payload, offset: 16, width: 8, writer: "the creator, once, before `ready`", honest: "FNV-1a of the bytes 0 to 16", otherwise: CHANNEL_CONFIG },
    Word { name: "tail", region: Region::Ring, offset: 0, width: 8, writer: "the sender, per message", honest: "from `head` to `head + capacity`, growing", otherwise: "read by a receiver only when it takes the end (a pair outside the honest range is `Corrupt`) and while it waits: past its position with no frame there at two checks 1 ms apart, `Corrupt` (final for that end); the sender writes its own value again at every message and at drop; `inspect` says `Corrupt`" },
    Word { name: "sender holder", region: Region::Ring, offset: 8, width: 4, writer: "the sender (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new sender may claim the end; the receiver gets `PeerDied` once the ring is drained; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "head", region: Region::Ring, offset: 128, width: 8, writer: "the receiver, per message", honest: "at most `tail`, growing", otherwise: "outside the honest range: `Corrupt` for the sender (final for that end); the receiver writes its own value again before it sleeps and at drop; a value inside the range can let the sender overwrite unread bytes (as a peer writing the data could); `inspect` says `Corrupt`" },
    Word { name: "receiver holder", region: Region::Ring, offset: 136, width: 4, writer: "the receiver (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new receiver may claim the end; the sender gets `PeerDied`; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "data_seq", region: Region::Ring, offset: 256, width: 4, writer: "the sender (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "space_seq", region: Region::Ring, offset: 260, width: 4, writer: "the receiver (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "receiver sleeping", region: Region::Ring, offset: 264, width: 4, writer: "the receiver", honest: "0 or 1", otherwise: "0 while it sleeps: the wake is skipped and it wakes at its slice (20 ms); non-zero: extra wake calls (cost only); `inspect` says `Corrupt` above 1" },
    Word { name: "sender sleeping", region: Region::Ring, offset: 268, width: 4, writer: "the sender", honest: "0 or 1", otherwise: "as the receiver's flag" },
    Word { name: "closed", region: Region::Ring, offset: 272, width: 4, writer: "each end at drop (its bit), and at claim (clears it)", honest: "bits 1 (sender closed) and 2 (receiver closed)", otherwise: "a bit counts as a close only with that end's holder word cleared (an honest drop clears it after the bit); other bits are ignored by the ends, and `inspect` says `Corrupt`" },
    Word { name: "message header", region: Region::RingData, offset: 0, width: 8, writer: "the sender", honest: "`1 << 63 | len` with the message inside the ring, a PAD (`1 << 63 | 0xFFFF_FFFF`, never at index 0), or 0 after the last message", otherwise: "`Corrupt` (final for that end), also for a frame zeroed where the sender wrote one (seen at two checks while the receiver waits: the ring cannot be read past it, and every receiver taken on it says so); never used to address memory outside the ring. A well-formed forged length delivers bytes the sender did not frame: a peer with write access writes data too" },
];
/// How many times `claim` retries a compare-and-swap that lost to a concurrent change
/// before it gives up with `RoleTaken`.
const CLAIM_TRIES: u32 = 64;

fn channel_schema() -> Schema {
    Schema::new("channel", 1, 0, 8).expect("short name")
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
    /// One ring sized for a stream of `size`-byte messages on this machine
    /// ([`stream_ring_bytes`](crate::os::cpu::stream_ring_bytes): about twice the L2
    /// cache, and at least two messages). Get the segment size with
    /// [`segment_len_for`](Self::segment_len_for)`(opts.capacity_bytes())`.
    ///
    /// Setting a capacity yourself: what decides a stream's speed is how much is in
    /// flight. A ring that outgrows the caches costs every message a trip to memory (an
    /// AMD EPYC with 512 KiB of L2 per core ran 1 MiB messages 1.04x to 1.41x faster in
    /// a 4 MiB ring than in a 16 MiB one; BENCHMARKS.md section 9); a ring smaller than
    /// two messages makes the two sides take turns. Two or three times the L2 cache, and
    /// at least two messages, is the rule of thumb.
    pub fn for_messages(size: u64) -> Self {
        Self::new().capacity(crate::os::cpu::stream_ring_bytes(size))
    }

    /// The capacity set (`None`: the largest that fits the segment).
    pub fn capacity_bytes(&self) -> Option<u64> {
        self.capacity
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
            .and_then(|p| p.checked_add(crate::format::layout::PAYLOAD_OFFSET as u64))
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

/// A snapshot of one ring's shared state ([`Channel::ring_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingState {
    /// The ring.
    pub ring: u32,
    /// Bytes of data in the ring.
    pub capacity: u64,
    /// Bytes the sender has published since the ring was made.
    pub tail: u64,
    /// Bytes the receiver has consumed.
    pub head: u64,
    /// `tail - head`: bytes in flight (as read; a hostile peer can make it anything).
    pub used: u64,
    /// The pid holding the sending end (0: nobody).
    pub sender_pid: u32,
    /// The pid holding the receiving end (0: nobody).
    pub receiver_pid: u32,
    /// Whether the sender says it sleeps (waiting for room).
    pub sender_sleeping: bool,
    /// Whether the receiver says it sleeps (waiting for a message).
    pub receiver_sleeping: bool,
    /// Whether the sender closed its end.
    pub sender_closed: bool,
    /// Whether the receiver closed its end.
    pub receiver_closed: bool,
    /// The length of the next unread message, if one is there.
    pub next_len: Option<u64>,
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
        let payload =
            (mem.len() as u64).saturating_sub(crate::format::layout::PAYLOAD_OFFSET as u64);
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
            let mut head = [0u8; 24];
            head[..4].copy_from_slice(&rings.to_ne_bytes());
            head[8..16].copy_from_slice(&cap.to_ne_bytes());
            let seal = crate::format::words::seal(&head[..16]);
            head[16..].copy_from_slice(&seal.to_ne_bytes());
            // SAFETY: the payload holds `need` bytes (checked by create), the 128-byte
            // channel header at its start included; the segment is not published yet.
            unsafe { copy::store_bytes(raw.payload_ptr(), &head) };
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
        let mut head = [0u8; 24];
        seg.read_at(0, &mut head)?;
        let rings = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes"));
        let cap = u64::from_ne_bytes(head[8..16].try_into().expect("8 bytes"));
        let seal = u64::from_ne_bytes(head[16..].try_into().expect("8 bytes"));
        // As a broadcast's: one forged config word, even a valid one, is caught.
        if seal != crate::format::words::seal(&head[..16]) {
            return Err(corrupt_header(
                "channel config seal",
                seal,
                "the hash of the config words (one was changed after create)",
            ));
        }
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

    /// A snapshot of ring `ring`'s shared state, read without writing anything (a
    /// read-only mapping will do) and without waiting: for inspection tools. The words
    /// are read one by one while the ends may be moving them.
    ///
    /// # Errors
    /// [`Error::NoSuchRing`], [`Error::Truncated`].
    pub fn ring_state(&self, ring: u32) -> Result<RingState, Error> {
        let ptrs = self.ring(ring)?;
        let sh = ptrs.shared();
        // Relaxed throughout: a snapshot for people, ordering nothing. The head is read
        // before and after the tail: honest ends keep `head <= tail <= head + capacity`
        // at every instant, and both only grow, so `head_before <= tail <= head_after +
        // capacity` holds for every honest snapshot, however the ends move meanwhile.
        let head = sh.head.load(Ordering::Relaxed);
        let tail = sh.tail.load(Ordering::Relaxed);
        let head_after = sh.head.load(Ordering::Relaxed);
        if head > tail {
            self.seg.intact()?;
            return Err(Error::Corrupt {
                what: "the receiver's position (ahead of the sender's)",
                found: head,
            });
        }
        if tail > head_after.saturating_add(self.cap) {
            self.seg.intact()?;
            return Err(Error::Corrupt {
                what: "the sender's position (more than the ring ahead of the receiver's)",
                found: tail,
            });
        }
        let closed = sh.closed.load(Ordering::Relaxed);
        let sender_pid = ptrs.producer_holder().load(Ordering::Relaxed);
        let receiver_pid = ptrs.consumer_holder().load(Ordering::Relaxed);
        let sender_sleeping = sh.producer_sleeping.load(Ordering::Relaxed);
        let receiver_sleeping = sh.consumer_sleeping.load(Ordering::Relaxed);
        // The rest of the word table's honest ranges (`WORDS`).
        for (what, value, honest) in [
            (
                "the ring's close bits",
                closed,
                closed & !(PRODUCER_CLOSED | CONSUMER_CLOSED) == 0,
            ),
            (
                "the sender holder's pid",
                sender_pid,
                sender_pid <= proc::PID_MAX,
            ),
            (
                "the receiver holder's pid",
                receiver_pid,
                receiver_pid <= proc::PID_MAX,
            ),
            (
                "the sender's sleeping flag",
                sender_sleeping,
                sender_sleeping <= 1,
            ),
            (
                "the receiver's sleeping flag",
                receiver_sleeping,
                receiver_sleeping <= 1,
            ),
        ] {
            if !honest {
                self.seg.intact()?;
                return Err(Error::Corrupt {
                    what,
                    found: value.into(),
                });
            }
        }
        let state = RingState {
            ring,
            capacity: self.cap,
            tail,
            head,
            used: tail.wrapping_sub(head),
            sender_pid,
            receiver_pid,
            sender_sleeping: sender_sleeping != 0,
            receiver_sleeping: receiver_sleeping != 0,
            sender_closed: closed & PRODUCER_CLOSED != 0,
            receiver_closed: closed & CONSUMER_CLOSED != 0,
            next_len: {
                let h = ptrs.header_word(head).load(Ordering::Relaxed);
                (h & ring::VALID != 0 && h & !ring::VALID != ring::PAD).then_some(h & !ring::VALID)
            },
        };
        self.seg.intact().map(|()| state)
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
        self.seg.check_writable("taking a channel end")?;
        let ptrs = self.ring(ring)?;
        let me = proc::current_pid();
        let holder = ptrs.u32_at(holder_line + 8);
        let closed = ptrs.shared().closed;
        if let Err(pid) = proc::claim_role(holder, me, CLAIM_TRIES) {
            return Err(Error::RoleTaken { role, ring, pid });
        }
        // AcqRel: pairs with the Release `fetch_or` of a previous holder's drop (Acquire
        // half) and with the other end's Acquire loads of `closed` (Release half).
        closed.fetch_and(!closed_bit, Ordering::AcqRel);
        // Tell a waiter at the other end that it has a peer now (a parked future watches
        // our holder word too; this makes it look at once).
        let sh = ptrs.shared();
        let other = if closed_bit == PRODUCER_CLOSED {
            sh.data_seq
        } else {
            sh.space_seq
        };
        // Release: pairs with the Acquire load of the word before a sleep.
        other.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, other);
        Ok(ptrs)
    }

    /// The sending end of `ring` (0: creator → attacher by convention).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::NoSuchRing`],
    /// [`Error::RoleTaken`] while a live process (this one included) holds the end,
    /// [`Error::Corrupt`] if the ring's positions are impossible.
    pub fn sender(&self, ring: u32) -> Result<Sender<M>, Error> {
        let ptrs = self.claim(ring, 0, PRODUCER_CLOSED, "sending")?;
        let prod = Producer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Sender {
            chan: self.clone(),
            ptrs,
            prod,
            wait: WaitMode::default(),
            broken: None,
            parked: Parked::default(),
            owner: Owner::current(),
            detached: None,
            next_detached: 0,
        })
    }

    /// The receiving end of `ring`.
    ///
    /// # Errors
    /// As [`sender`](Self::sender).
    pub fn receiver(&self, ring: u32) -> Result<Receiver<M>, Error> {
        let ptrs = self.claim(ring, LINE, CONSUMER_CLOSED, "receiving")?;
        let cons = Consumer::new(self.cap, ptrs.shared()).map_err(corrupt)?;
        Ok(Receiver {
            chan: self.clone(),
            ptrs,
            cons,
            wait: WaitMode::default(),
            broken: None,
            parked: Parked::default(),
            owner: Owner::current(),
            stalled_at: None,
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
// only used for atomic accesses and bounded copies (the `SharedMemory` contract: another
// process may write the memory at any moment, so another thread may too).
unsafe impl Send for RingPtrs {}
// SAFETY: as above; sharing the pointers hands out no reference into the memory.
unsafe impl Sync for RingPtrs {}

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
    /// The data word that holds the header of the message at position `pos`.
    #[inline]
    fn header_word(&self, pos: u64) -> &AtomicU64 {
        let off = pos & (self.cap - 1) & !7;
        // SAFETY: masked to an 8-aligned offset below the capacity: inside the data area;
        // atomics may alias shared memory.
        unsafe { &*self.data().add(off as usize).cast::<AtomicU64>() }
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

/// [`crate::os::futex`] as the ring protocol's [`ring::Futex`].
struct SysFutex;

impl ring::Futex for SysFutex {
    fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        crate::os::futex::wait(word, expected, timeout);
    }
    fn wake(&self, word: &AtomicU32) {
        crate::os::futex::wake(word);
    }
}

/// The end of a wait because the other end is gone: `Closed` if it closed, `PeerDied` if
/// the holder of its end is a dead process. Read in this order: the holder word is
/// cleared only after the close bit is set, so a cleared word comes with a visible close.
/// The holder is read afresh every time: a peer that claimed the end after the wait
/// began, and died, is seen.
fn peer_gone(closed: &AtomicU32, closed_bit: u32, holder: &AtomicU32) -> Option<Error> {
    if closed_by(closed, closed_bit, holder) {
        return Some(Error::Closed);
    }
    // Acquire: pairs with the Release store of 0 in the other end's drop.
    let pid = holder.load(Ordering::Acquire);
    if proc::liveness(pid) == Liveness::Dead {
        return Some(Error::PeerDied { pid });
    }
    None
}

/// Whether the other end closed: its close bit is set (Acquire: pairs with the Release
/// `fetch_or` in its drop) and, loaded only then, its holder word is cleared (Acquire:
/// pairs with the Release store of 0 that follows the bit). A bit alone, with a live
/// holder, is a scribble or a new end taking over: not a close.
#[inline]
fn closed_by(closed: &AtomicU32, closed_bit: u32, holder: &AtomicU32) -> bool {
    closed.load(Ordering::Acquire) & closed_bit != 0 && holder.load(Ordering::Acquire) == 0
}

/// A corrupt ring breaks this end for good; other errors pass through. On a segment
/// truncated under us the zero pages read as nonsense: that is `Truncated`, not
/// `Corrupt`.
fn poisoned<M: SharedMemory>(seg: &RawSegment<M>, broken: &mut Option<Error>, e: Error) -> Error {
    if let Err(t) = seg.intact() {
        return t;
    }
    if matches!(e, Error::Corrupt { .. }) {
        *broken = Some(e);
    }
    e
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

// ---------------------------------------------------------------------------------------
// The sender

/// The sending end of a ring.
///
/// Every way of sending (`try_reserve`, `reserve`, `reserve_timeout`, `reserve_async` and
/// the `send` forms over them) runs the same step (`SendStep`): one code path, the same
/// checks.
pub struct Sender<M: SharedMemory> {
    chan: Channel<M>,
    ptrs: RingPtrs,
    prod: Producer,
    wait: WaitMode,
    broken: Option<Error>,
    parked: Parked,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    /// The id of the detached slot outstanding, if any (see `reserve_detached`).
    detached: Option<u64>,
    next_detached: u64,
}

/// A slot reserved by [`Sender::reserve_detached`] and not yet committed: for bindings
/// (the Python package) that cannot hold a [`SendSlot`]'s borrow across calls. Write it
/// through [`Sender::detached_ptr`], publish it with [`Sender::commit_detached`], or give
/// it up with [`Sender::abandon_detached`]. While one is outstanding the sender reserves
/// nothing else.
#[derive(Debug)]
pub struct DetachedSlot {
    off: u64,
    len: u64,
    id: u64,
}

impl DetachedSlot {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn detached_outstanding() -> Error {
    Error::InvalidOption {
        option: "reserve while a detached slot is outstanding",
        found: 1,
        expected: "commit or abandon the detached slot first",
    }
}

/// The sender's one step: room for a `len`-byte message.
struct SendStep<'a, M: SharedMemory> {
    seg: &'a RawSegment<M>,
    ptrs: &'a RingPtrs,
    prod: &'a mut Producer,
    broken: &'a mut Option<Error>,
    len: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
}

impl<M: SharedMemory> Step for SendStep<'_, M> {
    type Out = u64;

    #[inline]
    fn look(&mut self) -> Result<Option<u64>, Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        self.owner.check()?;
        // The receiver's close is looked at when the operation starts (`Sender::start`)
        // and by every wait round's `check`, not on every spin: its line is written by
        // sleeping ends, and a reserve that finds room finds it whatever the receiver did.
        let sh = self.ptrs.shared();
        match self.prod.try_reserve(sh, self.ptrs, &SysFutex, self.len) {
            Ok(r) => Ok(r),
            Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
        }
    }
}

impl<M: SharedMemory> Sleeper for SendStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        let sh = self.ptrs.shared();
        if closed_by(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
            return Err(Error::Closed);
        }
        if peer {
            if let Some(e) = peer_gone(sh.closed, CONSUMER_CLOSED, self.ptrs.consumer_holder()) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let ptrs: &RingPtrs = self.ptrs;
        let sh = ptrs.shared();
        let seq = match self.prod.prepare_sleep(sh, self.len) {
            Ok(Some(seq)) => seq,
            Ok(None) => return Ok(None),
            Err(c) => return Err(poisoned(self.seg, self.broken, corrupt(c))),
        };
        // Relaxed: only compared for change by a parked future's reactor.
        let holder = ptrs.consumer_holder();
        let pid = holder.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(sh.space_seq, seq)
                .watch_u32(holder, pid)
                .watch_u32(sh.closed, sh.closed.load(Ordering::Relaxed))
                .watch_u64(sh.head, sh.head.load(Ordering::Relaxed))
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        self.prod.done_sleeping(self.ptrs.shared());
    }
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

    /// The step for a `len`-byte message, and the parked state beside it.
    #[inline]
    fn step(&mut self, len: u64) -> (SendStep<'_, M>, &mut Parked) {
        (
            SendStep {
                seg: &self.chan.seg,
                ptrs: &self.ptrs,
                prod: &mut self.prod,
                broken: &mut self.broken,
                len,
                owner: self.owner,
            },
            &mut self.parked,
        )
    }

    /// The step for a new operation on a `len`-byte message, after the checks made once
    /// per call: no detached slot outstanding, a message the ring can carry, the
    /// receiver not closed.
    #[inline]
    fn start(&mut self, len: usize) -> Result<(SendStep<'_, M>, &mut Parked), Error> {
        if self.detached.is_some() {
            return Err(detached_outstanding());
        }
        let len = len as u64;
        if len > self.prod.max_message() {
            return Err(Error::MessageTooLarge {
                len,
                max: self.prod.max_message(),
            });
        }
        if closed_by(
            self.ptrs.shared().closed,
            CONSUMER_CLOSED,
            self.ptrs.consumer_holder(),
        ) {
            return Err(Error::Closed);
        }
        Ok(self.step(len))
    }

    fn slot(&mut self, off: u64, len: usize) -> SendSlot<'_, M> {
        SendSlot {
            sender: self,
            off,
            len: len as u64,
        }
    }

    /// Reserves room for a `len`-byte message if there is room now.
    ///
    /// A message that does not fit before the end of the ring is placed at its start,
    /// after a PAD; the PAD holds its space until the receiver passes it, so a large
    /// message can see `Full` in a ring the receiver has not looked at since.
    ///
    /// # Errors
    /// [`Error::Full`] when there is no room now; [`Error::MessageTooLarge`],
    /// [`Error::Closed`] (the receiver closed), [`Error::Corrupt`], [`Error::Truncated`].
    pub fn try_reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, Error> {
        let (mut step, _) = self.start(len)?;
        let off = wait::try_once(&mut step, Error::Full)?;
        Ok(self.slot(off, len))
    }

    /// Reserves room for a `len`-byte message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Closed`] when the receiver closes, [`Error::PeerDied`] when its process
    /// dies (also one that claimed the end after the wait began, and an unreaped one),
    /// [`Error::Truncated`], [`Error::Corrupt`], [`Error::MessageTooLarge`].
    pub fn reserve(&mut self, len: usize) -> Result<SendSlot<'_, M>, Error> {
        self.reserve_impl(len, None)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve), and [`Error::Timeout`].
    pub fn reserve_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<SendSlot<'_, M>, Error> {
        self.reserve_impl(len, Some(timeout))
    }

    fn reserve_impl(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<SendSlot<'_, M>, Error> {
        let pace = self.wait.pace();
        let (mut step, _) = self.start(len)?;
        let off = wait::block(&mut step, pace, timeout)?;
        Ok(self.slot(off, len))
    }

    /// [`reserve_timeout`](Self::reserve_timeout) (or [`reserve`](Self::reserve) with
    /// `None`) for a caller that cannot hold the slot's borrow: the slot stays reserved
    /// until [`commit_detached`](Self::commit_detached) or
    /// [`abandon_detached`](Self::abandon_detached), and the sender reserves nothing else
    /// meanwhile.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout), and [`Error::InvalidOption`] while
    /// another detached slot is outstanding.
    pub fn reserve_detached(
        &mut self,
        len: usize,
        timeout: Option<Duration>,
    ) -> Result<DetachedSlot, Error> {
        let slot = self.reserve_impl(len, timeout)?;
        let (off, len) = (slot.off, slot.len);
        let id = self.next_detached;
        self.next_detached = id.wrapping_add(1);
        self.detached = Some(id);
        Ok(DetachedSlot { off, len, id })
    }

    /// The address of `slot`'s bytes in the ring (`slot.len()` of them), for the caller
    /// to write the message into before committing it. Writing through it is the
    /// caller's `unsafe` business: the range is this sender's alone until the commit (a
    /// hostile peer may still write it, as it may write any shared byte), and it must not
    /// be used after the commit or after the sender is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a slot this sender does not hold outstanding.
    pub fn detached_ptr(&self, slot: &DetachedSlot) -> Result<*mut u8, Error> {
        self.check_detached(slot)?;
        // SAFETY: the slot lies in the data area (off + len <= capacity, from the protocol).
        Ok(unsafe { self.ptrs.data().add(slot.off as usize) })
    }

    fn check_detached(&self, slot: &DetachedSlot) -> Result<(), Error> {
        if self.detached == Some(slot.id) {
            Ok(())
        } else {
            Err(Error::InvalidOption {
                option: "detached slot",
                found: slot.id,
                expected: "the slot this sender reserved and has outstanding",
            })
        }
    }

    /// Publishes the detached slot's message.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a slot this sender does not hold outstanding (nothing
    /// is published).
    pub fn commit_detached(&mut self, slot: DetachedSlot) -> Result<(), Error> {
        self.check_detached(&slot)?;
        self.detached = None;
        let sh = self.ptrs.shared();
        self.prod.commit(sh, &self.ptrs, &SysFutex, slot.len);
        self.chan.seg.intact()
    }

    /// Gives the detached slot up: nothing is sent.
    pub fn abandon_detached(&mut self, slot: DetachedSlot) {
        if self.detached == Some(slot.id) {
            self.detached = None;
        }
    }

    /// Sends a copy of `bytes`, waiting for room.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes` if there is room now.
    ///
    /// # Errors
    /// As [`try_reserve`](Self::try_reserve).
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.try_reserve(bytes.len())?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Sends a copy of `bytes`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout).
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Error> {
        let slot = self.reserve_timeout(bytes.len(), timeout)?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// Room for a `len`-byte message, without blocking the thread: a future that
    /// completes with the reserved slot (as [`reserve`](Self::reserve)) or the error that
    /// ends the wait. It runs the same step as `reserve`: it spins for the end's spin time
    /// (`WaitMode::Block { spin }`, or [`ASYNC_SPIN`] in spin mode), then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when the receiver frees room, closes,
    /// dies or is replaced, and looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE).
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    ///
    /// # Cancel safety
    /// Cancellation safe: room is taken only when the future completes; dropping it
    /// pending reserves nothing (a PAD it may have published to wrap the ring is part of
    /// the ring's normal traffic, read past by the receiver), so no space leaks.
    pub fn reserve_async(&mut self, len: usize) -> ReserveFuture<'_, M> {
        ReserveFuture {
            tx: Some(self),
            len,
        }
    }

    /// Sends a copy of `bytes`, without blocking the thread.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve).
    ///
    /// # Cancel safety
    /// Cancellation safe up to the moment room is found (then the copy and the commit
    /// complete in the same poll).
    pub async fn send_async(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let slot = self.reserve_async(bytes.len()).await?;
        slot.write(0, bytes)?;
        slot.commit();
        Ok(())
    }

    /// The async core: out of line (inlined into a caller's `async` producer loop it made a
    /// 64-byte async stream run at 0.45x the blocking one; BENCHMARKS.md section 8).
    #[inline(never)]
    fn poll_room(
        &mut self,
        len: usize,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<u64, Error>> {
        let spin = self.wait.async_spin();
        match self.start(len) {
            Err(e) => {
                // A close found at the start of a poll: take back a park of the last one.
                self.unpark();
                std::task::Poll::Ready(Err(e))
            }
            Ok((mut step, parked)) => wait::poll_step(&mut step, parked, spin, cx),
        }
    }

    fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step(0);
        parked.release(&mut step);
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
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the message, [`Error::Truncated`].
    pub fn write(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        in_message(offset, bytes.len(), self.len)?;
        // SAFETY: the slot lies in the data area (off + len <= capacity, from the protocol),
        // the range is inside the slot (checked above), and the mapping is writable (the
        // end was claimed through the write gate).
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
        if self.owner.forked() {
            // A forked child's copy: the end is the parent's; closing it here would close
            // the parent's stream.
            return;
        }
        self.unpark();
        let sh = self.ptrs.shared();
        // Our own position, whatever a peer wrote over the shared word: the next sender
        // resumes exactly after our last message.
        self.prod.republish(sh);
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

/// The future of [`Sender::reserve_async`].
pub struct ReserveFuture<'a, M: SharedMemory> {
    tx: Option<&'a mut Sender<M>>,
    len: usize,
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
                std::task::Poll::Ready(r.map(|off| SendSlot {
                    sender,
                    off,
                    len: len as u64,
                }))
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

// ---------------------------------------------------------------------------------------
// The receiver

/// The receiving end of a ring.
///
/// Every way of receiving (`try_recv`, `recv`, `recv_timeout`, `recv_async`, the `Stream`
/// and the `_into` forms over them) runs the same step (`RecvStep`): one code path, the
/// same checks.
pub struct Receiver<M: SharedMemory> {
    chan: Channel<M>,
    ptrs: RingPtrs,
    cons: Consumer,
    wait: WaitMode,
    broken: Option<Error>,
    parked: Parked,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    /// The position at which the last peer check found the ring stalled (see
    /// `Consumer::stalled`), if it did.
    stalled_at: Option<u64>,
}

/// The receiver's one step: the next message's place.
struct RecvStep<'a, M: SharedMemory> {
    seg: &'a RawSegment<M>,
    ptrs: &'a RingPtrs,
    cons: &'a mut Consumer,
    broken: &'a mut Option<Error>,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    stalled_at: &'a mut Option<u64>,
}

impl<M: SharedMemory> Step for RecvStep<'_, M> {
    type Out = (u64, u64);

    #[inline]
    fn look(&mut self) -> Result<Option<(u64, u64)>, Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        self.owner.check()?;
        let sh = self.ptrs.shared();
        // Load `closed` before looking for data: a close seen here came after every
        // message committed before it (Release in `Sender::drop`).
        // Acquire: pairs with the Release `fetch_or` in the other end's drop.
        let closed = sh.closed.load(Ordering::Acquire);
        match self.cons.try_peek(sh, self.ptrs, &SysFutex) {
            Ok(Some(m)) => Ok(Some(m)),
            // Acquire: pairs with the Release store of 0 in `Sender::drop`, after its
            // close bit (read before the look, so every message before it was seen).
            Ok(None)
                if closed & PRODUCER_CLOSED != 0
                    && self.ptrs.producer_holder().load(Ordering::Acquire) == 0 =>
            {
                self.seg.intact()?;
                Err(Error::Closed)
            }
            Ok(None) => Ok(None),
            Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
        }
    }
}

impl<M: SharedMemory> Sleeper for RecvStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.seg.intact()?;
        if !peer {
            // A close needs no check here: `look` reads the close bit every time.
            return Ok(());
        }
        let sh = self.ptrs.shared();
        // A frame a peer scribbled away (a zeroed header where the sender wrote one)
        // would hold both ends for ever: seen at two peer checks (at least `PEER_CHECK`
        // apart) at the same position, it is reported.
        let at = self.cons.position();
        if self.cons.stalled(sh, self.ptrs) {
            if *self.stalled_at == Some(at) {
                let e = Error::Corrupt {
                    what: "a message header (none where the sender wrote one, or frames read past the sender's position)",
                    found: at,
                };
                return Err(poisoned(self.seg, self.broken, e));
            }
            *self.stalled_at = Some(at);
        } else {
            *self.stalled_at = None;
        }
        match peer_gone(sh.closed, PRODUCER_CLOSED, self.ptrs.producer_holder()) {
            // Messages committed before the close or the crash are still delivered:
            // `look` reports the close once the ring is drained.
            Some(Error::Closed) | None => Ok(()),
            Some(e) => match self.cons.try_peek(sh, self.ptrs, &SysFutex) {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(e),
                Err(c) => Err(poisoned(self.seg, self.broken, corrupt(c))),
            },
        }
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let ptrs: &RingPtrs = self.ptrs;
        let sh = ptrs.shared();
        let seq = match self.cons.prepare_sleep(sh, ptrs) {
            Ok(Some(seq)) => seq,
            Ok(None) => return Ok(None),
            Err(c) => return Err(poisoned(self.seg, self.broken, corrupt(c))),
        };
        // Relaxed: only compared for change by a parked future's reactor.
        let holder = ptrs.producer_holder();
        let pid = holder.load(Ordering::Relaxed);
        Ok(Some(
            Park::futex(sh.data_seq, seq)
                .watch_u32(holder, pid)
                .watch_u32(sh.closed, sh.closed.load(Ordering::Relaxed))
                .watch_u64(ptrs.header_word(self.cons.position()), 0)
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        self.cons.done_sleeping(self.ptrs.shared());
    }
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

    #[inline]
    fn step(&mut self) -> (RecvStep<'_, M>, &mut Parked) {
        (
            RecvStep {
                seg: &self.chan.seg,
                ptrs: &self.ptrs,
                cons: &mut self.cons,
                broken: &mut self.broken,
                owner: self.owner,
                stalled_at: &mut self.stalled_at,
            },
            &mut self.parked,
        )
    }

    fn slot(&mut self, (off, len): (u64, u64)) -> RecvSlot<'_, M> {
        RecvSlot {
            receiver: self,
            off,
            len,
        }
    }

    /// The next message if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`] when there is none now; [`Error::Closed`] once the sender closed
    /// and everything was read; [`Error::Corrupt`], [`Error::Truncated`].
    pub fn try_recv(&mut self) -> Result<RecvSlot<'_, M>, Error> {
        let (mut step, _) = self.step();
        let m = wait::try_once(&mut step, Error::Empty)?;
        Ok(self.slot(m))
    }

    /// The next message, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::Closed`] once the sender closed and everything was read;
    /// [`Error::PeerDied`] once the sender's process died (also one that claimed the end
    /// after the wait began, and one not yet reaped) and everything it committed was
    /// read; [`Error::Truncated`], [`Error::Corrupt`].
    pub fn recv(&mut self) -> Result<RecvSlot<'_, M>, Error> {
        self.recv_impl(None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<RecvSlot<'_, M>, Error> {
        self.recv_impl(Some(timeout))
    }

    fn recv_impl(&mut self, timeout: Option<Duration>) -> Result<RecvSlot<'_, M>, Error> {
        let pace = self.wait.pace();
        let (mut step, _) = self.step();
        let m = wait::block(&mut step, pace, timeout)?;
        Ok(self.slot(m))
    }

    /// Receives the next message into `buf` (replacing its contents); returns its length.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let slot = self.recv()?;
        slot.copy_into(buf)
    }

    /// [`recv_into`](Self::recv_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout).
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, Error> {
        let slot = self.recv_timeout(timeout)?;
        slot.copy_into(buf)
    }

    /// The next message, without blocking the thread: a future that completes with the
    /// message in place (as [`recv`](Self::recv)), or the error that ends the wait. It
    /// runs the same step as `recv`: it spins for the end's spin time
    /// (`WaitMode::Block { spin }`, or [`ASYNC_SPIN`] in spin mode), then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when the sender publishes, closes,
    /// dies or is replaced, and looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE). When a message is already there it completes on its
    /// first poll without a system call.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// Cancellation safe: nothing is taken from the ring until the future completes, so
    /// dropping it (pending, or woken but not polled again) loses no message; the next
    /// call gets it.
    pub fn recv_async(&mut self) -> RecvFuture<'_, M> {
        RecvFuture { rx: Some(self) }
    }

    /// [`recv_async`](Self::recv_async), copying the message into `buf` (replacing its
    /// contents); returns its length.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async).
    pub async fn recv_async_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        let slot = self.recv_async().await?;
        slot.copy_into(buf)
    }

    fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(u64, u64), Error>> {
        let spin = self.wait.async_spin();
        let (mut step, parked) = self.step();
        wait::poll_step(&mut step, parked, spin, cx)
    }

    fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step();
        parked.release(&mut step);
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
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] if the range leaves the message, [`Error::Truncated`].
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

    /// Copies the whole message into `buf` (replacing its contents); returns its length.
    fn copy_into(self, buf: &mut Vec<u8>) -> Result<usize, Error> {
        buf.resize(self.len(), 0);
        self.read(0, buf)?;
        Ok(self.len())
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
        if self.owner.forked() {
            // As in `Sender::drop`.
            return;
        }
        self.unpark();
        let sh = self.ptrs.shared();
        // As in `Sender::drop`: the next receiver resumes exactly where we stopped.
        self.cons.republish(sh);
        // Release: pairs with the sender's Acquire load of `closed`.
        sh.closed.fetch_or(CONSUMER_CLOSED, Ordering::Release);
        sh.space_seq.fetch_add(1, Ordering::Release);
        ring::Futex::wake(&SysFutex, sh.space_seq);
        // Release: as in `Sender::drop`.
        self.ptrs.consumer_holder().store(0, Ordering::Release);
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

/// Receivers as a [`Stream`](futures_core::Stream) of owned messages (with the `futures`
/// feature): `Some(Ok(bytes))` per message, `None` once the sender closed and everything
/// was read, `Some(Err(..))` for any other end. Polling it runs the same step as
/// [`Receiver::recv`] and is cancellation safe as [`Receiver::recv_async`].
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
            Poll::Ready(Ok(m)) => {
                let mut v = Vec::new();
                Poll::Ready(Some(this.slot(m).copy_into(&mut v).map(|_| v)))
            }
        }
    }
}

impl<M: SharedMemory> std::fmt::Debug for Channel<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("rings", &self.rings)
            .field("capacity", &self.cap)
            .field("raw", &*self.seg)
            .finish()
    }
}

impl<M: SharedMemory> std::fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("producer", &self.prod)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for Receiver<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("consumer", &self.cons)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for SendSlot<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSlot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvSlot<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvSlot")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for ReserveFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReserveFuture")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RecvFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}
