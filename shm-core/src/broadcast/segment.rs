//! A broadcast segment: its words, create, attach, inspect.

use std::sync::Arc;
use std::time::Duration;

use super::layout::*;
use super::options::*;
use crate::format::error::Error;
use crate::format::layout::AttachOptions;
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::format::schema::{Kind, Schema};
use crate::format::view::{Block, Entry, Lines, Table, View, Word32};
use crate::os::proc::{self};
use crate::protocol::broadcast::{self as protocol, Control, Slot};
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

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
    /// The control words every message touches, checked once.
    pub(super) words: CtlWords,
    /// The slots, checked once.
    pub(super) slots: Table,
    /// The subscriber lines, checked once.
    pub(super) lines: Lines,
}

/// The control words of [`Control`] and the ones beside them that every publish or
/// receive reads: the control lines cut from the payload once as a [`Block`], so each
/// word is one fixed offset from one base address.
#[derive(Clone, Copy)]
pub(super) struct CtlWords {
    block: Block<{ MEMBERS_AT as usize }>,
    /// The subscribers' futex word, as a handle for wait registrations.
    data_seq: Word32,
}

impl CtlWords {
    fn of(v: &View) -> CtlWords {
        CtlWords {
            block: v
                .block()
                .expect("create/attach proved the control lines fit the payload"),
            data_seq: v.word32(DATA_SEQ as usize),
        }
    }
    #[inline(always)]
    fn w64<const OFF: usize>(&self) -> &AtomicU64 {
        self.block.u64_at::<OFF>()
    }
    #[inline(always)]
    fn w32<const OFF: usize>(&self) -> &AtomicU32 {
        self.block.u32_at::<OFF>()
    }
}

impl<M: SharedMemory> Clone for Broadcast<M> {
    fn clone(&self) -> Self {
        Broadcast {
            seg: Arc::clone(&self.seg),
            cfg: self.cfg,
            base: self.base,
            words: self.words,
            slots: self.slots,
            lines: self.lines,
        }
    }
}

impl<M: SharedMemory> Broadcast<M> {
    /// Lays a broadcast into fresh, zeroed memory.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for options out of range, [`Error::ReadOnly`],
    /// [`Error::TooSmall`], [`Error::AlreadyInitialized`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Broadcast, BroadcastMode, BroadcastOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = BroadcastOptions::new().mode(BroadcastMode::Lossy).slots(16).max_message(64);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share(); // stands for a subscriber process's mapping
    /// let mut publisher = Broadcast::create(mem, &opts)?.publisher()?;
    /// let mut sub = Broadcast::attach(view)?.subscriber()?;
    /// publisher.publish(b"frame 0")?;
    /// let mut buf = Vec::new();
    /// sub.recv_into(&mut buf)?;
    /// assert_eq!(buf, b"frame 0");
    /// # Ok(()) }
    /// ```
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

    /// The broadcast over a segment whose payload holds `cfg`'s layout (create and
    /// attach checked `cfg.payload_len()` against it).
    pub(super) fn wrap(seg: RawSegment<M>, cfg: Config) -> Self {
        let base = seg.view();
        let slots = Table::new(
            &base,
            cfg.slots_at() as usize,
            cfg.slot_size as usize,
            cfg.slots,
            cfg.slot_size as usize,
        )
        .expect("create/attach proved the slots fit the payload");
        let lines = Lines::new(
            &base,
            MEMBERS_AT as usize,
            LINE as usize,
            cfg.max_subscribers as usize,
        )
        .expect("the lines lie before the slots");
        Broadcast {
            seg: Arc::new(seg),
            cfg,
            words: CtlWords::of(&base),
            base,
            slots,
            lines,
        }
    }

    /// Attaches to a broadcast of any record type (messages as bytes), validating the
    /// header and the broadcast's layout.
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_impl(mem, None, &AttachOptions::default())
    }

    /// Attaches to a broadcast of records of type `T`: a broadcast of any other type is
    /// [`Error::SchemaMismatch`].
    pub fn attach_record<T: Record>(mem: M) -> Result<Self, Error> {
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
    #[inline(always)]
    pub(super) fn control(&self) -> Control<'_> {
        let w = &self.words;
        Control {
            tail: w.w64::<{ TAIL as usize }>(),
            data_seq: w.w32::<{ DATA_SEQ as usize }>(),
            sleepers: w.w32::<{ SLEEPERS as usize }>(),
            space_seq: w.w32::<{ SPACE_SEQ as usize }>(),
            publisher_sleeping: w.w32::<{ PUB_SLEEPING as usize }>(),
            members: w.w32::<{ MEMBERS as usize }>(),
        }
    }
    #[inline(always)]
    pub(super) fn slot(&self, n: u64) -> Slot<'_> {
        let (stamp, len) = self.slots.head_words(n);
        Slot { stamp, len }
    }
    /// Message `n`'s whole slot: its 16-byte header, then `max_message` payload bytes
    /// from [`SLOT_HEADER`] on (`slot_size` holds both: create and attach checked it).
    #[inline(always)]
    pub(super) fn slot_view(&self, n: u64) -> View {
        self.slots.entry(n)
    }
    /// Message `n`'s slot: its stamp and length words, and its payload (from
    /// [`SLOT_HEADER`] on, `max_message` bytes; create and attach checked that
    /// `slot_size` holds both), reached from one address.
    #[inline(always)]
    pub(super) fn slot_entry(&self, n: u64) -> (Slot<'_>, Entry<'_>) {
        let e = self.slots.at(n);
        let (stamp, len) = e.head_words();
        (Slot { stamp, len }, e)
    }
    #[inline(always)]
    pub(super) fn member(&self, i: u32) -> Member<'_> {
        let (pid, state, position) = self.lines.head_words(i as usize);
        Member {
            pid,
            state,
            position,
        }
    }
    #[inline(always)]
    pub(super) fn holder(&self) -> &AtomicU32 {
        self.words.w32::<{ HOLDER as usize }>()
    }
    /// The futex word subscribers sleep on, as a checked handle.
    pub(super) fn data_seq_word(&self) -> Word32 {
        self.words.data_seq
    }
    #[inline(always)]
    pub(super) fn closed(&self) -> &AtomicU32 {
        self.words.w32::<{ CLOSED as usize }>()
    }
    #[inline(always)]
    pub(super) fn upstream(&self) -> &AtomicU32 {
        self.words.w32::<{ UPSTREAM as usize }>()
    }
    /// The first message number (0 unless a relay started at its source's numbering),
    /// never above `MAX_TAIL`.
    pub(super) fn base(&self) -> u64 {
        // Acquire: pairs with the Release store in `Publisher::start_at`.
        self.words
            .w64::<{ BASE as usize }>()
            .load(Ordering::Acquire)
            .min(protocol::MAX_TAIL)
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
