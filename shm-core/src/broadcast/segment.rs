//! A broadcast segment: its words, create, attach, inspect.

use std::sync::Arc;
use std::time::Duration;

use super::{options::*, publisher::*, receive::*, subscriber::*};
use crate::format::error::Error;
use crate::format::layout::AttachOptions;
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::format::schema::{Kind, Schema};
use crate::format::view::View;
use crate::format::words::{Region, Word};
use crate::os::proc::{self};
use crate::protocol::broadcast::{self as protocol, Control, Slot};
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Owner, Parked, WaitMode};

pub(super) const LINE: u64 = 128;
/// The upstream word in the config line: odd while a relayed stream's source is gone.
pub(super) const UPSTREAM: u64 = 44;
/// The base word in the config line: the first message number ever published (a relay
/// starts at its source's numbering).
pub(super) const BASE: u64 = 48;
// Control lines, grouped by who writes them and how often (see the layout table).
/// Written by the publisher on every message; read by subscribers only when they lag.
pub(super) const TAIL: u64 = LINE;
/// Written rarely (claim, close, join); read every round by both sides.
pub(super) const HOLDER: u64 = 2 * LINE;
pub(super) const CLOSED: u64 = 2 * LINE + 4;
pub(super) const MEMBERS: u64 = 2 * LINE + 8;
/// Written by subscribers that go to sleep, and by the publisher when it wakes them.
pub(super) const SLEEPERS: u64 = 3 * LINE;
pub(super) const DATA_SEQ: u64 = 3 * LINE + 4;
/// Written by the reliable publisher when it sleeps, and by subscribers that wake it.
pub(super) const PUB_SLEEPING: u64 = 4 * LINE;
pub(super) const SPACE_SEQ: u64 = 4 * LINE + 4;
pub(super) const MEMBERS_AT: u64 = 5 * LINE;
pub(super) const SLOT_HEADER: u64 = 16;

/// Wakes every sleeping subscriber: bump `data_seq`, then the futex call.
pub(super) fn wake_subscribers(ctl: Control<'_>) {
    protocol::bump_data(ctl);
    crate::os::futex::wake(ctl.data_seq);
}

/// Wakes the sleeping reliable publisher: bump `space_seq`, then the futex call.
pub(super) fn wake_publisher(ctl: Control<'_>) {
    protocol::bump_space(ctl);
    crate::os::futex::wake(ctl.space_seq);
}

pub(super) const CREATOR_WORD: &str = "the creator, once, before `ready`";
pub(super) const CONFIG_OTHERWISE: &str = "attach refuses the segment (`CorruptHeader`; a valid value that is not the creator's fails the config seal); ends already attached keep what they read at attach";

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

pub(super) const ACTIVE: u32 = 0;
pub(super) const LEFT: u32 = 1;
pub(super) const EVICTED_BEHIND: u32 = 2;
pub(super) const EVICTED_DEAD: u32 = 3;
pub(super) const EVICTED_CORRUPT: u32 = 4;

pub(super) fn eviction_reason(state: u32) -> &'static str {
    match state {
        EVICTED_BEHIND => "it stayed behind longer than the eviction timeout",
        EVICTED_DEAD => "its process died",
        EVICTED_CORRUPT => "it wrote a position no honest subscriber writes",
        _ => "its line was taken over or scribbled on",
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
    pub(super) seg: Arc<RawSegment<M>>,
    pub(super) cfg: Config,
    /// The payload, read once: the `SharedMemory` contract makes it the same for the
    /// mapping's life, and every access to a shared word goes through it.
    pub(super) base: View,
}

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
            // The payload holds `need` bytes, the 64-byte config line included (checked
            // by create); the segment is not published yet.
            raw.view().store(0, &head);
        })?;
        Ok(Self::wrap(seg, cfg))
    }

    pub(super) fn wrap(seg: RawSegment<M>, cfg: Config) -> Self {
        let base = seg.view();
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

    pub(super) fn attach_impl(
        mem: M,
        schema: Option<Schema>,
        opts: &AttachOptions,
    ) -> Result<Self, Error> {
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

    pub(super) fn u64_at(&self, off: u64) -> &AtomicU64 {
        // Every offset passed is a fixed control-word offset or a member/slot word below
        // `payload_len()`, validated at create/attach; the view checks it again.
        self.base.u64_at(off as usize)
    }
    pub(super) fn u32_at(&self, off: u64) -> &AtomicU32 {
        self.base.u32_at(off as usize)
    }
    pub(super) fn control(&self) -> Control<'_> {
        Control {
            tail: self.u64_at(TAIL),
            data_seq: self.u32_at(DATA_SEQ),
            sleepers: self.u32_at(SLEEPERS),
            space_seq: self.u32_at(SPACE_SEQ),
            publisher_sleeping: self.u32_at(PUB_SLEEPING),
            members: self.u32_at(MEMBERS),
        }
    }
    pub(super) fn slot_off(&self, n: u64) -> u64 {
        self.cfg.slots_at() + (n & (self.cfg.slots - 1)) * self.cfg.slot_size
    }
    pub(super) fn slot(&self, n: u64) -> Slot<'_> {
        let off = self.slot_off(n);
        Slot {
            stamp: self.u64_at(off),
            len: self.u64_at(off + 8),
        }
    }
    /// The payload bytes of message `n`'s slot (`max_message` bytes after its header).
    pub(super) fn payload_of(&self, n: u64) -> View {
        self.base
            .sub(
                (self.slot_off(n) + SLOT_HEADER) as usize,
                self.cfg.max_message as usize,
            )
            .expect("create/attach proved every slot lies inside the payload")
    }
    pub(super) fn member(&self, i: u32) -> Member<'_> {
        let off = MEMBERS_AT + LINE * u64::from(i);
        Member {
            pid: self.u32_at(off),
            state: self.u32_at(off + 4),
            position: self.u64_at(off + 8),
        }
    }
    pub(super) fn holder(&self) -> &AtomicU32 {
        self.u32_at(HOLDER)
    }
    pub(super) fn closed(&self) -> &AtomicU32 {
        self.u32_at(CLOSED)
    }
    pub(super) fn upstream(&self) -> &AtomicU32 {
        self.u32_at(UPSTREAM)
    }
    /// The first message number (0 unless a relay started at its source's numbering),
    /// never above `MAX_TAIL`.
    pub(super) fn base(&self) -> u64 {
        // Acquire: pairs with the Release store in `Publisher::start_at`.
        self.u64_at(BASE)
            .load(Ordering::Acquire)
            .min(protocol::MAX_TAIL)
    }

    pub(super) fn new_subscriber(&self, line: Option<u32>, next: u64, batch: u64) -> Subscriber<M> {
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

    pub(super) fn check_schema<T: Record>(&self) -> Result<(), Error> {
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

impl<M: SharedMemory> std::fmt::Debug for Broadcast<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("config", &self.cfg)
            .field("raw", &*self.seg)
            .finish()
    }
}
