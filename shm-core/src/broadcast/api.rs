//! The public half of the broadcast: segments, publisher, subscribers, over any
//! [`SharedMemory`]. The layout and the protocol are in the parent module's docs.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::format::schema::{Kind, Schema};
use crate::os::park::Park;
use crate::os::proc::{self, Liveness};
use crate::protocol::broadcast::{self as protocol, Attempt, Control, Slot};
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{self, Owner, Pace, Parked, Sleeper, Step, WaitMode};

const LINE: u64 = 128;
/// The upstream word in the config line: odd while a relayed stream's source is gone.
const UPSTREAM: u64 = 44;
/// The base word in the config line: the first message number ever published (a relay
/// starts at its source's numbering).
const BASE: u64 = 48;
// Control lines, grouped by who writes them and how often (see the layout table).
/// Written by the publisher on every message; read by subscribers only when they lag.
const TAIL: u64 = LINE;
/// Written rarely (claim, close, join); read every round by both sides.
const HOLDER: u64 = 2 * LINE;
const CLOSED: u64 = 2 * LINE + 4;
const MEMBERS: u64 = 2 * LINE + 8;
/// Written by subscribers that go to sleep, and by the publisher when it wakes them.
const SLEEPERS: u64 = 3 * LINE;
const DATA_SEQ: u64 = 3 * LINE + 4;
/// Written by the reliable publisher when it sleeps, and by subscribers that wake it.
const PUB_SLEEPING: u64 = 4 * LINE;
const SPACE_SEQ: u64 = 4 * LINE + 4;
const MEMBERS_AT: u64 = 5 * LINE;
const SLOT_HEADER: u64 = 16;

/// Wakes every sleeping subscriber: bump `data_seq`, then the futex call.
fn wake_subscribers(ctl: Control<'_>) {
    protocol::bump_data(ctl);
    crate::os::futex::wake(ctl.data_seq);
}

/// Wakes the sleeping reliable publisher: bump `space_seq`, then the futex call.
fn wake_publisher(ctl: Control<'_>) {
    protocol::bump_space(ctl);
    crate::os::futex::wake(ctl.space_seq);
}

/// The most subscribers a broadcast can be created for.
pub const MAX_SUBSCRIBERS: u32 = 1024;
/// The most slots a broadcast can be created with.
pub const MAX_SLOTS: u64 = 1 << 24;
/// The longest eviction timeout: a segment that claims more (a hostile creator's) is
/// refused, so a reliable publisher's wait always has an end.
pub const MAX_EVICT_TIMEOUT: Duration = Duration::from_secs(3600);

use crate::format::words::{Region, Word};

const CREATOR_WORD: &str = "the creator, once, before `ready`";
const CONFIG_OTHERWISE: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

/// Every word of a broadcast's payload that another process can write: who writes it,
/// the honest values, and what a reader does with anything else (see
/// [`crate::format::words`]). The layout docs print it.
pub const WORDS: &[Word] = &[
    Word { name: "mode", region: Region::Payload, offset: 0, width: 4, writer: CREATOR_WORD, honest: "1 reliable, 2 lossy", otherwise: CONFIG_OTHERWISE },
    Word { name: "max_subscribers", region: Region::Payload, offset: 4, width: 4, writer: CREATOR_WORD, honest: "1 to 1024", otherwise: CONFIG_OTHERWISE },
    Word { name: "slots", region: Region::Payload, offset: 8, width: 8, writer: CREATOR_WORD, honest: "a power of two, 2 to 2^24", otherwise: CONFIG_OTHERWISE },
    Word { name: "slot_size", region: Region::Payload, offset: 16, width: 8, writer: CREATOR_WORD, honest: "`16 + max_message` rounded up to 64", otherwise: CONFIG_OTHERWISE },
    Word { name: "max_message", region: Region::Payload, offset: 24, width: 8, writer: CREATOR_WORD, honest: "what the segment's size allows", otherwise: CONFIG_OTHERWISE },
    Word { name: "evict_timeout_ns", region: Region::Payload, offset: 32, width: 8, writer: CREATOR_WORD, honest: "at most one hour", otherwise: CONFIG_OTHERWISE },
    Word { name: "relayed", region: Region::Payload, offset: 40, width: 4, writer: CREATOR_WORD, honest: "0 or 1", otherwise: CONFIG_OTHERWISE },
    Word { name: "upstream", region: Region::Payload, offset: 44, width: 4, writer: "the (relaying) publisher", honest: "any; odd while the source is gone", otherwise: "every value is a state: a subscriber that read everything reports `UpstreamLost` once per change to odd, and goes on receiving" },
    Word { name: "base", region: Region::Payload, offset: 48, width: 8, writer: "the publisher, in `start_at`, before anything is published", honest: "at most `tail`", otherwise: "above the tail read before it: not taken; read by a subscriber only before its first message and by a publisher when it takes the role (clamped to the tail), so a later change is never seen. A forged value at most the tail can move a subscriber that has read nothing yet up to it" },
    Word { name: "config seal", region: Region::Payload, offset: 56, width: 8, writer: CREATOR_WORD, honest: "FNV-1a of the config words at offsets 0 to 44", otherwise: CONFIG_OTHERWISE },
    Word { name: "tail", region: Region::Payload, offset: 128, width: 8, writer: "the publisher, per message", honest: "up to 2^62, growing (by `k` for a gap notice)", otherwise: "above 2^62: `publisher`/`subscribe` refuse with `Corrupt`, a lagging subscriber gets `Corrupt` once (not sticky) and looks again; a subscriber resyncs only to a tail its slots agree with (slot `tail - 1` complete, slot `tail` not), so a forged tail never moves it for good" },
    Word { name: "holder", region: Region::Payload, offset: 256, width: 4, writer: "the publisher (claim, drop)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid: a new publisher may claim the role; subscribers that read everything get `PeerDied`; `inspect` says `Corrupt` above the largest pid" },
    Word { name: "closed", region: Region::Payload, offset: 260, width: 4, writer: "the publisher (1 at drop, 0 at claim)", honest: "0 or 1", otherwise: "counts as a close only with the holder word cleared (an honest drop clears it after the close): with a live holder it is ignored; `inspect` says `Corrupt` for anything but 0 or 1" },
    Word { name: "members", region: Region::Payload, offset: 264, width: 4, writer: "subscribers (+1 per join)", honest: "any (wraps)", otherwise: "a change makes the reliable publisher rescan the lines before its next message: a peer bumping it slows the publisher (one scan per message), never stops it" },
    Word { name: "sleepers", region: Region::Payload, offset: 384, width: 4, writer: "subscribers about to sleep", honest: "at most the subscribers joined", otherwise: "0 while one sleeps: the publisher skips the wake and the sleeper wakes at its slice (20 ms); large: a wake call per message (cost only); `inspect` says `Corrupt` above `max_subscribers`" },
    Word { name: "data_seq", region: Region::Payload, offset: 388, width: 4, writer: "the publisher (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change: a change wakes sleepers early, who look and sleep again" },
    Word { name: "publisher_sleeping", region: Region::Payload, offset: 512, width: 4, writer: "the reliable publisher", honest: "0 or 1", otherwise: "non-zero: subscribers make wake calls (cost only); 0 while it sleeps: it wakes at its slice; `inspect` says `Corrupt` above 1" },
    Word { name: "space_seq", region: Region::Payload, offset: 516, width: 4, writer: "subscribers (+1 per wake)", honest: "any (wraps)", otherwise: "a futex word, only compared for change" },
    Word { name: "line pid", region: Region::Line, offset: 0, width: 4, writer: "the subscriber that claims the line (0 when it leaves)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid is a free line and is not counted (`subscriber_count`); a reliable subscriber that finds another pid on its line is `Evicted`, a lossy one goes on receiving" },
    Word { name: "line state", region: Region::Line, offset: 4, width: 4, writer: "the subscriber (active, left), the reliable publisher (evicted)", honest: "0 to 4", otherwise: "not counted; a reliable subscriber reads anything but active as `Evicted`, a lossy one ignores it; `inspect` says `Corrupt`" },
    Word { name: "line position", region: Region::Line, offset: 8, width: 8, writer: "the reliable subscriber", honest: "at most `tail`", otherwise: "above the publisher's next message: evicted as corrupt; below: holds the publisher back until the eviction timeout, then evicted as behind" },
    Word { name: "slot stamp", region: Region::Slot, offset: 0, width: 8, writer: "the publisher", honest: "`2n + 1` while message `n` is written, `2n + 2` once complete", otherwise: "message `p` is taken only when both stamp loads are `2p + 2`; a larger stamp is a lag (resync from a verified tail), a smaller one an empty slot (wait)" },
    Word { name: "slot len", region: Region::Slot, offset: 8, width: 8, writer: "the publisher", honest: "at most `max_message`, or a gap notice (bit 63, kind 1, `k` from 1 to 2^56 - 1)", otherwise: "`Corrupt` for that message, which is passed over (not sticky); a notice is taken only once the tail covers it (`p + k <= tail`), so a forged one is waited out like an empty slot" },
];

const ACTIVE: u32 = 0;
const LEFT: u32 = 1;
const EVICTED_BEHIND: u32 = 2;
const EVICTED_DEAD: u32 = 3;
const EVICTED_CORRUPT: u32 = 4;

fn eviction_reason(state: u32) -> &'static str {
    match state {
        EVICTED_BEHIND => "it stayed behind longer than the eviction timeout",
        EVICTED_DEAD => "its process died",
        EVICTED_CORRUPT => "it wrote a position no honest subscriber writes",
        _ => "its line was taken over or scribbled on",
    }
}

/// Whether the publisher waits for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastMode {
    /// Back-pressure: the publisher waits for the slowest live subscriber, and evicts one
    /// that is dead, stuck past the eviction timeout, or corrupt.
    Reliable,
    /// The publisher never waits; subscribers that fall behind get [`Error::Lagged`].
    Lossy,
}

impl BroadcastMode {
    fn code(self) -> u32 {
        match self {
            BroadcastMode::Reliable => 1,
            BroadcastMode::Lossy => 2,
        }
    }
}

/// How long a subscriber of a [relayed](BroadcastOptions::relayed) broadcast spins before
/// it sleeps, by default (others spin as [`WaitMode::default`] says).
pub const RELAYED_SPIN: Duration = Duration::from_micros(2);

/// How a broadcast segment is laid out (builder; ends in [`Broadcast::create`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastOptions {
    mode: BroadcastMode,
    slots: u64,
    max_message: Option<u64>,
    max_subscribers: u32,
    evict_timeout: Duration,
    relayed: bool,
    /// The record's schema, or the error `Schema::of` gave (a name too long), reported
    /// by `create` and `segment_len` rather than lost.
    schema: Option<Result<Schema, Error>>,
}

impl Default for BroadcastOptions {
    fn default() -> Self {
        BroadcastOptions {
            mode: BroadcastMode::Reliable,
            slots: 64,
            max_message: None,
            max_subscribers: 64,
            evict_timeout: Duration::from_secs(1),
            relayed: false,
            schema: None,
        }
    }
}

impl BroadcastOptions {
    /// Reliable, 64 slots of 4080-byte messages, 64 subscribers, 1 s eviction timeout,
    /// untyped messages.
    pub fn new() -> Self {
        Self::default()
    }
    /// Slots and `max_message` for `size`-byte messages on this machine: as many slots
    /// as fit in the ring a stream of such messages would use
    /// ([`stream_ring_bytes`](crate::os::cpu::stream_ring_bytes): about twice the L2
    /// cache), at least 4 and at most 4096. Subscribers that fall further behind than
    /// the ring holds lag (lossy) or hold the publisher back (reliable); a deeper ring
    /// absorbs longer stalls but no longer fits the caches.
    pub fn for_messages(size: u64) -> Self {
        let slot = slot_size(size).unwrap_or(u64::MAX);
        let slots = (crate::os::cpu::stream_ring_bytes(size) / slot)
            .clamp(4, 4096)
            .next_power_of_two()
            .min(4096);
        Self::new().slots(slots).max_message(size)
    }

    /// Reliable (back-pressure) or lossy.
    pub fn mode(mut self, mode: BroadcastMode) -> Self {
        self.mode = mode;
        self
    }
    /// Messages the ring holds: a power of two, 2 to [`MAX_SLOTS`].
    pub fn slots(mut self, slots: u64) -> Self {
        self.slots = slots;
        self
    }
    /// The largest message, in bytes (default 4080, or the record's size).
    pub fn max_message(mut self, bytes: u64) -> Self {
        self.max_message = Some(bytes);
        self
    }
    /// How many subscribers may be joined at once: 1 to [`MAX_SUBSCRIBERS`].
    pub fn max_subscribers(mut self, n: u32) -> Self {
        self.max_subscribers = n;
        self
    }
    /// Reliable mode: how long the publisher waits for a live subscriber that does not
    /// move before it evicts it.
    pub fn evict_timeout(mut self, timeout: Duration) -> Self {
        self.evict_timeout = timeout;
        self
    }
    /// Marks the broadcast as **relayed**: its publisher republishes a stream that came
    /// from elsewhere (the `shm-zenoh` importer sets it). Bridges refuse to export a
    /// relayed broadcast, so an import is never sent back out: no loops, no echo. Its
    /// subscribers spin only [`RELAYED_SPIN`] before they sleep, by default
    /// ([`Subscriber::set_wait`] changes it).
    pub fn relayed(mut self, relayed: bool) -> Self {
        self.relayed = relayed;
        self
    }
    /// Declare `schema` in the header without a Rust type for it (a relay republishing
    /// records it only carries as bytes); `max_message` defaults to the schema's size
    /// (or 4080 for a size of 0, untyped messages).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(Ok(schema));
        if self.max_message.is_none() && schema.size() > 0 {
            self.max_message = Some(schema.size());
        }
        self
    }
    /// Publish records of type `T`: the segment's header declares `T`'s schema, and
    /// `max_message` defaults to `size_of::<T>()`.
    pub fn record<T: Record>(mut self) -> Self {
        self.schema = Some(Schema::of::<T>());
        if self.max_message.is_none() {
            self.max_message = Some(std::mem::size_of::<T>() as u64);
        }
        self
    }

    fn config(&self) -> Result<Config, Error> {
        let bad = |option, found, expected| Error::InvalidOption {
            option,
            found,
            expected,
        };
        if !(1..=MAX_SUBSCRIBERS).contains(&self.max_subscribers) {
            return Err(bad(
                "broadcast max_subscribers",
                self.max_subscribers.into(),
                "1 to 1024",
            ));
        }
        if !self.slots.is_power_of_two() || !(2..=MAX_SLOTS).contains(&self.slots) {
            return Err(bad(
                "broadcast slots",
                self.slots,
                "a power of two from 2 to 2^24",
            ));
        }
        if self.evict_timeout > MAX_EVICT_TIMEOUT {
            return Err(bad(
                "broadcast evict_timeout (ns)",
                u64::try_from(self.evict_timeout.as_nanos()).unwrap_or(u64::MAX),
                "at most one hour",
            ));
        }
        let max_message = self.max_message.unwrap_or(4096 - SLOT_HEADER);
        let schema = match self.schema {
            Some(s) => s?,
            None => bytes_schema(),
        };
        let cfg = Config {
            mode: self.mode,
            slots: self.slots,
            slot_size: slot_size(max_message).ok_or(bad(
                "broadcast max_message",
                max_message,
                "a size whose slots fit in 2^64 bytes",
            ))?,
            max_message,
            max_subscribers: self.max_subscribers,
            evict_timeout: self.evict_timeout,
            relayed: self.relayed,
            schema,
        };
        cfg.payload_len().ok_or(bad(
            "broadcast max_message",
            max_message,
            "a size whose slots fit in 2^64 bytes",
        ))?;
        Ok(cfg)
    }

    /// The segment size (header included) these options need: what to ask a backend for.
    pub fn segment_len(&self) -> Result<u64, Error> {
        let p = self.config()?.payload_len().expect("checked by config");
        p.checked_add(crate::format::layout::PAYLOAD_OFFSET as u64)
            .ok_or(Error::InvalidOption {
                option: "broadcast max_message",
                found: self.max_message.unwrap_or(0),
                expected: "a size whose slots fit in 2^64 bytes",
            })
    }
}

fn bytes_schema() -> Schema {
    Schema::new("bytes", 1, 0, 1).expect("short name")
}

fn slot_size(max_message: u64) -> Option<u64> {
    max_message
        .checked_add(SLOT_HEADER + 63)
        .map(|s| s / 64 * 64)
}

/// The validated shape of a broadcast segment.
#[derive(Debug, Clone, Copy)]
struct Config {
    mode: BroadcastMode,
    slots: u64,
    slot_size: u64,
    max_message: u64,
    max_subscribers: u32,
    evict_timeout: Duration,
    relayed: bool,
    schema: Schema,
}

impl Config {
    fn slots_at(&self) -> u64 {
        MEMBERS_AT + LINE * u64::from(self.max_subscribers)
    }
    fn payload_len(&self) -> Option<u64> {
        self.slots
            .checked_mul(self.slot_size)?
            .checked_add(self.slots_at())
    }
}

fn expect(kind_schema: Schema, min_payload: u64, any_schema: bool) -> Expect {
    Expect {
        kind: Kind::Broadcast,
        schema: kind_schema,
        min_payload,
        any_schema,
    }
}

/// A snapshot of a broadcast's shared state ([`Broadcast::state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastState {
    /// Reliable or lossy.
    pub mode: BroadcastMode,
    /// Messages the ring holds.
    pub slots: u64,
    /// Bytes per slot (16-byte slot header included).
    pub slot_size: u64,
    /// The largest message.
    pub max_message: u64,
    /// Subscriber lines.
    pub max_subscribers: u32,
    /// Reliable mode's eviction timeout.
    pub evict_timeout: Duration,
    /// Messages published so far.
    pub tail: u64,
    /// The publisher's pid (0: none).
    pub publisher_pid: u32,
    /// Whether the last publisher closed.
    pub closed: bool,
    /// Subscribers that say they sleep.
    pub sleepers: u32,
    /// Whether the publisher relays a stream from elsewhere (an import).
    pub relayed: bool,
    /// Whether a relayed stream's source is gone now.
    pub upstream_lost: bool,
    /// The first message number (where a relay started: its source's number).
    pub base: u64,
    /// Every line held by a pid.
    pub lines: Vec<LineState>,
}

/// One subscriber line in a [`BroadcastState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineState {
    /// The line's index.
    pub line: u32,
    /// The pid holding it.
    pub pid: u32,
    /// `active`, `left`, `evicted: behind`, `evicted: dead`, `evicted: corrupt`.
    pub state: &'static str,
    /// The next message it reads (published by reliable subscribers; lossy ones do not
    /// publish theirs).
    pub position: u64,
}

/// A broadcast segment: hands out the publisher and subscribers.
pub struct Broadcast<M: SharedMemory> {
    seg: Arc<RawSegment<M>>,
    cfg: Config,
    /// The payload's base address, read once: the `SharedMemory` contract makes it the
    /// same for the mapping's life, and every access to a shared word starts here.
    base: Base,
}

/// The payload base address.
#[derive(Clone, Copy)]
struct Base(*mut u8);

// SAFETY: the address points into a mapping kept alive by the `Arc<RawSegment>` beside
// it, and is only used for atomic accesses and bounded copies (the `SharedMemory`
// contract: another process may write it at any moment, so another thread may too).
unsafe impl Send for Base {}
// SAFETY: as above; sharing the address hands out no reference into the memory.
unsafe impl Sync for Base {}

impl<M: SharedMemory> Clone for Broadcast<M> {
    fn clone(&self) -> Self {
        Broadcast {
            seg: Arc::clone(&self.seg),
            cfg: self.cfg,
            base: self.base,
        }
    }
}

impl<M: SharedMemory> Broadcast<M> {
    /// Lays a broadcast into fresh, zeroed memory.
    pub fn create(mem: M, opts: &BroadcastOptions) -> Result<Self, Error> {
        let cfg = opts.config()?;
        let need = cfg.payload_len().expect("checked by config");
        let seg = RawSegment::create(mem, expect(cfg.schema, need, false), |raw| {
            let mut head = [0u8; 64];
            head[0..4].copy_from_slice(&cfg.mode.code().to_ne_bytes());
            head[4..8].copy_from_slice(&cfg.max_subscribers.to_ne_bytes());
            head[8..16].copy_from_slice(&cfg.slots.to_ne_bytes());
            head[16..24].copy_from_slice(&cfg.slot_size.to_ne_bytes());
            head[24..32].copy_from_slice(&cfg.max_message.to_ne_bytes());
            let ns = u64::try_from(cfg.evict_timeout.as_nanos()).unwrap_or(u64::MAX);
            head[32..40].copy_from_slice(&ns.to_ne_bytes());
            head[40..44].copy_from_slice(&u32::from(cfg.relayed).to_ne_bytes());
            let seal = crate::format::words::seal(&head[..44]);
            head[56..64].copy_from_slice(&seal.to_ne_bytes());
            // SAFETY: the payload holds `need` bytes, the 64-byte config line included
            // (checked by create); the segment is not published yet.
            unsafe { copy::store_bytes(raw.payload_ptr(), &head) };
        })?;
        Ok(Self::wrap(seg, cfg))
    }

    fn wrap(seg: RawSegment<M>, cfg: Config) -> Self {
        let base = Base(seg.payload_ptr());
        Broadcast {
            seg: Arc::new(seg),
            cfg,
            base,
        }
    }

    /// Attaches to a broadcast of any record type (messages as bytes), validating the
    /// header and the broadcast's layout.
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_impl(mem, None, &AttachOptions::default())
    }

    /// Attaches to a broadcast of records of type `T`: a broadcast of any other type is
    /// [`Error::SchemaMismatch`].
    pub fn attach_pod<T: Record>(mem: M) -> Result<Self, Error> {
        Self::attach_impl(mem, Some(Schema::of::<T>()?), &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        Self::attach_impl(mem, None, opts)
    }

    fn attach_impl(mem: M, schema: Option<Schema>, opts: &AttachOptions) -> Result<Self, Error> {
        let e = expect(schema.unwrap_or_else(bytes_schema), 64, schema.is_none());
        let seg = RawSegment::attach(mem, e, opts)?;
        let mut head = [0u8; 64];
        seg.read_at(0, &mut head)?;
        let u32_at = |o: usize| u32::from_ne_bytes(head[o..o + 4].try_into().expect("4"));
        let u64_at = |o: usize| u64::from_ne_bytes(head[o..o + 8].try_into().expect("8"));
        let corrupt = |field, found, expected| Error::CorruptHeader {
            field,
            found,
            expected,
        };
        let mode = match u32_at(0) {
            1 => BroadcastMode::Reliable,
            2 => BroadcastMode::Lossy,
            m => return Err(corrupt("broadcast mode", m.into(), "1 or 2")),
        };
        let max_subscribers = u32_at(4);
        if !(1..=MAX_SUBSCRIBERS).contains(&max_subscribers) {
            return Err(corrupt(
                "broadcast max_subscribers",
                max_subscribers.into(),
                "1 to 1024",
            ));
        }
        let slots = u64_at(8);
        if !slots.is_power_of_two() || !(2..=MAX_SLOTS).contains(&slots) {
            return Err(corrupt(
                "broadcast slots",
                slots,
                "a power of two from 2 to 2^24",
            ));
        }
        let max_message = u64_at(24);
        let size = u64_at(16);
        if slot_size(max_message) != Some(size) {
            return Err(corrupt(
                "broadcast slot_size",
                size,
                "16 + max_message rounded up to 64",
            ));
        }
        let evict_ns = u64_at(32);
        if Duration::from_nanos(evict_ns) > MAX_EVICT_TIMEOUT {
            return Err(corrupt(
                "broadcast evict_timeout_ns",
                evict_ns,
                "at most one hour",
            ));
        }
        let relayed = match u32_at(40) {
            0 => false,
            1 => true,
            r => return Err(corrupt("broadcast relayed", r.into(), "0 or 1")),
        };
        // One forged config word can still be a valid value (fewer subscriber lines, a
        // smaller ring) and would put this end's view of the layout off: the seal over
        // the words, written by the creator, catches any one of them changed.
        let seal = u64_at(56);
        if seal != crate::format::words::seal(&head[..44]) {
            return Err(corrupt(
                "broadcast config seal",
                seal,
                "the hash of the config words (one was changed after create)",
            ));
        }
        let cfg = Config {
            mode,
            slots,
            slot_size: size,
            max_message,
            max_subscribers,
            evict_timeout: Duration::from_nanos(evict_ns),
            relayed,
            schema: Schema::from_header(seg.header())?,
        };
        match cfg.payload_len() {
            Some(n) if n <= seg.payload_len() as u64 => {}
            need => {
                return Err(Error::PayloadTooSmall {
                    kind: Kind::Broadcast,
                    needed: need.unwrap_or(u64::MAX),
                    found: seg.payload_len() as u64,
                })
            }
        }
        Ok(Self::wrap(seg, cfg))
    }

    /// Reliable or lossy.
    pub fn mode(&self) -> BroadcastMode {
        self.cfg.mode
    }
    /// The largest message.
    pub fn max_message(&self) -> u64 {
        self.cfg.max_message
    }
    /// Messages the ring holds.
    pub fn slots(&self) -> u64 {
        self.cfg.slots
    }
    /// How many subscribers may be joined at once.
    pub fn max_subscribers(&self) -> u32 {
        self.cfg.max_subscribers
    }
    /// Whether the publisher relays a stream from elsewhere
    /// ([`BroadcastOptions::relayed`]): bridges do not export such a broadcast.
    pub fn relayed(&self) -> bool {
        self.cfg.relayed
    }
    /// The record type the broadcast carries (`"bytes"` for untyped messages).
    pub fn schema(&self) -> Schema {
        self.cfg.schema
    }
    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.seg
    }

    /// How many subscribers are joined now: lines held, active, by a live process
    /// ([`proc::is_live`]: a dead, unreaped or impossible pid is not counted); read-only
    /// subscribers, which hold no line, are not counted either. A snapshot: it may change
    /// the moment it is read.
    pub fn subscriber_count(&self) -> u32 {
        (0..self.cfg.max_subscribers)
            .filter(|&i| {
                let m = self.member(i);
                // Acquire: pairs with the subscriber's Release stores of its claim and state.
                let pid = m.pid.load(Ordering::Acquire);
                m.state.load(Ordering::Acquire) == ACTIVE && proc::is_live(pid)
            })
            .count() as u32
    }

    /// A snapshot of the broadcast's shared state, read without writing anything (a
    /// read-only mapping will do) and without waiting: for inspection tools. The words
    /// are read one by one while the publisher and subscribers may be moving them.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn state(&self) -> Result<BroadcastState, Error> {
        // Relaxed throughout: a snapshot for people, ordering nothing. The lines and the
        // base are read before the tail, so every honest value is at most the tail read
        // after them (they never pass the tail at any instant, and the tail only grows).
        let lines: Vec<LineState> = (0..self.cfg.max_subscribers)
            .filter_map(|i| {
                let m = self.member(i);
                let pid = m.pid.load(Ordering::Relaxed);
                (pid != 0).then(|| LineState {
                    line: i,
                    pid,
                    state: match m.state.load(Ordering::Relaxed) {
                        ACTIVE => "active",
                        LEFT => "left",
                        EVICTED_BEHIND => "evicted: behind",
                        EVICTED_DEAD => "evicted: dead",
                        EVICTED_CORRUPT => "evicted: corrupt",
                        _ => "unknown",
                    },
                    position: m.position.load(Ordering::Relaxed),
                })
            })
            .collect();
        let base = self.u64_at(BASE).load(Ordering::Relaxed);
        let tail = self.control().tail.load(Ordering::Relaxed);
        let publisher_pid = self.holder().load(Ordering::Relaxed);
        self.seg.intact()?;
        // The word table's honest ranges (module docs): anything else is named.
        let bad = |what, found| Err(Error::Corrupt { what, found });
        if tail > protocol::MAX_TAIL {
            return bad("the broadcast's message count (tail)", tail);
        }
        if base > tail {
            return bad("the broadcast's base word (above the tail)", base);
        }
        if publisher_pid > proc::PID_MAX {
            return bad("the broadcast's publisher pid", u64::from(publisher_pid));
        }
        let closed = self.closed().load(Ordering::Relaxed);
        let sleepers = self.control().sleepers.load(Ordering::Relaxed);
        let publisher_sleeping = self.control().publisher_sleeping.load(Ordering::Relaxed);
        if closed > 1 {
            return bad("the broadcast's closed word", u64::from(closed));
        }
        if sleepers > self.cfg.max_subscribers {
            return bad("the broadcast's sleepers count", u64::from(sleepers));
        }
        if publisher_sleeping > 1 {
            return bad(
                "the broadcast's publisher sleeping flag",
                u64::from(publisher_sleeping),
            );
        }
        for l in &lines {
            if l.state == "unknown" {
                return bad(
                    "a subscriber line's state",
                    u64::from(self.member(l.line).state.load(Ordering::Relaxed)),
                );
            }
            if l.pid > proc::PID_MAX {
                return bad("a subscriber line's pid", u64::from(l.pid));
            }
            if l.state == "active" && l.position > tail {
                return bad(
                    "a subscriber line's position (ahead of the tail)",
                    l.position,
                );
            }
        }
        Ok(BroadcastState {
            mode: self.cfg.mode,
            slots: self.cfg.slots,
            slot_size: self.cfg.slot_size,
            max_message: self.cfg.max_message,
            max_subscribers: self.cfg.max_subscribers,
            evict_timeout: self.cfg.evict_timeout,
            tail,
            publisher_pid,
            closed: closed != 0,
            sleepers,
            relayed: self.cfg.relayed,
            upstream_lost: self.upstream().load(Ordering::Relaxed) & 1 == 1,
            base,
            lines,
        })
    }

    fn u64_at(&self, off: u64) -> &AtomicU64 {
        // SAFETY: every offset passed is a fixed, 8-aligned control-word offset or a
        // member/slot word below `payload_len()`, validated at create/attach; an atomic
        // may alias memory that other processes write.
        unsafe { AtomicU64::from_ptr(self.base.0.add(off as usize).cast()) }
    }
    fn u32_at(&self, off: u64) -> &AtomicU32 {
        // SAFETY: as in `u64_at`, 4-aligned.
        unsafe { AtomicU32::from_ptr(self.base.0.add(off as usize).cast()) }
    }
    fn control(&self) -> Control<'_> {
        Control {
            tail: self.u64_at(TAIL),
            data_seq: self.u32_at(DATA_SEQ),
            sleepers: self.u32_at(SLEEPERS),
            space_seq: self.u32_at(SPACE_SEQ),
            publisher_sleeping: self.u32_at(PUB_SLEEPING),
            members: self.u32_at(MEMBERS),
        }
    }
    fn slot_off(&self, n: u64) -> u64 {
        self.cfg.slots_at() + (n & (self.cfg.slots - 1)) * self.cfg.slot_size
    }
    fn slot(&self, n: u64) -> Slot<'_> {
        let off = self.slot_off(n);
        Slot {
            stamp: self.u64_at(off),
            len: self.u64_at(off + 8),
        }
    }
    fn payload_of(&self, n: u64) -> *mut u8 {
        // SAFETY: the slot's payload (max_message bytes after its 16-byte header) lies
        // inside the validated payload.
        unsafe { self.base.0.add((self.slot_off(n) + SLOT_HEADER) as usize) }
    }
    fn member(&self, i: u32) -> Member<'_> {
        let off = MEMBERS_AT + LINE * u64::from(i);
        Member {
            pid: self.u32_at(off),
            state: self.u32_at(off + 4),
            position: self.u64_at(off + 8),
        }
    }
    fn holder(&self) -> &AtomicU32 {
        self.u32_at(HOLDER)
    }
    fn closed(&self) -> &AtomicU32 {
        self.u32_at(CLOSED)
    }
    fn upstream(&self) -> &AtomicU32 {
        self.u32_at(UPSTREAM)
    }
    /// The first message number (0 unless a relay started at its source's numbering),
    /// never above `MAX_TAIL`.
    fn base(&self) -> u64 {
        // Acquire: pairs with the Release store in `Publisher::start_at`.
        self.u64_at(BASE)
            .load(Ordering::Acquire)
            .min(protocol::MAX_TAIL)
    }

    /// The publishing end. One per broadcast at a time, across processes and within one
    /// (like a channel's ends: [`Error::RoleTaken`] while a live process holds it).
    ///
    /// A new publisher may take over from one that closed or died: it goes on from the
    /// message count the last one reached, and subscribers that did not stop at
    /// [`Error::Closed`] receive its messages (see [`Subscriber::recv`]).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping, [`Error::RoleTaken`],
    /// [`Error::Corrupt`] for an impossible message count.
    pub fn publisher(&self) -> Result<Publisher<M>, Error> {
        self.seg.check_writable("publishing")?;
        let me = proc::current_pid();
        let holder = self.holder();
        if let Err(pid) = proc::claim_role(holder, me, 64) {
            return Err(Error::RoleTaken {
                role: "publishing",
                ring: 0,
                pid,
            });
        }
        // Acquire: pairs with the previous publisher's Release stores of `tail`.
        let next = self.control().tail.load(Ordering::Acquire);
        if next > protocol::MAX_TAIL {
            // Let the role go again: we never published.
            holder.store(0, Ordering::Release);
            return Err(Error::Corrupt {
                what: "the broadcast's message count (tail)",
                found: next,
            });
        }
        // Release: pairs with the subscribers' Acquire loads of `closed`.
        self.closed().store(0, Ordering::Release);
        // Subscribers parked before we existed watch the holder word; wake them at once.
        wake_subscribers(self.control());
        let n = self.cfg.max_subscribers as usize;
        Ok(Publisher {
            b: self.clone(),
            next,
            // An honest base is never above the tail (`start_at` stores it first).
            base: self.base().min(next),
            owner: Owner::current(),
            wait: WaitMode::default(),
            parked: Parked::default(),
            waiting_since: None,
            scan: Scan {
                members_seen: self.control().members.load(Ordering::SeqCst),
                min_position: 0,
                evicted: vec![0; n],
                evicted_members: vec![0; n],
                verified: vec![0; n],
            },
        })
    }

    /// Joins as a subscriber: the first message it receives is the next one published.
    ///
    /// On a writable mapping it takes a subscriber line ([`Error::SubscribersFull`] when
    /// all are taken); on a read-only one (lossy mode only, else [`Error::ReadOnly`]) it
    /// writes nothing and polls. A read-only subscriber holds no line, so the publisher
    /// cannot count it ([`subscriber_count`](Self::subscriber_count)).
    ///
    /// # Errors
    /// As above, and [`Error::Corrupt`] for an impossible message count.
    pub fn subscribe(&self) -> Result<Subscriber<M>, Error> {
        let ctl = self.control();
        let me = proc::current_pid();
        if !self.seg.is_writable() {
            if self.cfg.mode == BroadcastMode::Reliable {
                return Err(Error::ReadOnly {
                    what: "a reliable subscriber (it publishes its position)",
                });
            }
            // Acquire: pairs with the publisher's Release store of `tail`.
            let next = ctl.tail.load(Ordering::Acquire);
            if next > protocol::MAX_TAIL {
                return Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: next,
                });
            }
            return Ok(self.new_subscriber(None, next, 1));
        }
        for i in 0..self.cfg.max_subscribers {
            let m = self.member(i);
            // The one claim every role makes: free (0) or held by a dead process, one
            // winner per line (its orderings pair with a previous subscriber's release of
            // the line and with the publisher's loads of the line set below).
            if proc::claim_role(m.pid, me, 1).is_err() {
                continue;
            }
            // Acquire: pairs with the publisher's Release store of `tail`.
            let guess = ctl.tail.load(Ordering::Acquire);
            m.position.store(guess, Ordering::Relaxed);
            // Release: the publisher reads the state with Acquire, then the position.
            m.state.store(ACTIVE, Ordering::Release);
            let next = protocol::join(ctl, m.position, guess);
            if next > protocol::MAX_TAIL {
                // Give the line back: we never joined.
                m.state.store(LEFT, Ordering::Release);
                m.pid.store(0, Ordering::Release);
                return Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: next,
                });
            }
            return Ok(self.new_subscriber(Some(i), next, (self.cfg.slots / 16).max(1)));
        }
        Err(Error::SubscribersFull {
            max: self.cfg.max_subscribers,
        })
    }

    /// The same as [`subscribe`](Self::subscribe), named like [`publisher`](Self::publisher)
    /// (and like a channel's [`sender`](crate::Channel::sender) /
    /// [`receiver`](crate::Channel::receiver)).
    ///
    /// # Errors
    /// As [`subscribe`](Self::subscribe).
    pub fn subscriber(&self) -> Result<Subscriber<M>, Error> {
        self.subscribe()
    }

    fn new_subscriber(&self, line: Option<u32>, next: u64, batch: u64) -> Subscriber<M> {
        Subscriber {
            b: self.clone(),
            line,
            next,
            delivered: next,
            published: next,
            batch,
            owner: Owner::current(),
            wait: if self.cfg.relayed {
                // A relayed stream arrives at the network's pace: spinning for it burns
                // a core the relay itself needs.
                WaitMode::Block { spin: RELAYED_SPIN }
            } else {
                WaitMode::default()
            },
            broken: None,
            parked: Parked::default(),
            track: Track {
                resynced: false,
                read_any: false,
                // Acquire: pairs with the publisher's Release updates; an outage under
                // way when we join is reported once (the word's even value before it).
                upstream_seen: self.upstream().load(Ordering::Acquire) & !1,
                base: 0,
            },
        }
    }

    fn check_schema<T: Record>(&self) -> Result<(), Error> {
        let mine = Schema::of::<T>()?;
        if mine != self.cfg.schema {
            return Err(Error::SchemaMismatch {
                found: self.cfg.schema,
                expected: mine,
            });
        }
        Ok(())
    }
}

/// One subscriber line.
#[derive(Clone, Copy)]
struct Member<'a> {
    pid: &'a AtomicU32,
    state: &'a AtomicU32,
    position: &'a AtomicU64,
}

/// The publisher's private view of the subscribers (reliable mode).
struct Scan {
    members_seen: u32,
    /// The lowest position among active subscribers at the last scan (u64::MAX: none).
    /// Positions only grow and leaving only raises it, so it stays a safe bound until
    /// someone joins (`members` changes).
    min_position: u64,
    /// Per line, the pid we evicted there (0: none). The line is ignored until a live
    /// process takes it: a pid word that a hostile peer keeps rewriting (`pid = k++`) does
    /// not make the line count again.
    evicted: Vec<u32>,
    /// Per line, the `members` count when we evicted there: a join since (the same
    /// process joining again takes the same pid) makes the line count again.
    evicted_members: Vec<u32>,
    /// Per line, a pid seen alive after an eviction there (so it is checked only once).
    verified: Vec<u32>,
}

impl Scan {
    /// Whether line `i`, now held by `pid`, counts: not evicted, or taken since by a
    /// process that is really alive.
    fn counts(&mut self, i: usize, pid: u32) -> bool {
        let evicted = self.evicted[i];
        if evicted == 0 {
            return true;
        }
        if evicted == pid {
            if self.members_seen == self.evicted_members[i] {
                return false;
            }
            // Someone joined since: the same process (same pid) may have taken the line
            // again. It counts; if it is the evicted one rewriting its state, it is
            // evicted again, each time after a join at most.
            self.evicted[i] = 0;
            return true;
        }
        if self.verified[i] == pid {
            return true;
        }
        if proc::liveness(pid) == Liveness::Alive {
            self.verified[i] = pid;
            self.evicted[i] = 0;
            return true;
        }
        false
    }
}

/// The publishing end of a broadcast.
///
/// Every way of publishing (`try_publish`, `publish`, `publish_timeout`, `publish_async`
/// and the `_pod` forms over them) runs the same step (`PublishStep`).
pub struct Publisher<M: SharedMemory> {
    b: Broadcast<M>,
    next: u64,
    /// The first message number (the base word as this publisher found or set it): a
    /// later change of the shared word is a peer's scribble, not ours to trust.
    base: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    wait: WaitMode,
    scan: Scan,
    parked: Parked,
    /// Since when the publisher has been waiting for room for message `next` (reliable):
    /// the eviction clock. Cleared once the message is written.
    waiting_since: Option<Instant>,
}

/// The publisher's one step: room for message `next` (reliable), or nothing to wait for
/// (lossy).
struct PublishStep<'a, M: SharedMemory> {
    b: &'a Broadcast<M>,
    next: u64,
    base: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    scan: &'a mut Scan,
    since: &'a mut Option<Instant>,
}

impl<M: SharedMemory> PublishStep<'_, M> {
    /// Whether message `next` may be written: its slot's previous message was read by
    /// every active subscriber. Rescans the subscriber lines when someone joined or when
    /// the cached minimum is not enough.
    fn room(&mut self) -> bool {
        let n = self.next;
        let slots = self.b.cfg.slots;
        let changed = protocol::members_changed(self.b.control(), &mut self.scan.members_seen);
        if n < slots {
            // The slot was never used: nothing to destroy. (A joiner's first message
            // is at least the tail it saw, so it never needs an earlier one.)
            return true;
        }
        let need = n + 1 - slots;
        if !changed && self.scan.min_position >= need {
            return true;
        }
        self.rescan();
        self.scan.min_position >= need
    }

    /// Reads every subscriber line; evicts those whose position is impossible.
    ///
    /// Its cost is one look at each of `max_subscribers` lines. A co-subscriber that keeps
    /// bumping `members` makes it run before every message: that slows the publisher (a
    /// scan per message) but cannot stop it.
    fn rescan(&mut self) {
        let n = self.next;
        let base = self.base;
        let mut min = u64::MAX;
        for i in 0..self.b.cfg.max_subscribers {
            let m = self.b.member(i);
            // Acquire: pairs with the subscriber's Release stores (claim, state).
            let pid = m.pid.load(Ordering::Acquire);
            if pid == 0 {
                // A free line: whoever takes it next is a new subscriber.
                self.scan.evicted[i as usize] = 0;
                continue;
            }
            // Acquire: pairs with the subscriber's Release store of its state.
            if m.state.load(Ordering::Acquire) != ACTIVE || !self.scan.counts(i as usize, pid) {
                continue;
            }
            // Acquire: pairs with the subscriber's Release store of its position.
            let pos = m.position.load(Ordering::Acquire);
            if pos > n {
                // Ahead of what was published: no honest subscriber writes that.
                self.evict(i, pid, EVICTED_CORRUPT);
                continue;
            }
            // One that joined before a relay's `start_at` needs nothing below the base
            // (it moves there at its next look).
            min = min.min(pos.max(base));
        }
        self.scan.min_position = min;
    }

    /// Evicts the subscriber on line `i` (held by `pid`) and wakes it to tell it so.
    fn evict(&mut self, i: u32, pid: u32, why: u32) {
        // Release: pairs with the subscriber's Acquire load of its state.
        self.b.member(i).state.store(why, Ordering::Release);
        self.scan.evicted[i as usize] = pid;
        self.scan.evicted_members[i as usize] = self.scan.members_seen;
        self.scan.verified[i as usize] = 0;
        wake_subscribers(self.b.control());
    }

    /// Whether the wait for message `next` has lasted the eviction timeout.
    fn overdue(&mut self) -> bool {
        self.since.get_or_insert_with(Instant::now).elapsed() >= self.b.cfg.evict_timeout
    }

    /// Evicts the subscribers that hold the slot back and are dead (`peer`), or all of
    /// them once the wait is overdue.
    fn evict_blockers(&mut self, peer: bool) {
        let Some(need) = (self.next + 1).checked_sub(self.b.cfg.slots) else {
            return;
        };
        let overdue = self.overdue();
        if !peer && !overdue {
            return;
        }
        for i in 0..self.b.cfg.max_subscribers {
            let m = self.b.member(i);
            // Acquire as in `rescan`.
            let pid = m.pid.load(Ordering::Acquire);
            if pid == 0 || self.scan.evicted[i as usize] == pid {
                continue;
            }
            if m.state.load(Ordering::Acquire) != ACTIVE
                || m.position.load(Ordering::Acquire) >= need
            {
                continue;
            }
            if overdue {
                let why = if proc::liveness(pid) == Liveness::Dead {
                    EVICTED_DEAD
                } else {
                    EVICTED_BEHIND
                };
                self.evict(i, pid, why);
            } else if proc::liveness(pid) == Liveness::Dead {
                self.evict(i, pid, EVICTED_DEAD);
            }
        }
    }
}

impl<M: SharedMemory> Step for PublishStep<'_, M> {
    type Out = ();

    #[inline]
    fn look(&mut self) -> Result<Option<()>, Error> {
        self.owner.check()?;
        if self.b.cfg.mode == BroadcastMode::Lossy || self.room() {
            return Ok(Some(()));
        }
        if self.since.is_some() && self.overdue() {
            // The eviction timeout has passed since this message began to wait: every
            // subscriber still holding it back is evicted, and the message goes out
            // whatever the lines say now. However they churn, a publish waits at most
            // about the eviction timeout.
            self.evict_blockers(false);
            return Ok(Some(()));
        }
        Ok(None)
    }
}

impl<M: SharedMemory> Sleeper for PublishStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.b.seg.intact()?;
        self.evict_blockers(peer);
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let b: &Broadcast<M> = self.b;
        let ctl = b.control();
        // `room` reads the positions after the flag store and the fence (in the protocol
        // function), against each subscriber's position store, fence, flag load.
        let Some(seq) = protocol::publisher_prepare_sleep(ctl, || self.room()) else {
            return Ok(None);
        };
        // Never longer than what is left of the eviction timeout: the check must run.
        let since = self.since.get_or_insert_with(Instant::now);
        let left = b
            .cfg
            .evict_timeout
            .saturating_sub(since.elapsed())
            .max(Duration::from_micros(100));
        Ok(Some(
            Park::futex(ctl.space_seq, seq)
                .watch_u32(ctl.members, ctl.members.load(Ordering::Relaxed))
                .limit(left)
                // The condition is spread over every line, and the eviction clock runs.
                .periodic(),
        ))
    }

    fn done(&mut self) {
        protocol::publisher_done_sleeping(self.b.control());
    }
}

impl<M: SharedMemory> Publisher<M> {
    /// How this end waits (reliable mode).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The number the next message will get.
    pub fn next_message(&self) -> u64 {
        self.next
    }

    #[inline]
    fn step(&mut self) -> (PublishStep<'_, M>, &mut Parked) {
        (
            PublishStep {
                b: &self.b,
                next: self.next,
                base: self.base,
                owner: self.owner,
                scan: &mut self.scan,
                since: &mut self.waiting_since,
            },
            &mut self.parked,
        )
    }

    /// Publishes a copy of `bytes`. Reliable: waits for room, evicting subscribers that
    /// are dead, corrupt, or stuck past the eviction timeout, so it returns within about
    /// that timeout however the subscriber lines churn. Lossy: never waits.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Truncated`].
    pub fn publish(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.publish_impl(bytes, None)
    }

    /// [`publish`](Self::publish), waiting at most `timeout` for room (reliable mode).
    ///
    /// # Errors
    /// As [`publish`](Self::publish), and [`Error::Timeout`].
    pub fn publish_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), Error> {
        self.publish_impl(bytes, Some(timeout))
    }

    /// Publishes if there is room now (always, in lossy mode).
    ///
    /// # Errors
    /// [`Error::Full`] when there is no room now, and as [`publish`](Self::publish).
    pub fn try_publish(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.check(bytes.len())?;
        let (mut step, _) = self.step();
        wait::try_once(&mut step, Error::Full)?;
        self.write(bytes)
    }

    /// Publishes a record of the broadcast's type.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] for another type, and as [`publish`](Self::publish).
    pub fn publish_pod<T: Record>(&mut self, value: &T) -> Result<(), Error> {
        self.b.check_schema::<T>()?;
        self.publish(bytemuck::bytes_of(value))
    }

    /// Waits until at least `n` subscribers hold a line (read-only subscribers hold none
    /// and are not counted), at most `timeout`; returns the count seen.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Truncated`].
    pub fn wait_for_subscribers(&self, n: u32, timeout: Duration) -> Result<u32, Error> {
        wait::poll_until(timeout, || {
            if let Err(e) = self.b.seg.intact() {
                return Some(Err(e));
            }
            let c = self.b.subscriber_count();
            (c >= n).then_some(Ok(c))
        })?
    }

    fn check(&self, len: usize) -> Result<(), Error> {
        self.numbers_left(1)?;
        let len = len as u64;
        if len > self.b.cfg.max_message {
            return Err(Error::MessageTooLarge {
                len,
                max: self.b.cfg.max_message,
            });
        }
        Ok(())
    }

    /// Refuses to number past [`protocol::MAX_TAIL`]: `numbers` more must still fit.
    fn numbers_left(&self, numbers: u64) -> Result<(), Error> {
        match self.next.checked_add(numbers) {
            Some(end) if end <= protocol::MAX_TAIL => Ok(()),
            _ => Err(Error::InvalidOption {
                option: "broadcast message number",
                found: self.next.saturating_add(numbers),
                expected: "at most 2^62 message numbers in a broadcast's life",
            }),
        }
    }

    fn publish_impl(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), Error> {
        self.check(bytes.len())?;
        let pace = self.wait.pace_shared();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, timeout)?;
        self.write(bytes)
    }

    /// Tells every subscriber that `missed` messages were lost upstream, before anything
    /// published after: each subscriber's receive at this point is
    /// [`Error::Lagged`]`{ missed }`, then it goes on. For relays (the `shm-zenoh`
    /// importer) that republish a remote stream and must report its gaps exactly. The
    /// notice takes one message number (one slot, no payload); a gap above
    /// [`protocol::MAX_GAP`] takes several notices. `missed == 0` publishes nothing.
    /// Waits for room like [`publish`](Self::publish) (reliable mode).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when the gap would number past 2^62 (nothing is
    /// published then), and as [`publish`](Self::publish).
    pub fn publish_gap(&mut self, missed: u64) -> Result<(), Error> {
        self.numbers_left(missed)?;
        let mut left = missed;
        while left > 0 {
            let part = left.min(protocol::MAX_GAP);
            self.publish_notice(protocol::Notice::Gap(part))?;
            left -= part;
        }
        Ok(())
    }

    /// Starts the numbering at `n` (a relay republishing a source that is already at
    /// message `n`, so that its subscribers see the source's numbers). Only before
    /// anything was published; subscribers that joined already go on from `n`, with
    /// nothing reported missed.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] once something was published (or `n` above 2^62).
    pub fn start_at(&mut self, n: u64) -> Result<(), Error> {
        let ctl = self.b.control();
        // Acquire: pairs with any earlier publisher's Release store of `tail`.
        let tail = ctl.tail.load(Ordering::Acquire);
        if self.next != 0 || tail != 0 || n > protocol::MAX_TAIL {
            return Err(Error::InvalidOption {
                option: "broadcast start_at",
                found: n,
                expected: "a broadcast with nothing published yet, and a number up to 2^62",
            });
        }
        self.b.seg.check_writable("Publisher::start_at")?;
        self.owner.check()?;
        // Release: pairs with the subscribers' Acquire load in `Broadcast::base`, which
        // they make before they read a slot; the tail store below publishes it.
        self.b.u64_at(BASE).store(n, Ordering::Release);
        // Release: pairs with the Acquire loads of `tail` (joiners start there).
        ctl.tail.store(n, Ordering::Release);
        self.next = n;
        self.base = n;
        // Subscribers waiting at 0 move to `n` at their next look.
        wake_subscribers(ctl);
        self.b.seg.intact()
    }

    /// Tells the subscribers that the upstream source is gone for now (a relay whose
    /// source disappeared): each subscriber that has read everything published gets
    /// [`Error::UpstreamLost`] once, then goes on waiting for messages. Takes no message
    /// number. [`upstream_restored`](Self::upstream_restored) ends the outage.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn publish_upstream_lost(&mut self) -> Result<(), Error> {
        self.set_upstream(true)
    }

    /// Ends an outage announced by [`publish_upstream_lost`](Self::publish_upstream_lost).
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn upstream_restored(&mut self) -> Result<(), Error> {
        self.set_upstream(false)
    }

    fn set_upstream(&mut self, lost: bool) -> Result<(), Error> {
        self.owner.check()?;
        let word = self.b.upstream();
        // Relaxed: only this publisher writes the word.
        let now = word.load(Ordering::Relaxed);
        if (now & 1 == 1) != lost {
            // Release: pairs with the subscribers' Acquire load in their empty look;
            // everything published before is visible to one that sees the change.
            word.store(now.wrapping_add(1), Ordering::Release);
            let ctl = self.b.control();
            wake_subscribers(ctl);
        }
        self.b.seg.intact()
    }

    fn publish_notice(&mut self, notice: protocol::Notice) -> Result<(), Error> {
        let pace = self.wait.pace_shared();
        let (mut step, _) = self.step();
        wait::block(&mut step, pace, None)?;
        self.write_len(&[], notice.encode(), notice.numbers())
    }

    /// Writes message `next` and publishes it (room was found).
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.write_len(bytes, bytes.len() as u64, 1)
    }

    /// Writes `bytes` as message `next` with slot length `len` (the byte count, or a
    /// notice with no bytes) and publishes it; the next message is `numbers` on.
    fn write_len(&mut self, bytes: &[u8], len: u64, numbers: u64) -> Result<(), Error> {
        let n = self.next;
        let b = &self.b;
        let slot = b.slot(n);
        protocol::begin_write(slot, n);
        // SAFETY: the slot's payload holds max_message >= bytes.len() bytes (checked) in
        // the validated payload, and the mapping is writable (the write gate in
        // `publisher`); Release as the protocol requires.
        unsafe { copy::store_bytes_ordered(b.payload_of(n), bytes, Ordering::Release) };
        let next = n.saturating_add(numbers.max(1));
        if protocol::end_write(b.control(), slot, n, len, next) {
            wake_subscribers(b.control());
        }
        self.next = next;
        self.waiting_since = None;
        b.seg.intact()
    }

    /// Publishes a copy of `bytes` without blocking the thread. It runs the same step as
    /// [`publish`](Self::publish): reliable mode waits for room (evicting the dead, the
    /// corrupt and the overdue), spinning, then parking with the
    /// [`reactor`](crate::os::reactor), which looks at it at least every
    /// [`SLICE`](crate::os::park::SLICE); lossy mode completes at once.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    ///
    /// # Cancel safety
    /// Cancellation safe: nothing is written until room is found, and then the write
    /// completes in the same poll; dropping the future while it waits publishes nothing.
    pub fn publish_async<'a>(&'a mut self, bytes: &'a [u8]) -> PublishFuture<'a, M> {
        PublishFuture {
            publisher: self,
            bytes,
            done: false,
        }
    }

    /// [`publish_pod`](Self::publish_pod) without blocking the thread.
    ///
    /// # Errors
    /// As [`publish_pod`](Self::publish_pod).
    ///
    /// # Cancel safety
    /// As [`publish_async`](Self::publish_async).
    pub async fn publish_pod_async<T: Record>(&mut self, value: &T) -> Result<(), Error> {
        self.b.check_schema::<T>()?;
        self.publish_async(bytemuck::bytes_of(value)).await
    }

    fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let (mut step, parked) = self.step();
        parked.release(&mut step);
    }
}

impl<M: SharedMemory> Drop for Publisher<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // A forked child's copy: the role, the close word and the reactor are the
            // parent's; dropping the copy changes nothing shared.
            return;
        }
        self.unpark();
        let ctl = self.b.control();
        // Release: pairs with the subscribers' Acquire loads of `closed`; every message
        // published before is visible before the close is.
        self.b.closed().store(1, Ordering::Release);
        wake_subscribers(ctl);
        // Release: pairs with the Acquire holder loads of the next publisher and of
        // subscribers telling a close from a death.
        self.b.holder().store(0, Ordering::Release);
    }
}

/// The future of [`Publisher::publish_async`].
pub struct PublishFuture<'a, M: SharedMemory> {
    publisher: &'a mut Publisher<M>,
    bytes: &'a [u8],
    done: bool,
}

impl<M: SharedMemory> std::future::Future for PublishFuture<'_, M> {
    type Output = Result<(), Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Error::Closed));
        }
        if let Err(e) = this.publisher.check(this.bytes.len()) {
            this.done = true;
            return Poll::Ready(Err(e));
        }
        let spin = this.publisher.wait.async_spin();
        let (mut step, parked) = this.publisher.step();
        match wait::poll_step(&mut step, parked, spin, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                this.done = true;
                Poll::Ready(r.and_then(|()| this.publisher.write(this.bytes)))
            }
        }
    }
}

impl<M: SharedMemory> Drop for PublishFuture<'_, M> {
    fn drop(&mut self) {
        self.publisher.unpark();
    }
}

/// A subscriber of a broadcast.
///
/// Every way of receiving (`try_recv`, `recv`, `recv_timeout`, `recv_async` and the
/// `_pod` forms over them) runs the same step (`SubscribeStep`).
pub struct Subscriber<M: SharedMemory> {
    b: Broadcast<M>,
    /// Its line, or `None` for a read-only (lossy) subscriber, which writes nothing.
    line: Option<u32>,
    next: u64,
    /// One past the last message delivered: `next` never goes below it (a resync after
    /// a forged tail never delivers a message twice or out of order).
    delivered: u64,
    /// The position last published in the line (reliable): positions go out every
    /// `batch` messages and whenever the subscriber finds nothing to read, so a waiting
    /// publisher always hears of progress before the subscriber waits.
    published: u64,
    batch: u64,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    wait: WaitMode,
    broken: Option<Error>,
    parked: Parked,
    track: Track,
}

/// What a subscriber remembers between receives besides its position.
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    /// `next` was set by a resync (lossy lag): it may name a number a relay skipped, so an
    /// empty slot there is checked against `tail`.
    resynced: bool,
    /// A message or notice was read: the base can no longer move (a relay's `start_at`
    /// comes before anything is published), so `look` stops loading it.
    read_any: bool,
    /// The upstream word last seen (reported once per change to odd).
    upstream_seen: u32,
    /// The first message number as read before the first message (clamped to the tail
    /// then); fixed once anything was read, whatever the shared word says later.
    base: u64,
}

/// Where a received message goes: a buffer that grows to fit, or a caller's slice that
/// the message must fit (else it is left where it is).
enum Sink<'a> {
    Vec(&'a mut Vec<u8>),
    Slice { buf: &'a mut [u8], len: usize },
}

/// The subscriber's one step: the next message, copied into its sink.
struct SubscribeStep<'a, M: SharedMemory> {
    b: &'a Broadcast<M>,
    line: Option<u32>,
    /// The process this end belongs to (see [`Error::Forked`]).
    owner: Owner,
    batch: u64,
    next: &'a mut u64,
    delivered: &'a mut u64,
    published: &'a mut u64,
    broken: &'a mut Option<Error>,
    track: &'a mut Track,
    sink: Sink<'a>,
}

impl<M: SharedMemory> SubscribeStep<'_, M> {
    /// Whether the publisher closed: the close word is set and the holder word is
    /// cleared (`Publisher::drop` sets the one, then clears the other). A close word
    /// alone, with a holder, is a scribble or a new publisher taking over: not a close.
    fn closed(&self) -> bool {
        // Acquire: pairs with the Release store of 0 in `Publisher::drop`, which follows
        // its close store, so a cleared holder comes with a visible close and with every
        // message published before it.
        self.b.holder().load(Ordering::Acquire) == 0
            // Acquire: pairs with the Release store in `Publisher::drop`.
            && self.b.closed().load(Ordering::Acquire) != 0
    }

    /// Our line's state: `Err(Evicted)` once the publisher evicted us (or `Truncated`
    /// when the line reads as nonsense because the segment was truncated under us).
    fn still_member(&mut self) -> Result<(), Error> {
        if let Some(e) = *self.broken {
            return Err(e);
        }
        let Some(i) = self.line else { return Ok(()) };
        if self.b.cfg.mode == BroadcastMode::Lossy {
            // Only a reliable publisher evicts; a lossy line is bookkeeping (counts and
            // sleepers), so a scribbled one changes nothing about receiving.
            return Ok(());
        }
        let m = self.b.member(i);
        // Acquire: pairs with the publisher's Release store in `evict`.
        let state = m.state.load(Ordering::Acquire);
        let pid = m.pid.load(Ordering::Relaxed);
        if state != ACTIVE || pid != self.owner.pid() {
            self.b.seg.intact()?;
            let e = Error::Evicted {
                reason: eviction_reason(state),
            };
            *self.broken = Some(e);
            return Err(e);
        }
        Ok(())
    }

    /// After a resync: whether message `p` was never written because a relay's notice
    /// moved the numbering past it (the publisher is beyond `p`, yet its slot holds an
    /// older message). Returns where to resume: the first later number whose slot holds
    /// it or a newer message, at most a ring on, else the tail.
    fn skipped(&self, p: u64) -> Option<u64> {
        let b = self.b;
        // Acquire: pairs with the publisher's Release store of `tail`.
        let tail = b.control().tail.load(Ordering::Acquire);
        if tail <= p || tail > protocol::MAX_TAIL {
            return None;
        }
        // Acquire: had message `p` been written, its stamp store came before the tail
        // store just seen, so this load would see it.
        if b.slot(p).stamp.load(Ordering::Acquire) >= protocol::done_stamp(p) {
            return None;
        }
        let end = tail.min(p.saturating_add(b.cfg.slots));
        let mut q = p.saturating_add(1);
        // Acquire as above, per slot.
        while q < end && b.slot(q).stamp.load(Ordering::Acquire) < protocol::done_stamp(q) {
            q += 1;
        }
        Some(q)
    }

    /// The tail, if the slots agree with it: message `tail - 1` (or a later one) is
    /// complete in its slot and message `tail` is not. A tail word a peer scribbled (too
    /// high or too low) fails one of the two, so a reader never moves its own position
    /// on that word alone. `None` also while the publisher is mid-message; the caller
    /// asks again on a later round.
    fn verified_tail(&self) -> Option<u64> {
        let b = self.b;
        // Acquire: pairs with the publisher's Release store of `tail`; the stamp stores
        // of every message below it came before.
        let tail = b.control().tail.load(Ordering::Acquire);
        if tail > protocol::MAX_TAIL {
            return None;
        }
        let before_done = tail == 0
            // Acquire: pairs with the Release stamp store in `end_write`.
            || b.slot(tail - 1).stamp.load(Ordering::Acquire) >= protocol::done_stamp(tail - 1);
        // Acquire as above.
        let at_not_done = b.slot(tail).stamp.load(Ordering::Acquire) < protocol::done_stamp(tail);
        (before_done && at_not_done).then_some(tail)
    }

    /// Lossy: a position ahead of the stream (moved there by a forged tail, stamp, gap
    /// notice or join) resyncs to the oldest message held below the verified tail, never
    /// below what was delivered (clamped to that tail: an honest subscriber never
    /// delivered past it), reported once as `Lagged`; then it receives again.
    fn resync_if_ahead(&mut self) -> Result<(), Error> {
        if self.b.cfg.mode != BroadcastMode::Lossy {
            return Ok(());
        }
        // The common case costs one load: not ahead of the tail word as it reads. Only a
        // position past it is checked against the slots.
        // Acquire: pairs with the publisher's Release store of `tail`.
        if *self.next <= self.b.control().tail.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(tail) = self.verified_tail() else {
            return Ok(());
        };
        if *self.next <= tail {
            return Ok(());
        }
        // The floor is what was really delivered (one that delivered nothing yet, say a
        // subscriber that joined at a forged tail, has none).
        let floor = if self.track.read_any {
            (*self.delivered).min(tail)
        } else {
            0
        };
        *self.next = protocol::oldest_readable(tail, self.b.cfg.slots).max(floor);
        *self.delivered = floor;
        self.track.resynced = true;
        Err(Error::Lagged { missed: 0 })
    }

    /// Publishes our position (`next`) in our line, and wakes the publisher if it waits
    /// (reliable only: in lossy mode nobody reads positions).
    fn publish_position(&mut self) {
        let Some(i) = self.line else { return };
        if self.b.cfg.mode == BroadcastMode::Lossy {
            return;
        }
        let ctl = self.b.control();
        if protocol::release(ctl, self.b.member(i).position, self.next.saturating_sub(1)) {
            wake_publisher(ctl);
        }
        *self.published = *self.next;
    }
}

impl<M: SharedMemory> Step for SubscribeStep<'_, M> {
    type Out = u64;

    fn look(&mut self) -> Result<Option<u64>, Error> {
        self.owner.check()?;
        // Read `closed` before looking: a close seen here came after every message
        // published before it.
        let closed = self.closed();
        self.still_member()?;
        let b = self.b;
        // A relay that started at its source's numbering: nothing below it exists. Only
        // before the first read (the base may still move) and after a resync (which may
        // land below it); not on every message.
        if !self.track.read_any {
            // Acquire: pairs with the Release store of `tail` in `start_at`, which
            // follows its base store, so the base below is at least as new. An honest
            // base is never above the tail: a larger word is not taken.
            let tail = b.control().tail.load(Ordering::Acquire);
            let base = b.base();
            if base <= tail {
                self.track.base = base;
            }
        }
        if (!self.track.read_any || self.track.resynced) && *self.next < self.track.base {
            *self.next = self.track.base;
        }
        let p = *self.next;
        let payload = b.payload_of(p);
        let sink = &mut self.sink;
        let attempt = protocol::try_read(
            b.control(),
            b.slot(p),
            p,
            b.cfg.slots,
            b.cfg.max_message,
            |len| {
                let out: &mut [u8] = match sink {
                    Sink::Vec(v) => {
                        v.resize(len as usize, 0);
                        v
                    }
                    Sink::Slice { buf, .. } if len > buf.len() as u64 => return Err(len),
                    Sink::Slice { buf, len: got } => {
                        *got = len as usize;
                        &mut buf[..len as usize]
                    }
                };
                // SAFETY: `len <= max_message` (checked by `try_read`), so the copy stays
                // inside the slot's payload; Acquire as the protocol requires.
                unsafe { copy::load_bytes_ordered(payload, out, Ordering::Acquire) };
                Ok(())
            },
        );
        b.seg.intact()?;
        match attempt {
            Attempt::Got(Err(len)) => {
                // The caller's slice is too small: the message stays for the next call.
                let max = match &self.sink {
                    Sink::Slice { buf, .. } => buf.len() as u64,
                    Sink::Vec(_) => 0,
                };
                Err(Error::MessageTooLarge { len, max })
            }
            Attempt::Got(Ok(())) => {
                *self.next = p.saturating_add(1);
                *self.delivered = *self.next;
                self.track.resynced = false;
                self.track.read_any = true;
                if self.next.saturating_sub(*self.published) >= self.batch {
                    self.publish_position();
                }
                Ok(Some(p))
            }
            Attempt::Empty => self.empty(p, closed),
            Attempt::Lagged { resume } => {
                // Reliable: a member is never overwritten unless it was evicted.
                self.still_member()?;
                let missed = resume.saturating_sub(p);
                *self.next = resume.max(*self.delivered);
                self.track.resynced = true;
                Err(Error::Lagged { missed })
            }
            Attempt::BadTail(tail) => {
                // Not sticky: the position did not move, and the publisher's next message
                // rewrites the word. A resync needs a tail the slots agree with.
                b.seg.intact()?;
                Err(Error::Corrupt {
                    what: "the broadcast's message count (tail)",
                    found: tail,
                })
            }
            Attempt::Corrupt(len) => match protocol::Notice::decode(len) {
                Some(notice) => self.notice(p, notice, closed),
                None => {
                    // A length no honest publisher writes: this message is unreadable. It
                    // is reported and passed over, not sticky: a scribbled slot must not
                    // silence the subscriber for good.
                    *self.next = p.saturating_add(1);
                    *self.delivered = *self.next;
                    self.track.resynced = false;
                    self.track.read_any = true;
                    Err(Error::Corrupt {
                        what: "a broadcast message length",
                        found: len,
                    })
                }
            },
        }
    }
}

impl<M: SharedMemory> SubscribeStep<'_, M> {
    /// Message `p` is not there yet: first the exact gap after a resync onto numbers a
    /// relay skipped, then (before waiting) the position, the close and the upstream word.
    fn empty(&mut self, p: u64, closed: bool) -> Result<Option<u64>, Error> {
        if self.track.resynced {
            if let Some(resume) = self.skipped(p) {
                // A resync landed on numbers a relay's gap notice covers (lost
                // upstream): they count as missed, exactly.
                *self.next = resume.max(*self.delivered);
                return Err(Error::Lagged {
                    missed: resume.saturating_sub(p),
                });
            }
        }
        // Before waiting: a publisher waiting for us must hear where we are.
        if *self.published != *self.next {
            self.publish_position();
        }
        if closed {
            return Err(Error::Closed);
        }
        // Acquire: pairs with the publisher's Release store in `set_upstream`.
        let up = self.b.upstream().load(Ordering::Acquire);
        if up != self.track.upstream_seen {
            self.track.upstream_seen = up;
            if up & 1 == 1 {
                return Err(Error::UpstreamLost);
            }
        }
        Ok(None)
    }

    /// A gap notice at `p`, read whole (both stamp loads agreed): numbers `p .. p + k`
    /// were lost upstream and the next message is `p + k`. The publisher stores the tail
    /// `p + k` after the notice, so a notice the tail does not cover yet is not taken
    /// (a forged one never is): the subscriber waits as for an empty slot, and an honest
    /// one is taken on a later look.
    fn notice(
        &mut self,
        p: u64,
        notice: protocol::Notice,
        closed: bool,
    ) -> Result<Option<u64>, Error> {
        let k = notice.numbers();
        // Acquire: pairs with the publisher's Release store of `tail` after the notice.
        let tail = self.b.control().tail.load(Ordering::Acquire);
        match p.checked_add(k) {
            Some(end) if end <= tail && tail <= protocol::MAX_TAIL => {
                *self.next = end;
                *self.delivered = end;
                self.track.resynced = false;
                self.track.read_any = true;
                if self.next.saturating_sub(*self.published) >= self.batch {
                    self.publish_position();
                }
                Err(Error::Lagged { missed: k })
            }
            _ => self.empty(p, closed),
        }
    }
}

impl<M: SharedMemory> Sleeper for SubscribeStep<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.b.seg.intact()?;
        self.still_member()?;
        self.resync_if_ahead()?;
        if !peer {
            return Ok(());
        }
        // Acquire: pairs with the Release store of 0 in `Publisher::drop`, which follows
        // the close: a cleared holder comes with a visible close. Read afresh every
        // time: a publisher that appeared after the wait began, and died, is seen.
        let pid = self.b.holder().load(Ordering::Acquire);
        if self.closed() {
            return Ok(()); // `look` reports it once everything was read
        }
        if proc::liveness(pid) == Liveness::Dead {
            // Messages published before the crash are still delivered.
            // Acquire: pairs with the publisher's Release store of `tail`.
            if self.b.control().tail.load(Ordering::Acquire) > *self.next {
                return Ok(());
            }
            return Err(Error::PeerDied { pid });
        }
        Ok(())
    }

    fn prepare(&mut self) -> Result<Option<Park<'_>>, Error> {
        let b: &Broadcast<M> = self.b;
        let ctl = b.control();
        let p = *self.next;
        let holder = b.holder();
        // Relaxed: the watched words are only compared for change by the reactor.
        let pid = holder.load(Ordering::Relaxed);
        let stamp = b.slot(p).stamp;
        let park = match self.line {
            // Read-only: nothing to announce; a short poll sleep.
            // Acquire: pairs with the Release bump in `bump_data`.
            None => Park::futex(ctl.data_seq, ctl.data_seq.load(Ordering::Acquire))
                .limit(Duration::from_millis(1)),
            Some(i) => match protocol::prepare_sleep(ctl, p) {
                None => return Ok(None),
                Some(seq) => {
                    let state = b.member(i).state;
                    Park::futex(ctl.data_seq, seq).watch_u32(state, state.load(Ordering::Relaxed))
                }
            },
        };
        Ok(Some(
            park.watch_u64(stamp, stamp.load(Ordering::Relaxed))
                .watch_u32(holder, pid)
                .watch_u32(b.closed(), b.closed().load(Ordering::Relaxed))
                .watch_u32(b.upstream(), b.upstream().load(Ordering::Relaxed))
                .peer(pid),
        ))
    }

    fn done(&mut self) {
        if self.line.is_some() {
            protocol::done_sleeping(self.b.control());
        }
    }
}

impl<M: SharedMemory> Subscriber<M> {
    /// How this subscriber waits (a read-only subscriber polls whatever the mode).
    pub fn set_wait(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The number of the next message it will receive.
    pub fn next_message(&self) -> u64 {
        self.next
    }

    #[inline]
    fn step<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> (SubscribeStep<'a, M>, &'a mut Parked) {
        self.step_into(Sink::Vec(buf))
    }

    #[inline]
    fn step_into<'a>(&'a mut self, sink: Sink<'a>) -> (SubscribeStep<'a, M>, &'a mut Parked) {
        (
            SubscribeStep {
                b: &self.b,
                line: self.line,
                owner: self.owner,
                batch: self.batch,
                next: &mut self.next,
                delivered: &mut self.delivered,
                published: &mut self.published,
                broken: &mut self.broken,
                track: &mut self.track,
                sink,
            },
            &mut self.parked,
        )
    }

    fn pace(&self) -> Pace {
        if self.line.is_some() {
            self.wait.pace_shared()
        } else {
            Pace::Poll
        }
    }

    /// The next message, copied into `buf` (resized to fit); returns its number.
    /// Waits as long as it takes.
    ///
    /// [`Error::Lagged`] says how many messages were missed; the next call goes on from
    /// the oldest message still there. [`Error::Closed`] means the publisher closed and
    /// everything it published was read; the subscriber stays joined, and if a new
    /// publisher takes over, the next call receives its messages (so a subscriber that
    /// should follow publishers across restarts calls `recv` again after `Closed`).
    ///
    /// # Errors
    /// [`Error::Lagged`], [`Error::Closed`], [`Error::PeerDied`] (the publisher's process
    /// died, also an unreaped one or one that appeared after the wait began, and
    /// everything it published was read), [`Error::Evicted`], [`Error::Truncated`],
    /// [`Error::Corrupt`].
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        self.recv_impl(buf, None)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and [`Error::Timeout`].
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u64, Error> {
        self.recv_impl(buf, Some(timeout))
    }

    /// The next message if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`] when there is none now, and as [`recv`](Self::recv).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, Error> {
        let (mut step, _) = self.step(buf);
        wait::try_once(&mut step, Error::Empty)
    }

    /// The next message, copied once into `buf` (which it must fit), waiting at most
    /// `timeout` (`None`: as long as it takes); returns its number and length. A message
    /// longer than `buf` is [`Error::MessageTooLarge`] and stays for the next call.
    ///
    /// # Errors
    /// [`Error::MessageTooLarge`], [`Error::Timeout`], and as [`recv`](Self::recv).
    pub fn recv_slice(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<(u64, usize), Error> {
        let pace = self.pace();
        let (mut step, _) = self.step_into(Sink::Slice { buf, len: 0 });
        let n = wait::block(&mut step, pace, timeout)?;
        let len = match step.sink {
            Sink::Slice { len, .. } => len,
            Sink::Vec(v) => v.len(),
        };
        Ok((n, len))
    }

    /// The next record, of the broadcast's type.
    ///
    /// # Errors
    /// [`Error::SchemaMismatch`] for another type, and as [`recv`](Self::recv).
    pub fn recv_pod<T: Record>(&mut self) -> Result<T, Error> {
        self.recv_pod_numbered().map(|(_, v)| v)
    }

    /// [`recv_pod`](Self::recv_pod), with the message's number.
    ///
    /// # Errors
    /// As [`recv_pod`](Self::recv_pod).
    pub fn recv_pod_numbered<T: Record>(&mut self) -> Result<(u64, T), Error> {
        self.b.check_schema::<T>()?;
        let mut buf = Vec::with_capacity(std::mem::size_of::<T>());
        let n = self.recv(&mut buf)?;
        pod_of(&buf).map(|v| (n, v))
    }

    fn recv_impl(&mut self, buf: &mut Vec<u8>, timeout: Option<Duration>) -> Result<u64, Error> {
        let pace = self.pace();
        let (mut step, _) = self.step(buf);
        wait::block(&mut step, pace, timeout)
    }

    /// The next message, copied into `buf`, without blocking the thread; completes with
    /// its number (as [`recv`](Self::recv)) or the error that ends the wait. It runs the
    /// same step as `recv`: it spins for the subscriber's spin time, then parks with the
    /// [`reactor`](crate::os::reactor), which wakes it when a message is published, the
    /// publisher closes, dies or is replaced, or it is evicted, and looks at it at least
    /// every [`SLICE`](crate::os::park::SLICE) (a read-only subscriber, which nobody wakes,
    /// is found by that look).
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// # Cancel safety
    /// Cancellation safe: a message is taken only when the future completes; dropping it
    /// pending, or woken but not polled again, loses nothing.
    pub fn recv_async<'a>(&'a mut self, buf: &'a mut Vec<u8>) -> SubscriberRecv<'a, M> {
        SubscriberRecv { sub: self, buf }
    }

    /// The next record, without blocking the thread ([`recv_pod`](Self::recv_pod)).
    ///
    /// # Errors
    /// As [`recv_pod`](Self::recv_pod).
    ///
    /// # Cancel safety
    /// As [`recv_async`](Self::recv_async).
    pub async fn recv_pod_async<T: Record>(&mut self) -> Result<T, Error> {
        self.b.check_schema::<T>()?;
        let mut buf = Vec::with_capacity(std::mem::size_of::<T>());
        self.recv_async(&mut buf).await?;
        pod_of(&buf)
    }

    fn unpark(&mut self) {
        if self.owner.forked() {
            return; // the reactor and its registrations are the parent's
        }
        let mut none = Vec::new();
        let (mut step, parked) = self.step(&mut none);
        parked.release(&mut step);
    }
}

/// A record out of a message of the record's size.
fn pod_of<T: Record>(buf: &[u8]) -> Result<T, Error> {
    if buf.len() != std::mem::size_of::<T>() {
        return Err(Error::Corrupt {
            what: "a record message's length",
            found: buf.len() as u64,
        });
    }
    Ok(bytemuck::pod_read_unaligned(buf))
}

impl<M: SharedMemory> Drop for Subscriber<M> {
    fn drop(&mut self) {
        if self.owner.forked() {
            // A forked child's copy: the line is the parent's.
            return;
        }
        self.unpark();
        let Some(i) = self.line else { return };
        let m = self.b.member(i);
        // Leave only a line that is still ours (an evicted line we keep until now).
        if m.pid.load(Ordering::Relaxed) != self.owner.pid() {
            return;
        }
        // Release: pairs with the publisher's Acquire state load in `rescan`.
        m.state.store(LEFT, Ordering::Release);
        // Release: pairs with the Acquire pid loads of the next claimer and the publisher.
        m.pid.store(0, Ordering::Release);
        // The publisher may be waiting on us: let it look again.
        let ctl = self.b.control();
        if ctl.publisher_sleeping.load(Ordering::Relaxed) != 0 {
            wake_publisher(ctl);
        }
    }
}

/// The future of [`Subscriber::recv_async`].
pub struct SubscriberRecv<'a, M: SharedMemory> {
    sub: &'a mut Subscriber<M>,
    buf: &'a mut Vec<u8>,
}

impl<M: SharedMemory> std::future::Future for SubscriberRecv<'_, M> {
    type Output = Result<u64, Error>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let spin = this.sub.wait.async_spin();
        let (mut step, parked) = this.sub.step(this.buf);
        wait::poll_step(&mut step, parked, spin, cx)
    }
}

impl<M: SharedMemory> Drop for SubscriberRecv<'_, M> {
    fn drop(&mut self) {
        self.sub.unpark();
    }
}

impl<M: SharedMemory> std::fmt::Debug for Broadcast<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("config", &self.cfg)
            .field("raw", &*self.seg)
            .finish()
    }
}

impl<M: SharedMemory> std::fmt::Debug for Publisher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("next", &self.next)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for Subscriber<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("line", &self.line)
            .field("next", &self.next)
            .field("wait", &self.wait)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for PublishFuture<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishFuture")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<M: SharedMemory> std::fmt::Debug for SubscriberRecv<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberRecv").finish_non_exhaustive()
    }
}
