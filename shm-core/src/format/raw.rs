//! [`RawSegment`]: validated memory with a header, and bounds-checked byte access to its
//! payload. The typed layers ([`crate::format::record::Segment`], [`crate::SeqLock`], the channel) are
//! built on it.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{
    self, AttachOptions, Expect, Header, HEADER_SIZE, MAGIC, READY, READY_OFFSET,
};
use crate::format::memory::SharedMemory;
use crate::format::schema::{Kind, Schema};
use crate::format::view::View;
use crate::os::proc::{self, Liveness};

/// Shared memory whose header has been written (by `create`) or validated (by `attach`),
/// or memory with no header at all ([`foreign`](Self::foreign)).
///
/// Holds the header snapshot it validated; the header in the memory is never read again,
/// so a peer changing it later cannot move our bounds.
pub struct RawSegment<M: SharedMemory> {
    mem: M,
    header: Header,
    /// `mem.writable()`, read once: a mapping's protection does not change under us.
    /// The one write gate ([`check_writable`](Self::check_writable)) reads it.
    writable: bool,
}

impl<M: SharedMemory> RawSegment<M> {
    /// Lays a header for `expect` into fresh memory, lets `init` fill the payload, then
    /// publishes the segment (stores `ready`).
    pub(crate) fn create(mem: M, expect: Expect, init: impl FnOnce(&Self)) -> Result<Self, Error> {
        if !mem.writable() {
            return Err(Error::ReadOnly {
                what: "creating a segment",
            });
        }
        let len = mem.len() as u64;
        layout::check_fits(len, &expect)?;
        // The memory must be fresh: a non-zero magic or ready word means someone already
        // laid a segment here, and writing over it would corrupt their data.
        let mut head = [0u8; HEADER_SIZE];
        // SAFETY: `check_fits` proved the memory holds at least the header.
        unsafe { copy::load_bytes(mem.as_ptr(), &mut head) };
        if head[..8] != [0u8; 8] || head[READY_OFFSET..READY_OFFSET + 4] != [0u8; 4] {
            return Err(Error::AlreadyInitialized);
        }
        let header = layout::build_header(len, &expect, proc::current_pid());
        // SAFETY: the memory holds at least HEADER_SIZE bytes (`check_fits`).
        unsafe { copy::store_pod(mem.as_ptr(), &header, Ordering::Relaxed) };
        let seg = RawSegment {
            mem,
            header,
            writable: true,
        };
        init(&seg);
        // Release: pairs with the Acquire load of `ready` in `attach`, so an opener that
        // sees READY also sees every header and payload byte written above.
        seg.ready_word()
            .store(ready_word_value(READY), Ordering::Release);
        let mut published = seg.header;
        published.ready = READY;
        Ok(RawSegment {
            header: published,
            ..seg
        })
    }

    /// Waits (bounded) for the segment to be ready, then validates one snapshot of its
    /// header against `expect`.
    pub(crate) fn attach(mem: M, expect: Expect, opts: &AttachOptions) -> Result<Self, Error> {
        let mapped = mem.len() as u64;
        if mapped < HEADER_SIZE as u64 {
            return Err(Error::TooSmall {
                needed: HEADER_SIZE as u64,
                found: mapped,
            });
        }
        let mut wait = ReadyWait::new(opts.ready_timeout);
        // When to ask again whether another handle holds the memory (see below).
        let mut next_ask = Duration::ZERO;
        let header = loop {
            // SAFETY: the mapping holds at least the header (checked above), and READY_OFFSET
            // is 8-aligned within the 64-aligned base.
            let ready_word = unsafe { ready_word(&mem) };
            // Acquire: pairs with the creator's Release store of READY in `create`.
            let ready = ready_of(ready_word.load(Ordering::Acquire));
            // SAFETY: as above; the snapshot is a private copy.
            let snap: Header = unsafe { copy::load_pod(mem.as_ptr(), Ordering::Relaxed) };
            if let Some(now) = mem.truncated() {
                return Err(Error::Truncated {
                    claimed: mapped,
                    mapped: now,
                });
            }
            if snap.magic != MAGIC && snap.magic != [0; 8] {
                return Err(Error::BadMagic {
                    expected: MAGIC,
                    found: snap.magic,
                });
            }
            if ready == READY {
                break snap;
            }
            if ready != 0 {
                return Err(Error::CorruptHeader {
                    field: "ready",
                    found: ready.into(),
                    expected: "0 (initialising) or 0x52454459 (ready)",
                });
            }
            // No header at all and no other handle: a creator of ours holds its handle
            // while it writes the header, so none is coming. Asked at the start and again
            // every `ASK_EVERY` while the answer is "held" or "cannot tell": one wrong
            // answer (a holder that has just let go) costs a few milliseconds, not the
            // whole ready timeout.
            if snap.magic == [0; 8] && snap.creator_pid == 0 && wait.elapsed() >= next_ask {
                next_ask = wait.elapsed() + ASK_EVERY;
                if mem.held_elsewhere() == Some(false) {
                    return Err(Error::BadMagic {
                        expected: MAGIC,
                        found: snap.magic,
                    });
                }
            }
            wait.pause(snap.creator_pid)?;
        };
        layout::validate(&header, mapped, &expect)?;
        Ok(Self::wrap(mem, header))
    }

    /// A record segment whose type is described at run time (a record defined in another
    /// language): lays the header for `schema` into fresh, zeroed memory and copies
    /// `initial` (exactly `schema.size()` bytes) into the payload. The header is the one
    /// [`Segment::create`](crate::format::record::Segment::create) writes for a Rust type
    /// of the same name, version, size and alignment, so either side can attach.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `initial` is not the schema's size, and as
    /// [`Segment::create`](crate::format::record::Segment::create).
    pub fn create_record(mem: M, schema: Schema, initial: &[u8]) -> Result<Self, Error> {
        if initial.len() as u64 != schema.size() {
            return Err(Error::InvalidOption {
                option: "initial record length",
                found: initial.len() as u64,
                expected: "exactly the schema's size",
            });
        }
        let expect = Expect {
            kind: Kind::Record,
            schema,
            min_payload: schema.size(),
            any_schema: false,
        };
        Self::create(mem, expect, |raw| {
            // SAFETY: `check_fits` made room for the record at the payload start; the
            // segment is not published yet.
            unsafe { copy::store_bytes(raw.payload_ptr(), initial) }
        })
    }

    /// Attaches to a record segment, checking its header against `schema` exactly as
    /// [`Segment::attach`](crate::format::record::Segment::attach) checks a Rust type's.
    ///
    /// # Errors
    /// As [`Segment::attach`](crate::format::record::Segment::attach).
    pub fn attach_record(mem: M, schema: Schema) -> Result<Self, Error> {
        let expect = Expect {
            kind: Kind::Record,
            schema,
            min_payload: schema.size(),
            any_schema: false,
        };
        Self::attach(mem, expect, &AttachOptions::default())
    }

    /// Memory with no header: a segment made by a program that does not speak this
    /// layout (the tutorial's Go and C programs, Python's `multiprocessing.shared_memory`).
    /// The payload is the whole mapping, from offset 0.
    ///
    /// Nothing can be validated: no magic, no type, no version. Access stays bounded by
    /// the mapping's length and by copy, so it is sound whatever the bytes are; whether
    /// they mean what the caller thinks is the caller's business. [`header`](Self::header)
    /// returns a description made up for the mapping (magic and kind 0, payload offset 0),
    /// not bytes read from it.
    pub fn foreign(mem: M) -> Self {
        let len = mem.len() as u64;
        let header = Header {
            segment_size: len,
            payload_len: len,
            ..bytemuck::Zeroable::zeroed()
        };
        Self::wrap(mem, header)
    }

    fn wrap(mem: M, header: Header) -> Self {
        let writable = mem.writable();
        RawSegment {
            mem,
            header,
            writable,
        }
    }

    /// Whether the mapping is writable here ([`SharedMemory::writable`]).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The one write gate: every operation of this crate that writes to the segment
    /// passes it first, so that no safe call writes through a read-only mapping (which
    /// would be a SIGSEGV). [`Error::ReadOnly`] naming `what` on a read-only mapping.
    pub fn check_writable(&self, what: &'static str) -> Result<(), Error> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnly { what })
        }
    }

    /// Whether this segment has no header (made by [`foreign`](Self::foreign)).
    pub fn is_foreign(&self) -> bool {
        self.header.magic != MAGIC
    }

    fn ready_word(&self) -> &AtomicU64 {
        // SAFETY: the memory holds the header (create/attach checked).
        unsafe { ready_word(&self.mem) }
    }

    /// `Err(Truncated)` once the backend caught a fault on pages a peer truncated away
    /// (see [`SharedMemory::truncated`]); every access checks it after copying.
    pub fn intact(&self) -> Result<(), Error> {
        match self.mem.truncated() {
            None => Ok(()),
            Some(now) => Err(Error::Truncated {
                claimed: self.header.segment_size,
                mapped: now,
            }),
        }
    }

    /// The header snapshot this handle validated (or wrote).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload's length in bytes.
    pub fn payload_len(&self) -> usize {
        // Validated to fit in the mapping, which fits in usize.
        self.header.payload_len as usize
    }

    /// The payload's base address (64-byte aligned). Hand it only to atomic or volatile
    /// accesses; see [`SharedMemory`].
    pub fn payload_ptr(&self) -> *mut u8 {
        // SAFETY: the validated payload offset lies within the mapping.
        unsafe { self.mem.as_ptr().add(self.header.payload_offset as usize) }
    }

    /// The payload as a checked [`View`]: how the families reach their words and bytes.
    pub(crate) fn view(&self) -> View {
        // SAFETY: the payload lies within the mapping (validated), is 64-aligned, and the
        // mapping lives as long as `self`; the views' holders keep `self` alive.
        unsafe { View::new(self.payload_ptr(), self.payload_len()) }
    }

    /// The memory behind the segment.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.mem
    }

    pub(crate) fn check_range(&self, offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= self.payload_len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                payload_len: self.payload_len() as u64,
            }),
        }
    }

    /// The 8-byte word at payload `offset` as an atomic, for counters and flags shared with
    /// other processes. `offset` must be a multiple of 8 and the word inside the payload.
    ///
    /// A reference to an atomic is sound for memory that others write: atomics are
    /// interior-mutable, and every access through it is an atomic instruction. It can be
    /// stored through, so a read-only mapping gets [`Error::ReadOnly`]; read a word there
    /// with [`load_u64`](Self::load_u64).
    pub fn atomic_u64(&self, offset: usize) -> Result<&core::sync::atomic::AtomicU64, Error> {
        self.check_writable("an atomic word (it can be stored through)")?;
        self.word(offset)
    }

    /// An atomic load of the 8-byte word at payload `offset` (a multiple of 8, inside the
    /// payload); works on read-only mappings too.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> Result<u64, Error> {
        let v = self.word(offset)?.load(order);
        self.intact().map(|()| v)
    }

    fn word(&self, offset: usize) -> Result<&AtomicU64, Error> {
        self.check_range(offset, 8)?;
        if !offset.is_multiple_of(8) {
            return Err(Error::Misaligned {
                offset: offset as u64,
                align: 8,
            });
        }
        // SAFETY: the word lies within the payload (checked) and is 8-aligned (the payload is
        // 64-aligned and `offset` a multiple of 8); it lives as long as `self` borrows `mem`.
        Ok(unsafe { &*self.payload_ptr().add(offset).cast::<AtomicU64>() })
    }

    /// Copies `buf.len()` payload bytes at `offset` into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range lies within the payload (checked), which lies within the mapping.
        unsafe { copy::load_bytes(self.payload_ptr().add(offset), buf) };
        self.intact()
    }

    /// Copies `bytes` into the payload at `offset`.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> Result<(), Error> {
        self.check_writable("writing to the payload")?;
        self.check_range(offset, bytes.len())?;
        // SAFETY: the range lies within the payload (checked), which lies within the mapping.
        unsafe { copy::store_bytes(self.payload_ptr().add(offset), bytes) };
        self.intact()
    }
}

/// The 8-byte header word that holds `ready` (and `reserved`). It is accessed as one
/// 8-byte atomic, the size at which the header snapshot copies it, so no access to those
/// bytes ever mixes sizes.
///
/// # Safety
/// `mem` must hold at least the header.
unsafe fn ready_word<M: SharedMemory>(mem: &M) -> &AtomicU64 {
    // SAFETY: READY_OFFSET (120) is 8-aligned in the 64-aligned base and inside the header
    // (caller); an atomic may alias memory that other processes write.
    unsafe { AtomicU64::from_ptr(mem.as_ptr().add(READY_OFFSET).cast()) }
}

/// The word value whose `ready` half is `ready` and whose `reserved` half is 0.
fn ready_word_value(ready: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&ready.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// The `ready` half of the word.
fn ready_of(word: u64) -> u32 {
    u32::from_ne_bytes(word.to_ne_bytes()[..4].try_into().expect("4 bytes"))
}

/// Attach's wait for `ready`: a bounded poll (nobody wakes an attacher), with naps from
/// 10 µs doubling up to 1 ms, that ends early when the creator is dead. The segment's
/// truncation is checked by the loop around it, at every look. (The endpoint waits run on
/// [`crate::wait::Waiter`]; this one sits below that layer and needs none of its pacing.)
struct ReadyWait {
    start: Instant,
    timeout: Duration,
    nap: Duration,
    last_check: Duration,
}

/// How often a wait for a header-less segment asks again whether another handle holds
/// the memory ([`SharedMemory::held_elsewhere`]).
const ASK_EVERY: Duration = Duration::from_millis(10);

impl ReadyWait {
    /// How long since the wait began.
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn new(timeout: Duration) -> Self {
        ReadyWait {
            start: Instant::now(),
            timeout,
            nap: Duration::from_micros(10),
            last_check: Duration::ZERO,
        }
    }

    /// Naps once, or ends the wait: [`Error::CreatorDied`] when `creator_pid` (read from
    /// the header's latest snapshot; 0 while not yet recorded) is a dead process,
    /// [`Error::NotReady`] at the deadline.
    fn pause(&mut self, creator_pid: u32) -> Result<(), Error> {
        let waited = self.start.elapsed();
        // The liveness system call once a millisecond, and at the deadline.
        if waited >= self.timeout
            || waited.saturating_sub(self.last_check) >= Duration::from_millis(1)
        {
            self.last_check = waited;
            if proc::liveness(creator_pid) == Liveness::Dead {
                return Err(Error::CreatorDied { pid: creator_pid });
            }
        }
        if waited >= self.timeout {
            return Err(Error::NotReady {
                waited,
                creator_pid,
            });
        }
        std::thread::sleep(self.nap.min(self.timeout - waited));
        self.nap = (self.nap * 2).min(Duration::from_millis(1));
        Ok(())
    }
}

impl<M: SharedMemory> std::fmt::Debug for RawSegment<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSegment")
            .field("backend", &self.mem.backend())
            .field("len", &self.mem.len())
            .field("header", &self.header)
            .finish()
    }
}
