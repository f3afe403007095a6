//! The public half of the seqlock: [`SeqLock`] (and [`RawSeqLock`], its record as bytes
//! for types described at run time) over any [`SharedMemory`]; the protocol is
//! in [`crate::protocol::seqlock`].
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::time::Duration;

use crate::format::copy;
use crate::format::error::Error;
use crate::format::layout::{AttachOptions, Expect};
use crate::format::memory::SharedMemory;
use crate::format::raw::RawSegment;
use crate::format::record::Record;
use crate::format::schema::{Kind, Schema};
use crate::os::proc::{self, Liveness};
use crate::protocol::seqlock as protocol;
use crate::protocol::sync::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{Pace, Sleeper, Waiter};

/// Offset of the record within the seqlock payload.
pub const DATA_OFFSET: usize = 64;
const OWNER_OFFSET: usize = 8;

use crate::format::words::{Region, Word};

/// Every word of a seqlock's payload that another process can write (see
/// [`crate::format::words`]); the record's bytes after them are data, any bit pattern
/// of which is a valid record.
pub const WORDS: &[Word] = &[
    Word { name: "sequence", region: Region::Payload, offset: 0, width: 8, writer: "the writer holding the lock", honest: "even when idle, odd while a write is under way; grows by 2 per store", otherwise: "a reader keeps a copy only when both loads of the sequence are equal and even; a sequence that stays odd is `WriterDied` (owner dead or impossible) or `WriterStuck` (past the writer timeout), and the next store takes the lock over and repairs it" },
    Word { name: "owner", region: Region::Payload, offset: 8, width: 4, writer: "the writer (its pid while it holds the lock, 0 after)", honest: "a live pid, or 0", otherwise: "a dead or impossible pid is a free lock: the next store takes it over; a live pid with no write under way (the sequence even and still for half the writer timeout) is taken over too; a live pid with the sequence odd past the writer timeout is `WriterStuck`" },
];

/// A record behind a seqlock, in a segment of kind [`Kind::SeqLock`].
pub struct SeqLock<T: Record, M: SharedMemory> {
    core: RawSeqLock<M>,
    _record: PhantomData<fn() -> T>,
}

/// A seqlock record whose type is described at run time (a record defined in another
/// language): the same segment and protocol as [`SeqLock`], with the record as bytes.
/// `SeqLock<T>` is this plus the type.
pub struct RawSeqLock<M: SharedMemory> {
    raw: RawSegment<M>,
    writer_timeout: Duration,
    /// The record's size in bytes.
    size: usize,
}

fn expect_schema(schema: Schema) -> Expect {
    Expect {
        kind: Kind::SeqLock,
        schema,
        min_payload: (DATA_OFFSET as u64).saturating_add(schema.size().div_ceil(8) * 8),
        any_schema: false,
    }
}

impl<M: SharedMemory> RawSeqLock<M> {
    /// Lays out a new seqlock segment for `schema` holding `initial` (exactly
    /// `schema.size()` bytes).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `initial` is not the schema's size; as
    /// [`SeqLock::create`].
    pub fn create(mem: M, schema: Schema, initial: &[u8]) -> Result<Self, Error> {
        if initial.len() as u64 != schema.size() {
            return Err(Error::InvalidOption {
                option: "initial record length",
                found: initial.len() as u64,
                expected: "exactly the schema's size",
            });
        }
        let raw = RawSegment::create(mem, expect_schema(schema), |raw| {
            // SAFETY: `check_fits` made room for DATA_OFFSET + the record; the segment is
            // not published yet, and the sequence (0, zeroed memory) is even.
            unsafe { copy::store_bytes(raw.payload_ptr().add(DATA_OFFSET), initial) }
        })?;
        Ok(Self::wrap(
            raw,
            &AttachOptions::default(),
            schema.size() as usize,
        ))
    }

    /// Attaches to a seqlock segment, checking its schema against `schema` exactly as
    /// [`SeqLock::attach`] checks a Rust type's.
    ///
    /// # Errors
    /// As [`SeqLock::attach`].
    pub fn attach(mem: M, schema: Schema, opts: &AttachOptions) -> Result<Self, Error> {
        let raw = RawSegment::attach(mem, expect_schema(schema), opts)?;
        Ok(Self::wrap(raw, opts, schema.size() as usize))
    }

    fn wrap(raw: RawSegment<M>, opts: &AttachOptions, size: usize) -> Self {
        RawSeqLock {
            raw,
            writer_timeout: opts.writer_timeout,
            size,
        }
    }

    /// The record's size in bytes.
    pub fn record_len(&self) -> usize {
        self.size
    }

    fn seq(&self) -> &AtomicU64 {
        // SAFETY: the payload is 64-aligned and holds DATA_OFFSET + the record (validated);
        // the sequence word at its start is only ever accessed atomically.
        unsafe { &*self.raw.payload_ptr().cast::<AtomicU64>() }
    }

    fn owner(&self) -> &AtomicU32 {
        // SAFETY: as in `seq`; offset 8 is 4-aligned and inside the payload.
        unsafe { &*self.raw.payload_ptr().add(OWNER_OFFSET).cast::<AtomicU32>() }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: DATA_OFFSET lies within the validated payload.
        unsafe { self.raw.payload_ptr().add(DATA_OFFSET) }
    }

    /// A consistent copy made by `copy_out` (which reads the record's bytes at the
    /// pointer it is given, with `Acquire` loads), retrying while writes overlap; and how
    /// many attempts were thrown away.
    fn load_with<R>(&self, copy_out: impl Fn(*const u8) -> R) -> Result<(R, u64), Error> {
        let mut retries = 0u64;
        // The clock starts at the first failed attempt: an uncontended load reads none.
        let mut w: Option<Waiter> = None;
        loop {
            match protocol::read(self.seq(), || copy_out(self.data())) {
                Ok(v) => {
                    self.raw.intact()?;
                    return Ok((v, retries));
                }
                Err(_) => {
                    retries += 1;
                    let w =
                        w.get_or_insert_with(|| Waiter::new(Pace::Poll, Some(self.writer_timeout)));
                    w.pause(&mut ReaderChecks { lock: self })
                        .map_err(|e| self.waited(e))?;
                }
            }
        }
    }

    /// A consistent copy of the record into `buf` (exactly the record's size); returns
    /// how many attempts were thrown away because a write overlapped them.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a buffer of another size; [`Error::WriterDied`],
    /// [`Error::WriterStuck`], [`Error::Truncated`].
    pub fn load_into(&self, buf: &mut [u8]) -> Result<u64, Error> {
        if buf.len() != self.size {
            return Err(Error::OutOfBounds {
                offset: 0,
                len: buf.len() as u64,
                payload_len: self.size as u64,
            });
        }
        let p = buf.as_mut_ptr();
        let n = buf.len();
        self.load_with(|data| {
            // SAFETY: `p .. p + n` is `buf`, which we hold exclusively for this call; the
            // record's `n` bytes lie within the validated payload; Acquire as the
            // protocol requires.
            unsafe {
                copy::load_bytes_ordered(
                    data,
                    std::slice::from_raw_parts_mut(p, n),
                    Ordering::Acquire,
                )
            }
        })
        .map(|((), r)| r)
    }

    /// Replaces the record with `value` (exactly the record's size); readers see the old
    /// or the new value, never a mix.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] for a value of another size; as [`SeqLock::store`].
    pub fn store(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() != self.size {
            return Err(Error::OutOfBounds {
                offset: 0,
                len: value.len() as u64,
                payload_len: self.size as u64,
            });
        }
        self.store_with(|data| {
            // SAFETY: the record's bytes lie within the validated payload, the lock is
            // ours; Release as the protocol requires.
            unsafe { copy::store_bytes_ordered(data, value, Ordering::Release) }
        })
    }

    /// Takes the lock, lets `write` write the record at the pointer it is given (with
    /// `Release` stores), and unlocks.
    fn store_with(&self, write: impl FnOnce(*mut u8)) -> Result<(), Error> {
        let s = self.lock()?;
        write(self.data());
        protocol::unlock(self.seq(), self.owner(), s);
        self.raw.intact()
    }

    /// A timeout becomes `WriterStuck` with the holder's pid.
    fn waited(&self, e: Error) -> Error {
        match e {
            Error::Timeout { waited } => Error::WriterStuck {
                waited,
                pid: self.owner().load(Ordering::Relaxed),
            },
            e => e,
        }
    }

    /// Takes the write lock, waiting (bounded by the writer timeout) for another writer;
    /// takes it over from a writer that died holding it.
    fn lock(&self) -> Result<u64, Error> {
        self.raw.check_writable("storing a seqlock record")?;
        let me = proc::current_pid();
        let mut w = Waiter::new(Pace::Poll, Some(self.writer_timeout));
        // A holder with no write under way: (its pid, the even sequence it left).
        let mut idle: Option<(u32, u64)> = None;
        loop {
            self.raw.intact()?;
            match protocol::try_lock(self.seq(), self.owner(), me) {
                Ok(s) => return Ok(s),
                Err(holder) if holder != me && proc::liveness(holder) == Liveness::Dead => {
                    if let Ok(s) = protocol::steal(self.seq(), self.owner(), holder, me) {
                        return Ok(s);
                    }
                }
                Err(holder) => {
                    // A lock held with the sequence even and still for half the writer
                    // timeout has no write under way (an honest writer makes the sequence
                    // odd right after taking the owner word): an owner word a peer left
                    // behind. It is taken over, so one scribble cannot stop every store
                    // for good.
                    // Relaxed: compared only; `steal` orders what follows.
                    let seq = self.seq().load(Ordering::Relaxed);
                    if seq & 1 == 1 || idle.is_some_and(|i| i != (holder, seq)) {
                        idle = None;
                    } else if idle.is_none() {
                        idle = Some((holder, seq));
                    } else if w.elapsed() >= self.writer_timeout / 2 {
                        if let Ok(s) = protocol::steal(self.seq(), self.owner(), holder, me) {
                            return Ok(s);
                        }
                    }
                }
            }
            w.pause(&mut WriterChecks { lock: self })
                .map_err(|e| self.waited(e))?;
        }
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        &self.raw
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.raw.into_memory()
    }
}

impl<T: Record, M: SharedMemory> SeqLock<T, M> {
    fn schema() -> Result<Schema, Error> {
        Schema::of::<T>()
    }

    /// Lays out a new seqlock segment in fresh, zeroed memory holding `initial`.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for read-only memory, [`Error::TooSmall`],
    /// [`Error::AlreadyInitialized`].
    ///
    /// # Examples
    /// ```
    /// # use shm_core::{HeapMemory, SeqLock};
    /// # fn main() -> Result<(), shm_core::Error> {
    /// let mem = HeapMemory::new(4096);
    /// let view = mem.share(); // stands for a reader process's mapping
    /// let writer = SeqLock::create(mem, &[0u64; 4])?;
    /// let reader = SeqLock::<[u64; 4], _>::attach(view)?;
    /// writer.store(&[1, 2, 3, 4])?;
    /// assert_eq!(reader.load()?, [1, 2, 3, 4]); // never half old, half new
    /// # Ok(()) }
    /// ```
    pub fn create(mem: M, initial: &T) -> Result<Self, Error> {
        Ok(SeqLock {
            core: RawSeqLock::create(mem, Self::schema()?, bytemuck::bytes_of(initial))?,
            _record: PhantomData,
        })
    }

    /// Attaches to a seqlock segment, validating its header.
    ///
    /// # Errors
    /// As [`Segment::attach`](crate::format::record::Segment::attach).
    pub fn attach(mem: M) -> Result<Self, Error> {
        Self::attach_with(mem, &AttachOptions::default())
    }

    /// [`attach`](Self::attach) with explicit timeouts.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub fn attach_with(mem: M, opts: &AttachOptions) -> Result<Self, Error> {
        Ok(SeqLock {
            core: RawSeqLock::attach(mem, Self::schema()?, opts)?,
            _record: PhantomData,
        })
    }

    fn copy_out(data: *const u8) -> T {
        // SAFETY: the record's bytes lie within the validated payload (the core hands us
        // its data pointer); Acquire as the protocol requires.
        unsafe { copy::load_pod(data, Ordering::Acquire) }
    }

    /// One attempt at a consistent copy: `None` if a write overlapped it.
    pub fn try_load(&self) -> Option<T> {
        protocol::read(self.core.seq(), || Self::copy_out(self.core.data())).ok()
    }

    /// A consistent copy of the record, retrying while writes overlap.
    ///
    /// # Errors
    /// [`Error::WriterDied`] when a writer died inside its write; [`Error::WriterStuck`]
    /// when a live one holds it past the writer timeout; [`Error::Truncated`].
    pub fn load(&self) -> Result<T, Error> {
        self.load_counted().map(|(v, _)| v)
    }

    /// [`load`](Self::load), also returning how many attempts were thrown away because a
    /// write overlapped them.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_counted(&self) -> Result<(T, u64), Error> {
        self.core.load_with(Self::copy_out)
    }

    /// Replaces the record; readers see the old or the new value, never a mix.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] on a read-only mapping; [`Error::WriterStuck`] when another
    /// live writer holds the lock past the writer timeout; [`Error::Truncated`].
    pub fn store(&self, value: &T) -> Result<(), Error> {
        self.core.store_with(|data| {
            // SAFETY: the record's bytes lie within the validated payload and the lock is
            // ours; Release as the protocol requires.
            unsafe { copy::store_pod(data, value, Ordering::Release) }
        })
    }

    /// Reads, changes and writes the record under the lock.
    ///
    /// # Errors
    /// As [`store`](Self::store).
    pub fn update(&self, f: impl FnOnce(&mut T)) -> Result<(), Error> {
        self.core.store_with(|data| {
            let mut value = Self::copy_out(data);
            f(&mut value);
            // SAFETY: as in `store`.
            unsafe { copy::store_pod(data, &value, Ordering::Release) }
        })
    }

    /// The validated segment underneath.
    pub fn raw(&self) -> &RawSegment<M> {
        self.core.raw()
    }

    /// Gives the memory back.
    pub fn into_memory(self) -> M {
        self.core.into_memory()
    }
}

/// What ends a reader's wait early: the writer died inside its write, or the segment was
/// truncated under us.
struct ReaderChecks<'a, M: SharedMemory> {
    lock: &'a RawSeqLock<M>,
}

impl<M: SharedMemory> Sleeper for ReaderChecks<'_, M> {
    fn check(&mut self, peer: bool) -> Result<(), Error> {
        self.lock.raw.intact()?;
        if !peer {
            return Ok(());
        }
        let pid = self.lock.owner().load(Ordering::Relaxed);
        let odd = self.lock.seq().load(Ordering::Relaxed) & 1 == 1;
        if odd && pid != 0 && proc::liveness(pid) == Liveness::Dead {
            return Err(Error::WriterDied { pid });
        }
        Ok(())
    }
}

/// What ends a writer's wait for the lock early: the segment was truncated under us. (A
/// dead holder is not an end: the lock loop takes it over.)
struct WriterChecks<'a, M: SharedMemory> {
    lock: &'a RawSeqLock<M>,
}

impl<M: SharedMemory> Sleeper for WriterChecks<'_, M> {
    fn check(&mut self, _peer: bool) -> Result<(), Error> {
        self.lock.raw.intact()
    }
}

impl<T: Record, M: SharedMemory> std::fmt::Debug for SeqLock<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqLock")
            .field("raw", &self.core.raw)
            .finish()
    }
}

impl<M: SharedMemory> std::fmt::Debug for RawSeqLock<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawSeqLock")
            .field("record_len", &self.size)
            .field("raw", &self.raw)
            .finish()
    }
}
