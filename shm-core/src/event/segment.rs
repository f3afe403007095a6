//! An event segment: create, attach, inspect, and the claims its ends make.

use std::sync::Arc;

use super::layout::*;
use super::options::EventOptions;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};
use crate::format::view::{View, Word32};
use crate::os::proc;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};

fn event_schema() -> Schema {
    Schema::new("event", 1, 0, 8).expect("short name")
}

fn expect(min_payload: u64) -> Expect {
    Expect {
        kind: Kind::Event,
        schema: event_schema(),
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

/// What [`Event::state`] reads: the event's shared state, as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventState {
    /// Ids `0 .. max_ids` can be notified.
    pub max_ids: u32,
    /// Notifier lines.
    pub max_notifiers: u32,
    /// The pid holding the listening end (0: nobody).
    pub listener_pid: u32,
    /// Whether the listener closed its end.
    pub listener_closed: bool,
    /// Waits of the listener that say they sleep now.
    pub sleepers: u32,
    /// The pids holding notifier lines.
    pub notifier_pids: Vec<u32>,
    /// Ids notified and not yet taken by the listener.
    pub pending: Vec<u64>,
}

/// An event segment: payload-free notifications by id, from many notifier processes to
/// one listener (see the [module docs](crate::event)).
pub struct Event<M: SharedMemory> {
    pub(super) seg: Arc<RawSegment<M>>,
    pub(super) max_ids: u32,
    pub(super) max_notifiers: u32,
    pub(super) words: Words,
    /// The payload, cut once (the segment above keeps it mapped).
    pub(super) view: View,
}

/// The listener's words, cut once, checked.
#[derive(Clone, Copy)]
pub(super) struct Words {
    pub(super) holder: Word32,
    pub(super) sleepers: Word32,
    pub(super) seq: Word32,
    pub(super) closed: Word32,
}

impl<M: SharedMemory> Clone for Event<M> {
    fn clone(&self) -> Self {
        Event {
            seg: Arc::clone(&self.seg),
            max_ids: self.max_ids,
            max_notifiers: self.max_notifiers,
            words: self.words,
            view: self.view,
        }
    }
}

impl<M: SharedMemory> Event<M> {
    /// Lays an event into fresh, zeroed memory.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for options out of range, [`Error::ReadOnly`],
    /// [`Error::TooSmall`] (see [`EventOptions::segment_len`]),
    /// [`Error::AlreadyInitialized`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Event, EventOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = EventOptions::new().max_ids(8);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize);
    /// let view = mem.share(); // stands for another process's mapping
    /// let mut listener = Event::create(mem, &opts)?.listener()?;
    /// let mut notifier = Event::attach(view)?.notifier()?;
    /// notifier.notify(3)?;
    /// notifier.notify(5)?;
    /// let ids: Vec<u64> = listener.wait()?.iter().collect();
    /// assert_eq!(ids, [3, 5]);
    /// # Ok(()) }
    /// ```
    pub fn create(mem: M, opts: &EventOptions) -> Result<Self, Error> {
        opts.check()?;
        let need = payload_len(opts.max_ids, opts.max_notifiers) as u64;
        let seg = RawSegment::create(mem, expect(need), |raw| {
            let mut head = [0u8; CONFIG];
            head[..4].copy_from_slice(&opts.max_ids.to_ne_bytes());
            head[4..8].copy_from_slice(&opts.max_notifiers.to_ne_bytes());
            let seal = crate::format::words::seal(&head[..8]);
            head[8..].copy_from_slice(&seal.to_ne_bytes());
            // The payload holds `need` bytes (checked by create); not published yet.
            raw.view().store(0, &head);
        })?;
        Ok(Self::with(Arc::new(seg), opts.max_ids, opts.max_notifiers))
    }

    fn with(seg: Arc<RawSegment<M>>, max_ids: u32, max_notifiers: u32) -> Self {
        let v = seg.view();
        let words = Words {
            holder: v.word32(LISTENER_HOLDER),
            sleepers: v.word32(SLEEPERS),
            seq: v.word32(SEQ),
            closed: v.word32(CLOSED),
        };
        Event {
            seg,
            max_ids,
            max_notifiers,
            words,
            view: v,
        }
    }

    /// Attaches to an event segment, validating the header and the event's layout.
    ///
    /// # Errors
    /// What header validation finds ([`Error::BadMagic`], [`Error::KindMismatch`],
    /// [`Error::CorruptHeader`], [`Error::NotReady`], [`Error::PayloadTooSmall`], ...).
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        let seg = RawSegment::attach(mem, expect(CONFIG as u64), opts)?;
        let mut head = [0u8; CONFIG];
        seg.read_at(0, &mut head)?;
        let max_ids = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes"));
        let max_notifiers = u32::from_ne_bytes(head[4..8].try_into().expect("4 bytes"));
        let seal = u64::from_ne_bytes(head[8..].try_into().expect("8 bytes"));
        if seal != crate::format::words::seal(&head[..8]) {
            return Err(corrupt_header(
                "event config seal",
                seal,
                "the hash of the config words (one was changed after create)",
            ));
        }
        let opts = EventOptions {
            max_ids,
            max_notifiers,
        };
        if opts.check().is_err() {
            return Err(corrupt_header(
                "event config",
                (u64::from(max_ids) << 32) | u64::from(max_notifiers),
                "max_ids 1 to 4096, max_notifiers 1 to 1024",
            ));
        }
        let need = payload_len(max_ids, max_notifiers) as u64;
        if need > seg.payload_len() as u64 {
            return Err(Error::PayloadTooSmall {
                kind: Kind::Event,
                needed: need,
                found: seg.payload_len() as u64,
            });
        }
        Ok(Self::with(Arc::new(seg), max_ids, max_notifiers))
    }

    /// Ids `0 .. max_ids` can be notified.
    pub fn max_ids(&self) -> u32 {
        self.max_ids
    }

    /// How many notifiers may hold ends at once.
    pub fn max_notifiers(&self) -> u32 {
        self.max_notifiers
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.seg
    }

    /// Bitmap word `i` (below `bitmap_words(max_ids)`: attach proved they fit).
    pub(super) fn bitmap(&self, i: usize) -> &AtomicU64 {
        self.view_ref().u64_at(BITMAP + 8 * i)
    }

    /// Notifier line `i` (below `max_notifiers`).
    pub(super) fn line(&self, i: usize) -> &AtomicU32 {
        self.view_ref().u32_at(lines_at(self.max_ids) + 4 * i)
    }

    /// The notifier lines held now, but by `me`: each line and the pid in it.
    pub(super) fn held_lines(&self, me: u32) -> impl Iterator<Item = (&AtomicU32, u32)> {
        (0..self.max_notifiers as usize).filter_map(move |i| {
            let line = self.line(i);
            // Acquire: pairs with the Release of the notifier's claim.
            let pid = line.load(Ordering::Acquire);
            (pid != 0 && pid != me).then_some((line, pid))
        })
    }

    fn view_ref(&self) -> &View {
        &self.view
    }

    /// The number of bitmap words.
    pub(super) fn bitmap_len(&self) -> usize {
        bitmap_words(self.max_ids)
    }

    /// The mask of the ids a bitmap word `i` may carry (bits at or above `max_ids` are
    /// dropped).
    pub(super) fn mask(&self, i: usize) -> u64 {
        let first = 64 * i as u64;
        let left = u64::from(self.max_ids).saturating_sub(first);
        if left >= 64 {
            u64::MAX
        } else {
            (1u64 << left) - 1
        }
    }

    /// Whether `id` was notified and not yet taken by the listener (a look; `false` for an
    /// id at or above `max_ids`). What a notifier that must not merge two notifies of one
    /// id waits on.
    pub fn is_pending(&self, id: u64) -> bool {
        if id >= u64::from(self.max_ids) {
            return false;
        }
        // Acquire: pairs with the listener's swap (and the notifiers' `fetch_or`).
        self.bitmap((id / 64) as usize).load(Ordering::Acquire) & (1 << (id % 64)) != 0
    }

    /// Whether any id is pending now (a look, not a take).
    pub(super) fn any_pending(&self) -> bool {
        // Acquire: pairs with the notifiers' Release `fetch_or`.
        (0..self.bitmap_len()).any(|i| self.bitmap(i).load(Ordering::Acquire) & self.mask(i) != 0)
    }

    /// Reads the event's shared state, for inspection. Every word is checked against its
    /// row of [`WORDS`]: a value no honest end writes is [`Error::Corrupt`].
    ///
    /// # Errors
    /// [`Error::Corrupt`], [`Error::Truncated`].
    pub fn state(&self) -> Result<EventState, Error> {
        let w = &self.words;
        // Relaxed: a snapshot for display; nothing is published through it.
        let listener_pid = w.holder.get().load(Ordering::Relaxed);
        let closed = w.closed.get().load(Ordering::Relaxed);
        let sleepers = w.sleepers.get().load(Ordering::Relaxed);
        let notifier_pids: Vec<u32> = self.held_lines(0).map(|(_, p)| p).collect();
        let mut pending = Vec::new();
        for i in 0..self.bitmap_len() {
            // Relaxed: as above.
            let mut bits = self.bitmap(i).load(Ordering::Relaxed);
            if bits & !self.mask(i) != 0 {
                self.seg.intact()?;
                return Err(Error::Corrupt {
                    what: "the event's bitmap (bits at or above max_ids)",
                    found: bits,
                });
            }
            while bits != 0 {
                pending.push(64 * i as u64 + u64::from(bits.trailing_zeros()));
                bits &= bits - 1;
            }
        }
        let bad_pid = notifier_pids.iter().copied().find(|&p| p > proc::PID_MAX);
        for (what, value, honest) in [
            ("the event's close bits", closed, closed <= LISTENER_CLOSED),
            (
                "the listener holder's pid",
                listener_pid,
                listener_pid <= proc::PID_MAX,
            ),
            ("the event's sleepers", sleepers, sleepers <= MAX_NOTIFIERS),
            (
                "a notifier line's pid",
                bad_pid.unwrap_or(0),
                bad_pid.is_none(),
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
        self.seg.intact()?;
        Ok(EventState {
            max_ids: self.max_ids,
            max_notifiers: self.max_notifiers,
            listener_pid,
            listener_closed: closed & LISTENER_CLOSED != 0,
            sleepers,
            notifier_pids,
            pending,
        })
    }

    /// Wakes the listener's sleeping waits: bump `seq`, then the futex call.
    pub(super) fn wake_listener(&self) {
        // Release: pairs with the Acquire load of `seq` before a sleep.
        self.words.seq.get().fetch_add(1, Ordering::Release);
        crate::os::futex::wake(self.words.seq.get());
    }
}

impl<M: SharedMemory> std::fmt::Debug for Event<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("max_ids", &self.max_ids)
            .field("max_notifiers", &self.max_notifiers)
            .field("raw", &*self.seg)
            .finish()
    }
}
