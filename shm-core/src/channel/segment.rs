//! A channel segment: create, attach, inspect, and the claim every end makes.

use std::sync::Arc;

use super::layout::*;
use super::{options::*, ring::*};
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::schema::{Kind, Schema};
use crate::os::proc::{self};
use crate::protocol::ring::{self, CONSUMER_CLOSED, PRODUCER_CLOSED};
use crate::protocol::sync::Ordering;

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
    pub(super) seg: Arc<RawSegment<M>>,
    pub(super) rings: u32,
    pub(super) cap: u64,
    /// The record schema the header declares ("channel" for messages of any bytes).
    pub(super) schema: Schema,
}

impl<M: SharedMemory> Clone for Channel<M> {
    fn clone(&self) -> Self {
        Channel {
            seg: Arc::clone(&self.seg),
            rings: self.rings,
            cap: self.cap,
            schema: self.schema,
        }
    }
}

/// What a channel's header must say: kind channel, and `schema` (any schema when
/// `any_schema`: an untyped attach reads a channel of records as bytes).
pub(super) fn expect(schema: Schema, min_payload: u64, any_schema: bool) -> Expect {
    Expect {
        kind: Kind::Channel,
        schema,
        min_payload,
        any_schema,
    }
}

pub(super) fn corrupt_header(field: &'static str, found: u64, expected: &'static str) -> Error {
    Error::CorruptHeader {
        field,
        found,
        expected,
    }
}

impl<M: SharedMemory> Channel<M> {
    /// Lays a channel into fresh, zeroed memory.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a capacity that is not a power of two of at least 64
    /// or does not fit the memory, [`Error::ReadOnly`], [`Error::TooSmall`],
    /// [`Error::AlreadyInitialized`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{Channel, ChannelOptions, HeapMemory};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let opts = ChannelOptions::new().capacity(4096);
    /// let mem = HeapMemory::new(opts.segment_len()? as usize); // any backend's memory
    /// let view = mem.share(); // stands for another process's mapping
    /// let chan = Channel::create(mem, &opts)?;
    /// let mut tx = chan.sender(0)?;
    /// let mut rx = Channel::attach(view)?.receiver(0)?;
    /// tx.send(b"ping")?;
    /// assert_eq!(rx.recv()?.to_vec(), b"ping");
    /// # Ok(()) }
    /// ```
    pub fn create(mem: M, opts: &ChannelOptions) -> Result<Self, Error> {
        let rings = opts.rings;
        // The caller's options: `InvalidOption`, as `segment_len` says (not a header's
        // `CorruptHeader`: nothing was read from a segment).
        if !(1..=2).contains(&rings) {
            return Err(Error::InvalidOption {
                option: "channel rings",
                found: rings.into(),
                expected: "1 or 2",
            });
        }
        let payload =
            (mem.len() as u64).saturating_sub(crate::format::layout::PAYLOAD_OFFSET as u64);
        let cap = match opts.capacity {
            Some(c) if c.is_power_of_two() && c >= MIN_CAPACITY => c,
            Some(c) => {
                return Err(Error::InvalidOption {
                    option: "channel capacity",
                    found: c,
                    expected: "a power of two, at least 64",
                })
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
        let schema = match opts.schema {
            Some(s) => s?,
            None => channel_schema(),
        };
        let seg = RawSegment::create(mem, expect(schema, need, false), |raw| {
            let mut head = [0u8; 24];
            head[..4].copy_from_slice(&rings.to_ne_bytes());
            head[8..16].copy_from_slice(&cap.to_ne_bytes());
            let seal = crate::format::words::seal(&head[..16]);
            head[16..].copy_from_slice(&seal.to_ne_bytes());
            // The payload holds `need` bytes (checked by create), the 128-byte channel
            // header at its start included; the segment is not published yet.
            raw.view().store(0, &head);
        })?;
        Ok(Channel {
            seg: Arc::new(seg),
            rings,
            cap,
            schema,
        })
    }

    /// Attaches to a channel segment, validating the header and the channel's layout.
    /// A channel of records is read as bytes here; [`attach_record`](Self::attach_record)
    /// checks the type.
    ///
    /// # Errors
    /// What header validation finds ([`Error::BadMagic`], [`Error::KindMismatch`],
    /// [`Error::CorruptHeader`], [`Error::NotReady`], ...).
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// Attaches to a channel of records of type `T` (made with
    /// [`ChannelOptions::record`]): a channel of any other type, or of plain bytes, is
    /// [`Error::SchemaMismatch`].
    ///
    /// # Errors
    /// As [`attach`](Self::attach), and [`Error::SchemaMismatch`].
    pub fn attach_record<T: crate::format::record::Record>(mem: M) -> Result<Self, Error> {
        let chan = Self::attach(mem)?;
        chan.check_schema::<T>()?;
        Ok(chan)
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        let seg = RawSegment::attach(mem, expect(channel_schema(), CHANNEL_HEADER, true), opts)?;
        let schema = Schema::from_header(seg.header())?;
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
            schema,
        })
    }

    /// The record schema the header declares (`"channel"` for messages of any bytes).
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// `T` is the channel's record type, or [`Error::SchemaMismatch`].
    pub(super) fn check_schema<T: crate::format::record::Record>(&self) -> Result<(), Error> {
        let mine = Schema::of::<T>()?;
        if mine != self.schema {
            return Err(Error::SchemaMismatch {
                found: self.schema,
                expected: mine,
            });
        }
        Ok(())
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

    pub(super) fn ring(&self, ring: u32) -> Result<RingPtrs, Error> {
        if ring >= self.rings {
            return Err(Error::NoSuchRing {
                ring,
                rings: self.rings,
            });
        }
        Ok(RingPtrs::of(self.seg.view(), ring, self.cap)
            .expect("attach and create proved the payload holds every ring"))
    }

    /// Takes the end of `ring` whose holder word sits at `holder_line + 8`: a
    /// compare-and-swap from 0 (nobody holds it) or from the pid of a dead process, to
    /// ours. Our own pid there means another endpoint of this process holds it: taken.
    pub(super) fn claim(
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
